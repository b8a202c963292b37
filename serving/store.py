"""The service's persistent state: the schema and every SQL statement, and the rolling patch videos.

SQLite (WAL) holds the facts: ``frames`` (every ingested slot), ``passages``
(a patch's disk passage: its first slot and status), ``scores`` (each
member's probability and the typed :class:`~contract.events.Score` per patch,
passage and frame: the probability history), ``alert_states``, ``alerts``
(every published event, for the API; its rowid is the publication order that
``GET /alerts`` cursors mark, so the table is never vacuumed) and ``outbox`` (messages not yet on
Kafka). Each patch passage's video is a memory-mapped float32 array
(n_frames, pixels, pixels) in G.

One writer (:class:`Store`) commits a frame's whole result in one
transaction (:meth:`Store.commit`); its video frames are written and flushed
*before* that transaction commits, so a killed service never records a frame
it has not stored; a frame whose transaction did not commit is still in
``incoming/`` and is ingested again. Readers (:class:`Reader`, the HTTP API)
use their own read-only connections and so see committed frames only.
"""
from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from common.clock import SLOTS_PER_DAY, slot_isot
from common.passage import SEARCH_DAYS
from contract.events import SCHEMA_VERSION, AlertEvent, AlertStatus, HistoryPoint, PatchDetail, PatchSummary, Score
from serving.alerts import AlertState, passage_label
from serving.faults import fault_point
from serving.keeper import Kept, Message, keep
from serving.results import FrameResult, Key, StepState, blank_video, filled_frames

if TYPE_CHECKING:
    from astropy.time import Time

SCHEMA = """
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS frames (slot INTEGER PRIMARY KEY, time TEXT NOT NULL, source TEXT NOT NULL, ingested REAL NOT NULL);
CREATE TABLE IF NOT EXISTS passages (
    patch_id TEXT NOT NULL, start_slot INTEGER NOT NULL, status TEXT NOT NULL,
    PRIMARY KEY (patch_id, start_slot));
CREATE TABLE IF NOT EXISTS scores (
    patch_id TEXT NOT NULL, start_slot INTEGER NOT NULL, frame INTEGER NOT NULL, slot INTEGER NOT NULL,
    probs TEXT NOT NULL, summary TEXT NOT NULL,
    PRIMARY KEY (patch_id, start_slot, frame));
CREATE TABLE IF NOT EXISTS alert_states (
    patch_id TEXT NOT NULL, start_slot INTEGER NOT NULL, state TEXT NOT NULL,
    PRIMARY KEY (patch_id, start_slot));
CREATE TABLE IF NOT EXISTS alerts (
    event_id TEXT PRIMARY KEY, alert_id TEXT NOT NULL, patch_id TEXT NOT NULL, frame_time TEXT NOT NULL,
    payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, key TEXT NOT NULL, event_id TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL, created REAL NOT NULL, delivered REAL);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (delivered, seq);
"""
#: Each patch's latest passage as it stands now (whether open, its alert state, its latest score's JSON), written
#: with every commit (:data:`PATCH_STATUS`), so that the API's reads of the disk now cost the same after a year as
#: after a day.
PATCH_STATUS_TABLE = """CREATE TABLE IF NOT EXISTS patch_status (
    patch_id TEXT PRIMARY KEY, start_slot INTEGER NOT NULL, open INTEGER NOT NULL, alert TEXT, latest_frame INTEGER,
    latest TEXT)"""
SCHEMA += PATCH_STATUS_TABLE + ";\n"
PATCH_STATUS = (
    "INSERT INTO patch_status (patch_id, start_slot, open) VALUES (?, ?, 1) ON CONFLICT (patch_id) DO UPDATE SET "
    "start_slot = excluded.start_slot, open = 1, alert = NULL, latest_frame = NULL, latest = NULL "
    "WHERE excluded.start_slot > patch_status.start_slot",
    "UPDATE patch_status SET open = 0 WHERE patch_id = ? AND start_slot = ?",
    "UPDATE patch_status SET latest_frame = ?, latest = ? WHERE patch_id = ? AND start_slot = ? "
    "AND (latest_frame IS NULL OR latest_frame <= ?)",
    "UPDATE patch_status SET alert = ? WHERE patch_id = ? AND start_slot = ?")
#: The state's database, its videos' folder and the alert log, under the data dir.
STATE_FILE, VIDEOS_DIR, ALERT_LOG = "state.sqlite", "videos", "alerts.jsonl"


def video_file(data_dir: Path, patch_id: str, start_slot: int) -> Path:
    """The file of a patch passage's rolling video under ``data_dir``."""
    return data_dir / VIDEOS_DIR / f"{patch_id}_{start_slot}.f32"


def mapped_video(path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    """The video (n_frames, pixels, pixels) float32, G, at ``path`` mapped read only (all 0 G when it has none)."""
    return np.memmap(path, dtype=np.float32, mode="r", shape=shape) if path.exists() else blank_video(shape)


#: Indexes a state of this version gets at start when it lacks them (they change no row: no new version).
INDEXES = ("CREATE INDEX IF NOT EXISTS scores_slot ON scores (slot);"
           "CREATE INDEX IF NOT EXISTS alerts_time ON alerts (frame_time);"
           "CREATE INDEX IF NOT EXISTS passages_start ON passages (start_slot);")


#: The layout of ``state.sqlite`` and of the payloads it stores (``PRAGMA user_version``); a state of an earlier
#: version is migrated at start (:mod:`serving.migrate`), one of another is refused, and can be rebuilt from
#: ``processed/`` (:mod:`serving.rebuild`). 5: each patch's status in a table of its own; 4: alert events of schema
#: 4.0; 3: of 3.0 (2.x states are 0).
STATE_VERSION = 5


class StateError(RuntimeError):
    """A state file the service cannot use (damaged); the message names it and the way out."""


def all_at_once(db: sqlite3.Connection, columns: str, source: str, params: Sequence = ()) -> list[list]:
    """The rows of ``SELECT columns FROM source`` (in no set order) in one step: SQLite builds them into one JSON
    array of arrays (TEXT columns come back as strings, numbers as numbers).

    Python's sqlite3 lets go of the GIL for every row it steps to, and behind a thread busy in Python (the frame
    cycle) each retake waits up to the interpreter's switch interval (5 ms): a passage's 200 rows fetched one by
    one took ~0.2 s under load, in one step ~10 ms.
    """
    (text,) = db.execute(f"SELECT json_group_array(json_array({columns})) FROM {source}", params).fetchone()
    return json.loads(text)


class _Queries:
    """Reads shared by the writer and the readers."""

    db: sqlite3.Connection

    def newest_frame(self) -> tuple[int, str, float] | None:
        """(slot, observation time ISO, arrival Unix time) of the newest ingested frame."""
        return self.db.execute("SELECT slot, time, ingested FROM frames ORDER BY slot DESC LIMIT 1").fetchone()

    def is_closed(self, patch_id: str, start_slot: int) -> bool:
        """Whether a patch's passage starting at ``start_slot`` is recorded and closed."""
        return self.db.execute("SELECT 1 FROM passages WHERE patch_id = ? AND start_slot = ? AND status = 'closed'",
                               (patch_id, start_slot)).fetchone() is not None

    def open_passages(self) -> dict[str, int]:
        """{patch id: passage start slot} of every open passage."""
        return dict(self.db.execute("SELECT patch_id, start_slot FROM patch_status WHERE open = 1"))

    def alert_state(self, patch_id: str, start_slot: int) -> AlertState:
        """A passage's alert state (idle before its first event)."""
        row = self.db.execute("SELECT state FROM alert_states WHERE patch_id = ? AND start_slot = ?",
                              (patch_id, start_slot)).fetchone()
        return _alert(patch_id, start_slot, row and row[0])


def _alert(patch_id: str, start_slot: int, state_json: str | None) -> AlertState:
    """An alert state from its stored JSON (idle when there is none yet)."""
    return AlertState(**json.loads(state_json)) if state_json else AlertState(patch_id, passage_label(start_slot))


class Outbox:
    """The outbox table on one connection (the writer's, or the publisher thread's own)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def pending(self, limit: int = 500) -> list[Message]:
        rows = self.db.execute("SELECT seq, topic, key, event_id, payload FROM outbox WHERE delivered IS NULL "
                               "ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [Message(t, k, e, p, s) for s, t, k, e, p in rows]

    def mark_delivered(self, seqs: list[int]) -> None:
        now = time.time()
        with self.db:
            self.db.executemany("UPDATE outbox SET delivered = ? WHERE seq = ?", [(now, s) for s in seqs])

    def depth(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM outbox WHERE delivered IS NULL").fetchone()[0]

    def acknowledge(self, event_ids: set[str]) -> int:
        """Record ``event_ids`` as already on Kafka: their waiting messages are marked delivered, and an id not in the
        outbox is kept as delivered, so that the same event decided again (a frame fed again after a restore) is not
        queued; returns how many ids were new to the outbox or waiting."""
        now = time.time()
        with self.db:
            waiting = self.db.executemany("UPDATE outbox SET delivered = ? WHERE event_id = ? AND delivered IS NULL",
                                          [(now, e) for e in event_ids]).rowcount
            new = self.db.executemany("INSERT OR IGNORE INTO outbox (topic, key, event_id, payload, created, delivered) "
                                      "VALUES ('', '', ?, 'null', ?, ?)", [(e, now, now) for e in event_ids]).rowcount
        return waiting + new

    def prune(self, delivered_before: float) -> int:
        """Remove the messages Kafka acknowledged before Unix time ``delivered_before``; returns how many."""
        with self.db:
            return self.db.execute("DELETE FROM outbox WHERE delivered < ?", (delivered_before,)).rowcount


class Store(_Queries):
    """The writer: the service's state under ``data_dir``, for videos of ``n_frames`` × ``pixels``²."""

    def __init__(self, data_dir: str | Path, n_frames: int, pixels: int):
        self.dir = Path(data_dir)
        (self.dir / VIDEOS_DIR).mkdir(parents=True, exist_ok=True)
        self.path = self.dir / STATE_FILE
        # created by the thread that builds the service, used by the scheduler's (one at a time, under its lock)
        self.db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        rebuild = (f"With the service stopped, rebuild the state from the frames in {self.dir / 'processed'}: python -m "
                   "serving.rebuild, with the options fluxwatch-serve runs with (the old files are moved aside, nothing is "
                   "deleted)")
        version = None
        try:
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if not self.db.execute("SELECT 1 FROM sqlite_master").fetchone():
                self.db.executescript(SCHEMA + f"PRAGMA user_version = {STATE_VERSION};")
                version = STATE_VERSION
            damage = self.db.execute("PRAGMA quick_check(1)").fetchone()[0].replace("\n", "; ")
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorname", "") not in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
                raise
            damage = str(exc)
        if damage != "ok" or version != STATE_VERSION:
            self.db.close()
            raise StateError(f"{self.path} is damaged ({damage}). {rebuild}" if damage != "ok" else
                             f"{self.path} holds state version {version}, written by another fluxwatch (this one reads "
                             f"version {STATE_VERSION}: alert schema {SCHEMA_VERSION}). {rebuild}")
        self.db.executescript(INDEXES)
        self.outbox = Outbox(self.db)
        self.n_frames, self.pixels = n_frames, pixels
        self._thinned_before: int | None = None  # the last score thinning's bound (slot)
        #: The open passages' masking curves and alert states, read from the database at the first snapshot and
        #: written through at every commit after it, so that a frame never reads back what the step itself produced.
        self._kept: dict[Key, Kept] | None = None

    # ---- the frame step's snapshot ------------------------------------------------------------------

    def snapshot(self, slot: int) -> StepState:
        """What the frame step reads before the frame of ``slot``, in one read transaction (:class:`StepState`)."""
        with self.db:
            self.db.execute("BEGIN")
            newest = self.newest_frame()
            passages = self.open_passages()
            earliest = slot - SEARCH_DAYS * SLOTS_PER_DAY  # no passage open at slot began before (common.passage)
            recorded = {(pid, start) for pid, start in self.db.execute(
                "SELECT patch_id, start_slot FROM passages WHERE start_slot >= ?", (earliest,))}
            observed = self.observed_slots(min([*passages.values(), earliest]), slot)
            if self._kept is None:
                self._kept = self._read_open()
        open_ = {(pid, start): (self._kept.get((pid, start)) or Kept(AlertState(pid, passage_label(start)))).passage(
            self._mapped(pid, start)) for pid, start in passages.items()}
        return StepState(slot, None if newest is None else newest[0], passages, recorded, observed, open_,
                         (self.n_frames, self.pixels, self.pixels))

    def _read_open(self) -> dict[Key, Kept]:
        """The open passages' curves and alert states as the database holds them (at start)."""
        kept = {(pid, start): Kept(AlertState(**json.loads(state))) for pid, start, state in self.db.execute(
            "SELECT a.patch_id, a.start_slot, a.state FROM alert_states a JOIN passages p "
            "USING (patch_id, start_slot) WHERE p.status = 'open'")}
        for pid, start, frame, probs, summary in self.db.execute(
                "SELECT s.patch_id, s.start_slot, s.frame, s.probs, s.summary FROM scores s JOIN passages p "
                "USING (patch_id, start_slot) WHERE p.status = 'open' ORDER BY s.frame"):
            k = kept.setdefault((pid, start), Kept(AlertState(pid, passage_label(start))))
            k.add(frame, json.loads(probs), summary)
        return kept

    def _mapped(self, patch_id: str, start_slot: int) -> np.ndarray:
        """A passage's video mapped read only (all 0 G when it has none yet)."""
        return mapped_video(self.video_path(patch_id, start_slot), (self.n_frames, self.pixels, self.pixels))

    # ---- videos and frames ---------------------------------------------------------------------------

    def video_path(self, patch_id: str, start_slot: int) -> Path:
        """The file of a patch passage's rolling video."""
        return video_file(self.dir, patch_id, start_slot)

    def video(self, patch_id: str, start_slot: int) -> np.memmap:
        """The rolling video (n_frames, pixels, pixels) float32, G, of a patch passage (created as zeros)."""
        path = self.video_path(patch_id, start_slot)
        shape = (self.n_frames, self.pixels, self.pixels)
        if not path.exists():  # its blocks allocated now: a full disk fails here, not as SIGBUS on a mapped write
            tmp = path.with_name(path.name + ".tmp")
            with tmp.open("wb") as f:
                os.posix_fallocate(f.fileno(), 0, int(np.prod(shape)) * 4)
            tmp.replace(path)
        return np.memmap(path, dtype=np.float32, mode="r+", shape=shape)

    def has_frame(self, slot: int) -> bool:
        return self.db.execute("SELECT 1 FROM frames WHERE slot = ?", (slot,)).fetchone() is not None

    def frame_source(self, slot: int) -> str | None:
        """The name of the file a slot's stored frame was read from (None if the slot has none)."""
        row = self.db.execute("SELECT source FROM frames WHERE slot = ?", (slot,)).fetchone()
        return None if row is None else row[0]

    def read_video(self, patch_id: str, start_slot: int) -> np.ndarray | None:
        """A copy of a patch passage's rolling video (n_frames, pixels, pixels) float32, G (frames not yet
        observed are 0 G), or None if it has none; never creates one (the API's read)."""
        path = self.video_path(patch_id, start_slot)
        if not path.exists():
            return None
        return np.array(np.memmap(path, dtype=np.float32, mode="r", shape=(self.n_frames, self.pixels, self.pixels)))

    def observed_slots(self, lo: int, hi: int) -> np.ndarray:
        """Ingested slots in [lo, hi)."""
        return np.sort(np.array([slot for slot, in all_at_once(self.db, "slot", "frames WHERE slot >= ? AND slot < ?",
                                                                (lo, hi))], dtype=np.int64))

    def filled_video(self, patch_id: str, start_slot: int, hi: int) -> np.ndarray:
        """Frames [0, hi) of a passage's video, gaps filled as the step fills them (:func:`serving.results.filled_frames`)."""
        return filled_frames(self._mapped(patch_id, start_slot), start_slot, 0, hi,
                             self.observed_slots(start_slot, start_slot + hi))

    def thin_scores(self, before_slot: int, every: int) -> int:
        """Thin the scores of closed passages from frames before ``before_slot`` to every ``every``-th frame, the
        frames their alert events came from and their last frame; returns the rows removed.

        After the first call, only the frames from where the previous call left every passage closed on are looked
        at (through the index on ``slot``): its ``before_slot``, or ``SEARCH_DAYS`` before its newest frame when that is
        earlier (no passage lasts longer); so a call costs the same after a year as after a week."""
        since = -1 if self._thinned_before is None else self._thinned_before
        newest = self.newest_frame()
        self._thinned_before = min(before_slot, (newest[0] if newest else 0) - SEARCH_DAYS * SLOTS_PER_DAY)
        rows = self.db.execute(
            "SELECT s.rowid, s.patch_id, s.start_slot, s.frame FROM scores s CROSS JOIN passages p "
            "USING (patch_id, start_slot) WHERE s.slot >= ? AND s.slot < ? AND p.status = 'closed' AND s.frame % ? != 0 "
            "AND s.frame < (SELECT MAX(frame) FROM scores l WHERE l.patch_id = s.patch_id AND l.start_slot = s.start_slot)",
            (since, before_slot, every)).fetchall()
        if not rows:
            return 0
        patches = sorted({pid for _, pid, _, _ in rows})
        events = set(self.db.execute(  # the events of these passages, all from frames after the earliest's start
            "SELECT patch_id, json_extract(payload, '$.passage'), json_extract(payload, '$.frame') FROM alerts "
            f"WHERE frame_time >= ? AND patch_id IN ({', '.join('?' * len(patches))})",
            [slot_isot(min(start for _, _, start, _ in rows)) + "Z", *patches]))
        gone = [(rowid,) for rowid, pid, start, frame in rows if (pid, passage_label(start), frame) not in events]
        with self.db:
            self.db.executemany("DELETE FROM scores WHERE rowid = ?", gone)
        return len(gone)

    def open_alert_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM patch_status WHERE json_extract(alert, '$.status') = ?",
                               (AlertStatus.open.value,)).fetchone()[0]

    # ---- the one write ---------------------------------------------------------------------------

    def commit(self, result: FrameResult, messages: list[Message]) -> None:
        """Record a frame's result and its outbox messages atomically (video frames flushed first)."""
        for (pid, start), k, frame in result.video_frames:
            video = self.video(pid, start)
            video[k] = frame
            video.flush()
        fault_point("video")
        with self.db:
            db = self.db
            db.executemany("INSERT INTO passages VALUES (?, ?, 'open')", result.opened)
            db.executemany("UPDATE passages SET status = 'closed' WHERE patch_id = ? AND start_slot = ?", result.closed)
            db.execute("INSERT INTO frames VALUES (?, ?, ?, ?)", (result.slot, result.time, result.source, time.time()))
            summaries = [r.score.model_dump_json() for r in result.scores]
            db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?)",
                           [(r.key[0], r.key[1], r.score.frame, result.slot, json.dumps(r.members), summary)
                            for r, summary in zip(result.scores, summaries)])
            db.executemany("INSERT OR REPLACE INTO alert_states VALUES (?, ?, ?)",
                           [(pid, start, json.dumps(state.to_dict())) for (pid, start), state in result.alert_states.items()])
            db.executemany("INSERT OR IGNORE INTO alerts VALUES (?, ?, ?, ?, ?)",
                           [(e.event_id, e.alert_id, e.patch_id, e.frame_time, result.event_json(e))
                            for e in result.events])
            now = time.time()
            db.executemany("INSERT OR IGNORE INTO outbox (topic, key, event_id, payload, created) VALUES (?, ?, ?, ?, ?)",
                           [(m.topic, m.key, m.event_id, m.payload, now) for m in messages])
            opening, closing, scoring, alerting = PATCH_STATUS
            db.executemany(opening, result.opened)
            db.executemany(closing, result.closed)
            db.executemany(scoring, [(r.score.frame, summary, *r.key, r.score.frame)
                                     for r, summary in zip(result.scores, summaries)])
            db.executemany(alerting, [(json.dumps(state.to_dict()), *key) for key, state in result.alert_states.items()])
        if self._kept is not None:
            keep(self._kept, result, summaries)

    def publisher_outbox(self) -> Outbox:
        """The outbox on a new connection, for the publisher thread."""
        return Outbox(sqlite3.connect(self.path, timeout=30))

    def reader(self) -> Reader:
        return Reader(self.path)


def _one_snapshot(method):
    """Run a :class:`Reader` method's queries in one read transaction, so that they see one committed state: never
    a frame committed between two of them (a ``GET /patches`` mixing two frames' scores)."""
    @functools.wraps(method)
    def read(self, *args, **kwargs):
        self.db.execute("BEGIN")
        try:
            return method(self, *args, **kwargs)
        finally:
            self.db.execute("COMMIT")
    return read


class Reader(_Queries):
    """Read-only queries (the HTTP API): one read-only connection per thread, committed data only."""

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()

    @property
    def db(self) -> sqlite3.Connection:  # type: ignore[override]
        if not hasattr(self._local, "db"):
            self._local.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        return self._local.db

    def patches(self) -> list[PatchSummary]:
        """Current status of every patch with an open passage (one indexed read of :data:`PATCH_STATUS`'s table)."""
        out = []
        for pid, start, alert_json, latest in sorted(all_at_once(self.db, "patch_id, start_slot, alert, latest",
                                                                 "patch_status WHERE open = 1")):
            alert = _alert(pid, start, alert_json)
            out.append(PatchSummary(patch_id=pid, passage_start=slot_isot(start), alert=alert.status,
                                    alert_id=alert.alert_id, latest=latest and Score.model_validate_json(latest)))
        return out

    @_one_snapshot
    def patch(self, pid: str) -> PatchDetail | None:
        """One patch: its latest passage's probability history and onset estimate."""
        row = self.db.execute("SELECT start_slot, open, alert, latest FROM patch_status WHERE patch_id = ?",
                              (pid,)).fetchone()
        if row is None:
            return None
        start, open_, alert_json, latest = row
        return PatchDetail(patch_id=pid, passage_start=slot_isot(start), passage_status="open" if open_ else "closed",
                           history=self.history(pid, start),
                           onset=Score.model_validate_json(latest).onset if latest else None,
                           alert=_alert(pid, start, alert_json).to_dict())

    def scores_at(self, slot: int) -> dict[str, tuple[float, str, float]]:
        """{patch id: (ensemble median, onset time ISO, onset uncertainty h)} of the passages a frame scored (those
        the retention has not thinned)."""
        return {pid: (median, onset, hours) for pid, median, onset, hours in all_at_once(
            self.db, "patch_id, json_extract(summary, '$.probability.median'), json_extract(summary, '$.onset.time_utc'), "
                     "json_extract(summary, '$.onset.uncertainty_hours')", "scores WHERE slot = ?", (slot,))}

    def history(self, patch_id: str, start_slot: int) -> list[HistoryPoint]:
        """A passage's probability at each frame scored, oldest first (only the fields a history shows are read
        from each stored score: a passage's 225 frames cost a few ms)."""
        out = []
        for frame, frame_time, p in sorted(all_at_once(  # the probability as its stored JSON: its numbers' own text
                self.db, "frame, json_extract(summary, '$.frame_time'), json(json_extract(summary, '$.probability'))",
                "scores WHERE patch_id = ? AND start_slot = ?", (patch_id, start_slot))):
            out.append(HistoryPoint(frame=frame, frame_time=frame_time, median=p["median"], p25=p["p25"], p75=p["p75"]))
        return out

    @_one_snapshot
    def passage(self, patch_id: str, start_slot: int | None = None) -> tuple[int, str, int] | None:
        """(start slot, status, last scored frame or -1) of a patch's passage starting at ``start_slot`` (its
        latest passage when None), or None if there is no such passage."""
        row = self.db.execute("SELECT start_slot, status FROM passages WHERE patch_id = ? AND (? IS NULL OR start_slot = ?) "
                              "ORDER BY start_slot DESC LIMIT 1", (patch_id, start_slot, start_slot)).fetchone()
        if row is None:
            return None
        last = self.db.execute("SELECT MAX(frame) FROM scores WHERE patch_id = ? AND start_slot = ?", (patch_id, row[0])).fetchone()[0]
        return int(row[0]), str(row[1]), -1 if last is None else int(last)

    def passages(self) -> list[tuple[str, int]]:
        """(patch id, start slot) of every passage recorded, oldest start first."""
        return [(pid, start) for pid, start in self.db.execute(
            "SELECT patch_id, start_slot FROM passages ORDER BY start_slot, patch_id")]

    def scores(self, patch_id: str, start_slot: int) -> list[Score]:
        """A passage's scores, oldest frame first."""
        return [Score.model_validate_json(r[0]) for r in self.db.execute(
            "SELECT summary FROM scores WHERE patch_id = ? AND start_slot = ? ORDER BY frame", (patch_id, start_slot))]

    def alerts(self, since: Time | None = None) -> list[AlertEvent]:
        """Alert events from frames at or after ``since`` (all when None), in the order they were published."""
        return [e for _, e in self.alert_rows(since)]

    def alert(self, event_id: str) -> AlertEvent | None:
        """The alert event ``event_id``, or None if there is none."""
        row = self.db.execute("SELECT payload FROM alerts WHERE event_id = ?", (event_id,)).fetchone()
        return None if row is None else AlertEvent.model_validate_json(row[0])

    def alert_rows(self, since: Time | None = None, until: Time | None = None, kinds: Sequence[str] = (),
                   box: tuple[float, float, float, float] | None = None, min_probability: float | None = None,
                   simulated: bool | None = None, after: int | None = None,
                   limit: int | None = None, patch_id: str | None = None) -> list[tuple[int, AlertEvent]]:
        """(publication sequence number, event) of alert events in the order they were published (the order of
        their frames, but for a late frame's events, which follow the events already published), filtered in SQL;
        every filter is off when None or empty.

        since, until : frame time at or after ``since`` and before ``until`` (half-open).
        kinds : event kinds (:class:`~contract.events.EventKind` values) to keep.
        box : (lon_min, lon_max, lat_min, lat_max), Carrington deg, bounds included, of the patch centre
            (``patch.carrington``); ``lon_min > lon_max`` is a box across 0° (e.g. 350 to 10).
        min_probability : ensemble median (``probability.median``) at least this.
        simulated : events from simulated frames only (True) or observed ones only (False).
        after : sequence number of the last event already read: only events published after it (keyset pages).
        limit : at most this many events.
        patch_id : one patch's events only.
        """
        where: list[tuple[str, list]] = [("1", [])]  # (SQL condition, its parameters)
        if since is not None:  # frame times are stored as the events give them: RFC 3339, "Z" (contract.events.UtcTime)
            where.append(("frame_time >= ?", [since.utc.isot + "Z"]))
        if until is not None:
            where.append(("frame_time < ?", [until.utc.isot + "Z"]))
        if kinds:
            where.append((f"json_extract(payload, '$.event') IN ({', '.join('?' * len(kinds))})", list(kinds)))
        if box is not None:
            lon_min, lon_max, lat_min, lat_max = box
            lon, lat = "json_extract(payload, '$.patch.carrington.lon')", "json_extract(payload, '$.patch.carrington.lat')"
            where.append((f"({lon} >= ? {'AND' if lon_min <= lon_max else 'OR'} {lon} <= ?) AND {lat} BETWEEN ? AND ?",
                          [lon_min, lon_max, lat_min, lat_max]))
        if min_probability is not None:
            where.append(("json_extract(payload, '$.probability.median') >= ?", [min_probability]))
        if simulated is not None:
            where.append(("json_extract(payload, '$.simulated') = ?", [int(simulated)]))
        if after is not None:
            where.append(("rowid > ?", [after]))
        if patch_id is not None:
            where.append(("patch_id = ?", [patch_id]))
        sql = " AND ".join(condition for condition, _ in where)
        args = [a for _, params in where for a in params] + [-1 if limit is None else limit]
        rows = all_at_once(self.db, "seq, payload", f"(SELECT rowid AS seq, payload FROM alerts WHERE {sql} ORDER BY rowid "
                                                  "LIMIT ?)", args)
        return [(seq, AlertEvent.model_validate_json(payload)) for seq, payload in sorted(rows)]
