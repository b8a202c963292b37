"""Read and clean a full-disk line-of-sight magnetogram FITS file.

Handles SoHO/MDI level-1.8 96-minute magnetograms (integer data with
``BSCALE``/``BZERO`` and ``BLANK``, observer in ``CRLN_OBS``/``CRLT_OBS``/
``DSUN_OBS``, time in ``T_OBS``) and SDO/HMI line-of-sight magnetograms
(Rice-compressed image HDU, ``CROTA2`` ≈ 180°, ``QUALITY``); the instrument
is recognised from the header (:mod:`ingest.instruments`) and
:func:`to_instrument` brings a frame to the model's. The observer and image geometry are read by
sunpy; cleaning follows the paper: missing pixels and everything off the disk
become 0 G.
"""
from __future__ import annotations

import gzip
import itertools
import re
import warnings
from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.time import Time

from common.observer import Observer
from ingest.errors import (
    EmptyDataError,
    ImageSizeError,
    IngestError,
    MissingKeywordError,
    NoImageDataError,
    NotFITSError,
    QualityError,
    TruncatedFITSError,
    UnitError,
)
from ingest.instruments import (
    INSTRUMENTS,
    MDI,
    MDI_SPEC,
    SYNTHETIC_ORIGIN,
    Instrument,
    InstrumentSpec,
    harmonise,
    instrument_for,
    instrument_named,
)
from ingest.projection import ImageGeometry

#: Alternatives for each piece of metadata the ingest path needs; one of each must be present.
REQUIRED_KEYWORDS = {
    "observation time": ("T_OBS", "DATE-OBS", "DATE_OBS"),
    "observer distance": ("DSUN_OBS",),
    "observer longitude": ("CRLN_OBS", "HGLN_OBS"),
    "observer latitude": ("CRLT_OBS", "HGLT_OBS"),
    "reference pixel x": ("CRPIX1",),
    "reference pixel y": ("CRPIX2",),
    "pixel scale x": ("CDELT1", "CD1_1"),
    "pixel scale y": ("CDELT2", "CD2_2"),
}
PROJECTION = ("HPLN-TAN", "HPLT-TAN")
#: Largest image accepted (HMI's full disk is 4096²).
MAX_PIXELS = 8192 * 8192
#: Largest file (gzip files: once decompressed) accepted: the largest image as float64, and room for headers.
MAX_FILE_BYTES = 8 * MAX_PIXELS + 2**20
#: The HDUs looked at for the image: a full-disk magnetogram is in the first two (JSOC: an empty primary, then the
#: compressed image); a damaged file can make astropy read thousands of corrupted ones.
MAX_HDUS = 8
#: The FITS standard's limit on NAXIS; astropy builds a list of NAXIS axes before anything else.
MAX_AXES = 999
_NAXIS_CARD = re.compile(rb"NAXIS   = +(\d+)")


#: A JSOC file name's series and its prefix: ``hmi.m_720s_nrt.20261127_000000_TAI.3.magnetogram.fits`` →
#: (``hmi.m_720s_nrt``, ``hmi``).
_SERIES_IN_NAME = re.compile(r"^(([a-z0-9]+)\.[a-z0-9_]+)\.", re.IGNORECASE)
#: The card the synthetic Sun's writers set (:func:`sim.write_fits_series`): the frame is not an observation.
SIMULATED_CARD = "SIMULATE"


@dataclass(frozen=True)
class Origin:
    """What a frame says about where it came from (its header and name), kept as read when the frame is brought
    to another instrument: what an alert's provenance reports.

    Attributes
    ----------
    instrument : the instrument that took it (:attr:`ingest.instruments.InstrumentSpec.name`).
    series : the DRMS series its header says it is a record of (:meth:`ingest.instruments.Instrument.series`); None
        when it does not (a file's name is not read: a renamed file keeps its series).
    t_rec : the header's ``T_REC`` (the series' slot time, TAI) as written; None without one.
    quality : the instrument's quality word; None when the header has none.
    simulated : written by the synthetic Sun (the ``SIMULATE`` card), not observed.
    """

    instrument: str
    series: str | None = None
    t_rec: str | None = None
    quality: int | None = None
    simulated: bool = False


@dataclass(frozen=True)
class Magnetogram:
    """A cleaned full-disk magnetogram.

    Attributes
    ----------
    path : the file it came from.
    data : float32 array (ny, nx), line-of-sight field in G; 0 off the disk and where missing.
    observer : where it was observed from (Carrington frame), from sunpy.
    image : its helioprojective TAN pixel geometry.
    missing_on_disk : number of on-disk pixels that were missing (BLANK/NaN) and set to 0 G.
    on_disk : bool array (ny, nx), the pixels whose line of sight meets the disk.
    adapter : the adapter of the instrument whose data it holds (:mod:`ingest.instruments`), chosen from the header
        (the target's after :func:`to_instrument`); ``instrument`` is its name.
    quality : the instrument's quality word, 0 when the file has none (:meth:`ingest.instruments.Instrument.is_bad` judges it).
    origin : what the file says of itself (:class:`Origin`); the observing instrument's, after :func:`to_instrument` too.
    """

    path: Path
    data: np.ndarray
    observer: Observer
    image: ImageGeometry
    missing_on_disk: int
    on_disk: np.ndarray
    adapter: type[Instrument] = MDI
    quality: int = 0
    origin: Origin = Origin(MDI_SPEC.name)

    @property
    def instrument(self) -> str:
        """The name of the instrument whose data it holds (:attr:`ingest.instruments.InstrumentSpec.name`)."""
        return self.adapter.spec.name

    @property
    def time(self) -> Time:
        return self.observer.time


def _open(path: Path):
    """(header, data) of the first 2-D image HDU; raw errors become typed ones."""
    if not path.is_file():
        raise NotFITSError(path, "no such file")
    size = _check_axes(path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(path, memmap=False, do_not_scale_image_data=True) as hdul:
                seen = []
                for hdu in itertools.islice(hdul, MAX_HDUS):
                    seen.append(type(hdu).__name__)
                    if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)) and hdu.header.get("NAXIS") == 2:
                        header = _parsed(hdu.header)
                        _check_size(path, header)  # before the data: a compressed HDU would be decompressed
                        _check_span(path, hdu, size)
                        data = hdu.data
                        break
                else:
                    raise NoImageDataError(path, f"none of its first {MAX_HDUS} HDUs holds a 2-D image (HDUs: {seen})")
    except (IngestError, MemoryError):  # a memory error is the reader's limit (serving.reader), not the file's form
        raise
    except OSError as exc:
        raise NotFITSError(path, f"not a readable FITS file ({exc})") from None
    except Exception as exc:  # astropy meets a malformed header or data unit with KeyError, VerifyError, ValueError…
        if truncated := _truncated(path, caught):
            raise truncated from None
        raise NotFITSError(path, f"unreadable FITS structure ({_describe(exc)})") from None
    if truncated := _truncated(path, caught):
        raise truncated
    if data is None or data.ndim != 2:
        raise NoImageDataError(path, "the image HDU holds no 2-D data")
    return header, _scaled(path, header, data)


def _number(path: Path, header: fits.Header, key: str, default: float) -> float:
    value = header.get(key, default)
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError
        return float(value)
    except (TypeError, OverflowError):
        raise NotFITSError(path, f"{key} is not a real number ({value!r})") from None


def _scaled(path: Path, header: fits.Header, raw: np.ndarray) -> np.ndarray:
    """The stored values as physical ones, float32: ``raw·BSCALE + BZERO`` (in float64, as astropy scales, a few
    rows at a time rather than a float64 copy of the image), NaN where an integer image holds ``BLANK``."""
    bscale, bzero = _number(path, header, "BSCALE", 1.0), _number(path, header, "BZERO", 0.0)
    data = np.empty(raw.shape, dtype=np.float32)
    rows = max(1, 2**20 // max(raw.shape[1], 1))
    for i in range(0, raw.shape[0], rows):
        chunk = raw[i:i + rows].astype(np.float64)
        if bscale != 1.0:
            chunk *= bscale
        if bzero != 0.0:
            chunk += bzero
        data[i:i + rows] = chunk
    blank = header.get("BLANK")
    if raw.dtype.kind in "iu" and isinstance(blank, int) and not isinstance(blank, bool):
        data[raw == blank] = np.nan
    return data


def _truncated(path: Path, caught: list) -> TruncatedFITSError | None:
    """The error for a file astropy warned is truncated (``caught``: the warnings recorded while reading it)."""
    if any("truncated" in str(w.message) for w in caught):
        return TruncatedFITSError(path, "file is shorter than its header says (truncated)")
    return None


def _check_axes(path: Path) -> int:
    """Refuse, before astropy parses it, a file whose header claims more axes than FITS allows (astropy would
    build a list of that many, e.g. 10^10) or that is (gzip: decompresses to) more than :data:`MAX_FILE_BYTES`.
    Returns its size in bytes (decompressed)."""
    with path.open("rb") as f:
        packed = f.read(2) == b"\x1f\x8b"
    block = 2880 * 364  # whole FITS blocks, so header cards stay on 80-byte boundaries
    try:
        with (gzip.open(path, "rb") if packed else path.open("rb")) as f:
            total = 0
            while chunk := f.read(block):
                total += len(chunk)
                if total > MAX_FILE_BYTES:
                    raise ImageSizeError(path, f"{'decompresses to' if packed else 'is'} more than {MAX_FILE_BYTES} bytes, "
                                               "larger than any full-disk magnetogram")
                for m in _NAXIS_CARD.finditer(chunk):
                    if m.start() % 80 == 0 and int(m.group(1)) > MAX_AXES:
                        raise ImageSizeError(path, f"NAXIS = {int(m.group(1))}: FITS allows at most {MAX_AXES} axes")
    except (OSError, EOFError) as exc:  # a damaged gzip stream
        raise NotFITSError(path, f"not a readable FITS file ({exc})") from None
    return total


def _check_span(path: Path, hdu, size: int) -> None:
    """Refuse an HDU whose data the header places beyond the file's ``size`` bytes (more than a block's padding),
    before astropy allocates what the header claims (a compressed image's table of 5×10⁸ rows: 4 GiB)."""
    info = hdu.fileinfo()
    if info is not None and info["datLoc"] + info["datSpan"] > size + 2880:
        raise TruncatedFITSError(path, f"file is shorter than its header says (truncated): its data would end at byte "
                                       f"{info['datLoc'] + info['datSpan']}, the file has {size}")


def _parsed(header: fits.Header) -> fits.Header:
    """A copy of ``header`` with every card's value parsed now, so an unparsable card (e.g. ``CRPIX1 = NaN``)
    raises astropy's VerifyError here rather than wherever the keyword is first read."""
    copy = header.copy()
    for card in copy.cards:
        card.value  # noqa: B018 (parsing is the point)
    return copy


def _describe(exc: Exception) -> str:
    """An exception from astropy as a reason: its type (a bare KeyError says only the keyword) and message."""
    return f"{type(exc).__name__}: {exc}"


def _check_size(path: Path, header: fits.Header) -> None:
    ny, nx = int(header.get("NAXIS2", 0)), int(header.get("NAXIS1", 0))
    if nx * ny > MAX_PIXELS:
        raise ImageSizeError(path, f"the header claims a {nx}×{ny} image, larger than any full-disk magnetogram "
                                   f"(at most {MAX_PIXELS} pixels, e.g. 8192²)")


def check_header(path: Path, header: fits.Header) -> None:
    """Raise a typed error if the header cannot describe a full-disk magnetogram."""
    bunit = header.get("BUNIT")
    unit = u.Unit(str(bunit).strip(), parse_strict="silent") if bunit is not None else None
    if unit is None or isinstance(unit, u.UnrecognizedUnit) or not unit.is_equivalent(u.G):
        raise UnitError(path, f"BUNIT is {bunit!r}; a line-of-sight magnetogram in gauss (G, Gauss, Mx/cm^2) is required")
    for what, keys in REQUIRED_KEYWORDS.items():
        if not any(k in header and str(header[k]).strip() not in ("", "nan", "NaN") for k in keys):
            raise MissingKeywordError(path, f"missing {what} (keyword {' or '.join(keys)})")
    for key in ("DSUN_OBS", "CRPIX1", "CRPIX2"):
        try:
            finite = np.isfinite(float(header[key]))
        except (TypeError, ValueError):
            finite = False
        if not finite:
            raise MissingKeywordError(path, f"{key} is not a finite number ({header[key]!r})")
    ctypes = (str(header.get("CTYPE1", "")).strip(), str(header.get("CTYPE2", "")).strip())
    if ctypes != PROJECTION:
        raise MissingKeywordError(path, f"CTYPE1/CTYPE2 are {ctypes}; a helioprojective TAN image {PROJECTION} is required")


def read_header(path: str | Path) -> fits.Header:
    """The validated header of a magnetogram, without reading its data."""
    path = Path(path)
    if not path.is_file():
        raise NotFITSError(path, "no such file")
    _check_axes(path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(path, memmap=True) as hdul:
                headers = [_parsed(h.header) for h in itertools.islice(hdul, MAX_HDUS)
                           if h.header.get("NAXIS") == 2 and not isinstance(h, fits.BinTableHDU)]
    except MemoryError:
        raise
    except OSError as exc:
        raise NotFITSError(path, f"not a readable FITS file ({exc})") from None
    except Exception as exc:  # as in _open: a malformed header
        raise NotFITSError(path, f"unreadable FITS structure ({_describe(exc)})") from None
    if truncated := _truncated(path, caught):
        raise truncated
    if not headers:
        raise NoImageDataError(path, f"none of its first {MAX_HDUS} HDUs holds a 2-D image")
    check_header(path, headers[0])
    return headers[0]


def observation_time(path: str | Path, header: fits.Header) -> Time:
    """Observation time of a header as sunpy reads it (the map's obstime)."""
    return _geometry(Path(path), header, np.zeros((1, 1), dtype=np.float32))[0].time


def _geometry(path: Path, header: fits.Header, data: np.ndarray) -> tuple[Observer, ImageGeometry]:
    import sunpy.map

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            smap = sunpy.map.Map(data, header)
            observer = Observer.from_map(smap)
            image = ImageGeometry.from_wcs(smap.wcs, data.shape)
    except MemoryError:
        raise
    except Exception as exc:  # sunpy raises many kinds for bad metadata
        raise MissingKeywordError(path, f"observer or image geometry unusable: {exc}") from None
    if not (np.isfinite(observer.distance.value) and observer.distance > observer.rsun):
        raise MissingKeywordError(path, f"observer distance {observer.distance} is not outside the Sun")
    return observer, image


def read_magnetogram(path: str | Path) -> Magnetogram:
    """Read, validate and clean one full-disk magnetogram.

    Raises an :class:`~ingest.errors.IngestError` subclass naming the file
    and the problem for anything that is not a usable LoS magnetogram.
    """
    path = Path(path)
    header, raw = _open(path)
    check_header(path, header)
    source = instrument_for(path, header)
    data = raw
    missing = ~np.isfinite(data)
    if missing.all():
        raise EmptyDataError(path, "every pixel is missing (BLANK or NaN)")
    # Units: BSCALE/BZERO are applied; convert e.g. Mx/cm^2 to G.
    scale = u.Unit(str(header["BUNIT"]).strip()).to(u.G)
    if scale != 1.0:
        data *= np.float32(scale)
    observer, image = _geometry(path, header, data)
    disk = image.on_disk_mask(observer.distance_rsun)
    missing_on_disk = int(np.count_nonzero(missing & disk))
    if missing_on_disk == np.count_nonzero(disk):
        raise EmptyDataError(path, "every on-disk pixel is missing")
    data[missing | ~disk] = 0.0
    quality = source.quality(header)
    return Magnetogram(path, data, observer, image, missing_on_disk, disk, source, quality,
                       _origin(header, source, quality))


def _series_in_name(name: str) -> tuple[str | None, type[Instrument] | None]:
    """A JSOC file name's series and its instrument (``hmi.m_720s_nrt.20261127_000000_TAI.3.magnetogram.fits`` →
    ``hmi.m_720s_nrt``, HMI), by the series prefix an instrument declares; (None, None) for other names."""
    named = _SERIES_IN_NAME.match(name)
    if named is None:
        return None, None
    source = next((i for i in INSTRUMENTS if i.series_prefix == named.group(2).lower()), None)
    return (named.group(1), source) if source else (None, None)


def _origin(header: fits.Header, source: type[Instrument], quality: int) -> Origin:
    t_rec = header.get("T_REC")
    return Origin(source.spec.name, source.series(header), str(t_rec).strip() if isinstance(t_rec, str) else None,
                  quality if "QUALITY" in header else None, header.get(SIMULATED_CARD) is True)


def origin_of(path: str | Path, before_simulate_card: bool = False) -> Origin:
    """What a magnetogram's header and name say of its origin, without reading its data. ``before_simulate_card``:
    the file was written before the synthetic Sun set the ``SIMULATE`` card (fluxwatch 2.x), so its ``ORIGIN``
    says whether it is simulated."""
    header = read_header(path)
    source = instrument_for(path, header)
    origin = _origin(header, source, source.quality(header))
    if before_simulate_card and header.get("ORIGIN") == SYNTHETIC_ORIGIN:
        origin = replace(origin, simulated=True)
    return origin


def origin_from_name(name: str) -> Origin:
    """What a JSOC file name alone says of its origin (instrument and series); the rest unknown (observed, by default)."""
    series, source = _series_in_name(name)
    return Origin(source.spec.name if source else "unknown", series)


def read_frame(path: str | Path, instrument: InstrumentSpec = MDI_SPEC,
               refused_quality: Collection[str] | None = None) -> Magnetogram:
    """A magnetogram ready for a model trained on ``instrument``: read and cleaned (:func:`read_magnetogram`),
    refused if its quality word sets a bit of ``refused_quality`` (names; its instrument's default set when None,
    :meth:`ingest.instruments.Instrument.refusing`), and brought to ``instrument`` (:func:`to_instrument`)."""
    mag = read_magnetogram(path)
    source = mag.adapter
    refusing = source.refusing(mag.quality, refused_quality)
    if refusing:
        meanings = "; ".join(f"{b} ({source.quality_bits[b][1]})" if b in source.quality_bits else b for b in refusing)
        raise QualityError(path, f"QUALITY is 0x{mag.quality & 0xFFFFFFFF:08X}: {meanings}", bits=refusing,
                           instrument=mag.instrument)
    return to_instrument(mag, instrument)


def to_instrument(mag: Magnetogram, target: InstrumentSpec) -> Magnetogram:
    """``mag`` brought to the instrument ``target`` (:func:`ingest.instruments.harmonise`); unchanged if it is
    already that instrument's. Raises :class:`~ingest.instruments.InstrumentError` if it cannot be."""
    if mag.instrument == target.name:
        return mag
    seed = int(round(mag.time.unix))
    out = harmonise(mag.path, mag.data, mag.image, mag.on_disk, mag.adapter, target, seed)
    return replace(mag, data=out.data, image=out.image, on_disk=out.on_disk, adapter=instrument_named(target.name))
