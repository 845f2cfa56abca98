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

Seeing the coefficients
-----------------------
Every module sends its (Focal-modulated) coefficients through ``self.tap``,
an :class:`~torch.nn.Identity`. A forward hook on the tap sees them, so
``models.introspection.capture`` registers hooks for one forward pass and
removes them afterwards: the module itself holds no recording state, and a
network that is not being inspected pays nothing. A module whose tapped value
is not yet a map in [0, 1] (self-attention taps its additive term) converts it
in :meth:`AttentionModule.as_map`.
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
        #: the coefficients pass through here; hook it to see them (see module docstring)
        self.tap = nn.Identity()

    # -- to implement -------------------------------------------------------
    def coefficients(self, x: torch.Tensor, *context: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def recalibrate(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return x * a

    # -- shared behaviour ---------------------------------------------------
    def modulate(self, a: torch.Tensor) -> torch.Tensor:
        """Apply the Focal layer (if any) and pass the result through the tap."""
        if self.focal is not None:
            a = self.focal(a)
        return self.tap(a)

    def as_map(self, tapped: torch.Tensor) -> torch.Tensor:
        """The coefficients in [0, 1] from what passed through the tap (here: itself)."""
        return tapped

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
