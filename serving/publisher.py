"""The Kafka publisher: drains the durable outbox (:class:`serving.store.Outbox`) into Kafka.

The service writes an alert event into the outbox in the same SQLite
transaction that advances the alert state, so an event is never lost
between deciding it and publishing it. :class:`KafkaPublisher` drains the
outbox in order with ``acks='all'``; while the broker is down events wait
(and ``depth`` grows); when it returns they are delivered.

Exactly once per event id, in order per patch: every message is keyed by
patch id (one partition per patch); the producer is idempotent
(``enable_idempotence``: the broker drops a retried batch it already has and
keeps the order of retries), which covers a retry within one producer
session. Across sessions (a crash between Kafka's acknowledgement and the
outbox marking the event delivered) idempotence does not help, so before it
first delivers after a start the publisher reads back the event ids already
on the topics and skips them. Consumers still de-duplicate by ``event_id``
(the header, and the payload's field), as with any at-least-once stream.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from serving.faults import fault_point
from serving.keeper import Message
from serving.results import FrameResult
from serving.store import Outbox

log = logging.getLogger(__name__)


class KafkaPublisher:
    """Background thread that drains an :class:`Outbox` into Kafka.

    Parameters
    ----------
    outbox : opens the outbox on the publisher thread's own connection (:meth:`serving.store.Store.publisher_outbox`).
    bootstrap : Kafka bootstrap servers, e.g. ``127.0.0.1:9092``.
    options : further kafka-python client settings (security: SASL, TLS), given to the producer and the consumer
        (:attr:`common.config.ServiceConfig.kafka_options`).
    on_error : called with the exception whenever Kafka fails (for metrics).
    on_delivered : called with the number of messages delivered and the number still waiting.
    """

    def __init__(self, outbox: Callable[[], Outbox], bootstrap: str, options: dict | None = None, on_error=None,
                 on_delivered=None, poll_s: float = 0.2):
        self.open_outbox, self.bootstrap, self.options, self.poll_s = outbox, bootstrap, dict(options or {}), poll_s
        self.on_error, self.on_delivered = on_error or (lambda exc: None), on_delivered or (lambda n, waiting: None)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kafka-publisher", daemon=True)
        self._producer: Any = None  # kafka.KafkaProducer, created on the publisher thread
        self._deduped = False

    def start(self) -> KafkaPublisher:
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def consume(self, result: FrameResult) -> None:
        """A sink: a frame's messages were just committed to the outbox; deliver them now."""
        self.wake()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        outbox = self.open_outbox()
        backoff = self.poll_s
        while not self._stop.is_set():
            batch = outbox.pending()
            if not batch:
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            try:
                delivered = self._deliver(batch)
                fault_point("published")
                outbox.mark_delivered(delivered)
                self.on_delivered(len(delivered), outbox.depth())
                backoff = self.poll_s
            except Exception as exc:  # broker down, timeouts: keep the events, retry later
                log.warning("kafka delivery failed (%s); %d events wait in the outbox", exc, outbox.depth())
                self.on_error(exc)
                self._close()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        self._close()

    def _deliver(self, batch: list[Message]) -> list[int]:
        from kafka import KafkaProducer

        if self._producer is None:
            self._producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True, retries=3,
                                           linger_ms=5, request_timeout_ms=5000, max_block_ms=5000, **self.options)
            self._deduped = False
        # after a start, the tail of each partition is enough: at most one unacknowledged batch can be on it
        skip = set() if self._deduped else event_ids_on(self.bootstrap, {m.topic for m in batch}, self.options,
                                                        tail=2 * len(batch) + 100, timeout_s=10)
        self._deduped = True
        futures = [(m.seq, self._producer.send(m.topic, key=m.key.encode(),
                                               value=m.payload.encode(),
                                               headers=[("event_id", m.event_id.encode())]))
                   for m in batch if m.event_id not in skip]
        self._producer.flush(timeout=10)
        for _, f in futures:
            f.get(timeout=10)  # raises if not acknowledged by all in-sync replicas
        return [m.seq for m in batch]

    def _close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=2)
            except Exception:
                pass
            self._producer = None


def event_ids_on(bootstrap: str, topics: set[str], options: dict | None = None, tail: int | None = None,
                 timeout_s: float = 120.0) -> set[str]:
    """Every event id (the ``event_id`` header) on ``topics``: in the whole of each partition, or in its last
    ``tail`` messages. Raises TimeoutError if the topics cannot be read to their ends within ``timeout_s``."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=5000,
                             **(options or {}))
    try:
        parts = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        if not parts:
            return set()
        consumer.assign(parts)
        starts, ends = consumer.beginning_offsets(parts), consumer.end_offsets(parts)
        for tp in parts:
            consumer.seek(tp, starts[tp] if tail is None else max(starts[tp], ends[tp] - tail))
        ids: set[str] = set()
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {', '.join(sorted(topics))} to their ends in {timeout_s:.0f} s")
            for records in consumer.poll(timeout_ms=1000).values():
                ids.update(v.decode() for r in records for k, v in (r.headers or []) if k == "event_id")
        return ids
    finally:
        consumer.close()


def ensure_topics(bootstrap: str, topics: dict[bool, tuple[str, str]], partitions: int = 1, replication: int = 1,
                  options: dict | None = None, timeout_s: float = 30.0) -> None:
    """Create the alerts topics and the compacted patch-status topics (``topics``: see
    :attr:`common.config.ServiceConfig.topics`) that do not exist, with ``partitions`` and ``replication``."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000), **(options or {}))
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(alerts, partitions, replication) for alerts, _ in topics.values() if alerts not in existing]
        new += [NewTopic(status, partitions, replication, topic_configs={"cleanup.policy": "compact"})
                for _, status in topics.values() if status not in existing]
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
