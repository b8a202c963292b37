"""The live service's pipeline: FITS file → magnetogram → frame step → store → sinks.

Each file waiting in the inbox is read and brought to the model's instrument
(:func:`ingest.magnetogram.read_frame`), turned into a :class:`~serving.step.FrameResult` by the frame step,
committed with its outbox messages in one transaction by the store, and
handed to the alert log and the metrics; the file then moves to
``processed/``. A file that cannot be read, or whose slot already holds a
frame, moves to ``rejected/`` with the reason. One frame is processed at a
time, under :attr:`Service.lock`.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from common.clock import slot_of_time, slot_time
from common.config import ServiceConfig
from common.patches import PatchGrid
from ingest.errors import IngestError
from ingest.magnetogram import read_frame
from serving.alerts import AlertPolicy
from serving.bundle import ModelBundle
from serving.inbox import Inbox
from serving.metrics import Metrics
from serving.sinks import AlertLog, MetricsSink, Sink, outbox_messages
from serving.step import FrameStep
from serving.store import Store

log = logging.getLogger(__name__)


class Service:
    """The emergence-detection pipeline over ``config.data_dir``."""

    def __init__(self, config: ServiceConfig = ServiceConfig(), metrics: Metrics | None = None):
        self.config = config
        self.bundle = ModelBundle(config.bundle)
        self.dir = Path(config.data_dir)
        self.inbox = Inbox(self.dir)
        self.store = Store(self.dir, self.bundle.n_frames, self.bundle.pixels)
        self.step = FrameStep(self.bundle, PatchGrid(config.patch_grid),
                              AlertPolicy(self.bundle.alert_threshold, config.hysteresis, config.onset_step_frames,
                                          config.probability_step, config.present_at_start))
        self.metrics = metrics or Metrics()
        self.metrics.set_model(self.bundle.model_version, len(self.bundle.members))
        self.sinks: list[Sink] = [AlertLog(self.dir / "alerts.jsonl"), MetricsSink(self.metrics)]
        self.lock = threading.Lock()
        self.refresh_gauges()

    def warm(self) -> int:
        """Rebuild the scoring state of every open passage (see :meth:`FrameStep.warm`); returns passages."""
        with self.lock:
            return self.step.warm(self.store)

    def run_cycle(self) -> int:
        """Process every file waiting in the inbox, oldest name first; returns frames ingested."""
        with self.lock:
            done = sum(self.ingest_file(path) for path in self.inbox.waiting())
            self.refresh_gauges()
        return done

    def ingest_file(self, path: Path) -> int:
        """Ingest one FITS file (1 if a frame was added, 0 if rejected); call under :attr:`lock`."""
        arrived = path.stat().st_mtime
        t0 = time.perf_counter()
        try:
            mag = read_frame(path, self.bundle.instrument)
        except IngestError as exc:
            self._reject(path, exc, str(exc))
            return 0
        slot = int(slot_of_time(mag.time))
        if self.store.has_frame(slot):
            self._reject(path, "duplicate", f"slot {slot} ({slot_time(slot).isot}) already ingested")
            return 0
        result = self.step.execute(mag, path.name, self.store)
        try:
            self.store.commit(result, outbox_messages(result, self.config.alerts_topic, self.config.status_topic))
        except BaseException:
            self.step.forget(result)  # the streams moved on; the store did not
            raise
        self.metrics.ingest_latency.observe(time.perf_counter() - t0 - result.scoring_seconds)
        for sink in self.sinks:
            sink.consume(result)
        self.inbox.done(path)
        self.metrics.frame_to_publish.observe(max(0.0, time.time() - arrived))
        return 1

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
