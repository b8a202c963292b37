"""Prometheus metrics of the online service.

One :class:`Metrics` object owns its own ``CollectorRegistry`` (so tests and
several service instances in one process never collide in the global
registry) and every metric the service exports. All names start with
``fluxwatch_``; each metric's help text says what it counts (the metrics reference page lists them).

Histograms share :data:`LATENCY_BUCKETS` (0.05 s ... 120 s). Every label value
of ``reason`` and ``event`` is created at start-up with value 0, so rates and
``increase()`` see a series from the first scrape on.

The HTTP ``/metrics`` endpoint returns ``exposition()``'s body with its
content type.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from contract.events import EventKind
from ingest.errors import IngestError

NAMESPACE = "fluxwatch"

def _error_classes(cls: type[IngestError]) -> list[type[IngestError]]:
    return [cls] + [c for sub in cls.__subclasses__() for c in _error_classes(sub)]


#: Values of the ``reason`` label of ``fluxwatch_frames_rejected_total``: each ingest error's own reason
#: (:mod:`ingest.errors`), and an upload's refusals before any reading.
REJECT_REASONS = tuple(dict.fromkeys([*(c.reason for c in _error_classes(IngestError) if c is not IngestError),
                                      "too_large", "unauthorized", IngestError.reason]))

#: Values of the ``event`` label of ``fluxwatch_alerts_published_total``: the alert event kinds.
ALERT_EVENTS = tuple(kind.value for kind in EventKind)

#: Histogram buckets (seconds) for latencies from tens of milliseconds to two minutes.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
#: Buckets (seconds) from an observation to its alerts being published: the instrument's own delivery delay
#: (JSOC's near-real-time HMI series arrive tens of minutes to a few hours after observation), the wait for a
#: slot's best frame (up to half a 96-min cadence) and the service's own seconds, up to 12 h.
OBSERVATION_BUCKETS = (30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 2700.0, 3600.0, 5400.0, 7200.0, 10800.0,
                       14400.0, 21600.0, 43200.0)

#: Ingest exception class -> ``reason`` label. Subclasses map like their nearest listed base.


class Metrics:
    """Every metric of the service, in a private registry.

    ``clock`` returns the current Unix time; it drives
    ``fluxwatch_newest_frame_age_seconds`` and is injectable for tests.
    Counters, gauges and histograms are public attributes used directly with
    the ``prometheus_client`` API, e.g. ``m.frames_ingested.inc()``,
    ``m.ingest_latency.observe(dt)``, ``m.alerts_published.labels(event="opened").inc()``,
    ``m.outbox_depth.set(n)``; ``with m.scoring_latency.time(): ...`` times a block.
    """

    def __init__(self, clock: Callable[[], float] = time.time):
        self.registry = CollectorRegistry(auto_describe=True)
        self._clock = clock
        self._newest_frame_time = clock()
        kw: dict[str, Any] = {"namespace": NAMESPACE, "registry": self.registry}
        hist: dict[str, Any] = dict(kw, buckets=LATENCY_BUCKETS)

        self.frames_ingested = Counter(
            "frames_ingested_total", "Frames accepted, projected onto the patch grid and stored.", **kw)
        self.frames_rejected = Counter(
            "frames_rejected_total", "Input files refused, by reason.", ["reason"], **kw)
        self.frames_superseded = Counter(
            "frames_superseded_total", "Good frames not used because their slot has (or had) one closer to its time.",
            **kw)
        self.ingest_latency = Histogram(
            "ingest_latency_seconds",
            "Seconds to read a frame, bring it to the model's instrument, project and store it (no wait, no scoring).",
            **hist)
        self.scoring_latency = Histogram(
            "scoring_latency_seconds", "Seconds to score all active patches at one cadence.", **hist)
        self.frame_to_publish = Histogram(
            "frame_to_publish_seconds",
            "Seconds from a frame's arrival to its alerts/status being handed to Kafka (outbox) or the alert log.",
            **hist)
        self.observation_to_publish = Histogram(
            "observation_to_publish_seconds",
            "Seconds from a frame's observation time to its alerts/status being handed on (live sources only).",
            **dict(kw, buckets=OBSERVATION_BUCKETS))
        self.source_fetched = Counter("source_fetched_total", "Files fetched by the live source (JSOC).", **kw)
        self.source_errors = Counter("source_errors_total", "Failed polls of the live source.", **kw)
        self.source_consecutive_errors = Gauge(
            "source_consecutive_errors", "Failed polls of the live source in a row (0 when healthy).", **kw)
        self.source_last_success = Gauge(
            "source_last_success_timestamp_seconds", "Unix time of the live source's last good poll.", **kw)
        self.frame_quality_bits = Counter(
            "frame_quality_bits_total", "Frames read whose QUALITY word sets a bit, by instrument, bit and action: "
            "refused (the bit refuses frames) or recorded (the frame was used; the bit is in its provenance).",
            ["instrument", "bit", "action"], **kw)
        self.disk_bytes = Gauge("disk_bytes", "Bytes the service keeps on disk, by kind (its folders, videos, "
                                "state database); bounded by the retention settings.", ["kind"], **kw)
        self.disk_free_bytes = Gauge("disk_free_bytes", "Free bytes on the file system of the data directory.", **kw)
        self.warm_start_frames = Gauge(
            "warm_start_frames", "History frames ingested by the warm start before the first live frame.", **kw)
        self.warm_start_seconds = Gauge("warm_start_seconds", "Time the warm start took (0 until it is done).", **kw)
        self.active_patches = Gauge("active_patches", "Patches on the visible disk with a rolling video.", **kw)
        self.open_alerts = Gauge("open_alerts", "Emergence alerts currently open.", **kw)
        self.alerts_published = Counter(
            "alerts_published_total", "Alert events published, by event kind.", ["event"], **kw)
        self.outbox_depth = Gauge("outbox_depth", "Messages in the outbox not yet delivered to Kafka.", **kw)
        self.kafka_errors = Counter("kafka_errors_total", "Failed Kafka deliveries or connection attempts.", **kw)
        self.newest_frame_age = Gauge(
            "newest_frame_age_seconds",
            "Seconds since the newest frame was accepted (since start-up until the first frame).", **kw)
        self.newest_frame_age.set_function(lambda: self._clock() - self._newest_frame_time)
        self.model = Info("model", "The loaded ONNX ensemble: version and number of members.", **kw)

        for reason in REJECT_REASONS:
            self.frames_rejected.labels(reason=reason)
        for event in ALERT_EVENTS:
            self.alerts_published.labels(event=event)

    def set_newest_frame_time(self, at: float | None = None) -> None:
        """Record when the newest frame was accepted (Unix seconds; default now).

        Use wall-clock arrival time, not the observation time, so the age is
        meaningful with an accelerated feed too. On restart, pass the stored
        arrival time of the newest frame.
        """
        self._newest_frame_time = self._clock() if at is None else float(at)

    @staticmethod
    def reason_for(exc: BaseException) -> str:
        """The ``reason`` label for an exception: an ingest error's own, ``"other"`` for anything else."""
        return exc.reason if isinstance(exc, IngestError) else IngestError.reason

    def reject(self, cause: BaseException | str) -> str:
        """Count one rejected file; ``cause`` is an exception or a label from :data:`REJECT_REASONS`.

        Returns the reason label used.
        """
        reason = cause if isinstance(cause, str) else self.reason_for(cause)
        if reason not in REJECT_REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}; expected one of {REJECT_REASONS}")
        self.frames_rejected.labels(reason=reason).inc()
        return reason

    def set_model(self, model_version: str, members: int) -> None:
        """Publish the loaded ensemble as ``fluxwatch_model_info{model_version=..., members=...} 1``."""
        self.model.info({"model_version": str(model_version), "members": str(int(members))})

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition of every metric and its HTTP content type, for ``/metrics``."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
