"""Training configuration as data: a dataclass that round-trips through JSON.

The defaults follow the Focal Attention Networks recipe (§2.8: Adam 1e-3,
ReduceLROnPlateau ×0.1 after 25 epochs, early stopping after 50, the
asymmetric Unified Focal loss + FDPT). Zoo recipes override what their paper
uses (AF-Net: SGD + poly; FocusNet: Dice loss, patience 5, ×0.5).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("plateau", "poly", "none")
MONITORS = ("dice", "loss")


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 8
    #: random patches of this size (None: whole images, which must then share a size)
    patch_size: int | None = 256
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
    #: what picks the best checkpoint: validation "dice" (higher) or "loss" (lower)
    monitor: str = "dice"
    loss: str = "unified_focal"
    loss_params: dict[str, Any] = field(default_factory=lambda: {"epsilon": 0.1})
    #: Augmenter options (see data.augmentation); None disables augmentation
    augment: dict[str, Any] | None = field(default_factory=dict)
    #: mixed precision (CUDA only)
    amp: bool = True
    clip_grad: float | None = None
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    #: stop after the epoch during which this many seconds have passed
    time_budget: float | None = None
    #: validate every N epochs
    val_every: int = 1

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        for label, value, allowed in (
            ("optimizer", self.optimizer, OPTIMIZERS),
            ("schedule", self.schedule, SCHEDULES),
            ("monitor", self.monitor, MONITORS),
        ):
            if value not in allowed:
                raise ValueError(f"{label} must be one of {allowed}, got {value!r}")
        if not 0.0 <= self.fg_fraction <= 1.0:
            raise ValueError(f"fg_fraction must be in [0, 1], got {self.fg_fraction}")

    # -- (de)serialisation --------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; valid: {sorted(known)}")
        return cls(**data)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def read_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
