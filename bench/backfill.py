"""Backfill throughput: ``fluxwatch-backfill`` on a Dask LocalCluster of 1 and of 2 workers, beside the live
service, over the same synthetic stretch.

Renders the model's video length (225 slots) plus ``--chunks`` × ``--chunk-days`` of consecutive 1024² frames,
then backfills the last ``--chunks`` days, so that every chunk replays a full warm-up as in a long run: equal
tasks, the work of a long run in miniature. A frame step (read, project, score, store) is the unit of work,
replayed or kept alike: ``frames_per_s`` counts steps. A year backfilled in chunks of
:data:`archive.cli.CHUNK_DAYS` days takes ``5,479 × (1 + 225 / chunk slots)`` steps; ``year_minutes_2`` is that
at the 2-worker rate. The live service's rate is measured on the same frames (its steady state after a cold
start), as ``python -m bench.backfill`` measured it before the backfill existed.

Last line: ``frames_per_s_1=… frames_per_s_2=… scaling_2=… year_minutes_2=… store_share=…`` (the state keeper's
share of a frame step's time, its snapshot and commit, on 2 workers).

Usage: python -m bench.backfill [--chunks 4] [--chunk-days 1] [--bundle models/cnn]
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

from archive.cli import CHUNK_DAYS, backfill
from archive.frames import FileFrames, input_paths
from bench._service_setup import START, bundle_or_untrained, metric
from common.clock import SLOTS_PER_DAY, slot_of_time
from common.config import CNN_BUNDLE, ServiceConfig
from serving.bundle import ModelBundle
from serving.compose import open_service
from sim import SunConfig, SyntheticSun, write_fits_series

SLOTS_PER_YEAR = 365.25 * SLOTS_PER_DAY
SIZE = 1024


def _render(job: tuple[int, int, str]) -> int:
    first, end, folder = job
    return len(write_fits_series(SyntheticSun(SunConfig(), seed=0), range(first, end), folder, shape=(SIZE, SIZE)))


def render(folder: Path, first: int, end: int) -> FileFrames:
    """Frames of slots [first, end) rendered on every core; the files by slot."""
    with Pool(os.cpu_count()) as pool:
        pool.map(_render, [(a, min(a + 10, end), str(folder)) for a in range(first, end, 10)])
    return FileFrames.scan(input_paths([str(folder)]), progress=False)


def live_service(frames: FileFrames, bundle: Path, scratch: Path, n: int = 12) -> float:
    """The live service's frames per second over the last ``n`` frames, after a cold start on the one before."""
    service = open_service(ServiceConfig(data_dir=str(scratch / "svc"), bundle=str(bundle), source="watch"))
    slots = frames.slots()[-(n + 1):]
    shutil.copy(frames.files[slots[0]], service.dir / "incoming")
    service.run_cycle()  # opens every passage: not part of the steady state
    for s in slots[1:]:
        shutil.copy(frames.files[s], service.dir / "incoming")
    t0 = time.perf_counter()
    done = service.run_cycle()
    fps = done / (time.perf_counter() - t0)
    print(f"live service: {done} frames at {fps:.2f} frames/s ({metric(service, 'active_patches'):.0f} patches); "
          f"a year at that rate is {SLOTS_PER_YEAR / fps / 60:.0f} min")
    return fps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int, default=4)
    p.add_argument("--chunk-days", type=float, default=1.0)
    p.add_argument("--bundle", type=Path, default=Path(CNN_BUNDLE))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        bundle, what = bundle_or_untrained(args.bundle, tmp)
        warmup = ModelBundle(bundle).n_frames
        first = int(slot_of_time(START)) + warmup
        chunk_slots = int(round(args.chunk_days * SLOTS_PER_DAY))
        t0 = time.perf_counter()
        frames = render(tmp / "frames", first - warmup, first + args.chunks * chunk_slots)
        print(f"model: {what}; {len(frames.slots())} frames of {SIZE}² rendered in {time.perf_counter() - t0:.0f} s")
        live_service(frames, bundle, tmp)
        rates, shares = {}, {}
        for workers in (1, 2):
            report = backfill(frames, tmp / f"out{workers}", str(bundle), chunk_days=args.chunk_days, workers=workers,
                              first=first, progress=False, log=lambda *_: None)
            steps = report["frames"] + report["warmup_frames"]
            rates[workers] = steps / report["elapsed_s"]
            per_frame = report["seconds_per_frame"]
            shares[workers] = per_frame["store"] / sum(per_frame.values())
            print(f"{workers} worker(s): {report['chunks']} chunks, {report['frames']} frames kept + "
                  f"{report['warmup_frames']} replayed in {report['elapsed_s']:.1f} s: {rates[workers]:.2f} steps/s; per "
                  "frame: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in report["seconds_per_frame"].items()))
    year_steps = SLOTS_PER_YEAR * (1 + warmup / (CHUNK_DAYS * SLOTS_PER_DAY))
    print(f"a year in chunks of {CHUNK_DAYS:g} d is {year_steps:.0f} steps (the warm-up adds {warmup} slots a chunk)")
    print(f"frames_per_s_1={rates[1]:.2f} frames_per_s_2={rates[2]:.2f} scaling_2={rates[2] / rates[1]:.2f} "
          f"year_minutes_2={year_steps / rates[2] / 60:.1f} store_share={shares[2]:.3f}")


if __name__ == "__main__":
    main()
