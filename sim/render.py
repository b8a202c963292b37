"""The instrument: from B_r on the Carrington sphere to the image MDI records.

One function forms every synthetic image, a whole full-disk frame or the few
thousand pixels under one patch, so that training videos go through the same
instrument as the live frames the service ingests:

1. each pixel samples the field where its line of sight meets the surface
   (pixel centres) and records B_los = B_r·μ; pixels off the disk are empty;
2. the optics blur the image with a Gaussian point-spread function of FWHM
   ``psf_fwhm_arcsec`` (MDI full disk: 2″ pixels, about 4″ resolution;
   Scherrer et al. 1995, Sol. Phys. 162, 129);
3. each pixel gets Gaussian noise ``noise_G`` × (1 + ``noise_limb_increase`` (1 − μ)),
   a pure function of (seed, slot, row, column), so a pixel has the same noise
   whichever part of the image is formed;
4. values saturate at ±``saturation_G``.

Near the limb a patch pixel then samples foreshortened image pixels, several
patch pixels share one image pixel and its noise, and a region's flux is
smeared along the radius, as in the live path.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.ndimage import gaussian_filter

from common.observer import Observer
from ingest.instruments import plate_scale_arcsec
from ingest.projection import ImageGeometry
from sim import procedural as pr
from sim.config import SunConfig

#: B_r(lon_deg, lat_deg) -> G, vectorised over arrays of Carrington coordinates.
RadialField = Callable[[np.ndarray, np.ndarray], np.ndarray]

_TAG_PIXEL_NOISE = 0xD15C
#: SeedSequence-style keys take non-negative integers: slot numbers are offset by this.
_SLOT_OFFSET = 1 << 40
#: The PSF is truncated at this many σ; an image cut-out needs this margin (in σ) to be exact.
PSF_TRUNCATE = 4.0


def psf_sigma_px(config: SunConfig, image: ImageGeometry) -> float:
    """The PSF's Gaussian σ in pixels of ``image``."""
    return config.psf_fwhm_arcsec / (2.0 * np.sqrt(2.0 * np.log(2.0))) / plate_scale_arcsec(image)


def psf_margin_px(config: SunConfig, image: ImageGeometry) -> int:
    """Pixels a cut-out must extend beyond those it needs for the PSF to see every pixel it would see in full."""
    return int(np.ceil(PSF_TRUNCATE * psf_sigma_px(config, image))) + 1


def form_image(field: RadialField, config: SunConfig, seed: int, slot: int, observer: Observer,
               image: ImageGeometry, rows: np.ndarray, cols: np.ndarray, noise: bool = True) -> np.ndarray:
    """The image the instrument records on pixel rows ``rows`` × columns ``cols`` (1-d, consecutive, 0-based).

    Returns float64 (len(rows), len(cols)) of B_los in G, NaN off the disk (as
    MDI leaves them BLANK). A cut-out equals the same pixels of the full frame
    except within :func:`psf_margin_px` of its edges, where the PSF lacks the
    pixels beyond it.
    """
    x, y, z, on_disk = image.heliocentric_from_pixels(cols[None, :], rows[:, None], observer.distance_rsun)
    los = np.zeros(on_disk.shape)
    lon, lat = observer.carrington(x[on_disk], y[on_disk], z[on_disk])
    mu = np.zeros(on_disk.shape)
    mu[on_disk] = observer.mu(x[on_disk], y[on_disk], z[on_disk])
    los[on_disk] = field(lon, lat) * mu[on_disk]
    sigma = psf_sigma_px(config, image)
    if sigma > 0:
        los = gaussian_filter(los, sigma, mode="constant", cval=0.0, truncate=PSF_TRUNCATE)
    if noise:
        key = pr.keys(seed, _TAG_PIXEL_NOISE, int(slot) + _SLOT_OFFSET, rows[:, None], cols[None, :])
        los += pr.normal(key, 0) * config.noise_G * (1.0 + config.noise_limb_increase * (1.0 - mu))
    np.clip(los, -config.saturation_G, config.saturation_G, out=los)
    los[~on_disk] = np.nan
    return los


def render_full_disk(field: RadialField, config: SunConfig, seed: int, slot: int, observer: Observer,
                     image: ImageGeometry, noise: bool = True) -> np.ndarray:
    """The whole frame of :func:`form_image`, float64 (ny, nx) in G, NaN off the disk."""
    ny, nx = image.shape
    return form_image(field, config, seed, slot, observer, image, np.arange(ny), np.arange(nx), noise)
