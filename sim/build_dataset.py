"""``build-dataset``: synthetic Sun → catalog + crude labels + truth → patch-video store.

Presets (``--preset``):

- ``paper``: BMRs over 1996–2011, 2,032 train+validation videos (months
  1–10) plus 406 test videos (months 11–12), 225 × 90 × 90 each.
- ``small``: two years at solar maximum, 200 + 40 videos: tests and the CPU demo.

The build is streamed (one video in memory per worker) and resumable: rerun
the same command after an interruption and it continues where it stopped.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import astropy.units as u
import numpy as np
import pandas as pd
import zarr
from astropy.time import Time
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from common.clock import slot_time
from common.config import PatchGridConfig, VideoConfig
from ingest.dataset import CATALOG_COLUMNS, KIND, DatasetError, DatasetStore, video_digest
from sim import SunConfig, SyntheticSun, observe_patch_video
from sim.catalog import DetectorConfig, detect, truth, video_start_slot


@dataclass(frozen=True)
class Preset:
    """What a dataset holds: the years simulated, how many videos, how long."""

    first_year: int
    last_year: int
    n_trainval: int
    n_test: int
    n_frames: int = VideoConfig().n_frames


PRESETS = {
    "paper": Preset(1996, 2011, 2032, 406),
    "small": Preset(2000, 2001, 200, 40),
}
TEST_MONTHS = (11, 12)


def plan(preset: Preset, seed: int, detector: DetectorConfig = DetectorConfig(), sun_config: SunConfig = SunConfig()) -> pd.DataFrame:
    """The catalog of the dataset: which videos, their labels and truth (no pixels yet)."""
    sun = SyntheticSun(sun_config, seed=seed)
    t0, t1 = Time(f"{preset.first_year}-01-01"), Time(f"{preset.last_year + 1}-01-01")
    found = detect(sun, t0, t1, detector, seed=seed)
    table = sun.bmrs(t0, t1)
    first_time = slot_time(found.first_obs_slot.to_numpy())
    found["first_obs_time"] = first_time.isot
    found["year"] = [int(s[:4]) for s in found.first_obs_time]
    found["month"] = [int(s[5:7]) for s in found.first_obs_time]
    found = found[(found.year >= preset.first_year) & (found.year <= preset.last_year)]
    rng = np.random.default_rng([seed, 0xDA7A])
    test = found[found.month.isin(TEST_MONTHS)]
    trainval = found[~found.month.isin(TEST_MONTHS)]
    picked = []
    for part, n in ((trainval, preset.n_trainval), (test, preset.n_test)):
        if len(part) < n:
            raise ValueError(f"the synthetic Sun yields only {len(part)} catalog BMRs for {n} videos; simulate more years")
        picked.append(part.iloc[np.sort(rng.choice(len(part), n, replace=False))])
    cat = pd.concat(picked).sort_values("first_obs_slot", kind="stable").reset_index(drop=True)
    video = VideoConfig(n_frames=preset.n_frames)
    idx = cat.bmr_index.to_numpy()
    start = video_start_slot(cat.lon.to_numpy(), cat.first_obs_slot.to_numpy())
    true_class, onset = truth(sun, table, idx, start, video)
    cat["video_id"] = np.arange(len(cat))
    cat["bmr_id"] = np.asarray(table.id)[idx]
    cat["start_slot"] = start
    cat["start_time"] = slot_time(start).isot
    cat["flux_Mx"] = np.asarray(table.flux_Mx)[idx]
    cat["crude_label"] = (cat.first_obs_cmd > -60.0).astype(int)
    cat["true_class"] = true_class
    cat["true_onset_frame"] = onset
    cat["verified"] = False
    return cat[list(CATALOG_COLUMNS)]


def label_quality(cat: pd.DataFrame) -> dict:
    """Crude-label accuracy against the synthetic truth, and both kinds of mistake."""
    crude, true = cat.crude_label.to_numpy(), cat.true_class.to_numpy()
    return {
        "videos": len(cat),
        "true_emergence": int(true.sum()),
        "crude_accuracy": float((crude == true).mean()),
        "false_emergence": int(((crude == 1) & (true == 0)).sum()),
        "false_non_emergence": int(((crude == 0) & (true == 1)).sum()),
    }


# ---- workers: each renders videos and writes its own chunks ---------------------------------

_worker: dict = {}


def _init_worker(path: str, config: SunConfig, seed: int) -> None:
    # One BLAS thread per worker: the workers already fill the cores, more threads only contend.
    _worker["blas"] = threadpool_limits(1)
    _worker["sun"] = SyntheticSun(config, seed=seed)
    _worker["videos"] = zarr.open_array(Path(path) / "videos", mode="r+")


def _render(job) -> tuple[int, np.ndarray]:
    i, lon, lat, slot0, n_frames = job
    video, _ = observe_patch_video(_worker["sun"], lon, lat, slot0, n_frames)
    stored = video.astype(np.float16)
    _worker["videos"][i] = stored
    return i, video_digest(stored)


def build(out: str | Path, preset: Preset, seed: int = 0, workers: int = 2, progress: bool = True,
          sun_config: SunConfig = SunConfig(), detector: DetectorConfig = DetectorConfig()) -> DatasetStore:
    """Write (or resume) the dataset store at ``out``; returns it opened."""
    out = Path(out)
    cat = plan(preset, seed, detector, sun_config)
    attrs = {
        "kind": KIND,
        "preset": asdict(preset),
        "seed": seed,
        "sun_config": json.loads(json.dumps(asdict(sun_config), default=str)),
        "detector": asdict(detector),
        "video": {"n_frames": preset.n_frames, "cadence_min": VideoConfig().cadence.to_value(u.min),
                  "clip_G": VideoConfig().clip.to_value(u.G)},
        "grid": {"patch_size_deg": PatchGridConfig().patch_size.to_value(u.deg),
                 "pixel_size_deg": PatchGridConfig().pixel_size.to_value(u.deg)},
        "units": "G",
    }
    attrs["plan_sha256"] = hashlib.sha256(cat.to_csv(index=False).encode() + json.dumps(attrs, sort_keys=True).encode()).hexdigest()
    px = PatchGridConfig().pixels
    if out.exists():
        try:
            existing = DatasetStore(out, require_complete=False)
        except DatasetError as exc:
            raise DatasetError(out, f"exists and is not a resumable dataset ({exc}); remove it or choose another --out") from None
        if existing.attrs.get("plan_sha256") != attrs["plan_sha256"]:
            raise DatasetError(out, "exists with a different preset/seed/configuration; remove it or choose another --out")
        root = zarr.open_group(out, mode="r+")
    else:
        tmp = out.with_name(out.name + ".creating")
        shutil.rmtree(tmp, ignore_errors=True)
        root = zarr.open_group(tmp, mode="w")
        root.create_array("videos", shape=(len(cat), preset.n_frames, px, px), chunks=(1, preset.n_frames, px, px),
                          dtype="float16", fill_value=0)
        root.create_array("written", shape=(len(cat),), dtype="bool", fill_value=False)
        root.create_array("digest", shape=(len(cat), 32), dtype="uint8", fill_value=0)
        root.attrs.update(attrs)
        cat.to_csv(tmp / "catalog.csv", index=False)
        os.replace(tmp, out)
        root = zarr.open_group(out, mode="r+")
    written = root["written"][:]
    digest = root["digest"][:]
    jobs = [(int(r.video_id), float(r.lon), float(r.lat), int(r.start_slot), preset.n_frames)
            for r in cat.itertuples() if not written[r.video_id]]
    bar = tqdm(total=len(cat), initial=len(cat) - len(jobs), desc="rendering videos", unit="video", disable=not progress)
    ctx = mp.get_context("fork" if sys.platform != "win32" else "spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(str(out), sun_config, seed)) as pool:
        done = 0
        for i, d in pool.imap_unordered(_render, jobs, chunksize=4):
            written[i], digest[i] = True, d
            done += 1
            bar.update()
            if done % 32 == 0 or done == len(jobs):
                root["digest"][:] = digest  # digests first: a video marked written always has its digest
                root["written"][:] = written
    bar.close()
    return DatasetStore(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="build-dataset", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="small")
    p.add_argument("--out", type=Path, required=True, help="dataset store directory (created, or resumed)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic Sun, the detector and the selection")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes rendering videos")
    p.add_argument("--videos", type=int, nargs=2, metavar=("TRAINVAL", "TEST"), help="override the preset's video counts")
    p.add_argument("--frames", type=int, help="override frames per video (225 in both presets)")
    args = p.parse_args(argv)
    preset = PRESETS[args.preset]
    if args.videos:
        preset = replace(preset, n_trainval=args.videos[0], n_test=args.videos[1])
    if args.frames:
        preset = replace(preset, n_frames=args.frames)
    t0 = time.perf_counter()
    try:
        store = build(args.out, preset, args.seed, args.workers)
    except (DatasetError, ValueError) as exc:
        print(f"build-dataset: error: {exc}", file=sys.stderr)
        return 2
    q = label_quality(store.catalog)
    print(f"wrote {store.path}: {q['videos']} videos of {store.video_shape} in {time.perf_counter() - t0:.1f} s")
    print(f"crude-label accuracy vs truth: {q['crude_accuracy']:.3f} "
          f"(true emergences {q['true_emergence']}, false emergence {q['false_emergence']}, "
          f"false non-emergence {q['false_non_emergence']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
