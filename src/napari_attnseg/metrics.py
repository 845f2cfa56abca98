"""Segmentation metrics, per image and pooled over a data set.

Counts TP / FP / TN / FN are taken on binarised predictions against the
ground truth, optionally inside a region of interest (the DRIVE field of
view), and every ratio is derived from them:

======================  ==========================================
dice, f1                2TP / (2TP + FP + FN)
jaccard                 TP / (TP + FP + FN)
accuracy                (TP + TN) / (TP + TN + FP + FN)
sensitivity (recall)    TP / (TP + FN)
specificity             TN / (TN + FP)
precision               TP / (TP + FP)
miou                    mean IoU over classes (binary: foreground and background)
auc                     pixel ROC-AUC of the soft scores
======================  ==========================================

**Empty denominators.** A ratio whose denominator is 0 has nothing to
measure; it is 1.0 when the image has no error (FP = FN = 0: e.g. empty truth
and empty prediction give dice = jaccard = precision = sensitivity = 1) and
0.0 otherwise (e.g. empty truth with a false alarm gives sensitivity 0, empty
prediction with a missed object gives precision 0), so a per-image mean never
rewards a wrong image. An empty ROI gives NaN everywhere.

**AUC** is the Mann–Whitney statistic on SciPy average ranks (ties count
one half). It is NaN when the truth inside the ROI has a single class. Binary
(bool or integer) predictions give a valid AUC too — the area under the
one-point ROC curve, (sensitivity + specificity) / 2 — which is lower than
that of the soft probabilities, so evaluate probabilities where you have them.

Papers average differently: Focal Attention Networks report the mean of
per-image values (Yeung et al., ISBI 2022, §II-C); FocusNet's training code
pools all validation pixels into one ROC curve for the AUC (Kaul et al.,
ISBI 2019; the authors' ``focusnet-alpha`` repository). :class:`MetricAccumulator`
reports both.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

#: the metric names, in table order
METRICS: tuple[str, ...] = (
    "dice",
    "jaccard",
    "accuracy",
    "sensitivity",
    "specificity",
    "precision",
    "f1",
    "auc",
    "miou",
)
COUNTS: tuple[str, ...] = ("tp", "fp", "tn", "fn")


# -- building blocks ----------------------------------------------------------
def _ratio(numerator: float, denominator: float, error_free: bool) -> float:
    if denominator == 0:
        return 1.0 if error_free else 0.0
    return float(numerator) / float(denominator)


def scores_from_counts(tp: int, fp: int, tn: int, fn: int) -> dict[str, float]:
    """Every count-based metric (all of :data:`METRICS` but ``auc``) from the counts."""
    if tp + fp + tn + fn == 0:
        return {name: math.nan for name in METRICS if name != "auc"}
    error_free = fp == 0 and fn == 0
    dice = _ratio(2 * tp, 2 * tp + fp + fn, error_free)
    jaccard = _ratio(tp, tp + fp + fn, error_free)
    background_iou = _ratio(tn, tn + fp + fn, error_free)
    return {
        "dice": dice,
        "jaccard": jaccard,
        "accuracy": (tp + tn) / (tp + fp + tn + fn),
        "sensitivity": _ratio(tp, tp + fn, error_free),
        "specificity": _ratio(tn, tn + fp, error_free),
        "precision": _ratio(tp, tp + fp, error_free),
        "f1": dice,
        "miou": (jaccard + background_iou) / 2,
    }


def roc_auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Exact ROC-AUC of scores for a binary truth (Mann–Whitney U on average ranks)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positive = np.asarray(truth, dtype=bool).ravel()
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = stats.rankdata(scores)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def histogram_auc(positive_counts: np.ndarray, negative_counts: np.ndarray) -> float:
    """ROC-AUC from score histograms of the positives and negatives (same bins).

    Pairs in different bins are ordered by bin; pairs sharing a bin count as
    ties (one half). The error against the exact AUC is therefore at most half
    the fraction of positive–negative pairs that share a bin.
    """
    positive_counts = np.asarray(positive_counts, dtype=np.float64)
    negative_counts = np.asarray(negative_counts, dtype=np.float64)
    n_pos, n_neg = positive_counts.sum(), negative_counts.sum()
    if n_pos == 0 or n_neg == 0:
        return math.nan
    negatives_below = np.cumsum(negative_counts) - negative_counts
    u = np.sum(positive_counts * (negatives_below + 0.5 * negative_counts))
    return float(u / (n_pos * n_neg))


#: log-odds span of the pooled-AUC histogram bins: float32 resolves p down to
#: ~1e-38 (log-odds -87) but only up to 1 - 6e-8 (+16.6; float64: +36.7)
LOG_ODDS_RANGE: tuple[float, float] = (-100.0, 40.0)


def log_odds_bin(scores: np.ndarray, bins: int) -> np.ndarray:
    """Histogram bin of each probability: equal steps of log-odds over LOG_ODDS_RANGE."""
    low, high = LOG_ODDS_RANGE
    scores = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        log_odds = np.clip(np.log(scores) - np.log1p(-scores), low, high)
    index = ((log_odds - low) * (bins / (high - low))).astype(np.int64)
    return np.minimum(index, bins - 1)


def _as_prediction(prob_or_pred: Any, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(binary prediction, soft scores) of a probability map or a mask."""
    array = np.asarray(prob_or_pred)
    if array.dtype == bool or np.issubdtype(array.dtype, np.integer):
        prediction = array != 0
        return prediction, prediction.astype(np.float64)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"prob_or_pred must be probabilities or a mask, got dtype {array.dtype}")
    if array.size and not (np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1):
        raise ValueError(
            "prob_or_pred must hold probabilities in [0, 1] (apply a sigmoid/softmax to logits)"
        )
    return array >= threshold, array


def _as_mask(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(value)
    if array.shape != shape:
        raise ValueError(f"{name} must have the prediction's shape {shape}, got {array.shape}")
    return array != 0


def _counts(prediction: np.ndarray, truth: np.ndarray) -> dict[str, int]:
    tp = int(np.count_nonzero(prediction & truth))
    fp = int(np.count_nonzero(prediction & ~truth))
    fn = int(np.count_nonzero(~prediction & truth))
    return {"tp": tp, "fp": fp, "tn": int(prediction.size) - tp - fp - fn, "fn": fn}


def _binary(
    prediction: np.ndarray, scores: np.ndarray, truth: np.ndarray, roi: np.ndarray | None
) -> dict[str, Any]:
    if roi is not None:
        prediction, scores, truth = prediction[roi], scores[roi], truth[roi]
    counts = _counts(prediction, truth)
    metrics: dict[str, Any] = scores_from_counts(**counts)
    metrics["auc"] = roc_auc(scores, truth)
    return {**{name: metrics[name] for name in METRICS}, **counts}


# -- per image ----------------------------------------------------------------
def binary_metrics(
    prob_or_pred: np.ndarray,
    truth: np.ndarray,
    *,
    roi: np.ndarray | None = None,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """All :data:`METRICS` plus the counts ``tp, fp, tn, fn`` of one image.

    ``prob_or_pred``: foreground probabilities in [0, 1] (binarised at
    ``>= threshold``; the AUC uses them as they are) or a mask (bool, or
    integer with nonzero = foreground). ``truth``: nonzero = foreground.
    ``roi``: nonzero = evaluated; restricts every count and the AUC.
    """
    prediction, scores = _as_prediction(prob_or_pred, threshold)
    truth = _as_mask("truth", truth, prediction.shape)
    roi = None if roi is None else _as_mask("roi", roi, prediction.shape)
    return _binary(prediction, scores, truth, roi)


def _check_labels(name: str, labels: Any, n_classes: int) -> np.ndarray:
    array = np.asarray(labels)
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        raise ValueError(f"{name} must hold integer class labels, got dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() >= n_classes):
        raise ValueError(
            f"{name} labels must lie in [0, {n_classes}), got [{array.min()}, {array.max()}]"
        )
    return array


def _nanmean(values: Sequence[float]) -> float:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or np.isnan(values).all():
        return math.nan
    return float(np.nanmean(values))


def _summarise_classes(per_class: list[dict[str, Any]]) -> dict[str, Any]:
    """Foreground-class means under the metric names; mIoU over all classes."""
    foreground = per_class[1:]
    summary: dict[str, Any] = {
        name: _nanmean([m[name] for m in foreground]) for name in METRICS if name != "miou"
    }
    summary["miou"] = _nanmean([m["jaccard"] for m in per_class])
    summary.update({name: int(sum(m[name] for m in foreground)) for name in COUNTS})
    return summary


def multiclass_metrics(
    pred_labels: np.ndarray,
    truth_labels: np.ndarray,
    n_classes: int,
    *,
    probs: np.ndarray | None = None,
    roi: np.ndarray | None = None,
) -> dict[str, Any]:
    """Per-class (one-vs-rest) metrics and their foreground mean.

    Returns the :data:`METRICS` keys holding the nan-mean over the foreground
    classes 1..K−1 (so tables treat binary and multi-class results alike),
    except ``miou``, the mean IoU over all K classes (background included —
    for K = 2 this equals :func:`binary_metrics`' ``miou``); the counts summed
    over foreground classes; and ``per_class``, a list of K
    :func:`binary_metrics`-style dicts. ``probs`` ``(K, H, W)`` gives soft
    scores for the per-class AUC; without it the AUC is that of the labels.
    """
    if not isinstance(n_classes, int) or isinstance(n_classes, bool) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    pred_labels = _check_labels("pred_labels", pred_labels, n_classes)
    truth_labels = _check_labels("truth_labels", truth_labels, n_classes)
    if truth_labels.shape != pred_labels.shape:
        raise ValueError(
            f"truth_labels shape {truth_labels.shape} differs from pred_labels "
            f"shape {pred_labels.shape}"
        )
    if probs is not None:
        probs = np.asarray(probs, dtype=np.float64)
        if probs.shape != (n_classes, *pred_labels.shape):
            raise ValueError(
                f"probs must have shape {(n_classes, *pred_labels.shape)}, got {probs.shape}"
            )
    roi = None if roi is None else _as_mask("roi", roi, pred_labels.shape)
    per_class = []
    for c in range(n_classes):
        prediction = pred_labels == c
        scores = probs[c] if probs is not None else prediction.astype(np.float64)
        per_class.append(_binary(prediction, scores, truth_labels == c, roi))
    return {**_summarise_classes(per_class), "per_class": per_class}


# -- over a data set ----------------------------------------------------------
class MetricAccumulator:
    """Collects per-image metrics and pooled counts over a data set.

    ``add`` takes, for ``n_classes == 2``, what :func:`binary_metrics` takes;
    for ``n_classes > 2``, either integer labels ``(H, W)`` or class
    probabilities ``(K, H, W)`` (arg-maxed for the counts, used for the AUC).

    The pooled AUC must rank every pixel of the data set; instead of keeping
    them all, each class keeps a histogram of its scores for positive and
    negative pixels (2 × ``bins`` integers) and :func:`histogram_auc` treats
    pixels in the same bin as ties. The bins are equal steps of the log-odds
    ``log(p / (1 − p))`` over :data:`LOG_ODDS_RANGE`, not of ``p``: trained
    networks put most pixels within 1e-4 of 0 or 1, where equal steps of
    ``p`` would lump them together (an error of 1e-2 for a confident model in
    our tests) while 2^16 log-odds bins stayed within 2e-5 of the exact AUC
    for confident and for spread-out probabilities alike. The
    range is lopsided because floats resolve ``p`` near 0 far more finely
    than near 1. Binary predictions fall into the two end bins: exact.
    """

    def __init__(self, n_classes: int = 2, *, threshold: float = 0.5, bins: int = 2**16):
        if not isinstance(n_classes, int) or isinstance(n_classes, bool) or n_classes < 2:
            raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
        if not isinstance(bins, int) or bins < 1:
            raise ValueError(f"bins must be a positive integer, got {bins!r}")
        self.n_classes = n_classes
        self.threshold = float(threshold)
        self.bins = bins
        self.per_image: list[dict[str, Any]] = []
        # counts[c] = (tp, fp, tn, fn) of class c against the rest
        self._counts = np.zeros((n_classes, 4), dtype=np.int64)
        # histograms[c, 0] of positive pixels' scores, histograms[c, 1] of negatives'
        self._histograms = np.zeros((n_classes, 2, bins), dtype=np.int64)

    def _classes(self, prob_or_pred: Any, truth: Any) -> tuple[list, tuple[int, ...]]:
        """[(class index, prediction, scores, truth)] to evaluate, and the image shape.

        A binary image is evaluated as class 1 only: its background metrics
        (for mIoU) follow from the same counts.
        """
        if self.n_classes == 2:
            prediction, scores = _as_prediction(prob_or_pred, self.threshold)
            positive = _as_mask("truth", truth, prediction.shape)
            return [(1, prediction, scores, positive)], prediction.shape
        array = np.asarray(prob_or_pred)
        if array.ndim == np.ndim(truth) + 1:
            if array.shape[0] != self.n_classes:
                raise ValueError(
                    f"class probabilities must have {self.n_classes} channels, got {array.shape}"
                )
            probs = array.astype(np.float64)
            labels = probs.argmax(axis=0)
        else:
            labels = _check_labels("prob_or_pred", array, self.n_classes)
            probs = None
        truth = _check_labels("truth", truth, self.n_classes)
        if truth.shape != labels.shape:
            raise ValueError(f"truth shape {truth.shape} differs from prediction {labels.shape}")
        classes = []
        for c in range(self.n_classes):
            prediction = labels == c
            scores = probs[c] if probs is not None else prediction.astype(np.float64)
            classes.append((c, prediction, scores, truth == c))
        return classes, labels.shape

    def add(
        self, name: str, prob_or_pred: Any, truth: Any, roi: Any | None = None
    ) -> dict[str, Any]:
        """Evaluate one image, remember it, and return its metrics."""
        classes, shape = self._classes(prob_or_pred, truth)
        roi = None if roi is None else _as_mask("roi", roi, shape)
        per_class = []
        for c, prediction, scores, positive in classes:
            metrics = _binary(prediction, scores, positive, roi)
            per_class.append(metrics)
            self._counts[c] += [metrics[k] for k in COUNTS]
            if roi is not None:
                scores, positive = scores[roi], positive[roi]
            index = log_odds_bin(scores, self.bins)
            self._histograms[c, 0] += np.bincount(index[positive], minlength=self.bins)
            self._histograms[c, 1] += np.bincount(index[~positive], minlength=self.bins)
        if self.n_classes == 2:
            metrics = per_class[0]
        else:
            metrics = {
                **_summarise_classes(per_class),
                "dice_per_class": [m["dice"] for m in per_class],
            }
        self.per_image.append({"name": str(name), **metrics})
        return metrics

    def pooled(self) -> dict[str, float]:
        """Metrics of the data set as one image (summed counts, histogram AUC)."""
        per_class = []
        for c in range(self.n_classes):
            tp, fp, tn, fn = (int(v) for v in self._counts[c])
            metrics: dict[str, Any] = scores_from_counts(tp, fp, tn, fn)
            metrics["auc"] = histogram_auc(*self._histograms[c])
            per_class.append({**metrics, "tp": tp, "fp": fp, "tn": tn, "fn": fn})
        summary = per_class[1] if self.n_classes == 2 else _summarise_classes(per_class)
        pooled = {name: summary[name] for name in METRICS}
        if self.n_classes > 2:
            pooled["dice_per_class"] = [m["dice"] for m in per_class]
        return pooled

    def summary(self) -> dict[str, Any]:
        """``{"n_images", "mean", "pooled", "per_image"}`` (see the module docstring).

        With more than two classes, ``dice`` is the mean over the foreground
        classes and every row also has ``dice_per_class`` (background first).
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = {name: _nanmean([m[name] for m in self.per_image]) for name in METRICS}
            if self.n_classes > 2:
                mean["dice_per_class"] = [
                    _nanmean([m["dice_per_class"][c] for m in self.per_image])
                    for c in range(self.n_classes)
                ]
        return {
            "n_images": len(self.per_image),
            "mean": mean,
            "pooled": self.pooled(),
            "per_image": [dict(m) for m in self.per_image],
        }


def format_table(
    summary: dict[str, Any], *, digits: int = 4, columns: Sequence[str] = METRICS
) -> str:
    """A fixed-width text table of ``columns``: one row per image, then the mean and pooled
    rows. Missing or NaN values show as ``-``, integers (counts) as integers."""
    rows = [(str(m.get("name", i)), m) for i, m in enumerate(summary.get("per_image", []))]
    footer = [(label, summary[label]) for label in ("mean", "pooled") if label in summary]
    width = max([len(name) for name, _ in rows + footer] + [5])
    column = max(max(len(name) for name in columns), digits + 3)

    def cell(value: Any) -> str:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            text = str(int(value))
        elif value is None or math.isnan(value):
            text = "-"
        else:
            text = f"{value:.{digits}f}"
        return f"{text:>{column}}"

    def line(name: str, values: dict[str, Any]) -> str:
        return f"{name:<{width}}  " + " ".join(cell(values.get(c)) for c in columns)

    header = f"{'image':<{width}}  " + " ".join(f"{c:>{column}}" for c in columns)
    rule = "-" * len(header)
    lines = [header, rule, *(line(name, m) for name, m in rows)]
    if footer:
        lines += [rule, *(line(name, m) for name, m in footer)]
    lines.append(f"({summary.get('n_images', len(rows))} images)")
    return "\n".join(lines)


__all__ = [
    "COUNTS",
    "LOG_ODDS_RANGE",
    "METRICS",
    "MetricAccumulator",
    "binary_metrics",
    "format_table",
    "histogram_auc",
    "log_odds_bin",
    "multiclass_metrics",
    "roc_auc",
    "scores_from_counts",
]
