"""Attention maps of one 2D image, aligned with that image — what the Attention widget shows.

:func:`attention_maps` prepares the image exactly as a prediction does (the
card's channels, normalisation and working size through the one
:class:`~napari_attnseg.data.InputSpec`) and runs the network tile by tile
like :class:`~.predictor.Predictor` — so memory stays bounded on large
images, progress is reported per tile and a cancel token stops it. Every
attention module is recorded through forward hooks during each tile's pass
(``models.introspection.capture``); spatial maps are blended across tiles
with the predictor's Gaussian weights and resized back onto the *original*
image's H×W, so a map can be laid over the image pixel for pixel. Channel
weights (SE blocks) depend on the whole tile they see; they are averaged over
tiles.

:func:`most_informative` picks the spatial map with the most spatial contrast
(highest standard deviation): a gate that is nearly constant says little about
*where* the network looked, so it is the one worth showing first.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.input_spec import InputSpec, canonical
from ..models.base import SegmentationModel
from ..models.introspection import AttentionMap, attention_modules, capture
from ..progress import CancelToken, ProgressCallback
from .device import autocast_dtype
from .predictor import InferenceSettings, Predictor, Run


def attention_maps(
    model: SegmentationModel,
    image: np.ndarray,
    *,
    rgb: bool | None = None,
    channel_axis: int | None = None,
    settings: InferenceSettings | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    **overrides,
) -> list[AttentionMap]:
    """Every attention module's coefficients for one 2D image (grey, RGB(A) or channels).

    Spatial maps come back as ``resized`` (1, 1, H, W) float32 CPU tensors at
    the image's own H×W (``native``: the same map at the network's working
    resolution); channel maps as (1, C) weights. Modules no forward pass
    reached are left out. ``settings``/``overrides`` are the predictor's
    (device, tile size, overlap, precision); test-time augmentation is off.
    """
    canon, layout = canonical(np.asarray(image), rgb=rgb, channel_axis=channel_axis)
    if layout.stack_shape:
        raise ValueError(
            f"attention maps need one 2D image, got shape {layout.shape}; "
            "pick a single slice of a stack"
        )
    predictor = Predictor(settings, **{**overrides, "tta": False})
    run = Run(predictor, model)
    kinds = attention_modules(run.network)
    spatial = [name for name, kind in kinds.items() if kind == "spatial"]
    spec = InputSpec.of(model)
    prepared = spec.prepare(canon, rgb=layout.rgb)
    channel_sums: dict[str, torch.Tensor] = {}
    channel_counts: dict[str, int] = {}
    focal: dict[str, float | None] = {}
    reached: set[str] = set()

    def forward(batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(run.device)
        dtype = autocast_dtype(run.device, run.precision)
        with torch.autocast(run.device.type, dtype=dtype, enabled=dtype is not None):
            _, maps = capture(run.network, batch)
        out = torch.zeros(batch.shape[0], max(1, len(spatial)), *batch.shape[-2:])
        for m in maps:
            reached.add(m.name)
            focal[m.name] = m.focal_w
            if m.kind == "spatial":
                out[:, spatial.index(m.name)] = m.resized[:, 0].float().cpu()
            else:
                weights = m.resized.float().cpu()
                channel_sums[m.name] = channel_sums.get(m.name, 0) + weights.sum(0, keepdim=True)
                channel_counts[m.name] = channel_counts.get(m.name, 0) + weights.shape[0]
        return out.to(run.device)

    with torch.inference_mode():
        working = run.tiled(forward, prepared.tensor, progress, cancel)
    restored = spec.restore(working, prepared.size).clamp(0.0, 1.0)
    maps = []
    for name, kind in kinds.items():
        if name not in reached:
            continue
        if kind == "spatial":
            k = spatial.index(name)
            native = working[:, k : k + 1].clamp(0.0, 1.0)
            maps.append(AttentionMap(name, kind, native, restored[:, k : k + 1], focal[name]))
        else:
            mean = channel_sums[name] / channel_counts[name]
            maps.append(AttentionMap(name, kind, mean, mean, focal[name]))
    return maps


def map_contrast(m: AttentionMap) -> float:
    """Spatial standard deviation of a spatial map (0 for channel maps)."""
    if m.kind != "spatial":
        return 0.0
    return float(m.resized.float().std())


def most_informative(maps: list[AttentionMap]) -> str | None:
    """The spatial map with the highest spatial standard deviation (None: no spatial map)."""
    spatial = [m for m in maps if m.kind == "spatial"]
    if not spatial:
        return None
    return max(spatial, key=map_contrast).name
