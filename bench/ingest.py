"""Fast patch projection vs sunpy's Map.reproject_to, side by side on the same frames.

For a series of synthetic SoHO/MDI frames spread over a year (B0, L0 and the
distance change from frame to frame), at 1024² and 4096², both methods
project each cleaned frame onto every on-disk patch; the script prints each
frame's timings and the largest difference where both are defined, and as
its last line ``speedup_1024=<x> speedup_4096=<y> max_abs_diff_G=<z>``.

Usage: python -m bench.ingest [--frames 3] [--sizes 1024 4096]
"""
from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import sunpy.map
from astropy.time import Time

from common.clock import slot_of_time
from common.patches import PatchGrid
from ingest.magnetogram import read_magnetogram
from ingest.projection import carrington_to_pixel, project_patches
from ingest.reference import reproject_patches
from sim import SunConfig, SyntheticSun, write_fits_series


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=3, help="frames per size, spread over a year")
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    args = p.parse_args()
    grid = PatchGrid()
    sun = SyntheticSun(SunConfig(), seed=0)
    # frames at solar maximum, spread over a year so B0, L0 and the distance all change
    slots = [int(s) for s in np.atleast_1d(slot_of_time(Time("2000-01-05") + np.linspace(0, 330, args.frames) * u.day))]
    slots = [next(k for k in range(s, s + 100) if sun.observed([k])[0]) for s in slots]
    speedups, worst = {}, 0.0
    print(f"{'size':>5} {'time':>20} {'B0':>6} {'patches':>7} {'ours_ms':>8} {'sunpy_ms':>9} {'ratio':>6} {'max|d|G':>8}")
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for size in args.sizes:
            ours_total = ref_total = 0.0
            for slot in slots:
                path, = write_fits_series(sun, [slot], Path(tmp) / str(size), shape=(size, size))
                mag = read_magnetogram(path)
                smap = sunpy.map.Map(mag.data, sunpy.map.Map(path).meta)
                idx = np.flatnonzero(grid.on_disk(mag.observer))
                project_patches(mag.data, mag.observer, mag.image, grid, idx[:4])  # warm caches
                t0 = time.perf_counter()
                ours = project_patches(mag.data, mag.observer, mag.image, grid, idx)
                t1 = time.perf_counter()
                ref = reproject_patches(smap, grid, idx)
                t2 = time.perf_counter()
                lon, lat = grid.pixel_axes(idx)
                _, _, visible = carrington_to_pixel(mag.observer, mag.image, lon[:, None, :], lat[:, :, None])
                both = np.isfinite(ref) & visible
                diff = float(np.abs(ours - ref)[both].max())
                worst = max(worst, diff)
                ours_total += t1 - t0
                ref_total += t2 - t1
                print(f"{size:>5} {mag.time.isot[:19]:>20} {mag.observer.lat.value:6.2f} {len(idx):7d} "
                      f"{1e3 * (t1 - t0):8.1f} {1e3 * (t2 - t1):9.1f} {(t2 - t1) / (t1 - t0):6.1f} {diff:8.3f}", flush=True)
            speedups[size] = ref_total / ours_total
    print(" ".join(f"speedup_{s}={speedups[s]:.1f}" for s in args.sizes) + f" max_abs_diff_G={worst:.3f}")


if __name__ == "__main__":
    main()
