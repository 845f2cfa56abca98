"""Inference: whole-image or tiled prediction, flip TTA, devices, stacks."""

from .device import DEVICE_CHOICES, autocast_dtype, available_devices, resolve_device
from .predictor import (
    InferenceSettings,
    Prediction,
    Predictor,
    is_rgb,
    predict_image,
)

__all__ = [
    "DEVICE_CHOICES",
    "InferenceSettings",
    "Prediction",
    "Predictor",
    "autocast_dtype",
    "available_devices",
    "is_rgb",
    "predict_image",
    "resolve_device",
]

from .attention import attention_maps, map_contrast, most_informative  # noqa: E402

__all__ += ["attention_maps", "map_contrast", "most_informative"]
