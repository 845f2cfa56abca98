#!/usr/bin/env python
"""Reproduce the seed papers' tables on our validation splits and write docs/results.md.

    python scripts/make_splits.py            # once
    python scripts/zoo.py recipes            # once (and --full for the GPU variant)
    python scripts/paper_tables.py run --task nuclei [--jobs 2] [--only TABLE] [--dry-run]
    python scripts/paper_tables.py report    # -> docs/results.md
    python scripts/paper_tables.py measure   # seconds per epoch -> the row budget estimate

Every row is one zoo recipe (``recipes/<arch>.<task>.json``; ``--full``:
``recipes/full/``) with the row's changes and the tables' budget
(:data:`TABLE_BUDGET`), trained by ``attnseg train`` in its own run folder
(``runs/tables/<id>/``; ``runs/tables_full/`` for the full variant) and scored
by ``attnseg evaluate`` on the validation split, exactly like the zoo (it uses
the zoo's driver, ``zoo.drive``: a run stopped by ``--time-budget`` or
interrupted is resumed next time, a finished one is skipped). So the rows
share the zoo recipes' data handling — for nuclei the 2× working scale and
the 0.5–2× zoom augmentation. Rows that train the same configuration share
one run; a row that trains exactly a zoo recipe, or exactly what a zoo run
trained (its ``run.json``: the compact nuclei models trained for the tables'
15 epochs), uses the zoo's run.

Tables (``--only``), each for nuclei first and then vessels (``--task``):
  loss    Table II of Yeung et al.: a U-Net trained with Dice, Dice + CE and the
          Unified Focal loss, each with ε = 0 / 0.1 / 1 (the distance penalty term)
  arch    the architectures side by side: U-Net, USE-Net, Focal USE-Net, pruned
          Focal USE-Net (train with w = 0, prune w < 0.2, retrain), Attention
          U-Net, Focal and pruned Focal Attention U-Net (Tables III/IV), FocusNet,
          AF-Net, DenseUNet with none / SA / PWA / JA skip attention
  afnet   AF-Net ablation (Table 4 of Hou et al.): ResNet34 ± MFF / GFF / DA, serial
          attention (nuclei)
  ja      DenseUNet with none / SA / PWA and all nine joint-attention structures (nuclei)

**Budget of the compact rows** (``measure``, 2-core CPU): see
:data:`TABLE_BUDGET` and :data:`EPOCH_SECONDS`; ``run --dry-run`` prints each
row's estimated time and the total for ``--jobs``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from napari_attnseg.models import create_model

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import zoo  # noqa: E402

RUNS = ROOT / "runs" / "tables"
DOC = ROOT / "docs" / "results.md"
TABLES = ("loss", "arch", "afnet", "ja")
TASK_ORDER = ("nuclei", "vessels")

#: the tables' training budget per variant and task. Compact (CPU): 15 nuclei epochs (415
#: patches each), the epochs the compact zoo's other nuclei models were trained for, so
#: those runs are the rows that train their recipes (:func:`zoo_trained`); the 35 nuclei
#: runs behind the 41 nuclei rows take about 4.5 hours of this 2-core CPU with 2 jobs
#: (EPOCH_SECONDS; `run --dry-run --task nuclei --jobs 2` prints the estimate); vessels as
#: compute allows, 25 epochs (as the zoo's other vessel models). Full (GPU): the full
#: recipes' own epochs (the papers'), capped by the campaign's time budget.
TABLE_BUDGET: dict[str, dict[str, dict]] = {
    "compact": {
        "nuclei": {"epochs": 15},
        "vessels": {"epochs": 25, "samples_per_epoch": 256},
    },
    "full": {},
}
#: CPU seconds of one nuclei epoch (415 training patches of 128², batch 8, bf16, one thread,
#: and scoring the 104 validation images at 192²) per architecture at its compact size:
#: `python scripts/paper_tables.py measure --task nuclei --threads 1 --steps 4` (4 timed
#: steps, 8 scored images, scaled up; its CPU seconds, since the machine was shared: the
#: process got 33-37 % of a core at load average 6.8-8.5, wall times about 3x these)
EPOCH_SECONDS: dict[str, dict[str, float]] = {
    "nuclei": {
        "unet": 57.0,
        "focal_use_net": 60.0,
        "focal_attention_unet": 73.0,
        "focusnet": 101.0,
        "afnet": 38.0,
        "denseunet": 52.0,
    }
}
#: CPU seconds of a run outside its epochs: start-up, loading the split (CLAHE for AF-Net
#: and DenseUNet), scoring the model with attnseg evaluate (two passes: auto diameter)
RUN_OVERHEAD_SECONDS: dict[str, float] = {"nuclei": 40.0}

UFL = {"delta": 0.6, "lam": 0.5}


def table_runs(variant: str = "compact") -> Path:
    zoo._check_variant(variant)
    return RUNS if variant == "compact" else RUNS.parent / "tables_full"


def experiments() -> list[dict]:
    """Every row: id, table, task, label, base zoo recipe, its changes, pruning.

    The tables' budget is not a change of the row: :func:`effective` applies the
    variant's :data:`TABLE_BUDGET`.
    """
    rows: list[dict] = []

    def add(table, task, label, base, *, options=None, train=None, prune=False):
        rows.append(
            {
                "id": f"{table}.{task}.{label}",
                "table": table,
                "task": task,
                "label": label,
                "base": f"{base}.{task}",
                "options": options or {},
                "train": train or {},
                "prune": prune,
            }
        )

    for task in TASK_ORDER:
        gamma = zoo.TASKS[task]["gamma"]
        for loss, params in (
            ("dice", {}),
            ("dice_ce", {}),
            ("unified_focal", {**UFL, "gamma": gamma}),
        ):
            for eps in (0.0, 0.1, 1.0):
                add(
                    "loss",
                    task,
                    f"{loss}+eps{eps:g}",
                    "unet",
                    train={"loss": loss, "loss_params": {**params, "epsilon": eps}},
                )
        add("arch", task, "U-Net", "unet")
        add("arch", task, "USE-Net", "focal_use_net", options={"focal": None})
        add("arch", task, "Focal USE-Net", "focal_use_net")
        add("arch", task, "pruned Focal USE-Net", "focal_use_net", prune=True)
        add("arch", task, "Attention U-Net", "focal_attention_unet", options={"focal": None})
        add("arch", task, "Focal Attention U-Net", "focal_attention_unet")
        add("arch", task, "pruned Focal Attention U-Net", "focal_attention_unet", prune=True)
        add("arch", task, "FocusNet", "focusnet")
        add("arch", task, "AF-Net", "afnet")
        add("arch", task, "DenseUNet", "denseunet", options={"attention": "none"})
        add("arch", task, "DenseUNet-SA", "denseunet", options={"attention": "sa"})
        add("arch", task, "DenseUNet-PWA", "denseunet", options={"attention": "pwa"})
        add("arch", task, "DenseUNet-JA", "denseunet")
    off = {"da": False, "mff": False, "gff": False}
    for label, options in (
        ("ResNet34", off),
        ("+ MFF", {**off, "mff": True}),
        ("+ GFF", {**off, "gff": True}),
        ("+ DA", {**off, "da": True}),
        ("+ MFF + GFF", {**off, "mff": True, "gff": True}),
        ("+ MFF + GFF + serial attention", {"attention": "serial"}),
        ("AF-Net", {}),
    ):
        add("afnet", "nuclei", label, "afnet", options=options)
    for label in ("none", "sa", "pwa"):
        add("ja", "nuclei", label, "denseunet", options={"attention": label})
    add("ja", "nuclei", "ja1", "denseunet")
    for s in range(2, 10):
        add("ja", "nuclei", f"ja{s}", "denseunet", options={"attention": "ja", "ja_structure": s})
    return rows


def zoo_recipe(row: dict, variant: str = "compact") -> dict:
    """The task's recipe of the row's architecture (a zoo model with a recipe of its own,
    ``zoo.own_recipe``, is not what the papers' tables train)."""
    arch, task = row["base"].split(".")
    return zoo.recipe(arch, task, variant, own=False)


def effective(row: dict, variant: str = "compact") -> dict:
    """The recipe a row trains with: its zoo recipe with the row's changes applied."""
    recipe = zoo_recipe(row, variant)
    budget = TABLE_BUDGET[variant].get(row["task"], {})
    recipe["options"] = {**recipe["options"], **row["options"]}
    recipe["train"] = {**recipe["train"], **budget, **row["train"]}
    return recipe


def config_key(row: dict, variant: str = "compact") -> str:
    """Rows that train the same thing the same way share one run."""
    recipe = effective(row, variant)
    fields = [recipe[k] for k in ("arch", "task", "options", "train", "data")]
    return json.dumps([*fields, row["prune"]], sort_keys=True)


def canonical_rows(variant: str = "compact") -> dict[str, dict]:
    """``{config key: the first row with that configuration}``; later twins reuse its run."""
    first: dict[str, dict] = {}
    for row in experiments():
        first.setdefault(config_key(row, variant), row)
    return first


def is_zoo_twin(row: dict, variant: str = "compact") -> bool:
    """The row trains exactly its zoo recipe: it is the zoo's run."""
    if zoo.own_recipe(row["base"], variant) is not None:
        return False  # the zoo's run trained another recipe
    zoo_ = zoo_recipe(row, variant)
    mine = effective(row, variant)
    return not row["prune"] and all(zoo_[k] == mine[k] for k in ("options", "train"))


#: how a run was executed, not what it trained: a row and a run may differ in these
EXECUTION = ("device", "precision", "time_budget", "num_workers")


def zoo_trained(row: dict, variant: str = "compact") -> bool:
    """The zoo's run of the row's recipe trained exactly the row's configuration (its
    ``run.json``: e.g. a zoo model trained for the tables' epochs with ``--epochs``)."""
    from napari_attnseg.training import Recipe, RunSpec

    run_dir = zoo.runs_dir(variant) / row["base"]
    if row["prune"] or not (run_dir / zoo.RUN_FILE).exists():
        return False
    try:
        ran = RunSpec.load(run_dir).recipe
    except (OSError, ValueError):
        return False
    mine = Recipe.from_dict(effective(row, variant))

    def what(recipe) -> tuple:
        train = {k: v for k, v in recipe.train.to_dict().items() if k not in EXECUTION}
        return recipe.arch, recipe.options, recipe.data, train, recipe.init

    return what(ran) == what(mine)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in text)


def row_run(row: dict, variant: str = "compact", device: str = "auto") -> zoo.Run:
    """The run that trains a row (shared by every row with its configuration)."""
    row = canonical_rows(variant)[config_key(row, variant)]
    if is_zoo_twin(row, variant) or zoo_trained(row, variant):
        return zoo.zoo_run(row["base"], variant, device)
    run_dir = table_runs(variant) / _slug(row["id"])
    train, evaluate = zoo.commands(row["base"], run_dir, variant, device)
    model = run_dir / "model.safetensors"
    recipe_path = run_dir / "recipe.json"
    train[train.index("--config") + 1] = zoo._rel(recipe_path)
    train[train.index("--out") + 1] = zoo._rel(model)
    evaluate[evaluate.index("--model") + 1] = zoo._rel(model)
    if row["prune"]:
        train.insert(train.index("--quiet"), "--prune-workflow")

    def prepare() -> None:
        recipe = effective(row, variant)
        recipe["card"]["metadata"] = {**recipe["card"]["metadata"], "experiment": row["id"]}
        zoo._write_json(recipe_path, recipe)

    return zoo.Run(
        row["id"],
        run_dir,
        model,
        train,
        evaluate,
        units=2 if row["prune"] else 1,
        kind="table",
        prepare=prepare,
        resumable=not row["prune"],  # the pruning workflow restarts instead
        meta={"row": row["id"], "variant": variant},
    )


def select(
    rows: list[dict], tables: list[str] | None = None, tasks: list[str] | None = None
) -> list[dict]:
    for name in tables or []:
        if name not in TABLES:
            raise SystemExit(f"unknown table {name!r}; tables: {', '.join(TABLES)}")
    for task in tasks or []:
        if task not in zoo.TASKS:
            raise SystemExit(f"unknown task {task!r}; tasks: {', '.join(zoo.TASKS)}")
    return [
        r
        for r in rows
        if (not tables or r["table"] in tables) and (not tasks or r["task"] in tasks)
    ]


def unique_rows(
    variant: str = "compact", tasks: list[str] | None = None, tables: list[str] | None = None
) -> list[dict]:
    """The selected rows' configurations, each once (the first row that has it)."""
    first = canonical_rows(variant)
    unique, seen = [], set()
    for row in select(experiments(), tables, tasks):
        canonical = first[config_key(row, variant)]
        if canonical["id"] not in seen:
            seen.add(canonical["id"])
            unique.append(canonical)
    return unique


def estimate_seconds(row: dict, variant: str = "compact") -> float | None:
    """A row's expected wall time on the 2-core CPU (2 jobs), from :data:`EPOCH_SECONDS`."""
    per_epoch = EPOCH_SECONDS.get(row["task"], {}).get(row["base"].split(".")[0])
    if variant != "compact" or per_epoch is None:
        return None
    epochs = effective(row, variant)["train"]["epochs"]
    trainings = 2 if row["prune"] else 1
    return trainings * epochs * per_epoch + RUN_OVERHEAD_SECONDS.get(row["task"], 0.0)


def run(
    *,
    variant: str = "compact",
    jobs: int = 1,
    tables: list[str] | None = None,
    tasks: list[str] | None = None,
    time_budget: float | None = None,
    device: str = "auto",
    dry_run: bool = False,
) -> list[dict]:
    """``run``: train and score the selected rows (each configuration once)."""
    rows = unique_rows(variant, tasks, tables)
    listed = select(experiments(), tables, tasks)
    threads = zoo._threads(jobs)
    if dry_run:
        total = 0.0
        print(
            f"{len(listed)} rows, {len(rows)} runs ({variant}), {jobs} job(s) with "
            f"{threads} thread(s) each:"
        )
        plan = []
        for row in rows:
            r = row_run(row, variant, device)
            state, detail = zoo.run_state(r)
            seconds = estimate_seconds(row, variant)
            total += seconds or 0.0
            epochs = effective(row, variant)["train"]["epochs"]
            minutes = f"~{seconds / 60:.0f} min" if seconds is not None else "no estimate"
            print(f"  {row['id']:48} {epochs:3d} epochs {minutes:>12}  {state}: {detail}")
            print(f"      {' '.join(r.train)}")
            plan.append({"row": row["id"], "state": state, "epochs": epochs, "seconds": seconds})
        if total:
            # two jobs at one thread each do about two rows at once on two cores
            wall = total / max(1, min(jobs, os.cpu_count() or 2))
            print(f"estimated {total / 3600:.1f} h of single-thread runs: ~{wall / 3600:.1f} h "
                  f"of wall time with {jobs} job(s)")  # fmt: skip
        return plan
    print(f"{len(listed)} rows, {len(rows)} runs, {jobs} at a time; run folders in "
          f"{zoo._rel(table_runs(variant))}/", flush=True)  # fmt: skip

    def one(row: dict) -> dict:
        record = zoo.drive(
            row_run(row, variant, device),
            threads=threads,
            time_budget=time_budget,
            log=lambda line: print(line, flush=True),
        )
        return record

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        return list(pool.map(one, rows))


def result_of(row: dict) -> dict | None:
    """A row's evaluation (full variant first, then compact), with its model and variant."""
    for variant in ("full", "compact"):
        if not (zoo.recipes_dir(variant) / f"{row['base']}.json").exists():
            continue
        r = row_run(row, variant)
        evaluation = r.run_dir / "evaluation.json"
        if evaluation.exists() and r.model.exists():
            result = json.loads(evaluation.read_text())
            result.update(model_path=r.model, variant=variant, run_dir=r.run_dir)
            return result
    return None


def write_results(doc: Path | None = None) -> Path:
    from report_tables import write_report

    return write_report(experiments(), result_of, doc or DOC, recipe_of=effective)


# -- measuring the row budget -----------------------------------------------------------------
def _subset(src: Path, dst: Path, n: int) -> None:
    """Links to the first ``n`` image/mask pairs of a split folder."""
    for kind in ("images", "masks"):
        (dst / kind).mkdir(parents=True)
    for image in sorted((src / "images").iterdir())[:n]:
        mask = next((src / "masks").glob(image.stem + ".*"))
        (dst / "images" / image.name).symlink_to(image.resolve())
        (dst / "masks" / mask.name).symlink_to(mask.resolve())


def measure(
    task: str = "nuclei", *, steps: int = 3, val_images: int = 8, precision: str = "bf16",
    threads: int = 1, archs: list[str] | None = None,
) -> dict:  # fmt: skip
    """``measure``: seconds per training epoch and per validation pass of each
    architecture's table row on ``task`` (compact, on this machine), from ``steps``
    timed training steps and ``val_images`` scored images, scaled to the split."""
    # the training engine imports MONAI: only this subcommand needs it
    from napari_attnseg.training import DataSpec, TrainConfig, Trainer, load_folder_data

    torch.set_num_threads(threads)
    split = zoo.DATA / task
    n_train = len(list((split / "train" / "images").iterdir()))
    n_val = len(list((split / "val" / "images").iterdir()))
    base = {r["base"].split(".")[0]: r for r in experiments() if r["task"] == task}
    archs = archs or list(base)
    out: dict = {"task": task, "threads": threads, "precision": precision, "archs": {}}
    out["loadavg_before"] = Path("/proc/loadavg").read_text().split()[:3]
    with tempfile.TemporaryDirectory() as tmp:
        row0 = next(iter(base.values()))
        batch = effective(row0)["train"]["batch_size"]
        _subset(split / "train", Path(tmp) / "train", steps * batch)
        _subset(split / "val", Path(tmp) / "val", val_images)
        for arch in archs:
            recipe = effective(base[arch])
            spec = DataSpec(**recipe["data"])
            t0 = time.perf_counter()
            train, val, normalization = load_folder_data(
                Path(tmp) / "train/images", Path(tmp) / "train/masks", spec,
                val_images=Path(tmp) / "val/images", val_masks=Path(tmp) / "val/masks",
            )  # fmt: skip
            load = (time.perf_counter() - t0) / (len(train) + len(val))
            config = TrainConfig.from_dict(
                {**recipe["train"], "epochs": 2, "samples_per_epoch": steps * batch,
                 "precision": precision, "device": "cpu", "early_stopping": None}
            )  # fmt: skip
            model = create_model(
                recipe["arch"], spec.in_channels, spec.n_classes, **recipe["options"]
            )
            trainer = Trainer(model, config, train, [])
            wall, cpu = time.perf_counter(), time.process_time()
            history = trainer.fit()
            share = (time.process_time() - cpu) / (time.perf_counter() - wall)
            step = history.epochs[-1]["seconds"] / steps  # the second epoch: warmed up
            trainer.val_samples = val
            wall, cpu = time.perf_counter(), time.process_time()
            trainer.validate()
            per_image = (time.perf_counter() - wall) / len(val)
            val_share = (time.process_time() - cpu) / (time.perf_counter() - wall)
            epoch = math.ceil(n_train / batch) * step + n_val * per_image
            # CPU seconds: what the epoch takes on a core of its own (the machine is shared)
            epoch_cpu = math.ceil(n_train / batch) * step * share + n_val * per_image * val_share
            loading = load * (n_train + n_val)
            out["archs"][arch] = {
                "step_s": round(step, 3),
                "val_image_s": round(per_image, 4),
                "epoch_s": round(epoch, 1),
                "cpu_share": round(share, 2),
                "epoch_cpu_s": round(epoch_cpu, 1),
                "load_s": round(loading, 1),
            }
            print(f"{arch:22} {step:.2f} s/step, {per_image:.3f} s/val image -> "
                  f"{epoch:.0f} s/epoch ({epoch_cpu:.0f} CPU s, {share:.0%} of a core); "
                  f"loading {loading:.0f} s",
                  flush=True)  # fmt: skip
    out["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    out["load_s"] = round(statistics.median(a["load_s"] for a in out["archs"].values()), 1)
    print(f"load average before {out['loadavg_before']}, after {out['loadavg_after']}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train and score the rows (resumes; skips finished ones)")
    r.add_argument("--jobs", type=int, default=1)
    r.add_argument("--only", action="append", default=[], help="a table name; repeatable")
    r.add_argument("--task", action="append", default=[], help="a task name; repeatable")
    r.add_argument("--time-budget", type=float, default=None, help="seconds per run and sitting")
    r.add_argument("--device", default="auto")
    r.add_argument("--full", dest="variant", action="store_const", const="full",
                   default="compact", help="the full-width recipes (a GPU)")  # fmt: skip
    r.add_argument("--dry-run", action="store_true", help="print the rows, states and commands")
    sub.add_parser("report", help="write docs/results.md")
    sub.add_parser("list", help="every row and whether it has been run")
    m = sub.add_parser("measure", help="seconds per epoch of each architecture's rows")
    m.add_argument("--task", default="nuclei")
    m.add_argument("--steps", type=int, default=3)
    m.add_argument("--val-images", type=int, default=8)
    m.add_argument("--threads", type=int, default=1)
    m.add_argument("--precision", default="bf16")
    m.add_argument("--arch", action="append", default=[])
    m.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.cmd == "run":
        run(
            variant=args.variant,
            jobs=args.jobs,
            tables=args.only or None,
            tasks=args.task or None,
            time_budget=args.time_budget,
            device=args.device,
            dry_run=args.dry_run,
        )
    elif args.cmd == "report":
        print(f"wrote {zoo._rel(write_results())}")
    elif args.cmd == "measure":
        figures = measure(
            args.task,
            steps=args.steps,
            val_images=args.val_images,
            precision=args.precision,
            threads=args.threads,
            archs=args.arch or None,
        )
        if args.json:
            zoo._write_json(args.json, figures)
    else:
        for row in experiments():
            done = result_of(row)
            print(f"{row['id']:50} {done['variant'] if done else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
