"""Losses: hand-computed cases, the authors' formulas in NumPy, torch/MONAI references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_attnseg.losses import (
    LOSSES,
    AsymmetricFocalLoss,
    AsymmetricFocalTverskyLoss,
    AsymmetricUnifiedFocalLoss,
    CrossEntropyLoss,
    DiceCELoss,
    DiceLoss,
    FocalTverskyLoss,
    TverskyLoss,
    build_loss,
    distance_penalty_map,
    loss_defaults,
    loss_needs_dpt,
    probabilities,
)

ALL_LOSSES = [
    DiceLoss(),
    DiceLoss(include_background=True),
    CrossEntropyLoss(),
    DiceCELoss(),
    TverskyLoss(),
    FocalTverskyLoss(),
    AsymmetricFocalLoss(),
    AsymmetricFocalTverskyLoss(),
    AsymmetricUnifiedFocalLoss(),
]
LOSS_IDS = [type(loss).__name__ for loss in ALL_LOSSES]


def blob_target(n: int = 2, size: int = 16) -> torch.Tensor:
    """Rectangles of foreground on background, one per image."""
    target = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        target[i, 3 + i : 9 + i, 4 : 11 - i] = 1
    return target


# -- authors' formulas in NumPy (channel-last y_true / y_pred, binary) ---------
def authors_asymmetric_focal(y_true, y_pred, delta, gamma):
    y_pred = np.clip(y_pred, 1e-7, 1 - 1e-7)
    ce = -y_true * np.log(y_pred)
    back = (1 - delta) * (1 - y_pred[..., 0]) ** gamma * ce[..., 0]
    fore = delta * ce[..., 1]
    return np.mean(back + fore)


def authors_asymmetric_focal_tversky(y_true, y_pred, delta, gamma):
    eps = 1e-7
    y_pred = np.clip(y_pred, eps, 1 - eps)
    tp = (y_true * y_pred).sum(axis=(1, 2))
    fn = (y_true * (1 - y_pred)).sum(axis=(1, 2))
    fp = ((1 - y_true) * y_pred).sum(axis=(1, 2))
    ti = (tp + eps) / (tp + delta * fn + (1 - delta) * fp + eps)
    back = 1 - ti[:, 0]
    fore = (1 - ti[:, 1]) * (1 - ti[:, 1]) ** (-gamma)
    return np.mean(np.stack([back, fore], axis=-1))


def channel_last(logits, target, epsilon=0.0):
    probs = probabilities(logits).permute(0, 2, 3, 1).double().numpy()
    y = F.one_hot(target, probs.shape[-1]).double().numpy()
    if epsilon:
        dpt = np.stack([distance_penalty_map(t.numpy(), probs.shape[-1]) for t in target])
        y = y * np.moveaxis(dpt, 1, -1).astype(np.float64) ** epsilon
    return y, probs


# -- probabilities and simple losses ----------------------------------------------
def test_probabilities_binary_and_softmax():
    x = torch.randn(2, 1, 4, 4)
    p = probabilities(x)
    assert p.shape == (2, 2, 4, 4)
    torch.testing.assert_close(p[:, 1:], torch.sigmoid(x))
    torch.testing.assert_close(p.sum(1), torch.ones(2, 4, 4))
    x3 = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(probabilities(x3), torch.softmax(x3, 1))


def test_dice_hand_computed():
    # p = 0.5 everywhere, one foreground pixel of four:
    # foreground: sum(y p) = 0.5, sum(y) = 1, sum(p) = 2 -> dice = 1/3
    # background: sum(y p) = 1.5, sum(y) = 3, sum(p) = 2 -> dice = 3/5
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[1, 0], [0, 0]]])
    assert DiceLoss(smooth=0)(logits, target).item() == pytest.approx(2 / 3)
    both = DiceLoss(include_background=True, smooth=0)(logits, target).item()
    assert both == pytest.approx(((1 - 1 / 3) + (1 - 3 / 5)) / 2)


def test_dice_matches_monai():
    monai_losses = pytest.importorskip("monai.losses")
    logits = torch.randn(2, 2, 8, 8)
    target = blob_target(2, 8)
    for include_background in (False, True):
        ours = DiceLoss(include_background=include_background)(logits, target)
        reference = monai_losses.DiceLoss(
            include_background=include_background,
            to_onehot_y=True,
            softmax=True,
            smooth_nr=1e-6,
            smooth_dr=1e-6,
        )(logits, target[:, None])
        torch.testing.assert_close(ours, reference)
    binary = torch.randn(2, 1, 8, 8)
    reference = monai_losses.DiceLoss(sigmoid=True, smooth_nr=1e-6, smooth_dr=1e-6)(
        binary, target[:, None].float()
    )
    torch.testing.assert_close(DiceLoss()(binary, target), reference)


def test_cross_entropy_matches_torch():
    logits = torch.randn(2, 1, 8, 8) * 3
    target = blob_target(2, 8)
    reference = F.binary_cross_entropy_with_logits(logits[:, 0], target.float())
    torch.testing.assert_close(CrossEntropyLoss()(logits, target), reference)
    torch.testing.assert_close(build_loss("bce")(logits, target), reference)
    logits3 = torch.randn(2, 3, 8, 8) * 3
    target3 = torch.randint(0, 3, (2, 8, 8))
    reference3 = F.cross_entropy(logits3, target3)
    torch.testing.assert_close(CrossEntropyLoss()(logits3, target3), reference3)


def test_dice_ce_is_weighted_sum():
    logits, target = torch.randn(2, 1, 8, 8), blob_target(2, 8)
    expected = 0.3 * DiceLoss()(logits, target) + 2.0 * CrossEntropyLoss()(logits, target)
    torch.testing.assert_close(DiceCELoss(dice_weight=0.3, ce_weight=2.0)(logits, target), expected)


def test_tversky_hand_computed_alpha_on_fp_beta_on_fn():
    # p = 0.5, one foreground pixel of four: TP = 0.5, FN = 0.5, FP = 1.5
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[1, 0], [0, 0]]])
    loss = TverskyLoss(alpha=0.3, beta=0.7, smooth=0)(logits, target).item()
    assert loss == pytest.approx(1 - 0.5 / (0.5 + 0.3 * 1.5 + 0.7 * 0.5))
    # alpha = beta = 0.5 is the Dice loss
    torch.testing.assert_close(
        TverskyLoss(alpha=0.5, beta=0.5)(logits, target), DiceLoss()(logits, target)
    )
    focal = FocalTverskyLoss(alpha=0.3, beta=0.7, gamma=0.75, smooth=0)(logits, target).item()
    assert focal == pytest.approx(loss**0.75, rel=1e-5)


def test_tversky_matches_monai():
    monai_losses = pytest.importorskip("monai.losses")
    logits, target = torch.randn(2, 2, 8, 8), blob_target(2, 8)
    reference = monai_losses.TverskyLoss(
        include_background=False,
        to_onehot_y=True,
        softmax=True,
        alpha=0.3,
        beta=0.7,
        smooth_nr=1e-6,
        smooth_dr=1e-6,
    )(logits, target[:, None])
    torch.testing.assert_close(TverskyLoss(alpha=0.3, beta=0.7)(logits, target), reference)


# -- Unified Focal loss ----------------------------------------------------------
@pytest.mark.parametrize("epsilon", [0.0, 0.1])
def test_unified_focal_components_match_authors_formulas(epsilon):
    logits = torch.randn(2, 2, 12, 12) * 2
    target = blob_target(2, 12)
    y, p = channel_last(logits, target, epsilon)
    delta, gamma, lam = 0.6, 0.3, 0.4
    af = authors_asymmetric_focal(y, p, delta, gamma)
    aft = authors_asymmetric_focal_tversky(y, p, delta, gamma)
    kwargs = {"delta": delta, "gamma": gamma, "epsilon": epsilon}
    assert AsymmetricFocalLoss(**kwargs)(logits, target).item() == pytest.approx(af, rel=1e-5)
    assert AsymmetricFocalTverskyLoss(**kwargs)(logits, target).item() == pytest.approx(
        aft, rel=1e-5
    )
    ufl = AsymmetricUnifiedFocalLoss(lam=lam, **kwargs)(logits, target).item()
    assert ufl == pytest.approx(lam * aft + (1 - lam) * af, rel=1e-5)


def test_asymmetric_focal_suppresses_background_errors_only():
    # one pixel, predicted 0.8 for its true class: a background pixel is
    # focally down-weighted by (1 - 0.8)^gamma, a foreground pixel is not
    delta, gamma, q = 0.6, 0.5, 0.8
    x = math.log(q / (1 - q))
    loss = AsymmetricFocalLoss(delta=delta, gamma=gamma)
    background = loss(torch.full((1, 1, 1, 1), -x), torch.zeros(1, 1, 1, dtype=torch.long))
    foreground = loss(torch.full((1, 1, 1, 1), x), torch.ones(1, 1, 1, dtype=torch.long))
    assert background.item() == pytest.approx((1 - delta) * (1 - q) ** gamma * -math.log(q))
    assert foreground.item() == pytest.approx(delta * -math.log(q))
    assert background < foreground


def test_asymmetric_focal_tversky_penalises_false_negatives_more():
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[0, 2:4, 2:4] = 1
    missed = target.clone()
    missed[0, 2, 2] = 0  # one false negative
    extra = target.clone()
    extra[0, 5, 5] = 1  # one false positive

    def loss_of(prediction, delta):
        logits = (prediction.float() * 2 - 1)[:, None] * 20  # near-hard predictions
        return AsymmetricFocalTverskyLoss(delta=delta, gamma=0.5)(logits, target).item()

    assert loss_of(missed, 0.6) > loss_of(extra, 0.6)
    assert loss_of(missed, 0.4) < loss_of(extra, 0.4)


def test_binary_logit_and_two_class_softmax_agree():
    x = torch.randn(2, 1, 8, 8)
    two = torch.cat([torch.zeros_like(x), x], 1)  # softmax([0, x]) = [sigmoid(-x), sigmoid(x)]
    target = blob_target(2, 8)
    for loss in ALL_LOSSES:
        torch.testing.assert_close(loss(x, target), loss(two, target))


# -- FDPT ---------------------------------------------------------------------
def test_distance_penalty_map_hand_checked():
    mask = np.zeros((7, 7), dtype=np.int64)
    mask[1:6, 1:6] = 1
    weights = distance_penalty_map(mask, 2)
    assert weights.shape == (2, 7, 7) and weights.dtype == np.float32
    foreground = weights[1]
    assert foreground[1, 1] == 1 and foreground[1, 3] == 1  # boundary ring
    assert foreground[2, 2] == 0.5 and foreground[2, 3] == 0.5
    assert foreground[3, 3] == pytest.approx(1 / 3)
    assert (foreground[mask == 0] == 0).all()
    background = weights[0]
    assert background[0, 3] == 1  # touches the square
    assert background[0, 0] == pytest.approx(1 / math.sqrt(2))  # the border is no boundary
    assert (background[mask == 1] == 0).all()


def test_distance_penalty_map_full_and_absent_classes():
    weights = distance_penalty_map(np.zeros((4, 5), dtype=np.uint8), 3)
    assert (weights[0] == 1).all() and (weights[1:] == 0).all()
    with pytest.raises(ValueError, match="mask labels"):
        distance_penalty_map(np.full((3, 3), 3), 3)
    with pytest.raises(ValueError, match="2D"):
        distance_penalty_map(np.zeros((2, 3, 3), dtype=int), 2)
    with pytest.raises(ValueError, match="integer"):
        distance_penalty_map(np.zeros((3, 3)), 2)


@pytest.mark.parametrize("loss_class", [DiceLoss, CrossEntropyLoss, AsymmetricUnifiedFocalLoss])
def test_fdpt_epsilon_zero_is_plain_and_positive_changes_it(loss_class):
    logits, target = torch.randn(2, 1, 16, 16), blob_target(2, 16)
    plain = loss_class()(logits, target)
    garbage = torch.rand(2, 2, 16, 16)
    assert torch.equal(loss_class(epsilon=0.0)(logits, target, dpt=garbage), plain)
    dpt = torch.from_numpy(np.stack([distance_penalty_map(t.numpy(), 2) for t in target]))
    on_the_fly = loss_class(epsilon=0.1)(logits, target)
    precomputed = loss_class(epsilon=0.1)(logits, target, dpt=dpt)
    torch.testing.assert_close(on_the_fly, precomputed)
    assert not torch.allclose(precomputed, plain)
    assert not torch.allclose(loss_class(epsilon=1.0)(logits, target, dpt=dpt), precomputed)


# -- valid mask, gradients, shapes -----------------------------------------------
@pytest.mark.parametrize("loss", ALL_LOSSES, ids=LOSS_IDS)
def test_ignored_pixels_equal_cropping(loss):
    logits, target = torch.randn(1, 1, 12, 12), blob_target(1, 12)
    valid = torch.zeros(1, 12, 12, dtype=torch.bool)
    valid[..., :7] = True
    scribbled = torch.where(valid, target, torch.full_like(target, 255))  # "unlabelled"
    cropped = loss(logits[..., :7], target[..., :7])
    torch.testing.assert_close(loss(logits, scribbled, valid=valid), cropped)


def test_ignored_pixels_with_fdpt_equal_cropping():
    logits, target = torch.randn(1, 1, 12, 12), blob_target(1, 12)
    valid = torch.zeros(1, 12, 12, dtype=torch.bool)
    valid[..., :7] = True
    dpt = torch.rand(1, 2, 12, 12)
    loss = AsymmetricUnifiedFocalLoss(epsilon=0.1)
    cropped = loss(logits[..., :7], target[..., :7], dpt=dpt[..., :7])
    torch.testing.assert_close(loss(logits, target, valid=valid, dpt=dpt), cropped)


def test_images_without_valid_pixels_are_left_out():
    logits, target = torch.randn(2, 1, 8, 8), blob_target(2, 8)
    valid = torch.ones(2, 8, 8, dtype=torch.bool)
    valid[1] = False
    for loss in ALL_LOSSES:
        torch.testing.assert_close(loss(logits, target, valid=valid), loss(logits[:1], target[:1]))


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=LOSS_IDS)
@pytest.mark.parametrize("scale", [1.0, 40.0])
def test_gradients_are_finite(loss, scale):
    target = blob_target(2, 8)
    # scale 40: confident and exactly right, the worst case for (1 - TI)^(1 - gamma)
    base = torch.randn(2, 1, 8, 8) if scale == 1.0 else (target.float() * 2 - 1)[:, None]
    logits = (base * scale).requires_grad_()
    value = loss(logits, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=LOSS_IDS)
def test_multiclass(loss):
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    target = torch.randint(0, 3, (2, 8, 8))
    value = loss(logits, target)
    value.backward()
    assert value.ndim == 0 and torch.isfinite(logits.grad).all()
    perfect = loss((F.one_hot(target, 3).permute(0, 3, 1, 2).float() * 2 - 1) * 30, target)
    assert perfect < value


def test_mixed_precision_logits_are_cast():
    logits, target = torch.randn(1, 1, 8, 8), blob_target(1, 8)
    loss = AsymmetricUnifiedFocalLoss()
    value = loss(logits.to(torch.bfloat16), target)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, loss(logits.to(torch.bfloat16).float(), target))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    logits, target = torch.randn(2, 1, 16, 16), blob_target(2, 16)
    for loss in ALL_LOSSES + [AsymmetricUnifiedFocalLoss(epsilon=0.1)]:
        torch.testing.assert_close(loss(logits.cuda(), target.cuda()).cpu(), loss(logits, target))


def test_bad_inputs_are_named():
    loss = DiceLoss()
    logits = torch.randn(1, 1, 4, 4)
    with pytest.raises(ValueError, match="logits"):
        loss(torch.randn(1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="target"):
        loss(logits, torch.zeros(1, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        loss(logits, torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        loss(logits, torch.full((1, 4, 4), 2))
    with pytest.raises(ValueError, match="valid"):
        loss(logits, torch.zeros(1, 4, 4, dtype=torch.long), valid=torch.ones(4, 4))
    with pytest.raises(ValueError, match="dpt"):
        background = torch.zeros(1, 4, 4, dtype=torch.long)
        DiceLoss(epsilon=0.1)(logits, background, dpt=torch.ones(1, 4, 4))


# -- by name ----------------------------------------------------------------------
def test_build_loss_by_name():
    assert LOSSES == ("dice", "dice_ce", "ce", "tversky", "focal_tversky", "unified_focal")
    for name in LOSSES + ("bce", "ufl"):
        assert isinstance(build_loss(name), torch.nn.Module)
    ufl = build_loss("ufl", gamma=0.1, epsilon=0.1)
    assert isinstance(ufl, AsymmetricUnifiedFocalLoss)
    assert (ufl.delta, ufl.gamma, ufl.lam, ufl.epsilon) == (0.6, 0.1, 0.5, 0.1)
    assert loss_needs_dpt(ufl) and not loss_needs_dpt(build_loss("dice"))
    assert loss_defaults("tversky")["beta"] == 0.7
    with pytest.raises(ValueError, match="'focal'"):
        build_loss("focal")
    with pytest.raises(ValueError, match="'alpha'"):
        build_loss("unified_focal", alpha=0.3)
    with pytest.raises(ValueError, match="gamma"):
        build_loss("unified_focal", gamma=1.5)
    with pytest.raises(ValueError, match="epsilon"):
        build_loss("dice", epsilon=-1)
