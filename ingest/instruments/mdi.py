"""SoHO/MDI: the instrument (:class:`MDI`: its header, quality word, pixels, resolution, noise and line), and its
level-1.8 96-minute full-disk FITS files as the synthetic Sun writes them.

The writer lets simulated frames travel the same ingest path as real ones. The keywords, their units and the integer encoding
(``BITPIX = 32``, ``BSCALE = 0.01``, ``BLANK = -2147483648``) follow the real
MDI header that sunpy ships
(``sunpy/data/test/mdi.fd_M_96m_lev182.20101015_191200_TAI.data.header``).
"""
from __future__ import annotations

from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.time import Time

from common.clock import CADENCE
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


class MDI(Instrument):
    """SoHO/MDI full-disk 96-min magnetograms (level 1.8): 1.98″ pixels, ~4″ resolution, ~20 G noise per pixel
    (Scherrer et al. 1995, Sol. Phys. 162, 129; Liu, Norton & Scherrer 2004, Sol. Phys. 219, 39)."""

    spec = InstrumentSpec("SOHO/MDI", 1.98, 4.0, 20.0)
    series_prefix = "mdi"
    to_mdi_factor = 1.0
    wavelength_A = 6767.8  # Ni I
    # Level 1.8's quality word describes rather than condemns (e.g. 0x200 with missing pixels, which are BLANK,
    # counted in MISSVALS and cleaned to 0 G): no bit refuses a frame, every set bit is recorded.

    @classmethod
    def is_source_for(cls, header: fits.Header) -> bool:
        return "MDI" in header_words(header, "INSTRUME", "CAMERA", "TELESCOP") or header_words(header, "TELESCOP").strip() == "SOHO"

    @classmethod
    def series(cls, header: fits.Header) -> str | None:
        """``DSNAME``, else ``mdi.fd_M_96m_lev182`` for a full-disk magnetogram (``CONTENT``) of the 96-min
        cadence (``CADENCE``); None otherwise."""
        named = super().series(header)
        if named is not None:
            return named
        try:
            cadence = float(header.get("CADENCE"))
        except (TypeError, ValueError):
            return None
        content = str(header.get("CONTENT", "")).upper()
        return "mdi.fd_M_96m_lev182" if cadence == CADENCE.to_value(u.s) and "MAGNETOGRAM" in content else None


#: MDI full-disk geometry: 1024² pixels of 1.98″.
MDI_SHAPE = (1024, 1024)
MDI_PLATE_SCALE = MDI.spec.plate_scale_arcsec * u.arcsec
#: Photospheric radius MDI headers use (RSUN_REF).
MDI_RSUN_REF = 696.0e6 * u.m
#: SoHO orbits L1, about 1% of the Earth's distance sunward.
SOHO_DISTANCE_FACTOR = 0.99
#: Half of MDI's 300 s integration: DATE-OBS is the start, T_OBS the centre.
HALF_INTEGRATION = 150 * u.s
BSCALE = 0.01
BLANK = np.int32(-(2**31))


def soho_observer(time: Time) -> Observer:
    """The SoHO/MDI observer at ``time`` (sunpy ephemeris of the Earth, 1% sunward).

    ``time`` is what the file's ``DATE-OBS`` will say, the time sunpy gives
    the map, so the observer written equals the observer read back.
    """
    from sunpy.coordinates import HeliographicCarrington, get_earth

    earth = get_earth(time)
    soho = SkyCoord(earth.lon, earth.lat, earth.radius * SOHO_DISTANCE_FACTOR, frame=earth.frame)
    car = soho.transform_to(HeliographicCarrington(observer="self", obstime=time))
    return Observer(
        time=Time(time), lon=car.lon.to(u.deg) % (360 * u.deg), lat=car.lat.to(u.deg),
        distance=car.radius.to(u.m), rsun=MDI_RSUN_REF,
    )


def mdi_header(observer: Observer, shape=MDI_SHAPE, missing: int = 0) -> fits.Header:
    """An MDI 96-min magnetogram header for an image of ``shape`` seen by ``observer``.

    The image is centred on the Sun, solar north up (``CROTA2 = 0``), at MDI's
    plate scale for 1024² (scaled for other shapes).
    """
    ny, nx = shape
    scale = MDI_PLATE_SCALE.to_value(u.arcsec) * 1024 / nx
    rsun_obs = rsun_obs_arcsec(observer)
    t_start = Time(observer.time, scale="utc")
    t_obs = (t_start + HALF_INTEGRATION).tai
    step = CADENCE.to_value(u.s)  # the 96-min series is the clock's cadence
    t_rec = record_time(t_obs, step)
    car_rot = int(np.floor((t_start.jd - 2398167.4) / 27.2753)) + 1
    h = fits.Header()
    cards = [
        ("T_REC", t_rec.strftime("%Y.%m.%d_%H:%M:%S.000_TAI"), "[TAI] Intended observation time"),
        ("T_OBS", t_obs.strftime("%Y.%m.%d_%H:%M:%S.%f")[:-3] + "_TAI", "[TAI] Actual (center) of integration"),
        ("DATE-OBS", t_start.isot, "[ISO] start of integration"),
        ("CDELT1", scale, "[arcsec/pix] WCS coordinate increment"),
        ("CDELT2", scale, "[arcsec/pix] WCS coordinate increment"),
        ("CRPIX1", (nx + 1) / 2, "[pix] WCS reference pixel location"),
        ("CRPIX2", (ny + 1) / 2, "[pix] WCS reference pixel location"),
        ("CROTA2", 0.0, "[deg] Position angle of solar north"),
        ("CAR_ROT", car_rot, "Carrington rotation number for CRLN_OBS"),
        ("CRLN_OBS", observer.lon.to_value(u.deg), "[deg] Carrington longitude of the observer"),
        ("CRLT_OBS", observer.lat.to_value(u.deg), "[deg] Carrington latitude of the observer"),
        ("DSUN_OBS", observer.distance.to_value(u.m), "[m] Distance from SOHO/MDI to Sun center"),
        ("RSUN_OBS", rsun_obs, "[arcsec] Apparent semi-diameter of the Sun"),
        ("R_SUN", rsun_obs / scale, "[pix] Semi-diameter of the Sun"),
        ("X0", (nx - 1) / 2, "[pix] Center of solar image (axis 1)"),
        ("Y0", (ny - 1) / 2, "[pix] Center of solar image (axis 2)"),
        ("MISSVALS", int(missing), "Number of missing values in data record"),
        ("INTERVAL", 300.0, "[s] Observable integration interval"),
        ("CONTENT", "MDI Full Disk 96m Magnetogram", "Type of data"),
        ("CRVAL1", 0.0, "[arcsec] CRVAL1: x origin"),
        ("CRVAL2", 0.0, "[arcsec] CRVAL2: y origin"),
        ("CTYPE1", "HPLN-TAN", "WCS axis type"),
        ("CTYPE2", "HPLT-TAN", "WCS axis type"),
        ("CUNIT1", "arcsec", "CUNIT1: arcsec"),
        ("CUNIT2", "arcsec", "CUNIT2: arcsec"),
        ("WCSNAME", "Helioprojective-cartesian", "WCS system name"),
        ("BUNIT", "Gauss", "Physical units of data"),
        ("CADENCE", step, "[seconds] repetition interval"),
        ("CAMERA", "MDI", "Instrument"),
        ("TELESCOP", "SOHO", "Observatory; SOHO"),
        ("WAVELNTH", 6768, "[Angstrom] For MDI: 6768 Angstroms"),
        ("ORIGIN", SYNTHETIC_ORIGIN, "Organization that created the file"),
        ("RSUN_REF", observer.rsun.to_value(u.m), "[m] Reference radius of the Sun"),
        ("TRECSTEP", step, "[s] T_REC step"),
    ]
    for key, value, comment in cards:
        h[key] = (value, comment)
    return h


def mdi_geometry(shape=MDI_SHAPE) -> ImageGeometry:
    """The image geometry of :func:`mdi_header` (Sun-centred, north up, MDI's plate scale for 1024²), without
    building a WCS: the same for every frame, whatever the observer."""
    return centred_geometry(shape, MDI_PLATE_SCALE * 1024 / shape[1])


def write_mdi(path: str | Path, data_gauss: np.ndarray, observer: Observer, cards: dict | None = None) -> Path:
    """Write an MDI-format magnetogram atomically (a temporary file, then rename).

    ``data_gauss`` is (ny, nx) in G with NaN for missing pixels; it is stored
    as scaled 32-bit integers with ``BLANK`` for NaN, as MDI does. ``cards``: further header cards,
    ``{keyword: (value, comment)}``.
    """
    path = Path(path)
    missing = ~np.isfinite(data_gauss)
    raw = np.where(missing, BLANK, np.rint(np.nan_to_num(data_gauss) / BSCALE)).astype(np.int32)
    hdu = fits.PrimaryHDU(raw, header=mdi_header(observer, raw.shape, int(missing.sum())))
    hdu.header["BLANK"] = int(BLANK)
    hdu.header["BZERO"] = 0.0
    hdu.header["BSCALE"] = BSCALE
    hdu.header.update(cards or {})
    return write_atomically(fits.HDUList([hdu]), path)
