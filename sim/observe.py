"""Observing the synthetic Sun as SoHO/MDI does: LoS projection, limb, noise, saturation, missing frames.

The line-of-sight field is B_los = B_r · μ, μ the cosine between the local
vertical and the line of sight (:meth:`common.observer.Observer.mu`), and 0 G
beyond the limb and on the far side. Noise is Gaussian, ``noise_G`` at disk
centre growing by ``noise_limb_increase`` × (1 − μ) toward the limb; values
saturate at ±``saturation_G``. Which slots are missing is the Sun's
:meth:`~sim.sun.SyntheticSun.observed` schedule, shared by
every video and full-disk series.
"""
from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.wcs import WCS, FITSFixedWarning

from common.clock import slot_time
from common.video import fill_gaps
from ingest.mdi import MDI_RSUN_REF, mdi_header, write_mdi
from ingest.projection import ImageGeometry
from sim.ephemeris import ephemeris, observer_at
from sim.render import render_full_disk
from sim.sun import SyntheticSun

_TAG_PATCH_NOISE = 0x7A7C
_TAG_DISK_NOISE = 0xD15C
#: SeedSequence takes non-negative integers: slot numbers are offset by this.
_SLOT_OFFSET = 1 << 40


def _patch_mu(l0_deg, b0_deg, distance_rsun, lon_deg, lat_deg) -> np.ndarray:
    """μ on patch grids, float32 (F, n_lat, n_lon); negative beyond the limb.

    Observer.mu's formula for points on the unit sphere (x² + y² + z² = 1),
    where it depends on the heliocentric z alone: μ = (zD − 1) / sqrt(D² + 1 − 2zD).
    z = cos B0 cos φ cos(λ − L0) + sin B0 sin φ is an outer product plus a column,
    so a frame costs a few passes over its pixels.
    """
    b0 = np.deg2rad(b0_deg)[:, None]
    lat = np.deg2rad(lat_deg)[None, :]
    d = np.asarray(distance_rsun, dtype=np.float64)[:, None]
    cos_part = (d * np.cos(b0) * np.cos(lat)).astype(np.float32)  # (F, n_lat), times D
    sin_part = (d * np.sin(b0) * np.sin(lat)).astype(np.float32)
    cos_dlon = np.cos(np.deg2rad(lon_deg[None, :] - l0_deg[:, None])).astype(np.float32)  # (F, n_lon)
    zd = cos_part[:, :, None] * cos_dlon[:, None, :]
    zd += sin_part[:, :, None]
    den = np.multiply(zd, -2.0, dtype=np.float32)
    den += (d * d + 1.0).astype(np.float32)[:, :, None]
    np.sqrt(den, out=den)
    zd -= 1.0
    zd /= den
    return zd


def _noise_seed(sun: SyntheticSun, lon_c: float, lat_c: float, slot0: int) -> list[int]:
    return [sun.seed, _TAG_PATCH_NOISE, int(slot0) + _SLOT_OFFSET,
            int(round((lon_c % 360.0) * 1e6)), int(round((lat_c + 90.0) * 1e6))]


def observe_patch_video(sun: SyntheticSun, lon_c: float, lat_c: float, slot0: int, n_frames: int,
                        noise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The cleaned MDI patch video of the patch centred at Carrington (lon_c, lat_c) deg.

    Frames are the global slots slot0 … slot0 + n_frames − 1. Returns
    ``(video, observed)``: video float32 (n_frames, n, n) of B_los in G,
    cleaned as the paper does (missing slots interpolated per pixel in time
    by :func:`common.video.fill_gaps`, trailing missing slots 0 G, off-disk
    and far-side pixels 0 G), and observed bool (n_frames,). The noise is a
    pure function of (seed, lon_c, lat_c, slot0).
    """
    c = sun.config
    slots = int(slot0) + np.arange(int(n_frames))
    observed = sun.observed(slots)
    n = sun.grid.config.pixels
    video = np.zeros((len(slots), n, n), dtype=np.float32)
    have = slots[observed]
    if have.size:
        l0, b0, dist = ephemeris(have)
        offsets = sun.grid.offsets
        mu = _patch_mu(l0, b0, dist / MDI_RSUN_REF.to_value(u.m), lon_c + offsets, lat_c + offsets)
        visible = mu > 0
        np.maximum(mu, 0.0, out=mu)
        los = sun.patch_frames(lon_c, lat_c, have)
        los *= mu
        if noise:
            rng = np.random.default_rng(_noise_seed(sun, lon_c, lat_c, slot0))
            # σ = noise_G · (1 + k (1 − μ)), only on the visible disk
            sigma = np.multiply(mu, -c.noise_G * c.noise_limb_increase, dtype=np.float32)
            sigma += np.float32(c.noise_G * (1.0 + c.noise_limb_increase))
            sigma *= visible
            sigma *= rng.standard_normal(los.shape, dtype=np.float32)
            los += sigma
        np.clip(los, -c.saturation_G, c.saturation_G, out=los)
        video[observed] = los
    return fill_gaps(video, observed), observed


def write_fits_series(sun: SyntheticSun, slots, folder, shape=(1024, 1024), noise: bool = True) -> list[Path]:
    """Write full-disk MDI-format FITS files of the observed slots among ``slots``; missing slots are skipped.

    Each file is a level-1.8-like 96-min magnetogram (``ingest.mdi.write_mdi``:
    real MDI keywords, scaled int32, BLANK off the disk) of B_los = B_r·μ at
    the slot time seen from SoHO, with noise (unless ``noise=False``) and
    saturation. Returns the paths written, in slot order.
    """
    c = sun.config
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    slots = np.atleast_1d(np.asarray(slots, dtype=np.int64))
    paths = []
    for slot in slots[sun.observed(slots)]:
        obs = observer_at(int(slot))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)  # astropy filling in MJD-OBS from DATE-OBS
            image = ImageGeometry.from_wcs(WCS(mdi_header(obs, shape)), shape)
        t = slot_time(int(slot))
        data = render_full_disk(partial(sun.radial_field, time=t), obs, image)
        if noise:
            rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
            x, y, z, _ = image.heliocentric_from_pixels(cols, rows, obs.distance_rsun)
            mu = obs.mu(x, y, z)
            rng = np.random.default_rng([sun.seed, _TAG_DISK_NOISE, int(slot) + _SLOT_OFFSET])
            data += rng.standard_normal(shape) * c.noise_G * (1.0 + c.noise_limb_increase * (1.0 - mu))
        np.clip(data, -c.saturation_G, c.saturation_G, out=data)
        name = f"mdi.fd_M_96m_lev182.{t.strftime('%Y%m%d_%H%M%S')}.fits"
        paths.append(write_mdi(folder / name, data, obs))
    return paths
