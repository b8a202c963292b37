"""Assemble a time series of magnetograms into patch videos on the cadence grid.

A :class:`SeriesVideos` receives cleaned magnetograms in time order, projects
each onto every patch on the disk (the fast path of :mod:`ingest.projection`)
and files the patch frames in the nearest cadence slot of the video window.
``finish`` fills unobserved slots per pixel in time (see
:func:`common.video.fill_gaps`). Frames are held in memory only a block of
slots at a time and streamed to a zarr store, so memory does not grow with
the number of frames; the store is written under a temporary name and moved
into place only when complete, so a failed run leaves nothing half-written.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import astropy.units as u
import numpy as np
import zarr
from astropy.time import Time

from common.config import PatchGridConfig, VideoConfig
from common.patches import PatchGrid
from common.video import fill_gaps, slot_of
from ingest.errors import TimeOrderError
from ingest.magnetogram import Magnetogram
from ingest.projection import project_patches


class SeriesVideos:
    """Patch videos for every patch of ``grid`` over the window starting at ``start``.

    Parameters
    ----------
    out : path of the zarr store to create (must not exist).
    grid : the patch grid; every patch gets a video (all 0 G if never on the disk).
    start : time of frame 0.
    video : frame count and cadence.
    block : slots buffered in memory before a write (the zarr chunk length in time).
    """

    def __init__(self, out: str | Path, grid: PatchGrid, start: Time, video: VideoConfig = VideoConfig(), block: int = 16):
        self.out = Path(out)
        if self.out.exists():
            raise FileExistsError(f"{self.out}: already exists; refusing to overwrite")
        self.grid, self.start, self.video, self.block = grid, Time(start), video, block
        self._partial = self.out.with_name(self.out.name + ".partial")
        shutil.rmtree(self._partial, ignore_errors=True)
        root = zarr.open_group(self._partial, mode="w")
        n, px = len(grid), grid.config.pixels
        self._frames = root.create_array(
            "video", shape=(n, video.n_frames, px, px), chunks=(1, block, px, px), dtype="float32", fill_value=0.0
        )
        self._root = root
        self.observed = np.zeros(video.n_frames, dtype=bool)
        self.sources: list[str | None] = [None] * video.n_frames
        self.skipped: list[tuple[str, str]] = []
        self._buffer = np.zeros((n, block, px, px), dtype=np.float32)
        self._touched = np.zeros(n, dtype=bool)
        self._block_index = 0
        self._last_time: Time | None = None
        self._last_path: Path | None = None

    def add(self, mag: Magnetogram) -> bool:
        """File one magnetogram; returns False (and records why) if it was not used.

        Raises :class:`TimeOrderError` if its time is not after the previous
        frame's. Frames outside the window or in a slot already filled are
        skipped, not errors.
        """
        if self._last_time is not None and mag.time <= self._last_time:
            raise TimeOrderError(
                mag.path, f"observed at {mag.time.isot}, not after the previous frame {self._last_path} at {self._last_time.isot}"
            )
        self._last_time, self._last_path = mag.time, mag.path
        slot = int(slot_of(mag.time, self.start, self.video)[0])
        if not 0 <= slot < self.video.n_frames:
            self.skipped.append((str(mag.path), "outside the video window"))
            return False
        if self.observed[slot]:
            self.skipped.append((str(mag.path), f"slot {slot} already filled by {self.sources[slot]}"))
            return False
        while slot >= (self._block_index + 1) * self.block:
            self._flush()
        on_disk = np.flatnonzero(self.grid.on_disk(mag.observer))
        self._touched[on_disk] = True
        self._buffer[on_disk, slot - self._block_index * self.block] = project_patches(
            mag.data, mag.observer, mag.image, self.grid, on_disk
        )
        self.observed[slot] = True
        self.sources[slot] = str(mag.path)
        return True

    def _flush(self) -> None:
        a = self._block_index * self.block
        b = min(a + self.block, self.video.n_frames)
        if self.observed[a:b].any():
            self._frames[:, a:b] = self._buffer[:, : b - a]
        self._buffer[:] = 0.0
        self._block_index += 1

    def finish(self) -> Path:
        """Fill gaps, write metadata and move the store into place; returns its path."""
        while self._block_index * self.block < self.video.n_frames:
            self._flush()
        for i in np.flatnonzero(self._touched):
            self._frames[i] = fill_gaps(self._frames[i], self.observed)
        self._root.create_array("observed", data=self.observed)
        self._root.attrs.update(
            {
                "kind": "fluxwatch.series_videos",
                "start": self.start.isot,
                "cadence_min": self.video.cadence.to_value(u.min),
                "n_frames": self.video.n_frames,
                "clip_G": self.video.clip.to_value(u.G),
                "patch_size_deg": self.grid.config.patch_size.to_value(u.deg),
                "pixel_size_deg": self.grid.config.pixel_size.to_value(u.deg),
                "overlap_deg": self.grid.config.overlap.to_value(u.deg),
                "lat_limit_deg": self.grid.config.lat_limit.to_value(u.deg),
                "patch_ids": self.grid.ids,
                "sources": self.sources,
                "skipped": self.skipped,
                "units": "G",
            }
        )
        self._partial.rename(self.out)
        return self.out

    def abort(self) -> None:
        """Remove the partial store."""
        shutil.rmtree(self._partial, ignore_errors=True)


class VideoStore:
    """Read access to a store written by :class:`SeriesVideos`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._root = zarr.open_group(self.path, mode="r")
            attrs = dict(self._root.attrs)
            if attrs.get("kind") != "fluxwatch.series_videos":
                raise ValueError(f"attribute kind is {attrs.get('kind')!r}")
        except Exception as exc:
            raise ValueError(f"{self.path}: not a fluxwatch patch-video store ({exc})") from None
        self.attrs = attrs
        self.grid = PatchGrid(
            PatchGridConfig(
                patch_size=attrs["patch_size_deg"] * u.deg, pixel_size=attrs["pixel_size_deg"] * u.deg,
                overlap=attrs["overlap_deg"] * u.deg, lat_limit=attrs["lat_limit_deg"] * u.deg,
            )
        )
        self.video = VideoConfig(n_frames=attrs["n_frames"], cadence=attrs["cadence_min"] * u.min, clip=attrs["clip_G"] * u.G)
        self.start = Time(attrs["start"])
        self.observed = self._root["observed"][:]

    def __getitem__(self, patch: str | int) -> np.ndarray:
        """Video of one patch (by id or index), float32 (n_frames, pixels, pixels), G."""
        i = self.grid.index(patch) if isinstance(patch, str) else patch
        return self._root["video"][i]
