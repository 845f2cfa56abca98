"""Instance metrics against hand-built cases and a brute-force reference."""

import itertools
import json
import math

import numpy as np
import pytest

from napari_attnseg.objects import (
    INSTANCE_METRICS,
    THRESHOLDS,
    InstanceAccumulator,
    format_instance_table,
    instance_metrics,
    iou_matrix,
    match,
    match_pairs,
)


def squares(*corners, size=4, shape=(20, 20)):
    labels = np.zeros(shape, dtype=np.int32)
    for i, (y, x) in enumerate(corners, start=1):
        labels[y : y + size, x : x + size] = i
    return labels


TRUTH = squares((1, 1), (1, 10), (10, 1), (10, 10))


# -- hand-built cases ------------------------------------------------------------
def test_identical_labels_score_one_whatever_the_ids():
    pred = TRUTH.copy()
    pred[TRUTH > 0] = 10 * TRUTH[TRUTH > 0] + 7  # other, non-consecutive ids
    m = instance_metrics(TRUTH, pred)
    assert all(m[k] == 1.0 for k in INSTANCE_METRICS)
    assert (m["tp"], m["fp"], m["fn"], m["n_true"], m["n_pred"]) == (4, 0, 0, 4, 4)


def test_one_missed_object():
    pred = TRUTH.copy()
    pred[pred == 4] = 0
    m = instance_metrics(TRUTH, pred)
    assert (m["tp"], m["fp"], m["fn"]) == (3, 0, 1)
    assert m["precision"] == 1.0 and m["recall"] == 0.75
    assert m["ap50"] == m["mean_ap"] == pytest.approx(3 / 4)
    assert m["f1"] == m["rq"] == pytest.approx(6 / 7)
    assert m["sq"] == 1.0 and m["pq"] == pytest.approx(6 / 7)


def test_one_split_object():
    pred = TRUTH.copy()
    pred[1:5, 3:5] = 9  # object 1 cut in two halves: IoU 0.5 each, not above 0.5
    m = instance_metrics(TRUTH, pred)
    assert (m["tp"], m["fp"], m["fn"]) == (3, 2, 1)
    assert m["ap50"] == pytest.approx(3 / 6)
    assert m["precision"] == pytest.approx(3 / 5) and m["recall"] == pytest.approx(3 / 4)


def test_one_merged_pair():
    truth = squares((1, 1), (1, 6), (12, 12), size=4)  # objects 1 and 2 are 1 px apart
    pred = truth.copy()
    pred[1:5, 1:10] = 1  # merged, plus the gap column: IoU with either < 0.5
    m = instance_metrics(truth, pred)
    assert (m["tp"], m["fp"], m["fn"]) == (1, 1, 2)
    assert m["ap50"] == pytest.approx(1 / 4)
    # the merged object overlaps object 1 with IoU 16/36: a match below 0.5 only
    assert match(truth, pred, 0.4).tp == 2


def test_iou_of_a_shifted_object_and_ap_over_thresholds():
    truth = squares((2, 2), size=10)
    pred = squares((2, 3), size=10)  # IoU 90/110 = 0.818
    iou = iou_matrix(truth, pred)
    assert iou.shape == (1, 1) and iou[0, 0] == pytest.approx(90 / 110)
    m = instance_metrics(truth, pred)
    above = [t for t in THRESHOLDS if 90 / 110 > t]
    assert m["mean_ap"] == pytest.approx(len(above) / 10)
    assert m["ap75"] == 1.0 and m["sq"] == pytest.approx(90 / 110)


def test_empty_conventions():
    empty = np.zeros_like(TRUTH)
    both = instance_metrics(empty, empty)
    assert all(both[k] == 1.0 for k in INSTANCE_METRICS)
    false_alarm = instance_metrics(empty, TRUTH)
    assert all(false_alarm[k] == 0.0 for k in INSTANCE_METRICS)
    assert (false_alarm["fp"], false_alarm["fn"]) == (4, 0)
    missed = instance_metrics(TRUTH, empty)
    assert all(missed[k] == 0.0 for k in INSTANCE_METRICS)
    assert (missed["fp"], missed["fn"]) == (0, 4)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="boolean mask"):
        instance_metrics(TRUTH > 0, TRUTH)
    with pytest.raises(ValueError, match="integer"):
        instance_metrics(TRUTH, TRUTH.astype(float))
    with pytest.raises(ValueError, match="shape"):
        instance_metrics(TRUTH, TRUTH[:10])
    with pytest.raises(ValueError, match="negative"):
        instance_metrics(TRUTH, -TRUTH)


# -- an independent implementation -------------------------------------------------
def brute_force(truth, pred):
    """Object pairs compared pixel set by pixel set; matching by exhaustive search."""
    t_ids = [i for i in np.unique(truth) if i]
    p_ids = [j for j in np.unique(pred) if j]
    iou = {}
    for i in t_ids:
        a = truth == i
        for j in p_ids:
            b = pred == j
            iou[i, j] = np.logical_and(a, b).sum() / np.logical_or(a, b).sum()

    def tp_at(t):
        if t >= 0.5:  # IoU > 0.5 pairs are unique: check it, then count them
            above = [pair for pair, v in iou.items() if v > t]
            assert len({i for i, _ in above}) == len({j for _, j in above}) == len(above)
            return len(above)
        best = 0
        small, large = (t_ids, p_ids) if len(t_ids) <= len(p_ids) else (p_ids, t_ids)
        for chosen in itertools.permutations(large, len(small)):
            pairs = zip(small, chosen, strict=True)
            key = (lambda s, c: (s, c)) if small is t_ids else (lambda s, c: (c, s))
            best = max(best, sum(iou[key(s, c)] > t for s, c in pairs))
        return best

    n_t, n_p = len(t_ids), len(p_ids)

    def ap(t):
        tp = tp_at(t)
        denominator = n_t + n_p - tp
        return tp / denominator if denominator else 1.0

    tp = tp_at(0.5)
    matched = [v for v in iou.values() if v > 0.5]
    f1 = 2 * tp / (n_t + n_p) if n_t + n_p else 1.0
    sq = sum(matched) / tp if tp else (1.0 if n_t == n_p == 0 else 0.0)
    return {
        "ap50": ap(0.5),
        "mean_ap": float(np.mean([ap(t) for t in THRESHOLDS])),
        "f1": f1,
        "pq": sq * f1,
        "ap30": ap(0.3),
    }


def random_labels(rng, shape=(24, 24), n=6):
    """Random overlapping rectangles, painted in turn (later ones cover earlier ones)."""
    labels = np.zeros(shape, dtype=np.int32)
    for _ in range(n):
        y, x = rng.integers(0, shape[0] - 4), rng.integers(0, shape[1] - 4)
        h, w = rng.integers(3, 10, size=2)
        labels[y : y + h, x : x + w] = rng.integers(1, 50)  # repeated ids make odd shapes
    return labels


@pytest.mark.parametrize("seed", range(8))
def test_matches_a_brute_force_implementation(seed):
    rng = np.random.default_rng(seed)
    truth = random_labels(rng)
    # the prediction: the truth jittered, some objects dropped, others added
    pred = np.roll(truth, rng.integers(-2, 3, size=2), axis=(0, 1))
    pred[pred == rng.choice(np.unique(pred))] = 0
    pred = np.where(pred > 0, pred, random_labels(rng, n=2) * (rng.random() < 0.7))
    expected = brute_force(truth, pred)
    got = instance_metrics(truth, pred)
    for key in ("ap50", "mean_ap", "f1", "pq"):
        assert got[key] == pytest.approx(expected[key]), key
    # below 0.5, the assignment finds as many matches as the exhaustive search
    t_ids = np.unique(truth[truth > 0])
    p_ids = np.unique(pred[pred > 0])
    if min(len(t_ids), len(p_ids)) and max(len(t_ids), len(p_ids)) <= 8:
        tp = match(truth, pred, 0.3).tp
        assert tp / (len(t_ids) + len(p_ids) - tp) == pytest.approx(expected["ap30"])


def test_match_pairs_below_one_half_prefers_more_pairs():
    # the largest total IoU (0.9 + 0) would give one pair; two pairs are above 0.3
    iou = np.array([[0.9, 0.35], [0.35, 0.0]])
    rows, cols = match_pairs(iou, 0.3)
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 1), (1, 0)]
    rows, cols = match_pairs(iou, 0.5)
    assert (rows.tolist(), cols.tolist()) == ([0], [0])
    with pytest.raises(ValueError, match="threshold"):
        match_pairs(iou, 1.0)


# -- over a data set -----------------------------------------------------------------
def test_accumulator_means_and_pools():
    missed = TRUTH.copy()
    missed[missed == 4] = 0
    acc = InstanceAccumulator()
    acc.add("same", TRUTH, TRUTH)
    acc.add("missed", TRUTH, missed)
    acc.add("empty", np.zeros_like(TRUTH), np.zeros_like(TRUTH))
    summary = acc.summary()
    assert summary["n_images"] == 3
    assert [row["name"] for row in summary["per_image"]] == ["same", "missed", "empty"]
    assert summary["mean"]["ap50"] == pytest.approx((1 + 0.75 + 1) / 3)
    pooled = summary["pooled"]
    assert (pooled["tp"], pooled["fp"], pooled["fn"], pooled["n_true"]) == (7, 0, 1, 8)
    assert pooled["ap50"] == pytest.approx(7 / 8)
    assert pooled["recall"] == pytest.approx(7 / 8) and pooled["precision"] == 1.0
    json.dumps(summary)  # goes into the evaluate command's JSON as it is
    table = format_instance_table(summary)
    assert "missed" in table and "pooled" in table and "(3 images)" in table


def test_empty_accumulator():
    summary = InstanceAccumulator().summary()
    assert summary["n_images"] == 0 and math.isnan(summary["mean"]["ap50"])
    assert math.isnan(summary["pooled"]["pq"])
