"""The live service's pipeline: FITS file → magnetogram → frame step → store → sinks.

Each file waiting in the inbox is read and brought to the model's instrument
(:func:`ingest.magnetogram.read_frame`); a file that cannot be, moves to
``rejected/`` with the reason. The frame then competes for its slot on the
96-min clock: **slot selection** keeps, of all good frames of a slot, the one
observed closest to the slot's time (HMI delivers eight per slot). A frame
waits in ``pending/`` while a closer one may still come; a closer arrival
replaces it, and a frame that cannot beat the slot's current or scored frame
moves to ``superseded/``, counted apart from rejections. A pending frame is
scored once it is within ``slot_ready_offset`` of its slot's time, once a
frame of a later slot has arrived, or once the slot's window (± half a
cadence) has passed by the wall clock when the caller gives one. Scoring
turns it into a :class:`~serving.results.FrameResult` by the frame step on a
snapshot of the store's state (:meth:`~serving.store.Store.snapshot`), commits
it with its outbox messages in one transaction, hands it to the alert log and
the metrics, and moves the file to ``processed/``. A slot is scored once: a
better frame arriving after that is superseded (the alerts already published
stand). One frame is processed at a time, under :attr:`Service.lock`;
``pending/`` is re-read on start, so a restart loses no waiting frame.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u

from common.clock import CADENCE, slot_isot, slot_of_time, slot_time
from common.config import ServiceConfig
from ingest.errors import IngestError, QualityError
from ingest.instruments import instrument_named
from ingest.magnetogram import Magnetogram
from serving import retention
from serving.bundle import ModelBundle
from serving.diskview import DiskViews
from serving.faults import fault_point
from serving.inbox import Inbox
from serving.jsoc import SourceState
from serving.metrics import Metrics
from serving.reader import FrameReader
from serving.runner import FrameRunner
from serving.sinks import Sink, outbox_messages
from serving.step import FrameStep
from serving.store import Store
from serving.warm import WarmStart

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """A slot's best frame so far: its file (in ``pending/``), the frame, its distance from the slot's time (s),
    when it arrived (Unix s) and how long reading it took (s)."""

    path: Path
    mag: Magnetogram
    offset_s: float
    arrived: float
    read_s: float


class Service:
    """The emergence-detection pipeline over ``config.data_dir``, of the parts :func:`serving.compose.open_service`
    builds: the bundle, the frame step, the store (the state keeper), the inbox, the sinks a committed frame feeds,
    the metrics and the live page's views of the frames."""

    def __init__(self, config: ServiceConfig, bundle: ModelBundle, step: FrameStep, store: Store, inbox: Inbox,
                 reader: FrameReader, sinks: list[Sink], metrics: Metrics, views: DiskViews):
        self.config, self.bundle, self.step, self.store, self.inbox, self.reader, self.sinks, self.metrics, self.views = \
            config, bundle, step, store, inbox, reader, sinks, metrics, views
        self.dir = Path(config.data_dir)
        self.voevent_dir = self.dir / config.voevent_dir if config.voevent_dir else None
        self.grid = step.grid
        self.runner = FrameRunner(step, store, lambda result: outbox_messages(result, config.topics))
        self.lock = threading.Lock()
        self.ready_offset_s = config.slot_ready_offset.to_value(u.s)
        #: Each waiting slot's best frame so far, by slot.
        self.pending: dict[int, Candidate] = {}
        #: The live source's state (:class:`serving.jsoc.SourceState`), when there is one; shown by ``/ready``.
        self.source_state: SourceState | None = None
        #: The warm start's progress (:mod:`serving.warm`), run by the app before the first live frame (off unless the
        #: app has a source with an archive); shown by ``/ready``.
        self.warm_start = WarmStart("off")

    def resume(self) -> Service:
        """Take again the frames that were waiting when the service stopped (``pending/``); returns the service."""
        for path in self.inbox.held():
            self.take(path)
        self.refresh_gauges()
        return self

    def warm(self) -> int:
        """Rebuild the scoring state of every open passage (see :meth:`FrameStep.warm`); returns passages."""
        with self.lock:
            newest = self.store.newest_frame()
            return self.step.warm(self.store.snapshot(0 if newest is None else newest[0] + 1))

    def run_cycle(self, now: float | None = None) -> int:
        """Take every file waiting in the inbox, oldest name first, and score the slots that are ready; returns
        frames scored. ``now`` (Unix seconds) lets slots whose window has passed be scored without a later frame:
        the scheduler passes the wall clock in real-time operation."""
        self.reader.start(self.inbox.waiting())  # before the lock: read while the frame before is scored
        with self.lock:
            for path in self.inbox.waiting():
                self.take(path)
            self.reader.forget(set(self.inbox.waiting()))  # reads of files a cycle before this one took
            done = self.flush(now)
            retention.apply(self.config, self.store, self.views, self.dir, time.time())
            self.refresh_gauges()
        return done

    def take(self, path: Path) -> None:
        """Read one file (:attr:`reader`) and make it its slot's candidate, supersede it, or reject it; call under
        :attr:`lock`."""
        try:
            mag, read_s = self.reader.read(path)
        except QualityError as exc:
            for bit in exc.bits:
                self.metrics.frame_quality_bits.labels(exc.instrument, bit, "refused").inc()
            self._reject(path, exc, str(exc))
            return
        except IngestError as exc:
            self._reject(path, exc, str(exc))
            return
        origin = mag.origin
        if origin.quality:
            for bit in instrument_named(origin.instrument).flags(origin.quality):
                self.metrics.frame_quality_bits.labels(origin.instrument, bit, "recorded").inc()
        fault_point("read")
        self._candidate(path, mag, read_s)

    def _candidate(self, path: Path, mag: Magnetogram, read_s: float) -> None:
        slot = int(slot_of_time(mag.time))
        offset = abs((mag.time - slot_time(slot)).to_value(u.s))
        if path.parent == self.inbox.pending and self.store.frame_source(slot) == path.name:
            self.inbox.done(path)  # stored, but the service stopped before filing it in processed/
            return
        if self.store.has_frame(slot):
            self._supersede(path, f"slot {slot} ({slot_isot(slot)}) was already scored")
            return
        current = self.pending.get(slot)
        if current is not None and current.offset_s <= offset:
            self._supersede(path, f"slot {slot} has {current.path.name}, {current.offset_s:.0f} s from its time "
                                  f"(this one: {offset:.0f} s)")
            return
        if current is not None:
            self._supersede(current.path, f"replaced by {path.name}, {offset:.0f} s from the slot's time "
                                          f"(this one: {current.offset_s:.0f} s)")
        arrived = path.stat().st_mtime
        held = path if path.parent == self.inbox.pending else self.inbox.hold(path)
        self.pending[slot] = Candidate(held, mag, offset, arrived, read_s)

    def flush(self, now: float | None = None) -> int:
        """Score the pending slots that are ready, oldest first; returns frames scored. Call under :attr:`lock`."""
        newest = max([*self.pending, (self.store.newest_frame() or (-1,))[0]])
        half = CADENCE.to_value(u.s) / 2
        done = 0
        for slot in sorted(self.pending):
            c = self.pending[slot]
            window_passed = now is not None and now > slot_time(slot).unix + half
            if c.offset_s <= self.ready_offset_s or slot < newest or window_passed:
                try:
                    done += self._score(c)
                except (OSError, sqlite3.OperationalError) as exc:  # a full disk: nothing of the frame was stored
                    log.error("could not store %s (%s): it stays in pending/ and is retried at the next cycle",
                              c.path.name, exc)
                    break  # the later slots wait too, so that frames are still stored in slot order
                del self.pending[slot]
        return done

    def _score(self, c: Candidate) -> int:
        t0 = time.perf_counter()
        result = self.runner.run(c.mag, c.path.name)
        fault_point("commit")
        self.metrics.ingest_latency.observe(c.read_s + time.perf_counter() - t0 - result.scoring_seconds)
        for sink in self.sinks:
            try:
                sink.consume(result)
            except OSError as exc:  # the frame is stored: a sink that cannot write does not undo it
                log.error("stored %s, but the %s could not take it: %s", c.path.name, type(sink).__name__, exc)
        try:  # after the sinks: the alerts do not wait for the picture
            self.views.write(c.mag, c.path.name)
        except OSError as exc:
            log.error("stored %s, but could not write its view: %s", c.path.name, exc)
        fault_point("done")
        self.inbox.done(c.path)
        now = time.time()
        self.metrics.frame_to_publish.observe(max(0.0, now - c.arrived))
        if self.config.source != "synthetic":  # the synthetic feed replays the past: its age says nothing
            self.metrics.observation_to_publish.observe(max(0.0, now - c.mag.time.unix))
        return 1

    def close(self) -> None:
        """Stop the reader's processes."""
        self.reader.close()

    def _supersede(self, path: Path, message: str) -> None:
        log.info("superseded %s: %s", path.name, message)
        self.metrics.frames_superseded.inc()
        self.inbox.supersede(path, message)

    def _reject(self, path: Path, cause: Exception | str, message: str) -> None:
        """Count the rejection (by the cause's reason) and move the file to ``rejected/`` with its error."""
        log.warning("rejected %s: %s", path.name, message)
        self.metrics.reject(cause)
        self.inbox.reject(path, message)

    def refresh_gauges(self) -> None:
        self.metrics.active_patches.set(len(self.store.open_passages()))
        self.metrics.open_alerts.set(self.store.open_alert_count())
        self.metrics.outbox_depth.set(self.store.outbox.depth())
        newest = self.store.newest_frame()
        if newest:
            self.metrics.set_newest_frame_time(newest[2])
        retention.measure(self.metrics, self.dir, self.voevent_dir)
