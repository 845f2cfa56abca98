"""The one base class every attention module derives from.

An attention module turns its input into *coefficients* ``a`` in [0, 1]
(a sigmoid output: per channel for ``kind = "channel"``, per pixel for
``kind = "spatial"``), optionally passes them through a :class:`FocalLayer`,
and *recalibrates* its input with them (``x * a``). Because every module goes
through :meth:`AttentionModule.forward`, listing, recording, Focal
modulation and pruning are generic code (see ``models/introspection.py``)
instead of per-architecture special cases.

Contract for subclasses
-----------------------
* ``kind``: ``"spatial"`` or ``"channel"``.
* ``coefficients(x, *context) -> a``: the attention map, already in [0, 1].
  Channel maps are (N, C, 1, 1); spatial maps are (N, c, h, w) at the module's
  own resolution (``c`` is 1 for a single map, C for a per-channel gate such as
  FocusNet's sigma(D)).
* ``recalibrate(x, a)``: how the map is applied; it must return ``x`` when
  ``a`` is all ones. That is what makes ``focal = 0`` an identity and what
  lets :class:`Passthrough` replace a pruned module by simply returning ``x``.

A module that is not a multiplicative gate (self-attention, whose output is an
additive term) overrides :meth:`forward` and sets ``prunable = False``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from .focal import FocalLayer

KINDS = ("spatial", "channel")


class AttentionModule(nn.Module):
    """Base class: coefficients -> (Focal) -> record -> recalibrate."""

    kind: ClassVar[str] = "spatial"
    #: whether ``prune`` may replace this module by :class:`Passthrough`
    prunable: ClassVar[bool] = True

    def __init__(self, focal: float | None = None) -> None:
        super().__init__()
        self.focal = None if focal is None else FocalLayer(focal)
        #: set by ``capture_attention``; when true, ``last_map`` keeps the
        #: coefficients of the latest forward pass (detached).
        self.record = False
        self.last_map: torch.Tensor | None = None

    # -- to implement -------------------------------------------------------
    def coefficients(self, x: torch.Tensor, *context: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def recalibrate(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return x * a

    # -- shared behaviour ---------------------------------------------------
    def modulate(self, a: torch.Tensor) -> torch.Tensor:
        """Apply the Focal layer (if any) and record the result."""
        if self.focal is not None:
            a = self.focal(a)
        if self.record:
            self.last_map = a.detach()
        return a

    def forward(self, x: torch.Tensor, *context: torch.Tensor) -> torch.Tensor:
        return self.recalibrate(x, self.modulate(self.coefficients(x, *context)))

    @property
    def focal_weight(self) -> float | None:
        """The Focal exponent ``w`` or ``None`` for a plain module."""
        return None if self.focal is None else self.focal.w


class Passthrough(nn.Module):
    """Stands where an attention module is disabled or was pruned: returns ``x``.

    Equivalent to the module with its coefficients fixed at 1 (``w = 0``),
    without the parameters that used to generate them. It accepts (and
    ignores) the same extra inputs, so call sites need no special case.
    """

    def __init__(self, kind: str = "spatial", reason: str = "disabled") -> None:
        super().__init__()
        self.kind = kind
        self.reason = reason

    def forward(self, x: torch.Tensor, *context: torch.Tensor) -> torch.Tensor:
        return x

    def extra_repr(self) -> str:
        return f"{self.reason} {self.kind} attention"


def iter_attention(model: nn.Module):
    """Yield ``(name, module)`` for every attention module, in order of definition."""
    for name, module in model.named_modules():
        if isinstance(module, AttentionModule):
            yield name, module


def disable_attention(model: nn.Module, names: list[str], reason: str = "pruned") -> None:
    """Replace the named attention modules by :class:`Passthrough` (in place)."""
    found = dict(iter_attention(model))
    for name in names:
        module = found.get(name)
        if module is None:
            raise ValueError(f"{name!r} is not an attention module of this model")
        if not module.prunable:
            raise ValueError(
                f"attention module {name!r} ({type(module).__name__}) cannot be pruned"
            )
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, Passthrough(module.kind, reason))
