"""``fluxwatch-ingest``: full-disk magnetogram FITS files → patch-video store."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.time import Time
from tqdm import tqdm

from common.config import PatchGridConfig, VideoConfig
from common.figures import video_montage
from common.patches import PatchGrid
from ingest.errors import IngestError, TimeOrderError
from ingest.magnetogram import observation_time, read_frame, read_header
from ingest.videos import SeriesVideos, VideoStore

FITS_SUFFIXES = (".fits", ".fts", ".fit", ".fits.gz", ".fts.gz")


def expand_inputs(inputs) -> list[Path]:
    """Files as given; directories expand to their FITS files sorted by name."""
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.iterdir() if p.name.lower().endswith(FITS_SUFFIXES))
        else:
            files.append(item)
    return files


def check_series(files) -> list[Time]:
    """Validate every header and that times increase, before anything is written."""
    times: list[Time] = []
    for path in tqdm(files, desc="checking headers", unit="file", leave=False):
        t = observation_time(path, read_header(path))
        if times and t <= times[-1]:
            raise TimeOrderError(path, f"observed at {t.isot}, not after {files[len(times) - 1]} at {times[-1].isot}")
        times.append(t)
    return times


def ingest_series(files, out, start: Time | None = None, video: VideoConfig = VideoConfig(),
                  grid: PatchGrid | None = None, progress: bool = True) -> Path:
    """Ingest FITS files (in time order) into a patch-video store at ``out``.

    Raises :class:`IngestError` naming the first bad file; the store is then not created.
    """
    files = [Path(f) for f in files]
    if not files:
        raise ValueError("no input files")
    times = check_series(files)
    writer = SeriesVideos(out, grid or PatchGrid(), start or times[0], video)
    try:
        for path in tqdm(files, desc="projecting", unit="frame", disable=not progress):
            writer.add(read_frame(path))
        return writer.finish()
    except BaseException:
        writer.abort()
        raise


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="fluxwatch-ingest", description=__doc__)
    p.add_argument("inputs", nargs="+", help="FITS files and/or directories of FITS files, in time order")
    p.add_argument("--out", required=True, type=Path, help="zarr store to create")
    p.add_argument("--start", type=Time, help="time of frame 0 (default: first file's time)")
    p.add_argument("--frames", type=int, default=VideoConfig().n_frames, help="frames per video (default 225)")
    p.add_argument("--cadence-min", type=float, default=VideoConfig().cadence.to_value(u.min), help="minutes between frames (default 96)")
    p.add_argument("--overlap-deg", type=float, default=0.0, help="overlap between neighbouring patches, degrees")
    p.add_argument("--plot", type=Path, help="write a PNG montage of the most active patch videos")
    args = p.parse_args(argv)
    video = VideoConfig(n_frames=args.frames, cadence=args.cadence_min * u.min)
    grid = PatchGrid(PatchGridConfig(overlap=args.overlap_deg * u.deg))
    try:
        out = ingest_series(expand_inputs(args.inputs), args.out, args.start, video, grid)
    except (IngestError, FileExistsError, ValueError) as exc:
        print(f"fluxwatch-ingest: error: {exc}", file=sys.stderr)
        return 2
    store = VideoStore(out)
    used = int(store.observed.sum())
    print(f"wrote {out}: {len(store.grid)} patch videos × {video.n_frames} frames, "
          f"{used} slots observed, {video.n_frames - used} interpolated or padded, "
          f"{len(store.attrs['skipped'])} files skipped")
    if args.plot:
        plot_most_active(store, args.plot)
        print(f"montage: {args.plot}")
    return 0


def plot_most_active(store: VideoStore, path: Path, n: int = 3) -> Path:
    """Montage of the ``n`` patch videos with the most unsigned flux."""
    activity = [float(np.abs(store[i][store.observed]).mean()) if store.observed.any() else 0.0 for i in range(len(store.grid))]
    top = np.argsort(activity)[::-1][:n]
    return video_montage([store[int(i)] for i in top], [f"patch {store.grid.ids[i]}" for i in top], path)


if __name__ == "__main__":
    sys.exit(main())
