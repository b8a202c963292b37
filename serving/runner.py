"""One frame through the pipeline, the same for the live service, the backfill and the replays: the keeper's
snapshot → the frame step → the keeper's commit.

The keeper holds the state between frames (:mod:`serving.keeper`: the SQLite :class:`serving.store.Store`, which
keeps the open passages' curves in memory and writes through, or the :class:`serving.keeper.MemoryKeeper`); the step
is pure (:mod:`serving.step`). What a committed result
feeds (sinks, files, a chunk's Parquet) is the caller's.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from common.clock import slot_of_time
from ingest.magnetogram import Magnetogram
from serving.keeper import Message, StateKeeper
from serving.results import FrameResult
from serving.step import FrameStep


def _no_messages(result: FrameResult) -> list[Message]:
    return []


@dataclass
class FrameRunner:
    """Runs frames through ``step`` on ``keeper``'s state; ``messages`` are a result's outbox messages, committed
    with it (none for the backfill)."""

    step: FrameStep
    keeper: StateKeeper
    messages: Callable[[FrameResult], list[Message]] = field(default=_no_messages)

    def run(self, mag: Magnetogram, source: str) -> FrameResult:
        """Score one frame (read from the file named ``source``) and commit what it changes; the result's
        ``state_seconds`` is the time the keeper took (snapshot and commit). If the commit fails, the step forgets
        the frame (its streams moved on, the state did not) and the error propagates."""
        t0 = time.perf_counter()
        state = self.keeper.snapshot(int(slot_of_time(mag.time)))
        t1 = time.perf_counter()
        result = self.step.execute(mag, source, state)
        t2 = time.perf_counter()
        try:
            self.keeper.commit(result, self.messages(result))
        except BaseException:
            self.step.forget(result)
            raise
        result.state_seconds = t1 - t0 + time.perf_counter() - t2
        return result
