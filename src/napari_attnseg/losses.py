"""Segmentation losses, including the asymmetric Unified Focal loss with the
Focal Distance Penalty Term (Yeung et al., ISBI 2022, §II-A, eqs. 1-5).

Conventions shared by every loss here:

* **logits** ``(N, C, H, W)``: ``C == 1`` is one binary logit (sigmoid),
  ``C >= 2`` are class logits (softmax). :func:`probabilities` turns both into
  ``K = max(2, C)`` channels, channel 0 being the background, so one formula
  serves binary and multi-class models.
* **target** ``(N, H, W)`` integer class indices in ``[0, K)``.
* **valid** ``(N, H, W)`` bool, optional: pixels where it is False (unlabelled
  pixels of sparse scribble labels) are ignored entirely — their target value
  is never read and they enter no sum or mean, Tversky counts included.
  Pixel-wise losses average over the valid pixels of the whole batch; region
  losses average over the images that have at least one valid pixel.
* **dpt** ``(N, K, H, W)`` float in [0, 1], optional: the distance-penalty
  weights ``W^DPT`` of :func:`distance_penalty_map`. Losses with
  ``epsilon > 0`` replace the one-hot ground truth ``y`` by the Focal Distance
  Penalty Term target ``y' = y * W^DPT ** epsilon`` (Yeung et al., 2022, eq. 5). With
  ``epsilon == 0`` the target is ``y`` exactly and ``dpt`` is not needed.

Every loss is an ``nn.Module`` called as ``loss(logits, target, valid=..., dpt=...)``
returning a differentiable scalar; logits are cast to float32 first so the
losses are safe under mixed precision. :func:`build_loss` builds one by name
(the CLI, widgets and model cards store the name and its parameters).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from .models.base import class_probabilities

#: Keras ``K.epsilon()``: the probability clip and the AFT smoothing of the authors' code
EPSILON = 1e-7
#: smoothing of the Dice / Tversky ratios in the authors' code
SMOOTH = 1e-6


# -- inputs -----------------------------------------------------------------
def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities ``(N, K, H, W)``, ``K = max(2, C)``, channel 0 = background.

    Checks the logits, then applies :func:`models.base.class_probabilities`
    (for one binary logit ``x``: ``[sigmoid(-x), sigmoid(x)]``).
    """
    return class_probabilities(_check_logits(logits))


def distance_penalty_map(mask: np.ndarray, n_classes: int) -> np.ndarray:
    """Distance-penalty weights ``W^DPT`` ``(K, H, W)`` float32 of a label image.

    For every class ``c`` (background included), ``W_c = 1 / d_c`` inside the
    class and 0 outside, where ``d_c`` is SciPy's Euclidean distance transform
    of the class mask: the distance from a pixel to the nearest pixel *not* of
    class ``c`` (so ``d_c >= 1`` and ``W_c = 1`` on the class boundary, 1/2 one
    pixel further in, ...). The paper defines the DPT only as the inverse of
    the distance transform map (Yeung et al., ISBI 2022, §II-A, after Sugino
    et al., 2021), and the authors' DPT code is unavailable: the literal
    inverse used here is a re-implementation choice.

    The image border is not a boundary (distances are measured to other-class
    pixels only). A class that fills the whole image has no boundary at all;
    it gets ``W = 1`` everywhere, so the FDPT leaves it unweighted. An absent
    class gets all zeros (its one-hot target is zero anyway).
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be a 2D (H, W) label image, got shape {mask.shape}")
    if not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == bool):
        raise ValueError(f"mask must hold integer class labels, got dtype {mask.dtype}")
    if not isinstance(n_classes, int) or isinstance(n_classes, bool) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    if mask.size and (mask.min() < 0 or mask.max() >= n_classes):
        raise ValueError(
            f"mask labels must lie in [0, {n_classes}), got [{mask.min()}, {mask.max()}]"
        )
    weights = np.zeros((n_classes, *mask.shape), dtype=np.float32)
    for c in range(n_classes):
        inside = mask == c
        if inside.all():
            weights[c] = 1.0
        elif inside.any():
            distance = ndimage.distance_transform_edt(inside)
            weights[c][inside] = 1.0 / distance[inside]
    return weights


def _distance_penalty_batch(target: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``distance_penalty_map`` of every image of a target batch, on its device."""
    labels = target.detach().cpu().numpy()
    maps = np.stack([distance_penalty_map(image, n_classes) for image in labels])
    return torch.from_numpy(maps).to(target.device)


def _check_logits(logits: torch.Tensor) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor) or logits.ndim != 4:
        shape = getattr(logits, "shape", type(logits).__name__)
        raise ValueError(f"logits must be a (N, C, H, W) tensor, got {shape}")
    return logits.float()


@dataclass
class LossInputs:
    """What every loss works on, prepared once per call by :func:`prepare_inputs`."""

    #: class probabilities (N, K, H, W), unclipped
    probs: torch.Tensor
    #: ground truth (N, K, H, W): one-hot, or the FDPT target y' when epsilon > 0
    truth: torch.Tensor
    #: valid-pixel weights (N, 1, H, W) of 0/1, or None when every pixel counts
    weight: torch.Tensor | None


def prepare_inputs(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    valid: torch.Tensor | None = None,
    dpt: torch.Tensor | None = None,
    epsilon: float = 0.0,
) -> LossInputs:
    """Check the inputs and build probabilities, (FDPT) ground truth and weights."""
    logits = _check_logits(logits)
    n, c, h, w = logits.shape
    k = max(2, c)
    if not isinstance(target, torch.Tensor) or tuple(target.shape) != (n, h, w):
        shape = tuple(getattr(target, "shape", ())) or type(target).__name__
        raise ValueError(f"target must be a ({n}, {h}, {w}) tensor of class indices, got {shape}")
    if target.is_floating_point() or target.is_complex():
        raise ValueError(f"target must hold integer class indices, got dtype {target.dtype}")
    target = target.to(logits.device, torch.long)
    weight = None
    if valid is not None:
        if not isinstance(valid, torch.Tensor) or tuple(valid.shape) != (n, h, w):
            shape = tuple(getattr(valid, "shape", ())) or type(valid).__name__
            raise ValueError(f"valid must be a ({n}, {h}, {w}) bool tensor, got {shape}")
        valid = valid.to(logits.device, torch.bool)
        target = torch.where(valid, target, torch.zeros_like(target))
        weight = valid.unsqueeze(1).float()
    if bool(((target < 0) | (target >= k)).any()):
        raise ValueError(
            f"target class indices must lie in [0, {k}) for logits with {c} channel(s), "
            f"got [{int(target.min())}, {int(target.max())}]"
        )
    truth = F.one_hot(target, k).permute(0, 3, 1, 2).float()
    if epsilon > 0:
        if dpt is None:
            dpt = _distance_penalty_batch(target, k)
        elif not isinstance(dpt, torch.Tensor) or tuple(dpt.shape) != (n, k, h, w):
            shape = tuple(getattr(dpt, "shape", ())) or type(dpt).__name__
            raise ValueError(f"dpt must be a ({n}, {k}, {h}, {w}) tensor, got {shape}")
        truth = truth * dpt.detach().to(logits.device, torch.float32).clamp(0, 1).pow(epsilon)
    return LossInputs(probabilities(logits), truth, weight)


# -- reductions -------------------------------------------------------------
def _pixel_mean(per_pixel: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean of an (N, H, W) map over the valid pixels of the whole batch."""
    if weight is None:
        return per_pixel.mean()
    weight = weight[:, 0]
    return (per_pixel * weight).sum() / weight.sum().clamp_min(1.0)


def _image_mean(per_class: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean over classes, then over the images that have a valid pixel."""
    per_image = per_class.mean(dim=1)
    if weight is None:
        return per_image.mean()
    labelled = (weight.sum(dim=(1, 2, 3)) > 0).float()
    return (per_image * labelled).sum() / labelled.sum().clamp_min(1.0)


def confusion_sums(
    probs: torch.Tensor, truth: torch.Tensor, weight: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft (TP, FN, FP), each (N, K): sums over H, W per image and per class."""
    if weight is not None:
        probs, truth = probs * weight, truth * weight
        negatives = weight - truth
    else:
        negatives = 1.0 - truth
    tp = (truth * probs).sum(dim=(2, 3))
    fn = (truth * (1.0 - probs)).sum(dim=(2, 3))
    fp = (negatives * probs).sum(dim=(2, 3))
    return tp, fn, fp


def _unit_interval(name: str, value: float, *, open_right: bool = False) -> float:
    value = float(value)
    if not (0.0 <= value < 1.0 if open_right else 0.0 <= value <= 1.0):
        interval = "[0, 1)" if open_right else "[0, 1]"
        raise ValueError(f"{name} must lie in {interval}, got {value}")
    return value


def _non_negative(name: str, value: float) -> float:
    value = float(value)
    if not value >= 0.0:
        raise ValueError(f"{name} must be non-negative, got {value}")
    return value


# -- losses -----------------------------------------------------------------
class SegmentationLoss(nn.Module):
    """Base class: prepares the inputs once, subclasses implement :meth:`compute`.

    ``epsilon > 0`` switches on the Focal Distance Penalty Term. Pass the
    precomputed ``dpt`` weights (the data loader can cache them); without them
    they are computed on the fly from ``target`` with SciPy on the CPU, which
    is correct but slow (one distance transform per image, class and step).
    On the fly, unlabelled pixels (``valid`` False) count as background;
    sparse scribbles have no meaningful boundary distances, so prefer
    ``epsilon = 0`` for them.
    """

    def __init__(self, epsilon: float = 0.0) -> None:
        super().__init__()
        self.epsilon = _non_negative("epsilon", epsilon)

    def forward(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        *,
        valid: torch.Tensor | None = None,
        dpt: torch.Tensor | None = None,
    ) -> torch.Tensor:
        inputs = prepare_inputs(logits, target, valid=valid, dpt=dpt, epsilon=self.epsilon)
        return self.compute(inputs)

    def compute(self, inputs: LossInputs) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        names = list(inspect.signature(type(self).__init__).parameters)[1:]
        return ", ".join(f"{name}={getattr(self, name)!r}" for name in names)


class DiceLoss(SegmentationLoss):
    """1 − soft Dice, per image and per class, averaged over classes then images.

    ``Dice_c = (2·TP_c + s) / (2·TP_c + FP_c + FN_c + s)`` on probabilities.
    By default only foreground classes (1..K−1) are averaged, as MONAI's
    ``DiceLoss(include_background=False)``; the authors' ``dice_loss`` averages
    background and foreground (``include_background=True``).
    """

    def __init__(
        self, include_background: bool = False, smooth: float = SMOOTH, epsilon: float = 0.0
    ) -> None:
        super().__init__(epsilon)
        self.include_background = bool(include_background)
        self.smooth = _non_negative("smooth", smooth)

    def compute(self, inputs: LossInputs) -> torch.Tensor:
        tp, fn, fp = confusion_sums(inputs.probs, inputs.truth, inputs.weight)
        dice = (2 * tp + self.smooth) / (2 * tp + fp + fn + self.smooth)
        loss = 1.0 - dice
        if not self.include_background:
            loss = loss[:, 1:]
        return _image_mean(loss, inputs.weight)


class CrossEntropyLoss(SegmentationLoss):
    """Cross-entropy ``−Σ_c y_c log p_c``, mean over (valid) pixels.

    For one binary logit this is the binary cross-entropy, equal to
    ``binary_cross_entropy_with_logits`` while the probabilities stay inside
    the clip [1e-7, 1 − 1e-7] (|logit| < ~16); like the authors' code,
    probabilities are clipped there, which also bounds the per-pixel loss.
    """

    def compute(self, inputs: LossInputs) -> torch.Tensor:
        log_p = inputs.probs.clamp(EPSILON, 1.0 - EPSILON).log()
        return _pixel_mean(-(inputs.truth * log_p).sum(dim=1), inputs.weight)


class DiceCELoss(SegmentationLoss):
    """``dice_weight · Dice loss + ce_weight · cross-entropy`` (the paper's DSC+CE)."""

    def __init__(
        self,
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        include_background: bool = False,
        smooth: float = SMOOTH,
        epsilon: float = 0.0,
    ) -> None:
        super().__init__(epsilon)
        self.dice_weight = _non_negative("dice_weight", dice_weight)
        self.ce_weight = _non_negative("ce_weight", ce_weight)
        self.dice = DiceLoss(include_background, smooth, epsilon)
        self.ce = CrossEntropyLoss(epsilon)

    @property
    def include_background(self) -> bool:
        return self.dice.include_background

    @property
    def smooth(self) -> float:
        return self.dice.smooth

    def compute(self, inputs: LossInputs) -> torch.Tensor:
        return self.dice_weight * self.dice.compute(inputs) + self.ce_weight * self.ce.compute(
            inputs
        )


class TverskyLoss(SegmentationLoss):
    """1 − Tversky index per image and class, averaged like :class:`DiceLoss`.

    ``TI_c = (TP_c + s) / (TP_c + alpha·FP_c + beta·FN_c + s)``: **alpha weights
    false positives, beta false negatives**, as in Salehi et al. (2017) and
    MONAI's ``TverskyLoss``. The default beta = 0.7 > alpha = 0.3 favours
    recall; it equals the authors' ``tversky_loss(delta=0.7)``, whose ``delta``
    weights FN (their function also averages the background: set
    ``include_background=True``). alpha = beta = 0.5 is the Dice loss.
    """

    def __init__(
        self,
        alpha: float = 0.3,
        beta: float = 0.7,
        include_background: bool = False,
        smooth: float = SMOOTH,
        epsilon: float = 0.0,
    ) -> None:
        super().__init__(epsilon)
        self.alpha = _non_negative("alpha", alpha)
        self.beta = _non_negative("beta", beta)
        self.include_background = bool(include_background)
        self.smooth = _non_negative("smooth", smooth)

    def tversky_index(self, probs: torch.Tensor, inputs: LossInputs) -> torch.Tensor:
        tp, fn, fp = confusion_sums(probs, inputs.truth, inputs.weight)
        return (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)

    def compute(self, inputs: LossInputs) -> torch.Tensor:
        loss = 1.0 - self.tversky_index(inputs.probs, inputs)
        if not self.include_background:
            loss = loss[:, 1:]
        return _image_mean(loss, inputs.weight)


class FocalTverskyLoss(TverskyLoss):
    """``(1 − TI)^gamma`` per image and class (Abraham & Khan 2019).

    Follows the authors' ``focal_tversky_loss``: the exponent is ``gamma``
    itself (default 0.75, i.e. Abraham's 1/γ with γ = 4/3) and probabilities
    are clipped to [1e-7, 1 − 1e-7]. ``1 − TI`` is floored at 1e-7 so that a
    perfect prediction gives a finite gradient for gamma < 1.
    """

    def __init__(
        self,
        alpha: float = 0.3,
        beta: float = 0.7,
        gamma: float = 0.75,
        include_background: bool = False,
        smooth: float = SMOOTH,
        epsilon: float = 0.0,
    ) -> None:
        super().__init__(alpha, beta, include_background, smooth, epsilon)
        self.gamma = _non_negative("gamma", gamma)

    def compute(self, inputs: LossInputs) -> torch.Tensor:
        probs = inputs.probs.clamp(EPSILON, 1.0 - EPSILON)
        loss = (1.0 - self.tversky_index(probs, inputs)).clamp_min(EPSILON).pow(self.gamma)
        if not self.include_background:
            loss = loss[:, 1:]
        return _image_mean(loss, inputs.weight)


class AsymmetricFocalLoss(SegmentationLoss):
    """Asymmetric Focal loss L_AF (Yeung et al., ISBI 2022, §II-A, eq. 2), as in the authors' code.

    Per pixel, with probabilities clipped to [1e-7, 1 − 1e-7]:
    ``(1−δ)·(1−p_0)^γ·(−y_0 log p_0) + δ·Σ_{c≥1} (−y_c log p_c)``, averaged
    over (valid) pixels. Only the background (channel 0, the frequent class)
    is focally suppressed; the rare foreground classes get plain CE weighted
    by δ. The paper's eq. 2 has ``log p_r`` in both terms (a typo); the code
    is followed. Multi-class generalisation: every channel ≥ 1 is treated as
    a rare foreground class. The authors' standalone defaults are δ = 0.7,
    γ = 2; the defaults here are those of the Unified Focal loss.
    """

    def __init__(self, delta: float = 0.6, gamma: float = 0.5, epsilon: float = 0.0) -> None:
        super().__init__(epsilon)
        self.delta = _unit_interval("delta", delta)
        self.gamma = _non_negative("gamma", gamma)

    def compute(self, inputs: LossInputs) -> torch.Tensor:
        probs = inputs.probs.clamp(EPSILON, 1.0 - EPSILON)
        cross_entropy = -inputs.truth * probs.log()
        background = (1.0 - self.delta) * (1.0 - probs[:, 0]).pow(self.gamma) * cross_entropy[:, 0]
        foreground = self.delta * cross_entropy[:, 1:].sum(dim=1)
        return _pixel_mean(background + foreground, inputs.weight)


class AsymmetricFocalTverskyLoss(SegmentationLoss):
    """Asymmetric Focal Tversky loss L_AFT (Yeung et al., 2022, eqs. 3-4), as in the authors' code.

    Per image and class, on probabilities clipped to [1e-7, 1 − 1e-7]:
    ``TI_c = (TP_c + ε) / (TP_c + δ·FN_c + (1−δ)·FP_c + ε)`` with ε = 1e-7.
    **δ weights false negatives** (the code; the paper's eq. 4 attaches δ to
    the FP sum — with δ = 0.6 the code's choice favours recall). Background
    term ``1 − TI_0``; foreground terms ``(1 − TI_c)^(1−γ)`` (the code's
    ``(1−TI)·(1−TI)^−γ``, with ``1 − TI`` floored at 1e-7 so a perfect
    prediction has a finite gradient); mean over all K classes and images.
    Multi-class generalisation: every channel ≥ 1 is foreground.
    """

    def __init__(self, delta: float = 0.6, gamma: float = 0.5, epsilon: float = 0.0) -> None:
        super().__init__(epsilon)
        self.delta = _unit_interval("delta", delta)
        self.gamma = _unit_interval("gamma", gamma, open_right=True)

    def compute(self, inputs: LossInputs) -> torch.Tensor:
        probs = inputs.probs.clamp(EPSILON, 1.0 - EPSILON)
        tp, fn, fp = confusion_sums(probs, inputs.truth, inputs.weight)
        tversky = (tp + EPSILON) / (tp + self.delta * fn + (1.0 - self.delta) * fp + EPSILON)
        background = 1.0 - tversky[:, :1]
        foreground = (1.0 - tversky[:, 1:]).clamp_min(EPSILON).pow(1.0 - self.gamma)
        return _image_mean(torch.cat([background, foreground], dim=1), inputs.weight)


class AsymmetricUnifiedFocalLoss(SegmentationLoss):
    """Asymmetric Unified Focal loss ``λ·L_AFT + (1−λ)·L_AF`` (Yeung et al., 2022, eq. 1).

    λ weights the Tversky term as in the authors' code (the paper's eq. 1
    puts it on L_AF; identical at the default λ = 0.5). The same δ and γ are
    used in both terms. Yeung et al. (ISBI 2022) use δ = 0.6, λ = 0.5,
    γ = 0.1 / 0.2 / 0.3 (DRIVE / 2018DSB / CVC) and the FDPT with ε = 0.1.
    """

    def __init__(
        self, delta: float = 0.6, gamma: float = 0.5, lam: float = 0.5, epsilon: float = 0.0
    ) -> None:
        super().__init__(epsilon)
        self.lam = _unit_interval("lam", lam)
        self.focal_tversky = AsymmetricFocalTverskyLoss(delta, gamma, epsilon)
        self.focal = AsymmetricFocalLoss(delta, gamma, epsilon)

    @property
    def delta(self) -> float:
        return self.focal.delta

    @property
    def gamma(self) -> float:
        return self.focal.gamma

    def compute(self, inputs: LossInputs) -> torch.Tensor:
        return self.lam * self.focal_tversky.compute(inputs) + (1.0 - self.lam) * (
            self.focal.compute(inputs)
        )


# -- by name ----------------------------------------------------------------
_LOSS_CLASSES: dict[str, type[SegmentationLoss]] = {
    "dice": DiceLoss,
    "dice_ce": DiceCELoss,
    "ce": CrossEntropyLoss,
    "tversky": TverskyLoss,
    "focal_tversky": FocalTverskyLoss,
    "unified_focal": AsymmetricUnifiedFocalLoss,
}
_ALIASES = {"bce": "ce", "ufl": "unified_focal"}

#: canonical loss names accepted by :func:`build_loss` (aliases: "bce", "ufl")
LOSSES: tuple[str, ...] = tuple(_LOSS_CLASSES)


def _loss_class(name: str) -> type[SegmentationLoss]:
    key = _ALIASES.get(name, name) if isinstance(name, str) else name
    if key not in _LOSS_CLASSES:
        raise ValueError(
            f"unknown loss {name!r}; choose one of {LOSSES} (aliases: {sorted(_ALIASES)})"
        )
    return _LOSS_CLASSES[key]


def loss_defaults(name: str) -> dict[str, Any]:
    """The parameters of a loss and their defaults, e.g. to build a settings form."""
    signature = inspect.signature(_loss_class(name).__init__)
    return {p.name: p.default for p in list(signature.parameters.values())[1:]}


def build_loss(name: str, **params: Any) -> SegmentationLoss:
    """A loss by name, e.g. ``build_loss("unified_focal", gamma=0.1, epsilon=0.1)``."""
    accepted = loss_defaults(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} for loss {name!r}; accepted: {sorted(accepted)}"
        )
    return _loss_class(name)(**params)


def loss_needs_dpt(loss: nn.Module) -> bool:
    """Whether the loss uses distance-penalty weights (``epsilon > 0``)."""
    return float(getattr(loss, "epsilon", 0.0)) > 0.0


__all__ = [
    "EPSILON",
    "LOSSES",
    "AsymmetricFocalLoss",
    "AsymmetricFocalTverskyLoss",
    "AsymmetricUnifiedFocalLoss",
    "CrossEntropyLoss",
    "DiceCELoss",
    "DiceLoss",
    "FocalTverskyLoss",
    "LossInputs",
    "SegmentationLoss",
    "TverskyLoss",
    "build_loss",
    "confusion_sums",
    "distance_penalty_map",
    "loss_defaults",
    "loss_needs_dpt",
    "prepare_inputs",
    "probabilities",
]
