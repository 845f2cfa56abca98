"""``attnseg train`` and ``attnseg finetune``.

The engine (``napari_attnseg.training``, which imports MONAI) is imported when
a command runs, not when the command line starts, like the other subcommands.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from ..models import PRUNE_THRESHOLD
from ._common import (
    PRECISIONS,
    ProgressBar,
    add_device,
    add_quiet,
    integer,
    number,
    parse_options,
)

TRAIN_HELP = """\
Build an architecture and train it on an image folder and a mask folder paired
by file stem. With no other flag, the settings fit the data and the machine:
random patches of the largest power of two that fits the smallest image (at
most 256 px), batch 8, the architecture's compact width on a CPU (its
registered width on a GPU) and precision auto (bf16 autocast on CPUs where
native bf16 is measured faster than fp32 and on CUDA GPUs that support it,
fp16 on other CUDA GPUs, fp32 elsewhere; weights, losses and metrics stay fp32).

--config takes a JSON recipe ({"arch", "options", "data", "train", "card", ...};
the zoo's recipes/*.json are examples) and command-line flags override it.
--prune-workflow runs Yeung et al.'s Focal pruning in one go: train with every
Focal w initialised to 0, prune the modules with w < --prune-threshold, retrain.
--init MODEL (or a recipe's "init": {"model": PATH, "sha256": HEX}) starts from a
saved model's weights instead of random ones, to train a model further with a
new schedule or augmentation: the architecture and options must match, and the
run pins the file's SHA-256 (a changed file is refused) and keeps what it
started from in init.json, so that a --resume continues without the file.
(`attnseg finetune` instead keeps the model's recipe and adapts it to new data.)

Every run has a run folder (--run-dir; default: beside --out, named after it,
e.g. m.safetensors -> m.run/) holding run.json (the recipe with every override
applied, the data folders, the output path), best.safetensors (the best
weights so far) and last.ckpt (model, optimiser and schedule, written
atomically after every epoch). An interrupted run (Ctrl-C, a crash, a closed
session) continues where its last epoch ended with

    attnseg train --resume RUN

and no other flag; --epochs (to train longer), --time-budget (seconds per
sitting), --device and --precision may be given with --resume. A resumed run
ends with the weights an uninterrupted one would have. Starting a new run in a
folder that holds an unfinished one is refused.

On several GPUs (or CPU processes), start the same command under torchrun:

    torchrun --nproc-per-node N -m napari_attnseg.cli train ...

Each process trains on its share of every epoch with batch --batch-size (so
a step sees N x batch patches) and rank 0 alone writes the model, the card
and the run folder. Resume such a run under torchrun with the same N.
See docs/distributed_training.md (NCCL/gloo, SLURM, timeouts).
"""

FINETUNE_HELP = """\
Continue training a saved or zoo MODEL on new image/mask folders (paired by
file stem). The model keeps its own input handling (channels, normalisation,
scale, input size); training starts from lr 1e-4 for 20 epochs with early
stopping after 10 epochs without improvement, and flags override any of it.
The result is a new model file (the original is never changed) whose card
names the model it was tuned from; every other subcommand accepts it.
Under `torchrun --nproc-per-node N -m napari_attnseg.cli finetune ...` it
trains with DDP on N processes and rank 0 alone writes the model.
"""

#: flags a resumed run may take; everything else comes from RUN/run.json
RESUME_FLAGS = ("epochs", "time_budget", "device", "precision")
#: flags whose values are TrainConfig fields of the same name
TRAIN_FLAGS = ("epochs", "batch_size", "lr", "loss", "seed", "time_budget", "device", "precision")


def _normalization(text: str) -> dict[str, Any]:
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"not a JSON object: {exc}") from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError("not a JSON object")
        return value
    return {"mode": text}


def _add_common(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--images", required=required, metavar="DIR", help="training images")
    p.add_argument("--masks", required=required, metavar="DIR", help="masks, paired by file stem")
    p.add_argument(
        "--fov", metavar="DIR", help="region-of-interest masks (loss and metrics inside)"
    )
    p.add_argument(
        "--val-images", metavar="DIR", help="validation images (default: hold out a fraction)"
    )
    p.add_argument("--val-masks", metavar="DIR", help="validation masks")
    p.add_argument("--val-fov", metavar="DIR", help="validation ROI masks")
    p.add_argument(
        "--val-fraction",
        type=number(0, 1, below_high=True),
        default=None,
        help="held-out fraction, at least 0 and below 1 (default 0.2)",
    )
    p.add_argument(
        "--out", required=required, metavar="PATH", help="where to save the trained model"
    )
    p.add_argument("--epochs", type=integer(1), default=None, help="at least 1")
    p.add_argument("--batch-size", type=integer(1), default=None, help="at least 1 (default 8)")
    p.add_argument(
        "--patch-size",
        type=integer(0),
        default=None,
        help="random patch edge, at least 16 (0: whole images; default: the largest power "
        "of two that fits the smallest image, at most 256)",
    )
    p.add_argument(
        "--lr",
        type=number(0, 1, below_high=True),
        default=None,
        help="learning rate, above 0 and below 1",
    )
    p.add_argument(
        "--loss", default=None, help="dice, dice_ce, ce, tversky, focal_tversky, unified_focal"
    )
    p.add_argument(
        "--loss-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="loss parameter, e.g. --loss-param epsilon=0.1 (repeatable)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any training option (see TrainConfig), e.g. --set optimizer=sgd",
    )
    p.add_argument("--seed", type=integer(0), default=None, help="at least 0")
    p.add_argument(
        "--time-budget", type=number(0), default=None, help="seconds per sitting, at least 0"
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="auto, fp32, bf16 or fp16: autocast precision of the forward pass (default "
        "auto: bf16 on GPUs that support it and on CPUs where it is measured faster, fp16 "
        "on other CUDA GPUs, else fp32)",
    )
    add_device(p, default=None)
    add_quiet(p)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train an architecture on image/mask folders",
        description=TRAIN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--arch", default=None, help="architecture name (see `attnseg info`)")
    p.add_argument("--config", metavar="FILE", help="JSON recipe")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="architecture option, e.g. --option width=16 (repeatable)",
    )
    p.add_argument(
        "--in-channels",
        type=integer(1),
        default=None,
        help="1 grey, 3 RGB, at least 1 (default: recipe or 3)",
    )
    p.add_argument(
        "--n-classes",
        type=integer(1),
        default=None,
        help="1 binary (default), >= 2 classes",
    )
    p.add_argument(
        "--normalization",
        type=_normalization,
        default=None,
        help="zscore, dataset, percentile, minmax or none (or a JSON object)",
    )
    p.add_argument(
        "--scale",
        type=number(0),
        default=None,
        help="resize factor applied to every image, above 0",
    )
    p.add_argument(
        "--prune-workflow",
        action="store_true",
        help="train with Focal w = 0, prune w < threshold, retrain",
    )
    p.add_argument(
        "--prune-threshold",
        type=number(0),
        default=None,
        help=f"prune Focal modules with w below this (default {PRUNE_THRESHOLD:g})",
    )
    p.add_argument(
        "--init",
        metavar="MODEL",
        default=None,
        help="start from this saved or zoo model's weights (same architecture and options) "
        "instead of random ones; the run pins the file's SHA-256",
    )
    p.add_argument(
        "--run-dir",
        "--checkpoint-dir",
        dest="run_dir",
        metavar="DIR",
        default=None,
        help="the run folder (default: beside --out, e.g. m.safetensors -> m.run/)",
    )
    p.add_argument(
        "--resume",
        metavar="RUN",
        default=None,
        help="continue the run in folder RUN from its last epoch (no other flag needed)",
    )
    _add_common(p, required=False)
    p.set_defaults(run=run_train)

    f = sub.add_parser(
        "finetune",
        help="continue training a model on new data",
        description=FINETUNE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    f.add_argument("--model", required=True, metavar="MODEL", help="saved or zoo model")
    _add_common(f)
    f.set_defaults(run=run_finetune)


# -- flags -> recipe changes ---------------------------------------------------
def _train_changes(args: argparse.Namespace) -> dict[str, Any]:
    changes = {k: getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k, None) is not None}
    if args.patch_size is not None:
        changes["patch_size"] = args.patch_size or None
    changes.update(parse_options(args.set, "--set"))
    return changes


def _data_changes(args: argparse.Namespace) -> dict[str, Any]:
    """Every DataSpec field that has a flag of the same name and was given."""
    from ..training import DataSpec

    names = (f.name for f in dataclasses.fields(DataSpec))
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _override(recipe, args: argparse.Namespace):
    return recipe.override(
        arch=getattr(args, "arch", None),
        options=parse_options(getattr(args, "option", []), "--option"),
        data=_data_changes(args),
        train=_train_changes(args),
        loss_params=parse_options(args.loss_param, "--loss-param"),
    )


# -- running -------------------------------------------------------------------
def _summary(history, out) -> None:
    best = history.epochs[history.best_epoch] if history.best_epoch is not None else {}
    dice = best.get("val_dice")
    print(
        f"{history.stopped}: {len(history.epochs)} epoch(s) in {history.seconds:.1f} s; "
        f"best epoch {best.get('epoch')}"
        + (f", validation dice {dice:.4f}" if dice is not None else "")
    )
    print(f"saved {out}")


def _resumed_spec(args: argparse.Namespace):
    from ..training import RunSpec

    given = [
        key
        for key, value in vars(args).items()
        if key not in (*RESUME_FLAGS, "resume", "quiet", "debug", "run", "command")
        and value not in (None, False, [])
    ]
    if given:
        flags = ", ".join("--" + key.replace("_", "-") for key in sorted(given))
        allowed = ", ".join("--" + key.replace("_", "-") for key in RESUME_FLAGS)
        raise ValueError(
            f"--resume takes the run's settings from {args.resume}/run.json; "
            f"{flags} cannot change them (only {allowed} can)"
        )
    spec = RunSpec.load(args.resume)
    changes = {k: getattr(args, k) for k in RESUME_FLAGS if getattr(args, k) is not None}
    spec.recipe = spec.recipe.override(train=changes)
    return spec


def _new_spec(args: argparse.Namespace):
    from ..inference.device import resolve_device
    from ..training import Recipe, RunSpec

    missing = [f"--{k}" for k in ("images", "masks", "out") if getattr(args, k) is None]
    if missing:
        raise ValueError(f"{', '.join(missing)} required (or --resume RUN)")
    recipe = Recipe.from_json(args.config) if args.config else Recipe()
    recipe = _override(recipe, args)
    recipe = recipe.for_device(resolve_device(recipe.train.device))
    if args.init is not None:
        from ..zoo import resolve

        recipe = dataclasses.replace(recipe, init={"model": str(resolve(args.init))})
    threshold = None
    if args.prune_workflow:
        threshold = PRUNE_THRESHOLD if args.prune_threshold is None else args.prune_threshold
    elif args.prune_threshold is not None:
        raise ValueError("--prune-threshold applies to --prune-workflow only")
    return RunSpec(
        recipe,
        images=args.images,
        masks=args.masks,
        out=args.out,
        fov=args.fov,
        val_images=args.val_images,
        val_masks=args.val_masks,
        val_fov=args.val_fov,
        prune_threshold=threshold,
    )


def _resume_command(run_dir: Path, world_size: int) -> str:
    """How to continue a run trained by ``world_size`` processes."""
    if world_size == 1:
        return f"attnseg train --resume {run_dir}"
    return (
        f"torchrun --nproc-per-node {world_size} -m napari_attnseg.cli train --resume {run_dir} "
        f"({world_size} processes in all, as before)"
    )


def run_train(args: argparse.Namespace) -> int:
    from ..training import default_run_dir, run_training, start_run
    from ..training.distributed import process_group

    if args.resume:
        spec, run_dir = _resumed_spec(args), Path(args.resume)
    else:
        spec = _new_spec(args)
        run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(args.out)
    with process_group(spec.recipe.train.device) as processes:
        quiet = args.quiet or not processes.is_main
        if not args.resume:
            processes.on_main(start_run, spec, run_dir)
        try:
            with (
                ProgressBar("loading", disable=quiet, unit="image") as loading,
                ProgressBar("training", disable=quiet) as bar,
            ):
                result = run_training(
                    spec, run_dir, resume=bool(args.resume), progress=bar, load_progress=loading
                )
        except BaseException:
            resumable = spec.prune_threshold is None and (run_dir / "last.ckpt").exists()
            if resumable and processes.is_main:
                command = _resume_command(run_dir, spec.world_size)
                print(f"continue this run with: {command}", file=sys.stderr)
            raise
    if not processes.is_main:
        return 0
    if result.prune is not None:
        print(
            "focal w after the w = 0 probe: "
            + ", ".join(f"{n} {w:.3f}" for n, w in result.prune.focal_weights.items())
        )
        print(f"pruned: {', '.join(result.prune.pruned_modules) or 'nothing'}")
    _summary(result.history, spec.path("out"))
    print(f"run folder {run_dir}")
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    from ..training import finetune, finetune_recipe, load_folder_data
    from ..training.distributed import process_group
    from ..zoo import load

    model = load(args.model)
    recipe = _override(finetune_recipe(model), args)
    with process_group(recipe.train.device) as processes:
        quiet = args.quiet or not processes.is_main
        with ProgressBar("loading", disable=quiet, unit="image") as bar:
            train, val, _ = load_folder_data(
                args.images,
                args.masks,
                recipe.data,
                fov=args.fov,
                val_images=args.val_images,
                val_masks=args.val_masks,
                val_fov=args.val_fov,
                progress=bar,
            )
        with ProgressBar("fine-tuning", disable=quiet) as bar:
            tuned, history = finetune(
                model, train, val, recipe.train, out=args.out, base_name=args.model, progress=bar
            )
    if processes.is_main:
        _summary(history, args.out)
    return 0
