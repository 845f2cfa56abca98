#!/usr/bin/env python
"""Train, evaluate and package the model zoo — one command per step, all reproducible.

    python scripts/make_splits.py                  # split folders under runs/data (once)
    python scripts/zoo.py recipes [--full] [--check]  # recipes/<arch>.<task>.json (--full: full/)
    python scripts/zoo.py train NAME... [--jobs 2] [--time-budget S] [--epochs E] [--package]
    python scripts/zoo.py status [NAME...]         # where every run is
    python scripts/zoo.py package [NAME...]        # fp16 weights + complete cards into the package
    python scripts/zoo.py docs                     # docs/zoo.md from the shipped cards
    python scripts/zoo.py check                    # every shipped card complete? (reads JSON only)
    python scripts/zoo.py complete NAME...|--all   # fill derivable card fields (weights unchanged)
    python scripts/zoo.py annotate NAME...         # the tasks' object rules into shipped cards
    python scripts/zoo.py cv folds|run|report ...  # grouped k-fold validation (zoolib/cv.py)
    python scripts/gpu_campaign.py [--budget 600] [--jobs 12] [--dry-run]   # the GPU campaign

**Runs.** Every model is trained by ``attnseg train --config recipes/<name>.json``
in its own run folder ``runs/zoo/<name>/`` (``runs/zoo_full/<name>/`` for the
full-width recipes): ``run.json`` (the run), ``last.ckpt`` (written after every
epoch), ``<name>.safetensors`` (the model), ``evaluation.json`` (``attnseg
evaluate`` on the validation split), ``commands.json`` (every command line, its
threads and wall time, one entry per sitting) and ``log.txt``. ``train`` looks
at each folder first: a finished and evaluated run is skipped, an interrupted
one or one stopped by its ``--time-budget`` is continued with ``attnseg train
--resume RUN``, a finished one is trained further when ``--epochs`` asks for
more, and a new one is started. So a model can be trained in as many sittings
as it takes; ``--package`` ships each model as soon as its run is finished, so
its weights can be committed at once.

**Packaging** adds or replaces only the named models in
``src/napari_attnseg/zoo/weights/`` — never deletes a shipped model, whether
its run is on this machine or not — and rebuilds ``index.json`` (each task's
default: the best validation Dice among the *shipped* models, as measured on
the shipped fp16 files) and ``docs/zoo.md`` from the committed cards alone.
Each shipped file is scored again, as fp16, by the code of ``attnseg
evaluate`` (``metrics.validation``, ``measured_by``), and its card is
completed from the run (:data:`CARD_REQUIRED`); a card that stays incomplete
is not shipped.

**Recipes** are data: ``recipes/tasks/`` holds each task (``<task>.json``: data,
training defaults, card, data set), each architecture's paper recipe
(``architectures.json``) and the models trained further (``further.json``);
``recipes`` derives ``recipes/<arch>.<task>.json`` from them
(``zoolib/recipes.py``), ``recipes --check`` says which committed file differs.
The recipes follow each architecture's paper, adapted for CPU training of compact
models where noted in ``notes``:

* U-Net / Focal USE-Net / Focal Attention U-Net — Yeung, Rundo, Sala, Schönlieb &
  Yang 2022 (Focal Attention Networks, ISBI, §II-D; the loss §II-A): Adam 1e-3,
  asymmetric Unified Focal loss (δ 0.6, λ 0.5, γ per dataset) + FDPT ε 0.1,
  plateau ×0.1 and early stopping (patience scaled down from 25/50 to the
  shorter budget), per-image z-score, flips/rotation/zoom/intensity augmentation;
* FocusNet — Kaul, Manandhar & Pears 2019 (FocusNet, ISBI, §3.2): 1 − Dice, Adam
  1e-3, plateau ×0.5 patience 5, dataset z-score, zoom + flips (+ channel shifts
  for RGB), best-validation model;
* AF-Net — Hou, Qin, Xiang, Tan & Xiong 2021 (AF-Net, Computers, Materials &
  Continua 69(2), §4.1): BCE, weight decay 1e-4, poly decay, CLAHE, flips, flip
  TTA at test time; Adam 1e-3 instead of their SGD 4e-3 (see its ``notes``);
* DenseUNet-JA — Zhang, Dong & Li 2022 (Joint Attention, ISBI, §3) give
  normalisation + CLAHE; the optimiser and loss are not published: Adam 1e-3 with
  Dice + CE (our choice).

The **full** recipes (``recipes/full/``, ``recipes --full``) are the same
recipes at the papers' widths and epochs (:data:`FULL_TRAIN`,
:func:`full_options`): the registered default sizes (U-Net family width 32,
FocusNet width ×1, AF-Net width 64) and DenseUNet at the H-DenseUNet size
(``denseunet161``), for GPUs.

**The GPU campaign** (``gpu``) trains the whole zoo and every table row of
``scripts/paper_tables.py`` on one NVIDIA GPU within ``--budget`` seconds by
running ``--jobs`` runs at once, each with a ``--time-budget`` computed from
the budget, the number of runs and the jobs (:func:`gpu_plan`), then packages
the zoo models that beat what is shipped and fit the size budget, and rewrites
``docs/zoo.md`` and ``docs/results.md``. It writes ``runs/gpu/campaign.json``
(the plan and what every run achieved) and ``runs/gpu/campaign.log``. It has
only been tried on a CPU with ``--dry-run`` (no GPU was available to this
work); ``--device`` lets it run on whatever there is.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from zoolib import paths
from zoolib.campaign import (
    GPU_JOBS,
    GPU_OVERHEAD_S,
    GPU_RESERVE_S,
    MIN_RUN_S,
    TableRows,
    campaign_runs,
    deal,
    gpu_campaign,
    gpu_plan,
)
from zoolib.cards import (
    CARD_REQUIRED,
    card_value,
    legacy_precision,
    missing_card_keys,
    shipped_cards,
    task_defaults,
    write_index,
)
from zoolib.docs import write_zoo_doc
from zoolib.packaging import (
    annotate,
    check_shipped,
    complete_card,
    complete_shipped,
    evaluate_shipped,
    finished_runs,
    object_rules,
    package,
    package_one,
)
from zoolib.paths import VARIANTS, recipes_dir, runs_dir
from zoolib.recipes import (
    ARCHITECTURES,
    ARCHS,
    FULL_TRAIN,
    PAPER_SIZE,
    TASKS,
    TRAIN_FURTHER,
    arch_recipe,
    full_options,
    own_recipe,
    recipe,
    recipe_names,
    stale_recipes,
    write_recipes,
)
from zoolib.runs import (
    LOCK_FILE,
    RUN_FILE,
    Run,
    RunLock,
    _threads,
    commands,
    drive,
    run_command,
    run_state,
    status,
    zoo_run,
)
from zoolib.runs import train_all as _train_all


def train_all(names: list[str], *, package_done: bool = False, max_mb: float = 60.0,
              variant: str = "compact", **options) -> list[dict]:
    """``train``: :func:`zoolib.runs.train_all`; with ``package_done``, each model is
    packaged (``zoolib.packaging.package``) as soon as its run is done."""
    from zoolib import packaging as packaging_

    def packaged(name: str) -> None:
        packaging_.package([name], variant=variant, max_mb=max_mb)

    return _train_all(names, variant=variant, on_done=packaged if package_done else None,
                      **options)


__all__ = [  # what zoo.py hands on (scripts/paper_tables.py, gpu_campaign.py, the tests)
    "GPU_JOBS", "GPU_OVERHEAD_S", "GPU_RESERVE_S", "MIN_RUN_S", "TableRows", "campaign_runs",
    "deal", "gpu_campaign", "gpu_plan", "CARD_REQUIRED", "card_value", "legacy_precision",
    "missing_card_keys", "shipped_cards", "task_defaults", "write_index", "write_zoo_doc",
    "annotate", "check_shipped", "complete_card", "complete_shipped", "evaluate_shipped",
    "finished_runs", "object_rules", "package", "package_one", "VARIANTS", "recipes_dir",
    "runs_dir", "ARCHITECTURES", "ARCHS", "FULL_TRAIN", "PAPER_SIZE", "TASKS", "TRAIN_FURTHER",
    "arch_recipe", "full_options", "own_recipe", "recipe", "recipe_names", "stale_recipes",
    "write_recipes", "LOCK_FILE", "RUN_FILE", "Run", "RunLock", "_threads", "commands", "drive",
    "run_command", "run_state", "status", "train_all", "zoo_run", "main",
]  # fmt: skip

# the names scripts/paper_tables.py has always used
_check_variant, _rel, _write_json = paths.check_variant, paths.rel, paths.write_json


def __getattr__(name: str):
    """The folders (``zoo.RECIPES``, ``zoo.WEIGHTS``, ...), read from :mod:`zoolib.paths`
    when asked for, so that a test that moves them there moves them here too."""
    if name in paths.FOLDERS:
        return getattr(paths, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- command line --------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("recipes", help="write the recipes (from recipes/tasks/)")
    r.add_argument("--full", action="store_true", help="the full-width recipes (recipes/full/)")
    r.add_argument(
        "--check",
        action="store_true",
        help="write nothing; fail where a committed recipe differs from its source",
    )

    def variant_flag(p):
        p.add_argument(
            "--full", dest="variant", action="store_const", const="full", default="compact",
            help="the full-width recipes and their runs (runs/zoo_full/)",
        )  # fmt: skip

    t = sub.add_parser("train", help="start, resume or extend runs; evaluate them")
    t.add_argument("names", nargs="*", help="recipe names (default: all)")
    t.add_argument("--jobs", type=int, default=1, help="runs at a time (CPU threads shared)")
    t.add_argument("--time-budget", type=float, default=None, help="seconds per sitting and run")
    t.add_argument("--epochs", type=int, default=None, help="train (on) to this many epochs")
    t.add_argument("--precision", default=None, help="auto, fp32, bf16 or fp16")
    t.add_argument("--device", default="auto")
    t.add_argument("--package", action="store_true", help="ship each model when its run is done")
    t.add_argument("--max-mb", type=float, default=60.0)
    t.add_argument(
        "--force", action="store_true", help="resume runs marked running (written < 30 min ago)"
    )
    variant_flag(t)
    s = sub.add_parser("status", help="where every run is")
    s.add_argument("names", nargs="*")
    s.add_argument("--runs", type=Path, default=None, help="a runs folder (default runs/zoo)")
    variant_flag(s)
    p = sub.add_parser("package", help="ship runs' models (adds or replaces only those)")
    p.add_argument("names", nargs="*", help="run names (default: every finished run)")
    p.add_argument("--max-mb", type=float, default=60.0, help="size budget of the weights folder")
    p.add_argument("--runs", type=Path, default=None, help="a runs folder (default runs/zoo)")
    p.add_argument("--device", default="cpu", help="device that scores the shipped files")
    p.add_argument("--only-if-better", action="store_true",
                   help="keep a shipped model whose validation Dice is as good")  # fmt: skip
    variant_flag(p)
    sub.add_parser("docs", help="docs/zoo.md from the shipped cards (checks index.json)")
    sub.add_parser("check", help="is every shipped card complete? (reads JSON only)")
    c = sub.add_parser("complete", help="fill derivable card fields of shipped models")
    c.add_argument("names", nargs="*")
    c.add_argument("--all", action="store_true")
    c.add_argument("--dry-run", action="store_true", help="say what would be filled")
    sub.add_parser("commands", help="the train and evaluate commands of a recipe").add_argument(
        "name"
    )
    sub.add_parser("annotate", help="write the object rules into shipped cards").add_argument(
        "names", nargs="+"
    )
    v = sub.add_parser("cv", help="grouped k-fold validation (zoolib/cv.py)")
    vs = v.add_subparsers(dest="cv", required=True)
    vf = vs.add_parser("folds", help="write recipes/splits/<task>_folds.json")
    vf.add_argument("tasks", nargs="+", help="polyp, vessels, nuclei_native")
    vf.add_argument("--k", type=int, default=None, help="folds (default: 5; vessels 4)")
    vr = vs.add_parser("run", help="train and score NAME once per fold (runs/cv/NAME/fold<i>)")
    vr.add_argument("name", help="a recipe's name, or a recipe file (e.g. recipes/tries/*.json)")
    vr.add_argument("--threads", type=int, default=None, help="threads per run (default: all)")
    vr.add_argument("--folds", type=int, default=None, help="K (must match the folds file)")
    vr.add_argument("--fold", type=int, action="append", help="only this fold (repeatable)")
    vr.add_argument("--task", default=None, help="whose folds (default: the recipe's)")
    for flag, kind in (("--time-budget", float), ("--epochs", int), ("--precision", str)):
        vr.add_argument(flag, type=kind, default=None)
    vr.add_argument("--device", default="auto")
    vr.add_argument("--force", action="store_true")
    vs.add_parser("report", help="fold Dice, mean ± spread; the others against the first")\
        .add_argument("names", nargs="+")  # fmt: skip
    args = parser.parse_args(argv)
    if args.cmd == "cv":
        from zoolib import cv

        if args.cv == "folds":
            for task in args.tasks:
                cv.write_folds(task, args.k)
        elif args.cv == "run":
            cv.run_cv(args.name, k=args.folds, only=args.fold, task=args.task,
                      time_budget=args.time_budget, epochs=args.epochs,
                      precision=args.precision, device=args.device, force=args.force,
                      threads=args.threads)  # fmt: skip
        else:
            from zoolib import cv_report

            cv_report.report(args.names)
    elif args.cmd == "recipes":
        variant = "full" if args.full else "compact"
        if not args.check:
            write_recipes(variant)
        elif stale_recipes(variant):
            print(
                f"differ from recipes/tasks/: {', '.join(stale_recipes(variant))}; "
                f"`zoo.py recipes{' --full' if args.full else ''}` rewrites them"
            )
            return 1
        else:
            print(f"every {variant} recipe is what recipes/tasks/ gives")
    elif args.cmd == "train":
        train_all(
            args.names,
            variant=args.variant,
            jobs=args.jobs,
            time_budget=args.time_budget,
            epochs=args.epochs,
            precision=args.precision,
            device=args.device,
            package_done=args.package,
            max_mb=args.max_mb,
            force=args.force,
        )
    elif args.cmd == "status":
        status(args.names, args.variant, args.runs)
    elif args.cmd == "package":
        package(
            args.names,
            variant=args.variant,
            runs=args.runs,
            max_mb=args.max_mb,
            device=args.device,
            only_if_better=args.only_if_better,
        )
    elif args.cmd == "docs":
        print(f"wrote {_rel(write_zoo_doc())}")
        defaults = task_defaults(shipped_cards())
        index = paths.read_json(paths.WEIGHTS / "index.json").get("defaults")
        if index != defaults:
            print(f"index.json says {index}, the cards {defaults}: `zoo.py package` rewrites it")
            return 1
    elif args.cmd == "check":
        return check_shipped()
    elif args.cmd == "complete":
        names = sorted(shipped_cards()) if args.all else args.names
        if not names:
            parser.error("complete: name models or give --all")
        complete_shipped(names, dry_run=args.dry_run)
    elif args.cmd == "annotate":
        annotate(args.names)
    elif args.cmd == "commands":
        for cmd in commands(args.name, paths.RUNS / args.name):
            print(shlex.join(cmd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
