"""Where a backfill's frames come from, slot by slot: full-disk FITS files of any supported instrument, or the
synthetic Sun.

A source is small and picklable (a slot → file map, or the synthetic Sun's seed and period): it travels to the
workers with each chunk, and each worker reads or renders the frames of its own slots.
"""
from __future__ import annotations

import functools
import glob
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.time import Time
from tqdm import tqdm

from common.clock import slot_of_time, slot_time
from ingest.errors import IngestError
from ingest.instruments import InstrumentSpec
from ingest.magnetogram import Magnetogram, observation_time, read_frame, read_header
from sim import SunConfig, SyntheticSun, write_fits_series
from sim.observe import mdi_file_name


@dataclass(frozen=True)
class Refused:
    """A file the backfill could not use, and why (the reader's error, naming the file)."""

    file: str
    problem: str


def input_paths(inputs: list[str]) -> list[Path]:
    """The files named by ``inputs``: folders (their ``*.fits*`` files), glob patterns, files, and ``@list`` files
    (one path per line)."""
    paths: list[Path] = []
    for item in inputs:
        if item.startswith("@"):
            paths += input_paths([line.strip() for line in Path(item[1:]).read_text().splitlines() if line.strip()])
        elif Path(item).is_dir():
            paths += sorted(p for p in Path(item).iterdir() if ".fits" in p.name.lower())
        elif any(c in item for c in "*?["):
            paths += [Path(p) for p in sorted(glob.glob(item, recursive=True))]
        else:
            paths.append(Path(item))
    return paths


@dataclass(frozen=True)
class SlotOfFile:
    """A file's slot and its distance from the slot's time (s), or the reason its header is refused."""

    path: str
    slot: int | None
    offset_s: float = 0.0
    problem: str | None = None


def slot_of_file(path: str | Path) -> SlotOfFile:
    """The slot of a full-disk FITS file from its header (the observation time as the reader takes it)."""
    try:
        t = observation_time(path, read_header(path))
    except IngestError as exc:
        return SlotOfFile(str(path), None, problem=str(exc))
    slot = int(slot_of_time(t))
    return SlotOfFile(str(path), slot, abs((t - slot_time(slot)).to_value(u.s)))


def slots_of_files(paths: list[str]) -> list[SlotOfFile]:
    """:func:`slot_of_file` of each of ``paths`` (one task of a distributed header scan)."""
    return [slot_of_file(p) for p in paths]


@dataclass(frozen=True)
class FileFrames:
    """Full-disk FITS files by slot: of a slot's files, the one observed closest to the slot's time (the live
    service's slot selection, :mod:`serving.service`)."""

    files: dict[int, str]  # slot → path
    refused: list[Refused] = field(default_factory=list)

    @classmethod
    def scan(cls, paths: list[Path], progress: bool = True) -> FileFrames:
        """Read the headers of ``paths`` here and keep each slot's closest frame (:meth:`choose`)."""
        return cls.choose([slot_of_file(p) for p in tqdm(paths, desc="reading headers", unit="file",
                                                          disable=not progress)])

    @classmethod
    def choose(cls, found: list[SlotOfFile]) -> FileFrames:
        """Of each slot's files (:func:`slot_of_file` of each), the one closest to the slot's time; the refused
        files listed with their problems."""
        best: dict[int, tuple[float, str]] = {}
        for f in found:
            if f.slot is not None and (f.slot not in best or f.offset_s < best[f.slot][0]):
                best[f.slot] = (f.offset_s, f.path)
        return cls({slot: p for slot, (_, p) in sorted(best.items())},
                   [Refused(f.path, f.problem) for f in found if f.problem is not None])

    def slots(self) -> list[int]:
        return sorted(self.files)

    def name(self, slot: int) -> str:
        return Path(self.files[slot]).name

    def read(self, slot: int, instrument: InstrumentSpec) -> Magnetogram:
        """The frame of ``slot``, brought to ``instrument``; raises :class:`~ingest.errors.IngestError`."""
        return read_frame(self.files[slot], instrument)


@dataclass(frozen=True)
class SyntheticFrames:
    """The synthetic Sun of ``seed`` over slots [first, end), rendered as MDI-format FITS of ``shape`` pixels and
    read back as the service reads files; slots the simulator marks missing have no frame."""

    seed: int
    first: int
    end: int
    shape: tuple[int, int] = (1024, 1024)

    @classmethod
    def period(cls, seed: int, start: str, days: float, shape: tuple[int, int] = (1024, 1024)) -> SyntheticFrames:
        first = int(slot_of_time(Time(start)))
        return cls(seed, first, first + int(round(days * 15)), shape)

    @property
    def sun(self) -> SyntheticSun:
        return _sun(self.seed)

    @property
    def refused(self) -> list[Refused]:
        return []

    def slots(self) -> list[int]:
        slots = np.arange(self.first, self.end)
        return [int(s) for s in slots[self.sun.observed(slots)]]

    def name(self, slot: int) -> str:
        return mdi_file_name(slot)

    def read(self, slot: int, instrument: InstrumentSpec) -> Magnetogram:
        staging = Path(tempfile.mkdtemp(prefix="fluxwatch-frame-"))
        try:
            (path,) = write_fits_series(self.sun, [slot], staging, shape=self.shape)
            return read_frame(path, instrument)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


@functools.cache
def _sun(seed: int) -> SyntheticSun:
    """One synthetic Sun per seed and process (a worker renders many frames of it)."""
    return SyntheticSun(SunConfig(), seed=seed)


Frames = FileFrames | SyntheticFrames
