"""Seeing inside attention modules, generically across architectures.

Every attention module derives from :class:`AttentionModule`, so these
functions need no per-architecture code:

* :func:`attention_modules` — ``{dotted name: "spatial" | "channel"}``;
* :func:`capture` / :func:`capture_attention` — run a forward pass and return
  each module's coefficients (spatial maps at their own resolution and
  resized to the input's H×W, channel weights as length-C vectors);
* :func:`focal_weights` — every Focal exponent ``w``;
* :func:`prune` — a copy of the model without the modules whose ``w`` is
  below a threshold (the w < 0.2 heuristic of Yeung et al.).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import SegmentationModel
from .blocks.attention import disable_attention, iter_attention
from .registry import model_from_config

__all__ = [
    "PRUNE_THRESHOLD",
    "AttentionMap",
    "attention_modules",
    "capture",
    "capture_attention",
    "disable_attention",
    "focal_weights",
    "iter_attention",
    "prune",
]

#: the paper's (admittedly arbitrary) cut-off for pruning
PRUNE_THRESHOLD = 0.2


def attention_modules(model: nn.Module) -> dict[str, str]:
    """``{dotted name: kind}`` of every attention module (``kind`` is "spatial" or "channel")."""
    return {name: module.kind for name, module in iter_attention(model)}


def focal_weights(model: nn.Module) -> dict[str, float]:
    """``{attention module name: w}`` for every module that has a Focal layer."""
    return {
        name: module.focal_weight
        for name, module in iter_attention(model)
        if module.focal is not None
    }


@dataclass
class AttentionMap:
    """One module's coefficients from one forward pass."""

    name: str
    kind: str
    #: channel: (N, C); spatial: (N, 1, h, w) at the module's own resolution
    native: torch.Tensor
    #: channel: (N, C); spatial: (N, 1, H, W) aligned with the input
    resized: torch.Tensor
    focal_w: float | None = None


def _to_input_grid(a: torch.Tensor, model: nn.Module, height: int, width: int) -> torch.Tensor:
    """Resize a map computed on the padded input back onto the input's H×W grid."""
    if isinstance(model, SegmentationModel):
        left, right, top, bottom = model.padding(height, width)
    else:
        left = right = top = bottom = 0
    padded = (height + top + bottom, width + left + right)
    a = F.interpolate(a.float(), size=padded, mode="bilinear", align_corners=False)
    return a[..., top : top + height, left : left + width].clamp(0.0, 1.0)


@torch.no_grad()
def capture(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[AttentionMap]]:
    """Run ``model(x)`` in eval mode and return ``(logits, maps)``.

    A forward hook on every attention module's ``tap`` sees its coefficients
    during this one pass; the hooks are removed afterwards, so the model holds
    no recording state (a module must not be used by another thread meanwhile:
    that thread's pass would be recorded too). Spatial maps with several
    channels (FocusNet's per-channel sigma(D) gates) are averaged over
    channels to one map. The model's train/eval mode is restored afterwards.
    """
    modules = list(iter_attention(model))
    seen: dict[str, torch.Tensor] = {}

    def hook_for(name: str, module: nn.Module):
        def hook(_tap: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            seen[name] = module.as_map(output.detach())

        return hook

    handles = [m.tap.register_forward_hook(hook_for(n, m)) for n, m in modules]
    was_training = model.training
    model.eval()
    try:
        logits = model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    height, width = x.shape[-2:]
    maps = []
    for name, module in modules:
        a = seen.get(name)
        if a is None:  # module not reached in this forward pass
            continue
        if module.kind == "channel":
            native = a.float().flatten(1) if a.ndim == 4 else a.float()
            resized = native
        else:
            native = a.float().mean(dim=1, keepdim=True)
            resized = _to_input_grid(native, model, height, width)
        maps.append(AttentionMap(name, module.kind, native, resized, module.focal_weight))
    return logits, maps


def capture_attention(
    model: nn.Module, x: torch.Tensor, *, native: bool = False
) -> dict[str, torch.Tensor]:
    """``{name: coefficients}`` from one forward pass of ``x``.

    Spatial entries are (N, 1, H, W) at the input's H×W (``native=True``:
    (N, 1, h, w) at the module's own resolution); channel entries are (N, C).
    A model without attention modules returns ``{}``.
    """
    _, maps = capture(model, x)
    return {m.name: (m.native if native else m.resized) for m in maps}


def prune(model: SegmentationModel, threshold: float = PRUNE_THRESHOLD) -> SegmentationModel:
    """A new model without the Focal modules whose ``w < threshold``.

    Every other weight (Focal ``w`` of the kept modules included) is copied.
    The result's config lists the removed modules under ``pruned``, so
    ``create_model(**pruned_model.config)`` rebuilds the pruned architecture.
    The input model is left untouched.
    """
    if not model.config:
        raise ValueError("prune needs a model built by create_model (it has no config)")
    weights = focal_weights(model)
    if not weights:
        raise ValueError(f"{model.name} has no Focal layers; nothing to prune")
    remove = [name for name, w in weights.items() if w < threshold]
    config = dict(model.config)
    config["pruned"] = sorted(set(config.get("pruned", [])) | set(remove))
    pruned = model_from_config(config)
    state = model.state_dict()
    target = pruned.state_dict()
    missing = [k for k in target if k not in state]
    if missing:
        raise RuntimeError(f"pruned model has parameters the original lacks: {missing[:5]}")
    pruned.load_state_dict({k: state[k] for k in target})
    pruned.to(next(model.parameters()).device)
    pruned.card = model.card
    return pruned
