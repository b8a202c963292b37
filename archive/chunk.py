"""One task of the backfill: the frame step over one time chunk, with the warm-up its open passages need.

The archive is cut into chunks of consecutive slots. A passage lasts at most
``n_frames`` slots (its video's length), so every passage open in a chunk
began at most ``n_frames`` slots before the chunk's first slot: a chunk
replays those slots first (the warm-up), through the same step and frame
runner as the live service, its state kept in memory
(:class:`serving.keeper.MemoryKeeper`: nothing of it must outlive the task),
and keeps only what its own slots produce. Its scores, events and
alert ids are then those of a service that had ingested every frame from the
start (a test holds the backfill to the sequential service). The equality is
exact for the default grid; with overlapping tiles (one alert per region
across neighbours) a neighbour's alert at the very start of the warm-up can
differ.

A chunk writes its outputs into ``out/chunks/<first>-<end>/`` through a
scratch folder renamed into place, so a killed job leaves whole chunks or
none, and a rerun skips the chunks already there.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
from threadpoolctl import threadpool_limits

from archive.frames import Frames
from common.config import ServiceConfig
from ingest.errors import IngestError
from serving.bundle import ModelBundle
from serving.keeper import MemoryKeeper
from serving.results import FrameResult
from serving.runner import FrameRunner
from serving.step import frame_step

#: What a finished chunk folder holds.
EVENTS, SCORES, REPORT = "events.jsonl", "scores.parquet", "report.json"
SCORE_COLUMNS = ["patch_id", "passage_start_slot", "frame", "slot", "frame_time", "median", "p25", "p75", "members",
                 "onset_frame", "onset_uncertainty_h", "stonyhurst_lon", "stonyhurst_lat"]


@dataclass(frozen=True)
class Chunk:
    """Slots [first, end) whose results the chunk keeps, after replaying slots [warm_from, first)."""

    first: int
    end: int
    warm_from: int

    @property
    def name(self) -> str:
        return f"{self.first:07d}-{self.end:07d}"


def plan(slots: list[int], chunk_slots: int, warmup: int, first: int | None = None) -> list[Chunk]:
    """The chunks of ``chunk_slots`` slots that cover ``slots`` from slot ``first`` on (from the first of
    ``slots`` when None), each replaying up to ``warmup`` slots before it, never before the first of ``slots``:
    a sequential service fed ``slots`` starts there too. Returns them in time order."""
    start, end = min(slots), max(slots) + 1
    first = start if first is None else max(start, first)
    return [Chunk(a, min(a + chunk_slots, end), max(start, a - warmup)) for a in range(first, end, chunk_slots)]


@dataclass
class ChunkReport:
    """What a chunk did: frames kept and replayed, files refused, and where the time went (s, kept frames)."""

    chunk: str
    frames: int = 0
    warmup_frames: int = 0
    events: int = 0
    refused: list[dict] = field(default_factory=list)
    #: read: reading the FITS file; project: onto the passages' patches; score: the ensemble's streams, onsets and
    #: alert decisions; passages: opening and closing them; store: the state's snapshot and the commit
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(
        ("read", "project", "score", "passages", "store"), 0.0))
    elapsed_s: float = 0.0


@functools.cache
def _bundle(path: str, threads: int) -> ModelBundle:
    """The bundle, loaded once per worker process."""
    return ModelBundle(path, threads=threads)


def score_rows(result: FrameResult) -> list[dict]:
    """One row per passage scored by a frame: the columns of ``scores.parquet``."""
    return [{"patch_id": r.key[0], "passage_start_slot": r.key[1], "frame": r.score.frame, "slot": result.slot,
             "frame_time": r.score.frame_time, "median": r.score.probability.median, "p25": r.score.probability.p25,
             "p75": r.score.probability.p75, "members": r.members, "onset_frame": r.score.onset.frame,
             "onset_uncertainty_h": r.score.onset.uncertainty_hours, "stonyhurst_lon": r.score.patch.stonyhurst.lon,
             "stonyhurst_lat": r.score.patch.stonyhurst.lat} for r in result.scores]


def run_chunk(chunk: Chunk, frames: Frames, bundle: str, config: ServiceConfig, out: str, threads: int = 1) -> ChunkReport:
    """Run the frame step over ``chunk`` and write its folder under ``out/chunks`` (skipped when it is there)."""
    final = Path(out) / "chunks" / chunk.name
    if (final / REPORT).exists():
        return ChunkReport(**json.loads((final / REPORT).read_text()))
    t_start = time.perf_counter()
    model = _bundle(bundle, threads)
    step = frame_step(model, config)
    report, events, rows = ChunkReport(chunk.name), [], []
    with threadpool_limits(threads):
        runner = FrameRunner(step, MemoryKeeper(model.n_frames, model.pixels))
        for slot in [s for s in frames.slots() if chunk.warm_from <= s < chunk.end]:
            kept = slot >= chunk.first
            t0 = time.perf_counter()
            try:
                mag = frames.read(slot, model.instrument)
            except IngestError as exc:
                if kept:
                    report.refused.append({"file": frames.name(slot), "problem": str(exc)})
                continue
            t1 = time.perf_counter()
            result = runner.run(mag, frames.name(slot))
            t2 = time.perf_counter()
            if not kept:
                report.warmup_frames += 1
                continue
            report.frames += 1
            s = report.seconds
            s["read"] += t1 - t0
            s["project"] += result.projection_seconds
            s["score"] += result.scoring_seconds
            s["passages"] += t2 - t1 - result.state_seconds - result.projection_seconds - result.scoring_seconds
            s["store"] += result.state_seconds
            events += result.events
            rows += score_rows(result)
        report.events = len(events)
        report.elapsed_s = time.perf_counter() - t_start
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{chunk.name}-", dir=final.parent))  # same file system: renamed
        staging.chmod(0o755)
        (staging / EVENTS).write_text("".join(e.model_dump_json() + "\n" for e in events))
        pd.DataFrame(rows, columns=SCORE_COLUMNS).to_parquet(staging / SCORES, index=False)
        (staging / REPORT).write_text(json.dumps(asdict(report)))
        try:
            os.rename(staging, final)
        except OSError:  # another run of this chunk finished first (a retried task): its folder stands
            shutil.rmtree(staging, ignore_errors=True)
    return report

