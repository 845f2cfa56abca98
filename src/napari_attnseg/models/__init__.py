"""Attention segmentation networks: registry, persistence and introspection.

This package never imports napari or Qt.

>>> from napari_attnseg.models import create_model, capture_attention
>>> model = create_model("focal_use_net", in_channels=3, n_classes=1, width=8)
>>> maps = capture_attention(model, torch.zeros(1, 3, 97, 131))
"""

from . import architectures  # noqa: F401  (registers the built-in architectures)
from .base import SegmentationModel, class_probabilities
from .blocks import AttentionModule, FocalLayer, Passthrough, clamp_focal_weights
from .card import ModelCard
from .cost import ModelCost, count_parameters, model_cost
from .introspection import (
    PRUNE_THRESHOLD,
    AttentionMap,
    attention_modules,
    capture,
    capture_attention,
    focal_weights,
    prune,
)
from .persistence import ModelFileError, load_model, read_card, save_model
from .registry import (
    compact_architectures,
    compact_options,
    create_model,
    get_entry,
    list_models,
    model_from_config,
    register_model,
)

__all__ = [
    "PRUNE_THRESHOLD",
    "AttentionMap",
    "AttentionModule",
    "FocalLayer",
    "ModelCard",
    "ModelCost",
    "ModelFileError",
    "Passthrough",
    "SegmentationModel",
    "attention_modules",
    "capture",
    "capture_attention",
    "class_probabilities",
    "compact_architectures",
    "compact_options",
    "clamp_focal_weights",
    "count_parameters",
    "create_model",
    "focal_weights",
    "get_entry",
    "list_models",
    "load_model",
    "model_cost",
    "model_from_config",
    "prune",
    "read_card",
    "register_model",
    "save_model",
]
