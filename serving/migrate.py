"""State migrations: a ``state.sqlite`` written by an earlier fluxwatch is brought to this version at start.

Each migration takes the state of one version to the next, in one transaction with the new ``user_version``; the
service applies them in turn (:func:`upgrade`) after an automatic backup into ``backups/`` in its data dir
(:func:`serving.backup.backup`), so an upgrade never needs the raw files and a failed one leaves the old state as
it was. A state of a version with no migration (a newer one) is refused by :class:`~serving.store.Store`.

2.x → 3 (``user_version`` 0 → 3): the tables are the same; the payloads go from alert schema 2.1 to 3.0. Each score,
event and waiting message gets its ``provenance`` (instrument, series, T_REC, QUALITY and whether it is simulated,
from the header of the frame's file in ``processed/``, else from its name; the model version it carried and the
digest of the service's bundle, which must be that model), its times get their ``Z``; each event its
``published`` time (when it entered the outbox), ``supersedes``, ``reason`` and ``region`` (from the passage's
video); a status its ``final``. Waiting messages move to the topics of 3.0 (simulated frames' to their own).

3 → 4: the payloads go from alert schema 3.0 to 4.0: the events' ``schema_version``, their region's fluxes spelled
``…_Mx``; waiting messages move to the topics of 4.0 (the service's). Past events keep what they said: a
withdrawal of 3.0 stays a withdrawal.

4 → 5: the payloads are the same; a table of each patch's latest passage as it stands (``patch_status``: open or
not, its alert state, its latest score) is built from the passages, alert states and scores, for the API's reads.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import numpy as np
from astropy.time import Time

from common.clock import slot_of_time
from contract.events import AlertEvent, EventKind, PatchStatus, Provenance, Reason, Score
from ingest.errors import IngestError
from ingest.magnetogram import Origin, origin_from_name, origin_of
from serving.backup import backup
from serving.bundle import ModelBundle
from serving.region import region
from serving.store import PATCH_STATUS_TABLE, STATE_FILE, STATE_VERSION, StateError, mapped_video, video_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Upgrade:
    """What a migration needs beyond the database: the data dir, the service's bundle, its tiles' pixel axes and
    its topics."""

    data_dir: Path
    bundle: ModelBundle
    axes: Callable[[str], tuple[np.ndarray, np.ndarray]]  # patch id → (lon of each column, lat of each row), deg
    topics: dict[bool, tuple[str, str]]  # simulated → (alerts topic, status topic)


class MigrationError(StateError):
    """A state that cannot be migrated as it is; the message says why and the way out."""


def _utc(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _slot(isot: str) -> int:
    return int(slot_of_time(Time(isot.rstrip("Z"), scale="utc")))


def from_2x(db: sqlite3.Connection, up: Upgrade) -> int:
    """Alert schema 2.1 payloads → 3.0 (see the module's description; written as this version's models write them,
    which the next migration leaves as they are); returns the new version, 3."""
    frames = {slot: (source, observed, ingested) for slot, source, observed, ingested in db.execute(
        "SELECT slot, source, time, ingested FROM frames")}  # slot → (file name, observation time, arrival Unix s)
    named = 0

    @cache
    def origin(slot: int) -> Origin:
        nonlocal named
        path = up.data_dir / "processed" / frames[slot][0]
        if path.is_file():
            try:
                return origin_of(path, before_simulate_card=True)
            except IngestError:
                pass
        named += 1
        return origin_from_name(frames[slot][0])

    def score_3(payload: dict, slot: int) -> dict:
        """A 2.1 score's fields as 3.0 has them (the times' Z comes from the models' validation)."""
        model_version = payload.pop("model_version")
        if model_version != up.bundle.model_version:
            raise MigrationError(
                f"{up.data_dir / STATE_FILE} holds scores of model {model_version}, and the service's bundle is "
                f"model {up.bundle.model_version}: start this fluxwatch once with the bundle of {model_version} to "
                "migrate the state (its digest goes into the scores' provenance), then change the bundle")
        o = origin(slot)
        provenance = Provenance(instrument=o.instrument, series=o.series, file=frames[slot][0], t_obs=frames[slot][1],
                                t_rec=o.t_rec, quality=o.quality, model_version=model_version,
                                bundle_digest=up.bundle.digest)
        return {**payload, "simulated": o.simulated, "provenance": provenance}

    scores = db.execute("SELECT rowid, slot, summary FROM scores").fetchall()
    db.executemany("UPDATE scores SET summary = ? WHERE rowid = ?",
                   [(Score.model_validate(score_3(json.loads(summary), slot)).model_dump_json(), rowid)
                    for rowid, slot, summary in scores])

    published = dict(db.execute("SELECT event_id, created FROM outbox"))
    events: dict[str, AlertEvent] = {}
    for event_id, payload in db.execute("SELECT event_id, payload FROM alerts").fetchall():
        e = json.loads(payload)
        slot, start = _slot(e["frame_time"]), _slot(e["passage_start"])
        alert_id, seq = event_id.rsplit("#", 1)
        kind = EventKind(e["event"])
        reason = (Reason.probability_fell if kind is EventKind.withdrawn else
                  (Reason.video_full if e["frame"] >= up.bundle.n_frames - 1 else Reason.left_disk)
                  if kind is EventKind.closed else None)
        video = mapped_video(video_file(up.data_dir, e["patch_id"], start),
                             (up.bundle.n_frames, up.bundle.pixels, up.bundle.pixels))
        e = {**score_3(e, slot), "schema_version": "4.0", "published": _utc(published.get(event_id, frames[slot][2])),
             "supersedes": f"{alert_id}#{int(seq) - 1}" if int(seq) > 1 else None, "reason": reason,
             "region": region(video, e["frame"], e["onset"]["frame"], e["patch_id"], up.axes(e["patch_id"]), start)}
        events[event_id] = AlertEvent.model_validate(e)
    db.executemany("UPDATE alerts SET payload = ?, frame_time = ? WHERE event_id = ?",
                   [(e.model_dump_json(), e.frame_time, event_id) for event_id, e in events.items()])

    moved = []
    for seq, event_id, payload, delivered in db.execute(
            "SELECT seq, event_id, payload, delivered FROM outbox").fetchall():
        if event_id in events:
            message = events[event_id].payload()
            simulated, which = events[event_id].simulated, 0
        else:
            p = json.loads(payload)
            p = PatchStatus.model_validate({**score_3(p, _slot(p["frame_time"])), "final": p["alert"] == "closed"})
            message, simulated, which = p.payload(), p.simulated, 1
        moved.append((json.dumps(message, sort_keys=True), up.topics[simulated][which], delivered, seq))
    # a delivered message keeps the topic it went to
    db.executemany("UPDATE outbox SET payload = ?, topic = CASE WHEN ? IS NULL THEN ? ELSE topic END WHERE seq = ?",
                   [(payload, delivered, topic, seq) for payload, topic, delivered, seq in moved])
    if named:
        log.warning("migration: %d frames' files are no longer in processed/: their provenance says what their names "
                    "say (taken as observed)", named)
    log.info("migrated %d scores, %d events and %d outbox messages from alert schema 2.1 to 3.0", len(scores),
             len(events), len(moved))
    return 3


def from_3(db: sqlite3.Connection, up: Upgrade) -> int:
    """Alert schema 3.0 payloads → 4.0 (see the module's description); returns the new version, 4."""

    def event_4(payload: str) -> AlertEvent:
        e = json.loads(payload)
        e["region"] = {key.replace("_mx", "_Mx"): value for key, value in e["region"].items()}
        return AlertEvent.model_validate({**e, "schema_version": "4.0"})

    events = {event_id: event_4(payload) for event_id, payload in db.execute("SELECT event_id, payload FROM alerts")}
    db.executemany("UPDATE alerts SET payload = ? WHERE event_id = ?",
                   [(e.model_dump_json(), event_id) for event_id, e in events.items()])
    moved = []
    for seq, event_id, payload in db.execute("SELECT seq, event_id, payload FROM outbox WHERE delivered IS NULL").fetchall():
        message: AlertEvent | PatchStatus = events[event_id] if event_id in events else PatchStatus.model_validate_json(payload)
        which = 0 if event_id in events else 1
        moved.append((message.payload_json(), up.topics[message.simulated][which], seq))
    db.executemany("UPDATE outbox SET payload = ?, topic = ? WHERE seq = ?", moved)  # a delivered message is history
    log.info("migrated %d events and %d waiting outbox messages from alert schema 3.0 to 4.0", len(events), len(moved))
    return 4


def from_4(db: sqlite3.Connection, up: Upgrade) -> int:
    """Each patch's latest passage as it stands into ``patch_status`` (see the module's description); returns 5."""
    db.execute(PATCH_STATUS_TABLE)
    db.execute(
        "INSERT INTO patch_status SELECT p.patch_id, p.start_slot, p.status = 'open', a.state, s.frame, s.summary "
        "FROM passages p LEFT JOIN alert_states a USING (patch_id, start_slot) "
        "LEFT JOIN scores s ON s.patch_id = p.patch_id AND s.start_slot = p.start_slot AND s.frame = "
        "(SELECT MAX(frame) FROM scores l WHERE l.patch_id = p.patch_id AND l.start_slot = p.start_slot) "
        "WHERE p.start_slot = (SELECT MAX(start_slot) FROM passages q WHERE q.patch_id = p.patch_id)")
    log.info("built the status of %d patches", db.execute("SELECT COUNT(*) FROM patch_status").fetchone()[0])
    return 5


#: The migration from each earlier state version (``PRAGMA user_version``) to the next.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection, Upgrade], int]] = {0: from_2x, 3: from_3, 4: from_4}


def upgrade(up: Upgrade) -> list[int]:
    """Bring the state under ``up.data_dir`` to :data:`~serving.store.STATE_VERSION`, after a backup, when it is of
    an earlier version with a migration; returns the versions it went through (empty when nothing was done)."""
    path = up.data_dir / STATE_FILE
    if not path.is_file():
        return []
    db = sqlite3.connect(path, timeout=30)
    try:
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            empty = not db.execute("SELECT 1 FROM sqlite_master").fetchone()
            sound = db.execute("PRAGMA quick_check(1)").fetchone()[0] == "ok"
        except sqlite3.DatabaseError:  # damaged: the store says so
            return []
        if empty or not sound or version == STATE_VERSION or version not in MIGRATIONS:
            return []
        saved = up.data_dir / "backups" / time.strftime(f"before-migration-v{version}-%Y%m%dT%H%M%SZ", time.gmtime())
        backup(up.data_dir, saved)
        log.info("state version %d: backed up into %s before migrating it", version, saved)
        steps = [version]
        with db:
            while version != STATE_VERSION:
                version = MIGRATIONS[version](db, up)
                db.execute(f"PRAGMA user_version = {int(version)}")
                steps.append(version)
        log.info("migrated %s: state version %s", path, " → ".join(map(str, steps)))
        return steps
    finally:
        db.close()
