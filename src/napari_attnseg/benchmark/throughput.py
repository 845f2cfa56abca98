"""Inference throughput of each network, timed round-robin, and ours / MONAI time ratios."""

from __future__ import annotations

import gc
import statistics
from functools import partial
from typing import Any

import torch
from torch import nn

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
    names: list[str], settings: BenchSettings, device: torch.device, dtype: torch.dtype | None,
    log: Log,
) -> list[dict[str, Any]]:
    """One record per (network, size, batch).

    For each (size, batch) the networks are timed *round-robin* — one call of
    each in turn, repeated — so that load from other processes falls on all
    of them alike and the ours/MONAI ratios stay meaningful on a busy machine.
    """
    networks, infos = {}, {}
    gflops_size = min(settings.sizes)
    for name in names:
        torch.manual_seed(settings.seed)
        model, options = build_network(name, settings.in_channels)
        networks[name] = model.to(device).eval()
        infos[name] = {
            "model": name,
            "source": "monai" if name in MONAI_REFERENCES else "napari_attnseg",
            "options": options,
            "params": parameter_count(model),
            f"gflops_{gflops_size}": round(
                forward_gflops(model, settings.in_channels, gflops_size, device), 3
            ),
        }
    records = []
    for size in settings.sizes:
        for batch in settings.batch_sizes:
            log(f"throughput {size}x{size} batch {batch}: {', '.join(networks)}")
            x = torch.randn(batch, settings.in_channels, size, size, device=device)
            results = _round_robin(networks, x, settings, device, dtype)
            for name, result in results.items():
                if isinstance(result, str):
                    log(f"  {name} failed: {result}")
                records.append({**infos[name], "size": size, "batch": batch,
                                **_result_fields(result, batch)})
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
            "peak_memory_mb": peak, **timing_fields(times)}


def _error_text(exc: BaseException) -> str:
    return str(exc)[:300]


def _round_robin(
    networks: dict[str, nn.Module], x: torch.Tensor, settings: BenchSettings,
    device: torch.device, dtype: torch.dtype | None,
) -> dict[str, Result]:
    """``{name: (seconds of each timed call, peak memory MiB) or an error message}``."""

    @torch.inference_mode()
    def forward(model: nn.Module) -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            model(x)

    errors: dict[str, str] = {}
    for name, model in networks.items():
        try:
            for _ in range(settings.warmup):
                forward(model)
        except _FAILURES as exc:
            errors[name] = _error_text(exc)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    live = {n: m for n, m in networks.items() if n not in errors}
    times: dict[str, list[float]] = {n: [] for n in live}
    peaks: dict[str, list[float]] = {n: [] for n in live}
    rounds = 0
    while live and wants_more(rounds, min(sum(t) for t in times.values()),
                              repeats=settings.repeats, min_time=settings.min_time,
                              max_repeats=settings.max_repeats):
        for name, model in list(live.items()):
            try:
                # a sampling thread would contend for the GIL with GPU kernel launches: CPU only
                _, seconds, meter = measure_once(partial(forward, model), device,
                                                 host=device.type == "cpu")
            except _FAILURES as exc:
                errors[name] = _error_text(exc)
                del live[name], times[name]
                continue
            times[name].append(seconds)
            if meter.device_peak_mb is not None:
                peaks[name].append(meter.device_peak_mb)
        rounds += 1
    results: dict[str, Result] = dict(errors)
    for name, t in times.items():
        results[name] = (t, max(peaks[name]) if peaks[name] else None)
    return {name: results[name] for name in networks}


def throughput_ratios(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-image time of ours / MONAI reference for each :data:`RATIO_PAIRS` pair and setting."""
    index = {(r["model"], r["size"], r["batch"]): r for r in records if "ms_per_image" in r}
    ratios = []
    for ours, reference in RATIO_PAIRS:
        for (model, size, batch), record in index.items():
            other = index.get((reference, size, batch))
            if model != ours or other is None:
                continue
            ratios.append({
                "ours": ours, "reference": reference, "size": size, "batch": batch,
                "ours_ms_per_image": record["ms_per_image"],
                "reference_ms_per_image": other["ms_per_image"],
                "ratio": record["ms_per_image"] / other["ms_per_image"],
            })
    return ratios
