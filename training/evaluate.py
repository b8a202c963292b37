"""The detection threshold, accuracies and onset errors (paper, Figs. 4–6).

The ensemble rules themselves (percentiles over members, stability, detection)
are :mod:`common.ensemble`, which serving applies too.
"""
from __future__ import annotations

import numpy as np

from common.ensemble import detects


def precision_recall(scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray):
    """Precision and recall of ``scores > t`` against ``labels`` for each threshold t."""
    labels = np.asarray(labels).astype(bool)
    pred = scores[None, :] > thresholds[:, None]
    tp = (pred & labels).sum(axis=1)
    fp = (pred & ~labels).sum(axis=1)
    fn = (~pred & labels).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 1.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 1.0)
    return precision, recall


def pr_crossing_threshold(scores: np.ndarray, labels: np.ndarray, step: float = 0.01):
    """The threshold where the precision and recall curves cross (the paper found 0.6).

    Recall falls and precision (mostly) rises with the threshold; the
    crossing is the threshold minimising |precision − recall|, the lowest
    one on ties. Returns ``(threshold, thresholds, precision, recall)``.
    """
    thresholds = np.round(np.arange(step, 1.0, step), 6)
    precision, recall = precision_recall(scores, labels, thresholds)
    k = int(np.argmin(np.abs(precision - recall)))
    return float(thresholds[k]), thresholds, precision, recall


def accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """Fraction of ``labels`` (0/1) matched by :func:`common.ensemble.detects` of ``scores`` at ``threshold``."""
    return float((detects(scores, threshold).astype(int) == np.asarray(labels)).mean())


def onset_error_days(estimated: np.ndarray, true: np.ndarray, cadence_min: float) -> dict[str, float]:
    """Percentiles (5, 25, 50, 75, 95) of estimated − true onset, days (positive = late)."""
    err = (np.asarray(estimated, float) - np.asarray(true, float)) * cadence_min / 1440.0
    if err.size == 0:
        return {f"p{q}": float("nan") for q in (5, 25, 50, 75, 95)}
    return {f"p{q}": float(v) for q, v in zip((5, 25, 50, 75, 95), np.percentile(err, [5, 25, 50, 75, 95]))}
