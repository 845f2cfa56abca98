"""Pairing image files with their masks (and FOV/ROI masks) by file stem."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .io import IMAGE_SUFFIXES

#: separators allowed between an image stem and a mask suffix ("21" ↔ "21_manual1")
_STEM_SEPARATORS = ("_", "-", ".", " ")

Pair = tuple[Path, Path, Path | None]


def pair_folder(
    images_dir: str | Path, masks_dir: str | Path, *, fov_dir: str | Path | None = None
) -> list[Pair]:
    """Pair every image in ``images_dir`` with its mask (and FOV mask) by file stem.

    A mask (FOV) matches an image when its stem equals the image's stem or,
    failing that, when it is the image stem followed by a separator and a
    suffix (``21.png`` ↔ ``21_manual1.gif``, ``a.tif`` ↔ ``a_mask.png``); two
    such candidates are an error. Images come back in natural order (2 before 10).
    Images without a mask raise ``ValueError`` naming a few of them.
    """
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    images = _image_files(images_dir, "images")
    if masks_dir.resolve() == images_dir.resolve():
        raise ValueError(f"images and masks must be in separate folders, both are {images_dir}")
    masks = _stem_index(_image_files(masks_dir, "masks"))
    fovs = _stem_index(_image_files(Path(fov_dir), "FOV masks")) if fov_dir is not None else None
    pairs: list[Pair] = []
    missing: list[str] = []
    for image in images:
        mask = _match(image.stem, masks)
        fov = _match(image.stem, fovs) if fovs is not None else None
        if mask is None or (fovs is not None and fov is None):
            missing.append(image.name)
            continue
        pairs.append((image, mask, fov))
    if missing:
        what = "mask" if fov_dir is None else "mask or FOV mask"
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise ValueError(f"{len(missing)} image(s) in {images_dir} have no {what}: {shown}")
    return pairs


def natural_key(name: str) -> list[Any]:
    """Sort key that orders "2.png" before "10.png"."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _image_files(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder not found: {folder}")
    files = [
        path
        for path in folder.iterdir()
        if path.is_file()
        and not path.name.startswith(".")
        and path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {what} folder {folder}")
    return sorted(files, key=lambda path: natural_key(path.name))


def _stem_index(files: list[Path]) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for path in files:
        if path.stem in index:
            raise ValueError(
                f"two files share the stem {path.stem!r}: {index[path.stem]} and {path}"
            )
        index[path.stem] = path
    return index


def _match(stem: str, index: dict[str, Path]) -> Path | None:
    if stem in index:
        return index[stem]
    candidates = [
        path
        for other, path in index.items()
        if other.startswith(stem) and other[len(stem) : len(stem) + 1] in _STEM_SEPARATORS
    ]
    if len(candidates) > 1:
        names = ", ".join(sorted(path.name for path in candidates))
        raise ValueError(f"image {stem!r} matches several files: {names}")
    return candidates[0] if candidates else None
