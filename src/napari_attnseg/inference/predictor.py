"""Prediction for images of any size and layout: whole-image or sliding-window, optional TTA.

:class:`Predictor` holds *settings*, not a network: like MONAI's inferers it
takes the model per call (``predictor.predict(model, image)``) and never
moves, mutates or retrains the caller's module. When the model is not
already on the predictor's device in eval mode, the call works on a private
copy; an out-of-memory fallback (smaller tiles, then the CPU) applies to that
call only. One method serves single images and stacks alike. For every 2D
plane it

1. prepares the plane as the model card says — channels, NaN clean-up,
   normalisation, working size — through the one
   :class:`~napari_attnseg.data.InputSpec`;
2. predicts class probabilities — in one pass if the plane fits in a tile,
   otherwise with MONAI's ``sliding_window_inference`` (overlapping tiles,
   Gaussian blending, batched, output kept on the CPU so memory stays bounded
   by the tile batch rather than the image), under autocast at the resolved
   precision (bf16 where the hardware computes it natively and faster);
3. with test-time augmentation (``tta=True``, or the default ``None`` for a
   model whose card recommends it, :func:`uses_tta`) averages the
   probabilities of the plane and its horizontal, vertical and double flips
   (done on the whole plane so the result is exactly flip-equivariant);
4. maps the probabilities back onto the plane's own grid and thresholds
   (binary) or takes the arg-max (multi-class) into labels.

Around that, the model card's object rules apply (:mod:`.objects`): a region
of interest outside which nothing is predicted (given by the caller, or
found automatically, e.g. a fundus photograph's field of view); the object
size — with ``diameter="auto"`` (the default) a first pass measures the
median object diameter and, if it differs from the one the network was
trained on, the image is resampled so that they match; and instance labels
(0 = background, 1..N objects) when asked for or when the card says so.

Progress is counted in tiles (one unit per tile per flip), and the cancel
token is checked before every batch of tiles.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..data.input_spec import InputSpec, canonical
from ..models.base import SegmentationModel, class_probabilities
from ..models.card import ModelCard
from ..models.registry import model_from_config
from ..objects import instances_from_head
from ..progress import CancelToken, ProgressCallback, check, part, report
from .device import PRECISIONS, autocast_dtype, resolve_device, resolve_precision
from .fov_scale import check_fov, match_fov, uses_fov
from .objects import (
    Assessment,
    assess,
    assesses,
    auto_zoom,
    automatic_roi,
    check_diameter,
    foreground_pair,
    instance_recipe,
    make_instances,
    measure,
    measuring_zoom,
    separation_head,
    size_note,
    trained_diameter,
    uses_diameter,
    zoom_for,
)
from .tiles import window_starts

#: flips averaged by test-time augmentation (dims of an (N, C, H, W) tensor)
TTA_FLIPS: tuple[tuple[int, ...], ...] = ((), (3,), (2,), (2, 3))
MIN_TILE = 64
Forward = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class InferenceSettings:
    device: str = "auto"
    #: images larger than this (after the working scale) are tiled; None = never tile
    tile_size: int | None = 512
    overlap: float = 0.25
    #: tiles per forward pass
    batch_size: int = 4
    #: average over flips: True, False, or None for the card's recommendation
    #: (``metadata.recommended_tta``, set by models trained and scored with it)
    tta: bool | None = None
    #: auto (bf16 where the hardware computes it natively and faster; fp16 on older
    #: GPUs; else fp32),
    #: fp32, bf16 or fp16; see ``inference.device.resolve_precision``
    precision: str = "auto"
    #: foreground threshold for binary models; None = the card's
    threshold: float | None = None
    blend: str = "gaussian"
    #: the objects' diameter in pixels, "auto" (measured on a first pass) or None (predict at
    #: the card's scale as trained); used by models whose card records an object size
    diameter: float | str | None = "auto"
    #: fundus models (a card with ``fov_diameter``): the field of view's diameter in pixels,
    #: "auto" (measured) or None (predict at the trained scale); see ``inference.fov_scale``
    fov_diameter: float | str | None = "auto"
    #: instance labels: True, False, or None for the card's choice
    instances: bool | None = None
    #: "auto": the card's automatic region of interest (if any); "none": the whole image
    roi: str = "auto"
    #: stacks: link each plane's objects to the next plane's by overlap (IoU at least this,
    #: like Cellpose's stitch threshold) so that an object spanning planes has one id;
    #: None or 0 counts objects plane by plane
    stitch: float | None = 0.25

    def __post_init__(self) -> None:
        if self.tile_size is not None and (isinstance(self.tile_size, bool) or self.tile_size < 16):
            raise ValueError(f"tile size must be at least 16 pixels, got {self.tile_size}")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {self.batch_size}")
        if self.blend not in ("gaussian", "constant"):
            raise ValueError(f"blend must be 'gaussian' or 'constant', got {self.blend!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(
                f"threshold must be a probability between 0 and 1, got {self.threshold:g}"
            )
        self.diameter = check_diameter(self.diameter)
        self.fov_diameter = check_fov(self.fov_diameter)
        if self.roi not in ("auto", "none"):
            raise ValueError(f"roi must be 'auto' or 'none', got {self.roi!r}")
        if self.stitch is not None and (
            isinstance(self.stitch, bool) or not 0.0 <= float(self.stitch) < 1.0
        ):
            raise ValueError(
                f"stitch must be an overlap (IoU) in [0, 1) or None, got {self.stitch!r}"
            )


def uses_tta(tta: bool | None, card: ModelCard | None) -> bool:
    """Whether to average over flips: the setting, or (None) the card's recommendation."""
    if tta is not None:
        return bool(tta)
    return bool(card is not None and (card.metadata or {}).get("recommended_tta"))


@dataclass
class Prediction:
    """Class probabilities ``(*stack, K, H, W)`` and labels ``(*stack, H, W)`` of one image."""

    probabilities: np.ndarray
    labels: np.ndarray
    messages: list[str] = field(default_factory=list)
    #: instance labels ``(*stack, H, W)`` (0 = background, 1..N objects), when made
    instances: np.ndarray | None = None
    #: where the model was applied ``(*stack, H, W)`` (None: everywhere)
    roi: np.ndarray | None = None
    #: the object diameter (pixels of the image) the prediction assumed, if the card has one
    diameter: float | None = None
    #: the extra resampling applied to match the training object size (1: none)
    zoom: float = 1.0
    #: a separation head's own class maps ``(*stack, K, H, W)`` (e.g. background, interior,
    #: boundary, centre), from which the instances were made; ``probabilities`` then holds
    #: [background, object]
    head: np.ndarray | None = None
    #: how much to trust the objects (models that make objects): confidence and its parts,
    #: and a warning when the image looks unlike the training data
    quality: Assessment | None = None

    @property
    def foreground(self) -> np.ndarray:
        """Probability of any foreground class, shaped like ``labels``."""
        return 1.0 - self.probabilities[..., 0, :, :]


def index_label(index: tuple[int, ...]) -> str:
    return ",".join(str(i + 1) for i in index)


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(str(int(s)) for s in shape)


class Predictor:
    """Segment numpy images with any model, as its model card prescribes.

    >>> predictor = Predictor(tile_size=256, tta=True)
    >>> prediction = predictor.predict(model, image)   # (H, W), (H, W, 3), (Z, H, W), …
    """

    def __init__(
        self,
        settings: InferenceSettings | None = None,
        *,
        on_message: Callable[[str], None] | None = None,
        **overrides,
    ) -> None:
        self.settings = replace(settings or InferenceSettings(), **overrides)
        self.device = resolve_device(self.settings.device)
        self.precision = resolve_precision(self.device, self.settings.precision)
        self.on_message = on_message

    def threshold(self, model: SegmentationModel) -> float:
        """The foreground threshold for ``model``: the settings', else its card's."""
        if self.settings.threshold is not None:
            return self.settings.threshold
        return model.card.threshold if model.card is not None else 0.5

    def predict(
        self,
        model: SegmentationModel,
        image: np.ndarray,
        *,
        rgb: bool | None = None,
        channel_axis: int | None = None,
        roi: np.ndarray | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Prediction:
        """Segment an image or a stack, plane by plane.

        ``image`` is ``(H, W)`` grey, ``(H, W, 3|4)`` RGB(A), or a stack of
        them with any leading axes (``(Z, H, W)``, ``(T, Z, H, W, 3)``, …);
        ``channel_axis`` names a channel axis that is not trailing colour (a
        ``(2, H, W)`` two-channel image is a stack of two planes otherwise).
        ``roi`` (nonzero = inside, ``(H, W)`` or shaped like the stack) limits
        the prediction to a region and overrides the card's automatic one.
        Probabilities come back ``(*stack, K, H, W)``, labels ``(*stack, H, W)``.
        """
        canon, layout = canonical(np.asarray(image), rgb=rgb, channel_axis=channel_axis)
        spec = InputSpec.of(model)
        card = model.card or ModelCard(name=model.name)
        run = Run(self, model)
        planes = list(np.ndindex(*layout.stack_shape))
        regions = self._regions(card, canon, layout, planes, roi)
        auto = self.settings.diameter == "auto" and uses_diameter(card)
        # parts of the bar: the measuring pass and its fallback (a full pass of the middle
        # plane, only when the measuring pass finds nothing credible), then each plane
        total = len(planes) + (2 if auto else 0)
        step = 0
        head = separation_head(card)

        def plane_progress(text):
            # each pass fills its own share of one bar, whatever its tile count
            return part(progress, step / total, (step + 1) / total, text)

        def probabilities(index, zoom):
            prepared = spec.prepare(canon[index], rgb=layout.rgb, zoom=zoom)
            label = f"plane {index_label(index)} of {len(planes)}" if len(planes) > 1 else ""
            out = run.probabilities(prepared.tensor, plane_progress(label), cancel)
            return spec.restore(out, prepared.size)[0].numpy(), prepared.nonfinite

        def measured(maps, image_pixels, network_pixels):
            labels = None
            if head is not None and maps.shape[0] > 2:
                decode = instance_recipe(card).get("decode", "centre")
                labels = instances_from_head(maps, head=head, decode=decode, cancel=cancel)
            return measure(1.0 - maps[0], image_pixels=image_pixels,
                           network_pixels=network_pixels, labels=labels)

        zoom, diameter, first = 1.0, trained_diameter(card, spec), {}
        if isinstance(self.settings.diameter, float) and uses_diameter(card):
            diameter = self.settings.diameter
            zoom = zoom_for(card, spec, diameter)
        elif auto:
            # one pass at reduced resolution (≤ 20 % of the pixels) measures the objects; when
            # it finds nothing credible (objects too small for it, or no objects at all), the
            # prediction at the trained scale measures them again before anything is resampled
            reference = planes[len(planes) // 2]
            size = layout.spatial_shape[-2:]
            measuring = measuring_zoom(spec, size)
            found = None
            if measuring is not None:
                prepared = spec.prepare(canon[reference], rgb=layout.rgb, zoom=measuring)
                maps = run.probabilities(
                    prepared.tensor, plane_progress("measuring object size"), cancel
                )[0].numpy()
                # the maps are on the network's grid: one pixel is size / h pixels of the image
                found = measured(maps, size[0] / maps.shape[-2], 1.0)
            step += 1
            if found is None or not found.credible:
                first[reference] = probabilities(reference, 1.0)
                found = measured(first[reference][0], 1.0, spec.scale)
            step += 1
            if found.credible:
                diameter = found.diameter
                zoom = auto_zoom(card, spec, diameter)
            run.notify(size_note(card, spec, found, zoom))
            if zoom != 1.0:
                first = {}
        if uses_fov(card) and self.settings.fov_diameter is not None:
            # fundus photographs of another camera: match the trained field of view; the
            # card's own automatic region, when found, is the field of view
            reference = planes[len(planes) // 2]
            own = roi is None and regions is not None and card.roi.get("method") == "fundus"
            matched, note = match_fov(
                card, spec, self.settings.fov_diameter, np.asarray(canon[reference]),
                rgb=layout.rgb, region=regions[reference] if own else None,
            )  # fmt: skip
            zoom = matched or zoom
            run.notify(note)
        probs, replaced = [], 0
        for index in planes:
            check(cancel)
            out, nonfinite = first.get(index) or probabilities(index, zoom)
            replaced += nonfinite
            step += 1
            if regions is not None:
                outside = ~regions[index]
                out[0][outside] = 1.0
                out[1:, outside] = 0.0
            probs.append(out)
        if replaced:
            run.notify(
                f"{replaced} NaN/Inf pixel value(s) were replaced by their channel's median"
            )
        probabilities_ = np.stack(probs).reshape(*layout.stack_shape, *probs[0].shape)
        head_maps = None
        if head is not None and probabilities_.shape[-3] > 2:
            head_maps, probabilities_ = probabilities_, foreground_pair(probabilities_)
        labels = self.labels(model, probabilities_)
        instances = None
        wanted = self.settings.instances
        if wanted or (wanted is None and instance_recipe(card) is not None):
            if probabilities_.shape[-3] != 2:
                raise ValueError("instance labels need a binary (foreground/background) model")
            report(progress, total, total, "numbering objects")
            instances = make_instances(
                card,
                probabilities_[..., 1, :, :],
                threshold=self.threshold(model),
                diameter=diameter,
                cancel=cancel,
                head_maps=head_maps,
                stitch=self.settings.stitch,
            )
        quality = None
        if assesses(card) and probabilities_.shape[-3] == 2:
            blank = all(float(np.ptp(canon[index])) == 0.0 for index in planes)
            quality = assess(
                card, spec, probabilities_[..., 1, :, :],
                instances if instances is not None else labels, zoom, blank=blank,
            )
            # part of the result (notes, status line); callers decide how to show the warning
            run.messages.append(f"confidence {quality.confidence:.2f} ({quality.objects} objects)")
            if quality.warning():
                run.messages.append("warning: " + quality.warning())
        report(progress, 1, 1, "done")
        return Prediction(
            probabilities_, labels, run.messages, instances, regions, diameter, zoom, head_maps,
            quality,
        )

    def _regions(self, card, canon, layout, planes, roi) -> np.ndarray | None:
        """Where to predict, ``(*stack, H, W)`` bool: the caller's ROI, the card's, or None."""
        spatial = layout.spatial_shape
        if roi is not None:
            roi = np.asarray(roi) != 0
            if roi.shape not in (spatial, spatial[-2:]):
                raise ValueError(
                    f"the region of interest is {_shape(roi.shape)} but the image is "
                    f"{_shape(spatial)}"
                )
            return np.broadcast_to(roi, spatial)
        if self.settings.roi == "none" or not card.roi:
            return None
        regions = np.zeros(spatial, dtype=bool)
        for index in planes:
            regions[index] = automatic_roi(card, np.asarray(canon[index]), rgb=layout.rgb)
        return regions

    def labels(self, model: SegmentationModel, probs: np.ndarray) -> np.ndarray:
        """Threshold (binary) or arg-max (multi-class) probabilities over the class axis."""
        k = probs.shape[-3]
        if k == 2:
            return (probs[..., 1, :, :] >= self.threshold(model)).astype(np.uint8)
        dtype = np.uint8 if k <= 256 else np.uint16
        return probs.argmax(axis=-3).astype(dtype)

    def probabilities(
        self,
        model: SegmentationModel,
        x: torch.Tensor,
        *,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> torch.Tensor:
        """``(N, K, h, w)`` float32 CPU probabilities of a prepared ``(N, C, h, w)`` input."""
        return Run(self, model).probabilities(x, progress, cancel)


class Run:
    """The state of one call: its own network handle, device, tile size and messages."""

    def __init__(self, predictor: Predictor, model: SegmentationModel) -> None:
        self.settings = predictor.settings
        self.precision = predictor.precision
        self.device = predictor.device
        self.on_message = predictor.on_message
        self.model = model
        self.network = _usable_on(model, self.device)
        self.tta = uses_tta(self.settings.tta, model.card)
        self.tile = self.settings.tile_size
        self.batch = self.settings.batch_size
        self.messages: list[str] = []

    def notify(self, message: str) -> None:
        self.messages.append(message)
        if self.on_message is not None:
            self.on_message(message)

    @torch.inference_mode()
    def probabilities(self, x: torch.Tensor, progress, cancel) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float32)
        while True:
            try:
                return self.tiled(self.forward, x, progress, cancel)
            except torch.cuda.OutOfMemoryError:
                self.recover_from_oom()

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Class probabilities of a batch, at the run's precision."""
        batch = batch.to(self.device)
        dtype = autocast_dtype(self.device, self.precision)
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            logits = self.network(batch)
        return class_probabilities(logits).float()

    def tiled(
        self, forward: Forward, x: torch.Tensor, progress, cancel
    ) -> torch.Tensor:
        """``forward`` over ``x`` (N, C, h, w): whole, or in blended tiles; flips for TTA."""
        flips = TTA_FLIPS if self.tta else ((),)
        tile = self.tile
        tiled = tile is not None and max(x.shape[-2:]) > tile
        per_flip = (
            len(window_starts(x.shape[-2], tile, self.settings.overlap))
            * len(window_starts(x.shape[-1], tile, self.settings.overlap))
            if tiled
            else 1
        ) * x.shape[0]
        total = per_flip * len(flips)
        done = 0

        def counted(batch: torch.Tensor) -> torch.Tensor:
            nonlocal done
            check(cancel)
            out = forward(batch)
            done += batch.shape[0]
            report(progress, min(done, total), total, "predicting")
            return out

        if tiled:  # imported when first needed: MONAI takes seconds to import
            from monai.inferers import sliding_window_inference
        result = None
        for dims in flips:
            xf = torch.flip(x, dims) if dims else x
            if tiled:
                out = sliding_window_inference(
                    xf,
                    roi_size=(tile, tile),
                    sw_batch_size=self.batch,
                    predictor=counted,
                    overlap=self.settings.overlap,
                    mode=self.settings.blend,
                    sw_device=self.device,
                    device=torch.device("cpu"),
                )
                out = torch.as_tensor(out)  # MetaTensor -> Tensor
            else:
                out = counted(xf).cpu()
            out = torch.flip(out, dims) if dims else out
            result = out if result is None else result + out
        return result / len(flips)

    def recover_from_oom(self) -> None:
        """Out of GPU memory: smaller tiles for this call, then a CPU copy of the model."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        tile = self.tile
        if tile is not None and tile // 2 >= MIN_TILE and self.device.type != "cpu":
            self.tile, self.batch = tile // 2, 1
            self.notify(f"out of GPU memory: retrying with {tile // 2}px tiles")
        elif self.device.type != "cpu":
            self.device = torch.device("cpu")
            self.network = _cpu_copy(self.model)
            self.notify("out of GPU memory: continuing on the CPU")
        else:
            raise MemoryError("out of memory on the CPU; try a smaller tile size")


def _parameters_on(model: torch.nn.Module, device: torch.device) -> bool:
    tensors = [*model.parameters(), *model.buffers()]
    target = device.type, device.index
    return all((t.device.type, t.device.index or 0) == (target[0], target[1] or 0) for t in tensors)


def _usable_on(model: SegmentationModel, device: torch.device) -> torch.nn.Module:
    """``model`` itself when it is on ``device`` in eval mode, else a private eval copy there."""
    if not model.training and _parameters_on(model, device):
        return model
    return copy.deepcopy(model).to(device).eval()


def _cpu_copy(model: SegmentationModel) -> torch.nn.Module:
    """A CPU copy that never allocates on the (full) GPU: rebuilt from config + CPU tensors."""
    state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    if model.config:
        clone = model_from_config(model.config)
        clone.load_state_dict(state)
        clone.card = model.card
        return clone.eval()
    clone = copy.deepcopy(model).to("cpu")  # pragma: no cover - every built-in model has a config
    return clone.eval()


def predict_image(model: SegmentationModel, image: np.ndarray, **settings) -> Prediction:
    """One-call convenience: ``Predictor(**settings).predict(model, image)``."""
    return Predictor(**settings).predict(model, image)
