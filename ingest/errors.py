"""Typed ingest errors. Each names the file and says what is wrong with it, and carries the reason a service
counts its rejection by (``reason``: the ``reason`` label of ``fluxwatch_frames_rejected_total``)."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar


class IngestError(Exception):
    """A magnetogram that cannot be ingested. ``path`` is the offending file."""

    reason: ClassVar[str] = "other"

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # raised in a reader process (serving.reader), re-raised in the service's
        return type(self), (self.path, self.problem), self.__dict__


class NotFITSError(IngestError):
    """The file is not a FITS file at all."""

    reason = "not_fits"


class TruncatedFITSError(IngestError):
    """The file is FITS but its data unit is shorter than its header says."""

    reason = "truncated"


class NoImageDataError(IngestError):
    """No HDU holds a 2-D image."""

    reason = "no_image"


class UnitError(IngestError):
    """BUNIT is missing or is not a magnetic flux density."""

    reason = "bad_unit"


class MissingKeywordError(IngestError):
    """A keyword needed to place the observer or the image is missing or unusable."""

    reason = "missing_keyword"


class EmptyDataError(IngestError):
    """Every pixel is missing (BLANK or NaN)."""

    reason = "empty"


class TimeOrderError(IngestError):
    """The observation time is not after the previous frame's."""

    reason = "time_order"


class InstrumentError(IngestError):
    """The instrument is unknown, or its frame cannot be brought to the model's instrument."""

    reason = "instrument"


class QualityError(IngestError):
    """The instrument's pipeline flags the frame: its ``QUALITY`` word sets bits that refuse it (``bits``, named as
    ``instrument``'s documentation names them)."""

    reason = "bad_quality"

    def __init__(self, path, problem, bits: list[str] | None = None, instrument: str = ""):
        super().__init__(path, problem)
        self.bits, self.instrument = bits or [], instrument


class ImageSizeError(IngestError):
    """The header claims an image larger than any full-disk magnetograph's (refused before reading its data)."""

    reason = "too_large"


class MemoryLimitError(IngestError):
    """Reading the file needed more memory than the reader's limit (``read_memory_bytes``), e.g. a small
    compressed file that decompresses to gigabytes."""

    reason = "memory_limit"


class TimeLimitError(IngestError):
    """Reading the file took longer than the reader's limit (``read_timeout``): the reader was stopped."""

    reason = "time_limit"


class ReaderDiedError(IngestError):
    """The process reading the file died (a signal, e.g. the kernel's OOM killer, or a crash in a library)."""

    reason = "reader_died"
