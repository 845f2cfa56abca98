"""Inference throughput of each network, timed round-robin, and ours / MONAI time ratios."""

from __future__ import annotations

import copy
import gc
import statistics
from functools import partial
from typing import Any

import torch
from torch import nn

from .execution import Variant, prepare_input, prepare_model, running
from .measure import measure_once, timing_fields, wants_more
from .networks import (
    MONAI_REFERENCES,
    RATIO_PAIRS,
    build_network,
    forward_gflops,
    parameter_count,
)
from .settings import BenchSettings, Log

#: what a network that does not fit (or otherwise fails) raises; OOM is a RuntimeError too
_FAILURES = (RuntimeError, torch.cuda.OutOfMemoryError)
#: (seconds of each timed call, peak memory MiB) or an error message
Result = tuple[list[float], float | None] | str


def measure_throughput(
    names: list[str], settings: BenchSettings, device: torch.device, variants: list[Variant],
    log: Log,
) -> list[dict[str, Any]]:
    """One record per (network, variant, size, batch).

    For each (size, batch) every (network, variant) pair is timed *round-robin*
    — one call of each in turn, repeated — so that load from other processes
    falls on all of them alike and the ratios between them stay meaningful on
    a busy machine.
    """
    networks: dict[tuple[str, str], nn.Module | str] = {}
    infos = {}
    gflops_size = min(settings.sizes)
    for name in names:
        torch.manual_seed(settings.seed)
        model, options = build_network(name, settings.in_channels)
        model = model.to(device).eval()
        infos[name] = {
            "model": name,
            "source": "monai" if name in MONAI_REFERENCES else "napari_attnseg",
            "options": options,
            "params": parameter_count(model),
            f"gflops_{gflops_size}": round(
                forward_gflops(model, settings.in_channels, gflops_size, device), 3
            ),
        }
        for variant in variants:
            try:
                networks[name, variant.name] = prepare_model(copy.deepcopy(model), variant)
            except RuntimeError as exc:
                networks[name, variant.name] = _error_text(exc)
    by_name = {v.name: v for v in variants}
    records = []
    for size in settings.sizes:
        for batch in settings.batch_sizes:
            log(f"throughput {size}x{size} batch {batch}: {len(names)} networks x "
                f"{', '.join(by_name)}")
            x = torch.randn(batch, settings.in_channels, size, size, device=device)
            results = _round_robin(networks, by_name, x, settings, device)
            for (name, variant), result in results.items():
                if isinstance(result, str):
                    log(f"  {name} {variant} failed: {result}")
                records.append({**infos[name], "variant": variant,
                                "precision": by_name[variant].precision,
                                "size": size, "batch": batch, **_result_fields(result, batch)})
            del x
    networks.clear()
    gc.collect()
    return records


def _result_fields(result: Result, batch: int) -> dict[str, Any]:
    """A throughput record's measured fields: speed and memory, or the error."""
    if isinstance(result, str):
        return {"error": result}
    times, peak = result
    median = statistics.median(times)
    return {"ms_per_image": 1000.0 * median / batch, "images_per_s": batch / median,
            "min_ms_per_image": 1000.0 * min(times) / batch,
            "peak_memory_mb": peak, **timing_fields(times)}


def _error_text(exc: BaseException) -> str:
    return str(exc)[:300]


def _round_robin(
    networks: dict[tuple[str, str], nn.Module | str], variants: dict[str, Variant],
    x: torch.Tensor, settings: BenchSettings, device: torch.device,
) -> dict[tuple[str, str], Result]:
    """``{(name, variant): (seconds of each timed call, peak memory MiB) or an error}``."""
    inputs = {name: prepare_input(x, v) for name, v in variants.items()}

    def forward(key: tuple[str, str]) -> None:
        variant = variants[key[1]]
        with running(variant, device):
            networks[key](inputs[key[1]])

    errors: dict[tuple[str, str], str] = {
        key: model for key, model in networks.items() if isinstance(model, str)
    }
    for key in networks:
        if key in errors:
            continue
        try:
            for _ in range(settings.warmup):
                forward(key)
        except _FAILURES as exc:
            errors[key] = _error_text(exc)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    live = [key for key in networks if key not in errors]
    times: dict[tuple[str, str], list[float]] = {key: [] for key in live}
    peaks: dict[tuple[str, str], list[float]] = {key: [] for key in live}
    rounds = 0
    while live and wants_more(rounds, min(sum(t) for t in times.values()),
                              repeats=settings.repeats, min_time=settings.min_time,
                              max_repeats=settings.max_repeats):
        for key in list(live):
            try:
                # a sampling thread would contend for the GIL with GPU kernel launches: CPU only
                _, seconds, meter = measure_once(partial(forward, key), device,
                                                 host=device.type == "cpu")
            except _FAILURES as exc:
                errors[key] = _error_text(exc)
                live.remove(key)
                del times[key]
                continue
            times[key].append(seconds)
            if meter.device_peak_mb is not None:
                peaks[key].append(meter.device_peak_mb)
        rounds += 1
    results: dict[tuple[str, str], Result] = dict(errors)
    for key, t in times.items():
        results[key] = (t, max(peaks[key]) if peaks[key] else None)
    return {key: results[key] for key in networks}


def throughput_ratios(
    records: list[dict[str, Any]], baseline: str | None = None
) -> list[dict[str, Any]]:
    """Per-image time of ours / MONAI reference for each :data:`RATIO_PAIRS` pair and setting.

    Each of our variants is compared with the reference run the same way and,
    when ``baseline`` (a variant name, e.g. ``"fp32"``) differs, with the
    reference run as ``baseline`` — how a MONAI user runs it by default.
    """
    index = {(r["model"], r.get("variant", ""), r["size"], r["batch"]): r
             for r in records if "ms_per_image" in r}
    ratios = []
    for ours, reference in RATIO_PAIRS:
        for (model, variant, size, batch), record in index.items():
            if model != ours:
                continue
            for ref_variant in dict.fromkeys([variant, baseline or variant]):
                other = index.get((reference, ref_variant, size, batch))
                if other is None:
                    continue
                ratios.append({
                    "ours": ours, "reference": reference, "size": size, "batch": batch,
                    "variant": variant, "reference_variant": ref_variant,
                    "ours_ms_per_image": record["ms_per_image"],
                    "reference_ms_per_image": other["ms_per_image"],
                    "ratio": record["ms_per_image"] / other["ms_per_image"],
                })
    return ratios
