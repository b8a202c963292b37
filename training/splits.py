"""The paper's month-based splits (Fig. 2).

Data close in time share the same solar structures, so splits go by month
of the year, not at random: months 1–10 are training+validation, 11–12 test.

- Relabel models 1–5: model m validates on months {2m−1, 2m} and trains on
  the other months of 1–10.
- Uncertainty models 6–9: months 9–10 are a common benchmark; model 5+k
  validates on block k of {1,2}, {3,4}, {5,6}, {7,8} and trains on the other three.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TRAINVAL_MONTHS = tuple(range(1, 11))
TEST_MONTHS = (11, 12)
BENCHMARK_MONTHS = (9, 10)


@dataclass(frozen=True)
class Fold:
    """One model's months: ``model`` is the paper's model number (1–9)."""

    model: int
    train_months: tuple[int, ...]
    val_months: tuple[int, ...]

    def indices(self, months: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(train, validation) row indices for an array of months (1–12)."""
        months = np.asarray(months)
        return np.flatnonzero(np.isin(months, self.train_months)), np.flatnonzero(np.isin(months, self.val_months))


def relabel_folds() -> list[Fold]:
    """Models 1–5."""
    folds = []
    for m in range(1, 6):
        val = (2 * m - 1, 2 * m)
        folds.append(Fold(m, tuple(x for x in TRAINVAL_MONTHS if x not in val), val))
    return folds


def uncertainty_folds() -> list[Fold]:
    """Models 6–9 (months 9–10 held out as the benchmark)."""
    blocks = [(1, 2), (3, 4), (5, 6), (7, 8)]
    return [Fold(6 + k, tuple(x for b in blocks if b != val for x in b), val) for k, val in enumerate(blocks)]
