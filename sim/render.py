"""Render a radial field defined on the Carrington sphere as a full-disk LoS image."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from common.observer import Observer
from ingest.projection import ImageGeometry

#: B_r(lon_deg, lat_deg) -> G, vectorised over arrays of Carrington coordinates.
RadialField = Callable[[np.ndarray, np.ndarray], np.ndarray]


def render_full_disk(field: RadialField, observer: Observer, image: ImageGeometry) -> np.ndarray:
    """The line-of-sight field an observer sees, B_los = B_r·μ, float64 (ny, nx) in G.

    Each pixel samples the field where its line of sight meets the surface
    (pixel centres, no sub-pixel averaging); pixels off the disk are NaN, as
    MDI leaves them BLANK.
    """
    ny, nx = image.shape
    rows, cols = np.mgrid[0:ny, 0:nx]
    x, y, z, on_disk = image.heliocentric_from_pixels(cols, rows, observer.distance_rsun)
    out = np.full((ny, nx), np.nan)
    lon, lat = observer.carrington(x[on_disk], y[on_disk], z[on_disk])
    out[on_disk] = field(lon, lat) * observer.mu(x[on_disk], y[on_disk], z[on_disk])
    return out
