#!/usr/bin/env python
"""Reproduce the seed papers' tables on our validation splits and write docs/results.md.

    python scripts/make_splits.py            # once
    python scripts/zoo.py recipes            # once
    python scripts/paper_tables.py run [--jobs 2] [--only TABLE] [--task TASK]
    python scripts/paper_tables.py report    # -> docs/results.md

Every experiment is one zoo recipe (recipes/<arch>.<task>.json) with a few
changes, trained by ``attnseg train`` and scored by ``attnseg evaluate`` on
the validation split, exactly like the zoo; rows that are zoo models reuse
the zoo's run (runs/zoo/<name>). Each run's commands are kept in
runs/tables/<id>/commands.json.

Tables:
  loss      Table II: U-Net trained with Dice, Dice+CE and the Unified Focal
            loss, each with ε = 0 / 0.1 / 1 (nuclei, vessels)
  se, ag    Tables III/IV: U-Net vs USE-Net vs Focal USE-Net vs pruned Focal
            USE-Net (train with w = 0, prune w < 0.2, retrain), and the same
            with Attention Gates (nuclei, vessels)
  afnet     AF-Net ablation (Table 4): ResNet34 ± MFF/GFF/DA, serial (nuclei)
  ja        DenseUNet with none / SA / PWA / JA and all nine JA structures (nuclei)
  focusnet  FocusNet vs U-Net (every task; zoo runs)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import zoo  # noqa: E402

RUNS = ROOT / "runs" / "tables"
#: the tables' training budget: about half the zoo's, so the ~50 runs fit a 2-core CPU;
#: every row of a table shares it (table (e) compares zoo models, which share the zoo's)
TABLE_BUDGET = {
    "nuclei": {"epochs": 20},
    "vessels": {"epochs": 30, "samples_per_epoch": 256},
}
DOC = ROOT / "docs" / "results.md"

UFL = {"delta": 0.6, "lam": 0.5}


def experiments() -> list[dict]:
    """Every row: id, table, task, base recipe, changes, and whether it is a zoo run."""
    rows: list[dict] = []

    def add(table, task, label, base, *, zoo_run=False, options=None, train=None, prune=False):
        train = {**(TABLE_BUDGET[task] if not zoo_run else {}), **(train or {})}
        rows.append(
            {
                "id": f"{table}.{task}.{label}",
                "table": table,
                "task": task,
                "label": label,
                "base": f"{base}.{task}",
                "zoo": zoo_run,
                "options": options or {},
                "train": train,
                "prune": prune,
            }
        )

    for task in ("nuclei", "vessels"):
        gamma = zoo.TASKS[task]["gamma"]
        for loss, params in (
            ("dice", {}),
            ("dice_ce", {}),
            ("unified_focal", {**UFL, "gamma": gamma}),
        ):
            for eps in (0.0, 0.1, 1.0):
                label = f"{loss}+eps{eps:g}"
                add(
                    "loss",
                    task,
                    label,
                    "unet",
                    train={"loss": loss, "loss_params": {**params, "epsilon": eps}},
                )
        add("se", task, "U-Net", "unet")
        add("se", task, "USE-Net", "focal_use_net", options={"focal": None})
        add("se", task, "Focal USE-Net", "focal_use_net")
        add("se", task, "pruned Focal USE-Net", "focal_use_net", prune=True)
        add("ag", task, "U-Net", "unet")
        add("ag", task, "Attention U-Net", "focal_attention_unet", options={"focal": None})
        add("ag", task, "Focal Attention U-Net", "focal_attention_unet")
        add("ag", task, "pruned Focal Attention U-Net", "focal_attention_unet", prune=True)
    off = {"da": False, "mff": False, "gff": False}
    for label, options in (
        ("ResNet34", off),
        ("+ MFF", {**off, "mff": True}),
        ("+ GFF", {**off, "gff": True}),
        ("+ DA", {**off, "da": True}),
        ("+ MFF + GFF", {**off, "mff": True, "gff": True}),
        ("+ MFF + GFF + serial attention", {"attention": "serial"}),
    ):
        add("afnet", "nuclei", label, "afnet", options=options)
    add("afnet", "nuclei", "AF-Net", "afnet")
    for label in ("none", "sa", "pwa"):
        add("ja", "nuclei", label, "denseunet", options={"attention": label})
    add("ja", "nuclei", "ja1", "denseunet")
    for s in range(2, 10):
        add("ja", "nuclei", f"ja{s}", "denseunet", options={"attention": "ja", "ja_structure": s})
    for task in zoo.TASKS:
        add("focusnet", task, "U-Net", "unet", zoo_run=True)
        add("focusnet", task, "FocusNet", "focusnet", zoo_run=True)
    return rows


def run_dir(row: dict) -> Path:
    row = canonical_rows()[config_key(row)]
    if row["zoo"]:
        return zoo.RUNS / row["base"]
    return RUNS / row["id"].replace(" ", "_").replace("+", "_")


def derived_recipe(row: dict) -> Path:
    recipe = effective(row)
    recipe["card"]["metadata"] = {**recipe["card"]["metadata"], "experiment": row["id"]}
    path = run_dir(row) / "recipe.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(recipe, indent=2) + "\n")
    return path


def run_row(row: dict, threads: int) -> str:
    if row["zoo"]:
        return zoo.run_one(row["base"], threads)
    out_dir = run_dir(row)
    if (out_dir / "evaluation.json").exists():
        return f"{row['id']}: already done"
    recipe = derived_recipe(row)
    train, evaluate = zoo.commands(row["base"], out_dir)
    model = zoo._rel(out_dir / "model.safetensors")
    train[train.index("--config") + 1] = zoo._rel(recipe)
    train[train.index("--out") + 1] = model
    evaluate[evaluate.index("--model") + 1] = model
    if row["prune"]:
        train.append("--prune-workflow")
    return zoo.execute(row["id"], [train, evaluate], out_dir, threads)


def effective(row: dict) -> dict:
    """The recipe a row trains with: its zoo recipe with the row's changes applied."""
    recipe = json.loads((zoo.RECIPES / f"{row['base']}.json").read_text())
    recipe["options"] = {**recipe["options"], **row["options"]}
    recipe["train"] = {**recipe["train"], **row["train"]}
    return recipe


def config_key(row: dict) -> str:
    """Rows that train the same thing the same way share one run."""
    recipe = effective(row)
    return json.dumps(
        [
            recipe["arch"],
            recipe["task"],
            recipe["options"],
            recipe["train"],
            recipe["data"],
            row["zoo"],
            row["prune"],
        ],
        sort_keys=True,
    )


def canonical_rows() -> dict[str, dict]:
    """``{config key: the first row with that configuration}``; later twins reuse its run."""
    first: dict[str, dict] = {}
    for row in experiments():
        first.setdefault(config_key(row), row)
    return first


def run(jobs: int, only: list[str], tasks: list[str] | None = None) -> None:
    first = canonical_rows()
    unique, seen = [], set()
    for r in experiments():
        if only and r["table"] not in only:
            continue
        if tasks and r["task"] not in tasks:
            continue
        canonical = first[config_key(r)]
        if canonical["id"] not in seen:
            seen.add(canonical["id"])
            unique.append(canonical)
    threads = max(1, (os.cpu_count() or 2) // jobs)
    with ThreadPoolExecutor(jobs) as pool:
        for line in pool.map(lambda r: run_row(r, threads), unique):
            print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--jobs", type=int, default=1)
    r.add_argument("--only", action="append", default=[], help="a table name; repeatable")
    r.add_argument("--task", action="append", default=[], help="a task name; repeatable")
    sub.add_parser("report")
    sub.add_parser("list")
    args = parser.parse_args()
    if args.cmd == "run":
        run(args.jobs, args.only, args.task)
    elif args.cmd == "report":
        from report_tables import write_report

        write_report(experiments(), run_dir, DOC)
    else:
        for row in experiments():
            done = (run_dir(row) / "evaluation.json").exists()
            print(f"{row['id']:50} {'zoo' if row['zoo'] else '   '} {'done' if done else ''}")


if __name__ == "__main__":
    main()
