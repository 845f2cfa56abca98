"""End to end on a real image: a mosaic of DSB2018 nuclei images, timed and scored.

The images are research data that are never committed or bundled: ``attnseg bench
--real-images DIR [--real-labels DIR]`` points at a folder of RGB images and a
folder of their instance labels (uint16 ids, 0 = background) with the same file
stems. :func:`build_mosaic` takes the *fluorescence-like* ``dsb_`` images of the
folder (grey, dark background: :func:`fluorescence_like`) in sorted order and
pastes them, at their native resolution, row by row into one square RGB canvas
(next-fit shelf packing; an image that does not fit in what is left of the
canvas is cropped), their labels alongside, renumbered so that every object
keeps an id of its own; the background is 0 where nothing was pasted.

:func:`measure_real` then times on one device, round-robin (one call of each in
turn, repeated ``settings.real_repeats`` times, after a warm-up on the crop):

(a) **ours**: :class:`~napari_attnseg.inference.Predictor` with its *default*
    settings and instance labels, through the task's default zoo model —
    what ``attnseg predict --model nuclei --instances`` does: from the RGB
    array to instance labels (normalisation, object-size pass and resampling,
    tiled prediction, watershed) — scored against the labels: pixel Dice of
    the foreground, instance AP at IoU 0.5 and mean AP (0.50:0.95);
(b) **MONAI**: ``monai.inferers.sliding_window_inference`` over MONAI's
    ``AttentionUnet`` at our stage widths with the default model's classes
    (:func:`~.networks.build_network`, fresh weights) on the same image, with
    the Predictor's tile size, overlap and tile batch and Gaussian blending —
    the network alone, no pre- or post-processing (the float tensor is made
    before the clock starts);
(c) **noise**: (a) on seeded uniform uint8 RGB noise of the mosaic's size — a
    prediction with nothing to find: time and objects found;
(d) **crop**: (a) on the top-left ``settings.real_crop``² crop of the mosaic,
    the size a user clicks on (target: ≤ 0.6 s on 2 idle CPU cores), topped up
    to the usual repeat count after the rounds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .machine import load_average
from .measure import synchronize, timing_fields, wants_more
from .networks import MONAI_ATTENTION_UNET, build_network
from .settings import BenchSettings, Log
from .synthetic import synthetic_image

#: only images whose file name starts so are DSB2018 (``monuseg_`` ones are H&E)
DSB_PREFIX = "dsb_"
#: fluorescence-like: the median grey value is below this (dark background) ...
MAX_MEDIAN = 100.0
#: ... and the colour channels differ from their mean by less than this on average (grey)
MAX_CHANNEL_DIFFERENCE = 4.0
#: the labels folder when none is given: this sibling of the images folder
LABELS_FOLDER = "labels"


@dataclass
class Mosaic:
    """A square RGB mosaic of real images and its instance labels (ground truth)."""

    #: ``(S, S, 3)`` uint8
    image: np.ndarray
    #: ``(S, S)`` int32 instance ids, unique over the mosaic (1..N), 0 = background
    labels: np.ndarray
    images_dir: Path
    labels_dir: Path
    #: one per pasted image: name, where (y, x), pasted height and width, its shape, cropped
    tiles: list[dict[str, Any]] = field(default_factory=list)
    #: ``dsb_`` images read and left out as not fluorescence-like
    skipped: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return int(self.image.shape[0])

    @property
    def objects(self) -> int:
        return int(self.labels.max(initial=0))

    def summary(self) -> dict[str, Any]:
        """What the report records about the mosaic (no pixels)."""
        covered = sum(t["height"] * t["width"] for t in self.tiles) / self.labels.size
        return {
            "size": [self.size, self.size, 3], "images_dir": str(self.images_dir),
            "labels_dir": str(self.labels_dir), "tiles": len(self.tiles),
            "cropped": sum(t["cropped"] for t in self.tiles), "covered": round(covered, 4),
            "objects": self.objects, "foreground": round(float(np.mean(self.labels > 0)), 4),
            "sources": [t["name"] for t in self.tiles], "skipped": list(self.skipped),
        }


def real_folders(images: str | Path, labels: str | Path | None = None) -> tuple[Path, Path]:
    """``(images folder, labels folder)``, both checked to be folders.

    ``labels`` None means the sibling ``labels`` folder of ``images``.
    """
    images_dir = Path(images).expanduser()
    labels_dir = images_dir.parent / LABELS_FOLDER if labels is None else \
        Path(labels).expanduser()
    for option, folder in (("--real-images", images_dir), ("--real-labels", labels_dir)):
        if not folder.exists():
            raise FileNotFoundError(f"real-image folder not found: {folder} ({option})")
        if not folder.is_dir():
            raise NotADirectoryError(f"{folder} is not a folder ({option} takes a folder)")
    return images_dir, labels_dir


def fluorescence_like(image: np.ndarray) -> bool:
    """Whether an ``(H, W, 3)`` uint8 image looks like fluorescence: grey, dark background."""
    rgb = image.astype(np.float32)
    grey = rgb.mean(axis=-1)
    difference = float(np.abs(rgb - grey[..., None]).mean())
    return float(np.median(grey)) < MAX_MEDIAN and difference < MAX_CHANNEL_DIFFERENCE


def _rgb8(image: np.ndarray, path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 from a grey or RGB(A) image (other dtypes scaled from their maximum)."""
    from ..data.input_spec import is_colour
    from ..data.io import ImageFileError

    if image.ndim == 3 and is_colour(image.shape):
        image = image[..., :3]
    elif image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    else:
        raise ImageFileError(f"{path} has shape {image.shape}; the mosaic takes grey or RGB(A) "
                             "2D images")
    if image.dtype != np.uint8:
        top = float(np.max(image)) if image.size else 0.0
        scaled = image.astype(np.float64) * (255.0 / top) if top > 0 else np.zeros(image.shape)
        image = np.clip(np.round(scaled), 0, 255).astype(np.uint8)
    return image


def build_mosaic(
    images: str | Path, labels: str | Path | None = None, size: int = 2048,
    prefix: str = DSB_PREFIX,
) -> Mosaic:
    """A ``size``² mosaic of the fluorescence-like ``prefix`` images in ``images`` (sorted by
    name) and of their labels from ``labels`` (same stems; None: the sibling ``labels`` folder).

    Each image is contrast-stretched to its own 0.5–99.8 percentiles first (one exposure
    per image, as a microscope's tiles are, rather than very dim and very bright ones side
    by side under one normalisation). Images are pasted at native resolution left to right
    along a shelf; one that
    does not fit in the rest of the shelf starts the next shelf below the
    tallest image of this one (next-fit shelf packing); what crosses the right
    or bottom edge of the canvas is cropped; packing stops when the canvas is
    full or the images run out. Each image's objects are renumbered 1..n and
    offset past the ids already pasted, so ids are unique over the mosaic.
    Deterministic: the same folders give the same mosaic.
    """
    from ..data.io import ImageFileError, is_image_file, read_image, read_mask

    if size < 16:
        raise ValueError(f"the mosaic must be at least 16 pixels wide, got {size}")
    images_dir, labels_dir = real_folders(images, labels)
    candidates = sorted((p for p in images_dir.iterdir()
                         if p.name.startswith(prefix) and is_image_file(p)),
                        key=lambda p: p.name)
    if not candidates:
        raise ValueError(f"no {prefix}* images in {images_dir}")
    label_files = {p.stem: p for p in sorted(labels_dir.iterdir()) if is_image_file(p)}
    canvas = np.zeros((size, size, 3), np.uint8)
    ids = np.zeros((size, size), np.int32)
    mosaic = Mosaic(canvas, ids, images_dir, labels_dir)
    y = x = shelf = offset = 0
    for path in candidates:
        image = _rgb8(read_image(path), path)
        if not fluorescence_like(image):
            mosaic.skipped.append(path.name)
            continue
        label_path = label_files.get(path.stem)
        if label_path is None:
            raise FileNotFoundError(
                f"no labels for {path.name} in {labels_dir} (expected {path.stem}.png there)"
            )
        truth = read_mask(label_path, binary=False)
        if truth.shape != image.shape[:2]:
            raise ImageFileError(f"{label_path} is {truth.shape[0]}×{truth.shape[1]} but its "
                                 f"image {path} is {image.shape[0]}×{image.shape[1]}")
        h, w = image.shape[:2]
        if x > 0 and x + w > size:  # the next shelf
            y, x, shelf = y + shelf, 0, 0
        if y >= size:
            break
        ph, pw = min(h, size - y), min(w, size - x)
        canvas[y:y + ph, x:x + pw] = _stretched(image)[:ph, :pw]
        piece = truth[:ph, :pw]
        inside = piece > 0
        present = np.unique(piece[inside])
        ids[y:y + ph, x:x + pw][inside] = np.searchsorted(present, piece[inside]) + 1 + offset
        offset += int(present.size)
        mosaic.tiles.append({"name": path.name, "y": y, "x": x, "height": ph, "width": pw,
                             "shape": [h, w], "cropped": (ph, pw) != (h, w)})
        x += pw
        shelf = max(shelf, ph)
    if not mosaic.tiles:
        raise ValueError(
            f"none of the {len(candidates)} {prefix}* images in {images_dir} is fluorescence-like"
            f" (grey, median below {MAX_MEDIAN:g})"
        )
    return mosaic


def _stretched(image: np.ndarray) -> np.ndarray:
    """``image`` (uint8 RGB) contrast-stretched to its own 0.5–99.8 percentiles."""
    low, high = np.percentile(image, (0.5, 99.8))
    scaled = (image.astype(np.float32) - low) / max(1e-6, float(high - low))
    return (255 * np.clip(scaled, 0, 1)).astype(np.uint8)


# -- the measurement ----------------------------------------------------------
def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """``(fn's result, its seconds)``, queued GPU work included."""
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return result, time.perf_counter() - start


def _times(times: list[float]) -> dict[str, Any]:
    return {"seconds": statistics.median(times), "min_s": min(times), **timing_fields(times)}


def _scores(prediction, truth: np.ndarray) -> dict[str, Any]:
    """Pixel Dice of the foreground and instance AP@0.5 / mean AP of one prediction."""
    from ..metrics import binary_metrics
    from ..objects.matching import instance_metrics

    found = instance_metrics(truth, prediction.instances)
    return {
        "dice": binary_metrics(prediction.labels, truth)["dice"],
        "ap50": found["ap50"], "mean_ap": found["mean_ap"],
        "objects": found["n_pred"], "true_objects": found["n_true"],
    }


def _found(prediction) -> dict[str, Any]:
    """How a prediction came out: objects, the object diameter it assumed, its resampling."""
    instances = prediction.instances
    return {
        "objects": int(np.count_nonzero(np.unique(instances))) if instances is not None else 0,
        "diameter": prediction.diameter, "zoom": prediction.zoom,
        "messages": list(prediction.messages),
    }


def measure_real(
    mosaic: Mosaic, settings: BenchSettings, device: torch.device, log: Log
) -> dict[str, Any]:
    """(a)–(d) of the module docstring on ``mosaic``, round-robin; the report's ``real``."""
    from monai.inferers import sliding_window_inference

    from ..inference import Predictor, autocast_dtype
    from ..inference.predictor import uses_tta
    from ..zoo import load, resolve

    started = time.time()
    loads = {"start": load_average()}
    predictor = Predictor(device=str(device), precision=settings.precision, instances=True)
    model = load(settings.real_model, device=predictor.device)
    defaults = predictor.settings
    tile, overlap, tile_batch = defaults.tile_size or 512, defaults.overlap, defaults.batch_size
    torch.manual_seed(settings.seed)
    net, options = build_network(MONAI_ATTENTION_UNET, model.in_channels,
                                 out_channels=model.n_classes)
    net = net.to(device).eval()
    dtype = autocast_dtype(device, predictor.precision)

    def monai_call(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype,
                                                     enabled=dtype is not None):
            return sliding_window_inference(x, roi_size=(tile, tile), sw_batch_size=tile_batch,
                                            predictor=net, overlap=overlap, mode="gaussian")

    def as_tensor(image: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(image).permute(2, 0, 1)[None].float().div(255).to(device)

    size, crop_size = mosaic.size, min(settings.real_crop, mosaic.size)
    image, truth = mosaic.image, mosaic.labels
    crop, crop_truth = image[:crop_size, :crop_size], truth[:crop_size, :crop_size]
    noise = synthetic_image(size, 3, settings.seed)
    x, x_crop = as_tensor(image), as_tensor(crop)
    jobs: dict[str, Callable[[], Any]] = {
        "ours": lambda: predictor.predict(model, image),
        "monai": lambda: monai_call(x),
        "noise": lambda: predictor.predict(model, noise),
        "crop": lambda: predictor.predict(model, crop),
    }
    log(f"real image: {size}x{size} mosaic of {len(mosaic.tiles)} images "
        f"({mosaic.objects} nuclei), {settings.real_model} (defaults, instances) vs "
        f"{MONAI_ATTENTION_UNET} sliding window, noise, {crop_size}² crop; "
        f"{settings.real_repeats} round(s)")
    for _ in range(settings.warmup):  # start-up costs (thread pools, kernels) stay out
        jobs["crop"]()
        monai_call(x_crop)
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in jobs}
    last: dict[str, Any] = {}
    for round_ in range(settings.real_repeats):
        for name, job in jobs.items():
            last[name], seconds = _timed(job, device)
            times[name].append(seconds)
            log(f"  round {round_ + 1}: {name} {seconds:.2f} s")
        last["monai"] = None  # the MONAI output is not scored; let it go
    while wants_more(len(times["crop"]), sum(times["crop"]), repeats=settings.repeats,
                     min_time=settings.min_time, max_repeats=settings.max_repeats):
        last["crop"], seconds = _timed(jobs["crop"], device)
        times["crop"].append(seconds)
    ours = {**_times(times["ours"]), **_found(last["ours"]), **_scores(last["ours"], truth)}
    crop_record = {"size": [crop_size, crop_size, 3], **_times(times["crop"]),
                   **_found(last["crop"]), **_scores(last["crop"], crop_truth)}
    monai = {"network": MONAI_ATTENTION_UNET, "options": options, "roi_size": tile,
             "overlap": overlap, "mode": "gaussian", "sw_batch_size": tile_batch,
             "weights": "fresh", **_times(times["monai"])}
    noise_record = {**_times(times["noise"]), **_found(last["noise"])}
    loads["end"] = load_average()
    return {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(started)),
        "load_average": loads,
        "model": settings.real_model, "model_file": resolve(settings.real_model).stem,
        "precision": predictor.precision,
        "predictor": {"tile_size": defaults.tile_size, "overlap": overlap,
                      "batch_size": tile_batch, "tta": defaults.tta,
                      "tta_used": uses_tta(defaults.tta, model.card),
                      "diameter": defaults.diameter, "roi": defaults.roi, "instances": True},
        "rounds": settings.real_repeats,
        "mosaic": mosaic.summary(),
        "ours": ours, "monai": monai, "noise": noise_record, "crop": crop_record,
        "ours_over_monai": ours["seconds"] / monai["seconds"],
        "noise_over_real": noise_record["seconds"] / ours["seconds"],
        "seconds": time.time() - started,
    }
