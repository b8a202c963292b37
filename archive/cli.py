"""``fluxwatch-backfill``: the frame step over an archive of full-disk magnetograms, on Dask, into a catalog.

    fluxwatch-backfill /data/mdi/1996 --out catalog/1996             # a LocalCluster on this machine
    fluxwatch-backfill '/data/hmi/**/*.fits' --scheduler tcp://head:8786 --out /shared/catalog/hmi
    fluxwatch-backfill --synthetic --seed 3 --start 2000-06-20 --days 60 --out data/backfill

The period is cut into chunks (:mod:`archive.chunk`), each a Dask task that replays the slots its open
passages need and keeps its own; a rerun skips the chunks already written. Then the outputs are written, each
atomically, into ``--out``:

- ``alerts.jsonl``: the alert events (schema 4.0, the ids the live service gives), in publication order;
- ``scores.parquet``: every patch passage's score series (ensemble median, quartiles, members, onset);
- ``catalog.parquet``: the emergence catalog (:mod:`archive.catalog`), and ``butterfly.png``;
- ``report.json``: frames, refused files, where the time went, and on the synthetic Sun the comparison with
  the truth (:mod:`archive.truth`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd
from astropy.time import Time
from tqdm import tqdm

from archive.catalog import emergence_catalog, plot_butterfly
from archive.chunk import EVENTS, SCORES, ChunkReport, plan, run_chunk
from archive.frames import FileFrames, Frames, SyntheticFrames, input_paths, slots_of_files
from archive.truth import compare, truth_table
from common.clock import SLOTS_PER_DAY, slot_of_time
from common.config import ServiceConfig
from common.patches import PatchGrid
from contract.events import AlertEvent
from serving.bundle import ModelBundle

#: Files per task of the header scan.
SCAN_BATCH = 200


def _scan(client, paths: list[Path], progress: bool) -> FileFrames:
    """The files' slots, their headers read on the cluster (an archive holds millions of files)."""
    from distributed import as_completed

    batches = [[str(p) for p in paths[i : i + SCAN_BATCH]] for i in range(0, len(paths), SCAN_BATCH)]
    futures = client.map(slots_of_files, batches, pure=False)
    for _ in tqdm(as_completed(futures), total=len(futures), desc="reading headers", unit="batch", disable=not progress):
        pass
    return FileFrames.choose([f for batch in client.gather(futures) for f in batch])


#: Days of frames per task: each also replays the video's length (225 slots, 15 days) before it, 16% more work at
#: 91 days, and a year splits into four.
CHUNK_DAYS = 91.5


def backfill(inputs: Frames | list[Path], out: Path, bundle: str, config: ServiceConfig = ServiceConfig(), chunk_days: float = CHUNK_DAYS,
             scheduler: str | None = None, workers: int = 2, first: int | None = None, progress: bool = True,
             log=print) -> dict:
    """Run the backfill of ``inputs`` (frames, or FITS files whose headers the cluster reads first) into ``out`` on
    the Dask cluster at ``scheduler`` (a new LocalCluster of ``workers`` single-threaded processes when None);
    returns the report (also ``out/report.json``).

    ``first``: the first slot to catalog (default: the first frame's); earlier frames only warm the passages up.
    """
    from distributed import Client, LocalCluster, as_completed

    out.mkdir(parents=True, exist_ok=True)
    model = ModelBundle(bundle, threads=1)  # checked here, before any worker loads it
    _claim(out, model, config)
    t0 = time.perf_counter()
    cluster = None if scheduler else LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=":0",
                                                  processes=True)
    try:
        with Client(scheduler or cluster) as client:
            log(f"Dask: {len(client.scheduler_info()['workers'])} workers; progress: {client.dashboard_link}")
            frames = inputs if not isinstance(inputs, list) else _scan(client, inputs, progress)
            slots = frames.slots()
            if not slots:
                raise ValueError(f"no readable frames among the inputs ({len(frames.refused)} refused)")
            chunks = plan(slots, max(1, int(round(chunk_days * SLOTS_PER_DAY))), model.n_frames, first)
            log(f"{len(slots)} frames in {len(chunks)} chunks of {chunk_days:g} d; {len(frames.refused)} files refused "
                "(listed in report.json)")
            futures = client.map(run_chunk, chunks, frames=frames, bundle=str(Path(bundle).resolve()), config=config,
                                 out=str(out.resolve()), pure=False)
            for _ in tqdm(as_completed(futures), total=len(futures), desc="chunks", unit="chunk", disable=not progress):
                pass
            reports: list[ChunkReport] = client.gather(futures)
    finally:
        if cluster is not None:
            cluster.close()
    elapsed = time.perf_counter() - t0
    report = merge(out, [c.name for c in chunks], frames, model, config)
    kept = sum(r.frames for r in reports)
    seconds = {k: sum(r.seconds[k] for r in reports) for k in reports[0].seconds}
    report.update({
        "frames": kept, "warmup_frames": sum(r.warmup_frames for r in reports), "elapsed_s": elapsed,
        "frames_per_s": kept / elapsed, "seconds_per_frame": {k: v / max(kept, 1) for k, v in seconds.items()},
        "refused": [*map(vars, frames.refused), *(f for r in reports for f in r.refused)],
    })
    _write_atomically(out / "report.json", json.dumps(report, indent=2, default=str))
    log(f"{kept} frames in {elapsed:.1f} s ({kept / elapsed:.2f} frames/s); per frame: "
        + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in report["seconds_per_frame"].items())
        + f"; {len(report['refused'])} files refused")
    log(f"{report['catalog_rows']} emergences in {out / 'catalog.parquet'}; butterfly diagram {out / 'butterfly.png'}")
    return report


#: The settings the frame step depends on (:func:`serving.step.frame_step`): the patch grid and the alert policy.
STEP_SETTINGS = ("lat_limit", "tile_overlap", "hysteresis", "onset_step_frames", "probability_step", "present_at_start")


def _claim(out: Path, model: ModelBundle, config: ServiceConfig) -> None:
    """Record in ``out/backfill.json`` the bundle and settings its chunks are made with, or check that a folder being
    resumed was made with the same: chunks of another model or grid must not be mixed into one catalog."""
    settings = {k: str(getattr(config, k)) for k in STEP_SETTINGS}
    identity = {"bundle_digest": model.digest, "settings": settings}
    path = out / "backfill.json"
    if path.exists():
        before = json.loads(path.read_text())
        if before != identity:
            changed = sorted(k for k in {*before["settings"], *settings} if before["settings"].get(k) != settings.get(k))
            what = ["the bundle"] * (before["bundle_digest"] != model.digest) + changed
            raise ValueError(f"{out} holds a backfill made with another {', '.join(what)} ({path}): give another --out")
    else:
        _write_atomically(path, json.dumps(identity, indent=2))


def merge(out: Path, names: list[str], frames: Frames, model: ModelBundle, config: ServiceConfig) -> dict:
    """Join the chunks' folders (in time order) into the backfill's outputs, each written atomically."""
    folders = [out / "chunks" / name for name in names]
    events = [AlertEvent.model_validate_json(line) for f in folders
              for line in (f / EVENTS).read_text().splitlines() if line]
    scores = pd.concat([pd.read_parquet(f / SCORES) for f in folders], ignore_index=True)
    _write_atomically(out / "alerts.jsonl", "".join(e.model_dump_json() + "\n" for e in events))
    _write_parquet(scores, out / "scores.parquet")
    catalog = emergence_catalog(events, scores, config.onset_step_frames)
    _write_parquet(catalog, out / "catalog.parquet")
    report: dict = {"bundle": str(model.path), "bundle_digest": model.digest, "chunks": len(names),
                    "events": len(events), "catalog_rows": len(catalog)}
    truth = None
    if isinstance(frames, SyntheticFrames):
        report["truth"] = compare(events, frames, PatchGrid(config.patch_grid))
        truth = truth_table(frames)
    plot_butterfly(catalog, out / "butterfly.png", truth)
    return report


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="fluxwatch-backfill", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", help="folders, glob patterns, FITS files, or @file listing one path per line")
    p.add_argument("--synthetic", action="store_true", help="backfill a period of the synthetic Sun instead")
    p.add_argument("--seed", type=int, default=0, help="the synthetic Sun's seed")
    p.add_argument("--start", default="2000-06-20T00:00:00", help="the synthetic period's start (UTC)")
    p.add_argument("--days", type=float, default=30.0, help="the synthetic period's length, days")
    p.add_argument("--size", type=int, default=1024, help="the synthetic frames' size, pixels")
    p.add_argument("--out", type=Path, required=True, help="the output folder (a rerun resumes there)")
    p.add_argument("--bundle", default=None, help="the model bundle (default: the service's)")
    p.add_argument("--scheduler", default=None, help="a Dask scheduler's address, e.g. tcp://head:8786 (default: a "
                                                     "LocalCluster on this machine)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="the LocalCluster's worker processes")
    p.add_argument("--chunk-days", type=float, default=CHUNK_DAYS, help="days of frames per task (each also replays "
                                                                          "the video's length before it)")
    p.add_argument("--from", dest="first", default=None, help="catalog from this time (UTC) on: earlier frames only "
                                                               "warm the passages up (e.g. to extend a catalog)")
    args = p.parse_args(argv)
    if args.synthetic == bool(args.inputs):
        p.error("give input files or --synthetic, not both or neither")
    config = ServiceConfig()
    inputs: Frames | list[Path] = (SyntheticFrames.period(args.seed, args.start, args.days, (args.size, args.size))
                                   if args.synthetic else input_paths(args.inputs))
    try:
        backfill(inputs, args.out, args.bundle or config.bundle, config, args.chunk_days, args.scheduler, args.workers,
                 None if args.first is None else int(slot_of_time(Time(args.first))))
    except ValueError as exc:
        p.error(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
