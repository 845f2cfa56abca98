"""Training workflows shared by ``attnseg train|finetune``, the widget and the zoo recipes.

* :func:`load_folder_data` — image/mask folders -> normalised train/validation samples;
* :func:`train_new` — build an architecture, train it, save it with a full card;
* :func:`finetune` — continue training a loaded model, keeping its card's input handling;
* :func:`prune_workflow` — Yeung et al.'s heuristic in one call: train with every
  Focal ``w`` initialised to 0, prune the modules with ``w < threshold``,
  retrain the pruned architecture (Focal ``w`` initialised to 1) from scratch.
"""

from __future__ import annotations

import copy
import json
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._files import atomic_write
from ..data.input_spec import InputSpec, canonical
from ..data.io import read_image
from ..data.normalization import dataset_statistics
from ..data.pairing import pair_folder
from ..data.samples import load_samples
from ..data.splits import split_indices
from ..models import PRUNE_THRESHOLD, ModelCard, create_model, focal_weights, prune, save_model
from ..models.base import SegmentationModel
from ..objects import diameter_summary
from ..progress import CancelToken, ProgressCallback
from .config import TrainConfig, _integer, _number
from .distributed import is_main_process
from .trainer import VAL_METRICS, History, Trainer


@dataclass
class DataSpec:
    """How training images are read: channels, classes, normalisation, scale, split."""

    in_channels: int = 3
    n_classes: int = 1
    normalization: dict[str, Any] | None = None
    scale: float = 1.0
    input_size: list[int] | None = None
    val_fraction: float = 0.2
    seed: int = 0
    #: a separation head ("bands", ``data.targets``): the masks are instance labels and
    #: become the head's classes; None: the masks are the classes
    head: str | None = None

    def __post_init__(self) -> None:
        if self.normalization is None:
            self.normalization = {"mode": "zscore"}
        _integer("in_channels", self.in_channels, 1)
        _integer("n_classes", self.n_classes, 1)
        if not isinstance(self.normalization, dict) or "mode" not in self.normalization:
            raise ValueError(
                f'normalization must be an object with a "mode", got {self.normalization!r}'
            )
        _number("scale", self.scale, 0.0, 64.0, closed=(False, True))
        if self.input_size is not None:
            size = self.input_size
            if not isinstance(size, (list, tuple)) or len(size) != 2:
                raise ValueError(f"input_size must be [height, width] or null, got {size!r}")
            for side in size:
                _integer("each input_size side", side, 1)
        _number("val_fraction", self.val_fraction, 0.0, 1.0, closed=(True, False))
        _integer("seed", self.seed, 0)
        if self.head is not None:
            from ..data.targets import HEADS, check_head

            check_head(self.head)
            if self.n_classes != len(HEADS[self.head]):
                raise ValueError(
                    f"a {self.head!r} head has {len(HEADS[self.head])} classes "
                    f"({', '.join(HEADS[self.head])}); n_classes is {self.n_classes}"
                )


def load_folder_data(
    images: str | Path,
    masks: str | Path,
    spec: DataSpec,
    *,
    fov: str | Path | None = None,
    val_images: str | Path | None = None,
    val_masks: str | Path | None = None,
    val_fov: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[list, list, dict[str, Any]]:
    """``(train_samples, val_samples, normalization)`` from folders.

    Without explicit validation folders, a seeded ``val_fraction`` of the pairs
    is held out. ``{"mode": "dataset"}`` normalisation gets its mean/std from the
    training images, and the returned spec (with those numbers) belongs in the card.
    Every image is prepared by the :class:`~napari_attnseg.data.InputSpec` the
    card will hold, so the model is trained on what prediction will feed it.
    """
    pairs = pair_folder(images, masks, fov_dir=fov)
    if val_images is not None:
        if val_masks is None:
            raise ValueError("--val-images needs --val-masks")
        train_pairs, val_pairs = pairs, pair_folder(val_images, val_masks, fov_dir=val_fov)
    else:
        train_idx, val_idx = split_indices(len(pairs), spec.val_fraction, spec.seed)
        train_pairs = [pairs[i] for i in train_idx]
        val_pairs = [pairs[i] for i in val_idx]
    normalization = dataset_normalization(train_pairs, spec)
    input_spec = InputSpec(
        spec.in_channels,
        normalization,
        spec.scale,
        tuple(spec.input_size) if spec.input_size else None,
    )
    train = load_samples(
        train_pairs, input_spec, n_classes=spec.n_classes, head=spec.head, progress=progress
    )
    val = (
        load_samples(val_pairs, input_spec, n_classes=spec.n_classes, head=spec.head)
        if val_pairs
        else []
    )
    return train, val, normalization


def dataset_normalization(pairs, spec: DataSpec) -> dict[str, Any]:
    """Fill in dataset mean/std for ``{"mode": "dataset"}`` from the training images."""
    normalization = dict(spec.normalization)
    if normalization.get("mode") == "dataset" and "mean" not in normalization:
        channels = InputSpec(spec.in_channels, {"mode": "none"})
        images = []
        for image_path, *_ in pairs:
            plane, layout = canonical(read_image(image_path))
            images.append(channels.channels(plane, rgb=layout.rgb))
        normalization.update(dataset_statistics(images, normalization))
    return normalization


def _environment(device: torch.device) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {
        "device": str(device),
        "device_name": name or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def training_record(trainer: Trainer, history: History, **extra: Any) -> dict[str, Any]:
    """What a model card records about how the model was trained."""
    best = history.epochs[history.best_epoch] if history.best_epoch is not None else {}
    return {
        "epochs_run": len(history.epochs),
        "best_epoch": best.get("epoch"),
        "stopped": history.stopped,
        "wall_time_s": round(history.seconds, 1),
        "config": trainer.config.to_dict(),
        "precision": trainer.precision,
        "patch_size": trainer.patch_size,
        "n_train": len(trainer.train_data.samples),
        "n_val": len(trainer.val_samples),
        "environment": _environment(trainer.device),
        "distributed": trainer.processes.record(trainer.config.batch_size),
        "history": [{k: v for k, v in e.items() if k not in ("seconds",)} for e in history.epochs],
        **extra,
    }


def train_new(
    arch: str,
    options: dict[str, Any],
    train_samples: list,
    val_samples: list,
    config: TrainConfig,
    *,
    data: DataSpec,
    normalization: dict[str, Any],
    out: str | Path | None = None,
    card: dict[str, Any] | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    init: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> tuple[SegmentationModel, History]:
    """Build ``arch`` with ``options``, train it and (with ``out``) save it with its card.

    ``init`` (``{"model": path, "sha256": hex}``, see :func:`resolve_init`)
    starts from that model's weights instead of random ones; the card records
    it (``base_model``, ``training.init``). Under torchrun every process trains
    and only rank 0 saves.
    """
    torch.manual_seed(config.seed)
    model = create_model(arch, in_channels=data.in_channels, n_classes=data.n_classes, **options)
    start = _started_from(model, init, checkpoint_dir, resume) if init else None
    model.card = ModelCard.from_dict(
        {
            "name": arch,
            **(card or {}),
            "normalization": normalization,
            "input_scale": data.scale,
            "input_size": data.input_size,
        }
    )
    if start is not None:
        model.card.base_model = start["name"]
        model.card.training = {**model.card.training, "init": start}
    record_object_size(model.card, train_samples)
    record_fov(model.card, train_samples)
    trainer = Trainer(model, config, train_samples, val_samples, checkpoint_dir=checkpoint_dir)
    if resume:
        trainer.resume()
    history = trainer.fit(progress=progress, cancel=cancel)
    model.card.training = {**model.card.training, **training_record(trainer, history)}
    if out is not None and is_main_process():
        save_model(model, out)
    return model, history


def resolve_init(init: dict[str, Any], cwd: str | Path) -> dict[str, Any]:
    """A recipe's ``init`` with its model path resolved against the run's folder ``cwd``
    (``{}`` stays ``{}``)."""
    if not init:
        return {}
    given = init.get("given", init["model"])
    return {**init, "model": str(Path(cwd) / Path(given).expanduser()), "given": given}


def initial_weights(model: SegmentationModel, init: dict[str, Any]) -> dict[str, Any]:
    """Copy the weights of the saved model ``init["model"]`` into ``model``.

    The file must hash to ``init["sha256"]`` when that is given (weights and
    card, :func:`~napari_attnseg.models.persistence.file_sha256`) and describe
    the same architecture with the same options as ``model``; anything else is
    a ``ValueError`` that names the difference. Returns what the card records.
    """
    from ..models.persistence import file_sha256, load_model

    path = Path(init["model"])
    sha = file_sha256(path) if path.is_file() else None
    if sha is None:
        raise ValueError(f"init model not found: {path}")
    if init.get("sha256") and sha != init["sha256"]:
        raise ValueError(
            f"init model {path} has SHA-256 {sha[:12]}…, the recipe names "
            f"{init['sha256'][:12]}…: not the weights the recipe starts from"
        )
    source = load_model(path)
    mine = {k: v for k, v in model.config.items() if k != "pruned"}
    theirs = {k: v for k, v in source.config.items() if k != "pruned"}
    differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
    if differ or source.config.get("pruned"):
        what = ", ".join(f"{k}: {theirs.get(k)!r} vs {mine.get(k)!r}" for k in differ)
        raise ValueError(
            f"init model {path} is another network than the recipe builds "
            f"({what or 'it is pruned'}); start from a model of the same architecture"
        )
    model.load_state_dict(source.state_dict())
    card = source.card or ModelCard(name=path.stem)
    record = {"name": card.name, "model": str(init.get("given", init["model"])), "sha256": sha}
    # how far the starting weights had been trained, so the card tells the whole schedule
    return {**record, **trained_before(card.training)}


INIT_RECORD = "init.json"


def _started_from(
    model: SegmentationModel, init: dict[str, Any], run_dir: str | Path | None, resume: bool
) -> dict[str, Any]:
    """:func:`initial_weights`, whose record a run keeps in ``run_dir/init.json``.

    A resumed run takes its weights from the checkpoint, so it reads that
    record instead of the starting file, which need not be there any more
    (the record must name the pinned SHA-256, else the file is read again).
    """
    kept = Path(run_dir) / INIT_RECORD if run_dir is not None else None
    if resume and kept is not None and kept.is_file():
        try:
            record = json.loads(kept.read_text())
        except (OSError, ValueError):
            record = {}
        if record.get("sha256") and record["sha256"] == init.get("sha256"):
            return record
    record = initial_weights(model, init)
    if kept is not None and is_main_process():
        kept.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(kept, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1)))
    return record


def trained_before(training: dict[str, Any]) -> dict[str, Any]:
    """``epochs_run`` and ``wall_time_s`` of a card's ``training`` record, its own
    sitting plus those of the weights it started from (``training["init"]``, which
    already holds the totals of its own chain), so a model trained in several
    sittings, each from the last one's file, tells its whole schedule."""
    before = training.get("init") or {}
    totals = {}
    for key in ("epochs_run", "wall_time_s"):
        if training.get(key) is not None:
            totals[key] = training[key] + (before.get(key) or 0)
    return totals


def finetune(
    model: SegmentationModel,
    train_samples: list,
    val_samples: list,
    config: TrainConfig,
    *,
    out: str | Path | None = None,
    base_name: str = "",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    on_epoch=None,
    mode: str = "dense",
    validation: str | None = None,
) -> tuple[SegmentationModel, History]:
    """Train a copy of ``model`` further; the original is never modified.

    The copy keeps the card's normalisation and scale; the card gains
    ``base_model``, a ``finetune`` record, a description of the round, and as
    ``metrics`` the round's own validation (:func:`finetune_metrics`) — never
    the base model's. ``validation`` says in words what the validation
    samples are (``training.validation_kind``). A cancelled run raises
    :class:`~napari_attnseg.progress.Cancelled` and leaves ``model`` as it was.
    """
    tuned = copy.deepcopy(model)
    card = copy.deepcopy(model.card or ModelCard(name=model.name))
    trainer = Trainer(tuned, config, train_samples, val_samples, on_epoch=on_epoch)
    started = time.time()
    history = trainer.fit(progress=progress, cancel=cancel)
    card.base_model = base_name or card.base_model or card.name
    measured_on = validation or f"{len(val_samples)} held-out image(s) (not trained on)"
    card.metrics = finetune_metrics(history, len(val_samples), mode, measured_on)
    card.description = (
        f"{card.base_model} fine-tuned on {len(train_samples)} image(s) ({mode} labels); "
        f"{len(history.epochs)} epoch(s), {history.stopped}; "
        + (f"validation: {measured_on}" if card.metrics else "not evaluated")
        + "."
    )
    card.metadata = {
        **card.metadata,
        "finetune": training_record(
            trainer,
            history,
            started=started,
            data_shapes=[list(s.image.shape) for s in train_samples],
        ),
    }
    tuned.card = card
    if out is not None and is_main_process():
        save_model(tuned, out)
    return tuned, history


def record_object_size(card: ModelCard, samples: list) -> None:
    """Give a card that makes countable objects the size of its training objects.

    Models whose card says how to make instances of foreground blobs (nuclei:
    ``{"method": "watershed"}``) get ``object_diameter`` and
    ``object_diameter_range`` measured on the training masks at the working
    scale (``objects.diameter_summary``), which the predictor's automatic
    diameter matches. Cards that already have one, fixed-size inputs and
    cells-from-membranes models are left alone.
    """
    recipe = card.instances or {}
    if not recipe or recipe.get("source") == "cells" or card.input_size:
        return
    if card.object_diameter is None:
        for key, value in diameter_summary([s.mask > 0 for s in samples]).items():
            setattr(card, key, value)


def record_fov(card: ModelCard, samples: list) -> None:
    """Give a fundus card the field of view of its training photographs (issue 25).

    Cards whose region of interest is the fundus (``roi {"method": "fundus"}``) get
    ``fov_diameter``: the median, over the training images, of the field-of-view diameter
    at the working scale, measured as prediction measures it
    (:func:`~napari_attnseg.inference.fov_scale.measure_fov`; its threshold is relative, so
    the normalised images give what the photographs give). Prediction then resamples a
    photograph of another camera to match. Cards that already have one, fixed-size inputs
    and images without a credible disc are left alone.
    """
    from ..inference.fov_scale import measure_fov

    if (card.roi or {}).get("method") != "fundus" or card.fov_diameter or card.input_size:
        return
    found = []
    for sample in samples:
        image = np.moveaxis(np.asarray(sample.image), 0, -1)
        found.append(measure_fov(image, rgb=image.shape[-1] >= 3))
    diameters = [f.diameter for f in found if f.credible]
    if not diameters:
        return
    card.fov_diameter = round(float(statistics.median(diameters)), 1)
    card.metadata = {
        **(card.metadata or {}),
        "fov_diameter_source": f"median of {len(diameters)} of {len(samples)} training "
        "photographs at the working scale, measured when it was trained",
    }


def finetune_metrics(
    history: History, n_val: int, mode: str = "dense", measured_on: str = ""
) -> dict[str, Any]:
    """A fine-tuned model's ``metrics``: its round's validation at the best epoch, or ``{}``.

    Dense labels give ``{"validation": {"n_images", "measured_on", "epoch", "loss", "mean"}}``,
    the form ``attnseg models`` lists. Scribbles (sparse labels) are scored only on
    held-out scribbled pixels, which says little about whole objects: they go under
    ``"scribble_validation"`` and are never listed as the model's Dice.
    """
    if history.best_epoch is None or not n_val:
        return {}
    best = history.epochs[history.best_epoch]
    if "val_dice" not in best:
        return {}
    key = "scribble_validation" if mode == "sparse" else "validation"
    return {
        key: {
            "n_images": n_val,
            "measured_on": measured_on,
            "epoch": best.get("epoch"),
            "loss": best.get("val_loss"),
            "mean": {k: best[f"val_{k}"] for k in VAL_METRICS if f"val_{k}" in best},
        }
    }


@dataclass
class PruneResult:
    probe: SegmentationModel
    probe_history: History
    focal_weights: dict[str, float]
    pruned_modules: list[str]
    model: SegmentationModel
    history: History


def prune_workflow(
    arch: str,
    options: dict[str, Any],
    train_samples: list,
    val_samples: list,
    config: TrainConfig,
    *,
    data: DataSpec,
    normalization: dict[str, Any],
    threshold: float = PRUNE_THRESHOLD,
    probe_config: TrainConfig | None = None,
    out: str | Path | None = None,
    card: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> PruneResult:
    """Train with Focal w = 0, prune modules with w < threshold, retrain (w = 1) from scratch.

    The retrained model's card gets ``metadata["pruning"]``: the threshold, every
    module's w at the end of the probe, and the names of the pruned modules.
    """
    common = dict(data=data, normalization=normalization, progress=progress, cancel=cancel)
    probe, probe_history = train_new(
        arch,
        {**options, "focal": 0.0},
        train_samples,
        val_samples,
        probe_config or config,
        **common,
    )
    weights = focal_weights(probe)
    if not weights:
        raise ValueError(f"{arch} with {options} has no Focal attention modules to prune")
    removed = prune(probe, threshold).config["pruned"]
    retrain_options = {**options, "focal": 1.0, "pruned": removed}
    card = dict(card or {})
    card["metadata"] = {
        **card.get("metadata", {}),
        "pruning": {"threshold": threshold, "probe_focal_weights": weights, "pruned": removed},
    }
    model, history = train_new(
        arch, retrain_options, train_samples, val_samples, config, out=out, card=card, **common
    )
    return PruneResult(probe, probe_history, weights, removed, model, history)
