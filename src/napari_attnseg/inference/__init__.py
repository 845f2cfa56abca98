"""Inference: whole-image or tiled prediction, flip TTA, devices and precision, attention maps.

:class:`Predictor` holds settings and takes the network per call; it never
moves or mutates the caller's model. Images reach the network only through
:class:`napari_attnseg.data.InputSpec`.
"""

from .attention import attention_maps, map_contrast, most_informative
from .device import (
    DEVICE_CHOICES,
    PRECISIONS,
    autocast_dtype,
    available_devices,
    cpu_auto_bf16,
    cpu_bf16_speedup,
    cpu_has_native_bf16,
    resolve_device,
    resolve_precision,
)
from .evaluate import evaluate_folder
from .predictor import InferenceSettings, Prediction, Predictor, predict_image

__all__ = [
    "DEVICE_CHOICES",
    "PRECISIONS",
    "InferenceSettings",
    "Prediction",
    "Predictor",
    "attention_maps",
    "autocast_dtype",
    "available_devices",
    "cpu_auto_bf16",
    "cpu_bf16_speedup",
    "cpu_has_native_bf16",
    "evaluate_folder",
    "map_contrast",
    "most_informative",
    "predict_image",
    "resolve_device",
    "resolve_precision",
]
