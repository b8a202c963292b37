"""The review desk's persistent state: items in queue order, every decision with who made it and when, the final
decision rule, progress and agreement between reviewers.

One SQLite file (WAL, so the desk server and a waiting ``train-ensemble`` in another process share it). Tables:

- ``items``: one row per thing to review, in the order it was enqueued (``seq``, the queue order). ``key`` is
  unique within the desk: ``video:<video id>`` for a dataset video (a training video is reviewed at most once
  per run), ``alert:<alert id>`` for a live alert. ``queue`` is ``training`` or ``alerts``; ``info`` is JSON
  of what the desk shows; ``label`` and ``probability`` are the model side (hidden unless asked for).
- ``decisions``: every answer ever given (1 emergence / confirm, 0 non-emergence / reject, -1 unsure), by
  ``reviewer`` at ``at`` (UTC ISO, ms). ``state`` is ``active``, ``undone`` (the reviewer pressed undo) or
  ``replaced`` (the same reviewer answered the item again); ``ended`` says when it stopped counting.

Final decision rule (:func:`final_answer`): each reviewer's active answer counts once. An item is decided when
at least ``min_decisive`` reviewers gave a decisive answer and one answer has a strict majority of them: one
decisive answer suffices by default; two reviewers who disagree leave it open for a third, whose answer then
makes the majority. "Unsure" counts for nothing: the item goes back to the queue for a later look, preferably
by another reviewer (:meth:`Decisions.queue_for`).
"""
from __future__ import annotations

import json
import sqlite3
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from itertools import combinations
from pathlib import Path

SCHEMA = """
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, queue TEXT NOT NULL, info TEXT NOT NULL,
    label INTEGER, probability REAL, added TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, item INTEGER NOT NULL REFERENCES items (seq), reviewer TEXT NOT NULL,
    answer INTEGER NOT NULL CHECK (answer IN (-1, 0, 1)), at TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'undone', 'replaced')), ended TEXT);
CREATE INDEX IF NOT EXISTS decisions_item ON decisions (item, state);
CREATE INDEX IF NOT EXISTS decisions_reviewer ON decisions (reviewer, state, id);
"""

#: A pause longer than this between two of a reviewer's decisions is a break, not their pace (s).
BREAK_S = 600.0


class Answer(IntEnum):
    """A reviewer's answer. For a live alert, emergence confirms it and non-emergence rejects it."""

    EMERGENCE = 1
    NON_EMERGENCE = 0
    UNSURE = -1


def utc_now() -> str:
    """The current UTC time, ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def final_answer(answers: Iterable[int], min_decisive: int = 1) -> int | None:
    """The item's decision (0/1) from each reviewer's active answer, or None while it needs another look."""
    decisive = [a for a in answers if a != Answer.UNSURE]
    yes = sum(decisive)
    no = len(decisive) - yes
    if len(decisive) < min_decisive or yes == no:
        return None
    return int(yes > no)


def cohen_kappa(a: Sequence[int], b: Sequence[int]) -> float | None:
    """Cohen's kappa of two raters' 0/1 answers on the same items; None when chance agreement is certain."""
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b)) / n
    pa, pb = sum(a) / n, sum(b) / n
    chance = pa * pb + (1 - pa) * (1 - pb)
    return None if chance >= 1.0 else (observed - chance) / (1.0 - chance)


@dataclass(frozen=True)
class Item:
    """One thing to review. ``seq`` is its place in the queue (and its id in the desk's URLs)."""

    seq: int
    key: str
    queue: str
    info: dict
    label: int | None
    probability: float | None


@dataclass(frozen=True)
class Decision:
    """One recorded answer."""

    id: int
    item: int
    reviewer: str
    answer: Answer
    at: str


@dataclass(frozen=True)
class Progress:
    """A queue seen by one reviewer: items decided of all; items left; of those, the ones only another reviewer
    can settle (this reviewer already answered them decisively); seconds per decision of this reviewer (of everyone
    while they have fewer than two decisions; None before anyone has two) and the estimate of time left (s)."""

    done: int
    total: int
    left: int
    for_others: int
    pace_s: float | None
    eta_s: float | None


class Decisions:
    """The desk's database at ``path`` (created with its folder). ``min_decisive``, when given, sets the decisive
    answers every item of this desk needs (kept in the database, so every process using it applies one rule;
    1 until set; more asks several reviewers about every item)."""

    def __init__(self, path: str | Path, min_decisive: int | None = None):
        if min_decisive is not None and min_decisive < 1:
            raise ValueError(f"min_decisive must be at least 1, got {min_decisive}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = self._connect()
        try:
            db.executescript(SCHEMA)
        finally:
            db.close()
        if min_decisive is not None:
            self.set_meta("min_decisive", str(min_decisive))

    @property
    def min_decisive(self) -> int:
        """Decisive answers an item needs (the desk's setting)."""
        return int(self.meta("min_decisive") or 1)

    def _connect(self) -> sqlite3.Connection:
        # One short-lived connection per call: the desk's worker threads and the waiting loop never share one.
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA busy_timeout = 30000")
        return db

    def _query(self, sql: str, args: Sequence = ()) -> list[tuple]:
        db = self._connect()
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()

    # ---- meta ----------------------------------------------------------------------------------

    def set_meta(self, key: str, value: str) -> None:
        db = self._connect()
        try:
            with db:
                db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))
        finally:
            db.close()

    def meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    # ---- items ---------------------------------------------------------------------------------

    def enqueue(self, queue: str, entries: Sequence[tuple[str, dict, int | None, float | None]]) -> list[int]:
        """Add ``(key, info, label, probability)`` entries at the end of ``queue``, in the order given; an entry
        whose key is already there keeps its place and its decisions (its info, label and probability are
        refreshed). Returns the items' ``seq``, in the order of ``entries``."""
        now = utc_now()
        db = self._connect()
        try:
            with db:
                for key, info, label, prob in entries:
                    row = db.execute("SELECT queue FROM items WHERE key = ?", (key,)).fetchone()
                    if row is not None and row[0] != queue:
                        raise ValueError(f"item {key!r} is in queue {row[0]!r}, not {queue!r}")
                    db.execute("INSERT INTO items (key, queue, info, label, probability, added) VALUES (?, ?, ?, ?, ?, ?) "
                               "ON CONFLICT (key) DO UPDATE SET info = excluded.info, label = excluded.label, "
                               "probability = excluded.probability",
                               (key, queue, json.dumps(info), label, prob, now))
                keys = [e[0] for e in entries]
                seqs = dict(db.execute(f"SELECT key, seq FROM items WHERE key IN ({','.join('?' * len(keys))})", keys)) if keys else {}
        finally:
            db.close()
        return [seqs[k] for k in keys]

    def item(self, seq: int) -> Item | None:
        rows = self._query("SELECT seq, key, queue, info, label, probability FROM items WHERE seq = ?", (seq,))
        if not rows:
            return None
        s, key, queue, info, label, prob = rows[0]
        return Item(s, key, queue, json.loads(info), label, prob)

    def items(self, queue: str) -> list[Item]:
        """Every item of ``queue`` in queue order."""
        return [Item(s, k, q, json.loads(i), lab, p) for s, k, q, i, lab, p in self._query(
            "SELECT seq, key, queue, info, label, probability FROM items WHERE queue = ? ORDER BY seq", (queue,))]

    def queues(self) -> list[str]:
        return [r[0] for r in self._query("SELECT DISTINCT queue FROM items ORDER BY queue")]

    # ---- decisions -----------------------------------------------------------------------------

    def decide(self, seq: int, reviewer: str, answer: Answer | int, at: str | None = None) -> Decision:
        """Record ``reviewer``'s answer on item ``seq`` (replacing their earlier active answer on it)."""
        answer = Answer(int(answer))
        reviewer = reviewer.strip()
        if not reviewer:
            raise ValueError("a decision needs the reviewer's name")
        at = at or utc_now()
        db = self._connect()
        try:
            with db:
                if db.execute("SELECT 1 FROM items WHERE seq = ?", (seq,)).fetchone() is None:
                    raise KeyError(f"no review item {seq}")
                db.execute("UPDATE decisions SET state = 'replaced', ended = ? WHERE item = ? AND reviewer = ? AND state = 'active'",
                           (at, seq, reviewer))
                cur = db.execute("INSERT INTO decisions (item, reviewer, answer, at) VALUES (?, ?, ?, ?)",
                                 (seq, reviewer, int(answer), at))
                if cur.lastrowid is None:
                    raise RuntimeError(f"{self.path}: the decision on item {seq} was not stored")
                return Decision(cur.lastrowid, seq, reviewer, answer, at)
        finally:
            db.close()

    def undo(self, reviewer: str, queue: str | None = None) -> int | None:
        """Withdraw ``reviewer``'s latest active decision (in ``queue``, if given); returns its item's seq, or None
        when they have nothing left to undo. Repeated undos go further back."""
        db = self._connect()
        try:
            with db:
                row = db.execute("SELECT d.id, d.item FROM decisions d JOIN items i ON i.seq = d.item "
                                 "WHERE d.reviewer = ? AND d.state = 'active' AND (? IS NULL OR i.queue = ?) "
                                 "ORDER BY d.id DESC LIMIT 1", (reviewer, queue, queue)).fetchone()
                if row is None:
                    return None
                db.execute("UPDATE decisions SET state = 'undone', ended = ? WHERE id = ?", (utc_now(), row[0]))
                return int(row[1])
        finally:
            db.close()

    def history(self, queue: str | None = None, reviewer: str | None = None) -> list[tuple[Decision, str]]:
        """Every decision ever recorded (oldest first) with its state, optionally of one queue or reviewer."""
        rows = self._query("SELECT d.id, d.item, d.reviewer, d.answer, d.at, d.state FROM decisions d JOIN items i ON i.seq = d.item "
                           "WHERE (? IS NULL OR i.queue = ?) AND (? IS NULL OR d.reviewer = ?) ORDER BY d.id",
                           (queue, queue, reviewer, reviewer))
        return [(Decision(i, item, r, Answer(a), at), state) for i, item, r, a, at, state in rows]

    def votes(self, queue: str | None = None) -> dict[int, dict[str, int]]:
        """{item seq: {reviewer: active answer}} of every item (of ``queue``) in queue order; items nobody answered map to {}."""
        out: dict[int, dict[str, int]] = {s: {} for (s,) in self._query(
            "SELECT seq FROM items WHERE (? IS NULL OR queue = ?) ORDER BY seq", (queue, queue))}
        for item, reviewer, answer in self._query(
                "SELECT d.item, d.reviewer, d.answer FROM decisions d JOIN items i ON i.seq = d.item "
                "WHERE d.state = 'active' AND (? IS NULL OR i.queue = ?) ORDER BY d.id", (queue, queue)):
            out[item][reviewer] = answer
        return out

    def finals(self, keys: Sequence[str]) -> dict[str, int | None]:
        """{key: final decision (0/1) or None while open} for the given item keys (KeyError for an unknown key)."""
        if not keys:
            return {}
        found = dict(self._query(f"SELECT key, seq FROM items WHERE key IN ({','.join('?' * len(keys))})", list(keys)))
        missing = [k for k in keys if k not in found]
        if missing:
            raise KeyError(f"no review items {missing[:5]}")
        answers: dict[int, list[int]] = {s: [] for s in found.values()}
        for item, answer in self._query(
                f"SELECT item, answer FROM decisions WHERE state = 'active' AND item IN ({','.join('?' * len(found))})",
                list(found.values())):
            answers[item].append(answer)
        need = self.min_decisive
        return {k: final_answer(answers[found[k]], need) for k in keys}

    def final(self, seq: int) -> int | None:
        """Item ``seq``'s final decision (0/1), or None while it is open."""
        return final_answer([a for (a,) in self._query("SELECT answer FROM decisions WHERE item = ? AND state = 'active'", (seq,))],
                            self.min_decisive)

    def queue_for(self, reviewer: str, queue: str) -> list[int]:
        """The open items ``reviewer`` can look at, in the order to show them: first those nobody marked unsure
        (queue order), then those another reviewer marked unsure, then those this reviewer marked unsure. Items
        they answered decisively are left to others (a tie waits for a third reviewer)."""
        return [seq for tier in self._tiers(reviewer, queue) for seq in tier]

    def _tiers(self, reviewer: str, queue: str) -> tuple[list[int], list[int], list[int]]:
        tiers: tuple[list[int], list[int], list[int]] = ([], [], [])
        need = self.min_decisive
        for seq, votes in self.votes(queue).items():
            if final_answer(votes.values(), need) is not None:
                continue
            mine = votes.get(reviewer)
            if mine is None:
                tiers[1 if Answer.UNSURE in votes.values() else 0].append(seq)
            elif mine == Answer.UNSURE:
                tiers[2].append(seq)
        return tiers

    def next_for(self, reviewer: str, queue: str, after: int | None = None) -> int | None:
        """The item to show ``reviewer`` next, None when nothing is left for them. Without ``after``: the first of
        :meth:`queue_for`. When they skip item ``after`` (still open for them): the one after it in that order,
        wrapping round. When they have just answered ``after``: the next fresh item further down the queue (so an
        item skipped earlier comes back when they reach the end), else the first of :meth:`queue_for`."""
        tiers = self._tiers(reviewer, queue)
        order = tiers[0] + tiers[1] + tiers[2]
        if not order:
            return None
        if after in order:
            return order[(order.index(after) + 1) % len(order)]
        if after is not None:
            return next((seq for seq in tiers[0] if seq > after), order[0])
        return order[0]

    def progress(self, queue: str, reviewer: str) -> Progress:
        """How far ``queue`` is, and how long it will take at ``reviewer``'s pace (see :class:`Progress`)."""
        votes, need = self.votes(queue), self.min_decisive
        open_items = [v for v in votes.values() if final_answer(v.values(), need) is None]
        for_others = sum(1 for v in open_items if v.get(reviewer, Answer.UNSURE) != Answer.UNSURE)
        pace = self.pace(reviewer, queue)
        if pace is None:
            pace = self.pace(None, queue)
        left = len(open_items)
        return Progress(len(votes) - left, len(votes), left, for_others, pace, None if pace is None else pace * left)

    def pace(self, reviewer: str | None, queue: str) -> float | None:
        """Median seconds between consecutive decisions of ``reviewer`` (of each reviewer, when None) in ``queue``,
        breaks longer than :data:`BREAK_S` left out; None with fewer than two decisions."""
        by_reviewer: dict[str, list[datetime]] = {}
        for d, _ in self.history(queue, reviewer):
            by_reviewer.setdefault(d.reviewer, []).append(datetime.fromisoformat(d.at))
        gaps = [(b - a).total_seconds() for times in by_reviewer.values() for a, b in zip(times, times[1:])]
        gaps = [g for g in gaps if 0 <= g <= BREAK_S]
        return statistics.median(gaps) if gaps else None

    # ---- agreement -----------------------------------------------------------------------------

    def agreement(self, queue: str | None = None) -> dict:
        """Agreement between reviewers over items with at least two decisive answers (each reviewer's active one).

        Returns ``{"items": n, "unanimous": k, "fraction_agreeing": k / n (None if n = 0), "pairs": [{"reviewers":
        [a, b], "items": overlap, "fraction_agreeing", "cohen_kappa"}, ...], "reviewers": {name: {"decisive": .,
        "unsure": .}}}``; kappa is None where chance agreement is certain (both always gave the same answer).
        """
        votes = self.votes(queue)
        decisive = {s: {r: a for r, a in v.items() if a != Answer.UNSURE} for s, v in votes.items()}
        shared = [v for v in decisive.values() if len(v) >= 2]
        unanimous = sum(1 for v in shared if len(set(v.values())) == 1)
        reviewers: dict[str, dict[str, int]] = {}
        for v in votes.values():
            for name, answer in v.items():
                counts = reviewers.setdefault(name, {"decisive": 0, "unsure": 0})
                counts["unsure" if answer == Answer.UNSURE else "decisive"] += 1
        pairs = []
        for ra, rb in combinations(sorted(reviewers), 2):
            both = [(v[ra], v[rb]) for v in decisive.values() if ra in v and rb in v]
            if both:
                xa, xb = [x for x, _ in both], [y for _, y in both]
                pairs.append({"reviewers": [ra, rb], "items": len(both),
                              "fraction_agreeing": sum(x == y for x, y in both) / len(both), "cohen_kappa": cohen_kappa(xa, xb)})
        return {"items": len(shared), "unanimous": unanimous,
                "fraction_agreeing": unanimous / len(shared) if shared else None, "pairs": pairs, "reviewers": reviewers}
