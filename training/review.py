"""Reviewers: who answers "is this video an emergence?" when the model and the label disagree.

The relabel loop only shows a reviewer the videos it has not seen before.
Two reviewers share one interface:

- :class:`OracleReviewer` answers from the synthetic truth and counts every
  look, so we can measure the human effort the paper could only estimate.
- :class:`TerminalReviewer` is for a person: for each video it writes a
  montage PNG (every 5th frame), prints its path with the current label and
  the model's probability, and reads the answer from the terminal.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Protocol

import numpy as np

from common.figures import video_montage
from ingest.dataset import DatasetStore


class Reviewer(Protocol):
    name: str

    def review(self, store: DatasetStore, video_ids: np.ndarray, labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        """The reviewer's label (0/1) for each video id, given its current label and model probability."""


class OracleReviewer:
    """Answers with the synthetic truth (``true_class``); ``looks`` counts the videos it was shown."""

    name = "oracle"

    def __init__(self):
        self.looks = 0

    def review(self, store, video_ids, labels, probabilities):
        self.looks += len(video_ids)
        truth = store.catalog.set_index("video_id").true_class
        return truth.loc[np.asarray(video_ids, dtype=int)].to_numpy().astype(int)


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
