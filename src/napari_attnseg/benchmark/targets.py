"""The performance targets of issues 3, 13 and 22, each judged against a report and marked
as applying to the run's device or given for reference only."""

from __future__ import annotations

from typing import Any

import torch

#: issue 3: one 512² RGB image end to end on a 2-core CPU
E2E_TARGET_S = 1.5
#: issue 3: images/s at 512² in batch on an H100/H200
GPU_THROUGHPUT_TARGET = 200.0
#: issue 3: attention_unet / MONAI AttentionUnet per-image time on a GPU
ATTENTION_RATIO_TARGET = 1.5
#: issue 13: attention_unet / MONAI AttentionUnet per-image time on the CPU, both fp32
CPU_ATTENTION_RATIO_TARGET = 1.0
#: issue 13: MONAI AttentionUnet fp32 / attention_unet at precision auto, on the CPU
AUTO_SPEEDUP_TARGET = 1.5
#: issue 13: the 4096² sliding window on the CPU at precision auto, seconds and memory
LARGE_SECONDS_TARGET = 60.0
LARGE_MEMORY_TARGET_MB = 1536.0
#: issue 22: a 512² crop of the real mosaic, click to instance labels, on 2 idle CPU cores
REAL_CROP_TARGET_S = 0.6


def _target(text: str, value: float, limit: float, applies: bool, met: bool) -> dict[str, Any]:
    return {"target": text, "value": value, "limit": limit, "applies": applies, "met": met}


def evaluate_targets(report: dict[str, Any], device: torch.device) -> list[dict[str, Any]]:
    """The targets, each marked as applying to this run's device or not."""
    on_cpu, on_gpu = device.type == "cpu", device.type == "cuda"
    targets = []
    e2e = report.get("end_to_end")
    if e2e:
        edge, seconds = e2e["image"][0], e2e["seconds"]
        targets.append(_target(
            f"end to end {edge}² RGB <= {E2E_TARGET_S} s (2-core CPU, 512²)",
            seconds, E2E_TARGET_S, applies=on_cpu and edge == 512, met=seconds <= E2E_TARGET_S,
        ))
    crop = (report.get("real") or {}).get("crop")
    if crop:
        edge, seconds = crop["size"][0], crop["seconds"]
        targets.append(_target(
            f"real mosaic {edge}² crop, click to instance labels <= {REAL_CROP_TARGET_S} s "
            "(2 idle CPU cores, 512²)", seconds, REAL_CROP_TARGET_S,
            applies=on_cpu and edge == 512, met=seconds <= REAL_CROP_TARGET_S,
        ) | {"section": "real"})
    largest = max(report["settings"]["batch_sizes"])
    library = report.get("library_variant")
    for r in report.get("throughput", []):
        if r["source"] == "napari_attnseg" and r["size"] == 512 and r["batch"] == largest \
                and "images_per_s" in r and r.get("variant", library) == library:
            targets.append(_target(
                f"{r['model']} >= {GPU_THROUGHPUT_TARGET:.0f} images/s at 512², "
                f"batch {largest} (H100/H200)",
                r["images_per_s"], GPU_THROUGHPUT_TARGET,
                applies=on_gpu, met=r["images_per_s"] >= GPU_THROUGHPUT_TARGET,
            ))
    baseline = report.get("baseline_variant")
    for r in report.get("ratios", []):
        if r["ours"] != "attention_unet":
            continue
        where = f"{r['size']}², batch {r['batch']}"
        same = r.get("variant") == r.get("reference_variant")
        if same and r.get("variant", baseline) == baseline:
            targets.append(_target(
                f"attention_unet / {r['reference']} per-image time <= "
                f"{CPU_ATTENTION_RATIO_TARGET} ({where}; both {baseline or 'as run'}; CPU)",
                r["ratio"], CPU_ATTENTION_RATIO_TARGET,
                applies=on_cpu, met=r["ratio"] <= CPU_ATTENTION_RATIO_TARGET,
            ))
            targets.append(_target(
                f"attention_unet / {r['reference']} per-image time <= "
                f"{ATTENTION_RATIO_TARGET} ({where}; GPU)",
                r["ratio"], ATTENTION_RATIO_TARGET,
                applies=on_gpu, met=r["ratio"] <= ATTENTION_RATIO_TARGET,
            ))
        if r.get("variant") == library and r.get("reference_variant") == baseline \
                and library != baseline:
            speedup = 1.0 / r["ratio"]
            targets.append(_target(
                f"attention_unet at {library} >= {AUTO_SPEEDUP_TARGET}x faster than "
                f"{r['reference']} {baseline} ({where}; CPU)",
                speedup, AUTO_SPEEDUP_TARGET,
                applies=on_cpu, met=speedup >= AUTO_SPEEDUP_TARGET,
            ))
    for window in report.get("sliding_windows", []):
        edge = window["image"][0]
        label = f"{edge}² sliding window ({window['via']}, {window['variant']})"
        big = on_cpu and edge >= 4096
        targets.append(_target(
            f"{label}: <= {LARGE_SECONDS_TARGET:.0f} s (CPU, 4096², idle)", window["seconds"],
            LARGE_SECONDS_TARGET, applies=big, met=window["seconds"] <= LARGE_SECONDS_TARGET,
        ))
        growth = window.get("host_rss_growth_mb")
        if growth is not None:
            targets.append(_target(
                f"{label}: process memory growth < {LARGE_MEMORY_TARGET_MB:.0f} MiB "
                "(CPU, 4096²)", growth, LARGE_MEMORY_TARGET_MB,
                applies=big, met=growth < LARGE_MEMORY_TARGET_MB,
            ))
    return targets
