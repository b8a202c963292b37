"""The running service: the pipeline, its scheduler, the synthetic feed and the Kafka publisher, with their lifecycle.

:func:`build` assembles them from a :class:`~common.config.ServiceConfig`;
:meth:`App.start` rebuilds the scoring state, creates the Kafka topics and
starts the publisher and the scheduler; :meth:`App.stop` stops them in
reverse order. The scheduler's first cycle is the warm start
(:mod:`serving.warm`: the source's recent past, while the API already
answers and ``/ready`` shows its progress); then it runs one cycle per
cadence / ``speedup``: the synthetic feed (when configured) delivers its
next frame, then the inbox is processed; the JSOC source polls once the warm
start is done. The publisher, a sink of the pipeline, is woken by every
committed frame.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler
from astropy.time import Time

from common.clock import slot_of_time, slot_time
from common.config import ConfigError, ServiceConfig
from serving.compose import open_service
from serving.jsoc import JsocSource
from serving.publisher import KafkaPublisher, ensure_topics
from serving.service import Service
from serving.warm import warm_start
from serving.watcher import IncomingWatcher

if TYPE_CHECKING:
    from serving.feed import SyntheticFeed

log = logging.getLogger(__name__)


@dataclass
class App:
    service: Service
    scheduler: BackgroundScheduler
    publisher: KafkaPublisher | None
    feed: SyntheticFeed | None
    watcher: IncomingWatcher | None = None
    source: JsocSource | None = None

    def warm_start(self) -> None:
        """Fill the recent past from the source's archive (:mod:`serving.warm`), once."""
        status = self.service.warm_start
        if status.state != "pending":
            return
        if self.feed is not None:
            warm_start(self.service, self.feed.history, self.feed.next_slot, status)
        elif self.source is not None:
            source = self.source
            warm_start(self.service, lambda a, b: source.history(slot_time(a), slot_time(b)),
                       int(slot_of_time(Time.now())), status)

    def poll(self) -> None:
        """Poll the live source, once the warm start has filled the past (its frames come first, in slot order)."""
        if self.source is not None and self.service.warm_start.finished:
            self.source.tick()

    def cycle(self) -> None:
        self.warm_start()
        if self.feed is not None:
            self.feed.tick()
        # Live frames: a slot whose window has passed on the wall clock is scored without waiting for a later frame.
        # The synthetic feed replays the past at its own pace, so its slots close by stream time alone.
        self.service.run_cycle(now=time.time() if self.feed is None else None)

    def start(self, scheduler: bool = True) -> App:
        """Warm the streams, create the topics, start the publisher and (unless told not to) the scheduler."""
        log.info("rebuilt the scoring state of %d open passages", self.service.warm())
        config = self.service.config
        if self.publisher is not None:
            ensure_topics(self.publisher.bootstrap, config.topics, config.kafka_partitions, config.kafka_replication,
                          config.kafka_options)
            self.publisher.start()
        if self.feed is None:  # files from outside: take each as it appears; the cadence job sweeps
            self.watcher = IncomingWatcher(self.service).start()
        if scheduler:
            self.scheduler.add_job(self.cycle, "interval", seconds=config.tick_seconds, max_instances=1, coalesce=True,
                                   id="cycle", next_run_time=datetime.now())
            if self.source is not None:  # polls when due; backs off by itself after errors
                self.scheduler.add_job(self.poll, "interval", seconds=15, max_instances=1, coalesce=True,
                                       id="source", next_run_time=datetime.now())
            self.scheduler.start()
        return self

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        if self.publisher is not None:
            self.publisher.stop()
        self.service.close()
        log.info("stopped: the watcher, the scheduler, the publisher and the reader")


def build(config: ServiceConfig) -> App:
    """The service, its publisher (when Kafka is configured), feed and scheduler, none started yet."""
    service = open_service(config)
    publisher = None
    if config.kafka_bootstrap:
        publisher = KafkaPublisher(service.store.publisher_outbox, config.kafka_bootstrap, config.kafka_options,
                                   on_error=lambda exc: service.metrics.kafka_errors.inc(),
                                   on_delivered=lambda n, waiting: service.metrics.outbox_depth.set(waiting))
        service.sinks.append(publisher)  # woken as soon as a frame's messages are in the outbox
    feed = None
    if config.source == "synthetic":
        from serving.feed import SyntheticFeed  # imports the simulator: only when it is the source

        feed = SyntheticFeed(config.data_dir, config.synthetic_start, config.synthetic_seed)
    source = None
    if config.source == "jsoc":
        if config.jsoc_email is None:  # ServiceConfig refuses the JSOC source without one
            raise ConfigError("source = 'jsoc' needs jsoc_email")
        source = JsocSource(config.jsoc_series, config.jsoc_email, service.inbox.incoming,
                            service.dir / "jsoc_state.json", service.metrics, server_url=config.jsoc_url,
                            poll=config.jsoc_poll)
        service.source_state = source.state
    if config.warm_start and (feed is not None or source is not None):
        service.warm_start.state = "pending"
    return App(service, BackgroundScheduler(), publisher, feed, source=source)
