"""How far the service's probabilities can be taken at their word: Brier score and reliability.

The service's score of a tile at frame n is meant as the probability that an
emergence has begun in the tile by frame n. Each scored frame of each passage
is one forecast; it verifies (y = 1) when a region of at least
``rule.min_flux_Mx`` that started emerging on the visible disk after the
passage began has its onset in the tile at or before that frame (the
footprint rule of :mod:`evaluation.matching`). Frames of a passage that
began with a region already on it verify as 0: that region is not an
emergence the service can see.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.clock import CADENCE_DAYS, slot_days
from common.figures import pyplot
from common.patches import PatchGrid
from evaluation.matching import Emergence, MatchRule, tiles_of
from evaluation.replay import Passage


@dataclass(frozen=True)
class Forecasts:
    """Every scored frame as a forecast: ensemble median ``p`` and outcome ``y`` (0/1), shape (n,)."""

    p: np.ndarray
    y: np.ndarray

    @property
    def brier(self) -> float:
        """Mean squared error of the probabilities (0 is perfect; always saying the base rate scores
        ``base_rate·(1−base_rate)``)."""
        return float(np.mean((self.p - self.y) ** 2))

    @property
    def base_rate(self) -> float:
        return float(self.y.mean())

    def reliability(self, bins: int = 10) -> list[tuple[float, float, int]]:
        """(mean forecast, observed frequency, forecasts) per probability bin of width 1/``bins`` (empty bins left out)."""
        which = np.minimum((self.p * bins).astype(int), bins - 1)
        return [(float(self.p[which == b].mean()), float(self.y[which == b].mean()), int((which == b).sum()))
                for b in range(bins) if (which == b).any()]


def forecasts(history: list[Passage], emergences: list[Emergence], grid: PatchGrid, rule: MatchRule = MatchRule()) -> Forecasts:
    """The forecasts of every scored frame in ``history`` against ``emergences`` (see the module docstring)."""
    onsets: dict[str, list[float]] = {}
    for e in emergences:
        if e.flux_Mx >= rule.min_flux_Mx and abs(e.cmd_deg) < 90.0:
            for pid in tiles_of(e, grid):
                onsets.setdefault(pid, []).append(e.onset_days)
    p, y = [], []
    for passage in history:
        start = float(slot_days(passage.start_slot))
        mine = np.array([t for t in onsets.get(passage.patch_id, []) if t >= start])
        for s in passage.scores:
            t = start + s.frame * CADENCE_DAYS
            p.append(s.probability.median)
            y.append(float(mine.size > 0 and mine.min() <= t))
    return Forecasts(np.array(p, dtype=np.float64), np.array(y, dtype=np.float64))


def plot_reliability(f: Forecasts, path: Path, title: str) -> Path:
    """The reliability diagram: observed frequency against forecast probability, with the forecasts per bin."""
    plt = pyplot()

    rel = f.reliability()
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfectly reliable")
    ax.plot([r[0] for r in rel], [r[1] for r in rel], marker="o", label=f"CNN ensemble median (Brier {f.brier:.3f})")
    ax.axhline(f.base_rate, color="grey", lw=0.8, ls=":", label=f"base rate {f.base_rate:.3f}")
    ax.set_ylabel("observed frequency of emergence by the frame")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    hist.bar([r[0] for r in rel], [r[2] for r in rel], width=0.08)
    hist.set_yscale("log")
    hist.set_xlabel("forecast probability (scored frames)")
    hist.set_ylabel("frames")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
