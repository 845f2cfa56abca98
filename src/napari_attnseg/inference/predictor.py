"""Prediction for images of any size: whole-image or sliding-window, optional flip TTA.

:class:`Predictor` wraps a model and its card. For every image it

1. converts it to the model's channels and normalises it as the card says
   (``data.prepare_image``), resizing by the card's ``input_scale`` (or to its
   fixed ``input_size``) and resizing the prediction back afterwards;
2. predicts class probabilities — in one pass if the image fits in a tile,
   otherwise with MONAI's ``sliding_window_inference`` (overlapping tiles,
   Gaussian blending, batched, output kept on the CPU so memory stays bounded
   by the tile batch rather than the image);
3. with ``tta=True`` averages the probabilities of the image and its
   horizontal, vertical and double flips (done on the whole image so the
   result is exactly flip-equivariant);
4. thresholds (binary) or takes the arg-max (multi-class) into labels.

Stacks (Z or T of 2D slices, grey or RGB) are processed slice by slice with
progress and cancellation between (and inside) slices. On CUDA it runs under
fp16/bf16 autocast; when the GPU runs out of memory it retries on smaller
tiles and then on the CPU, reporting what it did through ``on_message``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from ..data.resize import resize_image, working_size
from ..models.base import SegmentationModel, class_probabilities
from ..models.persistence import card_of
from ..progress import CancelToken, ProgressCallback, check, report
from .device import autocast_dtype, resolve_device

#: flips averaged by test-time augmentation (dims of an (N, C, H, W) tensor)
TTA_FLIPS: tuple[tuple[int, ...], ...] = ((), (3,), (2,), (2, 3))
MIN_TILE = 64


@dataclass
class InferenceSettings:
    device: str = "auto"
    #: images larger than this (after ``input_scale``) are tiled; None = never tile
    tile_size: int | None = 512
    overlap: float = 0.25
    #: tiles per forward pass
    batch_size: int = 4
    tta: bool = False
    #: auto (bf16 where the hardware computes it natively, fp16 on older GPUs, else fp32),
    #: fp32, bf16 or fp16; see ``inference.device.resolve_precision``
    precision: str = "auto"
    #: foreground threshold for binary models; None = the card's
    threshold: float | None = None
    blend: str = "gaussian"

    def __post_init__(self) -> None:
        if self.tile_size is not None and self.tile_size < 16:
            raise ValueError(f"tile_size must be >= 16 pixels, got {self.tile_size}")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.blend not in ("gaussian", "constant"):
            raise ValueError(f"blend must be 'gaussian' or 'constant', got {self.blend!r}")


@dataclass
class Prediction:
    """Class probabilities (``(K, H, W)``, or ``(Z, K, H, W)`` for a stack) and labels."""

    probabilities: np.ndarray
    labels: np.ndarray
    messages: list[str] = field(default_factory=list)

    @property
    def foreground(self) -> np.ndarray:
        """Probability of any foreground class, shaped like ``labels``."""
        return 1.0 - self.probabilities[..., 0, :, :]


def is_rgb(image: np.ndarray) -> bool:
    """Guess napari's ``rgb`` flag: a trailing axis of 3 or 4 on a 3D array."""
    return image.ndim == 3 and image.shape[-1] in (3, 4)


def _windows(size: int, tile: int, overlap: float) -> int:
    if size <= tile:
        return 1
    step = max(1, int(tile * (1.0 - overlap)))
    return math.ceil((size - tile) / step) + 1


class Predictor:
    """Run a segmentation model on numpy images as its model card prescribes."""

    def __init__(
        self,
        model: SegmentationModel,
        settings: InferenceSettings | None = None,
        *,
        on_message: Callable[[str], None] | None = None,
        **overrides,
    ) -> None:
        self.settings = replace(settings or InferenceSettings(), **overrides)
        self.device = resolve_device(self.settings.device)
        self.model = model.to(self.device).eval()
        self.card = card_of(model)
        self.on_message = on_message
        self.messages: list[str] = []

    # -- public API ---------------------------------------------------------
    @property
    def threshold(self) -> float:
        t = self.settings.threshold
        return self.card.threshold if t is None else t

    def predict(
        self,
        image: np.ndarray,
        *,
        rgb: bool | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Prediction:
        """Segment one 2D image: (H, W) grey or (H, W, 3|4) RGB(A)."""
        image = np.asarray(image)
        rgb = is_rgb(image) if rgb is None else rgb
        if image.ndim != (3 if rgb else 2):
            raise ValueError(
                f"expected a 2D {'RGB ' if rgb else ''}image, got shape {image.shape}; "
                "use predict_stack for a stack of slices"
            )
        probs = self.probabilities(self.prepare(image, rgb), progress=progress, cancel=cancel)
        return Prediction(probs, self.labels(probs), list(self.messages))

    def predict_stack(
        self,
        stack: np.ndarray,
        *,
        rgb: bool | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Prediction:
        """Segment a (Z, H, W) or (Z, H, W, 3|4) stack slice by slice."""
        stack = np.asarray(stack)
        rgb = (stack.ndim == 4 and stack.shape[-1] in (3, 4)) if rgb is None else rgb
        if stack.ndim != (4 if rgb else 3):
            raise ValueError(
                f"expected a stack of 2D {'RGB ' if rgb else ''}slices, got {stack.shape}"
            )
        n = stack.shape[0]
        probs = []
        for z in range(n):
            check(cancel)

            def inner(done, total, message="", z=z):
                report(progress, z * total + done, n * total, f"slice {z + 1}/{n}")

            probs.append(
                self.probabilities(self.prepare(stack[z], rgb), progress=inner, cancel=cancel)
            )
        report(progress, n, n, "done")
        probs = np.stack(probs)
        return Prediction(probs, self.labels(probs), list(self.messages))

    def labels(self, probs: np.ndarray) -> np.ndarray:
        """Threshold (binary) or arg-max (multi-class) probabilities over the class axis."""
        k = probs.shape[-3]
        if k == 2:
            return (probs[..., 1, :, :] >= self.threshold).astype(np.uint8)
        dtype = np.uint8 if k <= 256 else np.uint16
        return probs.argmax(axis=-3).astype(dtype)

    @torch.inference_mode()
    def probabilities(
        self,
        x: np.ndarray | torch.Tensor,
        *,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> np.ndarray:
        """(K, H, W) probabilities of a prepared (C, H, W) image, float32 on the CPU."""
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.ndim == 3:
            x = x[None]
        height, width = x.shape[-2:]
        x = self.to_working_size(x)
        resized = tuple(x.shape[-2:]) != (height, width)
        while True:
            try:
                probs = self._run(x, progress, cancel)
                break
            except torch.cuda.OutOfMemoryError:
                self._recover_from_oom()
        if resized:
            probs = F.interpolate(probs, size=(height, width), mode="bilinear", align_corners=False)
        return probs[0].float().numpy()

    def to_working_size(self, x: torch.Tensor) -> torch.Tensor:
        """Resample a prepared (N, C, H, W) input to the size the model works at."""
        return resize_image(x, self.working_size(*x.shape[-2:]))

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """Size an image is resized to for the network (card ``input_size``/``input_scale``)."""
        return working_size(height, width, scale=self.card.input_scale, size=self.card.input_size)

    # -- internals ----------------------------------------------------------
    def prepare(self, image: np.ndarray, rgb: bool) -> np.ndarray:
        """Channels and normalisation as the model card prescribes: (C, H, W) float32."""
        from ..data.normalization import prepare_image

        return prepare_image(image, self.model.in_channels, self.card.normalization, rgb=rgb)

    def _notify(self, message: str) -> None:
        self.messages.append(message)
        if self.on_message is not None:
            self.on_message(message)

    def _recover_from_oom(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        tile = self.settings.tile_size
        if tile is not None and tile // 2 >= MIN_TILE and self.device.type != "cpu":
            self.settings = replace(self.settings, tile_size=tile // 2, batch_size=1)
            self._notify(f"out of GPU memory: retrying with {tile // 2}px tiles")
        elif self.device.type != "cpu":
            self.device = torch.device("cpu")
            self.model.to(self.device)
            self._notify("out of GPU memory: continuing on the CPU")
        else:
            raise MemoryError("out of memory on the CPU; try a smaller tile size")

    def _run(self, x: torch.Tensor, progress, cancel) -> torch.Tensor:
        flips = TTA_FLIPS if self.settings.tta else ((),)
        tile = self.settings.tile_size
        tiled = tile is not None and max(x.shape[-2:]) > tile
        per_flip = (
            math.ceil(
                _windows(x.shape[-2], tile, self.settings.overlap)
                * _windows(x.shape[-1], tile, self.settings.overlap)
                / self.settings.batch_size
            )
            if tiled
            else 1
        )
        total = per_flip * len(flips)
        done = 0

        def forward(batch: torch.Tensor) -> torch.Tensor:
            nonlocal done
            check(cancel)
            batch = batch.to(self.device)
            dtype = autocast_dtype(self.device, self.settings.precision)
            with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
                probs = class_probabilities(self.model(batch))
            done += 1
            report(progress, min(done, total), total, "predicting")
            return probs.float()

        result = None
        for dims in flips:
            xf = torch.flip(x, dims) if dims else x
            if tiled:
                from monai.inferers import sliding_window_inference

                probs = sliding_window_inference(
                    xf,
                    roi_size=(tile, tile),
                    sw_batch_size=self.settings.batch_size,
                    predictor=forward,
                    overlap=self.settings.overlap,
                    mode=self.settings.blend,
                    sw_device=self.device,
                    device=torch.device("cpu"),
                )
                probs = torch.as_tensor(probs)  # MetaTensor -> Tensor
            else:
                probs = forward(xf).cpu()
            probs = torch.flip(probs, dims) if dims else probs
            result = probs if result is None else result + probs
        return result / len(flips)


def predict_image(model: SegmentationModel, image: np.ndarray, **settings) -> Prediction:
    """One-call convenience: ``Predictor(model, **settings).predict(image)``."""
    return Predictor(model, **settings).predict(image)
