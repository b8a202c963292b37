"""Which videos a relabel pass shows the reviewer, in what order, and when it stops asking.

Both queues see the pass's out-of-fold probabilities ``p`` (n,), the current
labels (n,) and which videos a reviewer has already seen; both only ever
offer videos never reviewed before.

- :class:`PaperQueue` is the paper's: every new disagreement between model
  and label, all at once; the loop ends when R ≤ 0.5.
- :class:`RankedQueue` asks for fewer looks. A video is a candidate when
  the model disagrees with its label at the loop's threshold, or when
  confident learning (Northcutt, Jiang & Chuang 2021, JAIR 70, 1373) flags
  it: the probability of the other class reaches that class's own threshold
  (the mean probability of the class over the videos labelled with it).
  Candidates fall into strata (by default the crude label, and with
  ``strata`` from the catalog, e.g. catalog-centred region or disk tile,
  with it): the kinds of label mistake a crude rule makes differ, and so
  does how often a model–label disagreement is the label's fault. Within a
  stratum candidates go by confident learning's self-confidence, the
  out-of-fold probability of the *given* label, lowest first. The queue
  learns from the reviewer: the expected yield of a stratum (labels changed
  per look) is the mean of a Beta(1, 1) prior updated with this pass's looks
  at it and, weighed as at most ``memory`` looks, the earlier passes' (the
  models change from pass to pass, and so does what a look finds). Each batch of ``batch`` looks comes
  from the stratum with the highest expected yield; the pass stops when no
  stratum is expected to yield ``min_yield``. Each pass also shows
  ``agreement_looks`` videos drawn from the least confident *agreements*,
  where model and label may both be wrong: the paper's loop never sees
  those. The loop ends when a pass changes no label.
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


class Session:
    """One pass's review: :meth:`next_batch` gives rows to show (None when the pass is done), :meth:`record`
    takes which of them had their label changed. ``agreements`` are shown after the batches."""

    def __init__(self, batches: list[np.ndarray], agreements: np.ndarray):
        self._batches, self.agreements = list(batches), agreements

    def next_batch(self) -> np.ndarray | None:
        return self._batches.pop(0) if self._batches else None

    def record(self, rows: np.ndarray, changed: np.ndarray) -> None:
        """The paper's queue does not learn from answers."""


@dataclass(frozen=True)
class PaperQueue:
    """Every new disagreement, in one batch (the paper)."""

    name = "paper"

    def start(self, probabilities, labels, reviewed, threshold: float, seed: int, strata=None,
              history: dict | None = None) -> Session:
        disagree = (np.asarray(probabilities) > threshold).astype(int) != np.asarray(labels)
        rows = np.flatnonzero(disagree & ~np.asarray(reviewed))
        return Session([rows] if len(rows) else [], np.array([], dtype=np.int64))

    def loop_done(self, ratio: float, relabelled: int) -> bool:
        """The paper's rule, R ≤ 0.5; a pass that changed no label would be repeated exactly by the next one."""
        return ratio <= 0.5 or relabelled == 0


class RankedSession(Session):
    """Batches from the stratum of highest expected yield; ``history`` ({stratum: [looks, changes]}) is updated."""

    def __init__(self, by_stratum: dict[str, np.ndarray], row_stratum: dict[int, str], agreements: np.ndarray,
                 history: dict[str, list[int]], batch: int, min_yield: float, memory: int):
        super().__init__([], agreements)
        self.by_stratum, self.row_stratum, self.history = by_stratum, row_stratum, history
        self.batch, self.min_yield = batch, min_yield
        # earlier passes' (looks, changes) per stratum, scaled down to at most ``memory`` looks
        self.prior = {k: (looks, changes) if looks <= memory else (memory, changes * memory / looks)
                      for k, (looks, changes) in history.items()}
        self.current: dict[str, list[int]] = {}

    def expected_yield(self, stratum: str) -> float:
        """Posterior mean of a stratum's labels changed per look: Beta(1, 1) updated with this pass's looks and
        the earlier passes' (weighed as at most ``memory`` looks)."""
        prior_looks, prior_changes = self.prior.get(stratum, (0, 0))
        looks, changes = self.current.get(stratum, [0, 0])
        return (1 + prior_changes + changes) / (2 + prior_looks + looks)

    def next_batch(self) -> np.ndarray | None:
        open_strata = [k for k, rows in self.by_stratum.items() if len(rows)]
        if not open_strata:
            return None
        best = max(open_strata, key=self.expected_yield)
        if self.expected_yield(best) < self.min_yield:
            return None
        rows, self.by_stratum[best] = self.by_stratum[best][: self.batch], self.by_stratum[best][self.batch :]
        return rows

    def record(self, rows: np.ndarray, changed: np.ndarray) -> None:
        for row, change in zip(rows, changed):
            for tally in (self.history.setdefault(self.row_stratum[int(row)], [0, 0]),
                          self.current.setdefault(self.row_stratum[int(row)], [0, 0])):
                tally[0] += 1
                tally[1] += int(change)


@dataclass(frozen=True)
class RankedQueue:
    """Candidates by stratum and self-confidence, ``batch`` at a time from the stratum of highest expected yield,
    until no stratum is expected to yield ``min_yield``.

    Attributes
    ----------
    batch : looks between two decisions to go on.
    min_yield : expected labels changed per look below which a stratum is left (0.3: fewer than 3 in 10).
    agreement_looks : videos per pass drawn from the least confident agreements.
    agreement_pool : share of the never-reviewed agreements, lowest self-confidence first, they are drawn from.
    memory : the most looks the earlier passes of a stratum weigh in its expected yield.
    """

    batch: int = 5
    min_yield: float = 0.3
    agreement_looks: int = 5
    agreement_pool: float = 0.2
    memory: int = 10

    name = "ranked"

    def __post_init__(self):
        if (self.batch < 1 or not 0 <= self.min_yield <= 1 or self.agreement_looks < 0
                or not 0 < self.agreement_pool <= 1 or self.memory < 0):
            raise ValueError("need batch >= 1, min_yield in [0, 1], agreement_looks >= 0, agreement_pool in (0, 1], "
                             "memory >= 0")

    def start(self, probabilities, labels, reviewed, threshold: float, seed: int, strata=None,
              history: dict | None = None) -> RankedSession:
        """A pass over ``probabilities``/``labels``/``reviewed`` (n,); ``strata`` (n,) of str, or None; ``history``
        ({stratum: [looks, changes]} of earlier passes) is updated in place as answers come."""
        p, labels, fresh = np.asarray(probabilities), np.asarray(labels), ~np.asarray(reviewed)
        confidence = self_confidence(p, labels)
        disagree = (p > threshold).astype(int) != labels
        candidate = fresh & (disagree | flagged(p, labels))
        kinds = np.asarray(strata if strata is not None else [""] * len(labels), dtype=str)
        keys = np.char.add(np.char.add(kinds, "/label "), labels.astype(str))
        rows = np.flatnonzero(candidate)
        rows = rows[np.argsort(confidence[rows], kind="stable")]
        by_stratum = {k: rows[keys[rows] == k] for k in dict.fromkeys(keys[rows])}
        agree = np.flatnonzero(fresh & ~candidate)
        agree = agree[np.argsort(confidence[agree], kind="stable")][: int(np.ceil(self.agreement_pool * len(agree)))]
        take = min(self.agreement_looks, len(agree))
        picked = np.sort(np.random.default_rng(seed).choice(agree, take, replace=False)) if take else agree[:0]
        return RankedSession(by_stratum, {int(r): str(keys[r]) for r in range(len(keys))}, picked.astype(np.int64),
                             history if history is not None else {}, self.batch, self.min_yield, self.memory)

    def loop_done(self, ratio: float, relabelled: int) -> bool:
        return relabelled == 0


Queue = PaperQueue | RankedQueue
QUEUES: dict[str, type[Queue]] = {"paper": PaperQueue, "ranked": RankedQueue}
