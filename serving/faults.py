"""Fault injection for the reliability tests: a real ``kill -9`` at a named point of frame processing.

With the environment variable ``FLUXWATCH_FAULT`` set to ``<point>:<n>``, the
*n*-th time the process reaches ``fault_point("<point>")`` it sends itself
SIGKILL: no exception, no ``finally``, no flush, exactly what ``kill -9`` or
the OOM killer does. Unset (production), :func:`fault_point` is one
comparison. The variable is read once, at import; an unknown point name is
an error there, so a test cannot arm a point that does not exist.

The points, in the order a frame reaches them:

``read``
    a file was read into a magnetogram (:meth:`serving.service.Service.take`), before it is filed in ``pending/``.
``video``
    the frame's video frames are written and flushed, its SQLite transaction has not begun
    (:meth:`serving.store.Store.commit`).
``commit``
    the frame's transaction (state, alerts, outbox) committed; no sink has seen it (``Service._score``).
``alert-log``
    the frame's events are appended to ``alerts.jsonl`` (:class:`serving.sinks.AlertLog`); frames with events only.
``done``
    every sink has the frame; its file is not yet moved to ``processed/`` (``Service._score``).
``published``
    Kafka acknowledged a batch of outbox messages; the outbox does not yet mark them delivered
    (:class:`serving.publisher.KafkaPublisher`).
"""
from __future__ import annotations

import os
import signal
import threading

ENV = "FLUXWATCH_FAULT"
POINTS = ("read", "video", "commit", "alert-log", "done", "published")


def _armed(value: str | None) -> tuple[str, int] | None:
    """(point, n) of a ``<point>:<n>`` setting, None when unset or empty."""
    if not value:
        return None
    name, _, n = value.rpartition(":")
    if name not in POINTS or not n.isdigit() or int(n) < 1:
        raise ValueError(f"{ENV}={value!r}: expected <point>:<n> with n >= 1 and a point among {', '.join(POINTS)}")
    return name, int(n)


_ARMED = _armed(os.environ.get(ENV))
_reached = 0
_lock = threading.Lock()  # the scheduler, the watcher and the publisher reach points from their own threads


def fault_point(name: str) -> None:
    """Kill this process with SIGKILL if ``name`` is the armed point and this is its n-th arrival."""
    global _reached
    if _ARMED is None or _ARMED[0] != name:
        return
    with _lock:
        _reached += 1
        if _reached == _ARMED[1]:
            os.kill(os.getpid(), signal.SIGKILL)
