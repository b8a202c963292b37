"""Which videos a relabel pass shows the reviewer, in what order, and when it stops asking.

Both queues see the pass's out-of-fold probabilities ``p`` (n,), the current
labels (n,) and which videos a reviewer has already seen; both only ever
offer videos never reviewed before.

- :class:`PaperQueue` is the paper's: every new disagreement between model
  and label, all at once; the loop ends when R ≤ 0.5.
- :class:`RankedQueue` asks for fewer looks. It ranks the never-reviewed
  videos by how likely their label is wrong, with confident learning's
  self-confidence (Northcutt, Jiang & Chuang 2021, JAIR 70, 1373): the
  out-of-fold probability of the *given* label, lowest first. A video is a
  candidate when the model disagrees with its label at the loop's threshold,
  or when confident learning flags it: the probability of the other class
  reaches that class's own threshold (the mean probability of the class over
  the videos labelled with it), which also catches labels the model only
  half-believes. The reviewer gets the candidates ``batch`` at a time; the
  pass stops once a batch's yield (labels changed per look, the estimate of
  what the next looks would find) falls below ``min_yield``. Each pass also
  shows ``agreement_looks`` videos drawn from the least confident
  *agreements*, where model and label may both be wrong: the paper's loop
  never sees those. The loop ends when a pass's first batch already yields
  less than ``min_yield``, or a pass changed no label.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def self_confidence(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The model's probability of each video's given label: p where the label is 1, 1 − p where it is 0 (n,)."""
    p = np.asarray(probabilities, dtype=np.float64)
    return np.where(np.asarray(labels) == 1, p, 1.0 - p)


def class_thresholds(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Confident learning's per-class thresholds t_j: the mean probability of class j over videos labelled j, (2,).

    A class no video carries gets threshold 1 (nothing is flagged into it).
    """
    p = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    t0 = float(np.mean(1.0 - p[labels == 0])) if (labels == 0).any() else 1.0
    t1 = float(np.mean(p[labels == 1])) if (labels == 1).any() else 1.0
    return np.array([t0, t1])


def flagged(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Confident learning's label issues, bool (n,): the other class's probability reaches its class threshold."""
    p = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    t = class_thresholds(p, labels)
    p_other = np.where(labels == 1, 1.0 - p, p)
    return p_other >= t[1 - labels]


@dataclass(frozen=True)
class Plan:
    """What one pass may show: ``batches`` of rows in review order, then ``agreements`` (rows, may be empty)."""

    batches: list[np.ndarray]
    agreements: np.ndarray


@dataclass(frozen=True)
class PaperQueue:
    """Every new disagreement, in one batch (the paper)."""

    name = "paper"

    def plan(self, probabilities, labels, reviewed, threshold: float, seed: int) -> Plan:
        disagree = (np.asarray(probabilities) > threshold).astype(int) != np.asarray(labels)
        rows = np.flatnonzero(disagree & ~np.asarray(reviewed))
        return Plan([rows] if len(rows) else [], np.array([], dtype=np.int64))

    def keep_asking(self, batch_yield: float) -> bool:
        return True

    def loop_done(self, ratio: float, relabelled: int, first_batch_yield: float) -> bool:
        """The paper's rule, R ≤ 0.5; a pass that changed no label would be repeated exactly by the next one."""
        return ratio <= 0.5 or relabelled == 0


@dataclass(frozen=True)
class RankedQueue:
    """Candidates by self-confidence, ``batch`` at a time, until a batch yields less than ``min_yield``.

    Attributes
    ----------
    batch : looks between two decisions to go on.
    min_yield : labels changed per look below which the pass stops (0.3: stop when fewer than 3 looks in 10 fix a label).
    agreement_looks : videos per pass drawn from the least confident agreements.
    agreement_pool : share of the never-reviewed agreements, lowest self-confidence first, they are drawn from.
    """

    batch: int = 10
    min_yield: float = 0.3
    agreement_looks: int = 5
    agreement_pool: float = 0.2

    name = "ranked"

    def __post_init__(self):
        if self.batch < 1 or not 0 <= self.min_yield <= 1 or self.agreement_looks < 0 or not 0 < self.agreement_pool <= 1:
            raise ValueError("need batch >= 1, min_yield in [0, 1], agreement_looks >= 0, agreement_pool in (0, 1]")

    def plan(self, probabilities, labels, reviewed, threshold: float, seed: int) -> Plan:
        p, labels, fresh = np.asarray(probabilities), np.asarray(labels), ~np.asarray(reviewed)
        confidence = self_confidence(p, labels)
        disagree = (p > threshold).astype(int) != labels
        candidate = fresh & (disagree | flagged(p, labels))
        rows = np.flatnonzero(candidate)
        rows = rows[np.argsort(confidence[rows], kind="stable")]
        batches = [rows[i : i + self.batch] for i in range(0, len(rows), self.batch)]
        agree = np.flatnonzero(fresh & ~candidate)
        agree = agree[np.argsort(confidence[agree], kind="stable")][: max(int(np.ceil(self.agreement_pool * len(agree))), 0)]
        take = min(self.agreement_looks, len(agree))
        picked = np.sort(np.random.default_rng(seed).choice(agree, take, replace=False)) if take else agree[:0]
        return Plan(batches, picked.astype(np.int64))

    def keep_asking(self, batch_yield: float) -> bool:
        return batch_yield >= self.min_yield

    def loop_done(self, ratio: float, relabelled: int, first_batch_yield: float) -> bool:
        return relabelled == 0 or first_batch_yield < self.min_yield


Queue = PaperQueue | RankedQueue
QUEUES: dict[str, type[Queue]] = {"paper": PaperQueue, "ranked": RankedQueue}
