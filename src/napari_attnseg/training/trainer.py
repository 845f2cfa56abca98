"""One trainer for the command line, the Fine-tune widget and the zoo recipes.

``Trainer(model, config, train_samples, val_samples).fit(progress, cancel)``

* samples random (augmented) patches every epoch, with the loss's distance
  penalty maps computed once per sample and transformed with it; the patch
  edge is ``config.patch_size`` or, for ``"auto"``, the largest power of two
  that fits the smallest training image (at most 256);
* optimises with Adam/SGD, weight decay that skips Focal ``w`` and norms,
  poly or plateau schedules;
* runs the forward pass under autocast at ``config.precision`` (``auto``: bf16
  on CPUs where native bf16 is measured faster and on CUDA GPUs that support it, fp16 on other
  CUDA GPUs, fp32 elsewhere); weights stay fp32, losses and metrics are
  computed in fp32, and only fp16 on CUDA uses a gradient scaler;
* projects every Focal ``w`` back onto ``w >= 0`` after each step;
* validates on whole images every epoch (same autocast), records a
  :class:`History` (losses, validation metrics, learning rate, every Focal
  ``w``); multi-class models are scored per class, and their ``val_dice`` is
  the mean over the foreground classes;
* keeps the best-validation weights in memory and, with a ``checkpoint_dir``,
  on disk (``best.safetensors`` + card) and a resumable ``last.ckpt``, both
  written atomically at epoch ends, so a cancelled or crashed run leaves the
  last good checkpoint intact; every epoch's randomness is derived from
  ``(seed, epoch)``, so a resumed run ends with the weights of an
  uninterrupted one;
* checks the cancel token every step: on cancel the model is restored to its
  best validated weights (or its initial ones) and :class:`Cancelled` is
  raised; on a stop request (:meth:`CancelToken.request_stop`) it finishes the
  current epoch and returns normally with the best weights so far;
* stops early after ``early_stopping`` epochs without improvement or when the
  time budget is spent;
* under ``torchrun`` (a ``torch.distributed`` process group), trains with DDP:
  each process takes its share of every epoch, validation images are shared
  out and their results gathered, and rank 0 alone writes checkpoints
  (:mod:`napari_attnseg.training.distributed`).
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from .._files import atomic_write
from ..data.augmentation import Augmenter
from ..data.patches import PatchDataset
from ..inference.device import autocast_dtype
from ..inference.evaluate import score_sample
from ..losses import build_loss, distance_penalty_map, loss_needs_dpt
from ..metrics import MetricAccumulator
from ..models import clamp_focal_weights, focal_weights, save_model
from ..models.base import SegmentationModel, class_probabilities
from ..progress import Cancelled, CancelToken, ProgressCallback, check, report, stop_requested
from .config import TrainConfig
from .distributed import current as current_processes
from .optim import build_optimizer, build_scheduler

VAL_METRICS = ("dice", "jaccard", "precision", "sensitivity")
#: settings a resumed run may change; any other difference from the checkpoint is an error
RESUMABLE_CHANGES = ("epochs", "time_budget", "device", "precision", "num_workers")


@dataclass
class History:
    """Per-epoch record of a run; JSON-serialisable via :meth:`to_dict`."""

    epochs: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_score: float | None = None
    stopped: str = ""
    seconds: float = 0.0

    def series(self, key: str) -> list[float]:
        return [e.get(key, math.nan) for e in self.epochs]

    def focal_series(self) -> dict[str, list[float]]:
        names = {n for e in self.epochs for n in e.get("focal", {})}
        return {
            n: [e.get("focal", {}).get(n, math.nan) for e in self.epochs] for n in sorted(names)
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "best_score": self.best_score,
            "stopped": self.stopped,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        return cls(**data)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of the global random generators for ``epoch`` of a run seeded ``seed``."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


class Trainer:
    """Train ``model`` in place on ``train_samples``, validating on ``val_samples``."""

    def __init__(
        self,
        model: SegmentationModel,
        config: TrainConfig,
        train_samples: Sequence,
        val_samples: Sequence = (),
        *,
        checkpoint_dir: str | Path | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        if not train_samples:
            raise ValueError("no training samples")
        self.model = model
        self.config = config
        #: the processes training together (one, unless started by torchrun)
        self.processes = current_processes()
        self.device = self.processes.device(config.device)
        #: what the training steps call: ``model``, or ``model`` in DDP (set by :meth:`fit`)
        self.network: torch.nn.Module = model
        #: the autocast dtype of the forward pass (None: fp32) and its name
        self.autocast_dtype = autocast_dtype(self.device, config.precision)
        self.precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[
            self.autocast_dtype
        ]
        #: the patch edge in use (``config.patch_size`` with "auto" resolved)
        self.patch_size = config.resolved_patch_size([s.image.shape for s in train_samples])
        self.loss_fn = build_loss(config.loss, **config.loss_params)
        self.with_dpt = loss_needs_dpt(self.loss_fn)
        self.n_classes = max(2, model.n_classes)
        #: a separation head's classes serve to split objects; the model is scored on its
        #: foreground (every class but the background), like a binary model
        card = getattr(model, "card", None)
        self.head = card.separation_head if card is not None else None
        augment = (
            None
            if config.augment is None
            else Augmenter.from_config({**config.augment, "seed": config.seed})
        )
        self.train_data = PatchDataset(
            list(train_samples),
            patch_size=self.patch_size,
            augment=augment,
            n_classes=self.n_classes,
            with_dpt=self.with_dpt,
            samples_per_epoch=config.samples_per_epoch,
            fg_fraction=config.fg_fraction,
            seed=self.processes.seed(config.seed),
        )
        #: this process's share of each epoch (None: a single process takes all)
        self.sampler = self.processes.sampler(self.train_data, config.seed)
        self.val_samples = list(val_samples)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.on_epoch = on_epoch
        self.history = History()
        self.start_epoch = 0
        self.optimizer = build_optimizer(model, config)
        self.steps_per_epoch = math.ceil(self._items_per_epoch / config.batch_size)
        self.scheduler, self.per_step_schedule = build_scheduler(
            self.optimizer, config, config.epochs * self.steps_per_epoch
        )
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.precision == "fp16" and self.device.type == "cuda"
        )
        self._best_state: dict[str, torch.Tensor] | None = None
        #: the moving average of the weights (``config.ema``; None: off)
        self.ema = (
            AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema), use_buffers=True)
            if config.ema is not None
            else None
        )

    @property
    def evaluated(self) -> SegmentationModel:
        """The weights that are validated, kept and saved: the moving average, or the model."""
        return self.model if self.ema is None else self.ema.module

    @property
    def _items_per_epoch(self) -> int:
        """Patches this process trains on per epoch."""
        return len(self.sampler if self.sampler is not None else self.train_data)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
        )

    # -- checkpoints --------------------------------------------------------
    @property
    def best_path(self) -> Path | None:
        return self.checkpoint_dir / "best.safetensors" if self.checkpoint_dir else None

    @property
    def last_path(self) -> Path | None:
        return self.checkpoint_dir / "last.ckpt" if self.checkpoint_dir else None

    def _save_last(self, epoch: int) -> None:
        state = {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "history": self.history.to_dict(),
            "best_state": self._best_state,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "scaler": self.scaler.state_dict(),
            "config": self.config.to_dict(),
            "world_size": self.processes.world_size,
        }
        atomic_write(self.last_path, lambda tmp: torch.save(state, tmp))

    def _save_best(self) -> None:
        """``best.safetensors``: the evaluated weights with the model's card."""
        evaluated = self.evaluated
        if evaluated is not self.model:
            evaluated.card = getattr(self.model, "card", None)
        save_model(evaluated, self.best_path)

    def resume(self, path: str | Path | None = None) -> None:
        """Continue from a ``last.ckpt`` written by an earlier run of the same setup.

        The checkpoint's training settings must equal this trainer's except
        :data:`RESUMABLE_CHANGES` (more epochs, another time budget, device or
        precision); anything else would not continue the same run.
        """
        path = Path(path) if path else self.last_path
        if path is None or not path.exists():
            raise FileNotFoundError(f"no checkpoint to resume from at {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file: say which one
            raise ValueError(f"cannot read the checkpoint {path}: {exc}") from exc
        saved = TrainConfig.from_dict(state["config"]).to_dict()
        mine = self.config.to_dict()
        changed = sorted(k for k in mine if k not in RESUMABLE_CHANGES and saved.get(k) != mine[k])
        if changed:
            detail = ", ".join(f"{k}: {saved.get(k)!r} -> {mine[k]!r}" for k in changed)
            raise ValueError(
                f"{path} was written by a run with other training settings ({detail}); "
                f"only {', '.join(RESUMABLE_CHANGES)} may change when resuming"
            )
        world_size = state.get("world_size", 1)
        if world_size != self.processes.world_size:
            how = (
                f"under torchrun with {world_size} processes in all"
                if world_size > 1
                else "in one process (without torchrun)"
            )
            raise ValueError(
                f"{path} was written by a run of {world_size} process(es) and this one has "
                f"{self.processes.world_size}; resume it {how} so that it continues the same run"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler and state["scheduler"]:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self.history = History.from_dict(state["history"])
        self._best_state = state["best_state"]
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.start_epoch = state["epoch"] + 1

    # -- training -----------------------------------------------------------
    def _loader(self, epoch: int) -> DataLoader:
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        if hasattr(self.train_data, "set_epoch"):
            self.train_data.set_epoch(epoch)
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        return DataLoader(
            self.train_data,
            batch_size=self.config.batch_size,
            shuffle=self.sampler is None,
            sampler=self.sampler,
            num_workers=self.config.num_workers,
            generator=generator,
            # a trailing batch of one breaks batch norm on 1×1 maps (e.g. AF-Net's GFF gate);
            # the order is reshuffled every epoch, so no sample is systematically left out
            drop_last=self._items_per_epoch > self.config.batch_size,
        )

    def _loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        kwargs = {"valid": batch["valid"].to(self.device)}
        if self.with_dpt:
            kwargs["dpt"] = batch["dpt"].to(self.device)
        return self.loss_fn(logits.float(), batch["target"].to(self.device), **kwargs)

    def _train_epoch(self, epoch: int, progress, cancel) -> float:
        self.model.train()
        total, count = 0.0, 0
        cfg = self.config
        steps = self.steps_per_epoch
        for step, batch in enumerate(self._loader(epoch)):
            check(cancel)
            x = batch["image"].to(self.device, non_blocking=True)
            with self._autocast():
                logits = self.network(x)
            loss = self._loss(logits, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss became {loss.item()} at epoch {epoch + 1} (learning rate "
                    f"{self.optimizer.param_groups[0]['lr']:g}, precision {self.precision}); "
                    "lower the learning rate (--lr)"
                    + ("" if self.precision == "fp32" else " or train in fp32 (--precision fp32)")
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.clip_grad:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            clamp_focal_weights(self.model)
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            if self.scheduler is not None and self.per_step_schedule:
                self.scheduler.step()
            total += float(loss.detach()) * x.shape[0]
            count += x.shape[0]
            report(
                progress,
                epoch * steps + step + 1,
                cfg.epochs * steps,
                f"epoch {epoch + 1}/{cfg.epochs} · loss {total / count:.4f}",
            )
        return self.processes.mean(total, count)

    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        """Loss and per-image-mean metrics on the validation images (whole images).

        Binary models (one logit, or two classes) are scored on the foreground.
        Models with K > 2 classes are scored per class on the arg-max labels, by
        evaluation's own :func:`~napari_attnseg.inference.evaluate.score_sample`:
        ``val_dice`` (and the other ``val_*`` metrics) is the mean over the
        foreground classes 1..K−1, and ``val_dice_per_class`` lists the Dice of
        every class, background first, each averaged over the images. A model with a
        separation head (its card's ``instances``) is scored on its foreground instead,
        with ``val_dice_per_class`` for the head's classes.

        Under torchrun each process scores its share of the images (on rank 0's
        batch-norm statistics) and every process combines all the per-image
        results, so every process gets the record a single process would.
        """
        self.evaluated.eval()
        self.processes.sync_buffers(self.evaluated)
        per_class = MetricAccumulator(self.n_classes) if self.n_classes > 2 else None
        scorers = (MetricAccumulator(), per_class)
        rows = self.processes.gather(
            (i, self._validate_image(sample, scorers))
            for i, sample in self.processes.shard(self.val_samples)
        )
        result: dict[str, Any] = {"val_loss": float(np.mean([row["loss"] for row in rows]))}
        for key in VAL_METRICS:
            result[f"val_{key}"] = _nanmean([row[key] for row in rows])
        if self.n_classes > 2:
            result["val_dice_per_class"] = [
                _nanmean([row["dice_per_class"][c] for row in rows]) for c in range(self.n_classes)
            ]
        return result

    def _validate_image(
        self, sample, scorers: tuple[MetricAccumulator, MetricAccumulator | None]
    ) -> dict[str, Any]:
        """The loss and :data:`VAL_METRICS` of one validation image (and each class's Dice).

        ``scorers`` are the binary and the per-class accumulators; the metrics come from
        :func:`~napari_attnseg.inference.evaluate.score_sample`, evaluation's own rule.
        """
        x = torch.as_tensor(sample.image, dtype=torch.float32)[None].to(self.device)
        mask = np.asarray(sample.mask)
        valid = mask >= 0
        if sample.roi is not None:
            valid &= np.asarray(sample.roi, bool)
        truth = np.where(valid, mask, 0)
        target = torch.as_tensor(truth, dtype=torch.long)[None]
        with self._autocast():
            logits = self.evaluated(x)
        logits = logits.float()
        kwargs = {"valid": torch.as_tensor(valid)[None].to(self.device)}
        if self.with_dpt:
            if getattr(sample, "dpt", None) is None:
                sample.dpt = distance_penalty_map(truth, self.n_classes)
            kwargs["dpt"] = torch.as_tensor(sample.dpt)[None].to(self.device)
        loss = float(self.loss_fn(logits, target.to(self.device), **kwargs))
        probs = class_probabilities(logits)[0].cpu().numpy()
        binary, per_class = scorers
        row = {}
        if self.n_classes > 2:
            metrics = score_sample(per_class, sample.name, probs, truth, roi=valid)
            row["dice_per_class"] = metrics["dice_per_class"]
        if self.n_classes == 2 or self.head is not None:
            metrics = score_sample(binary, sample.name, probs, truth, roi=valid)
        return {"loss": loss, **{k: metrics[k] for k in VAL_METRICS}, **row}

    def _score(self, record: dict[str, Any]) -> float:
        if self.config.monitor == "loss" or "val_dice" not in record:
            return -record.get("val_loss", record["train_loss"])
        return record["val_dice"]

    def _stop_reason(self, epoch: int, stale: int, elapsed: float, cancel) -> str:
        """Why training stops after ``epoch`` ("" to go on); rank 0's answer on every process."""
        cfg = self.config
        reason = ""
        if stop_requested(cancel):
            reason = f"stopped by the user after epoch {epoch + 1}"
        elif cfg.early_stopping is not None and stale >= cfg.early_stopping:
            reason = f"early stopping after epoch {epoch + 1}"
        elif cfg.time_budget is not None and elapsed >= cfg.time_budget:
            reason = f"time budget reached after epoch {epoch + 1}"
        return self.processes.from_main(reason)

    def fit(
        self,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> History:
        cfg = self.config
        self.model.to(self.device)
        if self.ema is not None:
            self.ema.to(self.device)
        initial = copy.deepcopy(self.model.state_dict())
        writes = self.checkpoint_dir is not None and self.processes.is_main
        if writes:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.network = self.processes.wrap(self.model)
        sitting = time.perf_counter()
        start = sitting - self.history.seconds
        stale = 0
        if self.history.best_epoch is not None:
            stale = len(self.history.epochs) - 1 - self.history.best_epoch
        try:
            for epoch in range(self.start_epoch, cfg.epochs):
                if cfg.early_stopping is not None and stale >= cfg.early_stopping:
                    # a resumed run that had already stopped early
                    self.history.stopped = f"early stopping after epoch {epoch}"
                    break
                seed_everything(epoch_seed(self.processes.seed(cfg.seed), epoch))
                t0 = time.perf_counter()
                record: dict[str, Any] = {"epoch": epoch + 1}
                record["train_loss"] = self._train_epoch(epoch, progress, cancel)
                if self.val_samples and (epoch + 1) % cfg.val_every == 0:
                    check(cancel)
                    record.update(self.validate())
                record["lr"] = self.optimizer.param_groups[0]["lr"]
                record["focal"] = focal_weights(self.evaluated)
                record["seconds"] = time.perf_counter() - t0
                if self.scheduler is not None and not self.per_step_schedule:
                    self.scheduler.step(record.get("val_loss", record["train_loss"]))
                score = self._score(record)
                improved = self.history.best_score is None or score > self.history.best_score
                if improved:
                    self.history.best_score, self.history.best_epoch = (
                        score,
                        len(self.history.epochs),
                    )
                    self._best_state = copy.deepcopy(self.evaluated.state_dict())
                    stale = 0
                else:
                    stale += 1
                record["best"] = improved
                self.history.epochs.append(record)
                self.history.seconds = time.perf_counter() - start
                if writes:
                    if improved:
                        self._save_best()
                    self._save_last(epoch)
                if self.on_epoch is not None:
                    self.on_epoch(record)
                stopped = self._stop_reason(epoch, stale, time.perf_counter() - sitting, cancel)
                if stopped:
                    self.history.stopped = stopped
                    break
            else:
                self.history.stopped = "completed"
        except Cancelled:
            self.model.load_state_dict(self._best_state or initial)
            self.history.stopped = "cancelled"
            raise
        finally:
            self.network = self.model  # DDP's hooks go with the wrapper
        self.model.load_state_dict(self._best_state or self.evaluated.state_dict())
        self.model.eval()
        report(progress, 1, 1, self.history.stopped)
        return self.history


def _nanmean(values: Sequence[float]) -> float:
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0 or np.isnan(array).all():
        return math.nan
    return float(np.nanmean(array))
