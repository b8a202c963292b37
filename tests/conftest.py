"""Shared fixtures: sunpy's real MDI and HMI test data, and small synthetic MDI series."""
from __future__ import annotations

import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS
from sunpy.data.test import get_test_filepath

from ingest.mdi import mdi_header, soho_observer, write_mdi
from ingest.projection import ImageGeometry
from ingest.render import render_full_disk
from tests.kafka_fixture import kafka_broker  # noqa: F401  (session-wide real broker)

MDI_HEADER = "mdi.fd_M_96m_lev182.20101015_191200_TAI.data.header"


def real_mdi_header(shape=(64, 64)) -> fits.Header:
    """sunpy's real MDI 96-min header (a 64² binned frame), rescaled to ``shape``."""
    h = fits.Header.fromtextfile(get_test_filepath(MDI_HEADER))
    for key in ("XTENSION", "PCOUNT", "GCOUNT"):
        h.remove(key, ignore_missing=True)
    f = shape[1] / h["NAXIS1"]
    h["NAXIS1"], h["NAXIS2"] = shape[1], shape[0]
    for ax in "12":
        h[f"CDELT{ax}"] /= f
        h[f"CRPIX{ax}"] = (h[f"CRPIX{ax}"] - 0.5) * f + 0.5
    return h


def write_real_mdi(path: Path, shape=(64, 64), seed=0, date_obs=None) -> Path:
    """A FITS file with the real MDI header and random integer data, BLANK in the first row."""
    h = real_mdi_header(shape)
    if date_obs is not None:
        h["DATE-OBS"] = Time(date_obs).isot
    raw = np.random.default_rng(seed).normal(0, 3000, shape).astype(np.int32)  # 0.01 G units
    raw[0] = -(2**31)
    hdu = fits.PrimaryHDU(raw, header=h)
    hdu.header["BSCALE"], hdu.header["BZERO"], hdu.header["BLANK"] = 0.01, 0.0, -(2**31)
    hdu.writeto(path, output_verify="silentfix")
    return path


@pytest.fixture
def real_mdi_file(tmp_path) -> Path:
    return write_real_mdi(tmp_path / "mdi_real_header.fits")


@pytest.fixture
def real_hmi_file(tmp_path) -> Path:
    """sunpy's real resampled HMI map (CROTA2 ≈ 180°), BUNIT relabelled to Gauss."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(get_test_filepath("resampled_hmi.fits")) as hdul:
            hdul[0].header["BUNIT"] = "Gauss"
            hdul.writeto(tmp_path / "hmi.fits")
    return tmp_path / "hmi.fits"


def bipole(lon0, lat0, separation=4.0, peak=800.0, width=1.5):
    """B_r(lon, lat) of a Gaussian bipole centred at Carrington (lon0, lat0), degrees and G."""
    def field(lon, lat):
        dlon = (lon - lon0 + 180.0) % 360.0 - 180.0
        lead = np.exp(-((dlon - separation / 2) ** 2 + (lat - lat0) ** 2) / (2 * width**2))
        follow = np.exp(-((dlon + separation / 2) ** 2 + (lat - lat0) ** 2) / (2 * width**2))
        return peak * (lead - follow)
    return field


def synthetic_mdi_series(folder: Path, times, field, shape=(256, 256)) -> list[Path]:
    """Write MDI-format frames of ``field`` seen from SoHO at ``times``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for t in Time(times):
        obs = soho_observer(t)
        header = mdi_header(obs, shape)
        image = ImageGeometry.from_wcs(WCS(header), shape)
        data = render_full_disk(field, obs, image)
        paths.append(write_mdi(folder / f"mdi.fd_M_96m_lev182.{t.strftime('%Y%m%d_%H%M%S')}.fits", data, obs))
    return paths


def cadence_times(start, n, cadence=96 * u.min):
    return Time(start) + np.arange(n) * cadence
