"""``python -m serving.rebuild``: rebuild a damaged service state from the frames the service already ingested.

Run it with the service stopped and the options ``fluxwatch-serve`` runs with (the same data dir, bundle, alert
policy, Kafka and topics: they are parsed alike). It

1. moves the derived state, ``state.sqlite`` (with its ``-wal`` and ``-shm``), ``alerts.jsonl`` and ``videos/``,
   into ``damaged-<UTC time>/`` in the data dir: nothing is deleted;
2. moves the files of ``processed/`` (and ``pending/``) back to ``incoming/`` and runs the pipeline over them, one
   at a time in name order, without Kafka: the frames, scores, alert states and events come back as they were (an event's id is
   derived from the data), as if every frame had arrived in order;
3. with ``--kafka``, marks delivered the outbox messages whose event ids are already on their topics, so that the
   service, started again, publishes only what never reached Kafka.

Exits 0 when the state is rebuilt, 2 with a message when it cannot be.
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from common.config import ConfigError, ServiceConfig
from serving.bundle import BundleError
from serving.main import config_from_args, configure_logging
from serving.service import Service
from serving.store import StateError

log = logging.getLogger(__name__)

#: What the rebuild moves aside: everything derived from the ingested frames.
DERIVED = ("state.sqlite", "state.sqlite-wal", "state.sqlite-shm", "alerts.jsonl", "videos")


def published_event_ids(bootstrap: str, topics: set[str], options: dict | None = None, timeout_s: float = 120) -> set[str]:
    """Every event id (``event_id`` header) on ``topics``, read from their first offsets to their ends."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **(options or {}))
    try:
        parts = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        if not parts:
            return set()
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
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


def rebuild(config: ServiceConfig) -> tuple[int, int]:
    """Rebuild the state under ``config.data_dir`` (see the module's description); returns (frames stored, outbox
    messages already on Kafka and marked delivered)."""
    data = Path(config.data_dir)
    aside = data / time.strftime("damaged-%Y%m%dT%H%M%SZ", time.gmtime())
    aside.mkdir()
    for name in DERIVED:
        if (data / name).exists():
            (data / name).rename(aside / name)
    log.info("moved the damaged state aside into %s", aside)
    for path in (data / "pending").glob("*.fits"):  # replayed in order with the others, not taken first
        path.rename(data / "processed" / path.name)
    service = Service(config.model_copy(update={"kafka_bootstrap": None}))
    for path in sorted((data / "processed").glob("*.fits")):  # one at a time: one frame in memory
        path.rename(service.inbox.incoming / path.name)
        service.run_cycle()
    frames = service.store.db.execute("SELECT COUNT(*) FROM frames").fetchone()[0]
    delivered = 0
    if config.kafka_bootstrap:
        waiting = service.store.outbox.pending(limit=-1)
        on_kafka = published_event_ids(config.kafka_bootstrap, {m.topic for m in waiting}, config.kafka_options)
        delivered = len(seqs := [m.seq for m in waiting if m.event_id in on_kafka])
        service.store.outbox.mark_delivered(seqs)
    log.info("rebuilt %s: %d frames; %d of %d outbox messages were already on Kafka", data, frames, delivered,
             service.store.outbox.depth() + delivered)
    return frames, delivered


def main(argv=None) -> int:
    try:
        config = config_from_args(argv)
    except ConfigError as exc:
        print(f"serving.rebuild: error: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_format)
    try:
        rebuild(config)
    except (BundleError, StateError, OSError) as exc:
        print(f"serving.rebuild: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
