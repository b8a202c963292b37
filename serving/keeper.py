"""What keeps the frame step's state between frames (a :class:`StateKeeper`): the protocol the frame runner
drives, the open passages' curves as a keeper holds them, and the keeper that holds everything in memory.

Two keepers: :class:`serving.store.Store` (SQLite and files: the live service, whose state must survive it) and
:class:`MemoryKeeper` (a backfill chunk, whose state lives as long as its task).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from common.clock import SLOTS_PER_DAY
from common.passage import SEARCH_DAYS
from serving.alerts import AlertState, passage_label
from serving.results import FrameResult, Key, PassageState, StepState, blank_video


@dataclass(frozen=True)
class Message:
    """One outbox message: a payload for a Kafka topic, keyed by patch id, deduplicated by event id."""

    topic: str
    key: str
    event_id: str
    payload: str  # the JSON text, as committed and as sent
    seq: int = 0  # assigned by the outbox


@dataclass
class Kept:
    """One open passage as the keeper holds it between frames: its alert state, the frames scored, each one's
    members' probabilities and its score as stored (JSON)."""

    alert: AlertState
    frames: list[int] = field(default_factory=list)
    members: list[list[float]] = field(default_factory=list)
    latest_json: str | None = None

    def add(self, frame: int, members: list[float], summary: str) -> None:
        """A frame's score (a frame scored again replaces its score, as the table's primary key does)."""
        if self.frames and frame <= self.frames[-1]:
            i = bisect.bisect_left(self.frames, frame)
            if i < len(self.frames) and self.frames[i] == frame:
                self.members[i] = members
            else:
                self.frames.insert(i, frame)
                self.members.insert(i, members)
            if frame == self.frames[-1]:
                self.latest_json = summary
            return
        self.frames.append(frame)
        self.members.append(members)
        self.latest_json = summary

    def passage(self, video: np.ndarray) -> PassageState:
        """What the step reads of this passage, with its ``video`` (n_frames, pixels, pixels) float32, G."""
        return PassageState(video=video, frames=np.array(self.frames, np.int64),
                            curves=np.array(self.members).T if self.members else np.zeros((0, 0)),
                            alert=self.alert, latest_json=self.latest_json)


def keep(kept: dict[Key, Kept], result: FrameResult, summaries: list[str]) -> None:
    """Write a committed frame's curves (its scores' JSON ``summaries``) and alert states through to ``kept``."""
    for key in result.opened:
        kept.setdefault(key, Kept(AlertState(key[0], passage_label(key[1]))))
    for record, summary in zip(result.scores, summaries):
        kept.setdefault(record.key, Kept(AlertState(record.key[0], passage_label(record.key[1])))).add(
            record.score.frame, record.members, summary)
    for key, state in result.alert_states.items():
        if key in kept:
            kept[key].alert = state
    for key in result.closed:
        kept.pop(key, None)


class StateKeeper(Protocol):
    """What keeps the frame step's state between frames."""

    def snapshot(self, slot: int) -> StepState: ...

    def commit(self, result: FrameResult, messages: list[Message]) -> None: ...


class MemoryKeeper:
    """The frame step's state in memory, for frames given in time order and no outbox: the open passages' videos
    (n_frames, pixels, pixels) float32, G, their curves and alert states, and the slots and passages the step asks
    about. What :class:`serving.store.Store` would hold for the same frames, without its files."""

    def __init__(self, n_frames: int, pixels: int):
        self.shape = (n_frames, pixels, pixels)
        self.newest: int | None = None
        self.passages: dict[str, int] = {}  # patch id → start slot of its open passage
        self.recorded: set[Key] = set()  # passages recorded, open or closed, that began SEARCH_DAYS before or later
        self.observed: list[int] = []  # slots committed, from the oldest a snapshot can ask for
        self.videos: dict[Key, np.ndarray] = {}
        self.kept: dict[Key, Kept] = {}

    def snapshot(self, slot: int) -> StepState:
        """The state before the frame of ``slot``, which must be after every frame committed."""
        if self.newest is not None and slot <= self.newest:
            raise ValueError(f"the memory keeper takes frames in time order: slot {slot} after slot {self.newest}")
        earliest = slot - SEARCH_DAYS * SLOTS_PER_DAY  # no passage open at slot began before (common.passage)
        self.recorded = {key for key in self.recorded if key[1] >= earliest}
        lo = min([*self.passages.values(), earliest])
        del self.observed[:bisect.bisect_left(self.observed, lo)]
        blank = blank_video(self.shape)
        return StepState(slot, self.newest, dict(self.passages), set(self.recorded), np.array(self.observed, np.int64),
                         {key: self.kept.get(key, Kept(AlertState(key[0], passage_label(key[1])))).passage(
                             self.videos.get(key, blank)) for key in self.passages.items()}, self.shape)

    def commit(self, result: FrameResult, messages: list[Message]) -> None:
        """Keep a frame's result (``messages`` must be empty: this keeper has no outbox)."""
        if messages:
            raise ValueError("the memory keeper has no outbox: a result with messages needs the SQLite store")
        for key, k, frame in result.video_frames:
            if key not in self.videos:
                self.videos[key] = np.zeros(self.shape, np.float32)
            self.videos[key][k] = frame
        for pid, start in result.opened:
            self.passages[pid] = start
            self.recorded.add((pid, start))
        for pid, start in result.closed:
            if self.passages.get(pid) == start:
                del self.passages[pid]
            self.videos.pop((pid, start), None)
        self.observed.append(result.slot)
        self.newest = result.slot
        keep(self.kept, result, [r.score.model_dump_json() for r in result.scores])
