"""The data demo: the synthetic Sun as FITS files and as a training set.

Run by ``make demo``:

1. renders a day and a half of 1024² SoHO/MDI-format magnetograms of the
   synthetic Sun (missing slots left out, as MDI misses some), ingests them
   with ``fluxwatch-ingest`` and plots the most active patch videos;
2. builds the training set of the default bundle (the ``small`` preset with 500 + 80 tiles of the
   service's grid, :data:`TILES`; reused when already complete), prints how
   often the paper's crude labels agree with the synthetic truth, and plots
   two emergence and two non-emergence videos in the style of the paper's
   Figure 1 (every 5th frame).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from astropy.time import Time

from common.clock import slot_of_time
from common.figures import video_montage
from ingest import cli
from ingest.dataset import DatasetError, DatasetStore
from sim import SunConfig, SyntheticSun, build_dataset, write_fits_series

START = Time("2000-06-01T00:00:00")
#: Tile videos (train+validation, test) of the default bundle's training set, beside the small preset's regions.
TILES = (500, 80)
#: Its folder under the demo folder.
STORE = "causal.zarr"


def fits_demo(out: Path, n_slots: int, seed: int) -> int:
    """Synthetic full-disk FITS → patch videos → montage."""
    shutil.rmtree(out, ignore_errors=True)
    slot0 = int(slot_of_time(START))
    write_fits_series(SyntheticSun(SunConfig(), seed=seed), range(slot0, slot0 + n_slots), out / "fits")
    return cli.main([str(out / "fits"), "--out", str(out / "videos.zarr"), "--frames", str(n_slots),
                     "--start", START.isot, "--plot", str(out / "patch_videos.png")])


def dataset_demo(out: Path, seed: int, workers: int) -> Path:
    """Build (or reuse) the default bundle's training set and plot videos of both classes."""
    try:
        store = DatasetStore(out / STORE)
        print(f"reusing {store.path}")
    except DatasetError:
        build_dataset.main(["--preset", "small", "--tiles", *map(str, TILES), "--out", str(out / STORE), "--seed", str(seed),
                            "--workers", str(workers)])
        store = DatasetStore(out / STORE)
    q = build_dataset.label_quality(store.catalog)
    print(f"training set: {q['videos']} videos, {q['true_emergence']} true emergences; crude labels right "
          f"{q['crude_accuracy']:.0%} (false emergence {q['false_emergence']}, false non-emergence {q['false_non_emergence']})")
    cat = store.catalog
    picks = list(cat[cat.true_class == 1].video_id[:2]) + list(cat[cat.true_class == 0].video_id[:2])
    titles = []
    for i in picks:
        row = cat.loc[i]
        kind = f"emergence, true onset frame {row.true_onset_frame}" if row.true_class else "non-emergence (rotates in)"
        titles.append(f"video {i} ({row.bmr_id}, {row.start_time[:16]} UT): {kind}; crude label {row.crude_label}")
    path = video_montage([store.video(int(i)) for i in picks], titles, out / "dataset_videos.png")
    print(f"montage: {path}")
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("data/demo"), help="demo folder")
    p.add_argument("--slots", type=int, default=24, help="96-min slots of full-disk FITS to simulate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    rc = fits_demo(args.out / "fits_ingest", args.slots, args.seed)
    if rc:
        return rc
    dataset_demo(args.out, args.seed, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
