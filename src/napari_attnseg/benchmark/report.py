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
#: the page section the real-image tables go to (its own, with its own time and load)
REAL_SECTION = "real"
#: report keys of the measurements that make up the main section
MAIN_KEYS = ("throughput", "train_steps", "end_to_end", "finetune", "ops", "sliding_windows")


def format_report(report: dict[str, Any]) -> str:
    """The human-readable tables of a :func:`run_benchmark` report."""
    lines = _header(report)
    for title, header, rows, notes in tables(report):
        lines += [title, *_text_table(header, rows), *notes, ""]
    return "\n".join(lines)


def format_markdown(report: dict[str, Any], section: str = "main") -> str:
    """The report as Markdown: run facts, then one table per measurement.

    ``section`` :data:`REAL_SECTION` gives the real-image tables alone, under
    the facts of that measurement (when it started, the load average at its
    start and end); any other name gives the rest of the report.
    """
    m = report["machine"]
    real = section == REAL_SECTION
    if real and not report.get("real"):
        raise ValueError("this report has no real-image section (measure it with "
                         "--real-images DIR)")
    part = report["real"] if real else report
    loads = part["load_average"]
    lines = [
        f"Command: `{report.get('command') or 'attnseg bench'}`",
        "",
        f"Measured {part.get('started', '?')} on {m['device']} ({m['device_name']}, "
        f"{m.get('usable_cpus') or m['cpu_count']} CPUs), torch {m['torch']} with "
        f"{m['torch_threads']} threads, MONAI {m['monai']}; precision `auto` = "
        f"**{part['precision']}** here; {part.get('seconds', 0):.0f} s in all"
        f"{' (this section)' if real else ''}.",
        f"**Load average** (1, 5, 15 min) at start {_load(loads.get('start'))}, at end "
        f"{_load(loads.get('end'))}.",
    ]
    if "cpu_bf16_probe_speedup" in m:
        lines[-2] += (f" CPU bf16: native {'yes' if m.get('cpu_native_bf16') else 'no'}, AMX "
                      f"{'yes' if m.get('amx') else 'no'}, probe fp32/bf16 time "
                      f"{m['cpu_bf16_probe_speedup']:.2f}× (`inference.device.cpu_bf16_speedup`; "
                      "`precision=\"auto\"` takes bf16 only at ≥ 1.1×).")
    busy = busy_note({"machine": m, "load_average": loads})
    if busy:
        lines.append(f"**{busy[0].upper()}{busy[1:]}.**")
    if not real and report.get("real_skipped"):
        lines.append(f"{report['real_skipped'][0].upper()}{report['real_skipped'][1:]}.")
    lines.append("")
    for title, header, rows, notes in tables(report, section):
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


def sections(report: dict[str, Any], section: str = "main") -> list[str]:
    """The page sections :func:`write_markdown` fills from ``report``.

    The real-image tables (when measured) go to their own :data:`REAL_SECTION`;
    the rest goes to ``section`` — unless the report holds the real-image
    measurement alone (``--only-real``), or ``section`` is that one.
    """
    has_real = bool(report.get("real"))
    names = []
    if section != REAL_SECTION and (any(report.get(k) for k in MAIN_KEYS) or not has_real):
        names.append(section)
    if has_real:
        names.append(REAL_SECTION)
    elif section == REAL_SECTION:
        raise ValueError(f"section {REAL_SECTION!r} holds the real-image tables, and this "
                         "report has none (measure them with --real-images DIR)")
    return names


def write_markdown(report: dict[str, Any], path: str | Path, section: str = "main") -> Path:
    """Put :func:`format_markdown` between ``section``'s markers in the page at ``path``.

    Everything outside the markers (the hand-written prose) is kept. A page
    without the markers gets the section appended; a missing page is created.
    The real-image tables fill their own section (see :func:`sections`).
    """
    if not re.fullmatch(r"[\w-]+", section):
        raise ValueError(f"section must be a word (letters, digits, _ or -), got {section!r}")
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    for name in sections(report, section):
        text = _fill(text, name, format_markdown(report, name), path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


def _fill(text: str, section: str, markdown: str, path: Path) -> str:
    """``text`` with ``markdown`` between ``section``'s markers (appended when it has none)."""
    begin, end = markers(section)
    block = f"{begin}\n{markdown}{end}"
    start, stop = text.find(begin), text.find(end)
    if start >= 0 and stop > start:
        return text[:start] + block + text[stop + len(end):]
    if start >= 0 or stop >= 0:
        raise ValueError(f"{path}: unbalanced markers for section {section!r}")
    return (text.rstrip() + "\n\n" if text.strip() else "") + block + "\n"


# -- the tables -------------------------------------------------------------
def tables(report: dict[str, Any], section: str | None = None) -> list[Table]:
    """The tables of a report, in page order (sections without data are left out).

    ``section`` None: every table (the terminal); :data:`REAL_SECTION`: the
    real-image tables alone; any other name: all but those (a page's section).
    """
    if section == REAL_SECTION:
        return _real(report, page=True)
    everything = section is None
    builders: list[Callable[[dict[str, Any]], list[Table]]] = [
        _ratios, _variant_summary, _throughput, _train_steps, _windows, _end_to_end,
        (lambda r: _real(r, page=False)) if everything else (lambda r: []),
        _finetune, _ops, lambda r: _targets(r, real=everything),
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
    if report.get("real_skipped"):
        lines.append(report["real_skipped"])
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


def _verdict(target: dict[str, Any]) -> str:
    if target["applies"]:
        return "met" if target["met"] else "NOT met"
    return f"reference only on this device ({'would be met' if target['met'] else 'not met'})"


def _targets(report: dict[str, Any], real: bool = True) -> list[Table]:
    """The targets table; ``real`` False leaves out the real-image section's own targets."""
    targets = [t for t in report.get("targets") or [] if real or t.get("section") != REAL_SECTION]
    if not targets:
        return []
    rows = [[t["target"], f"{t['value']:.3g}", _verdict(t)] for t in targets]
    issues = "3, 13 and 22" if any(t.get("section") == REAL_SECTION for t in targets) \
        else "3 and 13"
    return [(f"Targets (issues {issues})", ["target", "measured", "verdict"], rows, [])]


def _seconds(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _score(value: float | None) -> str:
    return "–" if value is None or value != value else f"{value:.3f}"


def _real(report: dict[str, Any], page: bool) -> list[Table]:
    """The real-image table (:mod:`.real`); ``page`` False adds the section's load average
    (on a page it heads the section)."""
    real = report.get("real")
    if not real:
        return []
    mosaic, ours, monai, noise, crop = (real[k] for k in ("mosaic", "ours", "monai", "noise",
                                                          "crop"))
    size, edge = mosaic["size"][0], crop["size"][0]
    rows = [
        ["Predictor, defaults + instances (click to labels)", f"{size}² mosaic",
         _seconds(ours["seconds"]), f"{real['ours_over_monai']:.2f}×", _score(ours["dice"]),
         _score(ours["ap50"]), _score(ours["mean_ap"]),
         f"{ours['objects']} of {ours['true_objects']}"],
        ["MONAI AttentionUnet, sliding_window_inference (network only)", f"{size}² mosaic",
         _seconds(monai["seconds"]), "1.00×", "–", "–", "–", "–"],
        ["Predictor, defaults + instances", f"{size}² uniform noise",
         _seconds(noise["seconds"]), f"{noise['seconds'] / monai['seconds']:.2f}×", "–", "–",
         "–", str(noise["objects"])],
        ["Predictor, defaults + instances", f"{edge}² crop (top left)",
         _seconds(crop["seconds"]), "–", _score(crop["dice"]), _score(crop["ap50"]),
         _score(crop["mean_ap"]), f"{crop['objects']} of {crop['true_objects']}"],
    ]
    predictor, options = real["predictor"], monai["options"]
    channels = ", ".join(map(str, options.get("channels", [])))
    diameter = f"{ours['diameter']:.1f} px" if ours.get("diameter") else "none"
    notes = [
        f"Ours / MONAI {real['ours_over_monai']:.2f}×, noise / real "
        f"{real['noise_over_real']:.2f}× (seconds: median of {real['rounds']} round-robin "
        f"round(s); the crop: of {crop['repeats']} calls).",
        f"Ours: `{real['model']}` = {real['model_file']}, the whole path from the RGB array to "
        f"instance labels at the Predictor's defaults (tile {predictor['tile_size']}, overlap "
        f"{predictor['overlap']}, {predictor['batch_size']} tiles per batch, TTA "
        f"{'on' if predictor.get('tta_used') else 'off'}, diameter {predictor['diameter']}: "
        f"objects taken as {diameter}, image resampled ×{ours['zoom']:.2f}). Dice: pixels of "
        "the foreground; AP@0.5 and mean AP (IoU 0.50:0.95): instances, against the labels.",
        f"MONAI: `AttentionUnet` channels ({channels}), {options.get('out_channels')} output "
        f"channel(s), fresh weights, roi {monai['roi_size']}, overlap {monai['overlap']}, "
        f"{monai['mode']}, sw_batch_size {monai['sw_batch_size']}, on the image as a float "
        "tensor — the network alone, no normalisation, resampling or labelling.",
        f"Mosaic: {mosaic['tiles']} `dsb_` fluorescence-like images at native resolution "
        f"({mosaic['cropped']} cropped; {len(mosaic['skipped'])} other `dsb_` images left out), "
        f"{mosaic['covered']:.0%} of the canvas, {mosaic['objects']} nuclei; the noise image: "
        "seeded uniform uint8 RGB.",
    ]
    notes += [f"Target: {t['target']}: {_verdict(t)} ({t['value']:.3g} s)."
              for t in report.get("targets") or [] if t.get("section") == REAL_SECTION]
    if not page:
        loads = real["load_average"]
        notes.append(f"load average at the section's start {_load(loads.get('start'))}, at "
                     f"its end {_load(loads.get('end'))}")
    return [(
        f"Real image end to end: {size}×{size} RGB mosaic of DSB2018 nuclei validation images "
        f"with their labels, {real['model_file']}, precision {real['precision']}",
        ["run", "input", "s", "/ MONAI", "Dice", "AP@0.5", "mean AP", "objects"], rows, notes,
    )]


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
