"""What the frame step reads and what it hands on: the state snapshot before a frame and the frame's result.

The step (:mod:`serving.step`) is a function of (frame, :class:`StepState`) → :class:`FrameResult`. Whoever keeps
the state (the live service's :class:`serving.store.Store`, a backfill chunk's store) reads the snapshot in one
call before the step runs and writes the result in one transaction after it; the sinks and the publisher take
the result as it is. This module names neither side.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from common.video import fill_gaps
from contract.events import AlertEvent, AlertStatus, PatchStatus, Provenance, Score
from serving.alerts import AlertState, passage_label

Key = tuple[str, int]  # (patch id, passage start slot)


@dataclass(frozen=True)
class FrameStamp:
    """What every score and event of one frame shares: its provenance, whether it is simulated, and when the
    service decided its events (ISO UTC)."""

    provenance: Provenance
    simulated: bool
    published: str


@dataclass(frozen=True)
class ScoreRecord:
    """A patch passage's score at one frame, with every member's probability (the masking curves' new point)."""

    key: Key
    members: list[float]
    score: Score


@dataclass
class FrameResult:
    """What one frame changes; committed atomically by its state's keeper."""

    slot: int
    time: str  # observation time, ISO UTC
    source: str  # the file's name
    latest: bool  # newer than every frame before it (else a late frame: filed, not scored)
    opened: list[Key] = field(default_factory=list)
    closed: list[Key] = field(default_factory=list)
    video_frames: list[tuple[Key, int, np.ndarray]] = field(default_factory=list)  # (passage, frame index, (P, P) G)
    scores: list[ScoreRecord] = field(default_factory=list)
    alert_states: dict[Key, AlertState] = field(default_factory=dict)
    events: list[AlertEvent] = field(default_factory=list)
    statuses: list[PatchStatus] = field(default_factory=list)
    projection_seconds: float = 0.0  # projecting the frame onto the passages' patches
    scoring_seconds: float = 0.0  # the ensemble's streams
    state_seconds: float = 0.0  # the state keeper's snapshot before the step and commit after it
    _json: dict[str, str] = field(default_factory=dict, repr=False)

    def event_json(self, event: AlertEvent) -> str:
        """An event of this frame as published (sorted-key JSON), serialised once: the alerts table, the outbox,
        the alert log and Kafka take the same text."""
        text = self._json.get(event.event_id)
        if text is None:
            text = self._json[event.event_id] = event.payload_json()
        return text


@dataclass
class PassageState:
    """One open passage as the step finds it before a frame.

    video : (n_frames, pixels, pixels) float32, G; frames not observed are 0 G (read only).
    frames : (k,) the frames scored so far.
    curves : (n_members, k) each member's probability at those frames: the masking curves.
    """

    video: np.ndarray
    frames: np.ndarray
    curves: np.ndarray
    alert: AlertState
    latest_json: str | None  # the score of its last scored frame, as stored (parsed when a closing needs it)

    @property
    def latest(self) -> Score | None:
        """The score of its last scored frame (None before its first)."""
        return None if self.latest_json is None else Score.model_validate_json(self.latest_json)


@dataclass
class StepState:
    """Everything the frame step reads, taken in one snapshot before the frame of slot ``slot``.

    newest_slot : the newest slot ingested (None before the first frame).
    passages : {patch id: start slot} of every open passage.
    recorded : every passage recorded (open or closed) that may begin again at this slot: a passage closed early
        (full video) is not reopened.
    observed : (n,) sorted slots ingested before this frame, from the oldest open passage's start or the earliest
        start a passage opening now can have (:data:`common.passage.SEARCH_DAYS` back), whichever is earlier.
    open : the state of every open passage, by key.
    video_shape : (n_frames, pixels, pixels) of a passage's video.
    """

    slot: int
    newest_slot: int | None
    passages: dict[str, int]
    recorded: set[Key]
    observed: np.ndarray
    open: dict[Key, PassageState]
    video_shape: tuple[int, int, int]

    def video(self, key: Key) -> np.ndarray:
        """A passage's video (all 0 G for a passage this frame opens)."""
        state = self.open.get(key)
        return blank_video(self.video_shape) if state is None else state.video

    def alert(self, key: Key) -> AlertState:
        """A copy of a passage's alert state (idle for a passage this frame opens), for the step to advance."""
        state = self.open.get(key)
        return AlertState(key[0], passage_label(key[1])) if state is None else AlertState(**state.alert.to_dict())

    def open_alert_patches(self) -> set[str]:
        """Patches whose open passage has its alert open."""
        return {key[0] for key, p in self.open.items() if p.alert.status is AlertStatus.open}

    def frames(self, key: Key, lo: int, hi: int, now: np.ndarray | None = None) -> np.ndarray:
        """Frames [lo, hi) of a passage's video, gaps filled (:func:`filled_frames`); ``now``: frame hi − 1, the
        one the step is ingesting (not in the snapshot yet)."""
        return filled_frames(self.video(key), key[1], lo, hi, self.observed, now)


def blank_video(shape: tuple[int, int, int]) -> np.ndarray:
    """A read-only all-0 G video of ``shape`` that takes no memory (a passage that has no frame yet)."""
    return np.broadcast_to(np.zeros(1, np.float32), shape)


def filled_frames(video: np.ndarray, start: int, lo: int, hi: int, observed_slots: np.ndarray,
                  now: np.ndarray | None = None) -> np.ndarray:
    """Frames [lo, hi) of the video of a passage that began at slot ``start``, copied, with the frames of slots
    not in ``observed_slots`` filled (:func:`common.video.fill_gaps`); (hi − lo, pixels, pixels) float32, G.

    ``now`` : (pixels, pixels) G, observed frame hi − 1 when the video does not hold it yet.
    """
    frames = np.array(video[lo:hi], dtype=np.float32)
    observed = np.isin(np.arange(start + lo, start + hi), observed_slots)
    if now is not None:
        frames[-1], observed[-1] = now, True
    return fill_gaps(frames, observed)
