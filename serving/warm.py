"""The warm start: before going live, the recent past of every passage on the disk, from the source's archive.

A service started on a live source would otherwise be blind to every region
already on the disk and to any emergence it did not see begin. So, before
its first live frame, the frames of the last video length (``n_frames``
slots, 15 days) that the state does not hold yet are fetched from the
source's archive (the synthetic Sun's past; the JSOC series at 96-min
cadence) and ingested in slot order through the same pipeline, as a service
that had been running all along would have ingested them: the alerts they
raise are published like any other, with their frame times. The same fills
the gap after a service was stopped. Where the archive has no frame, the
passage's history stays missing and ``present_at_start`` applies.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from common.clock import slot_isot
from serving.bundle import ModelBundle
from serving.metrics import Metrics
from serving.store import Store

log = logging.getLogger(__name__)

#: History frames taken from ``incoming/`` at a time (bounds the frames held in memory while they wait).
BATCH = 15


@dataclass
class WarmStart:
    """The warm start's progress, shown by ``/ready`` and the metrics.

    ``state``: pending (not begun), warming, done, failed (the archive could not be read: the service goes live
    without the rest, ``error`` says why), or off (the source has no archive, or the setting is off); slots
    [first_slot, end_slot) are filled; ``frames`` delivered so far; ``seconds`` taken.
    """

    state: Literal["pending", "warming", "done", "failed", "off"] = "pending"
    first_slot: int | None = None
    end_slot: int | None = None
    frames: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "off")

    def as_dict(self) -> dict:
        """For ``/ready``: the state, the UTC times filled from and to, frames and seconds."""
        return {"state": self.state, "frames": self.frames, "seconds": round(self.seconds, 1), "error": self.error,
                **{key: None if slot is None else slot_isot(slot) for key, slot in (("from", self.first_slot),
                                                                                    ("to", self.end_slot))}}


class Ingesting(Protocol):
    """What the warm start drives: a service's state, bundle, metrics and its cycle over ``incoming/``."""

    store: Store
    bundle: ModelBundle
    metrics: Metrics

    def run_cycle(self, now: float | None = None) -> int: ...


def warm_start(service: Ingesting, history: Callable[[int, int], Iterable[Path]], end: int, status: WarmStart) -> None:
    """Fill slots [end − n_frames, end) that the state lacks from ``history(first, end)`` (files delivered into
    ``incoming/`` in slot order), and ingest them; ``status`` follows its progress."""
    newest = service.store.newest_frame()
    first = end - service.bundle.n_frames if newest is None else max(end - service.bundle.n_frames, newest[0] + 1)
    status.first_slot, status.end_slot = first, end
    if first >= end:
        status.state = "done"
        return
    status.state = "warming"
    log.info("warm start: filling %d slots from %s on from the source's archive", end - first, slot_isot(first))
    t0 = time.perf_counter()
    try:
        for status.frames, _ in enumerate(history(first, end), 1):
            service.metrics.warm_start_frames.set(status.frames)
            if status.frames % BATCH == 0:
                service.run_cycle()
    except Exception as exc:  # the archive is out of reach: going live matters more than the past
        status.state, status.error = "failed", f"{type(exc).__name__}: {exc}"
        log.warning("warm start: the archive failed after %d frames (%s); going live without the rest",
                    status.frames, status.error)
    service.run_cycle()
    status.seconds = time.perf_counter() - t0
    service.metrics.warm_start_seconds.set(status.seconds)
    if status.state == "warming":
        status.state = "done"
    log.info("warm start: %d frames in %.0f s; live from %s", status.frames, status.seconds, slot_isot(end))
