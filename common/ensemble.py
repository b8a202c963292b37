"""How an ensemble's member probabilities become one decision: the rules training and serving share.

The ensemble's probability is the median over members; the 25th and 75th
percentiles measure their spread. A classification is *stable* when the
threshold lies outside that 25th–75th range (the paper, "Results"). The
onset is the median over members of each member's masking-curve onset
(:mod:`common.onset`).
"""
from __future__ import annotations

import numpy as np


def percentiles(probabilities) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p25, median, p75) over members of ``probabilities`` (n_members, ...): each of shape (...)."""
    p25, median, p75 = np.percentile(np.asarray(probabilities, dtype=np.float64), [25, 50, 75], axis=0)
    return p25, median, p75


def is_stable(p25, p75, threshold: float) -> np.ndarray:
    """True where the classification is stable: ``threshold`` lies outside [p25, p75]."""
    return ~((np.asarray(p25) <= threshold) & (threshold <= np.asarray(p75)))


def detects(median, threshold: float) -> np.ndarray:
    """True where the ensemble median calls an emergence: strictly above ``threshold`` (as the threshold was chosen)."""
    return np.asarray(median) > threshold
