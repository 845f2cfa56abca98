"""Issue 3's performance targets, each judged against a report and marked as applying
to the run's device or given for reference only."""

from __future__ import annotations

from typing import Any

import torch

E2E_TARGET_S = 1.5
GPU_THROUGHPUT_TARGET = 200.0
ATTENTION_RATIO_TARGET = 1.5
LARGE_MEMORY_TARGET_MB = 2048.0


def _target(text: str, value: float, limit: float, applies: bool, met: bool) -> dict[str, Any]:
    return {"target": text, "value": value, "limit": limit, "applies": applies, "met": met}


def evaluate_targets(report: dict[str, Any], device: torch.device) -> list[dict[str, Any]]:
    """Issue 3's targets, each marked as applying to this run's device or not."""
    on_cpu, on_gpu = device.type == "cpu", device.type == "cuda"
    targets = []
    e2e = report.get("end_to_end")
    if e2e:
        edge, seconds = e2e["image"][0], e2e["seconds"]
        targets.append(_target(
            f"end to end {edge}² RGB <= {E2E_TARGET_S} s (2-core CPU, 512²)",
            seconds, E2E_TARGET_S, applies=on_cpu and edge == 512, met=seconds <= E2E_TARGET_S,
        ))
    largest = max(report["settings"]["batch_sizes"])
    for r in report.get("throughput", []):
        if r["source"] == "napari_attnseg" and r["size"] == 512 and r["batch"] == largest \
                and "images_per_s" in r:
            targets.append(_target(
                f"{r['model']} >= {GPU_THROUGHPUT_TARGET:.0f} images/s at 512², "
                f"batch {largest} (H100/H200)",
                r["images_per_s"], GPU_THROUGHPUT_TARGET,
                applies=on_gpu, met=r["images_per_s"] >= GPU_THROUGHPUT_TARGET,
            ))
    for r in report.get("ratios", []):
        if r["ours"] == "attention_unet":
            targets.append(_target(
                f"attention_unet / {r['reference']} per-image time <= "
                f"{ATTENTION_RATIO_TARGET} ({r['size']}², batch {r['batch']}; GPU)",
                r["ratio"], ATTENTION_RATIO_TARGET,
                applies=on_gpu, met=r["ratio"] <= ATTENTION_RATIO_TARGET,
            ))
    window = report.get("sliding_window")
    if window and window.get("host_rss_growth_mb") is not None:
        edge, growth = window["image"][0], window["host_rss_growth_mb"]
        targets.append(_target(
            f"{edge}² sliding window: process memory growth < "
            f"{LARGE_MEMORY_TARGET_MB:.0f} MiB (CPU, 4096²)",
            growth, LARGE_MEMORY_TARGET_MB,
            applies=on_cpu and edge >= 4096, met=growth < LARGE_MEMORY_TARGET_MB,
        ))
    return targets
