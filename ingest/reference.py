"""The reference the fast path is held to: sunpy's ``Map.reproject_to`` onto a Carrington WCS.

Slow (the coordinate transforms go through astropy frames) but independent
of :mod:`ingest.projection`; tests and ``bench/ingest.py`` compare the two.
Needs the ``reproject`` package (``pip install fluxwatch[reference]``).
"""
from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
from sunpy.map.header_helper import make_heliographic_header

from common.patches import PatchGrid


def reproject_patches(smap, grid: PatchGrid, indices) -> np.ndarray:
    """Patches resampled by ``smap.reproject_to``: float (n, pixels, pixels), NaN where undefined.

    Each latitude row of the requested patches is reprojected as one
    plate carrée (CAR) band in Carrington coordinates covering exactly those
    patches' pixels, so the reference resamples the same pixels as the fast
    path, no more.
    """
    indices = np.asarray(indices)
    n, step = grid.config.pixels, grid.config.pixel_size.to_value(u.deg)
    half = grid.config.patch_size.to_value(u.deg) / 2
    out = np.full((len(indices), n, n), np.nan)
    for lat in np.unique(grid.lat[indices]):
        members = np.flatnonzero(grid.lat[indices] == lat)
        lons = grid.lon[indices[members]]
        # Start the band at the patch after the widest gap in longitude, so it is contiguous.
        order = np.argsort(lons)
        gaps = np.diff(np.r_[lons[order], lons[order][0] + 360.0])
        first = lons[order][(np.argmax(gaps) + 1) % len(order)]
        east_edge = first - half
        offsets = np.rint(((lons - half - east_edge) % 360.0) / step).astype(int)
        width = offsets.max() + n
        header = make_heliographic_header(
            smap.coordinate_frame.obstime, smap.observer_coordinate, (n, width), frame="carrington",
            projection_code="CAR",
        )
        # CRVAL2 = 0 keeps CAR a plain (non-oblique) plate carrée; CRPIX2 places the row.
        header.update({
            "crval1": east_edge + (width / 2) * step, "crpix1": (width + 1) / 2, "cdelt1": step,
            "crval2": 0.0, "cdelt2": step, "crpix2": 1 - (lat - half + step / 2) / step,
            "rsun_ref": smap.coordinate_frame.rsun.to_value(u.m),
        })
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            band = smap.reproject_to(header).data
        for m, off in zip(members, offsets):
            out[m] = band[:, off : off + n]
    return out
