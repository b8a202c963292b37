"""A consumer of fluxwatch's alert stream: read the alerts topic, drop duplicates, keep going when fields are added.

    python examples/consume_alerts.py --bootstrap localhost:9092 [--topic fluxwatch.alerts.v4] [--group my-desk]

What every consumer of the stream should do (the alert contract, in the README):

- **De-duplicate by ``event_id``.** Delivery is at least once: after a crash the service may send an event
  again, with the same ``event_id`` (ids are derived from the data, never drawn). Here the ids seen are kept in
  memory; a real desk keeps them with its own state.
- **Check the major version, ignore unknown fields.** Within a major ``schema_version`` only optional fields are
  added; an event of another major version is set aside, not misread.
- **Follow an alert by its ``alert_id``:** ``opened``, then ``updated`` (each ``supersedes`` the last event),
  then ``withdrawn`` (``reason``: nothing emerged, the alert was wrong) or ``closed`` (``reason``:
  ``emergence_phase_over``, the region is there and no longer new; or the patch left the disk or its video is full).
- **Never act on ``simulated`` events as real ones:** they come from the synthetic Sun and have their own topic
  (``fluxwatch.simulated.alerts.v4``); the check here is a second guard.

It reads the events with the contract's typed model (``contract.events.AlertEvent``, pydantic only: what
``pip install fluxwatch`` brings; a 4.x event reads as 4.0, its new fields ignored) and kafka-python; it prints one
line per new event and, with ``--max-events``, stops after that many.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator

from pydantic import ValidationError

from contract.events import SCHEMA_VERSION, AlertEvent

SUPPORTED_MAJOR = SCHEMA_VERSION.split(".")[0]


def new_events(records: Iterable[bytes], seen: set[str], allow_simulated: bool = False) -> Iterator[AlertEvent]:
    """The alert events among raw message values that are new (by ``event_id``), of a supported major version,
    and observed (unless ``allow_simulated``); ``seen`` is updated."""
    for value in records:
        try:
            version = str(json.loads(value).get("schema_version", ""))
        except (ValueError, AttributeError):
            print(f"skipped a message that is not a JSON object: {value[:60]!r}", file=sys.stderr)
            continue
        if version.split(".")[0] != SUPPORTED_MAJOR:
            print(f"skipped {json.loads(value).get('event_id')}: schema_version {version} is not {SUPPORTED_MAJOR}.x",
                  file=sys.stderr)
            continue
        try:
            event = AlertEvent.model_validate_json(value)
        except ValidationError as exc:
            print(f"skipped a message that is not an alert event of {version}: {exc}", file=sys.stderr)
            continue
        if event.event_id in seen:
            continue  # a redelivery
        seen.add(event.event_id)
        if event.simulated and not allow_simulated:
            print(f"skipped {event.event_id}: simulated", file=sys.stderr)
            continue
        yield event


def describe(event: AlertEvent) -> str:
    """One line a forecaster can read: what happened, where, how likely, since when."""
    lonlat, region = event.patch.carrington, event.region
    why = f" ({event.reason.value})" if event.reason else ""
    return (f"{event.frame_time} {event.event.value:<9}{why} {event.alert_id} at Carrington {lonlat.lon:.1f}°, "
            f"{lonlat.lat:+.1f}° p={event.probability.median:.2f} onset {event.onset.time_utc} "
            f"±{event.onset.uncertainty_hours:.0f} h, flux +{region.flux_positive_Mx:.2e}/-{region.flux_negative_Mx:.2e} Mx")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    p.add_argument("--topic", default="fluxwatch.alerts.v4")
    p.add_argument("--group", default=None, help="consumer group (commits offsets); none: read from the start")
    p.add_argument("--max-events", type=int, default=None, help="stop after this many new events")
    p.add_argument("--idle-seconds", type=float, default=None, help="stop when nothing arrives for this long")
    p.add_argument("--allow-simulated", action="store_true", help="also print simulated events (demos, tests)")
    a = p.parse_args(argv)

    from kafka import KafkaConsumer

    consumer = KafkaConsumer(a.topic, bootstrap_servers=a.bootstrap, group_id=a.group, auto_offset_reset="earliest",
                             consumer_timeout_ms=int(a.idle_seconds * 1000) if a.idle_seconds else float("inf"))
    seen: set[str] = set()
    printed = 0
    try:
        for event in new_events((record.value for record in consumer), seen, a.allow_simulated):
            print(describe(event), flush=True)
            printed += 1
            if a.max_events is not None and printed >= a.max_events:
                break
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
