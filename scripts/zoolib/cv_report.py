"""Grouped k-fold figures (issue 25): ``zoo.py cv report`` and what reads its reports.

``cv report`` turns the fold runs of :mod:`zoolib.cv` (``runs/cv/<name>/fold<i>/``) into
each recipe's per-fold Dice, mean ± sample standard deviation and range — on the
validation images and on the rescaled copies of :data:`zoolib.cv.SCALED` — and the
verdict of every further recipe against the first (a change *counts* only when its mean
gain exceeds the spread). The reports are committed (``recipes/cv/<name>.json``):
docs/zoo.md is written from them, and a shipped card trained by the same recipe (same
:func:`zoolib.cv.fingerprint`) records them (``metrics.cross_validation``).
"""

from __future__ import annotations

import math
from pathlib import Path

from . import paths
from .cv import SCALED, cv_dir, fingerprint


def report_file(name: str) -> Path:
    """``recipes/cv/<name>.json``: a recipe's fold figures, committed (docs/zoo.md is written
    from committed files alone)."""
    return paths.RECIPES / "cv" / f"{name}.json"


def fold_folders(name: str) -> list[tuple[int, Path]]:
    """``(fold, folder)`` of a recipe's fold runs (``runs/cv/<name>/fold<i>``), in order."""
    found = [(f.name[4:], f) for f in (cv_dir() / name).glob("fold*")]
    return sorted((int(i), f) for i, f in found if i.isdigit())


def fold_seconds(name: str) -> dict[str, float]:
    """``{fold: seconds of training}`` of a recipe's fold runs (their ``commands.json``)."""
    out = {}
    for i, folder in fold_folders(name):
        seconds = paths.read_json(folder / "commands.json").get("total_seconds")
        if seconds is not None:
            out[str(i)] = round(float(seconds), 1)
    return out


# -- report --------------------------------------------------------------------------------------
def summarise(dice: dict[int, float]) -> dict:
    """Mean, sample standard deviation (n − 1) and range of per-fold Dice."""
    values = [dice[i] for i in sorted(dice)]
    n = len(values)
    mean = sum(values) / n if n else float("nan")
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return {"folds": {str(i): dice[i] for i in sorted(dice)}, "n": n, "mean": mean, "std": std,
            "min": min(values, default=float("nan")), "max": max(values, default=float("nan"))}


def compare(base: dict[int, float], new: dict[int, float]) -> dict:
    """``new`` against ``base`` on the folds both have: the gain of the mean, the spread (the
    larger of the two sample standard deviations across those folds) and whether the change
    counts (gain > spread, issue 25)."""
    common = sorted(set(base) & set(new))
    a = summarise({i: base[i] for i in common})
    b = summarise({i: new[i] for i in common})
    gain, spread = b["mean"] - a["mean"], max(a["std"], b["std"])
    counts = len(common) >= 2 and gain > spread
    return {"folds": common, "gain": gain, "spread": spread, "counts": bool(counts)}


def fold_dice(name: str, scale: float | None = None) -> dict[int, float]:
    """``{fold: validation Dice}`` of a recipe's evaluated fold runs (``scale``: on the
    rescaled copies, :func:`score_scaled`)."""
    out = {}
    result = "evaluation.json" if scale is None else f"evaluation_x{scale:g}.json"
    for i, folder in fold_folders(name):
        dice = paths.read_json(folder / result).get("mean", {}).get("dice")
        if dice is not None:
            out[i] = float(dice)
    return out


def report(names: list[str], log=print) -> dict:
    """``cv report``: each recipe's fold Dice and mean ± spread (and on the rescaled copies of
    :data:`SCALED`); every further recipe against the first. Writes
    ``recipes/cv/<name>.json`` (the rescaled copies' under ``"scaled"``)."""
    out = {}
    for name in names:
        meta = paths.read_json(cv_dir() / name / "cv.json")
        s = {**summarise(fold_dice(name)), "task": meta.get("task"), "k": meta.get("k"),
             "recipe_file": meta.get("recipe_file"), "fingerprint": meta.get("fingerprint") or
             _fingerprint_of(meta.get("recipe_file")), "folds_file": meta.get("folds_file"),
             "folds_sha256": meta.get("folds_sha256"), "seconds": fold_seconds(name)}  # fmt: skip
        for scale in SCALED.get(s["task"], ()):
            dice = fold_dice(name, scale)
            if dice:
                s.setdefault("scaled", {})[f"x{scale:g}"] = summarise(dice)
        out[name] = s
        if not s["n"]:
            log(f"{name}: no evaluated fold in {paths.rel(cv_dir() / name)}")
            continue
        for label, summary in (("", s), *((f" ×{k[1:]}", v) for k, v in
                                          s.get("scaled", {}).items())):  # fmt: skip
            folds = ", ".join(f"fold{i} {float(v):.4f}" for i, v in summary["folds"].items())
            log(f"{name}{label} ({s['task']}, {summary['n']} of {s['k']} folds): {folds}; "
                f"mean {summary['mean']:.4f} ± {_num(summary['std'])} (sample std), "
                f"min–max {summary['min']:.4f}–{summary['max']:.4f}")
        paths.write_json(report_file(name), s)
    base = names[0] if names else None
    for name in names[1:]:
        a, b = out[base], out[name]
        if a["folds_sha256"] != b["folds_sha256"] or not a["n"] or not b["n"]:
            log(f"{name} vs {base}: not comparable (different or missing folds)")
            continue
        for scale in (None, *SCALED.get(b["task"], ())):
            c = compare(fold_dice(base, scale), fold_dice(name, scale))
            if not c["folds"]:
                continue
            key = "against" if scale is None else f"against_x{scale:g}"
            out[name][key] = {base: c}
            label = "" if scale is None else f" ×{scale:g}"
            log(f"{name} vs {base}{label}: gain {c['gain']:+.4f} ± spread "
                f"{_num(c['spread'])}: {'counts' if c['counts'] else 'does not count'} "
                f"({len(c['folds'])} folds)")
        paths.write_json(report_file(name), out[name])
    return out


def _fingerprint_of(recipe_file: str | None) -> str | None:
    """A recipe file's fingerprint now (fold runs recorded before fingerprints existed)."""
    recipe = paths.read_json(paths.ROOT / recipe_file) if recipe_file else {}
    return fingerprint(recipe) if recipe else None


def figures_for(recipe: dict) -> tuple[str, dict] | None:
    """``(report name, report)`` of the committed fold report of a recipe that trains what
    ``recipe`` trains (same :func:`fingerprint`), or None."""
    wanted = fingerprint(recipe)
    for path in sorted((paths.RECIPES / "cv").glob("*.json")):
        report_ = paths.read_json(path)
        if report_.get("fingerprint") == wanted and report_.get("n"):
            return path.stem, report_
    return None


def card_figures(name: str, report_: dict) -> dict:
    """What a shipped card records of its recipe's fold figures (``metrics.cross_validation``)."""
    keep = ("k", "n", "folds", "mean", "std", "min", "max", "scaled", "folds_file")
    return {**{k: report_[k] for k in keep if k in report_},
            "report": f"recipes/cv/{name}.json",
            "measured_by": f"python scripts/zoo.py cv run {report_.get('recipe_file')}; "
                           f"python scripts/zoo.py cv report {name}"}  # fmt: skip


def _num(x: float) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.4f}"


def reports() -> list[str]:
    """One line per committed fold report (``recipes/cv/<name>.json``), naming the shipped
    models whose cards record it (trained by that recipe)."""
    lines = []
    shipped: dict[str, list[str]] = {}
    for card_path in sorted(paths.WEIGHTS.glob("*.json")):
        figures = paths.read_json(card_path).get("metrics", {}).get("cross_validation") or {}
        if figures.get("report"):
            shipped.setdefault(Path(figures["report"]).stem, []).append(card_path.stem)
    for path in sorted((paths.RECIPES / "cv").glob("*.json")):
        s = paths.read_json(path)
        if not s.get("n"):
            continue
        folds = ", ".join(f"{float(v):.4f}" for v in s["folds"].values())
        line = (f"* `{path.stem}` ({s.get('task')}): {folds}; mean {s['mean']:.4f} ± "
                f"{_num(s['std'])}, min–max {s['min']:.4f}–{s['max']:.4f}")  # fmt: skip
        for base, c in s.get("against", {}).items():
            line += (f"; against `{base}`: gain {c['gain']:+.4f} ± spread {_num(c['spread'])}, "
                     f"{'counts' if c['counts'] else 'does not count'}")  # fmt: skip
        for key, t in s.get("scaled", {}).items():
            folds = ", ".join(f"{float(v):.4f}" for v in t["folds"].values())
            line += (f"; ×{key[1:]} copies (field of view matched): {folds}; mean "
                     f"{t['mean']:.4f} ± {_num(t['std'])}")  # fmt: skip
            for base, c in s.get(f"against_{key}", {}).items():
                line += (f", against `{base}` {c['gain']:+.4f} ± {_num(c['spread'])}, "
                         f"{'counts' if c['counts'] else 'does not count'}")  # fmt: skip
        if path.stem in shipped:
            models = ", ".join(f"`{m}`" for m in shipped[path.stem])
            line += f" — the recipe of the shipped {models} (its card records these figures)"
        lines.append(line)
    return lines
