"""The network a bioimage.io package runs: normalised image in, class probabilities out.

:class:`ExportedModel` wraps a :class:`~napari_attnseg.models.SegmentationModel`
and does in one ``forward`` what :class:`~napari_attnseg.inference.Predictor`
does around the network for one whole (untiled) image, so a bioimage.io
consumer that only applies the package's preprocessing gets our numbers:

1. resize to the size the model works at (the card's ``input_size`` /
   ``input_scale``, read through :class:`~napari_attnseg.data.input_spec.InputSpec`;
   bilinear, anti-aliased when shrinking, as ``data.resize.resize_image``);
2. pad as the model pads itself (``SegmentationModel.padding`` and its
   ``pad_mode``: :class:`PaddingRule` takes the rule's numbers from the model
   and checks that it reproduces ``model.padding``), run the network, crop back;
3. ``models.base.class_probabilities`` (sigmoid of one binary logit →
   ``[P(background), P(foreground)]``, else softmax);
4. resize the probabilities back to the input size (bilinear).

The input it takes is normalised as :meth:`InputSpec.network_input
<napari_attnseg.data.input_spec.InputSpec.network_input>` normalises (a
bioimage.io consumer does it with the package's preprocessing steps).

The forward is TorchScript-compatible: :func:`to_torchscript` traces only the
size-independent network body (``forward_padded``) and scripts the rest, so
the TorchScript weights accept any input size, like the eager model.
:func:`build_model` is the architecture callable a package's
``pytorch_state_dict`` weights name (``napari_attnseg.export.build_model``).
"""

import math
import warnings
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple  # noqa: UP035 (TorchScript reads these annotations)

import torch
import torch.nn.functional as F
from torch import nn

from ..data.input_spec import InputSpec
from ..models.base import SegmentationModel, class_probabilities
from ..models.registry import model_from_config


class PaddedBody(nn.Module):
    """``model.forward_padded`` as a module: logits of an input already padded to size."""

    def __init__(self, model: SegmentationModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_padded(x)


def _split(n: int, multiple: int, smallest: int) -> Tuple[int, int]:  # noqa: UP006
    """(before, after) padding of a side of ``n`` in the form of ``SegmentationModel.padding``."""
    total = max(smallest, int(math.ceil(n / multiple)) * multiple) - n
    return total // 2, total - total // 2


@dataclass(frozen=True)
class PaddingRule:
    """A model's padding as numbers TorchScript can use, taken from the model itself.

    ``SegmentationModel.padding`` pads a side to a multiple of the
    architecture's ``size_multiple``, at least the side it pads a 1-pixel
    image to; :meth:`of` reads both from the model and checks that
    :func:`_split` with them gives ``model.padding`` for every side up to
    four multiples (so a model that pads otherwise is refused, not exported
    with a different rule).
    """

    multiple: int
    smallest: int
    mode: str

    @classmethod
    def of(cls, model: SegmentationModel) -> "PaddingRule":  # noqa: UP037
        left, right, _, _ = model.padding(1, 1)
        rule = cls(int(model.size_multiple), 1 + left + right, str(model.pad_mode))
        for n in range(1, 4 * rule.multiple + 2):
            left, right, top, bottom = model.padding(n, n)
            if (left, right) != rule.split(n) or (top, bottom) != rule.split(n):
                raise ValueError(
                    f"{model.name} pads a side of {n} by {(left, right)}, which the exported "
                    f"network's rule {rule} does not reproduce"
                )
        return rule

    def split(self, n: int) -> tuple[int, int]:
        return _split(n, self.multiple, self.smallest)

    def padded(self, n: int) -> int:
        return n + sum(self.split(n))


class ExportedModel(nn.Module):
    """Normalised ``(N, C, H, W)`` float32 → class probabilities ``(N, K, H, W)``, K = max(2, n)."""

    fixed_size: List[int]  # noqa: UP006
    __jit_ignored_attributes__ = ["rule"]  # noqa: RUF012 (TorchScript uses its numbers)

    def __init__(
        self,
        body: nn.Module,
        *,
        padding: PaddingRule,
        input_size: Optional[List[int]] = None,  # noqa: UP006, UP045
        input_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if input_size is not None and len(input_size) != 2:
            raise ValueError(f"input_size must be [H, W], got {input_size!r}")
        if not input_scale > 0:
            raise ValueError(f"input_scale must be > 0, got {input_scale!r}")
        self.body = body
        self.rule = padding
        self.size_multiple = int(padding.multiple)
        self.smallest = int(padding.smallest)
        self.pad_mode = str(padding.mode)
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
        top, bottom = _split(h, self.size_multiple, self.smallest)
        left, right = _split(w, self.size_multiple, self.smallest)
        if left > 0 or right > 0 or top > 0 or bottom > 0:
            small = max(left, right) >= w or max(top, bottom) >= h
            mode = "replicate" if small else self.pad_mode
            x = F.pad(x, [left, right, top, bottom], mode=mode)
        probs = class_probabilities(self.body(x)[:, :, top : top + h, left : left + w])
        if resized:
            probs = F.interpolate(probs, size=[height, width], mode="bilinear", align_corners=False)
        return probs


def _exported(
    model: SegmentationModel, input_size: Any = None, input_scale: float = 1.0
) -> ExportedModel:
    """The eager :class:`ExportedModel` of ``model`` with a card's working size."""
    return ExportedModel(
        PaddedBody(model),
        padding=PaddingRule.of(model),
        input_size=list(input_size) if input_size else None,
        input_scale=float(input_scale or 1.0),
    ).eval()


def wrap(model: SegmentationModel) -> ExportedModel:
    """The eager :class:`ExportedModel` of a model, with its card's working size."""
    spec = InputSpec.of(model)
    return _exported(model, spec.size, spec.scale)


def build_model(
    config: dict[str, Any],
    input_size: list[int] | None = None,
    input_scale: float = 1.0,
) -> ExportedModel:
    """Rebuild an exported network (fresh weights) from ``model.config`` and the card's resizing.

    This is the callable a bioimage.io package's ``pytorch_state_dict``
    weights name; the package's state dict then fills in the weights.
    """
    return _exported(model_from_config(config), input_size, input_scale)


def to_torchscript(exported: ExportedModel, example: torch.Tensor) -> torch.jit.ScriptModule:
    """TorchScript of an :class:`ExportedModel` that accepts any input size.

    The network body is traced on ``example`` padded to the model's size
    multiple (its graph does not depend on the size); resizing, padding and
    the probabilities are scripted, so they follow the input's shape.
    """
    exported = exported.eval()
    rule = exported.rule
    height, width = exported.working_size(int(example.shape[-2]), int(example.shape[-1]))
    padded = torch.zeros(
        (1, example.shape[1], rule.padded(height), rule.padded(width)), dtype=torch.float32
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
        padding=rule,
        input_size=list(exported.fixed_size) or None,
        input_scale=exported.scale,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*torch.jit", DeprecationWarning)
        return torch.jit.script(scripted.eval())
