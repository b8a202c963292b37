"""Observing the synthetic Sun as SoHO/MDI does: full-disk frames and the patch videos cut from them.

Both go through one instrument, :func:`sim.render.form_image` (B_los = B_r·μ,
point-spread function, per-pixel noise, saturation), on MDI's image
geometry. A full-disk frame is written as an MDI FITS file; a patch video
forms only the image pixels under the patch and samples them bilinearly onto
the Carrington patch grid as ingest does (:func:`ingest.projection.sample_bilinear`),
so a training video is what the live path would make of the same frames.
Which slots are missing is the Sun's :meth:`~sim.sun.SyntheticSun.observed`
schedule, shared by every video and full-disk series.
"""
from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.time import Time
from scipy.ndimage import map_coordinates

from common.clock import slot_time
from common.observer import Observer
from common.video import fill_gaps
from ingest.instruments import HMI
from ingest.instruments.hmi import HMI_SHAPE, hmi_geometry, write_hmi
from ingest.instruments.mdi import MDI_RSUN_REF, MDI_SHAPE, SOHO_DISTANCE_FACTOR, mdi_geometry, write_mdi
from ingest.magnetogram import SIMULATED_CARD
from ingest.projection import ImageGeometry, carrington_to_pixel, sample_bilinear
from sim.ephemeris import ephemeris, observer_at
from sim.physics import wrap180
from sim.render import form_image, psf_margin_px, render_full_disk
from sim.sun import SyntheticSun

#: B_r is rendered this far (deg) around a patch so that the surface points of the image pixels bordering it and
#: within the PSF's main reach (two foreshortened MDI pixels, 2 × 0.12°/μ) fall inside: exact for μ ≳ 0.25; nearer
#: the limb the outermost take the nearest value (the full-disk comparison test bounds the effect).
_MARGIN_DEG = 1.0
#: B_r is rendered at this many points per patch pixel along each axis before the image pixels sample it: linear
#: interpolation of a σ = 0.3° network element on a 1/12° grid is within 1% of its peak.
_OVERSAMPLE = 2
#: Frames whose B_r is rendered at once.
_CHUNK = 32
#: The card that marks every file the synthetic Sun writes: read back as ``Origin.simulated``, it makes the
#: service's alerts from these frames simulated ones.
SIMULATED = {SIMULATED_CARD: (True, "fluxwatch synthetic Sun: not an observation")}


def observe_patch_video(sun: SyntheticSun, lon_c: float, lat_c: float, slot0: int, n_frames: int,
                        noise: bool = True, shape: tuple[int, int] = MDI_SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """The cleaned MDI patch video of the patch centred at Carrington (lon_c, lat_c) deg.

    Frames are the global slots slot0 … slot0 + n_frames − 1, each formed as a
    ``shape`` MDI image (only the pixels under the patch) and sampled onto the
    patch grid. Returns ``(video, observed)``: video float32 (n_frames, n, n)
    of B_los in G, cleaned as the paper does (missing slots interpolated per
    pixel in time by :func:`common.video.fill_gaps`, trailing missing slots
    0 G, off-disk and far-side pixels 0 G), and observed bool (n_frames,).
    A pure function of (sun, lon_c, lat_c, slots).
    """
    grid = sun.grid
    slots = int(slot0) + np.arange(int(n_frames))
    observed = sun.observed(slots)
    n = grid.config.pixels
    video = np.zeros((len(slots), n, n), dtype=np.float32)
    have = slots[observed]
    step = grid.config.pixel_size.to_value("deg") / _OVERSAMPLE
    half = 0.5 * grid.config.patch_size.to_value("deg") + _MARGIN_DEG
    fine = np.arange(-half, half + 0.5 * step, step)
    image = mdi_geometry(shape)
    frames = []
    for k in range(0, len(have), _CHUNK):
        chunk = have[k:k + _CHUNK]
        br = sun.patch_frames(lon_c, lat_c, chunk, offsets=fine)
        frames += [_patch_frame(sun, br[j], fine, float(lon_c), float(lat_c), int(slot), image, noise)
                   for j, slot in enumerate(chunk)]
    if frames:
        video[observed] = np.stack(frames)
    return fill_gaps(video, observed), observed


def _patch_frame(sun: SyntheticSun, br: np.ndarray, fine: np.ndarray, lon_c: float, lat_c: float, slot: int,
                 image: ImageGeometry, noise: bool) -> np.ndarray:
    """One patch frame (n, n) float32 from B_r on the fine grid ``fine`` (offsets, deg) about the patch centre."""
    observer = observer_at(slot)
    offsets = sun.grid.offsets
    col, row, visible = carrington_to_pixel(observer, image, lon_c + offsets[None, :], lat_c + offsets[:, None])
    if not visible.any():
        return np.zeros(col.shape, dtype=np.float32)
    pad = psf_margin_px(sun.config, image) + 1
    ny, nx = image.shape
    c0, r0 = (max(int(np.floor(a[visible].min())) - pad, 0) for a in (col, row))
    c1, r1 = (min(int(np.ceil(a[visible].max())) + pad, size - 1) for a, size in ((col, nx), (row, ny)))
    step = fine[1] - fine[0]

    def field(lon, lat):
        at = ((lat - lat_c - fine[0]) / step, (wrap180(lon - lon_c) - fine[0]) / step)
        return map_coordinates(br, at, order=1, mode="nearest", prefilter=False)

    cut = form_image(field, sun.config, sun.seed, slot, observer, image, np.arange(r0, r1 + 1), np.arange(c0, c1 + 1),
                     noise)
    np.nan_to_num(cut, copy=False, nan=0.0)  # off the disk, as ingest cleans BLANK pixels
    return sample_bilinear(cut, col - c0, row - r0, visible)


def mdi_file_name(slot: int) -> str:
    """The name :func:`write_fits_series` gives the frame of ``slot`` (MDI's level-1.8 naming)."""
    return f"mdi.fd_M_96m_lev182.{slot_time(slot).strftime('%Y%m%d_%H%M%S')}.fits"


def write_fits_series(sun: SyntheticSun, slots, folder, shape=(1024, 1024), noise: bool = True) -> list[Path]:
    """Write full-disk MDI-format FITS files of the observed slots among ``slots``; missing slots are skipped.

    Each file is a level-1.8-like 96-min magnetogram (``ingest.instruments.mdi.write_mdi``:
    real MDI keywords, scaled int32, BLANK off the disk) formed by
    :func:`sim.render.form_image` at the slot time seen from SoHO, with noise
    unless ``noise=False``. Returns the paths written, in slot order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    slots = np.atleast_1d(np.asarray(slots, dtype=np.int64))
    paths = []
    for slot in slots[sun.observed(slots)]:
        obs = observer_at(int(slot))
        t = slot_time(int(slot))
        data = render_full_disk(partial(sun.radial_field, time=t), sun.config, sun.seed, int(slot), obs,
                                mdi_geometry(shape), noise)
        paths.append(write_mdi(folder / mdi_file_name(int(slot)), data, obs, cards=SIMULATED))
    return paths


def hmi_observer_at(time: Time) -> Observer:
    """SDO/HMI's observer at ``time``: on the Sun–Earth line like SoHO (the same L0 and B0), at the Earth's distance."""
    l0, b0, d = ephemeris(time)
    return Observer(time=time, lon=float(l0) * u.deg, lat=float(b0) * u.deg, distance=float(d) / SOHO_DISTANCE_FACTOR * u.m,
                    rsun=MDI_RSUN_REF)


def write_hmi_series(sun: SyntheticSun, times: Time, folder, shape=HMI_SHAPE, noise: bool = True) -> list[Path]:
    """Write full-disk ``hmi.M_720s``-format FITS files of the synthetic Sun at ``times`` (any cadence, e.g. 12 min).

    The same truth as the MDI frames, observed by HMI (:mod:`ingest.instruments.hmi`):
    0.504″ pixels (for 4096²), HMI's 1″ point-spread function and per-pixel
    noise (:class:`ingest.instruments.HMI`), and the MDI-to-HMI
    cross-calibration applied in reverse (the synthetic field is what MDI
    measures). Returns the paths written, in time order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec, factor = HMI.spec, HMI.to_mdi_factor
    config = replace(sun.config, psf_fwhm_arcsec=spec.psf_fwhm_arcsec, noise_G=spec.noise_G * factor,
                     saturation_G=sun.config.saturation_G * factor)
    paths = []
    for t in Time(np.atleast_1d(times)):
        obs = hmi_observer_at(t)
        key = int(np.floor(t.unix))  # the noise key: one per second of observation time
        data = render_full_disk(partial(sun.radial_field, time=t), config, sun.seed, key, obs, hmi_geometry(shape), noise)
        data /= factor
        name = f"hmi.m_720s.{t.strftime('%Y%m%d_%H%M%S')}_TAI.magnetogram.fits"
        paths.append(write_hmi(folder / name, data, obs, cards=SIMULATED))
    return paths
