"""Saving and loading models: safetensors weights + a JSON model card.

``save_model(model, "nuclei.safetensors", card=...)`` writes

* ``nuclei.safetensors`` — the weights (optionally fp16), with the card also
  embedded in the safetensors header so a lone weights file still loads;
* ``nuclei.json`` — the model card: architecture config, input channels,
  classes, input normalisation and scale, training data and licence,
  metrics and free-form metadata.

Both files are written to a temporary name and renamed into place, so an
interrupted save never leaves a half-written model. Loading never unpickles
anything: safetensors holds raw tensors and the card is JSON.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .._files import atomic_write
from .base import SegmentationModel
from .card import ModelCard, check_spec
from .registry import model_from_config

CARD_FORMAT = "napari-attnseg-model"
CARD_VERSION = 1
_METADATA_KEY = "napari_attnseg_card"


class ModelFileError(ValueError):
    """A model file is missing, unreadable or inconsistent (the message says which)."""


def card_of(model: SegmentationModel) -> ModelCard:
    """The model's card (a default one if it has none yet)."""
    if model.card is None:
        model.card = ModelCard(name=model.name)
    return model.card


def _card_document(model: SegmentationModel, card: ModelCard, dtype: str) -> dict[str, Any]:
    if not model.config:
        raise ValueError("save_model needs a model built by create_model (it has no config)")
    return {
        "format": CARD_FORMAT,
        "format_version": CARD_VERSION,
        "config": model.config,
        "in_channels": model.in_channels,
        "n_classes": model.n_classes,
        "weights_dtype": dtype,
        **card.to_dict(),
    }


def weights_path(path: str | os.PathLike) -> Path:
    """The ``.safetensors`` file a model path names, as :func:`save_model` names it.

    ``m.safetensors`` is itself, ``m.json`` (the card) names the weights beside
    it, and any other name gets ``.safetensors`` appended — so ``load_model("m")``
    finds what ``save_model(model, "m")`` wrote.
    """
    path = Path(path)
    if path.suffix == ".json":
        return path.with_suffix(".safetensors")
    if path.suffix != ".safetensors":
        return path.with_name(path.name + ".safetensors")
    return path


def card_path(weights: str | os.PathLike) -> Path:
    """The JSON card that belongs to a weights file."""
    return Path(weights).with_suffix(".json")



def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a saved model: its weights file and the JSON card beside it (if any).

    The card counts: it holds the threshold and normalisation the masks depend on.
    """
    digest = hashlib.sha256()
    for part in (Path(path), card_path(path)):
        if part.is_file():
            with open(part, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()

def _fits_half(tensor: torch.Tensor) -> bool:
    """Every finite value of ``tensor`` is within fp16's range."""
    finite = tensor[torch.isfinite(tensor)]
    return finite.numel() == 0 or float(finite.abs().max()) <= float(torch.finfo(torch.float16).max)


def save_model(
    model: SegmentationModel,
    path: str | os.PathLike,
    card: ModelCard | dict[str, Any] | None = None,
    *,
    half: bool = False,
) -> Path:
    """Write ``path`` (``.safetensors`` added if missing) and its ``.json`` card.

    ``card`` defaults to ``model.card``; ``half=True`` stores floating-point
    weights as fp16 (the zoo does, to stay small), except a tensor with values
    beyond fp16's range (±65504; e.g. a batch-norm running variance of large
    activations), which stays fp32 rather than turn into infinities. Returns the
    weights path.
    """
    path = weights_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if card is None:
        card = card_of(model)
    elif isinstance(card, dict):
        card = ModelCard.from_dict(card)
    dtype = "float16" if half else "float32"
    document = _card_document(model, card, dtype)
    state = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        if half and tensor.is_floating_point() and _fits_half(tensor):
            tensor = tensor.half()
        state[key] = tensor.contiguous()
    metadata = {_METADATA_KEY: json.dumps(document)}
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=metadata))
    text = json.dumps(document, indent=2, sort_keys=False) + "\n"
    atomic_write(card_path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    model.card = card
    return path


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """The card document of a saved model (the JSON beside it, else the embedded copy).

    Raises :class:`ModelFileError` naming the file and the problem for
    anything that is not a readable napari-attnseg model: a missing file or a
    folder, an empty or truncated file, a pickle or other non-safetensors
    file, a card that is not UTF-8 JSON, of another format or of a newer
    format version, or whose fields have the wrong types.
    """
    path = _existing_weights(path)
    beside = card_path(path)
    if beside.exists():
        document = _parse_json(_read_text(beside), f"the model card {beside}")
        source = str(beside)
    else:
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except Exception as exc:
            raise _weights_error(path, exc) from exc
        if _METADATA_KEY not in meta:
            raise ModelFileError(
                f"{path} has no model card: expected {beside.name} beside it "
                "or a card embedded by napari-attnseg"
            )
        document = _parse_json(meta[_METADATA_KEY], f"the card embedded in {path}")
        source = f"the card embedded in {path}"
    _check_document(document, source)
    return document


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> SegmentationModel:
    """Rebuild a saved model (float32, eval mode) with its card as ``model.card``.

    Every way a model file can be broken — see :func:`read_card`, plus weights
    that are truncated, not safetensors, non-finite, or of another
    architecture than the card describes — raises :class:`ModelFileError`.
    Nothing is ever unpickled.
    """
    path = _existing_weights(path)
    document = read_card(path)
    config = document["config"]
    arch = _describe_config(config)
    try:
        model = model_from_config(config)
    except Exception as exc:
        raise ModelFileError(
            f"{path}: the card describes an architecture this napari-attnseg cannot build "
            f"({arch}): {exc}"
        ) from exc
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:
        raise _weights_error(path, exc) from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelFileError(
            f"{path}: the weights do not fit the architecture its card describes ({arch}): "
            f"{len(missing)} tensor(s) missing {missing[:3]}, "
            f"{len(unexpected)} unexpected {unexpected[:3]}"
        )
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise ModelFileError(
                f"{path}: the weights do not fit the architecture its card describes ({arch}): "
                f"tensor {key} has shape {tuple(tensor.shape)}, expected "
                f"{tuple(expected[key].shape)}"
            )
        if tensor.is_complex():
            raise ModelFileError(f"{path}: tensor {key} holds complex numbers")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(f"{path}: tensor {key} holds NaN or infinite weights")
        state[key] = tensor.to(expected[key].dtype)
    try:
        model.load_state_dict(state)
        model.card = ModelCard.from_dict(document)
    except Exception as exc:  # pragma: no cover - shapes and names were checked above
        raise ModelFileError(f"{path}: cannot load the weights: {exc}") from exc
    return model.to(device).eval()


# -- error paths ----------------------------------------------------------------------
#: first bytes of files that are not safetensors but are often renamed to it
_FOREIGN_FORMATS = (
    (b"PK\x03\x04", "a zip archive (PyTorch's torch.save format)"),
    (b"\x80", "a Python pickle (torch.save's legacy format)"),
    (b"\x89HDF", "an HDF5 file (Keras)"),
    (b"\x08", "a protocol buffer (ONNX or TensorFlow)"),
)


def _existing_weights(path: str | os.PathLike) -> Path:
    """The weights file ``path`` names, checked to be a non-empty regular file."""
    given = Path(path)
    if given.is_dir():
        raise ModelFileError(f"{given} is a folder, not a model file; give a .safetensors file")
    weights = weights_path(given)
    if weights.is_dir():
        raise ModelFileError(f"{weights} is a folder, not a model file")
    if not weights.exists():
        raise ModelFileError(f"model file not found: {weights}")
    if not weights.is_file():
        raise ModelFileError(f"{weights} is not a regular file")
    try:
        size = weights.stat().st_size
    except OSError as exc:
        raise ModelFileError(f"cannot read {weights}: {exc.strerror or exc}") from exc
    if size == 0:
        raise ModelFileError(f"{weights} is an empty file (0 bytes)")
    return weights


def _weights_error(path: Path, exc: BaseException) -> ModelFileError:
    """A :class:`ModelFileError` that says what is wrong with a weights file."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as error:
        return ModelFileError(f"cannot read {path}: {error.strerror or error}")
    for magic, what in _FOREIGN_FORMATS:
        if head.startswith(magic):
            return ModelFileError(
                f"{path} is {what}, not a safetensors file; napari-attnseg never unpickles "
                "model files (it could run arbitrary code): load it in its own framework and "
                "save it with napari_attnseg.models.save_model"
            )
    text = str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return ModelFileError(f"cannot read {path}: {exc.strerror}")
    if _truncated(path) or any(w in text for w in ("incomplete", "too small", "not fully covered")):
        return ModelFileError(f"{path} is truncated or corrupt ({text})")
    return ModelFileError(f"{path} is not a valid safetensors file ({text or type(exc).__name__})")


def _truncated(path: Path) -> bool:
    """Whether ``path`` starts like a safetensors file but ends before its data does."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return True
            length = int.from_bytes(head, "little")
            if length > 100 * 2**20 or f.read(1) != b"{":
                return False  # no safetensors header
            if 8 + length > size:
                return True
            f.seek(8)
            header = json.loads(f.read(length))
        ends = [
            int(entry["data_offsets"][1])
            for entry in header.values()
            if isinstance(entry, dict) and "data_offsets" in entry
        ]
        return 8 + length + max(ends, default=0) > size
    except Exception:
        return False


def _read_text(path: Path) -> str:
    if path.is_dir():
        raise ModelFileError(f"the model card {path} is a folder, not a JSON file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"cannot read the model card {path}: {exc.strerror or exc}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFileError(
            f"the model card {path} is not UTF-8 text (byte {data[exc.start]:#04x} at offset "
            f"{exc.start}); it must be JSON as written by save_model"
        ) from exc


def _parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelFileError(
            f"{what} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc
    except (ValueError, RecursionError) as exc:  # e.g. nesting too deep
        raise ModelFileError(f"{what} is not valid JSON: {exc}") from exc


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: card fields and the check each value must pass (``None`` always passes where allowed)
_FIELD_CHECKS: dict[str, tuple[str, Any]] = {
    "name": ("a string", lambda v: isinstance(v, str)),
    "description": ("a string", lambda v: isinstance(v, str)),
    "license": ("a string", lambda v: isinstance(v, str)),
    "class_names": (
        "a list of strings",
        lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v),
    ),
    "normalization": ('an object such as {"mode": "zscore"}', lambda v: isinstance(v, dict)),
    "input_scale": ("a positive number", lambda v: _is_number(v) and 0 < v < math.inf),
    "input_size": (
        "null or [H, W] with positive sides",
        lambda v: (
            v is None
            or (isinstance(v, list) and len(v) == 2 and all(_is_int(n) and n > 0 for n in v))
        ),
    ),
    "threshold": ("a number between 0 and 1", lambda v: _is_number(v) and 0 <= v <= 1),
    "tile_size": ("null or an integer >= 16", lambda v: v is None or (_is_int(v) and v >= 16)),
    "object_diameter": (
        "null or a positive number",
        lambda v: v is None or (_is_number(v) and v > 0),
    ),
    "instances": ("null or an object", lambda v: v is None or isinstance(v, dict)),
    "roi": ("null or an object", lambda v: v is None or isinstance(v, dict)),
    "base_model": ("null or a string", lambda v: v is None or isinstance(v, str)),
    "training": ("an object", lambda v: isinstance(v, dict)),
    "metrics": ("an object", lambda v: isinstance(v, dict)),
    "metadata": ("an object", lambda v: isinstance(v, dict)),
}


def _check_document(document: Any, source: str) -> None:
    """Raise :class:`ModelFileError` unless ``document`` is a card this version can use."""
    if not isinstance(document, dict) or document.get("format") != CARD_FORMAT:
        raise ModelFileError(f"{source} is not a napari-attnseg model card")
    version = document.get("format_version", 0)
    if not _is_int(version):
        raise ModelFileError(f"{source}: format_version must be an integer, got {version!r}")
    if version > CARD_VERSION:
        raise ModelFileError(
            f"{source}: card format {version} is newer than this napari-attnseg understands "
            f"({CARD_VERSION}); please upgrade napari-attnseg"
        )
    config = document.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("name"), str):
        raise ModelFileError(
            f"{source}: 'config' must be an object naming the architecture, got {config!r:.80}"
        )
    for key in ("in_channels", "n_classes"):
        for where, value in (("card", document.get(key)), ("config", config.get(key))):
            if value is not None and not (_is_int(value) and value >= 1):
                raise ModelFileError(
                    f"{source}: {where} {key} must be a positive integer, got {value!r:.40}"
                )
    for key, (wanted, ok) in _FIELD_CHECKS.items():
        if key in document and not ok(document[key]):
            raise ModelFileError(f"{source}: {key} must be {wanted}, got {document[key]!r:.60}")
    _check_normalization(document.get("normalization") or {"mode": "zscore"}, source)


def _check_normalization(spec: dict[str, Any], source: str) -> None:
    try:
        spec = check_spec(spec)
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{source}: invalid normalization: {exc}") from exc
    if spec["mode"] == "dataset":
        for key in ("mean", "std"):
            values = spec.get(key)
            values = values if isinstance(values, list) else [values]
            if not values or not all(_is_number(v) and math.isfinite(v) for v in values):
                raise ModelFileError(
                    f"{source}: dataset normalization needs {key!r}: a number or a list of "
                    f"numbers (one per channel), got {spec.get(key)!r:.60}"
                )


def _describe_config(config: dict[str, Any]) -> str:
    """``"unet, width 4, depth 2"``: a config's architecture in a few words."""
    shown = [
        f"{k} {v}"
        for k, v in config.items()
        if k in ("width", "depth") and (_is_int(v) or isinstance(v, str))
    ]
    return ", ".join([str(config.get("name")), *shown])
