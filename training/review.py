"""Reviewers: who answers "is this video an emergence?" when the relabel loop asks.

The relabel loop only shows a reviewer the videos it has not seen before.
Reviewers share one interface (:class:`Reviewer`):

- :class:`OracleReviewer` answers from the synthetic truth and counts every
  look, so we can measure the human effort the paper could only estimate.
  Its figures are upper bounds: no person is never wrong.
- :class:`SimulatedReviewer` answers from the truth but errs at a set rate,
  more often near the limb and for weak regions, as a person would; the
  same (seed, video) always gets the same answer, so two loops compared on
  one store meet the same mistakes.
- :class:`TerminalReviewer` is for a person: for each video it writes a
  montage PNG (every 5th frame), prints its path with the current label and
  the model's probability, and reads the answer from the terminal.
  (``review.web.WebReviewer`` is the browser desk.)
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import astropy.units as u
import numpy as np
import pandas as pd
from astropy.time import Time
from sunpy.coordinates import sun

from common.figures import video_montage
from common.observer import central_meridian_distance
from ingest.dataset import DatasetStore


class Reviewer(Protocol):
    """Answers for a batch of videos. ``name`` identifies the reviewer in the loop's records (a resumed loop
    refuses another reviewer); ``looks`` counts every video it was shown."""

    name: str
    looks: int

    def review(self, store: DatasetStore, video_ids: np.ndarray, labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        """The reviewer's label (0/1, int (n,)) for each video id, given its current label and model probability."""


def _truth(store, video_ids) -> np.ndarray:
    truth = store.catalog.set_index("video_id").true_class
    return truth.loc[np.asarray(video_ids, dtype=int)].to_numpy().astype(int)


class OracleReviewer:
    """Answers with the synthetic truth (``true_class``); ``looks`` counts the videos it was shown."""

    name = "oracle"

    def __init__(self):
        self.looks = 0

    def review(self, store, video_ids, labels, probabilities):
        self.looks += len(video_ids)
        return _truth(store, video_ids)


@dataclass(frozen=True)
class ReviewerErrors:
    """How often a simulated reviewer answers wrongly: a probability per video, at most ``ceiling``.

    p = base + limb · clip((|CMD| − 45°) / 45°, 0, 1) + weak · clip(log10(3e21 Mx / Φ) / 1, 0, 1)

    |CMD| is the patch's distance from central meridian (deg) when the region
    emerged (at the true onset frame; mid-video for a video without one):
    foreshortening and limb noise hide a bipole near the limb. Φ is the
    region's final flux (Mx): below 3e21 Mx a bipole is hard to tell from
    ephemeral flux, and a region of 3e20 Mx gets the whole ``weak`` term.
    Defaults give 5% at disk centre for a strong region, up to 35% for a weak
    one near the limb. They are a judgement, not a measurement of human
    reviewers: set them from a desk's own inter-reviewer agreement when one is
    available.
    """

    base: float = 0.05
    limb: float = 0.15
    weak: float = 0.15
    ceiling: float = 0.5

    def probability(self, catalog: pd.DataFrame, cadence_min: float) -> np.ndarray:
        """Error probability per catalog row, float64 (len(catalog),)."""
        n_frames_mid = np.where(catalog.true_onset_frame.to_numpy() >= 0, catalog.true_onset_frame.to_numpy(), 112)
        when = Time(list(catalog.start_time)) + n_frames_mid * cadence_min * u.min
        cmd = np.abs(central_meridian_distance(catalog.lon.to_numpy(), sun.L0(when).to_value(u.deg)))
        flux = catalog.flux_Mx.to_numpy(dtype=float)
        weakness = np.where(np.isfinite(flux) & (flux > 0), np.log10(3e21 / np.where(flux > 0, flux, 1.0)), 0.0)
        p = self.base + self.limb * np.clip((cmd - 45.0) / 45.0, 0, 1) + self.weak * np.clip(weakness, 0, 1)
        return np.minimum(p, self.ceiling)


class SimulatedReviewer:
    """The truth, wrong with probability :meth:`ReviewerErrors.probability` per video, drawn from (seed, video id)."""

    def __init__(self, errors: ReviewerErrors = ReviewerErrors(), seed: int = 0):
        self.errors, self.seed = errors, int(seed)
        self.name = f"simulated(base={errors.base},limb={errors.limb},weak={errors.weak},seed={seed})"
        self.looks = 0
        self.mistakes = 0

    def review(self, store, video_ids, labels, probabilities):
        ids = np.asarray(video_ids, dtype=int)
        self.looks += len(ids)
        catalog = store.catalog.set_index("video_id").loc[ids].reset_index()
        p_error = self.errors.probability(catalog, store.attrs["video"]["cadence_min"])
        draws = np.array([np.random.default_rng([self.seed, int(i)]).uniform() for i in ids])
        wrong = draws < p_error
        self.mistakes += int(wrong.sum())
        truth = _truth(store, ids)
        return np.where(wrong, 1 - truth, truth)


class TerminalReviewer:
    """Shows each video as a montage PNG under ``folder`` and asks on the terminal."""

    name = "terminal"

    def __init__(self, folder: str | Path, stdin=None, stdout=None):
        self.folder = Path(folder)
        self.stdin, self.stdout = stdin or sys.stdin, stdout or sys.stdout
        self.looks = 0

    def review(self, store, video_ids, labels, probabilities):
        answers = []
        for k, (vid, label, prob) in enumerate(zip(video_ids, labels, probabilities), 1):
            png = video_montage([store.video(int(vid))], [f"video {vid}: label {label}, model p={prob:.2f}"],
                                self.folder / f"video_{int(vid):05d}.png")
            self.looks += 1
            while True:
                self.stdout.write(f"[{k}/{len(video_ids)}] {png}\n  current label {label} "
                                  f"({'emergence' if label else 'non-emergence'}), model probability {prob:.2f}\n"
                                  "  emergence? [y/n] ")
                self.stdout.flush()
                line = self.stdin.readline()
                if not line:
                    raise EOFError("reviewer input ended before all videos were reviewed")
                reply = line.strip().lower()
                if reply in ("y", "yes", "1", "n", "no", "0"):
                    answers.append(int(reply in ("y", "yes", "1")))
                    break
        return np.asarray(answers, dtype=int)
