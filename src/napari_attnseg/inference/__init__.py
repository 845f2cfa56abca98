"""Inference: whole-image or tiled prediction, flip TTA, devices, stacks."""

from .device import (
    DEVICE_CHOICES,
    PRECISIONS,
    autocast_dtype,
    available_devices,
    cpu_has_native_bf16,
    resolve_device,
    resolve_precision,
)
from .predictor import (
    InferenceSettings,
    Prediction,
    Predictor,
    is_rgb,
    predict_image,
)

__all__ = [
    "DEVICE_CHOICES",
    "PRECISIONS",
    "InferenceSettings",
    "Prediction",
    "Predictor",
    "autocast_dtype",
    "available_devices",
    "cpu_has_native_bf16",
    "is_rgb",
    "predict_image",
    "resolve_device",
    "resolve_precision",
]

from .attention import attention_maps, map_contrast, most_informative  # noqa: E402

__all__ += ["attention_maps", "map_contrast", "most_informative"]
