"""Training configuration as data: a dataclass that round-trips through JSON.

The defaults follow the Focal Attention Networks recipe (Yeung et al., ISBI
2022, §II-D: Adam 1e-3,
ReduceLROnPlateau ×0.1 after 25 epochs, early stopping after 50, the
asymmetric Unified Focal loss + FDPT). Zoo recipes override what their paper
uses (AF-Net: SGD + poly; FocusNet: Dice loss, patience 5, ×0.5).

Two settings default to ``"auto"`` and are resolved when training starts:

* ``patch_size`` — :func:`default_patch_size`: the largest power of two that
  fits the smallest training image, at most 256, so small images are not
  padded to a patch mostly made of padding;
* ``precision`` — :func:`napari_attnseg.inference.device.resolve_precision`:
  bf16 autocast on CPUs where native bf16 is measured faster than fp32 and on
  CUDA GPUs that support it,
  fp16 on other CUDA GPUs, fp32 elsewhere.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..inference.device import PRECISIONS
from ..losses import loss_defaults

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("plateau", "poly", "none")
MONITORS = ("dice", "loss")
#: ``patch_size`` value that picks the patch from the training images
AUTO = "auto"
#: the smallest patch a network with four 2× down-samplings can be trained on
MIN_PATCH = 16
#: the largest patch :func:`default_patch_size` picks
MAX_AUTO_PATCH = 256


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 8
    #: random patches of this size; "auto": :func:`default_patch_size` of the
    #: training images; None: whole images, which must then share a size
    patch_size: int | str | None = AUTO
    #: patches drawn per epoch (None: one per training image)
    samples_per_epoch: int | None = None
    #: fraction of patches centred on a foreground pixel
    fg_fraction: float = 0.0
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    #: applied to conv/linear weights only; Focal w, norms and biases are exempt
    weight_decay: float = 0.0
    schedule: str = "plateau"
    plateau_factor: float = 0.1
    plateau_patience: int = 25
    min_lr: float = 1e-7
    poly_power: float = 0.9
    #: epochs without improvement of ``monitor`` before stopping (None: never)
    early_stopping: int | None = 50
    #: what picks the best checkpoint: validation "dice" (higher; the mean over
    #: foreground classes for multi-class models) or "loss" (lower)
    monitor: str = "dice"
    loss: str = "unified_focal"
    loss_params: dict[str, Any] = field(default_factory=lambda: {"epsilon": 0.1})
    #: Augmenter options (see data.augmentation); None disables augmentation
    augment: dict[str, Any] | None = field(default_factory=dict)
    #: autocast precision of the forward pass: auto | fp32 | bf16 | fp16 (weights,
    #: losses and metrics stay fp32; fp16 on CUDA adds a gradient scaler)
    precision: str = "auto"
    clip_grad: float | None = None
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    #: stop after the epoch during which this many seconds have passed in this
    #: sitting (a resumed run gets the whole budget again)
    time_budget: float | None = None
    #: validate every N epochs
    val_every: int = 1
    #: decay of an exponential moving average of the weights, updated after every step
    #: (e.g. 0.999; ``torch.optim.swa_utils``): the average is validated, kept as the best
    #: and saved instead of the last step's weights. None: off
    ema: float | None = None

    def __post_init__(self) -> None:
        _integer("epochs", self.epochs, 1)
        _integer("batch_size", self.batch_size, 1)
        if self.patch_size != AUTO and self.patch_size is not None:
            _integer("patch_size", self.patch_size, MIN_PATCH, extra=' or "auto" or null')
        if self.samples_per_epoch is not None:
            _integer("samples_per_epoch", self.samples_per_epoch, 1, extra=" or null")
        _number("fg_fraction", self.fg_fraction, 0.0, 1.0)
        _number("lr", self.lr, 0.0, 1.0, closed=(False, False))
        _number("momentum", self.momentum, 0.0, 1.0, closed=(True, False))
        _number("weight_decay", self.weight_decay, 0.0, 1.0, closed=(True, False))
        _number("plateau_factor", self.plateau_factor, 0.0, 1.0, closed=(False, False))
        _integer("plateau_patience", self.plateau_patience, 0)
        _number("min_lr", self.min_lr, 0.0, 1.0, closed=(True, False))
        _number("poly_power", self.poly_power, 0.0, math.inf, closed=(False, False))
        if self.early_stopping is not None:
            _integer("early_stopping", self.early_stopping, 1, extra=" or null")
        if self.clip_grad is not None:
            _number("clip_grad", self.clip_grad, 0.0, math.inf, closed=(False, False))
        _integer("seed", self.seed, 0)
        _integer("num_workers", self.num_workers, 0)
        if self.time_budget is not None:
            _number("time_budget", self.time_budget, 0.0, math.inf, closed=(True, False))
        _integer("val_every", self.val_every, 1)
        if self.ema is not None:
            _number("ema", self.ema, 0.0, 1.0, closed=(False, False))
        for label, value, allowed in (
            ("optimizer", self.optimizer, OPTIMIZERS),
            ("schedule", self.schedule, SCHEDULES),
            ("monitor", self.monitor, MONITORS),
            ("precision", self.precision, PRECISIONS),
        ):
            if value not in allowed:
                raise ValueError(f"{label} must be one of {', '.join(allowed)}, got {value!r}")
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(
                f"device must be a name such as auto, cpu or cuda:0, got {self.device!r}"
            )
        if not isinstance(self.loss_params, dict):
            raise ValueError(f"loss_params must be an object, got {self.loss_params!r}")
        accepted = loss_defaults(self.loss)  # unknown loss names raise here, listing the valid ones
        unknown = sorted(set(self.loss_params) - set(accepted))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {unknown} for loss {self.loss!r}; "
                f"accepted: {sorted(accepted)}"
            )
        if self.augment is not None and not isinstance(self.augment, dict):
            raise ValueError(f"augment must be an object or null, got {self.augment!r}")
        # unknown or bad augmentation options fail when the recipe is read, not at training;
        # the check builds no transform (MONAI stays unimported)
        from ..data.augmentation import Augmenter

        try:
            Augmenter.check_config(self.augment)
        except (TypeError, ValueError) as error:
            raise ValueError(f"augment: {error}") from None

    # -- (de)serialisation --------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """A config from JSON data; unknown keys are an error.

        Files written before ``precision`` existed hold ``amp`` (true/false):
        true means ``precision="auto"``, false ``"fp32"``.
        """
        data = dict(data)
        if "amp" in data:
            amp = data.pop("amp")
            data.setdefault("precision", "auto" if amp else "fp32")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; valid: {sorted(known)}")
        return cls(**data)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def resolved_patch_size(self, shapes: Sequence[Sequence[int]]) -> int | None:
        """The patch edge training uses for images of these (…, H, W) shapes."""
        if self.patch_size == AUTO:
            return default_patch_size(shapes)
        return self.patch_size


def default_patch_size(shapes: Sequence[Sequence[int]]) -> int:
    """The largest power of two ≤ the smallest image side, capped at 256 (at least 16).

    Images smaller than 16 px are padded (reflect) up to the 16 px patch.
    """
    if not shapes:
        raise ValueError("no training images to choose a patch size from")
    smallest = min(min(int(s) for s in shape[-2:]) for shape in shapes)
    patch = 2 ** int(math.floor(math.log2(max(smallest, 1))))
    return int(min(MAX_AUTO_PATCH, max(MIN_PATCH, patch)))


def _integer(name: str, value: Any, low: int, *, extra: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}{extra}, got {value!r}")


def _number(
    name: str,
    value: Any,
    low: float,
    high: float,
    *,
    closed: tuple[bool, bool] = (True, True),
) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    if ok:
        ok = (value >= low if closed[0] else value > low) and (
            value <= high if closed[1] else value < high
        )
    if not ok:
        left = "[" if closed[0] else "("
        right = "]" if closed[1] else ")"
        top = "inf" if math.isinf(high) else f"{high:g}"
        raise ValueError(f"{name} must be a number in {left}{low:g}, {top}{right}, got {value!r}")


def read_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data
