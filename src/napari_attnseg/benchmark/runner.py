"""One benchmark run: every measurement its settings ask for, in an order that keeps
them honest, gathered into one JSON-ready report."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import torch

from .execution import library_default_spec, parse_variant, parse_variants
from .machine import load_average, machine_info
from .networks import compact_options, resolve_architectures
from .ops import measure_ops
from .real import build_mosaic, measure_real
from .settings import BenchSettings, Log
from .synthetic import synthetic_samples
from .targets import evaluate_targets
from .throughput import measure_throughput, throughput_ratios
from .train_step import measure_train_steps, train_step_speedups
from .workflows import (
    measure_end_to_end,
    measure_finetune,
    measure_sliding_window,
    measure_window_variant,
)


def run_benchmark(
    settings: BenchSettings, *, command: str = "", log: Log | None = None
) -> dict[str, Any]:
    """Run every measurement ``settings`` asks for; returns the JSON-ready report."""
    from ..inference import resolve_device, resolve_precision

    log = log or (lambda message: None)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = resolve_device(settings.device)
    precision = resolve_precision(device, settings.precision)
    variants = parse_variants(settings.variants, device, settings.precision)
    library = parse_variant(library_default_spec(device), device, settings.precision)
    archs = resolve_architectures(settings.archs)
    # the real-image mosaic is read first, so that a wrong folder fails before anything is timed
    mosaic = None
    if settings.real and settings.real_images:
        log(f"real-image mosaic from {settings.real_images}")
        mosaic = build_mosaic(settings.real_images, settings.real_labels, settings.real_size)
    cudnn_benchmark = torch.backends.cudnn.benchmark
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    started = time.time()
    report: dict[str, Any] = {
        "command": command,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(started)),
        "machine": machine_info(device),
        "precision": precision,
        "variants": [v.name for v in variants],
        "baseline_variant": variants[0].name,
        "library_variant": library.name,
        "cudnn_benchmark": device.type == "cuda",
        "settings": asdict(settings) | {"archs": archs},
        "compact_defaults": {a: compact_options(a) for a in archs},
        "load_average": {"start": load_average()},
    }
    if mosaic is None:
        report["real_skipped"] = real_skip_reason(settings)
    try:
        # first, while the process is small, so its memory growth is not hidden by earlier work
        if settings.large_size:
            windows = []
            if settings.window_predictor:
                windows.append(measure_sliding_window(settings, device, log))
            for variant in parse_variants(settings.window_variants, device, settings.precision):
                windows.append(measure_window_variant(settings, device, variant, log))
            report["sliding_windows"] = windows
        if settings.e2e_size:
            report["end_to_end"] = measure_end_to_end(settings, device, log)
        if mosaic is not None:
            report["real"] = measure_real(mosaic, settings, device, log)
            del mosaic
        if settings.ops:
            report["ops"] = measure_ops(settings, device, log)
        if settings.throughput:
            records = measure_throughput([*archs, *settings.references], settings, device,
                                         variants, log)
            report["throughput"] = records
            report["ratios"] = throughput_ratios(records, baseline=variants[0].name)
        if settings.train_steps:
            train_variants = parse_variants(settings.train_variants, device, settings.precision)
            steps = measure_train_steps(archs, settings, device, train_variants, log)
            report["train_steps"] = steps
            report["train_speedups"] = train_step_speedups(steps, train_variants[0].name)
        if settings.finetune:
            samples = synthetic_samples(4, 2 * settings.finetune_patch_size,
                                        settings.in_channels, settings.seed)
            report["finetune"] = [
                measure_finetune(arch, settings, device, samples, log) for arch in archs
            ]
    finally:
        torch.backends.cudnn.benchmark = cudnn_benchmark
    report["load_average"]["end"] = load_average()
    report["seconds"] = time.time() - started
    report["targets"] = evaluate_targets(report, device)
    return report


def real_skip_reason(settings: BenchSettings) -> str:
    """Why a run has no real-image section, in one line for the report."""
    if not settings.real:
        return "real-image section turned off (--no-real)"
    return ("real-image section skipped: no --real-images folder given (a mosaic of DSB2018 "
            "fluorescence images with their labels; see `attnseg bench --help`)")
