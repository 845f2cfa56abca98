"""Instance metrics: matching predicted objects to ground-truth objects.

Both inputs are instance label images of the same shape (0 = background,
each other value one object; ids need not be consecutive). Any number of
dimensions works: a stack labelled slice by slice with ids unique over the
stack is scored like a volume, which is the same thing.

**IoU matrix.** :func:`iou_matrix` takes the intersections of every truth
object with every predicted object from one contingency table
(``np.bincount`` of the paired ids), so it costs one pass over the pixels
whatever the number of objects.

**Matching at a threshold t.** A truth and a predicted object match when
their IoU is *above* t (strictly, as the 2018 Data Science Bowl defines it).
For t ≥ 0.5 a match is unique on both sides (two objects cannot both
overlap a third by more than half its union), so the pairs with IoU > t are
the matching. For t < 0.5 the one-to-one matching is the one with the most
pairs, and among those the largest total IoU
(``scipy.optimize.linear_sum_assignment``, as StarDist does).

**Per image**, from the matching at t:

========================  =========================================================
tp, fp, fn                matched pairs, unmatched predictions, unmatched truths
precision, recall, f1     TP/(TP+FP), TP/(TP+FN), 2TP/(2TP+FP+FN)   (at t = 0.5)
ap at t                   TP/(TP+FP+FN): "average precision" as StarDist and the
                          2018 DSB define it (a detection score, not the area
                          under a precision–recall curve)
mean_ap                   mean of ap over t = 0.50, 0.55, …, 0.95 (the DSB score)
sq, rq, pq                panoptic quality (Kirillov et al. 2019) at t = 0.5:
                          SQ = mean IoU of the matched pairs, RQ = F1, PQ = SQ × RQ
========================  =========================================================

**Empty images** follow :mod:`napari_attnseg.metrics`: a ratio whose
denominator is 0 is 1.0 when the image has no error and 0.0 otherwise. So an
empty truth with an empty prediction scores 1 everywhere (SQ too); an empty
truth with any predicted object scores 0 (precision 0 and, as there is an
error, recall 0 as well); a non-empty truth with an empty prediction scores 0.

:class:`InstanceAccumulator` collects images like
:class:`napari_attnseg.metrics.MetricAccumulator`: ``summary()`` gives the
per-image rows, their mean, and the *pooled* scores (TP, FP, FN and the
matched IoU summed over all images, then the ratios).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..metrics import format_table

#: IoU thresholds of the mean AP (the 2018 DSB score): 0.50, 0.55, …, 0.95
THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
#: per-image and summary keys, in table order
INSTANCE_METRICS: tuple[str, ...] = (
    "ap50",
    "ap75",
    "mean_ap",
    "precision",
    "recall",
    "f1",
    "sq",
    "rq",
    "pq",
)
INSTANCE_COUNTS: tuple[str, ...] = ("n_true", "n_pred", "tp", "fp", "fn")


# -- building blocks -----------------------------------------------------------
def _ratio(numerator: float, denominator: float, error_free: bool) -> float:
    if denominator == 0:
        return 1.0 if error_free else 0.0
    return float(numerator) / float(denominator)


def _as_instances(name: str, labels: Any) -> np.ndarray:
    array = np.asarray(labels)
    if array.dtype == bool:
        raise ValueError(
            f"{name} is a boolean mask; instance metrics need instance labels "
            "(label it first, e.g. napari_attnseg.objects.instances_from_foreground)"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer instance labels, got dtype {array.dtype}")
    if array.size and array.min() < 0:
        raise ValueError(f"{name} holds negative labels ({array.min()}); 0 is background")
    return array


def _dense_ids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(object ids without 0, each pixel's index into [0] + ids)."""
    flat = labels.ravel()
    if flat.size and int(flat.max()) < 4 * flat.size + 1024:
        # cheap path: a lookup table instead of sorting the pixels
        present = np.bincount(flat) > 0
        present[0] = False
        ids = np.flatnonzero(present)
        lookup = np.zeros(present.size, dtype=np.int64)
        lookup[ids] = np.arange(1, ids.size + 1)
        return ids, lookup[flat]
    values, inverse = np.unique(flat, return_inverse=True)
    if values.size and values[0] == 0:
        return values[1:], inverse.astype(np.int64)
    return values, inverse.astype(np.int64) + 1


@dataclass(frozen=True)
class Overlap:
    """Intersections and IoU of every truth object with every predicted object."""

    #: truth object ids (rows), increasing
    truth_ids: np.ndarray
    #: predicted object ids (columns), increasing
    pred_ids: np.ndarray
    #: pixels shared, ``(n_true, n_pred)``
    intersection: np.ndarray
    #: intersection over union, ``(n_true, n_pred)``
    iou: np.ndarray


def overlap(truth: np.ndarray, pred: np.ndarray) -> Overlap:
    """The contingency table of two instance label images and the IoU of every pair."""
    truth = _as_instances("truth", truth)
    pred = _as_instances("pred", pred)
    if truth.shape != pred.shape:
        raise ValueError(f"truth shape {truth.shape} differs from prediction shape {pred.shape}")
    truth_ids, t = _dense_ids(truth)
    pred_ids, p = _dense_ids(pred)
    n_t, n_p = truth_ids.size + 1, pred_ids.size + 1
    table = np.bincount(t * n_p + p, minlength=n_t * n_p).reshape(n_t, n_p)
    intersection = table[1:, 1:]
    area_t = table[1:, :].sum(axis=1)
    area_p = table[:, 1:].sum(axis=0)
    union = area_t[:, None] + area_p[None, :] - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, intersection / np.maximum(union, 1), 0.0)
    return Overlap(truth_ids, pred_ids, intersection, iou)


def iou_matrix(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU ``(n_true, n_pred)``; rows and columns are the objects in increasing id order."""
    return overlap(truth, pred).iou


def match_pairs(iou: np.ndarray, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching (row indices, column indices) of the pairs with IoU > threshold."""
    iou = np.asarray(iou, dtype=np.float64)
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    if iou.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if threshold >= 0.5:
        rows, cols = np.nonzero(iou > threshold)
        return rows, cols
    # the most pairs above the threshold, then the largest total IoU among them
    above = iou > threshold
    n = max(1, min(iou.shape))
    cost = -(above.astype(np.float64) + iou / (2.0 * n))
    rows, cols = linear_sum_assignment(cost)
    keep = above[rows, cols]
    return rows[keep], cols[keep]


@dataclass(frozen=True)
class Matching:
    """The result of matching at one IoU threshold."""

    threshold: float
    n_true: int
    n_pred: int
    tp: int
    #: sum of the matched pairs' IoU
    matched_iou: float
    #: matched (truth id, predicted id) pairs, shape (tp, 2)
    pairs: np.ndarray

    @property
    def fp(self) -> int:
        return self.n_pred - self.tp

    @property
    def fn(self) -> int:
        return self.n_true - self.tp


def match(truth: np.ndarray, pred: np.ndarray, threshold: float = 0.5) -> Matching:
    """Match the objects of two instance label images at one IoU threshold."""
    ov = overlap(truth, pred)
    return _matching(ov, threshold)


def _matching(ov: Overlap, threshold: float) -> Matching:
    rows, cols = match_pairs(ov.iou, threshold)
    pairs = np.stack([ov.truth_ids[rows], ov.pred_ids[cols]], axis=1).astype(np.int64)
    return Matching(
        threshold=float(threshold),
        n_true=int(ov.truth_ids.size),
        n_pred=int(ov.pred_ids.size),
        tp=int(rows.size),
        matched_iou=float(ov.iou[rows, cols].sum()),
        pairs=pairs.reshape(-1, 2),
    )


def scores_from_matches(
    n_true: int, n_pred: int, tp: dict[float, int], matched_iou: float
) -> dict[str, float]:
    """Every :data:`INSTANCE_METRICS` value from the counts.

    ``tp`` maps each IoU threshold to its number of matches and must hold
    0.5 (for precision, recall, F1, PQ), 0.75 and the :data:`THRESHOLDS`;
    ``matched_iou`` is the IoU summed over the matches at 0.5.
    """

    def ap(t: float) -> float:
        n = tp[t]
        return _ratio(n, n_true + n_pred - n, n == n_true == n_pred)

    t50 = tp[0.5]
    fp, fn = n_pred - t50, n_true - t50
    error_free = fp == 0 and fn == 0
    f1 = _ratio(2 * t50, 2 * t50 + fp + fn, error_free)
    sq = _ratio(matched_iou, t50, error_free)
    return {
        "ap50": ap(0.5),
        "ap75": ap(0.75),
        "mean_ap": float(np.mean([ap(t) for t in THRESHOLDS])),
        "precision": _ratio(t50, n_pred, error_free),
        "recall": _ratio(t50, n_true, error_free),
        "f1": f1,
        "sq": sq,
        "rq": f1,
        "pq": sq * f1,
    }


def _counts(ov: Overlap, thresholds: tuple[float, ...]) -> tuple[dict[float, int], float]:
    tp: dict[float, int] = {}
    matched_iou = 0.0
    for t in thresholds:
        m = _matching(ov, t)
        tp[t] = m.tp
        if t == 0.5:
            matched_iou = m.matched_iou
    return tp, matched_iou


_ALL_THRESHOLDS: tuple[float, ...] = tuple(sorted({0.5, 0.75, *THRESHOLDS}))


def instance_metrics(truth: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """All :data:`INSTANCE_METRICS` of one image, with ``n_true, n_pred, tp, fp, fn`` at 0.5.

    ``ap_by_threshold`` maps each of :data:`THRESHOLDS` to its AP.
    """
    ov = overlap(truth, pred)
    return _metrics(ov)


def _metrics(ov: Overlap) -> dict[str, Any]:
    n_true, n_pred = int(ov.truth_ids.size), int(ov.pred_ids.size)
    tp, matched_iou = _counts(ov, _ALL_THRESHOLDS)
    scores = scores_from_matches(n_true, n_pred, tp, matched_iou)
    counts = {
        "n_true": n_true,
        "n_pred": n_pred,
        "tp": tp[0.5],
        "fp": n_pred - tp[0.5],
        "fn": n_true - tp[0.5],
    }
    by_t = {
        t: _ratio(tp[t], n_true + n_pred - tp[t], tp[t] == n_true == n_pred) for t in THRESHOLDS
    }
    return {
        **scores,
        **counts,
        "matched_iou": matched_iou,
        "tp_by_threshold": {t: tp[t] for t in _ALL_THRESHOLDS},
        "ap_by_threshold": by_t,
    }


# -- over a data set -------------------------------------------------------------
def _nanmean(values: list[float]) -> float:
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0 or np.isnan(array).all():
        return math.nan
    return float(np.nanmean(array))


class InstanceAccumulator:
    """Instance metrics per image, their mean and the pooled scores over a data set.

    ``add(name, truth, pred)`` scores one pair of instance label images and
    returns its row (see :func:`instance_metrics`). ``summary()`` gives
    ``{"n_images", "mean", "pooled", "per_image"}`` like
    :meth:`napari_attnseg.metrics.MetricAccumulator.summary`: ``mean`` is the
    mean of the per-image :data:`INSTANCE_METRICS`; ``pooled`` treats the data
    set as one image (objects, matches and matched IoU summed over images) and
    also holds the summed counts.
    """

    def __init__(self) -> None:
        self.per_image: list[dict[str, Any]] = []
        self._n_true = 0
        self._n_pred = 0
        self._tp = dict.fromkeys(_ALL_THRESHOLDS, 0)
        self._matched_iou = 0.0

    def add(self, name: str, truth: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
        """Score one image, remember it, and return its metrics."""
        metrics = _metrics(overlap(truth, pred))
        self._n_true += metrics["n_true"]
        self._n_pred += metrics["n_pred"]
        for t, n in metrics["tp_by_threshold"].items():
            self._tp[t] += n
        self._matched_iou += metrics["matched_iou"]
        row = {"name": str(name), **{k: v for k, v in metrics.items() if "_by_" not in k}}
        row["ap_by_threshold"] = {f"{t:.2f}": v for t, v in metrics["ap_by_threshold"].items()}
        self.per_image.append(row)
        return metrics

    def pooled(self) -> dict[str, Any]:
        """Scores of the data set as one image, with the summed counts."""
        if not self.per_image:
            empty = dict.fromkeys(INSTANCE_METRICS, math.nan)
            return {**empty, **dict.fromkeys(INSTANCE_COUNTS, 0)}
        scores = scores_from_matches(self._n_true, self._n_pred, self._tp, self._matched_iou)
        tp = self._tp[0.5]
        return {
            **scores,
            "n_true": self._n_true,
            "n_pred": self._n_pred,
            "tp": tp,
            "fp": self._n_pred - tp,
            "fn": self._n_true - tp,
        }

    def summary(self) -> dict[str, Any]:
        """``{"n_images", "mean", "pooled", "per_image"}`` (JSON-serialisable)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = {k: _nanmean([m[k] for m in self.per_image]) for k in INSTANCE_METRICS}
        return {
            "n_images": len(self.per_image),
            "mean": mean,
            "pooled": self.pooled(),
            "per_image": [dict(m) for m in self.per_image],
        }


def format_instance_table(summary: dict[str, Any], *, digits: int = 3) -> str:
    """A fixed-width text table: one row per image, then the mean and pooled rows."""
    return format_table(summary, digits=digits, columns=(*INSTANCE_METRICS, "n_true", "n_pred"))


__all__ = [
    "INSTANCE_COUNTS",
    "INSTANCE_METRICS",
    "THRESHOLDS",
    "InstanceAccumulator",
    "Matching",
    "Overlap",
    "format_instance_table",
    "instance_metrics",
    "iou_matrix",
    "match",
    "match_pairs",
    "overlap",
    "scores_from_matches",
]
