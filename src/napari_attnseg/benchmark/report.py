"""A :func:`~.runner.run_benchmark` report as printed tables, as Markdown, and as JSON.

The same rows feed the terminal tables (:func:`format_report`) and the
Markdown tables of ``docs/benchmarks.md`` (:func:`format_markdown`,
:func:`write_markdown`), so the page is regenerated from a report's JSON by a
command rather than copied by hand.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._files import atomic_write
from .machine import busy_note

#: a table: (title, header, rows, notes under it)
Table = tuple[str, list[str], list[list[str]], list[str]]


def format_report(report: dict[str, Any]) -> str:
    """The human-readable tables of a :func:`run_benchmark` report."""
    lines = _header(report)
    for title, header, rows, notes in tables(report):
        lines += [title, *_text_table(header, rows), *notes, ""]
    return "\n".join(lines)


def format_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: run facts, then one table per measurement."""
    m = report["machine"]
    loads = report["load_average"]
    lines = [
        f"Command: `{report.get('command') or 'attnseg bench'}`",
        "",
        f"Measured {report.get('started', '?')} on {m['device']} ({m['device_name']}, "
        f"{m.get('usable_cpus') or m['cpu_count']} CPUs), torch {m['torch']} with "
        f"{m['torch_threads']} threads, MONAI {m['monai']}; precision `auto` = "
        f"**{report['precision']}** here; {report.get('seconds', 0):.0f} s in all.",
        f"**Load average** (1, 5, 15 min) at start {_load(loads.get('start'))}, at end "
        f"{_load(loads.get('end'))}.",
    ]
    if "cpu_bf16_probe_speedup" in m:
        lines[-2] += (f" CPU bf16: native {'yes' if m.get('cpu_native_bf16') else 'no'}, AMX "
                      f"{'yes' if m.get('amx') else 'no'}, probe fp32/bf16 time "
                      f"{m['cpu_bf16_probe_speedup']:.2f}× (`inference.device.cpu_bf16_speedup`; "
                      "`precision=\"auto\"` takes bf16 only at ≥ 1.1×).")
    busy = busy_note(report)
    if busy:
        lines.append(f"**{busy[0].upper()}{busy[1:]}.**")
    lines.append("")
    for title, header, rows, notes in tables(report):
        lines += [f"**{title}**", "", *_markdown_table(header, rows), ""]
        if notes:
            lines += [*notes, ""]
    return "\n".join(lines).rstrip() + "\n"


def write_json(report: dict[str, Any], path: str | Path) -> Path:
    """Write ``report`` as indented JSON to ``path`` (creating its folder); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


def read_json(path: str | Path) -> dict[str, Any]:
    """A report written by :func:`write_json`; a clear error when the file is not one."""
    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read a bench report from {path}: {exc}") from exc
    if not isinstance(report, dict) or "machine" not in report or "load_average" not in report:
        raise ValueError(f"{path} is not an `attnseg bench --json` report")
    return report


def markers(section: str) -> tuple[str, str]:
    """The HTML comments that delimit a generated section of a Markdown page."""
    return f"<!-- bench:{section}:begin -->", f"<!-- bench:{section}:end -->"


def write_markdown(report: dict[str, Any], path: str | Path, section: str = "main") -> Path:
    """Put :func:`format_markdown` between ``section``'s markers in the page at ``path``.

    Everything outside the markers (the hand-written prose) is kept. A page
    without the markers gets the section appended; a missing page is created.
    """
    if not re.fullmatch(r"[\w-]+", section):
        raise ValueError(f"section must be a word (letters, digits, _ or -), got {section!r}")
    path = Path(path)
    begin, end = markers(section)
    block = f"{begin}\n{format_markdown(report)}{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    start, stop = text.find(begin), text.find(end)
    if start >= 0 and stop > start:
        text = text[:start] + block + text[stop + len(end):]
    elif start >= 0 or stop >= 0:
        raise ValueError(f"{path}: unbalanced markers for section {section!r}")
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


# -- the tables -------------------------------------------------------------
def tables(report: dict[str, Any]) -> list[Table]:
    """Every table of a report, in page order (sections without data are left out)."""
    builders: list[Callable[[dict[str, Any]], list[Table]]] = [
        _ratios, _variant_summary, _throughput, _train_steps, _windows, _end_to_end,
        _finetune, _ops, _targets,
    ]
    return [table for build in builders for table in build(report)]


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def _load(values: list[float] | None) -> str:
    return "n/a" if not values else " / ".join(f"{v:.2f}" for v in values)


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _header(report: dict[str, Any]) -> list[str]:
    m = report["machine"]
    lines = [
        f"attnseg bench — {m['device']} ({m['device_name']}), precision auto = "
        f"{report['precision']}, torch {m['torch']}, {m['torch_threads']} threads, "
        f"{m['cpu_count']} CPUs",
        f"load average at start {report['load_average']['start']}, "
        f"at end {report['load_average'].get('end')}; total {report.get('seconds', 0):.0f} s",
        f"memory: {m['memory_measure']}",
    ]
    if "cpu_bf16_probe_speedup" in m:
        lines.append(f"CPU bf16: native {m.get('cpu_native_bf16')}, AMX {m.get('amx')}, "
                     f"probe fp32/bf16 time {m['cpu_bf16_probe_speedup']:.2f}x (> 1: bf16 pays)")
    busy = busy_note(report)
    return [*lines, busy, ""] if busy else [*lines, ""]


def _variants(report: dict[str, Any]) -> list[str]:
    return report.get("variants") or sorted({r.get("variant", "") for r in
                                             report.get("throughput", [])})


def _throughput(report: dict[str, Any]) -> list[Table]:
    records = report.get("throughput", [])
    if not records:
        return []
    variants = _variants(report)
    gflops_key = next((k for k in records[0] if k.startswith("gflops_")), None)
    index = {(r["model"], r.get("variant", ""), r["size"], r["batch"]): r for r in records}
    settings = list(dict.fromkeys((r["model"], r["size"], r["batch"]) for r in records))
    library = report.get("library_variant")
    rows = []
    for model, size, batch in settings:
        first = next(r for r in records if r["model"] == model)
        cells = [model, f"{first['params'] / 1e6:.2f}M",
                 f"{first[gflops_key]:.2f}" if gflops_key else "", str(size), str(batch)]
        for variant in variants:
            r = index.get((model, variant, size, batch))
            cells.append("–" if r is None else "error" if "error" in r
                         else _ms(r["ms_per_image"]))
        peak = index.get((model, library, size, batch)) or index.get(
            (model, variants[0], size, batch))
        cells.append(_mb(peak.get("peak_memory_mb")) if peak and "error" not in peak else "")
        rows.append(cells)
    size = gflops_key.split("_")[1] if gflops_key else "?"
    errors = sorted({f"{r['model']} {r.get('variant', '')}: {r['error']}" for r in records
                     if "error" in r})
    notes = [f"error: {e}" for e in errors]
    return [(
        "Inference, ms per image (median of round-robin timed calls; eval mode)",
        ["model", "params", f"GFLOPs@{size}²", "size", "batch", *variants,
         f"peak MiB ({library if library in variants else variants[0]})"],
        rows, notes,
    )]


def _ratios(report: dict[str, Any]) -> list[Table]:
    ratios = report.get("ratios", [])
    if not ratios:
        return []
    baseline = report.get("baseline_variant", "")
    variants = _variants(report)
    index = {(r["ours"], r["reference"], r["size"], r["batch"], r["variant"],
              r["reference_variant"]): r["ratio"] for r in ratios}
    pairs = list(dict.fromkeys((r["ours"], r["reference"], r["size"], r["batch"])
                               for r in ratios))
    header = ["ours / reference", "size", "batch"]
    columns = [(v, v) for v in variants]
    columns += [(v, baseline) for v in variants if v != baseline]
    header += [f"{v}" if rv == v else f"{v} vs ref {rv}" for v, rv in columns]
    rows = []
    for ours, ref, size, batch in pairs:
        cells = [f"{ours} / {ref}", f"{size}²", str(batch)]
        for v, rv in columns:
            value = index.get((ours, ref, size, batch, v, rv))
            cells.append("–" if value is None else f"{value:.2f}×")
        rows.append(cells)
    return [(
        "Ours / MONAI per-image time at equal stage widths, same run, round-robin "
        "(< 1: ours is faster)",
        header, rows,
        [f"Columns: both run as the variant; 'X vs ref {baseline}': ours as X, MONAI as "
         f"{baseline} (how it runs out of the box)."],
    )]


def _variant_summary(report: dict[str, Any]) -> list[Table]:
    """Each variant's time relative to the baseline, geometric mean over sizes and batches."""
    records = [r for r in report.get("throughput", []) if "ms_per_image" in r]
    baseline = report.get("baseline_variant")
    variants = [v for v in _variants(report) if v != baseline]
    if not records or not variants or baseline is None:
        return []
    index = {(r["model"], r["variant"], r["size"], r["batch"]): r["ms_per_image"]
             for r in records}
    models = list(dict.fromkeys(r["model"] for r in records))
    rows = []
    for model in models:
        cells = [model]
        for variant in variants:
            ratios = [index[m, variant, s, b] / index[m, baseline, s, b]
                      for (m, v, s, b) in index if m == model and v == variant
                      and (m, baseline, s, b) in index]
            cells.append(f"{_geomean(ratios):.2f}×" if ratios else "–")
        rows.append(cells)
    return [(
        f"Each variant's time / {baseline}'s, per network (geometric mean over sizes and "
        "batches; < 1: faster)",
        ["model", *variants], rows, [],
    )]


def _train_steps(report: dict[str, Any]) -> list[Table]:
    steps = report.get("train_steps", [])
    if not steps:
        return []
    variants = list(dict.fromkeys(r["variant"] for r in steps))
    index = {(r["model"], r["variant"]): r["seconds_per_step"] for r in steps}
    speedups = {(s["model"], s["variant"]): s["speedup"] for s in report.get("train_speedups", [])}
    rows = []
    for model in dict.fromkeys(r["model"] for r in steps):
        cells = [model]
        cells += [_ms(1000 * index[model, v]) if (model, v) in index else "–" for v in variants]
        cells += [f"{speedups[model, v]:.2f}×" if (model, v) in speedups else "–"
                  for v in variants[1:]]
        rows.append(cells)
    first = steps[0]
    return [(
        f"Training step (forward, {first['loss']} loss, backward, Adam), batch {first['batch']} "
        f"× {first['patch_size']}², ms per step (median, round-robin)",
        ["model", *variants, *(f"{variants[0]} / {v}" for v in variants[1:])], rows, [],
    )]


def _windows(report: dict[str, Any]) -> list[Table]:
    windows = report.get("sliding_windows", [])
    if not windows:
        return []
    w0 = windows[0]
    rows = [[w["via"], w["variant"], str(w["tile_batch"]), f"{w['seconds']:.1f}",
             f"{w['megapixels_per_s']:.2f}", _mb(w.get("host_rss_growth_mb")),
             "–" if not w.get("progress_final") else
             f"{w['progress_final'][0]}/{w['progress_final'][1]} tiles"] for w in windows]
    h, w_, _ = w0["image"]
    return [(
        f"Sliding window, {h}×{w_} RGB uint8, {w0['tiles']} tiles of {w0['tile_size']} "
        f"(overlap {w0['overlap']}), {w0['model']}",
        ["via", "run as", "tiles/batch", "seconds", "MP/s", "RSS growth MiB", "progress"],
        rows, [f"input {w0['input_mb']:.0f} MiB; memory = peak growth of the process RSS"],
    )]


def _end_to_end(report: dict[str, Any]) -> list[Table]:
    e2e = report.get("end_to_end")
    if not e2e:
        return []
    h, w, _ = e2e["image"]
    return [(
        "End to end (Predictor: normalise + predict + labels)",
        ["image", "model", "precision", "s/image"],
        [[f"{h}×{w} RGB uint8", e2e["model"], str(e2e.get("precision", "")),
          f"{e2e['seconds']:.3f}"]],
        [],
    )]


def _finetune(report: dict[str, Any]) -> list[Table]:
    tunes = report.get("finetune", [])
    if not tunes:
        return []
    s = report["settings"]
    return [(
        f"Fine-tune round (Trainer): 1 epoch of {s['finetune_patches']} patches "
        f"{s['finetune_patch_size']}², batch {s['finetune_batch']}, synthetic data, "
        f"loss {tunes[0]['loss']}",
        ["model", "round s", "epoch s", "s/step"],
        [[t["model"], f"{t['seconds']:.2f}", f"{t['epoch_seconds']:.2f}",
          f"{t['seconds_per_step']:.3f}"] for t in tunes],
        [],
    )]


def _ops(report: dict[str, Any]) -> list[Table]:
    ops = report.get("ops", [])
    if not ops:
        return []
    fastest = {}
    for r in ops:  # best-of-repeats: short calls are what preemption distorts most
        fastest[r["group"]] = min(fastest.get(r["group"], float("inf")), r["min_ms"])
    rows = [[r["operation"], _ms(r["ms"]), _ms(r["min_ms"]),
             f"{r['min_ms'] / fastest[r['group']]:.2f}×"] for r in ops]
    shape = "×".join(map(str, ops[0]["shape"]))
    return [(
        f"Single operations on a {shape} feature (inference mode, round-robin), ms",
        ["operation", "median", "best", "best / fastest of its kind"], rows, [],
    )]


def _targets(report: dict[str, Any]) -> list[Table]:
    if not report.get("targets"):
        return []
    rows = []
    for t in report["targets"]:
        verdict = ("met" if t["met"] else "NOT met") if t["applies"] else \
            f"reference only on this device ({'would be met' if t['met'] else 'not met'})"
        rows.append([t["target"], f"{t['value']:.3g}", verdict])
    return [("Targets (issues 3 and 13)", ["target", "measured", "verdict"], rows, [])]


# -- rendering --------------------------------------------------------------
def _text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Aligned columns under a ruled header: first column left-aligned, others right-aligned."""
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(f"{c:<{w}}" if i == 0 else f"{c:>{w}}"
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    head = line(header)
    return [head, "-" * len(head), *(line(row) for row in rows)]


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"
    return [line(header), rule, *(line(row) for row in rows)]
