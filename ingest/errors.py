"""Typed ingest errors. Each names the file and says what is wrong with it."""
from __future__ import annotations

from pathlib import Path


class IngestError(Exception):
    """A magnetogram that cannot be ingested. ``path`` is the offending file."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class NotFITSError(IngestError):
    """The file is not a FITS file at all."""


class TruncatedFITSError(IngestError):
    """The file is FITS but its data unit is shorter than its header says."""


class NoImageDataError(IngestError):
    """No HDU holds a 2-D image."""


class UnitError(IngestError):
    """BUNIT is missing or is not a magnetic flux density."""


class MissingKeywordError(IngestError):
    """A keyword needed to place the observer or the image is missing or unusable."""


class EmptyDataError(IngestError):
    """Every pixel is missing (BLANK or NaN)."""


class TimeOrderError(IngestError):
    """The observation time is not after the previous frame's."""


class InstrumentError(IngestError):
    """The instrument is unknown, or its frame cannot be brought to the model's instrument."""


class QualityError(IngestError):
    """The instrument's pipeline flags the frame: its ``QUALITY`` word sets bits that refuse it (``bits``, named as
    ``instrument``'s documentation names them)."""

    def __init__(self, path, problem, bits: list[str] | None = None, instrument: str = ""):
        super().__init__(path, problem)
        self.bits, self.instrument = bits or [], instrument


class ImageSizeError(IngestError):
    """The header claims an image larger than any full-disk magnetograph's (refused before reading its data)."""
