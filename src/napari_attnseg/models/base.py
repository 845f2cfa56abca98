"""The base class of every segmentation network.

It owns what all architectures share, so each architecture file only wires
its blocks:

* **any input size**: the input is padded (centred, reflect) to the
  architecture's ``size_multiple`` and the logits are cropped back, so a
  97×131 image gives a 97×131 output;
* **input checks** with messages that name the problem;
* the **config** (a JSON-serialisable dict set by ``create_model``) from
  which the registry rebuilds the model.

Subclasses define ``Config`` (a dataclass of their options),
``size_multiple`` and :meth:`forward_padded`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .card import ModelCard


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Logits (N, C, H, W) -> probabilities (N, K, H, W), K = max(2, C), channel 0 = background.

    One binary logit ``x`` becomes ``[sigmoid(-x), sigmoid(x)]`` (not
    ``1 - sigmoid(x)``, which loses precision for confident pixels), so losses,
    metrics and inference treat binary and multi-class models alike.
    """
    logits = logits.float()
    if logits.shape[1] == 1:
        return torch.cat([torch.sigmoid(-logits), torch.sigmoid(logits)], dim=1)
    return torch.softmax(logits, dim=1)


class SegmentationModel(nn.Module):
    """2D segmentation network: (N, in_channels, H, W) -> logits (N, n_classes, H, W).

    ``n_classes == 1`` means one binary logit (apply a sigmoid);
    ``n_classes >= 2`` means class logits (apply a softmax).
    """

    Config: ClassVar[type]
    #: total down-sampling factor; inputs are padded to a multiple of it
    size_multiple: int = 16
    pad_mode: ClassVar[str] = "reflect"

    def __init__(self, in_channels: int, n_classes: int) -> None:
        super().__init__()
        for label, value in (("in_channels", in_channels), ("n_classes", n_classes)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{label} must be a positive integer, got {value!r}")
        self.in_channels = in_channels
        self.n_classes = n_classes
        #: JSON-serialisable description; ``create_model(**config)`` rebuilds the model
        self.config: dict[str, Any] = {}
        #: how to use the model (input handling, classes, provenance); set when it is
        #: loaded or trained, ``models.persistence.card_of`` fills in a default
        self.card: ModelCard | None = None

    # -- to implement -------------------------------------------------------
    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for an input whose H and W are multiples of ``size_multiple``."""
        raise NotImplementedError

    # -- shared behaviour ---------------------------------------------------
    @property
    def name(self) -> str:
        return self.config.get("name", type(self).__name__)

    def padding(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) padding that makes H, W multiples of ``size_multiple``.

        Sides are padded to at least twice ``size_multiple``, so the coarsest
        feature map has 2×2 pixels: instance norm (and batch norm on one
        image) cannot normalise a single pixel, and a tiny image is then padded
        and cropped back rather than refused.
        """
        m = self.size_multiple

        def split(n: int) -> tuple[int, int]:
            total = max(2 * m, math.ceil(n / m) * m) - n
            return total // 2, total - total // 2

        top, bottom = split(height)
        left, right = split(width)
        return left, right, top, bottom

    def check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.name} expects a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(
                f"{self.name} expects a 4D tensor (N, C, H, W), got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.name} was built for {self.in_channels} input channel(s) "
                f"but the input has {x.shape[1]} (shape {tuple(x.shape)})"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        height, width = x.shape[-2:]
        left, right, top, bottom = self.padding(height, width)
        if left or right or top or bottom:
            small = max(left, right) >= width or max(top, bottom) >= height
            mode = "replicate" if small else self.pad_mode
            x = F.pad(x, (left, right, top, bottom), mode=mode)
        logits = self.forward_padded(x)
        return logits[..., top : top + height, left : left + width]

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, n_classes={self.n_classes}"
