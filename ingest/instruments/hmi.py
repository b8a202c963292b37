"""SDO/HMI: the instrument (:class:`HMI`: its header, quality word, pixels, resolution, noise and line), and its
line-of-sight full-disk FITS files as JSOC exports ``hmi.M_720s(_nrt)`` and the synthetic Sun writes them.

The writer lets simulated HMI frames travel the same ingest path as real ones. The layout follows JSOC's exports: an empty primary HDU and
a Rice-compressed image HDU of 32-bit integers (``BSCALE = 0.1``,
``BLANK = -2147483648``), solar north down (``CROTA2`` ≈ 180°), 0.504″
pixels, the observer in ``DSUN_OBS``/``CRLN_OBS``/``CRLT_OBS``, the record
time ``T_REC`` on the series' 720-s grid, and ``QUALITY`` (0 = good). The
keywords not read by sunpy (``T_REC``, ``QUALITY``, ``CADENCE``) follow the
real HMI header that sunpy ships (``resampled_hmi.fits``).
"""
from __future__ import annotations

from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.time import Time

from common.observer import Observer
from ingest.instruments.base import (
    SYNTHETIC_ORIGIN,
    Instrument,
    InstrumentSpec,
    centred_geometry,
    header_words,
    record_time,
    rsun_obs_arcsec,
    write_atomically,
)
from ingest.projection import ImageGeometry


class HMI(Instrument):
    """SDO/HMI line-of-sight magnetograms (``hmi.M_720s``, ``hmi.M_45s`` and their ``_nrt`` series): 0.504″
    pixels, ~1″ resolution, ~6 G noise at 720 s (Schou et al. 2012, Sol. Phys. 275, 229; Liu et al. 2012,
    Sol. Phys. 279, 295). ``QUALITY`` ≠ 0 marks a frame HMI's pipeline flags."""

    spec = InstrumentSpec("SDO/HMI", 0.504, 1.0, 6.3)
    series_prefix = "hmi"
    to_mdi_factor = 1.0 / 0.701
    wavelength_A = 6173.3  # Fe I
    #: The level-1.5 line-of-sight observables' QUALITY word, as JSOC documents it
    #: (http://jsoc.stanford.edu/doc/data/hmi/Quality_Bits/QUALITY.txt, from the observables code, HMI_observables.c).
    #: The first group means no usable observable was made; the second that it was made in sub-optimal conditions.
    quality_bits = {
        "QUAL_NODATA": (0x80000000, "no line-of-sight observable was produced (empty record)"),
        "QUAL_TARGETFILTERGRAMMISSING": (0x40000000, "no target filtergram near the target time"),
        "QUAL_NOINTERPOLATEDKEYWORDS": (0x20000000, "CROTA2, DSUN_OBS or CRLT_OBS could not be interpolated"),
        "QUAL_NOFRAMELISTINFO": (0x10000000, "the framelist used is unknown or not an observables one"),
        "QUAL_WRONGCADENCE": (0x08000000, "the framelist's cadence is not the expected one"),
        "QUAL_WRONGTARGET": (0x04000000, "the target filtergram is not in the framelist"),
        "QUAL_MISSINGLEV1D": (0x02000000, "not enough level-1d filtergrams for an observable"),
        "QUAL_MISSINGKEYWORDLEV1D": (0x01000000, "needed keywords unreadable in the level-1d data"),
        "QUAL_WRONGWAVELENGTHNUM": (0x00800000, "wrong number of wavelengths in the level-1d records"),
        "QUAL_MISSINGKEYWORDLEV1P": (0x00400000, "needed keywords unreadable in the level-1p data"),
        "QUAL_NOLOOKUPRECORD": (0x00200000, "no look-up tables for the MDI-like algorithm"),
        "QUAL_NOLOOKUPKEYWORD": (0x00100000, "the look-up tables' keywords unreadable"),
        "QUAL_NOTENOUGHINTERPOLANTS": (0x00080000, "not enough points for the temporal interpolation"),
        "QUAL_INTERPOLATIONFAILED": (0x00040000, "the temporal interpolation failed"),
        "QUAL_MISSINGLEV1P": (0x00020000, "not enough level-1p records for an observable"),
        "QUAL_LOWINTERPNUM": (0x00010000, "fewer temporal interpolation points than expected, or a gap over the cadence"),
        "QUAL_LOWKEYWORDNUM": (0x00008000, "some keywords taken from the nearest record instead of interpolated"),
        "QUAL_ISSTARGET": (0x00004000, "the image-stabilisation loop was open for some filtergrams"),
        "QUAL_NOTEMP": (0x00002000, "default temperatures used in the polarisation calibration"),
        "QUAL_NOGAPFILL": (0x00001000, "not every level-1 filtergram could be gap-filled"),
        "QUAL_LIMBFITISSUE": (0x00000800, "level-1 records discarded for their limb fit (jitter)"),
        "QUAL_NOCOSMICRAY": (0x00000400, "some cosmic-ray lists could not be read"),
        "QUAL_NOCOEFFKEYWORD": (0x00000200, "the MDI-like correction's coefficient keywords unreadable"),
        "QUAL_ECLIPSE": (0x00000100, "at least one level-1 record taken during an eclipse"),
        "QUAL_NOCOEFFPRECORD": (0x00000080, "no coefficients for the MDI-like correction"),
        "QUAL_LARGEFTSID": (0x00000040, "a large HFTSACID, which adds noise"),
        "QUAL_POORQUALITY": (0x00000020, "poor quality: eclipse, lunar transit, thermal recovery, open ISS..."),
    }
    #: Refused: no usable observable (the first group), and an eclipse, whose shadow moves flux across the disk as
    #: no emergence does (HARP tracking refuses it too; an earlier version of the list gave the eclipse 0x200, so both
    #: are refused). The rest make a noisier frame: recorded, not refused.
    refused_by_default = frozenset(name for name, (mask, _) in quality_bits.items() if mask >= 0x00020000) | {
        "QUAL_ECLIPSE", "QUAL_NOCOEFFKEYWORD", "QUAL_NOCOEFFPRECORD"}

    #: The observable's series name by the header's ``CONTENT``.
    observables = {"MAGNETOGRAM": "M", "DOPPLERGRAM": "V", "CONTINUUM INTENSITY": "Ic", "LINEDEPTH": "Ld",
                   "LINEWIDTH": "Lw"}

    @classmethod
    def is_source_for(cls, header: fits.Header) -> bool:
        return "HMI" in header_words(header, "TELESCOP", "INSTRUME")

    @classmethod
    def series(cls, header: fits.Header) -> str | None:
        """``DSNAME``, else what JSOC's level-1.5 keywords say: the observable (``CONTENT``), the cadence
        (``CADENCE``, 45 or 720 s) and the quick-look flag (``QLOOK`` = 1: the ``_nrt`` series), e.g.
        ``hmi.M_720s_nrt``; None when they do not name one."""
        named = super().series(header)
        if named is not None:
            return named
        observable = cls.observables.get(str(header.get("CONTENT", "")).strip().upper())
        try:
            cadence = float(header.get("CADENCE"))
        except (TypeError, ValueError):
            return None
        if observable is None or cadence not in (45.0, 720.0):
            return None
        return f"hmi.{observable}_{cadence:.0f}s" + ("_nrt" if header.get("QLOOK") == 1 else "")


#: HMI full-disk geometry: 4096² pixels of 0.504″.
HMI_SHAPE = (4096, 4096)
HMI_PLATE_SCALE = HMI.spec.plate_scale_arcsec * u.arcsec
#: The 720-s series' record step (``hmi.M_720s``; the 45-s series steps by 45 s).
HMI_CADENCE = 720 * u.s
#: Position angle of solar north in HMI images (the camera is mounted upside down); real frames differ by ~0.1°.
HMI_CROTA2 = 180.0
BSCALE = 0.1
BLANK = np.int32(-(2**31))


def hmi_header(observer: Observer, shape=HMI_SHAPE, quality: int = 0) -> fits.Header:
    """An ``hmi.M_720s`` header for an image of ``shape`` seen by ``observer`` at its time.

    The image is centred on the Sun and rotated by :data:`HMI_CROTA2`, at
    HMI's plate scale for 4096² (scaled for other shapes).
    """
    ny, nx = shape
    scale = HMI_PLATE_SCALE.to_value(u.arcsec) * 4096 / nx
    rsun_obs = rsun_obs_arcsec(observer)
    t = Time(observer.time, scale="utc")
    step = HMI_CADENCE.to_value(u.s)
    t_rec = record_time(t, step)
    h = fits.Header()
    cards = [
        ("T_REC", t_rec.strftime("%Y.%m.%d_%H:%M:%S_TAI"), "[TAI] Slot time"),
        ("T_OBS", t.tai.isot.replace("-", ".").replace("T", "_") + "_TAI", "[TAI] mid time of the observation"),
        ("DATE-OBS", t.isot, "[ISO] Observation time"),
        ("TELESCOP", "SDO/HMI", "For HMI: SDO/HMI"),
        ("INSTRUME", "HMI_FRONT2", "HMI camera"),
        ("WAVELNTH", 6173.0, "[angstrom] For HMI: 6173.0"),
        ("CONTENT", "MAGNETOGRAM", "Type of data"),
        ("BUNIT", "Gauss", "Physical units of data"),
        ("CADENCE", step, "[s] Repetition interval"),
        ("QUALITY", int(quality), "Level 1 quality word (0 = good)"),
        ("CTYPE1", "HPLN-TAN", "WCS axis type"),
        ("CTYPE2", "HPLT-TAN", "WCS axis type"),
        ("CUNIT1", "arcsec", "WCS axis unit"),
        ("CUNIT2", "arcsec", "WCS axis unit"),
        ("CRPIX1", (nx + 1) / 2, "[pix] Reference pixel (Sun centre)"),
        ("CRPIX2", (ny + 1) / 2, "[pix] Reference pixel (Sun centre)"),
        ("CRVAL1", 0.0, "[arcsec] Sun centre"),
        ("CRVAL2", 0.0, "[arcsec] Sun centre"),
        ("CDELT1", scale, "[arcsec/pixel] image scale"),
        ("CDELT2", scale, "[arcsec/pixel] image scale"),
        ("CROTA2", HMI_CROTA2, "[deg] Position angle of solar north"),
        ("DSUN_OBS", observer.distance.to_value(u.m), "[m] Distance from SDO to Sun centre"),
        ("CRLN_OBS", observer.lon.to_value(u.deg), "[deg] Carrington longitude of the observer"),
        ("CRLT_OBS", observer.lat.to_value(u.deg), "[deg] Carrington latitude of the observer"),
        ("RSUN_REF", observer.rsun.to_value(u.m), "[m] Reference radius of the Sun"),
        ("RSUN_OBS", rsun_obs, "[arcsec] Angular radius of the Sun"),
        ("ORIGIN", SYNTHETIC_ORIGIN, "Organization that created the file"),
    ]
    for key, value, comment in cards:
        h[key] = (value, comment)
    return h


def hmi_geometry(shape=HMI_SHAPE) -> ImageGeometry:
    """The image geometry of :func:`hmi_header`: Sun-centred, rotated by :data:`HMI_CROTA2`, HMI's plate scale."""
    return centred_geometry(shape, HMI_PLATE_SCALE * 4096 / shape[1], HMI_CROTA2)


def write_hmi(path: str | Path, data_gauss: np.ndarray, observer: Observer, quality: int = 0,
              cards: dict | None = None) -> Path:
    """Write an HMI-format magnetogram atomically (a temporary file, then rename).

    ``data_gauss`` is (ny, nx) in G with NaN for missing pixels; it is stored
    Rice-compressed as scaled 32-bit integers with ``BLANK`` for NaN. ``cards``: further header cards,
    ``{keyword: (value, comment)}``.
    """
    path = Path(path)
    missing = ~np.isfinite(data_gauss)
    raw = np.where(missing, BLANK, np.rint(np.nan_to_num(data_gauss) / BSCALE)).astype(np.int32)
    header = hmi_header(observer, raw.shape, quality)
    header["BLANK"] = int(BLANK)
    header.update(cards or {})
    image = fits.CompImageHDU(raw, header=header, compression_type="RICE_1")
    image.header["BSCALE"], image.header["BZERO"] = BSCALE, 0.0
    return write_atomically(fits.HDUList([fits.PrimaryHDU(), image]), path)
