"""``docs/zoo.md``: the shipped models' table, written from their committed cards alone."""

from __future__ import annotations

from pathlib import Path

from napari_attnseg._files import atomic_write
from napari_attnseg.models import load_model, model_cost

from . import paths
from .cards import (
    _dice,
    _split_of,
    _task,
    card_value,
    legacy_precision,
    shipped_cards,
    task_defaults,
)
from .recipes import recipe_names


def write_zoo_doc() -> Path:
    """``docs/zoo.md`` from the committed cards in the weights folder and the recipes."""
    cards = shipped_cards()
    defaults = task_defaults(cards)
    order = sorted(cards, key=lambda n: (_task(n, cards[n]), defaults.get(_task(n, cards[n])) != n,
                                         -_dice(cards[n]), n))  # fmt: skip
    lines = [
        "# The model zoo",
        "",
        "Written by `python scripts/zoo.py docs` (also run by `zoo.py package`) from the cards "
        "in `src/napari_attnseg/zoo/weights/`. Every model was trained by the `attnseg train` "
        "command in its card (`attnseg info MODEL --json`), and its validation metrics were "
        "measured on the shipped fp16 weights by the `attnseg evaluate` command in the card. "
        "Metrics are per-image means on our validation splits (`recipes/splits/`); DRIVE is "
        "scored inside the field of view. Each task's default is its shipped model with the "
        "best validation Dice among those scored on the same images (a model with a recipe of "
        "its own, below, competes only with models scored on its images). "
        "Params and GFLOPs: one 256×256 forward pass (3 channels; 1 for "
        'membranes), PyTorch\'s count. *Epochs*: those trained; "15 of 40" is a model trained '
        "for a CPU budget short of its recipe (`zoo.py train NAME --epochs 40` trains it on), "
        "\"after N (model)\" one that started from an earlier model's weights (the recipe's "
        "`init`; the training time counts both).",
        "",
        "| model | task default | Dice | Jaccard | precision | recall | params | GFLOPs "
        "| epochs | training | data licence |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in order:
        card = cards[name]
        m = card_value(card, "metrics.validation.mean") or {}
        t = card.get("training", {})
        cost = model_cost(load_model(paths.WEIGHTS / f"{name}.safetensors"), (256, 256))
        terms = card.get("license", "")
        licence = (
            "research/education only"
            if "RESEARCH" in terms
            else "data: research use"
            if "research" in terms.lower()
            else "data: non-commercial"
            if "non-commercial" in terms.lower()
            else "open"
        )
        device = t.get("environment", {}).get("device", "?")
        precision = t.get("precision") or legacy_precision(t) or "?"
        minutes = (t.get("wall_time_s") or 0) / 60
        epochs = str(t.get("epochs_run", "?"))
        planned = paths.read_json(paths.RECIPES / f"{name}.json").get("train", {}).get("epochs")
        if planned and t.get("epochs_run") and t["epochs_run"] < planned:
            epochs += f" of {planned}"
        init = t.get("init") or {}
        if init:
            epochs += f" after {init.get('epochs_run', '?')} ({init.get('name', '?')})"
            minutes += (init.get("wall_time_s") or 0) / 60
        lines.append(
            f"| `{name}` | {'yes' if defaults.get(_task(name, card)) == name else ''} "
            f"| {_num(m.get('dice'))} | {_num(m.get('jaccard'))} | {_num(m.get('precision'))} "
            f"| {_num(m.get('sensitivity'))} | {cost.params / 1e6:.2f} M | {cost.gflops:.2f} "
            f"| {epochs} | {minutes:.0f} min on {device}, {precision}, "
            f"{t.get('threads', '?')} thread(s) | {licence} |"
        )
    for name in order:
        card = cards[name]
        own = card.get("metadata", {}).get("own_recipe")
        if not own:
            continue
        whole = card_value(card, "metrics.validation_whole_images") or {}
        objects = whole.get("instances", {})
        lines += [
            "",
            f"**`{name}`** has a recipe of its own ({own}): its Dice above is measured on "
            f"`{_split_of(card)}`, not on the images of the task's other models, so the two "
            "do not compare.",
        ]
        if objects:
            lines += [
                f"On the whole validation images ({whole.get('n_images')}, native resolution, "
                "default settings): "
                f"pixel Dice {_num(whole.get('mean', {}).get('dice'))}, "
                f"AP@0.5 {_num(objects.get('ap50'))}, mean AP 0.5:0.95 "
                f"{_num(objects.get('mean_ap'))}, PQ {_num(objects.get('pq'))} "
                f"(`{whole.get('measured_by', '')}`; per modality: docs/objects.md).",
            ]
    fundus = sorted(n for n in order if cards[n].get("fov_diameter"))
    if fundus:
        diameters = sorted(
            {
                float(cards[n]["fov_diameter"]) / float(cards[n].get("input_scale") or 1.0)
                for n in fundus
            }
        )
        lines += [
            "",
            f"**Fundus photographs of any camera.** The vessels models ({len(fundus)}) record "
            "their training photographs' field of view (`fov_diameter`: "
            + ", ".join(f"{d:.0f}" for d in diameters)
            + " px across; `attnseg train` measures it for fundus cards, "
            "`scripts/card_fov.py` wrote it into cards trained before); "
            "by default a photograph's field of view is measured and the photograph resampled "
            "to match it (`attnseg predict --fov-diameter auto|none|PX`, Segment's *field of "
            "view*; a note says the zoom). Measured on rescaled validation photographs: "
            "docs/fundus.md.",
        ]
    unshipped = [n for n in recipe_names("compact") if n not in cards]
    if unshipped:
        lines += [
            "",
            f"Recipes without shipped weights ({len(unshipped)}; `python scripts/zoo.py train "
            "NAME --package` trains and ships one): " + ", ".join(f"`{n}`" for n in unshipped),
        ]
    weights = paths.WEIGHTS
    total = paths.size_mb(p for p in weights.iterdir() if p.is_file()) if weights.exists() else 0
    lines += ["", f"{len(cards)} models, {total:.1f} MB in the package.", ""]
    lines += cv_section()
    paths.DOC.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines)
    atomic_write(paths.DOC, lambda tmp: Path(tmp).write_text(text))
    return paths.DOC


def cv_section() -> list[str]:
    """"Grouped k-fold validation": the procedure, the committed folds, the fold figures."""
    from . import cv, cv_report

    lines = [
        "## Grouped k-fold validation",
        "",
        "Model selection (issue 25) compares recipes by k-fold validation over *groups* of "
        "images that are not independent, so that a fold's validation images have no near-"
        "duplicate in its training part: each CVC-ClinicDB video sequence is a group and "
        "Kvasir-SEG is cut into groups of its own by file-name hash (polyp, 5 folds); DRIVE "
        "is split by image (vessels, 4 folds); the native-resolution nuclei by image (a "
        "MoNuSeg tile with its four quarters), stratified by source and modality "
        "(nuclei_native, 5 folds). Each task's pool is its split file's training and "
        "validation parts (held-back test images are never used); whole groups are dealt "
        "to the folds, balanced by image count within each stratum, deterministically "
        "(`scripts/zoolib/cv.py`). The folds are committed:",
        "",
        *cv.fold_table(),
        "",
        "`python scripts/zoo.py cv folds TASK` writes them; `python scripts/zoo.py cv run NAME "
        "[--folds K] [--threads N] [--time-budget S]` trains recipe NAME (or a recipe file, "
        "e.g. a try in `recipes/tries/`) once per fold in `runs/cv/NAME/fold<i>/` "
        "(resumable, like `zoo.py train`) on link folders `runs/cv/data/TASK/fold<i>/` and "
        "scores each fold's model on its validation images with `attnseg evaluate`; vessels "
        "folds are also scored on their validation photographs rescaled ×1.7 (a camera with "
        "a larger field of view) with the field of view matched (`--fov-diameter auto`). "
        "`python scripts/zoo.py cv report BASE NAME...` prints each fold's validation Dice, "
        "the mean ± sample standard deviation and the range, and each further recipe "
        "against BASE: *gain X ± spread Y*, where Y is the larger of the two recipes' "
        "standard deviations across folds; it writes `recipes/cv/NAME.json`, from which the "
        "figures below are written. A change counts only when its mean gain exceeds the "
        "spread.",
        "",
    ]
    figures = cv_report.reports()
    if figures:
        lines += ["Fold figures (validation Dice per fold; `recipes/cv/*.json`):", "",
                  *figures, ""]  # fmt: skip
    else:
        lines += ["No fold figures exist yet: `recipes/cv/` holds no report of "
                  "`zoo.py cv report`.", ""]  # fmt: skip
    return lines


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}"
