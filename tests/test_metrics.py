"""Metrics against scikit-learn, per image and pooled, with and without a ROI."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_attnseg.metrics import (
    METRICS,
    MetricAccumulator,
    binary_metrics,
    format_table,
    histogram_auc,
    log_odds_bin,
    multiclass_metrics,
    roc_auc,
)

skm = pytest.importorskip("sklearn.metrics")


def sample(seed: int, shape=(40, 48)):
    """Probabilities that correlate with a random ground truth, and a circular ROI."""
    rng = np.random.default_rng(seed)
    truth = rng.random(shape) < 0.25
    probs = np.clip(0.35 * truth + 0.65 * rng.random(shape), 0, 1)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    roi = (yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2 < (shape[0] / 2.2) ** 2
    return probs, truth, roi


def sklearn_metrics(probs, truth, threshold=0.5):
    y, s = truth.ravel(), probs.ravel()
    pred = s >= threshold
    jaccard_fg = skm.jaccard_score(y, pred)
    return {
        "dice": skm.f1_score(y, pred),
        "f1": skm.f1_score(y, pred),
        "jaccard": jaccard_fg,
        "accuracy": skm.accuracy_score(y, pred),
        "sensitivity": skm.recall_score(y, pred),
        "specificity": skm.recall_score(y, pred, pos_label=0),
        "precision": skm.precision_score(y, pred),
        "auc": skm.roc_auc_score(y, s),
        "miou": skm.jaccard_score(y, pred, average="macro"),
    }


@pytest.mark.parametrize("use_roi", [False, True])
def test_binary_metrics_match_sklearn(use_roi):
    probs, truth, roi = sample(0)
    ours = binary_metrics(probs, truth, roi=roi if use_roi else None)
    if use_roi:
        probs, truth = probs[roi], truth[roi]
    reference = sklearn_metrics(probs, truth)
    for name in METRICS:
        assert ours[name] == pytest.approx(reference[name], abs=1e-12), name
    assert ours["tp"] + ours["fp"] + ours["tn"] + ours["fn"] == truth.size
    assert all(isinstance(ours[k], int) for k in ("tp", "fp", "tn", "fn"))


def test_threshold_and_mask_inputs():
    probs, truth, _ = sample(1)
    high = binary_metrics(probs, truth, threshold=0.7)
    expected = skm.recall_score(truth.ravel(), probs.ravel() >= 0.7)
    assert high["sensitivity"] == pytest.approx(expected)
    as_mask = binary_metrics(probs >= 0.5, truth)
    as_uint8 = binary_metrics((probs >= 0.5).astype(np.uint8) * 255, truth.astype(np.uint8))
    for name in METRICS:
        assert as_mask[name] == as_uint8[name]
    # a binary prediction still has an AUC: the one-point ROC, (sens + spec) / 2
    assert as_mask["auc"] == pytest.approx(skm.roc_auc_score(truth.ravel(), (probs >= 0.5).ravel()))
    assert as_mask["auc"] == pytest.approx((as_mask["sensitivity"] + as_mask["specificity"]) / 2)


def test_auc_with_ties_matches_sklearn():
    rng = np.random.default_rng(2)
    truth = rng.random(500) < 0.3
    scores = np.round(rng.random(500) * 0.6 + 0.4 * truth, 1)  # many ties
    assert roc_auc(scores, truth) == pytest.approx(skm.roc_auc_score(truth, scores), abs=1e-12)
    assert math.isnan(roc_auc(scores, np.zeros(500, bool)))


def test_edge_cases():
    empty = np.zeros((6, 6), dtype=bool)
    both_empty = binary_metrics(empty, empty)
    for name in ("dice", "jaccard", "precision", "sensitivity", "specificity", "f1", "miou"):
        assert both_empty[name] == 1.0, name
    assert math.isnan(both_empty["auc"])  # one class only
    false_alarm = empty.copy()
    false_alarm[0, 0] = True
    alarm = binary_metrics(false_alarm, empty)
    assert alarm["dice"] == 0 and alarm["precision"] == 0 and alarm["sensitivity"] == 0
    assert alarm["specificity"] == pytest.approx(35 / 36)
    missed = binary_metrics(empty, false_alarm)
    assert missed["precision"] == 0 and missed["sensitivity"] == 0 and missed["specificity"] == 1
    everything = np.ones((6, 6), dtype=bool)
    assert binary_metrics(everything, everything)["specificity"] == 1.0
    nothing_in_roi = binary_metrics(false_alarm, empty, roi=empty)
    assert all(math.isnan(nothing_in_roi[name]) for name in METRICS)


def test_bad_inputs_are_named():
    probs, truth, _ = sample(3)
    with pytest.raises(ValueError, match="truth"):
        binary_metrics(probs, truth[:-1])
    with pytest.raises(ValueError, match="roi"):
        binary_metrics(probs, truth, roi=np.ones((2, 2), bool))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        binary_metrics(probs * 3 - 1, truth)
    with pytest.raises(ValueError, match="pred_labels"):
        multiclass_metrics(np.full((4, 4), 3), np.zeros((4, 4), int), 3)


def test_multiclass_metrics_match_sklearn():
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 3, (30, 30))
    logits = rng.normal(size=(3, 30, 30)) + 1.5 * np.eye(3)[truth].transpose(2, 0, 1)
    probs = np.exp(logits) / np.exp(logits).sum(0)
    pred = probs.argmax(0)
    ours = multiclass_metrics(pred, truth, 3, probs=probs)
    y, p = truth.ravel(), pred.ravel()
    f1 = skm.f1_score(y, p, average=None)
    iou = skm.jaccard_score(y, p, average=None)
    recall = skm.recall_score(y, p, average=None)
    for c in range(3):
        assert ours["per_class"][c]["dice"] == pytest.approx(f1[c])
        assert ours["per_class"][c]["jaccard"] == pytest.approx(iou[c])
        assert ours["per_class"][c]["auc"] == pytest.approx(
            skm.roc_auc_score(y == c, probs[c].ravel())
        )
    assert ours["dice"] == pytest.approx(f1[1:].mean())
    assert ours["sensitivity"] == pytest.approx(recall[1:].mean())
    assert ours["miou"] == pytest.approx(iou.mean())


def test_two_class_multiclass_equals_binary():
    probs, truth, roi = sample(5)
    binary = binary_metrics(probs, truth, roi=roi)
    labels = (probs >= 0.5).astype(int)
    two = multiclass_metrics(
        labels, truth.astype(int), 2, probs=np.stack([1 - probs, probs]), roi=roi
    )
    for name in (*METRICS, "tp", "fp", "tn", "fn"):
        assert two[name] == pytest.approx(binary[name]), name


def test_accumulator_mean_and_pooled():
    accumulator = MetricAccumulator()
    images = [sample(seed) for seed in range(3)]
    for i, (probs, truth, roi) in enumerate(images):
        per_image = accumulator.add(f"image{i}", probs, truth, roi=roi)
        assert per_image == pytest.approx(binary_metrics(probs, truth, roi=roi), nan_ok=True)
    summary = accumulator.summary()
    assert summary["n_images"] == 3 and [m["name"] for m in summary["per_image"]] == [
        "image0",
        "image1",
        "image2",
    ]
    assert set(summary["mean"]) == set(METRICS) == set(summary["pooled"])
    for name in METRICS:
        values = [m[name] for m in summary["per_image"]]
        assert summary["mean"][name] == pytest.approx(np.mean(values))
    all_probs = np.concatenate([p[r] for p, _, r in images])
    all_truth = np.concatenate([t[r] for _, t, r in images])
    reference = sklearn_metrics(all_probs, all_truth)
    for name in METRICS:
        tolerance = 1e-4 if name == "auc" else 1e-12  # histogram AUC
        assert summary["pooled"][name] == pytest.approx(reference[name], abs=tolerance), name


@pytest.mark.parametrize("spread", [2.0, 12.0])  # 12: a confident, saturated model
def test_pooled_histogram_auc_close_to_exact(spread):
    rng = np.random.default_rng(6)
    accumulator = MetricAccumulator()
    truths, scores = [], []
    for i in range(4):
        truth = rng.random((128, 128)) < 0.1
        logits = rng.normal(size=truth.shape) * spread + 1.25 * spread * truth - spread / 2
        probs = (1 / (1 + np.exp(-logits))).astype(np.float32)
        accumulator.add(str(i), probs, truth)
        truths.append(truth.ravel())
        scores.append(probs.ravel())
    exact = roc_auc(np.concatenate(scores), np.concatenate(truths))
    assert accumulator.pooled()["auc"] == pytest.approx(exact, abs=1e-5)


def test_histogram_auc_is_exact_for_binary_scores():
    rng = np.random.default_rng(7)
    truth = rng.random(5000) < 0.2
    binary = (rng.random(5000) < 0.3 + 0.4 * truth).astype(float)
    bins = 2**16
    index = log_odds_bin(binary, bins)
    assert set(np.unique(index)) == {0, bins - 1}
    approx = histogram_auc(
        np.bincount(index[truth], minlength=bins), np.bincount(index[~truth], minlength=bins)
    )
    assert approx == pytest.approx(roc_auc(binary, truth), abs=1e-12)


def test_accumulator_multiclass():
    rng = np.random.default_rng(7)
    accumulator = MetricAccumulator(n_classes=3)
    truths = [rng.integers(0, 3, (20, 20)) for _ in range(2)]
    accumulator.add("labels", truths[0], truths[0])
    probs = np.eye(3)[truths[1]].transpose(2, 0, 1) * 0.6 + 0.4 * rng.random((3, 20, 20))
    probs /= probs.sum(0)
    accumulator.add("probs", probs, truths[1])
    summary = accumulator.summary()
    assert summary["per_image"][0]["dice"] == 1.0 and summary["per_image"][0]["miou"] == 1.0
    expected = multiclass_metrics(probs.argmax(0), truths[1], 3, probs=probs)
    assert summary["per_image"][1]["dice"] == pytest.approx(expected["dice"])
    assert 0 < summary["pooled"]["dice"] <= 1 and 0 < summary["pooled"]["auc"] <= 1


def test_empty_accumulator_and_table():
    empty = MetricAccumulator().summary()
    assert empty["n_images"] == 0 and all(math.isnan(v) for v in empty["mean"].values())
    accumulator = MetricAccumulator()
    probs, truth, roi = sample(8)
    accumulator.add("a_rather_long_image_name", probs, truth, roi=roi)
    accumulator.add("blank", np.zeros_like(probs), np.zeros_like(truth))
    table = format_table(accumulator.summary())
    lines = table.splitlines()
    assert lines[0].split() == ["image", *METRICS]
    assert any(line.startswith("a_rather_long_image_name ") for line in lines)
    assert any(line.startswith("mean ") for line in lines) and any(
        line.startswith("pooled ") for line in lines
    )
    assert len({len(line) for line in lines[:-1]}) == 1  # fixed width
    blank = next(line for line in lines if line.startswith("blank "))
    assert blank.split()[1 + METRICS.index("auc")] == "-"  # one-class truth: AUC is NaN
