"""Loading back a bioimage.io package that napari-attnseg exported (a MODEL may be one).

Every package written by ``napari_attnseg.export.export_bioimageio``
carries our own model as two attachments, :data:`WEIGHTS_NAME` (safetensors)
and :data:`CARD_NAME` (the JSON model card). Loading a package extracts
those two files into the user cache (once per content) and loads them like
any saved model, so the weights and card come back exactly as exported.

A bioimage.io package without them (exported by another tool) cannot be
loaded: napari-attnseg rebuilds its networks from its own architecture
config, which only our attachment holds. The error says so and points to
tools that run any bioimage.io model. Reading a package needs nothing but
the standard library (no ``bioimageio.spec``).
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

from .._files import atomic_write
from ..models.persistence import CARD_FORMAT, ModelFileError
from .remote import cache_dir

#: our safetensors weights inside a package (an attachment)
WEIGHTS_NAME = "napari_attnseg_model.safetensors"
#: our JSON model card inside a package (an attachment)
CARD_NAME = "napari_attnseg_model.json"
#: names a bioimage.io package gives its description file
DESCRIPTION_NAMES = ("rdf.yaml", "bioimageio.yaml")


class ForeignPackageError(ModelFileError):
    """A bioimage.io package that napari-attnseg did not export (the message says why)."""


def is_package(path: str | os.PathLike) -> bool:
    """True for a ``.zip`` path, or a folder holding a bioimage.io description file."""
    path = Path(path)
    if path.suffix.lower() == ".zip":
        return True
    return path.is_dir() and any((path / name).is_file() for name in DESCRIPTION_NAMES)


def _read_members(path: Path) -> tuple[set[str], bytes | None, bytes | None]:
    """(file names, our weights, our card) of a zipped or unpacked package."""
    if path.is_dir():
        names = {p.name for p in path.iterdir() if p.is_file()}

        def read(name: str) -> bytes | None:
            return (path / name).read_bytes() if name in names else None

        return names, read(WEIGHTS_NAME), read(CARD_NAME)
    try:
        with zipfile.ZipFile(path) as archive:
            names = {Path(n).name for n in archive.namelist() if not n.endswith("/")}
            full = {Path(n).name: n for n in archive.namelist()}

            def read_zip(name: str) -> bytes | None:
                return archive.read(full[name]) if name in full else None

            return names, read_zip(WEIGHTS_NAME), read_zip(CARD_NAME)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelFileError(f"{path} is not a readable zip file: {exc}") from exc


def extract_model(path: str | os.PathLike) -> Path:
    """Our weights file inside a bioimage.io package (zip or folder), extracted to the cache.

    Raises :class:`FileNotFoundError` for a missing path, :class:`ModelFileError`
    for something that is not a bioimage.io package, and
    :class:`ForeignPackageError` for a package that napari-attnseg did not export.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    names, weights, card = _read_members(path)
    if not names & set(DESCRIPTION_NAMES):
        raise ModelFileError(
            f"{path} is not a bioimage.io model package: it has no "
            f"{' or '.join(DESCRIPTION_NAMES)} inside"
        )
    if weights is None or card is None:
        raise ForeignPackageError(
            f"{path} is a bioimage.io model package that napari-attnseg did not export "
            f"(it has no {WEIGHTS_NAME} / {CARD_NAME} attachment). napari-attnseg rebuilds "
            "its own architectures from that attachment and cannot run other bioimage.io "
            "models; use a bioimage.io tool for them (bioimageio.core in Python, or the "
            "bioimage.io plugins of napari, Fiji/deepImageJ, ilastik or QuPath)"
        )
    try:
        document = json.loads(card.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: the attached model card is not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != CARD_FORMAT:
        raise ModelFileError(f"{path}: the attached {CARD_NAME} is not a napari-attnseg card")
    digest = hashlib.sha256(weights + b"\0" + card).hexdigest()
    stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in document.get("name", ""))
    stem = stem.strip("._") or "model"
    folder = cache_dir() / "bioimageio" / digest[:16]
    target = folder / f"{stem}.safetensors"
    card_file = target.with_suffix(".json")
    if not (target.is_file() and card_file.is_file()):
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(card_file, lambda tmp: Path(tmp).write_bytes(card))
        atomic_write(target, lambda tmp: Path(tmp).write_bytes(weights))
    return target
