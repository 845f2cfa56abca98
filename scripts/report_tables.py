"""Write docs/results.md from the runs of scripts/paper_tables.py (called by its ``report``)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

# The papers' own numbers (architectures.md §2.9, §4.7, §5.7), for the columns beside ours.
PAPER_LOSS = {  # Table II, DSC; DRIVE and 2018 DSB rows
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
PAPER_SE = {  # Table III: DSC, precision, recall
    "vessels": {
        "U-Net": (0.8142, 0.8199, 0.8127),
        "USE-Net": (0.8145, 0.8252, 0.8079),
        "Focal USE-Net": (0.8152, 0.8056, 0.8289),
        "pruned Focal USE-Net": (0.8159, 0.8114, 0.8246),
    },
    "nuclei": {
        "U-Net": (0.9157, 0.9061, 0.9324),
        "USE-Net": (0.9131, 0.9001, 0.9354),
        "Focal USE-Net": (0.9159, 0.9024, 0.9374),
        "pruned Focal USE-Net": (0.9179, 0.9085, 0.9343),
    },
}
PAPER_AG = {  # Table IV
    "vessels": {
        "U-Net": (0.8142, 0.8199, 0.8127),
        "Attention U-Net": (0.8138, 0.8049, 0.8274),
        "Focal Attention U-Net": (0.8138, 0.8005, 0.8325),
        "pruned Focal Attention U-Net": None,
    },
    "nuclei": {
        "U-Net": (0.9157, 0.9061, 0.9324),
        "Attention U-Net": (0.9127, 0.8997, 0.9345),
        "Focal Attention U-Net": (0.9145, 0.9018, 0.9365),
        "pruned Focal Attention U-Net": (0.9158, 0.9057, 0.9341),
    },
}
PAPER_PRUNED_COUNT = {"se": {"vessels": 2, "nuclei": 4}, "ag": {"vessels": 0, "nuclei": 1}}
PAPER_AFNET = {  # Table 4 (aorta, private data): ACC, SEN, mIoU, DICE
    "ResNet34": (0.987, 0.845, 0.768, 0.852),
    "+ MFF": (0.996, 0.852, 0.787, 0.865),
    "+ GFF": (0.996, 0.858, 0.779, 0.853),
    "+ DA": (0.996, 0.865, 0.784, 0.860),
    "+ MFF + GFF": (0.996, 0.867, 0.801, 0.862),
    "+ MFF + GFF + serial attention": (0.996, 0.851, 0.791, 0.863),
    "AF-Net": (0.996, 0.873, 0.805, 0.874),
}
PAPER_JA = {  # ISIC 2017 (Table 1): Dice, precision, recall
    "none": (0.8363, 0.9335, 0.8028),
    "sa": (0.8408, 0.9131, 0.8304),
    "pwa": (0.8396, 0.9006, 0.8377),
    "ja": (0.8500, 0.9187, 0.8358),
}
PAPER_FOCUSNET = "ISIC 2017 Dice 0.8315 (U-Net 0.768) and lung CT — datasets we do not have."

TASK_SIZE = {
    "nuclei": (96, 96),
    "vessels": (584, 565),
    "polyp": (160, 208),
    "membranes": (512, 512),
}


def _fmt(x, digits=4):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}"


def _load(row, run_dir: Callable) -> dict | None:
    path = run_dir(row) / "evaluation.json"
    if not path.exists():
        return _shipped(row) if row["zoo"] else None
    result = json.loads(path.read_text())
    model_path = next(run_dir(row).glob("*.safetensors"), None)
    result["model_path"] = model_path
    return result


def _shipped(row) -> dict | None:
    """A zoo row without its run folder: the shipped model's card, whose validation metrics
    were measured by ``attnseg evaluate`` on the shipped fp16 weights (scripts/zoo.py package)."""
    from napari_attnseg.zoo import WEIGHTS_DIR

    model_path = WEIGHTS_DIR / f"{row['base']}.safetensors"
    if not model_path.exists():
        return None
    result = dict(_card(model_path)["metrics"]["validation"])
    result["model_path"] = model_path
    return result


def _cost(model_path: Path, task: str) -> tuple[int, float]:
    from napari_attnseg.models import load_model, model_cost

    model = load_model(model_path)
    cost = model_cost(model, TASK_SIZE[task])
    return cost.params, cost.gflops


def _card(model_path: Path) -> dict:
    return json.loads(model_path.with_suffix(".json").read_text())


def _metrics_cells(result: dict, task: str) -> list[str]:
    m = result["mean"]
    params, gflops = _cost(result["model_path"], task)
    return [
        _fmt(m["dice"]),
        _fmt(m["jaccard"]),
        _fmt(m["precision"]),
        _fmt(m["sensitivity"]),
        f"{params / 1e6:.2f} M",
        f"{gflops:.2f}",
    ]


HEAD = "| Dice | Jaccard | precision | recall | params | GFLOPs |"
RULE = "|---|---|---|---|---|---|"


def write_report(rows: list[dict], run_dir: Callable, doc: Path) -> None:
    lines = [
        "# Results: the seed papers' tables on our validation splits",
        "",
        "Produced by `python scripts/paper_tables.py run --jobs 2` and "
        "`python scripts/paper_tables.py report` (this file). Each row is one "
        "`attnseg train` run and one `attnseg evaluate` run on the validation split in "
        "`recipes/splits/` (the exact commands are in each run's `commands.json` and in the "
        "model cards). Metrics are per-image means (`mean` in the evaluation JSON); "
        "DRIVE is scored inside its field-of-view mask. GFLOPs are PyTorch's flop count "
        "(1 multiply-add = 2 FLOPs) for one image at the task's size (nuclei 96×96, "
        "vessels 584×565, polyp 160×208, membranes 512×512).",
        "",
        "**Read these numbers for what they are.** Every model here is a compact network "
        "(U-Net family width 16, about 2 M parameters) trained on a 2-core CPU for a few "
        "dozen epochs, one seed each, because no GPU was available to this work; the papers "
        "trained full-width networks on GPUs for hundreds of epochs. Differences of a few "
        "thousandths between rows are within the run-to-run noise of a single seed.",
        "",
    ]
    by_table: dict[str, list[dict]] = {}
    for row in rows:
        by_table.setdefault(row["table"], []).append(row)
    results = {row["id"]: _load(row, run_dir) for row in rows}
    done = sum(result is not None for result in results.values())
    lines += [
        f"**Status: {done} of {len(rows)} rows have been run.** A row marked *(not run)* has "
        "no evaluation in `runs/` nor a shipped model: its training did not fit the "
        "compute this work had. "
        "`python scripts/paper_tables.py run --jobs 2 [--only TABLE] [--task TASK]` trains "
        "the missing rows (a GPU is strongly advised) and `report` rewrites this file.",
        "",
    ]

    def table_rows(table, task, paper_fn):
        out = []
        for row in [r for r in by_table.get(table, []) if r["task"] == task]:
            result = results[row["id"]]
            paper = paper_fn(row)
            if result is None:
                out.append(f"| {row['label']} | (not run) | | | | | | {paper} |")
                continue
            out.append(
                f"| {row['label']} | " + " | ".join(_metrics_cells(result, task)) + f" | {paper} |"
            )
        return out

    # (a) loss comparison
    lines += [
        "## (a) Loss functions on a U-Net (Table II of Yeung et al.)",
        "",
        "ε is the Focal Distance Penalty Term exponent (ε = 0: no boundary term, ε = 1: the DPT). "
        "The paper's column is its DSC on DRIVE / 2018 DSB.",
        "",
    ]
    for task in ("nuclei", "vessels"):
        lines += [
            f"### {task}",
            "",
            "| loss | Dice | Jaccard | precision | recall | params | GFLOPs | paper DSC |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += table_rows("loss", task, lambda r: _fmt(PAPER_LOSS[r["task"]].get(r["label"])))
        lines.append("")

    # (b) SE and AG
    for table, title, paper in (
        ("se", "Squeeze-and-Excitation (Table III)", PAPER_SE),
        ("ag", "Attention Gates (Table IV)", PAPER_AG),
    ):
        lines += [
            f"## (b) {title}",
            "",
            "The pruned network is trained with every Focal w initialised to 0, the modules "
            "with w < 0.2 are removed, and the rest is retrained from scratch with w = 1. "
            "The paper's column is its DSC / precision / recall.",
            "",
        ]
        for task in ("nuclei", "vessels"):
            lines += [
                f"### {task}",
                "",
                "| model | Dice | Jaccard | precision | recall | params | GFLOPs | paper |",
                "|---|---|---|---|---|---|---|---|",
            ]

            def paper_cell(r, paper=paper):
                v = paper[r["task"]].get(r["label"])
                return "–" if v is None else " / ".join(_fmt(x) for x in v)

            lines += table_rows(table, task, paper_cell)
            prune_row = next(
                (r for r in by_table.get(table, []) if r["task"] == task and r["prune"]), None
            )
            if prune_row and results[prune_row["id"]]:
                card = _card(results[prune_row["id"]]["model_path"])
                pruning = card["metadata"].get("pruning", {})
                weights = pruning.get("probe_focal_weights", {})
                kept = [n for n, w in weights.items() if w >= pruning.get("threshold", 0.2)]
                lines += [
                    "",
                    f"Focal w after the w = 0 probe ({task}): "
                    + ", ".join(f"`{n}` {w:.3f}" for n, w in weights.items()),
                    "",
                    f"Kept {len(kept)} of {len(weights)} modules ({', '.join(kept) or 'none'}); "
                    f"the paper kept {PAPER_PRUNED_COUNT[table][task]} on "
                    f"{'DRIVE' if task == 'vessels' else '2018 DSB'}.",
                ]
            lines.append("")

    # (c) AF-Net ablation
    lines += [
        "## (c) AF-Net ablation (Table 4 of Hou et al.), nuclei",
        "",
        "The paper's column is its ACC / SEN / mIoU / DICE on a private aorta CT set, "
        "shown only for the direction of each change.",
        "",
        "| configuration | Dice | Jaccard | precision | recall | params | GFLOPs | paper (aorta) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += table_rows(
        "afnet", "nuclei", lambda r: " / ".join(_fmt(x, 3) for x in PAPER_AFNET[r["label"]])
    )
    lines.append("")

    # (d) joint attention
    lines += [
        "## (d) DenseUNet with none / SA / PWA / joint attention, nuclei",
        "",
        "`ja1`…`ja9` are the nine joint-attention structures (parallel 1–3, SA-first 4–6, "
        "PWA-first 7–9; `models/blocks/joint.py`); the zoo's DenseUNet uses `ja1`. The "
        "paper's column is ISIC 2017 Dice / precision / recall (a dataset we do not have).",
        "",
        "| skip attention | Dice | Jaccard | precision | recall | params | GFLOPs "
        "| paper (ISIC 2017) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += table_rows(
        "ja",
        "nuclei",
        lambda r: (
            " / ".join(
                _fmt(x)
                for x in PAPER_JA.get(r["label"] if not r["label"].startswith("ja") else "ja", ())
            )
            if r["label"] in ("none", "sa", "pwa", "ja1")
            else "–"
        ),
    )
    ja = [
        (r["label"], results[r["id"]]["mean"]["dice"])
        for r in by_table.get("ja", [])
        if r["label"].startswith("ja") and results[r["id"]]
    ]
    if ja:
        best = max(ja, key=lambda t: t[1])
        lines += [
            "",
            f"Best of the nine structures on our split: `{best[0]}` (Dice {best[1]:.4f}).",
        ]
    lines.append("")

    # (e) FocusNet
    lines += [
        "## (e) FocusNet vs U-Net",
        "",
        f"The paper reports {PAPER_FOCUSNET}",
        "",
        "| task | model | Dice | Jaccard | precision | recall | params | GFLOPs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in by_table.get("focusnet", []):
        result = results[row["id"]]
        cells = _metrics_cells(result, row["task"]) if result else ["(not run)"] + [""] * 5
        lines.append(f"| {row['task']} | {row['label']} | " + " | ".join(cells) + " |")
    lines.append("")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("\n".join(lines) + "\n")
    print(f"wrote {doc}")
