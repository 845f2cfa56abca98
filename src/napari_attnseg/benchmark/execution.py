"""How a network is run: precision, memory format, grad mode, compilation, fusion.

A :class:`Variant` is one way of executing the same network, named by a short
spec such as ``"fp32"``, ``"fp32+cl"`` or ``"auto+cl+compile"``:

* the precision comes first: ``fp32``, ``bf16``, ``fp16`` (autocast; weights stay
  fp32) or ``auto`` (resolved for the device by
  :func:`~napari_attnseg.inference.resolve_precision`);
* then flags, in any order:

  ``cl``
      channels-last input (and weights): ``x.contiguous(memory_format=torch.channels_last)``;
  ``no_grad``
      ``torch.no_grad()`` instead of the default ``torch.inference_mode()``;
  ``compile``
      ``torch.compile(model)`` (CPU: Inductor, needs a C++ compiler; the first
      call of each input shape compiles, which warm-up absorbs);
  ``fuse``
      conv + batch-norm folded for eval by ``torch.fx.experimental.optimization.fuse``
      (networks that symbolic tracing cannot follow, or that have no batch norm to
      fold, are reported as such).

Every measurement of the benchmark takes variants, so that one run compares
them round-robin on the same machine load.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

#: the flags a variant spec may carry after its precision
FLAGS = ("cl", "no_grad", "compile", "fuse")
#: precisions a variant spec may start with
SPEC_PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def library_default_spec(device: torch.device) -> str:
    """How the library runs inference on ``device``, as a variant spec.

    CPU: channels-last at the ``auto`` precision (the U-Nets switch to
    channels-last themselves for CPU inference; the Predictor should feed every
    network channels-last input, see docs/benchmarks.md). Elsewhere: ``auto``.
    """
    return "auto+cl" if device.type == "cpu" else "auto"


@dataclass(frozen=True)
class Variant:
    """One way of running a network (see the module docstring for the spec syntax)."""

    #: resolved precision: fp32, bf16 or fp16
    precision: str = "fp32"
    channels_last: bool = False
    no_grad: bool = False
    compile: bool = False
    fuse: bool = False
    #: the spec it was parsed from (``auto`` kept), for the report
    spec: str = ""

    @property
    def name(self) -> str:
        """The resolved spec, e.g. ``"bf16+cl"`` (what tables and JSON show)."""
        flags = [
            f
            for f, on in zip(
                FLAGS, (self.channels_last, self.no_grad, self.compile, self.fuse), strict=True
            )
            if on
        ]
        return "+".join([self.precision, *flags])

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype (None: fp32, no autocast)."""
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


def check_spec(spec: str) -> tuple[str, list[str]]:
    """``(precision, flags)`` of a variant spec; a clear ``ValueError`` when it is malformed."""
    words = [w.strip().lower() for w in str(spec).split("+")]
    precision, flags = words[0], words[1:]
    if precision not in SPEC_PRECISIONS:
        raise ValueError(f"variant {spec!r} must start with one of {', '.join(SPEC_PRECISIONS)}")
    unknown = sorted(set(flags) - set(FLAGS))
    if unknown or len(set(flags)) != len(flags):
        raise ValueError(
            f"variant {spec!r}: unknown or repeated flag(s) {unknown or flags}; "
            f"flags are {', '.join(FLAGS)}"
        )
    return precision, flags


def parse_variant(spec: str, device: torch.device, auto: str = "auto") -> Variant:
    """The :class:`Variant` of ``spec`` on ``device``; bad specs raise.

    ``auto`` in the spec stands for ``auto`` (the precision argument), which is
    then resolved for the device by :func:`~napari_attnseg.inference.resolve_precision`.
    """
    from ..inference import resolve_precision

    precision, flags = check_spec(spec)
    if precision == "auto":
        precision = auto
    return Variant(
        precision=resolve_precision(device, precision),
        channels_last="cl" in flags,
        no_grad="no_grad" in flags,
        compile="compile" in flags,
        fuse="fuse" in flags,
        spec=spec,
    )


def parse_variants(specs: list[str], device: torch.device, auto: str = "auto") -> list[Variant]:
    """Parsed variants, dropping those that resolve to one already listed (e.g. auto = fp32)."""
    variants: dict[str, Variant] = {}
    for spec in specs:
        variant = parse_variant(spec, device, auto)
        variants.setdefault(variant.name, variant)
    return list(variants.values())


def prepare_model(model: nn.Module, variant: Variant) -> nn.Module:
    """``model`` (in eval mode) as ``variant`` runs it: fused, channels-last, compiled.

    Fusion works on a traced copy; channels-last converts the weights in place.
    Raises ``RuntimeError`` when a step does not apply to this network.
    """
    model = model.eval()
    if variant.fuse:
        from torch.fx.experimental.optimization import fuse

        norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
        if not any(isinstance(m, norms) for m in model.modules()):
            raise RuntimeError("fuse: no batch norm to fold into a convolution")
        try:
            model = fuse(model)
        except Exception as exc:  # symbolic tracing fails in many ways
            raise RuntimeError(f"fuse: torch.fx cannot trace this network ({exc})") from exc
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if variant.compile:
        model = torch.compile(model)
    return model


def prepare_input(x: torch.Tensor, variant: Variant) -> torch.Tensor:
    return x.contiguous(memory_format=variant.memory_format)


@contextlib.contextmanager
def running(variant: Variant, device: torch.device) -> Iterator[None]:
    """The grad mode and autocast region ``variant`` runs inference in."""
    grad = torch.no_grad() if variant.no_grad else torch.inference_mode()
    dtype = variant.dtype
    with grad, torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        yield
