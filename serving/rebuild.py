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

from common.config import ServiceConfig
from serving.bundle import BundleError
from serving.cli import configured
from serving.compose import open_service
from serving.publisher import event_ids_on
from serving.store import ALERT_LOG, STATE_FILE, VIDEOS_DIR, StateError

log = logging.getLogger(__name__)

#: What the rebuild moves aside: everything derived from the ingested frames.
DERIVED = (STATE_FILE, STATE_FILE + "-wal", STATE_FILE + "-shm", ALERT_LOG, VIDEOS_DIR)


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
    service = open_service(config.model_copy(update={"kafka_bootstrap": None}))
    for path in sorted((data / "processed").glob("*.fits")):  # one at a time: one frame in memory
        path.rename(service.inbox.incoming / path.name)
        service.run_cycle()
    frames = service.store.db.execute("SELECT COUNT(*) FROM frames").fetchone()[0]
    delivered = 0
    if config.kafka_bootstrap:
        waiting = service.store.outbox.pending(limit=-1)
        on_kafka = event_ids_on(config.kafka_bootstrap, {m.topic for m in waiting}, config.kafka_options)
        delivered = service.store.outbox.acknowledge(on_kafka & {m.event_id for m in waiting})
    log.info("rebuilt %s: %d frames; %d of %d outbox messages were already on Kafka", data, frames, delivered,
             service.store.outbox.depth() + delivered)
    return frames, delivered


def main(argv=None) -> int:
    config = configured("serving.rebuild", argv)
    if config is None:
        return 2
    try:
        rebuild(config)
    except (BundleError, StateError, OSError) as exc:
        print(f"serving.rebuild: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
