"""Test helpers (not fixtures: those are in ``conftest.py``): real MDI headers, synthetic series, a server thread."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import astropy.units as u
import numpy as np
import uvicorn
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS
from sunpy.data.test import get_test_filepath

from devtools.kafka_broker import free_port
from ingest.instruments.mdi import mdi_header, soho_observer, write_mdi
from ingest.projection import ImageGeometry
from sim.config import SunConfig
from sim.render import render_full_disk

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


def bipole(lon0, lat0, separation=4.0, peak=800.0, width=1.5):
    """B_r(lon, lat) of a Gaussian bipole centred at Carrington (lon0, lat0), degrees and G."""
    def field(lon, lat):
        dlon = (lon - lon0 + 180.0) % 360.0 - 180.0
        lead = np.exp(-((dlon - separation / 2) ** 2 + (lat - lat0) ** 2) / (2 * width**2))
        follow = np.exp(-((dlon + separation / 2) ** 2 + (lat - lat0) ** 2) / (2 * width**2))
        return peak * (lead - follow)
    return field


def synthetic_mdi_series(folder: Path, times, field, shape=(256, 256)) -> list[Path]:
    """Write MDI-format frames of ``field`` seen from SoHO at ``times``: B_los = B_r·μ at pixel centres, no PSF or noise."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for t in Time(times):
        obs = soho_observer(t)
        header = mdi_header(obs, shape)
        image = ImageGeometry.from_wcs(WCS(header), shape)
        data = render_full_disk(field, SunConfig(psf_fwhm_arcsec=0.0), 0, 0, obs, image, noise=False)
        paths.append(write_mdi(folder / f"mdi.fd_M_96m_lev182.{t.strftime('%Y%m%d_%H%M%S')}.fits", data, obs))
    return paths


def cadence_times(start, n, cadence=96 * u.min):
    return Time(start) + np.arange(n) * cadence


class ServerThread:
    """A real uvicorn server for an app, on a free loopback port, in a thread."""

    def __init__(self, app):
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)
