"""Training recipes as typed objects, and run folders that let a run be resumed.

A **recipe** (:class:`Recipe`; the zoo's are ``recipes/<arch>.<task>.json``)
says what to train and how: the architecture and its options, how images are
read (:class:`~napari_attnseg.training.workflows.DataSpec`) and the training
settings (:class:`~napari_attnseg.training.config.TrainConfig`), plus the
model card's text. Command-line flags change a recipe through
:meth:`Recipe.override`; the command line never parses or merges the schema.

A **run** (:class:`RunSpec`) is a recipe bound to data folders and an output
path. ``attnseg train`` writes it to ``run.json`` in the run folder, beside
the trainer's ``last.ckpt`` (written atomically after every epoch) and
``best.safetensors``, so ``attnseg train --resume RUN`` can continue a run
from its folder alone, in as many sittings as it takes.
:func:`run_training` loads the data and trains a run.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from .._files import atomic_write
from ..losses import loss_defaults
from ..models import compact_options
from ..models.base import SegmentationModel
from ..models.persistence import file_sha256
from ..progress import CancelToken, ProgressCallback
from .config import TrainConfig, read_json
from .distributed import current as current_processes
from .distributed import is_main_process
from .trainer import History
from .workflows import (
    DataSpec,
    PruneResult,
    load_folder_data,
    prune_workflow,
    resolve_init,
    train_new,
)

T = TypeVar("T")

#: the file in a run folder that describes the run
RUN_FILE = "run.json"
#: training settings of ``attnseg finetune`` that differ from :class:`TrainConfig`'s
FINETUNE_TRAIN: dict[str, Any] = {
    "lr": 1e-4,
    "epochs": 20,
    "early_stopping": 10,
    "plateau_patience": 5,
}


def update_dataclass(obj: T, changes: Mapping[str, Any], what: str) -> T:
    """``obj`` with ``changes`` applied; an unknown field is an error naming the valid ones."""
    known = [f.name for f in dataclasses.fields(obj)]
    unknown = sorted(set(changes) - set(known))
    if unknown:
        raise ValueError(f"unknown {what} option(s) {unknown}; valid: {sorted(known)}")
    return dataclasses.replace(obj, **changes)


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a JSON object, got {value!r}")
    return dict(value)


def _init(value: Any) -> dict[str, Any]:
    """A recipe's ``init``: ``{}`` or ``{"model": path, "sha256": hex, ...}``."""
    init = _mapping(value, "recipe 'init'")
    if init and not isinstance(init.get("model"), str):
        raise ValueError(f"recipe 'init' needs a 'model' path (a string), got {value!r}")
    sha = init.get("sha256")
    if sha is not None and not (
        isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)
    ):
        raise ValueError(f"recipe 'init' sha256 must be 64 lower-case hex digits, got {sha!r}")
    return init


@dataclass
class Recipe:
    """What to train and how; see the module docstring.

    ``evaluate`` holds how the model is scored (``{"tta": bool, "fov": bool}``
    in the zoo), ``card`` the model card's text fields (description, licence,
    class names, metadata) and ``notes`` why the recipe departs from its paper.
    ``init`` starts the weights from a saved model of the same architecture
    instead of at random (``{"model": path, "sha256": hex}``; the file must
    have that hash, so a run can only start from the weights it names; see
    :func:`~napari_attnseg.training.workflows.initial_weights`).
    """

    name: str = ""
    task: str = ""
    arch: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    data: DataSpec = field(default_factory=DataSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: dict[str, Any] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    init: dict[str, Any] = field(default_factory=dict)

    # -- (de)serialisation --------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        """A recipe from JSON data; missing parts take their defaults, unknown keys are errors."""
        data = _mapping(data, "a recipe")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown recipe key(s) {unknown}; valid: {known}")
        for key in ("name", "task", "arch", "notes"):
            if not isinstance(data.get(key, ""), str):
                raise ValueError(f"recipe {key!r} must be a string, got {data[key]!r}")
        return cls(
            name=data.get("name", ""),
            task=data.get("task", ""),
            arch=data.get("arch", ""),
            options=_mapping(data.get("options"), "recipe 'options'"),
            data=update_dataclass(DataSpec(), _mapping(data.get("data"), "recipe 'data'"), "data"),
            train=TrainConfig.from_dict(_mapping(data.get("train"), "recipe 'train'")),
            evaluate=_mapping(data.get("evaluate"), "recipe 'evaluate'"),
            card=_mapping(data.get("card"), "recipe 'card'"),
            notes=data.get("notes", ""),
            init=_init(data.get("init")),
        )

    @classmethod
    def from_json(cls, path: str | Path) -> Recipe:
        try:
            return cls.from_dict(read_json(path))
        except ValueError as exc:
            message = str(exc)
            raise ValueError(message if str(path) in message else f"{path}: {message}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task,
            "arch": self.arch,
            "options": dict(self.options),
            "data": dataclasses.asdict(self.data),
            "train": self.train.to_dict(),
            "evaluate": dict(self.evaluate),
            "notes": self.notes,
            "card": dict(self.card),
            **({"init": dict(self.init)} if self.init else {}),
        }

    # -- changes ------------------------------------------------------------
    def override(
        self,
        *,
        arch: str | None = None,
        options: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        train: Mapping[str, Any] | None = None,
        loss_params: Mapping[str, Any] | None = None,
    ) -> Recipe:
        """A copy with (command-line) changes applied; ``None`` / empty changes nothing.

        ``arch`` replaces the architecture; ``options`` are merged over the
        recipe's; ``data`` and ``train`` replace single fields of
        :class:`DataSpec` / :class:`TrainConfig` (unknown names are errors);
        ``loss_params`` are merged over the loss's parameters. When ``train``
        changes the loss, the recipe's loss parameters that the new loss does
        not accept are dropped (``epsilon`` stays, ``delta`` leaves for Dice).
        """
        train = dict(train or {})
        current = self.train
        if "loss" in train and train["loss"] != current.loss and "loss_params" not in train:
            accepted = loss_defaults(train["loss"])
            train["loss_params"] = {k: v for k, v in current.loss_params.items() if k in accepted}
        if loss_params:
            base = train.get("loss_params", current.loss_params)
            train["loss_params"] = {**base, **loss_params}
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(train) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; valid: {sorted(known)}")
        return dataclasses.replace(
            self,
            arch=arch or self.arch,
            options={**self.options, **(options or {})},
            data=update_dataclass(self.data, data or {}, "data"),
            train=TrainConfig.from_dict({**current.to_dict(), **train}),
        )

    def for_device(self, device: torch.device) -> Recipe:
        """On a CPU, architecture options the recipe leaves out take the compact size.

        The compact size is registered beside each architecture
        (:func:`napari_attnseg.models.compact_options`; U-Net family: width 16);
        GPUs keep the registered defaults. Options the recipe gives always win.
        """
        if not self.arch:
            raise ValueError("no architecture: give --arch or a --config recipe with an 'arch'")
        if device.type != "cpu":
            compact_options(self.arch)  # an unknown name fails here, with the valid ones
            return self
        return dataclasses.replace(self, options={**compact_options(self.arch), **self.options})


def finetune_recipe(model: SegmentationModel) -> Recipe:
    """The recipe ``attnseg finetune`` starts from: the model's own input handling,
    :data:`FINETUNE_TRAIN` (a lower learning rate and shorter patience)."""
    card = getattr(model, "card", None)
    data = DataSpec(
        in_channels=model.in_channels,
        n_classes=model.n_classes,
        normalization=card.normalization if card else None,
        scale=card.input_scale if card else 1.0,
        input_size=card.input_size if card else None,
        head=card.separation_head if card else None,
    )
    return Recipe(
        name=card.name if card else model.name,
        arch=model.config["name"],
        options={k: v for k, v in model.config.items() if k != "name"},
        data=data,
        train=TrainConfig(**FINETUNE_TRAIN),
    )


# -- runs ---------------------------------------------------------------------
_PATHS = ("images", "masks", "out", "fov", "val_images", "val_masks", "val_fov")


@dataclass
class RunSpec:
    """A recipe bound to its data and output: everything needed to (re)start a run.

    Paths are kept as the user gave them, with ``cwd`` (the working folder the
    run started in) to resolve relative ones from anywhere. ``prune_threshold``
    set means the Focal pruning workflow (probe with w = 0, prune, retrain).
    ``status`` is ``"running"`` until the run ends (``"finished: <why>"``) or
    fails (``"interrupted: <why>"``). ``world_size`` is the number of processes
    that train it (more than 1 under torchrun); a resumed run needs as many.
    """

    recipe: Recipe
    images: str
    masks: str
    out: str
    fov: str | None = None
    val_images: str | None = None
    val_masks: str | None = None
    val_fov: str | None = None
    prune_threshold: float | None = None
    cwd: str = field(default_factory=os.getcwd)
    status: str = "running"
    world_size: int = 1

    def path(self, name: str) -> Path | None:
        """The named path (``images``, ``out``, …) resolved against the run's ``cwd``."""
        value = getattr(self, name)
        return None if value is None else Path(self.cwd) / Path(value).expanduser()

    @property
    def finished(self) -> bool:
        return self.status.startswith("finished")

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe.to_dict(),
            **{name: getattr(self, name) for name in _PATHS},
            "prune_threshold": self.prune_threshold,
            "cwd": self.cwd,
            "status": self.status,
            "world_size": self.world_size,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSpec:
        data = dict(data)
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        missing = sorted({"recipe", "images", "masks", "out"} - set(data))
        if unknown or missing:
            raise ValueError(f"not a run description: unknown {unknown}, missing {missing}")
        return cls(**{**data, "recipe": Recipe.from_dict(data["recipe"])})

    def save(self, run_dir: str | Path) -> Path:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        return atomic_write(run_dir / RUN_FILE, lambda tmp: Path(tmp).write_text(text, "utf-8"))

    @classmethod
    def load(cls, run_dir: str | Path) -> RunSpec:
        path = Path(run_dir) / RUN_FILE
        if not Path(run_dir).is_dir():
            raise FileNotFoundError(f"run folder not found: {run_dir}")
        if not path.exists():
            raise FileNotFoundError(f"{run_dir} is not a run folder (it has no {RUN_FILE})")
        try:
            return cls.from_dict(read_json(path))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None


def default_run_dir(out: str | Path) -> Path:
    """The run folder of a model saved to ``out``: ``m.safetensors`` -> ``m.run/`` beside it."""
    out = Path(out)
    stem = out.stem if out.suffix == ".safetensors" else out.name
    return out.parent / f"{stem}.run"


def start_run(spec: RunSpec, run_dir: str | Path) -> Path:
    """Write a new run's ``run.json``; a folder holding an unfinished run is refused.

    A finished run's checkpoints are removed (its model is in its ``out``), so
    a crash of the new run can never resume the old one.
    """
    run_dir = Path(run_dir)
    if (run_dir / RUN_FILE).exists():
        try:
            old = RunSpec.load(run_dir)
        except ValueError:
            old = None
        last = run_dir / "last.ckpt"
        if (old is None or not old.finished) and last.exists():
            raise ValueError(
                f"{run_dir} holds an unfinished run ({old.status if old else 'unreadable'}); "
                f"continue it with `attnseg train --resume {run_dir}`, or give another "
                "--run-dir (or delete that folder) to start afresh"
            )
        for name in ("last.ckpt", "best.safetensors"):
            (run_dir / name).unlink(missing_ok=True)
    elif run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"run folder {run_dir} exists and is not a folder")
    spec.status = "running"
    spec.world_size = current_processes().world_size
    if spec.recipe.init and not spec.recipe.init.get("sha256"):  # pin the starting weights
        path = resolve_init(spec.recipe.init, spec.cwd)["model"]
        init = {**spec.recipe.init, "sha256": file_sha256(path)}
        spec.recipe = dataclasses.replace(spec.recipe, init=init)
    return spec.save(run_dir)


@dataclass
class RunResult:
    model: SegmentationModel
    history: History
    #: the pruning workflow's probe, Focal weights and pruned modules (prune runs only)
    prune: PruneResult | None = None


def run_training(
    spec: RunSpec,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: ProgressCallback | None = None,
    load_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> RunResult:
    """Load a run's data, train it (or continue it, with ``resume``) and save its model.

    The run's ``run.json`` in ``run_dir`` is updated with the outcome.
    ``resume`` continues from ``run_dir/last.ckpt``; the pruning workflow
    (two trainings in a row) cannot be resumed and is started again instead.
    Under torchrun every process calls this and only rank 0 writes.
    """
    run_dir = Path(run_dir)
    recipe = spec.recipe
    if resume and spec.prune_threshold is not None:
        raise ValueError(
            f"{run_dir} is a --prune-workflow run, which cannot be resumed; start it again"
        )
    if recipe.init and spec.prune_threshold is not None:
        raise ValueError("the pruning workflow trains from random weights; it takes no 'init'")
    try:
        train, val, normalization = load_folder_data(
            spec.path("images"),
            spec.path("masks"),
            recipe.data,
            fov=spec.path("fov"),
            val_images=spec.path("val_images"),
            val_masks=spec.path("val_masks"),
            val_fov=spec.path("val_fov"),
            progress=load_progress,
        )
        card = dict(recipe.card)
        card["training"] = {
            **card.get("training", {}),
            "images": spec.images,
            "masks": spec.masks,
        }
        common = dict(
            data=recipe.data,
            normalization=normalization,
            out=spec.path("out"),
            card=card,
            progress=progress,
            cancel=cancel,
        )
        if spec.prune_threshold is not None:
            pruned = prune_workflow(
                recipe.arch,
                recipe.options,
                train,
                val,
                recipe.train,
                threshold=spec.prune_threshold,
                **common,
            )
            result = RunResult(pruned.model, pruned.history, pruned)
        else:
            model, history = train_new(
                recipe.arch,
                recipe.options,
                train,
                val,
                recipe.train,
                checkpoint_dir=run_dir,
                resume=resume,
                init=resolve_init(recipe.init, spec.cwd),
                **common,
            )
            result = RunResult(model, history)
    except BaseException as exc:
        spec.status = f"interrupted: {type(exc).__name__}: {exc}".rstrip(": ")
        if is_main_process():
            spec.save(run_dir)
        raise
    spec.status = f"finished: {result.history.stopped}"
    if is_main_process():
        spec.save(run_dir)
    return result


__all__ = [
    "FINETUNE_TRAIN",
    "RUN_FILE",
    "Recipe",
    "RunResult",
    "RunSpec",
    "default_run_dir",
    "finetune_recipe",
    "run_training",
    "start_run",
    "update_dataclass",
]
