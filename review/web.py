"""The relabel loop's side of the desk: :class:`WebReviewer` puts a batch in the desk's queue and waits for its decisions."""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ingest.dataset import DatasetStore
from review.decisions import Decisions

#: The desk's queue of dataset videos (relabel-loop and test-set disagreements).
TRAINING_QUEUE = "training"


def video_key(video_id: int) -> str:
    """The desk's key of a dataset video: a video is reviewed at most once per run."""
    return f"video:{int(video_id)}"


class WebReviewer:
    """A :class:`training.review.Reviewer` whose answers come from people at the review desk.

    :meth:`review` enqueues the batch in ``decisions`` (the desk's database, e.g. ``runs/x/review/desk.sqlite``)
    in the order given, then polls every ``poll_s`` seconds until every video has a final decision, writing a
    progress line through ``progress`` every ``log_every_s`` seconds. Decisions persist: a rerun after a kill
    asks again only about videos still open. ``url`` (the desk's address) only goes into the progress lines.
    ``looks`` counts the videos this reviewer had to ask about (not those decided before it was called).
    """

    name = "web"

    def __init__(self, decisions: Decisions, url: str = "", poll_s: float = 1.0, log_every_s: float = 60.0,
                 progress: Callable[[str], None] = print):
        self.decisions, self.url = decisions, url
        self.poll_s, self.log_every_s, self.progress = poll_s, log_every_s, progress
        self.looks = 0

    def review(self, store: DatasetStore, video_ids: np.ndarray, labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        """The desk's final decision (int (n,), 1 = emergence) for each video id; blocks until all are in."""
        ids = np.asarray(video_ids, dtype=int)
        self.decisions.set_meta("store", str(store.path.resolve()))
        keys = [video_key(v) for v in ids]
        self.decisions.enqueue(TRAINING_QUEUE, [(k, {"video_id": int(v)}, int(lab), float(p))
                                                for k, v, lab, p in zip(keys, ids, labels, probabilities)])
        finals = self.decisions.finals(keys)
        self.looks += sum(f is None for f in finals.values())
        last_log = -np.inf
        while (open_count := sum(f is None for f in finals.values())) > 0:
            if time.monotonic() - last_log >= self.log_every_s:
                last_log = time.monotonic()
                where = f" at {self.url}" if self.url else ""
                self.progress(f"review desk{where}: waiting for {open_count} of {len(keys)} decisions")
            time.sleep(self.poll_s)
            finals = self.decisions.finals(keys)
        return np.array([finals[k] for k in keys], dtype=int)
