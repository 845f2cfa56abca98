"""The network a bioimage.io package runs: normalised image in, class probabilities out.

:class:`ExportedModel` wraps a :class:`~napari_attnseg.models.SegmentationModel`
and does in one ``forward`` what :class:`~napari_attnseg.inference.Predictor`
does around the network for one whole (untiled) image, so a bioimage.io
consumer that only applies the package's preprocessing gets our numbers:

1. resize to the size the model works at (card ``input_size`` / ``input_scale``;
   bilinear, anti-aliased when shrinking, as ``data.resize.resize_image``);
2. pad (centred, reflect; replicate when the image is smaller than the pad)
   to the architecture's ``size_multiple``, run the network, crop back;
3. sigmoid (one binary logit → ``[P(background), P(foreground)]``) or softmax;
4. resize the probabilities back to the input size (bilinear).

The forward is TorchScript-compatible: :func:`to_torchscript` traces only the
size-independent network body (``forward_padded``) and scripts the rest, so
the TorchScript weights accept any input size, like the eager model.
:func:`build_model` is the architecture callable a package's
``pytorch_state_dict`` weights name (``napari_attnseg.export.build_model``).
"""

import math
import warnings
from typing import Any, List, Optional, Tuple  # noqa: UP035 (TorchScript reads these annotations)

import torch
import torch.nn.functional as F
from torch import nn

from ..models.base import SegmentationModel
from ..models.registry import model_from_config


class PaddedBody(nn.Module):
    """``model.forward_padded`` as a module: logits of an input already padded to size."""

    def __init__(self, model: SegmentationModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_padded(x)


def _split(n: int, multiple: int) -> Tuple[int, int]:  # noqa: UP006
    """(before, after) padding that brings ``n`` to a multiple (as ``SegmentationModel``)."""
    total = max(multiple, int(math.ceil(n / multiple)) * multiple) - n
    return total // 2, total - total // 2


class ExportedModel(nn.Module):
    """Normalised ``(N, C, H, W)`` float32 → class probabilities ``(N, K, H, W)``, K = max(2, n)."""

    fixed_size: List[int]  # noqa: UP006

    def __init__(
        self,
        body: nn.Module,
        *,
        size_multiple: int,
        n_classes: int,
        input_size: Optional[List[int]] = None,  # noqa: UP006, UP045
        input_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if input_size is not None and len(input_size) != 2:
            raise ValueError(f"input_size must be [H, W], got {input_size!r}")
        if not input_scale > 0:
            raise ValueError(f"input_scale must be > 0, got {input_scale!r}")
        self.body = body
        self.size_multiple = int(size_multiple)
        self.binary = int(n_classes) == 1
        self.fixed_size = [int(v) for v in input_size] if input_size else []
        self.scale = float(input_scale)

    def working_size(self, height: int, width: int) -> List[int]:  # noqa: UP006
        if len(self.fixed_size) == 2:
            return [self.fixed_size[0], self.fixed_size[1]]
        return [max(1, int(round(height * self.scale))), max(1, int(round(width * self.scale)))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = int(x.shape[-2]), int(x.shape[-1])
        size = self.working_size(height, width)
        resized = size[0] != height or size[1] != width
        if resized:
            shrink = size[0] * size[1] < height * width
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
        h, w = int(x.shape[-2]), int(x.shape[-1])
        top, bottom = _split(h, self.size_multiple)
        left, right = _split(w, self.size_multiple)
        if left > 0 or right > 0 or top > 0 or bottom > 0:
            small = max(left, right) >= w or max(top, bottom) >= h
            mode = "replicate" if small else "reflect"
            x = F.pad(x, [left, right, top, bottom], mode=mode)
        logits = self.body(x)[:, :, top : top + h, left : left + w].float()
        if self.binary:
            probs = torch.cat([torch.sigmoid(-logits), torch.sigmoid(logits)], dim=1)
        else:
            probs = torch.softmax(logits, dim=1)
        if resized:
            probs = F.interpolate(probs, size=[height, width], mode="bilinear", align_corners=False)
        return probs


def wrap(model: SegmentationModel) -> ExportedModel:
    """The eager :class:`ExportedModel` of a model, with the card's resizing."""
    card = getattr(model, "card", None)
    return ExportedModel(
        PaddedBody(model),
        size_multiple=model.size_multiple,
        n_classes=model.n_classes,
        input_size=getattr(card, "input_size", None),
        input_scale=getattr(card, "input_scale", 1.0) or 1.0,
    ).eval()


def build_model(
    config: dict[str, Any],
    input_size: list[int] | None = None,
    input_scale: float = 1.0,
) -> ExportedModel:
    """Rebuild an exported network (fresh weights) from ``model.config`` and the card's resizing.

    This is the callable a bioimage.io package's ``pytorch_state_dict``
    weights name; the package's state dict then fills in the weights.
    """
    model = model_from_config(config)
    return ExportedModel(
        PaddedBody(model),
        size_multiple=model.size_multiple,
        n_classes=model.n_classes,
        input_size=input_size,
        input_scale=input_scale,
    ).eval()


def to_torchscript(exported: ExportedModel, example: torch.Tensor) -> torch.jit.ScriptModule:
    """TorchScript of an :class:`ExportedModel` that accepts any input size.

    The network body is traced on ``example`` padded to the model's size
    multiple (its graph does not depend on the size); resizing, padding and
    the probabilities are scripted, so they follow the input's shape.
    """
    exported = exported.eval()
    multiple = exported.size_multiple
    height, width = exported.working_size(int(example.shape[-2]), int(example.shape[-1]))
    padded = torch.zeros(
        (
            1,
            example.shape[1],
            max(multiple, math.ceil(height / multiple) * multiple),
            max(multiple, math.ceil(width / multiple) * multiple),
        ),
        dtype=torch.float32,
    )
    # the body's shape checks become constants; export_bioimageio verifies the result
    # against the eager model at two sizes, so the tracer's warnings are not shown
    # (TorchScript is what bioimage.io consumers run, so torch's deprecation notice is moot)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", ".*torch.jit", DeprecationWarning)
        body = torch.jit.trace(exported.body, padded, check_trace=False)
    scripted = ExportedModel(
        body,
        size_multiple=multiple,
        n_classes=1 if exported.binary else 2,
        input_size=list(exported.fixed_size) or None,
        input_scale=exported.scale,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*torch.jit", DeprecationWarning)
        return torch.jit.script(scripted.eval())
