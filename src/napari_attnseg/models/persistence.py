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

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .._files import atomic_write
from .base import SegmentationModel
from .card import ModelCard
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


def save_model(
    model: SegmentationModel,
    path: str | os.PathLike,
    card: ModelCard | dict[str, Any] | None = None,
    *,
    half: bool = False,
) -> Path:
    """Write ``path`` (``.safetensors`` added if missing) and its ``.json`` card.

    ``card`` defaults to ``model.card``; ``half=True`` stores floating-point
    weights as fp16 (the zoo does, to stay small). Returns the weights path.
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
        if half and tensor.is_floating_point():
            tensor = tensor.half()
        state[key] = tensor.contiguous()
    metadata = {_METADATA_KEY: json.dumps(document)}
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=metadata))
    text = json.dumps(document, indent=2, sort_keys=False) + "\n"
    atomic_write(card_path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    model.card = card
    return path


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """The card document of a saved model (the JSON beside it, else the embedded copy)."""
    path = weights_path(path)
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    beside = card_path(path)
    try:
        if beside.exists():
            document = json.loads(beside.read_text(encoding="utf-8"))
        else:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            if _METADATA_KEY not in meta:
                raise ModelFileError(
                    f"{path} has no model card: expected {beside.name} beside it "
                    "or a card embedded by napari-attnseg"
                )
            document = json.loads(meta[_METADATA_KEY])
    except ModelFileError:
        raise
    except Exception as exc:  # unreadable JSON or not a safetensors file
        raise ModelFileError(f"cannot read the model card of {path}: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != CARD_FORMAT:
        raise ModelFileError(f"{path}: not a napari-attnseg model card")
    if document.get("format_version", 0) > CARD_VERSION:
        raise ModelFileError(
            f"{path}: card format {document['format_version']} is newer than this "
            f"napari-attnseg understands ({CARD_VERSION}); please upgrade"
        )
    return document


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> SegmentationModel:
    """Rebuild a saved model (float32, eval mode) with its card as ``model.card``."""
    path = weights_path(path)
    document = read_card(path)
    try:
        model = model_from_config(document["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: invalid architecture config in the card: {exc}") from exc
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:
        raise ModelFileError(f"cannot read weights from {path}: {exc}") from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelFileError(
            f"{path}: weights do not match the card's architecture "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise ModelFileError(
                f"{path}: tensor {key} has shape {tuple(tensor.shape)}, "
                f"expected {tuple(expected[key].shape)}"
            )
        state[key] = tensor.to(expected[key].dtype)
    model.load_state_dict(state)
    model.card = ModelCard.from_dict(document)
    return model.to(device).eval()
