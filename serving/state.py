"""Persistent service state: SQLite for facts, one memory-mapped array per rolling patch video.

Tables: ``frames`` (every ingested slot), ``passages`` (a patch's disk
passage: its first slot and status), ``scores`` (each member's probability
per patch, passage and frame: the probability history), ``alert_states``
and the outbox (:mod:`serving.outbox`). Video frames are written to the
arrays and flushed *before* the transaction that records the frame commits,
so a killed service never records a frame it has not stored; a frame whose
transaction did not commit is still in ``incoming/`` and is ingested again.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np

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
"""


class State:
    """The service's state under ``data_dir``."""

    def __init__(self, data_dir: str | Path, n_frames: int, pixels: int):
        self.dir = Path(data_dir)
        (self.dir / "videos").mkdir(parents=True, exist_ok=True)
        self.db_path = self.dir / "state.sqlite"
        self.db = sqlite3.connect(self.db_path, timeout=30, check_same_thread=False)
        self.db.executescript(SCHEMA)
        self.n_frames, self.pixels = n_frames, pixels

    def video(self, patch_id: str, start_slot: int) -> np.memmap:
        """The rolling video (n_frames, pixels, pixels) float32, G, of a patch passage (created as zeros)."""
        path = self.dir / "videos" / f"{patch_id}_{start_slot}.f32"
        shape = (self.n_frames, self.pixels, self.pixels)
        if not path.exists():
            np.memmap(path, dtype=np.float32, mode="w+", shape=shape).flush()
        return np.memmap(path, dtype=np.float32, mode="r+", shape=shape)

    def has_frame(self, slot: int) -> bool:
        return self.db.execute("SELECT 1 FROM frames WHERE slot = ?", (slot,)).fetchone() is not None

    def observed_slots(self, lo: int, hi: int) -> np.ndarray:
        """Ingested slots in [lo, hi)."""
        return np.array([r[0] for r in self.db.execute("SELECT slot FROM frames WHERE slot >= ? AND slot < ?", (lo, hi))],
                        dtype=np.int64)

    def newest_frame(self):
        return self.db.execute("SELECT slot, time, ingested FROM frames ORDER BY slot DESC LIMIT 1").fetchone()

    def open_passages(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT patch_id, start_slot FROM passages WHERE status = 'open'"))

    def history(self, patch_id: str, start_slot: int) -> list[dict]:
        """The summaries of a passage's scores, oldest first."""
        return [json.loads(r[0]) for r in self.db.execute(
            "SELECT summary FROM scores WHERE patch_id = ? AND start_slot = ? ORDER BY frame", (patch_id, start_slot))]

    def curves(self, patch_id: str, start_slot: int) -> tuple[np.ndarray, np.ndarray]:
        """(frames (k,), member probabilities (n_members, k)) of a passage so far: its masking curves."""
        rows = self.db.execute("SELECT frame, probs FROM scores WHERE patch_id = ? AND start_slot = ? ORDER BY frame",
                               (patch_id, start_slot)).fetchall()
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 0))
        return np.array([r[0] for r in rows]), np.array([json.loads(r[1]) for r in rows]).T

    def latest_summary(self, patch_id: str, start_slot: int) -> dict | None:
        """The summary of a passage's latest score (None before its first)."""
        row = self.db.execute("SELECT summary FROM scores WHERE patch_id = ? AND start_slot = ? ORDER BY frame DESC LIMIT 1",
                              (patch_id, start_slot)).fetchone()
        return json.loads(row[0]) if row else None

    def alert_state(self, patch_id: str, start_slot: int) -> dict | None:
        row = self.db.execute("SELECT state FROM alert_states WHERE patch_id = ? AND start_slot = ?",
                              (patch_id, start_slot)).fetchone()
        return json.loads(row[0]) if row else None
