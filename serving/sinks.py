"""Where a committed frame result goes: the Kafka outbox, the JSON-lines alert log, the metrics.

The outbox messages are written by the store in the frame's own transaction
(:meth:`serving.store.Store.commit`), so an event is never lost between
deciding it and publishing it; the publisher (:mod:`serving.publisher`)
drains them to Kafka. The log and the metrics consume the result after it
committed.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from contract.events import AlertEvent
from serving.faults import fault_point
from serving.keeper import Message
from serving.metrics import Metrics
from serving.results import FrameResult


class Sink(Protocol):
    """Takes a committed frame result."""

    def consume(self, result: FrameResult) -> None: ...


def outbox_messages(result: FrameResult, topics: dict[bool, tuple[str, str]]) -> list[Message]:
    """The result's alert events (key: patch id) and patch statuses (compacted topic, key: patch id), on the
    topics ``topics[simulated]`` = (alerts topic, status topic) (:attr:`common.config.ServiceConfig.topics`)."""
    events = [Message(topics[e.simulated][0], e.patch_id, e.event_id, result.event_json(e)) for e in result.events]
    statuses = [Message(topics[s.simulated][1], s.patch.id, f"{s.patch.id}@{result.slot}",
                        s.payload_json()) for s in result.statuses]
    return events + statuses


class AlertLog:
    """The local JSON-lines log of alert events (one sorted-key JSON object per line)."""

    def __init__(self, path: Path):
        self.path = path

    def catch_up(self, events: Iterable[AlertEvent]) -> int:
        """Append the stored ``events`` the log lacks (the service stopped between a frame's commit and its log
        write); returns how many. Idempotent: an event already logged is not logged again."""
        text = self.path.read_text() if self.path.exists() else ""
        logged = set()
        for line in text.splitlines():
            try:
                logged.add(json.loads(line)["event_id"])
            except (ValueError, KeyError):  # a line cut short by a crash mid-write
                pass
        missing = [e for e in events if e.event_id not in logged]
        self._append([e.payload_json() for e in missing],
                     after_cut_line=bool(text) and not text.endswith("\n"))
        return len(missing)

    def consume(self, result: FrameResult) -> None:
        if result.events:
            self._append([result.event_json(e) for e in result.events])
            fault_point("alert-log")

    def _append(self, lines: list[str], after_cut_line: bool = False) -> None:
        """Append one sorted-key JSON line per event (on a new line when the last one was cut short)."""
        if lines:
            with self.path.open("a") as f:
                f.write("\n" if after_cut_line else "")
                f.writelines(line + "\n" for line in lines)


class MetricsSink:
    """Counts a committed frame, its scoring time and its events."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def consume(self, result: FrameResult) -> None:
        self.metrics.frames_ingested.inc()
        if result.scoring_seconds:
            self.metrics.scoring_latency.observe(result.scoring_seconds)
        for event in result.events:
            self.metrics.alerts_published.labels(event=event.event.value).inc()
