"""Where a committed frame result goes: the Kafka outbox, the JSON-lines alert log, the metrics.

The outbox messages are written by the store in the frame's own transaction
(:meth:`serving.store.Store.commit`), so an event is never lost between
deciding it and publishing it; the publisher (:mod:`serving.publisher`)
drains them to Kafka. The log and the metrics consume the result after it
committed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

from serving.faults import fault_point
from serving.metrics import Metrics
from serving.step import FrameResult
from serving.store import Message


class Sink(Protocol):
    """Takes a committed frame result."""

    def consume(self, result: FrameResult) -> None: ...


def outbox_messages(result: FrameResult, alerts_topic: str, status_topic: str) -> list[Message]:
    """The result's alert events (key: patch id) and patch statuses (compacted topic, key: patch id)."""
    events = [Message(alerts_topic, e.patch_id, e.event_id, e.payload()) for e in result.events]
    statuses = [Message(status_topic, s.patch.id, f"{s.patch.id}@{result.slot}", s.payload())
                for s in result.statuses]
    return events + statuses


class AlertLog:
    """The local JSON-lines log of alert events (one sorted-key JSON object per line)."""

    def __init__(self, path: Path):
        self.path = path

    def consume(self, result: FrameResult) -> None:
        if result.events:
            with self.path.open("a") as f:
                for event in result.events:
                    f.write(json.dumps(event.payload(), sort_keys=True) + "\n")
            fault_point("alert-log")


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
