"""Write docs/results.md from the runs of scripts/paper_tables.py (called by its ``report``).

Every number on the page comes from a run folder's ``evaluation.json`` (``attnseg
evaluate``), its model file (parameters, GFLOPs: ``model_cost``) and its card (how
it was trained), or from the papers' tables (Yeung et al., ISBI 2022, Tables II-IV;
Hou et al., CMC 2021, Table 4; Zhang et al., ISBI 2022, Table 1). What the
page shows of each run is kept in ``docs/results.json`` (committed, unlike
``runs/``): a row whose run folder is missing is shown from there, so the page is
rewritten the same on a fresh clone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

from napari_attnseg._files import atomic_write
from napari_attnseg.models import PRUNE_THRESHOLD, load_model, model_cost

# The papers' own numbers, for the columns beside ours.
PAPER_LOSS = {  # Yeung et al., Table II, DSC; DRIVE and 2018 DSB rows
    "vessels": {
        "dice+eps0": 0.8082,
        "dice+eps1": 0.8086,
        "dice+eps0.1": 0.8105,
        "dice_ce+eps0": 0.8093,
        "dice_ce+eps1": 0.8070,
        "dice_ce+eps0.1": 0.8116,
        "unified_focal+eps0": 0.8142,
        "unified_focal+eps1": 0.8142,
        "unified_focal+eps0.1": 0.8155,
    },
    "nuclei": {
        "dice+eps0": 0.9147,
        "dice+eps1": 0.9016,
        "dice+eps0.1": 0.9150,
        "dice_ce+eps0": 0.9148,
        "dice_ce+eps1": 0.9085,
        "dice_ce+eps0.1": 0.9159,
        "unified_focal+eps0": 0.9157,
        "unified_focal+eps1": 0.9129,
        "unified_focal+eps0.1": 0.9165,
    },
}
PAPER_YEUNG = {  # Tables III (SE) and IV (AG): DSC, precision, recall
    "vessels": {
        "U-Net": (0.8142, 0.8199, 0.8127),
        "USE-Net": (0.8145, 0.8252, 0.8079),
        "Focal USE-Net": (0.8152, 0.8056, 0.8289),
        "pruned Focal USE-Net": (0.8159, 0.8114, 0.8246),
        "Attention U-Net": (0.8138, 0.8049, 0.8274),
        "Focal Attention U-Net": (0.8138, 0.8005, 0.8325),
        "pruned Focal Attention U-Net": None,  # nothing was pruned on DRIVE
    },
    "nuclei": {
        "U-Net": (0.9157, 0.9061, 0.9324),
        "USE-Net": (0.9131, 0.9001, 0.9354),
        "Focal USE-Net": (0.9159, 0.9024, 0.9374),
        "pruned Focal USE-Net": (0.9179, 0.9085, 0.9343),
        "Attention U-Net": (0.9127, 0.8997, 0.9345),
        "Focal Attention U-Net": (0.9145, 0.9018, 0.9365),
        "pruned Focal Attention U-Net": (0.9158, 0.9057, 0.9341),
    },
}
#: modules the paper kept after pruning (SE: of 9, AG: of 4)
PAPER_PRUNED_COUNT = {
    "pruned Focal USE-Net": {"vessels": 2, "nuclei": 4},
    "pruned Focal Attention U-Net": {"vessels": 0, "nuclei": 1},
}
#: the other papers' figures on their own data (no DSB or DRIVE result), Dice
PAPER_OTHER = {
    "FocusNet": ("ISIC 2017", 0.8315),
    "AF-Net": ("aorta CT", 0.874),
    "DenseUNet": ("ISIC 2017", 0.8363),
    "DenseUNet-SA": ("ISIC 2017", 0.8408),
    "DenseUNet-PWA": ("ISIC 2017", 0.8396),
    "DenseUNet-JA": ("ISIC 2017", 0.8500),
}
PAPER_DENSEUNET_DRIVE = {"DenseUNet-JA": 0.8164}  # Zhang et al., supplementary, DRIVE Dice
PAPER_AFNET = {  # Hou et al., Table 4 (aorta, private data): ACC, SEN, mIoU, DICE
    "ResNet34": (0.987, 0.845, 0.768, 0.852),
    "+ MFF": (0.996, 0.852, 0.787, 0.865),
    "+ GFF": (0.996, 0.858, 0.779, 0.853),
    "+ DA": (0.996, 0.865, 0.784, 0.860),
    "+ MFF + GFF": (0.996, 0.867, 0.801, 0.862),
    "+ MFF + GFF + serial attention": (0.996, 0.851, 0.791, 0.863),
    "AF-Net": (0.996, 0.873, 0.805, 0.874),
}
PAPER_JA = {  # Zhang et al., ISIC 2017 (Table 1): Dice, precision, recall
    "none": (0.8363, 0.9335, 0.8028),
    "sa": (0.8408, 0.9131, 0.8304),
    "pwa": (0.8396, 0.9006, 0.8377),
    "ja1": (0.8500, 0.9187, 0.8358),
}

#: the tasks' image sizes (before the working scale)
TASK_SIZE = {
    "nuclei": (96, 96),
    "vessels": (584, 565),
    "polyp": (160, 208),
    "membranes": (512, 512),
}
PAPER_DATA = {
    "nuclei": "2018 DSB at 256² with their random 428/108/134 split",
    "vessels": "DRIVE at 512² with 16/4 training/validation images, tested on the 20 test images",
}


def _fmt(x, digits=4):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}"


def _card(model_path: Path) -> dict:
    return json.loads(Path(model_path).with_suffix(".json").read_text())


def _working_size(task: str, card: dict) -> tuple[int, int]:
    if card.get("input_size"):
        return tuple(card["input_size"])
    scale = card.get("input_scale") or 1.0
    return tuple(round(side * scale) for side in TASK_SIZE[task])


def figures(result: dict, task: str) -> dict:
    """What the page shows of one evaluated row, from its evaluation and model file.

    These records are kept in ``docs/results.json`` beside the page, so that
    ``report`` rewrites the page the same on a machine without the run folders.
    """
    card = _card(result["model_path"])
    cost = model_cost(load_model(result["model_path"]), _working_size(task, card))
    t = card.get("training", {})
    return {
        "mean": {k: result["mean"][k] for k in ("dice", "jaccard", "precision", "sensitivity")},
        "params": cost.params,
        "gflops": round(cost.gflops, 4),
        "trained": {
            "device": t.get("environment", {}).get("device", "?"),
            "precision": t.get("precision", "?"),
            "epochs_run": t.get("epochs_run", "?"),
            "wall_time_s": t.get("wall_time_s"),
        },
        "variant": result.get("variant", "compact"),
        "pruning": card.get("metadata", {}).get("pruning", {}),
    }


def _cells(record: dict) -> list[str]:
    """Metrics, size and how the model was trained."""
    m, t = record["mean"], record["trained"]
    trained = (
        f"{t['device']} {t['precision']}, {t['epochs_run']} ep, "
        f"{(t.get('wall_time_s') or 0) / 60:.0f} min"
    )
    if record.get("variant") == "full":
        trained += ", full width"
    return [
        _fmt(m["dice"]),
        _fmt(m["jaccard"]),
        _fmt(m["precision"]),
        _fmt(m["sensitivity"]),
        f"{record['params'] / 1e6:.2f} M",
        f"{record['gflops']:.2f}",
        trained,
    ]


HEAD = "| Dice | Jaccard | precision | recall | params | GFLOPs | trained | paper | Δ Dice |"
RULE = "|---|---|---|---|---|---|---|---|---|"


def _rows(rows, results, paper_fn) -> list[str]:
    """Table lines: our numbers, the paper's figure and our Dice minus the paper's."""
    out = []
    for row in rows:
        result = results[row["id"]]
        paper, paper_dice = paper_fn(row)
        if result is None:
            out.append(f"| {row['label']} | (not run) | | | | | | | {paper} | |")
            continue
        delta = result["mean"]["dice"] - paper_dice if paper_dice is not None else None
        cells = _cells(result)
        delta_cell = "–" if delta is None else f"{delta:+.4f}"
        out.append(f"| {row['label']} | " + " | ".join(cells) + f" | {paper} | {delta_cell} |")
    return out


#: each architecture's compact size against its paper's
WIDTH_NOTE = {
    "unet": "U-Net width 16 (the paper's 32: about a quarter of the parameters)",
    "focal_use_net": "Focal USE-Net width 16 (the paper's 32)",
    "focal_attention_unet": "Focal Attention U-Net width 16 (the paper's 32)",
    "focusnet": "FocusNet at ×0.25 width",
    "afnet": "AF-Net width 16 (the paper's ResNet34 has 64)",
    "denseunet": "DenseUNet with growth 16 and blocks 4/6/8/6 (the paper's DenseNet-161: "
    "growth 48, blocks 6/12/36/24)",
}
PAPER_TRAINING = {
    "yeung": "U-Net family base width 32, batch 1, trained until early stopping (patience 50, "
    "plateau 25)",
    "afnet": "ResNet34 width 64 (ImageNet-initialised), SGD for 300 epochs on 448² aorta CT",
    "ja": "a DenseNet-161 encoder (ImageNet-initialised in H-DenseUNet; schedule "
    "unpublished) on ISIC 2017 at 256²",
}


def _budget_note(rows: list[dict], task: str, recipe_of: Callable, paper: str) -> str:
    """Why our figures differ from the paper's, from the recipes the rows trained with."""
    recipes = [recipe_of(r) for r in rows]
    train, data = recipes[0]["train"], recipes[0]["data"]
    archs = list(dict.fromkeys(r["arch"] for r in recipes))
    patch = f"{train.get('patch_size')}²"
    samples = train.get("samples_per_epoch")
    per_epoch = f"{samples} {patch} patches" if samples else f"a {patch} patch per training image"
    ours = (
        "; ".join(WIDTH_NOTE.get(a, a) for a in archs)
        + f"; batch {train['batch_size']}, {train['epochs']} epochs of {per_epoch} on a "
        "2-core CPU (precision and wall time per row under *trained*)"
    )
    scale = data.get("scale", 1.0)
    zoom = (train.get("augment") or {}).get("zoom")
    if scale != 1.0:
        ours += f", images enlarged {scale:g}× (the working scale)"
    if zoom:
        ours += f", zoom augmentation {zoom[0]:g}–{zoom[1]:g}×"
    data_note = {
        "nuclei": "DSB2018_96 (the stage-1 training images resized to 96²) with our 415/104 "
        "split, scored on the 104 validation images",
        "vessels": "DRIVE's 20 training images split 16/4, scored on the 4 validation images "
        "inside the field of view",
    }[task]
    return (
        f"*Why the figures differ ({task}).* The paper: {paper}. Here: {ours}; {data_note}; "
        "one seed, so differences of a few thousandths between rows are noise. A row trained "
        "on a GPU with the full recipes says *full width* in its *trained* cell."
    )


def write_report(
    rows: list[dict],
    result_of: Callable[[dict], dict | None],
    doc: Path,
    recipe_of: Callable[[dict], dict],
) -> Path:
    """Write the results page; ``result_of(row)`` is a row's evaluation (with
    ``model_path`` and ``variant``) or None; ``recipe_of(row)`` the recipe it trains
    (``paper_tables.effective``, passed in: ``paper_tables`` imports this module)."""
    ledger = doc.with_suffix(".json")
    kept = json.loads(ledger.read_text()) if ledger.exists() else {}
    results = {}
    for row in rows:  # a fresh evaluation, else the figures kept from an earlier report
        result = result_of(row)
        results[row["id"]] = figures(result, row["task"]) if result else kept.get(row["id"])
    by_table: dict[str, list[dict]] = {}
    for row in rows:
        by_table.setdefault(row["table"], []).append(row)
    done = sum(r is not None for r in results.values())
    per_task = []
    for task in ("nuclei", "vessels"):
        mine = [r for r in rows if r["task"] == task]
        per_task.append(f"{task} {sum(results[r['id']] is not None for r in mine)} of {len(mine)}")
    lines = [
        "# Results: the seed papers' tables on our validation splits",
        "",
        "Produced by `python scripts/paper_tables.py run --task nuclei --jobs 2` (then "
        "`--task vessels`) and `python scripts/paper_tables.py report` (this file). Each row "
        "is one `attnseg train` run of a zoo recipe with the row's change and one `attnseg "
        "evaluate` run on the validation split in `recipes/splits/` (the commands are in each "
        "run folder's `commands.json`, `runs/tables/<row>/`; the figures each run gave are "
        "kept in `docs/results.json`, from which `report` rewrites this page without the run "
        "folders). Metrics are per-image means; "
        "DRIVE is scored inside its field-of-view mask. Params and GFLOPs (PyTorch's count, "
        "1 multiply-add = 2 FLOPs) are for one image at the network's working size (nuclei: "
        "96² images at the 2× working scale, 192²; vessels 584×565). *Δ Dice* is our Dice "
        "minus the paper's, where the paper measured the same dataset.",
        "",
        f"**Status: {done} of {len(rows)} rows have been run** ({'; '.join(per_task)}). "
        "A row marked *(not run)* has no evaluation yet: "
        "`python scripts/paper_tables.py run --task nuclei --jobs 2` trains the missing rows "
        "(resuming unfinished ones; `--dry-run` lists them with a time estimate) and `report` "
        "rewrites this page.",
        "",
        "**Read these numbers for what they are.** The papers trained full-width networks on "
        "GPUs until early stopping; the rows here are compact networks trained for a fixed, "
        "small budget on a 2-core CPU, one seed each (each table's note gives the details). "
        "They show how the architectures and losses compare under that budget, not what "
        "the papers' models reach.",
        "",
    ]

    # (a) loss comparison
    lines += [
        "## (a) Loss functions on a U-Net (Table II of Yeung et al.)",
        "",
        "ε is the Focal Distance Penalty Term exponent (ε = 0: no boundary term, ε = 1: the "
        "DPT). The paper's column is its DSC on 2018 DSB / DRIVE.",
        "",
    ]
    for task in ("nuclei", "vessels"):
        mine = [r for r in by_table.get("loss", []) if r["task"] == task]
        if not mine:
            continue
        lines += [f"### {task}", "", "| loss " + HEAD, RULE + "---|"]
        lines += _rows(
            mine,
            results,
            lambda r: (_fmt(PAPER_LOSS[r["task"]].get(r["label"])),
                       PAPER_LOSS[r["task"]].get(r["label"])),
        )  # fmt: skip
        paper = f"{PAPER_TRAINING['yeung']}, {PAPER_DATA[task]}"
        lines += ["", _budget_note(mine, task, recipe_of, paper), ""]

    # (b) architectures
    lines += [
        "## (b) The architectures side by side (Tables III/IV of Yeung et al., FocusNet, "
        "AF-Net, DenseUNet-JA)",
        "",
        "Every architecture with its zoo recipe (its paper's loss and optimiser) and the same "
        "budget. A pruned network is trained with every Focal w initialised to 0, the modules "
        "with w < 0.2 are removed, and the rest is retrained from scratch with w = 1 (two "
        "trainings). The paper's column: Yeung et al.'s DSC / precision / recall on the same "
        "dataset; for FocusNet, AF-Net and DenseUNet, which were not evaluated on 2018 DSB, "
        "their Dice on their own data (no Δ).",
        "",
    ]

    def arch_paper(r):
        yeung = PAPER_YEUNG[r["task"]]
        if r["label"] in yeung:
            v = yeung[r["label"]]
            return ("–", None) if v is None else (" / ".join(_fmt(x) for x in v), v[0])
        if r["task"] == "vessels" and r["label"] in PAPER_DENSEUNET_DRIVE:
            dice = PAPER_DENSEUNET_DRIVE[r["label"]]
            return f"{_fmt(dice)} (DRIVE)", dice
        where, dice = PAPER_OTHER[r["label"]]
        return f"{where}: {_fmt(dice, 4 if dice < 0.87 else 3)}", None

    for task in ("nuclei", "vessels"):
        mine = [r for r in by_table.get("arch", []) if r["task"] == task]
        if not mine:
            continue
        lines += [f"### {task}", "", "| model " + HEAD, RULE + "---|"]
        lines += _rows(mine, results, arch_paper)
        for r in mine:
            if r["prune"] and results[r["id"]]:
                pruning = results[r["id"]].get("pruning", {})
                weights = pruning.get("probe_focal_weights", {})
                threshold = pruning.get("threshold", PRUNE_THRESHOLD)
                paper_kept = PAPER_PRUNED_COUNT[r["label"]][task]
                kept = [n for n, w in weights.items() if w >= threshold]
                note = (
                    f"{r['label']}: Focal w after the w = 0 probe: "
                    + ", ".join(f"`{n}` {w:.3f}" for n, w in weights.items())
                    + f". Kept {len(kept)} of {len(weights)} modules; the paper kept "
                    f"{paper_kept}."
                )
                if weights and not kept:
                    note += (
                        f" With every w under the cut-off ({threshold}), the retrained network "
                        "is the plain backbone"
                        + (
                            ": a short probe leaves w near 0, because a module's own weights "
                            "learn only once w leaves 0 (their gradient carries a factor w; the "
                            "probe of Yeung et al., ISBI 2022, §II-B, ran to convergence)."
                            if paper_kept
                            else ", as in the paper."
                        )
                    )
                lines += ["", note]
        paper = (
            f"{PAPER_TRAINING['yeung']}, {PAPER_DATA[task]} (FocusNet, AF-Net and DenseUNet: "
            "their own papers' sizes and data)"
        )
        lines += ["", _budget_note(mine, task, recipe_of, paper), ""]

    # (c) AF-Net ablation
    mine = by_table.get("afnet", [])
    if mine:
        lines += [
            "## (c) AF-Net ablation (Table 4 of Hou et al.), nuclei",
            "",
            "The paper's column is its ACC / SEN / mIoU / DICE on a private aorta CT set, "
            "shown only for the direction of each change (no Δ).",
            "",
            "| configuration " + HEAD,
            RULE + "---|",
        ]
        lines += _rows(
            mine, results, lambda r: (" / ".join(_fmt(x, 3) for x in PAPER_AFNET[r["label"]]), None)
        )
        lines += ["", _budget_note(mine, "nuclei", recipe_of, PAPER_TRAINING["afnet"]), ""]

    # (d) joint attention
    mine = by_table.get("ja", [])
    if mine:
        lines += [
            "## (d) DenseUNet with none / SA / PWA / joint attention, nuclei",
            "",
            "`ja1`…`ja9` are the nine joint-attention structures (parallel 1–3, SA-first 4–6, "
            "PWA-first 7–9; `models/blocks/joint.py`); the zoo's DenseUNet uses `ja1`. The "
            "paper's column is ISIC 2017 Dice / precision / recall (a dataset we do not have; "
            "its best structure is in an unavailable supplement).",
            "",
            "| skip attention " + HEAD,
            RULE + "---|",
        ]
        lines += _rows(
            mine,
            results,
            lambda r: (
                (" / ".join(_fmt(x) for x in PAPER_JA[r["label"]]), None)
                if r["label"] in PAPER_JA
                else ("–", None)
            ),
        )
        ja = [(r["label"], results[r["id"]]["mean"]["dice"]) for r in mine
              if r["label"].startswith("ja") and results[r["id"]]]  # fmt: skip
        if ja:
            best = max(ja, key=lambda t: t[1])
            lines += ["", f"Best of the structures run: `{best[0]}` (Dice {best[1]:.4f})."]
        lines += ["", _budget_note(mine, "nuclei", recipe_of, PAPER_TRAINING["ja"]), ""]
    text = "\n".join(lines).rstrip() + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    figures_kept = {k: results[k] for k in sorted(results) if results[k] is not None}
    data = json.dumps(figures_kept, indent=1) + "\n"  # the probe's weights keep their order
    atomic_write(ledger, lambda tmp: Path(tmp).write_text(data))
    atomic_write(doc, lambda tmp: Path(tmp).write_text(text))
    return doc
