"""A :func:`~.runner.run_benchmark` report as printed tables, and as a JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .machine import busy_note


def format_report(report: dict[str, Any]) -> str:
    """The human-readable tables of a :func:`run_benchmark` report."""
    sections = (_header, _throughput, _ratios, _predictor_runs, _finetune, _targets)
    return "\n".join(line for section in sections for line in section(report))


def write_json(report: dict[str, Any], path: str | Path) -> Path:
    """Write ``report`` as indented JSON to ``path`` (creating its folder); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return path


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Aligned columns under a ruled header: first column left-aligned, numbers right-aligned."""
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(f"{c:<{w}}" if i == 0 else f"{c:>{w}}"
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    head = line(header)
    return [head, "-" * len(head), *(line(row) for row in rows)]


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def _header(report: dict[str, Any]) -> list[str]:
    m = report["machine"]
    lines = [
        f"attnseg bench — {m['device']} ({m['device_name']}), precision {report['precision']}, "
        f"torch {m['torch']}, {m['torch_threads']} threads, {m['cpu_count']} CPUs",
        f"load average at start {report['load_average']['start']}, "
        f"at end {report['load_average'].get('end')}; total {report.get('seconds', 0):.0f} s",
        f"memory: {m['memory_measure']}",
    ]
    busy = busy_note(report)
    return [*lines, busy, ""] if busy else [*lines, ""]


def _throughput(report: dict[str, Any]) -> list[str]:
    records = report.get("throughput", [])
    if not records:
        return []
    gflops_key = next((k for k in records[0] if k.startswith("gflops_")), None)
    rows = []
    for r in records:
        first = [r["model"], f"{r['params'] / 1e6:.2f}M"]
        setting = [f"{r['size']}", f"{r['batch']}"]
        if "error" in r:
            rows.append([*first, "", *setting, "error", "", ""])
            continue
        rows.append([
            *first, f"{r[gflops_key]:.2f}" if gflops_key else "", *setting,
            f"{r['ms_per_image']:.1f}", f"{r['images_per_s']:.2f}", _mb(r["peak_memory_mb"]),
        ])
    size = gflops_key.split("_")[1] if gflops_key else "?"
    return [
        "Inference throughput (eval, inference_mode, median of timed repeats)",
        *_table(["model", "params", f"GFLOPs@{size}²", "size", "batch", "ms/image",
                 "images/s", "peak MiB"], rows),
        "",
    ]


def _ratios(report: dict[str, Any]) -> list[str]:
    ratios = report.get("ratios", [])
    lines = [f"{r['ours']} / {r['reference']} per-image time at {r['size']}² batch "
             f"{r['batch']}: {r['ratio']:.2f}x ({r['ours_ms_per_image']:.1f} / "
             f"{r['reference_ms_per_image']:.1f} ms)" for r in ratios]
    return [*lines, ""] if lines else []


def _predictor_runs(report: dict[str, Any]) -> list[str]:
    lines = []
    e2e = report.get("end_to_end")
    if e2e:
        h, w, _ = e2e["image"]
        lines.append(f"End to end (Predictor: normalise + predict + labels), {h}x{w} RGB uint8, "
                     f"{e2e['model']}: {e2e['seconds']:.3f} s/image (median of {e2e['repeats']})")
    window = report.get("sliding_window")
    if window:
        h, w, _ = window["image"]
        lines.append(
            f"Sliding window {h}x{w} RGB, {window['tiles']} tiles of {window['tile_size']} "
            f"(overlap {window['overlap']}, {window['tile_batch']} per batch): "
            f"{window['seconds']:.1f} s, {window['megapixels_per_s']:.2f} MP/s, peak memory "
            f"{_mb(window['peak_memory_mb'])} MiB, process RSS growth "
            f"{_mb(window['host_rss_growth_mb'])} MiB (input {window['input_mb']:.0f} MiB)"
        )
    return [*lines, ""] if lines else []


def _finetune(report: dict[str, Any]) -> list[str]:
    tunes = report.get("finetune", [])
    if not tunes:
        return []
    s = report["settings"]
    return [
        f"Fine-tune round: 1 epoch of {s['finetune_patches']} patches "
        f"{s['finetune_patch_size']}², batch {s['finetune_batch']}, synthetic data, "
        f"loss {tunes[0]['loss']}",
        *_table(["model", "round s", "epoch s", "s/step"], [
            [t["model"], f"{t['seconds']:.2f}", f"{t['epoch_seconds']:.2f}",
             f"{t['seconds_per_step']:.3f}"] for t in tunes
        ]),
        "",
    ]


def _targets(report: dict[str, Any]) -> list[str]:
    if not report.get("targets"):
        return []
    lines = ["Targets (issue 3)"]
    for t in report["targets"]:
        verdict = ("met" if t["met"] else "NOT met") if t["applies"] else \
            f"for reference only on this device ({'would be met' if t['met'] else 'not met'})"
        lines.append(f"  {t['target']}: {t['value']:.3g} — {verdict}")
    return lines
