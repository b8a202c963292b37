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

import warnings
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
from ingest.instruments import MDI_SPEC, InstrumentSpec, harmonise, instrument_for, instrument_named
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
    instrument : the instrument that took it (:attr:`ingest.instruments.InstrumentSpec.name`), from the header.
    quality : the instrument's quality word, 0 when the file has none (:meth:`ingest.instruments.Instrument.is_bad` judges it).
    """

    path: Path
    data: np.ndarray
    observer: Observer
    image: ImageGeometry
    missing_on_disk: int
    on_disk: np.ndarray
    instrument: str = MDI_SPEC.name
    quality: int = 0

    @property
    def time(self) -> Time:
        return self.observer.time


def _open(path: Path):
    """(header, data) of the first 2-D image HDU; raw errors become typed ones."""
    if not path.is_file():
        raise NotFITSError(path, "no such file")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(path, memmap=False) as hdul:
                for hdu in hdul:
                    if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)) and hdu.header.get("NAXIS") == 2:
                        header = hdu.header.copy()
                        _check_size(path, header)  # before the data: a compressed HDU would be decompressed
                        data = hdu.data
                        break
                else:
                    raise NoImageDataError(path, f"no HDU holds a 2-D image (HDUs: {[type(h).__name__ for h in hdul]})")
    except IngestError:
        raise
    except OSError as exc:
        raise NotFITSError(path, f"not a readable FITS file ({exc})") from None
    except (TypeError, ValueError) as exc:
        if any("truncated" in str(w.message) for w in caught):
            raise TruncatedFITSError(path, "file is shorter than its header says (truncated)") from None
        raise NotFITSError(path, f"unreadable FITS data ({exc})") from None
    if any("truncated" in str(w.message) for w in caught):
        raise TruncatedFITSError(path, "file is shorter than its header says (truncated)")
    if data is None or data.ndim != 2:
        raise NoImageDataError(path, "the image HDU holds no 2-D data")
    return header, data


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
        if not np.isfinite(float(header[key])):
            raise MissingKeywordError(path, f"{key} is not a finite number ({header[key]!r})")
    ctypes = (str(header.get("CTYPE1", "")).strip(), str(header.get("CTYPE2", "")).strip())
    if ctypes != PROJECTION:
        raise MissingKeywordError(path, f"CTYPE1/CTYPE2 are {ctypes}; a helioprojective TAN image {PROJECTION} is required")


def read_header(path: str | Path) -> fits.Header:
    """The validated header of a magnetogram, without reading its data."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=True) as hdul:
                headers = [h.header.copy() for h in hdul if h.header.get("NAXIS") == 2 and not isinstance(h, fits.BinTableHDU)]
    except OSError as exc:
        raise NotFITSError(path, f"not a readable FITS file ({exc})") from None
    if not headers:
        raise NoImageDataError(path, "no HDU holds a 2-D image")
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
    data = np.asarray(raw, dtype=np.float32)
    missing = ~np.isfinite(data)
    if missing.all():
        raise EmptyDataError(path, "every pixel is missing (BLANK or NaN)")
    # Units: astropy already applied BSCALE/BZERO; convert e.g. Mx/cm^2 to G.
    scale = u.Unit(str(header["BUNIT"]).strip()).to(u.G)
    if scale != 1.0:
        data *= np.float32(scale)
    observer, image = _geometry(path, header, data)
    disk = image.on_disk_mask(observer.distance_rsun)
    missing_on_disk = int(np.count_nonzero(missing & disk))
    if missing_on_disk == np.count_nonzero(disk):
        raise EmptyDataError(path, "every on-disk pixel is missing")
    data[missing | ~disk] = 0.0
    return Magnetogram(path, data, observer, image, missing_on_disk, disk, source.spec.name, source.quality(header))


def read_frame(path: str | Path, instrument: InstrumentSpec = MDI_SPEC) -> Magnetogram:
    """A magnetogram ready for a model trained on ``instrument``: read and cleaned (:func:`read_magnetogram`),
    refused if its instrument's quality word flags it (:meth:`ingest.instruments.Instrument.is_bad`), and brought
    to ``instrument`` (:func:`to_instrument`)."""
    mag = read_magnetogram(path)
    if instrument_named(mag.instrument).is_bad(mag.quality):
        raise QualityError(path, f"QUALITY is 0x{mag.quality & 0xFFFFFFFF:08X}: the {mag.instrument} pipeline flags "
                                 "this frame")
    return to_instrument(mag, instrument)


def to_instrument(mag: Magnetogram, target: InstrumentSpec) -> Magnetogram:
    """``mag`` brought to the instrument ``target`` (:func:`ingest.instruments.harmonise`); unchanged if it is
    already that instrument's. Raises :class:`~ingest.instruments.InstrumentError` if it cannot be."""
    if mag.instrument == target.name:
        return mag
    source = instrument_named(mag.instrument)
    seed = int(round(mag.time.unix))
    out = harmonise(mag.path, mag.data, mag.image, mag.on_disk, source, target, seed)
    return replace(mag, data=out.data, image=out.image, on_disk=out.on_disk, instrument=target.name)
