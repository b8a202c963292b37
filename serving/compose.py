"""The composition root of the live service: everything a :class:`~serving.service.Service` is built of, built in
one place, in order.

The bundle (refused when it cannot be served), the settings that need it checked (QUALITY bit names), the frame
step, the state brought to this version (:mod:`serving.migrate`, after a backup), the store, the sinks a committed
frame feeds (the alert log and the VOEvent files caught up with what was committed before a stop, the metrics),
and the frames that were waiting at the stop taken again.
"""
from __future__ import annotations

from pathlib import Path

from common.config import ConfigError, ServiceConfig
from ingest.instruments import INSTRUMENTS, MASK_NAMES, mask_name
from serving.bundle import ModelBundle
from serving.diskview import DiskViews
from serving.inbox import Inbox
from serving.metrics import Metrics
from serving.migrate import Upgrade, upgrade
from serving.reader import FrameReader
from serving.service import Service
from serving.sinks import AlertLog, MetricsSink, Sink
from serving.step import frame_step
from serving.store import ALERT_LOG, Store
from serving.voevent import VOEventSink, author_of


def check_quality_bits(config: ServiceConfig) -> None:
    """Refuse ``refused_quality_bits`` that name no instrument's bit (a mistake, said at start)."""
    if config.refused_quality_bits is None:
        return
    known = {name for i in INSTRUMENTS for name in i.quality_bits}
    unknown = sorted(set(config.refused_quality_bits) - known - MASK_NAMES)
    if unknown:
        raise ConfigError(f"refused_quality_bits: no instrument has a QUALITY bit {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(known))}, or an undocumented bit by its mask as 0x%08X (e.g. "
                          f"{mask_name(0)})")


def open_service(config: ServiceConfig | None = None, metrics: Metrics | None = None) -> Service:
    """The service over ``config.data_dir`` (the defaults when None), its state migrated and its files caught up."""
    config = config or ServiceConfig()
    bundle = ModelBundle(config.bundle)
    check_quality_bits(config)
    data_dir = Path(config.data_dir)
    inbox = Inbox(data_dir)
    step = frame_step(bundle, config)
    upgrade(Upgrade(data_dir, bundle, step.axes, config.topics))  # a state of an earlier version
    store = Store(data_dir, bundle.n_frames, bundle.pixels)
    metrics = metrics or Metrics()
    metrics.set_model(bundle.model_version, bundle.scorers)
    files: list[AlertLog | VOEventSink] = [AlertLog(data_dir / ALERT_LOG)]
    if config.voevent_dir:
        files.append(VOEventSink(data_dir / config.voevent_dir, author_of(config)))
    stored = store.reader().alerts()
    for sink in files:  # events committed just before the service stopped, before their files were written
        sink.catch_up(stored)
    sinks: list[Sink] = [*files, MetricsSink(metrics)]
    reader = FrameReader(bundle.instrument, config.refused_quality_bits, config.read_memory_bytes,
                         config.read_timeout.to_value("s"), config.read_workers)
    return Service(config, bundle, step, store, inbox, reader, sinks, metrics, DiskViews(data_dir, step.grid)).resume()
