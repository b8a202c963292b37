"""The ingest demo: a synthetic SoHO/MDI series → FITS files → patch videos → montage.

Run by ``make demo``. Writes 1024² MDI-format FITS files of a few bipolar
regions seen from SoHO (one frame of the 96-min series left out, as MDI
misses some), ingests them with ``fluxwatch-ingest`` and plots the most
active patch videos.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.time import Time
from astropy.wcs import WCS
from tqdm import tqdm

from ingest import cli
from ingest.mdi import MDI_SHAPE, mdi_header, soho_observer, write_mdi
from ingest.projection import ImageGeometry
from ingest.render import render_full_disk

START = Time("2011-03-07T00:00:00")


def demo_field(lon, lat):
    """Three Gaussian bipoles (G) near the central meridian of START, Joy's-law tilted."""
    b = np.zeros_like(lon)
    for lon0, lat0, sep, peak in [(125.0, 12.0, 6.0, 1200.0), (110.0, -18.0, 4.0, -900.0), (140.0, -8.0, 3.0, 600.0)]:
        tilt = np.deg2rad(0.5 * lat0)
        for sign in (+1, -1):
            lon_c = lon0 + sign * sep / 2 * np.cos(tilt)
            lat_c = lat0 - sign * sep / 2 * np.sin(tilt) * np.sign(lat0)
            dlon = (lon - lon_c + 180.0) % 360.0 - 180.0
            b += sign * peak * np.exp(-(dlon**2 + (lat - lat_c) ** 2) / (2 * 1.2**2))
    return b


def write_series(folder: Path, n_frames: int, skip: set[int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2011)
    for k in tqdm(range(n_frames), desc="rendering MDI frames", unit="frame"):
        if k in skip:
            continue
        obs = soho_observer(START + k * 96 * u.min)
        image = ImageGeometry.from_wcs(WCS(mdi_header(obs, MDI_SHAPE)), MDI_SHAPE)
        data = render_full_disk(demo_field, obs, image) + rng.normal(0, 20, MDI_SHAPE)
        write_mdi(folder / f"mdi.fd_M_96m_lev182.{obs.time.strftime('%Y%m%d_%H%M%S')}.fits", data, obs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("data/demo"), help="demo folder (recreated)")
    p.add_argument("--frames", type=int, default=24, help="96-min frames to simulate")
    args = p.parse_args(argv)
    shutil.rmtree(args.out, ignore_errors=True)
    fits_dir = args.out / "fits"
    write_series(fits_dir, args.frames, skip={args.frames // 2})
    return cli.main([str(fits_dir), "--out", str(args.out / "videos.zarr"), "--frames", str(args.frames),
                     "--start", START.isot, "--plot", str(args.out / "patch_videos.png")])


if __name__ == "__main__":
    sys.exit(main())
