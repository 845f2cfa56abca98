"""What a user waits for, timed whole: one image end to end, a large image tiled,
and a fine-tune round.

The first two go through :class:`~napari_attnseg.inference.Predictor` (so they
include normalisation and labelling), the last through
:class:`~napari_attnseg.training.Trainer` (so it includes set-up and distance maps).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from ..inference.tiles import window_starts
from .execution import Variant, prepare_input, prepare_model, running
from .measure import measure_once, synchronize, time_repeats, timing_fields
from .networks import DEFAULT_MODEL, build_network, compact_options
from .settings import BenchSettings, Log
from .synthetic import synthetic_image


def _predictor_model(settings: BenchSettings) -> tuple[nn.Module, str]:
    """``(model, its label)`` for the Predictor runs: ``settings.e2e_model`` or a fresh default."""
    if settings.e2e_model:
        from ..zoo import load

        return load(settings.e2e_model), settings.e2e_model
    torch.manual_seed(settings.seed)
    model, _ = build_network(DEFAULT_MODEL, settings.in_channels)
    return model, f"{DEFAULT_MODEL} {compact_options(DEFAULT_MODEL)} (fresh weights)"


def measure_end_to_end(settings: BenchSettings, device: torch.device, log: Log) -> dict[str, Any]:
    """Seconds for one RGB image through ``Predictor.predict`` (normalise, predict, label)."""
    from ..inference import Predictor

    model, label = _predictor_model(settings)
    size = settings.e2e_size
    predictor = Predictor(device=str(device), precision=settings.precision,
                          tile_size=max(size, settings.tile_size), batch_size=1, tta=False)
    image = synthetic_image(size, 3, settings.seed)
    log(f"end to end {label} {size}x{size} RGB")
    times = time_repeats(lambda: predictor.predict(model, image), device, **settings.repetition)
    return {
        "model": label, "image": [size, size, 3], "dtype": "uint8",
        "precision": settings.precision,
        "seconds": statistics.median(times), **timing_fields(times),
    }


def tiles_per_axis(size: int, tile: int, overlap: float) -> int:
    """How many tiles of edge ``tile`` with ``overlap`` cover an edge of ``size`` pixels."""
    return len(window_starts(size, tile, overlap))


def measure_sliding_window(
    settings: BenchSettings, device: torch.device, log: Log
) -> dict[str, Any]:
    """One tiled prediction of a large synthetic RGB image, with peak memory growth."""
    from ..inference import Predictor

    model, label = _predictor_model(settings)
    size, tile = settings.large_size, settings.tile_size
    predictor = Predictor(device=str(device), precision=settings.precision, tile_size=tile,
                          overlap=settings.overlap, batch_size=settings.tile_batch, tta=False)
    warm = synthetic_image(tile, 3, settings.seed + 1)
    predictor.predict(model, warm)  # one-off start-up costs (thread pools, kernels) stay out
    image = synthetic_image(size, 3, settings.seed)
    tiles = tiles_per_axis(size, tile, settings.overlap) ** 2
    log(f"sliding window {size}x{size} RGB, {tiles} tiles of {tile}")
    prediction, seconds, meter = measure_once(lambda: predictor.predict(model, image), device)
    if prediction.labels.shape != (size, size):
        raise RuntimeError(
            f"sliding window returned labels {prediction.labels.shape}, not {size}²"
        )
    return {
        "via": "Predictor", "variant": f"Predictor precision={settings.precision}",
        "model": label, "image": [size, size, 3], "tile_size": tile, "overlap": settings.overlap,
        "tile_batch": settings.tile_batch, "tiles": tiles, "seconds": seconds,
        "megapixels_per_s": size * size / 1e6 / seconds,
        "peak_memory_mb": meter.device_peak_mb,
        "host_rss_growth_mb": meter.host_growth_mb,
        "input_mb": image.nbytes / 2**20,
    }


def measure_window_variant(
    settings: BenchSettings, device: torch.device, variant: Variant, log: Log
) -> dict[str, Any]:
    """The sliding window of :func:`measure_sliding_window` through the benchmark's own call.

    It mirrors ``Predictor`` (card normalisation, MONAI ``sliding_window_inference``
    with Gaussian blending, output kept on the CPU, threshold into labels) but
    runs the network as ``variant`` (precision, channels-last, ...), and counts
    progress in *tiles*: ``progress_final`` must equal ``tiles``.
    """
    from monai.inferers import sliding_window_inference

    from ..data.input_spec import InputSpec
    from ..models.base import class_probabilities
    from ..models.persistence import card_of

    model, label = _predictor_model(settings)
    card = card_of(model)
    net = prepare_model(model.to(device), variant)
    size, tile = settings.large_size, settings.tile_size
    tiles = tiles_per_axis(size, tile, settings.overlap) ** 2
    progress: list[tuple[int, int]] = []

    def forward(batch: torch.Tensor) -> torch.Tensor:
        batch = prepare_input(batch.to(device), variant)
        probs = class_probabilities(net(batch)).float()
        done = (progress[-1][0] if progress else 0) + batch.shape[0]
        progress.append((done, tiles))  # (tiles done, tiles in all), as a progress bar gets
        return probs

    def predict(image):
        x = torch.as_tensor(InputSpec.of(model).network_input(image, rgb=True)[0])[None]
        with running(variant, device):
            probs = sliding_window_inference(
                x, roi_size=(tile, tile), sw_batch_size=settings.tile_batch, predictor=forward,
                overlap=settings.overlap, mode="gaussian", sw_device=device,
                device=torch.device("cpu"),
            )
        probs = torch.as_tensor(probs)[0]
        return (probs[1] >= card.threshold).numpy().astype("uint8") if probs.shape[0] == 2 \
            else probs.argmax(0).numpy().astype("uint8")

    predict(synthetic_image(tile, 3, settings.seed + 1))  # start-up costs stay out
    progress.clear()
    image = synthetic_image(size, 3, settings.seed)
    log(f"sliding window {size}x{size} RGB, {tiles} tiles of {tile}, {variant.name}, "
        f"{settings.tile_batch} per batch (own call)")
    labels, seconds, meter = measure_once(lambda: predict(image), device)
    if labels.shape != (size, size):
        raise RuntimeError(f"sliding window returned labels {labels.shape}, not {size}²")
    return {
        "via": "sliding_window_inference", "variant": variant.name, "model": label,
        "image": [size, size, 3], "tile_size": tile, "overlap": settings.overlap,
        "tile_batch": settings.tile_batch, "tiles": tiles, "seconds": seconds,
        "megapixels_per_s": size * size / 1e6 / seconds,
        "peak_memory_mb": meter.device_peak_mb, "host_rss_growth_mb": meter.host_growth_mb,
        "input_mb": image.nbytes / 2**20,
        "progress_calls": len(progress), "progress_final": list(progress[-1]) if progress else None,
    }


def measure_finetune(
    arch: str, settings: BenchSettings, device: torch.device, samples: list, log: Log
) -> dict[str, Any]:
    """Seconds of one fine-tune round (Trainer set-up + one epoch) for ``arch``."""
    from ..training import TrainConfig, Trainer

    torch.manual_seed(settings.seed)
    model, options = build_network(arch, settings.in_channels)
    config = TrainConfig(
        epochs=1, batch_size=settings.finetune_batch, patch_size=settings.finetune_patch_size,
        samples_per_epoch=settings.finetune_patches, schedule="none", early_stopping=None,
        device=str(device), precision=settings.precision, seed=settings.seed,
    )
    if hasattr(config, "precision"):  # the trainer's precision setting, where it has one
        config = replace(config, precision=settings.precision)
    fresh = [replace(s, dpt=None) for s in samples]  # distance maps are part of the round
    log(f"fine-tune round {arch}")
    start = time.perf_counter()
    trainer = Trainer(model, config, fresh, [])
    history = trainer.fit()
    synchronize(device)
    seconds = time.perf_counter() - start
    epoch = history.epochs[0]
    return {
        "model": arch, "options": options, "seconds": seconds, "epoch_seconds": epoch["seconds"],
        "steps": trainer.steps_per_epoch,
        "seconds_per_step": epoch["seconds"] / trainer.steps_per_epoch,
        "train_loss": epoch["train_loss"], "loss": config.loss,
    }
