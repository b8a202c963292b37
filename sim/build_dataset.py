"""``build-dataset``: synthetic Sun → catalog + crude labels + truth → patch-video store.

Presets (``--preset``):

- ``paper``: BMRs over 1996–2011, 2,032 train+validation videos (months
  1–10) plus 406 test videos (months 11–12), 225 × 90 × 90 each.
- ``small``: two years at solar maximum, 200 + 40 videos centred on catalog
  regions plus 120 + 40 tiles of the service's grid, drawn from 8 Suns of
  randomised settings: tests and the CPU demo.

The paper's preset draws from the default Sun alone, as the paper drew from
one instrument. A preset with ``n_settings`` > 1 shares its videos among that
many Suns, the default and randomised ones (:mod:`sim.settings`), so that a
model learns emergence rather than one simulator's look.

The paper's videos are all centred on catalog regions. The service scores
every tile of the disk, so a dataset can also hold **tiles** (``n_tiles``): a
tile of the service's grid on the passage that covers a random time, half of
them drawn anywhere (quiet Sun, old and decaying regions, regions rotating
in) and half over a BMR that emerged on the visible disk (off-centre and
split regions, as the service sees them). A tile's crude label comes from the
catalog the same way (a catalog BMR first observed in it west of −60°), its
truth from the BMRs that emerged in it with at least the catalog's flux limit.

The build is streamed (one video in memory per worker) and resumable: rerun
the same command after an interruption and it continues where it stopped.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
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

from common.clock import SLOTS_PER_DAY, slot_of_time, slot_time
from common.config import PatchGridConfig, ServiceConfig, VideoConfig
from common.observer import central_meridian_distance
from common.passage import on_disk, passage_start_slot
from common.patches import PatchGrid
from ingest.dataset import CATALOG_COLUMNS, KIND, DatasetError, DatasetStore, create_store, video_digest
from ingest.instruments import MDI_SPEC
from sim import SunConfig, SyntheticSun, ephemeris, observe_patch_video
from sim.catalog import CRUDE_CMD_DEG, DetectorConfig, detect, heliocentric_z, truth, video_start_slot
from sim.settings import training_suns


@dataclass(frozen=True)
class Preset:
    """What a dataset holds: the years simulated, how many videos, how long."""

    first_year: int
    last_year: int
    n_trainval: int
    n_test: int
    n_frames: int = VideoConfig().n_frames
    n_tiles: tuple[int, int] = (0, 0)  # tile draws (train+validation, test); a tile passage drawn twice is kept once
    n_settings: int = 1  # Suns the videos are drawn from, each with its own settings and seed (sim.settings)


PRESETS = {
    "paper": Preset(1996, 2011, 2032, 406),
    "small": Preset(2000, 2001, 200, 40, n_tiles=(120, 40), n_settings=8),
}
#: The crude onset is the first catalog observation minus one day: the catalog observes daily, so a
#: region crosses its flux limit up to a day before it is recorded.
CATALOG_LAG_SLOTS = SLOTS_PER_DAY
TEST_MONTHS = (11, 12)


def plan(preset: Preset, seed: int, detector: DetectorConfig = DetectorConfig(), base: SunConfig = SunConfig()) -> pd.DataFrame:
    """The catalog of the dataset: which videos, their labels and truth (no pixels yet).

    The preset's counts are shared among its ``n_settings`` Suns
    (:func:`sim.settings.training_suns`); column ``setting`` says which Sun a video is from.
    """
    suns = training_suns(preset.n_settings, seed, base)
    n = len(suns)

    def share(total: int, k: int) -> int:
        return total // n + int(k < total % n)

    parts = []
    for k, (config, sun_seed) in enumerate(suns):
        part = replace(preset, n_trainval=share(preset.n_trainval, k), n_test=share(preset.n_test, k),
                       n_tiles=(share(preset.n_tiles[0], k), share(preset.n_tiles[1], k)))
        parts.append(_plan_sun(part, SyntheticSun(config, seed=sun_seed), detector).assign(setting=k))
    cat = pd.concat(parts).sort_values("start_slot", kind="stable").reset_index(drop=True)
    cat["video_id"] = np.arange(len(cat))
    cat["verified"] = False
    return cat[list(CATALOG_COLUMNS)]


def _plan_sun(preset: Preset, sun: SyntheticSun, detector: DetectorConfig) -> pd.DataFrame:
    """The catalog rows of the videos drawn from one Sun."""
    seed = sun.seed
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
    cat["kind"] = "region"
    cat["bmr_id"] = np.asarray(table.id)[idx]
    cat["start_slot"] = start
    cat["start_time"] = slot_time(start).isot
    cat["flux_Mx"] = np.asarray(table.flux_Mx)[idx]
    cat["crude_label"] = (cat.first_obs_cmd > CRUDE_CMD_DEG).astype(int)
    cat["crude_onset_frame"] = np.maximum(cat.first_obs_slot.to_numpy() - start - CATALOG_LAG_SLOTS, 0)
    cat["true_class"] = true_class
    cat["true_onset_frame"] = onset
    if any(preset.n_tiles):
        cat = pd.concat([cat, plan_tiles(sun, table, found, preset, rng, detector.flux_threshold_Mx)])
    return cat


def plan_tiles(sun: SyntheticSun, table, found: pd.DataFrame, preset: Preset, rng: np.random.Generator,
               min_flux_Mx: float) -> pd.DataFrame:
    """Catalog rows of ``preset.n_tiles`` tile videos (see the module docstring); ``found`` are the catalog's
    first observations (:func:`sim.catalog.detect`, with ``year`` and ``month``)."""
    grid = PatchGrid(ServiceConfig().patch_grid)
    n_frames = preset.n_frames
    t_slot = np.asarray(slot_of_time(table.t_onset))
    lon, lat, flux = np.asarray(table.lon), np.asarray(table.lat), np.asarray(table.flux_Mx)
    half = np.asarray(table.separation_deg) / 2
    l0, b0, _ = ephemeris(t_slot)
    emerged_visible = (heliocentric_z(lon, lat, l0, b0) > 0) & (flux >= min_flux_Mx)
    months = np.array([int(s[5:7]) for s in slot_time(t_slot).isot])
    lo, hi = (int(slot_of_time(Time(f"{y}-01-01"))) for y in (preset.first_year, preset.last_year + 1))
    rows = []
    for n_tiles, test in zip(preset.n_tiles, (False, True)):
        in_part = np.isin(months, TEST_MONTHS) == test
        over = np.flatnonzero(emerged_visible & in_part & (t_slot >= lo) & (t_slot < hi))
        picked: list[tuple[int, int]] = []  # (tile index, a slot at which its centre is on the disk)
        while len(picked) < n_tiles:
            if len(picked) % 2 and over.size:  # over an emergence: one of the tiles its footprint overlaps
                b = over[rng.integers(over.size)]
                i, slot = int(rng.choice(grid.overlapping(lon[b], lat[b], half[b]))), int(t_slot[b])
            else:  # anywhere, at a random slot of the part's months
                i, slot = int(rng.integers(len(grid))), int(rng.integers(lo, hi))
                if (int(slot_time(slot).isot[5:7]) in TEST_MONTHS) != test:
                    continue
            if on_disk(central_meridian_distance(grid.lon[i], ephemeris(np.array([slot]))[0][0])):
                picked.append((i, slot))
        tiles, slots = np.array(picked, dtype=np.int64).reshape(-1, 2).T
        starts = passage_start_slot(grid.lon[tiles], slots, lambda s: ephemeris(s)[0])
        rows += [_tile_row(grid, int(i), int(start), n_frames, table, found, t_slot, emerged_visible, half)
                 for i, start in dict.fromkeys(zip(tiles, starts))]  # a tile passage once
    return pd.DataFrame(rows)


def _tile_row(grid: PatchGrid, i: int, start: int, n_frames: int, table, found: pd.DataFrame, t_slot: np.ndarray,
              emerged_visible: np.ndarray, half: np.ndarray) -> dict:
    """One tile video's catalog row: its crude label from the catalog, its truth from the BMRs."""
    def inside(b: int) -> bool:
        return i in grid.overlapping(float(table.lon[b]), float(table.lat[b]), float(half[b]))

    in_video = np.flatnonzero(emerged_visible & (t_slot >= start) & (t_slot < start + n_frames))
    true = sorted((int(t_slot[b]), int(b)) for b in in_video if inside(int(b)))
    seen = found[(found.first_obs_slot >= start) & (found.first_obs_slot < start + n_frames)].sort_values("first_obs_slot")
    seen = seen[[inside(int(b)) for b in seen.bmr_index]]
    first = seen.iloc[0] if len(seen) else None
    about = int(true[0][1]) if true else (int(first.bmr_index) if first is not None else None)
    crude = int(first is not None and first.first_obs_cmd > CRUDE_CMD_DEG)
    time = slot_time(start + n_frames // 2).isot
    return {
        "kind": "tile", "bmr_id": str(table.id[about]) if about is not None else "",
        "start_time": slot_time(start).isot, "start_slot": start, "year": int(time[:4]), "month": int(time[5:7]),
        "lon": float(grid.lon[i]), "lat": float(grid.lat[i]),
        "first_obs_time": first.first_obs_time if first is not None else "",
        "first_obs_cmd": float(first.first_obs_cmd) if first is not None else np.nan,
        "first_obs_flux_Mx": float(first.first_obs_flux_Mx) if first is not None else np.nan,
        "flux_Mx": float(table.flux_Mx[about]) if about is not None else 0.0,
        "crude_label": crude,
        "crude_onset_frame": max(int(first.first_obs_slot) - start - CATALOG_LAG_SLOTS, 0) if first is not None and crude else -1,
        "true_class": int(bool(true)), "true_onset_frame": int(true[0][0] - start) if true else -1,
    }


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


def _init_worker(path: str, suns: list[tuple[SunConfig, int]]) -> None:
    # One BLAS thread per worker: the workers already fill the cores, more threads only contend.
    _worker["blas"] = threadpool_limits(1)
    _worker["suns"] = [SyntheticSun(config, seed=seed) for config, seed in suns]
    _worker["videos"] = zarr.open_array(Path(path) / "videos", mode="r+")


def _render(job) -> tuple[int, np.ndarray]:
    i, setting, lon, lat, slot0, n_frames = job
    video, _ = observe_patch_video(_worker["suns"][setting], lon, lat, slot0, n_frames)
    stored = video.astype(np.float16)
    _worker["videos"][i] = stored
    return i, video_digest(stored)


def build(out: str | Path, preset: Preset, seed: int = 0, workers: int = 2, progress: bool = True,
          base: SunConfig = SunConfig(), detector: DetectorConfig = DetectorConfig()) -> DatasetStore:
    """Write (or resume) the dataset store at ``out``; returns it opened."""
    out = Path(out)
    cat = plan(preset, seed, detector, base)
    suns = training_suns(preset.n_settings, seed, base)
    attrs = {
        "kind": KIND,
        "preset": asdict(preset),
        "seed": seed,
        "suns": [{"seed": sun_seed, "config": json.loads(json.dumps(asdict(config), default=str))}
                 for config, sun_seed in suns],
        "detector": asdict(detector),
        "video": {"n_frames": preset.n_frames, "cadence_min": VideoConfig().cadence.to_value(u.min),
                  "clip_G": VideoConfig().clip.to_value(u.G)},
        "grid": {"patch_size_deg": PatchGridConfig().patch_size.to_value(u.deg),
                 "pixel_size_deg": PatchGridConfig().pixel_size.to_value(u.deg)},
        "units": "G",
        "instrument": MDI_SPEC.as_dict(),
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
        root = create_store(out, cat, attrs, preset.n_frames, px)
    written = root["written"][:]
    digest = root["digest"][:]
    jobs = [(int(r.video_id), int(r.setting), float(r.lon), float(r.lat), int(r.start_slot), preset.n_frames)
            for r in cat.itertuples() if not written[r.video_id]]
    bar = tqdm(total=len(cat), initial=len(cat) - len(jobs), desc="rendering videos", unit="video", disable=not progress)
    ctx = mp.get_context("fork" if sys.platform != "win32" else "spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(str(out), suns)) as pool:
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
    p.add_argument("--tiles", type=int, nargs=2, metavar=("TRAINVAL", "TEST"), help="override the preset's tile draws")
    p.add_argument("--frames", type=int, help="override frames per video (225 in both presets)")
    p.add_argument("--settings", type=int, help="override the number of simulator settings the videos are drawn from "
                   "(1: the default Sun only; more: randomised settings, sim.settings)")
    args = p.parse_args(argv)
    preset = PRESETS[args.preset]
    if args.videos:
        preset = replace(preset, n_trainval=args.videos[0], n_test=args.videos[1])
    if args.tiles:
        preset = replace(preset, n_tiles=tuple(args.tiles))
    if args.frames:
        preset = replace(preset, n_frames=args.frames)
    if args.settings:
        preset = replace(preset, n_settings=args.settings)
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
