"""The Focal layer of Yeung et al. (ISBI 2022, §II-B), as in the authors' ``focus-u-net`` code.

A single trainable, non-negative scalar ``w`` raises attention coefficients
``a`` in (0, 1) to a power: ``a' = clip(a, 1e-7, 1) ** w``.

* ``w = 1`` leaves the module unchanged (the Focal USE-Net / Attention U-Net);
* ``w = 0`` turns it into an identity (``a' = 1``) — the pruning probe;
* ``w > 1`` sharpens attention, ``w < 1`` flattens it.

Non-negativity holds by construction: the forward pass uses ``clamp(w, min=0)``
(whose gradient still flows at exactly ``w = 0``, unlike ``relu``, so the
pruning probe can leave zero), and :func:`clamp_focal_weights` mirrors Keras'
``NonNeg`` constraint by clipping the stored value after every optimiser step
(the trainer calls it), so ``w`` never lingers below zero.
"""

from __future__ import annotations

import torch
from torch import nn

EPSILON = 1e-7


class FocalLayer(nn.Module):
    """``a -> clip(a, eps, 1) ** w`` with one trainable scalar ``w >= 0``."""

    # Parameter names listed here are excluded from weight decay by the trainer.
    no_weight_decay = ("weight",)

    def __init__(self, init: float = 1.0) -> None:
        super().__init__()
        if init < 0:
            raise ValueError(f"Focal weight must be non-negative, got {init}")
        self.weight = nn.Parameter(torch.tensor(float(init)))

    @property
    def w(self) -> float:
        """Current effective exponent as a Python float."""
        return float(self.weight.detach().clamp(min=0))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        w = self.weight.clamp(min=0)
        return a.clamp(EPSILON, 1.0).pow(w.to(a.dtype))

    def extra_repr(self) -> str:
        return f"w={self.w:.4f}"


@torch.no_grad()
def clamp_focal_weights(model: nn.Module) -> None:
    """Project every Focal ``w`` back onto ``w >= 0`` (Keras ``NonNeg``)."""
    for module in model.modules():
        if isinstance(module, FocalLayer):
            module.weight.clamp_(min=0)
