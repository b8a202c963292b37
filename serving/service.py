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
from common.config import ConfigError, ServiceConfig
from ingest.errors import IngestError, QualityError
from ingest.instruments import INSTRUMENTS, MASK_NAMES, instrument_named, mask_name
from ingest.magnetogram import Magnetogram, read_frame
from serving import retention
from serving.bundle import ModelBundle
from serving.faults import fault_point
from serving.inbox import Inbox
from serving.jsoc import SourceState
from serving.metrics import Metrics
from serving.migrate import Upgrade, upgrade
from serving.runner import FrameRunner
from serving.sinks import AlertLog, MetricsSink, Sink, outbox_messages
from serving.step import frame_step
from serving.store import ALERT_LOG, Store
from serving.voevent import VOEventSink, author_of
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
    """The emergence-detection pipeline over ``config.data_dir``."""

    def __init__(self, config: ServiceConfig | None = None, metrics: Metrics | None = None):
        self.config = config = config or ServiceConfig()
        self.bundle = ModelBundle(config.bundle)
        if config.refused_quality_bits is not None:  # names no instrument knows are a mistake, said at start
            known = {name for i in INSTRUMENTS for name in i.quality_bits}
            unknown = sorted(set(config.refused_quality_bits) - known - MASK_NAMES)
            if unknown:
                raise ConfigError(f"refused_quality_bits: no instrument has a QUALITY bit {', '.join(unknown)}; known: "
                                  f"{', '.join(sorted(known))}, or an undocumented bit by its mask as 0x%08X (e.g. "
                                  f"{mask_name(0)})")
        self.dir = Path(config.data_dir)
        self.inbox = Inbox(self.dir)
        self.step = frame_step(self.bundle, config)
        self.grid = self.step.grid
        upgrade(Upgrade(self.dir, self.bundle, self.step.axes, config.topics))  # a state of an earlier version
        self.store = Store(self.dir, self.bundle.n_frames, self.bundle.pixels)
        self.runner = FrameRunner(self.step, self.store, lambda result: outbox_messages(result, config.topics))
        self.metrics = metrics or Metrics()
        self.metrics.set_model(self.bundle.model_version, self.bundle.scorers)
        files: list[AlertLog | VOEventSink] = [AlertLog(self.dir / ALERT_LOG)]
        self.voevent_dir = self.dir / config.voevent_dir if config.voevent_dir else None
        if self.voevent_dir:
            files.append(VOEventSink(self.voevent_dir, author_of(config)))
        stored = self.store.reader().alerts()
        for sink in files:  # events committed just before the service stopped, before their files were written
            sink.catch_up(stored)
        self.sinks: list[Sink] = [*files, MetricsSink(self.metrics)]
        self.lock = threading.Lock()
        self.ready_offset_s = config.slot_ready_offset.to_value(u.s)
        #: Each waiting slot's best frame so far, by slot.
        self.pending: dict[int, Candidate] = {}
        #: The live source's state (:class:`serving.jsoc.SourceState`), when there is one; shown by ``/ready``.
        self.source_state: SourceState | None = None
        #: The warm start's progress (:mod:`serving.warm`), run by the app before the first live frame (off unless the
        #: app has a source with an archive); shown by ``/ready``.
        self.warm_start = WarmStart("off")
        for path in self.inbox.held():  # frames that were waiting when the service stopped
            self.take(path)
        self.refresh_gauges()

    def warm(self) -> int:
        """Rebuild the scoring state of every open passage (see :meth:`FrameStep.warm`); returns passages."""
        with self.lock:
            newest = self.store.newest_frame()
            return self.step.warm(self.store.snapshot(0 if newest is None else newest[0] + 1))

    def run_cycle(self, now: float | None = None) -> int:
        """Take every file waiting in the inbox, oldest name first, and score the slots that are ready; returns
        frames scored. ``now`` (Unix seconds) lets slots whose window has passed be scored without a later frame:
        the scheduler passes the wall clock in real-time operation."""
        with self.lock:
            for path in self.inbox.waiting():
                self.take(path)
            done = self.flush(now)
            retention.apply(self.config, self.store, self.dir, time.time())
            self.refresh_gauges()
        return done

    def take(self, path: Path) -> None:
        """Read one file and make it its slot's candidate, supersede it, or reject it; call under :attr:`lock`."""
        t0 = time.perf_counter()
        try:
            mag = read_frame(path, self.bundle.instrument, self.config.refused_quality_bits)
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
        self._candidate(path, mag, time.perf_counter() - t0)

    def accept(self, path: Path, name: str, mag: Magnetogram, read_s: float) -> None:
        """File an already read frame (an upload at ``path``) in ``incoming/`` as ``name`` and make it its slot's
        candidate, without reading it again; :meth:`run_cycle` scores it when its slot is ready."""
        with self.lock:
            filed = self.inbox.incoming / name
            path.replace(filed)  # under the lock: the watcher cannot take it from incoming/ in between
            self._candidate(filed, mag, read_s)

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
        fault_point("done")
        self.inbox.done(c.path)
        now = time.time()
        self.metrics.frame_to_publish.observe(max(0.0, now - c.arrived))
        if self.config.source != "synthetic":  # the synthetic feed replays the past: its age says nothing
            self.metrics.observation_to_publish.observe(max(0.0, now - c.mag.time.unix))
        return 1

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
