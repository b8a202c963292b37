"""The fast path: Carrington (lon, lat) → image pixel, and patch resampling.

Geometry (Thompson 2006, A&A 449, 791): a surface point's heliocentric
Cartesian position (x west, y north, z to the observer; see
:meth:`common.observer.Observer.heliocentric`) is seen along the direction
``(D - z, x, y)`` from an observer at distance ``D``. The image is a gnomonic
(``HPLN-TAN``/``HPLT-TAN``) projection of those directions about the reference
direction ``CRVAL``, i.e. a central projection onto the plane tangent there,
followed by the FITS linear transform ``CDELT·PC`` to pixels. Every step up to
the final division is linear in the point's position, so a whole grid costs a
few vectorised multiply–adds. Pixels are then sampled bilinearly, as
``reproject``'s interpolation (used by sunpy's ``Map.reproject_to``) does.
"""
from __future__ import annotations

from dataclasses import dataclass

import astropy.units as u
import numpy as np
from scipy.ndimage import map_coordinates

from common.observer import Observer
from common.patches import PatchGrid


@dataclass(frozen=True)
class ImageGeometry:
    """The helioprojective TAN WCS of a full-disk image.

    Attributes
    ----------
    shape : (ny, nx)
    crpix : array (2,), reference pixel (x, y), 0-based.
    crval : array (2,), reference direction (Tx, Ty), radians.
    pixel_from_plane : array (2, 2), inverse of ``diag(CDELT) @ PC`` in pixel per radian.
    """

    shape: tuple[int, int]
    crpix: np.ndarray
    crval: np.ndarray
    pixel_from_plane: np.ndarray

    @classmethod
    def from_wcs(cls, wcs, shape) -> ImageGeometry:
        """From an astropy WCS whose axes are HPLN-TAN, HPLT-TAN (checked by the caller)."""
        w = wcs.wcs
        to_rad = np.array([u.Unit(cu).to(u.rad) for cu in w.cunit])
        plane_from_pixel = np.diag(w.get_cdelt() * to_rad) @ w.get_pc()
        return cls(
            shape=tuple(shape),
            crpix=np.asarray(w.crpix, dtype=np.float64) - 1.0,
            crval=np.asarray(w.crval, dtype=np.float64) * to_rad,
            pixel_from_plane=np.linalg.inv(plane_from_pixel),
        )

    def _basis(self) -> np.ndarray:
        """Rows: tangent-plane east (ξ), north (η) and reference (normal) unit vectors
        in the observer's (line of sight, west, north) axes."""
        a, d = self.crval
        return np.array(
            [
                [-np.sin(a), np.cos(a), 0.0],
                [-np.sin(d) * np.cos(a), -np.sin(d) * np.sin(a), np.cos(d)],
                [np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)],
            ]
        )

    def pixels_from_heliocentric(self, x, y, z, distance_rsun: float):
        """Image pixel (col, row), 0-based, of heliocentric points (solar radii).

        Inputs broadcast together; outputs have their broadcast shape and dtype.
        """
        dtype = np.result_type(x, y, z)
        # One 2×3 matrix from (los, west, north) directions to pixel offsets,
        # applied to the direction (D - z, x, y) and divided by its normal part.
        basis = self._basis().astype(dtype)
        to_pix = (self.pixel_from_plane @ self._basis()[:2]).astype(dtype)
        crpix = self.crpix.astype(dtype)
        los = dtype.type(distance_rsun) - z
        normal = basis[2, 0] * los + basis[2, 1] * x + basis[2, 2] * y
        col = (to_pix[0, 0] * los + to_pix[0, 1] * x + to_pix[0, 2] * y) / normal + crpix[0]
        row = (to_pix[1, 0] * los + to_pix[1, 1] * x + to_pix[1, 2] * y) / normal + crpix[1]
        return col.astype(dtype, copy=False), row.astype(dtype, copy=False)

    def on_disk_mask(self, distance_rsun: float) -> np.ndarray:
        """Boolean (ny, nx): pixels whose line of sight meets the solar disk.

        Along a row, a pixel's direction is linear in its column, so the disk's span of columns on each row is
        where a quadratic is negative: solved per row (float64), then the exact test (:meth:`_meets_disk`) run on
        the few pixels about each end of the span, and the pixels between filled, instead of the test on every
        pixel (a 4096² frame: 25 ms instead of 2.6 s on 2 cores beside other work)."""
        ny, nx = self.shape
        f = np.linalg.inv(self.pixel_from_plane)
        e, n, r = self._basis()
        rows = np.arange(ny, dtype=np.float64) - self.crpix[1]
        # direction = base + c·step for column offset c from CRPIX: (los, west, north) components
        base = r[:, None] + np.outer(f[0, 1] * e + f[1, 1] * n, rows)  # (3, ny)
        step = f[0, 0] * e + f[1, 0] * n  # (3,)
        s2 = 1.0 / distance_rsun**2
        # (1 - s²)(west² + north²) - s² los² <= 0, as a·c² + b·c + k <= 0
        weight = np.array([-s2, 1.0 - s2, 1.0 - s2])[:, None]
        a = float(np.sum(weight[:, 0] * step * step))
        b = 2.0 * np.sum(weight * base * step[:, None], axis=0)
        k = np.sum(weight * base * base, axis=0)
        disc = b * b - 4.0 * a * k
        if a <= 0:  # no bounded span (a pixel scale of tens of degrees): test every pixel
            return self._meets_disk(np.arange(nx)[None, :], np.arange(ny)[:, None], distance_rsun)
        mask = np.zeros((ny, nx), dtype=bool)
        hit = np.nonzero(disc >= 0)[0]
        root = np.sqrt(disc[hit])
        lo = np.floor((-b[hit] - root) / (2 * a) + self.crpix[0]).astype(np.int64)
        hi = np.ceil((-b[hit] + root) / (2 * a) + self.crpix[0]).astype(np.int64)
        band = np.arange(-3, 4)
        for ends in (lo, hi):  # the exact test about each end
            cols = ends[:, None] + band
            rws = np.broadcast_to(hit[:, None], cols.shape)
            inside = (cols >= 0) & (cols < nx)
            cols, rws = cols[inside], rws[inside]
            mask[rws, cols] = self._meets_disk(cols, rws, distance_rsun)
        for row, first, last in zip(hit, np.clip(lo + 4, 0, nx), np.clip(hi - 3, 0, nx)):
            mask[row, first:last] = True
        return mask

    def _meets_disk(self, cols, rows, distance_rsun: float) -> np.ndarray:
        """Whether the lines of sight of pixels (``cols``, ``rows``: 0-based, integer arrays of one shape) meet the
        disk, in float32."""
        from_pix = np.linalg.inv(self.pixel_from_plane).astype(np.float32)
        dc = np.asarray(cols).astype(np.float32) - np.float32(self.crpix[0])
        dr = np.asarray(rows).astype(np.float32) - np.float32(self.crpix[1])
        xi = from_pix[0, 0] * dc + from_pix[0, 1] * dr
        eta = from_pix[1, 0] * dc + from_pix[1, 1] * dr
        # Direction to the pixel (los, west, north) and its angle from Sun centre.
        e, n, r = self._basis().astype(np.float32)
        los = r[0] + xi * e[0] + eta * n[0]
        west = r[1] + xi * e[1] + eta * n[1]
        north = r[2] + xi * e[2] + eta * n[2]
        # sin² of the angle from Sun centre, (west² + north²) / |v|², against
        # sin² of the solar angular radius, (R/D)²: well conditioned in float32.
        off_axis = west * west + north * north
        sin2_limb = np.float32(1.0 / distance_rsun**2)
        return (los > 0) & (off_axis <= sin2_limb * (los * los + off_axis))

    def heliocentric_from_pixels(self, col, row, distance_rsun: float):
        """Surface points seen at image pixels (0-based col, row; broadcastable).

        Returns ``(x, y, z, on_disk)``: heliocentric coordinates in solar radii
        of the nearest intersection of each pixel's line of sight with the
        solar sphere, NaN where it misses the Sun.
        """
        from_pix = np.linalg.inv(self.pixel_from_plane)
        dc = np.asarray(col, dtype=np.float64) - self.crpix[0]
        dr = np.asarray(row, dtype=np.float64) - self.crpix[1]
        xi = from_pix[0, 0] * dc + from_pix[0, 1] * dr
        eta = from_pix[1, 0] * dc + from_pix[1, 1] * dr
        e, n, r = self._basis()
        los = r[0] + xi * e[0] + eta * n[0]
        west = r[1] + xi * e[1] + eta * n[1]
        north = r[2] + xi * e[2] + eta * n[2]
        norm = np.sqrt(los * los + west * west + north * north)
        # Ray from the observer at z = D along (west, north, -los)/norm: |P| = 1 at
        # t = D·c - sqrt(1 - D²(1 - c²)), with c = los/norm the cosine from Sun centre.
        c = los / norm
        disc = 1.0 - distance_rsun**2 * (1.0 - c * c)
        on_disk = (disc >= 0) & (c > 0)
        t = distance_rsun * c - np.sqrt(np.where(on_disk, disc, np.nan))
        x, y = t * west / norm, t * north / norm
        z = distance_rsun - t * c
        return x, y, z, on_disk


def carrington_to_pixel(observer: Observer, image: ImageGeometry, lon_deg, lat_deg, dtype=np.float64):
    """Image pixel (col, row, visible) of Carrington surface points (degrees, broadcastable)."""
    x, y, z = observer.heliocentric(lon_deg, lat_deg, dtype=dtype)
    col, row = image.pixels_from_heliocentric(x, y, z, observer.distance_rsun)
    return col, row, observer.visible(z)


def project_patches(data, observer: Observer, image: ImageGeometry, grid: PatchGrid, indices) -> np.ndarray:
    """Resample a cleaned full-disk image onto patches.

    Parameters
    ----------
    data : array (ny, nx), G, cleaned (finite, 0 off the disk).
    observer, image : the frame's geometry.
    grid : the patch grid; ``indices`` the patches to project, shape (n,).

    Returns float32 array (n, pixels, pixels), G: bilinear samples, 0 G on
    the far side of the Sun.
    """
    lon, lat = grid.pixel_axes(indices)
    col, row, visible = carrington_to_pixel(
        observer, image, lon[:, None, :], lat[:, :, None], dtype=np.float32
    )
    return sample_bilinear(data, col, row, visible)


def sample_bilinear(data, col, row, visible) -> np.ndarray:
    """Bilinear samples of image ``data`` (G) at pixel positions (``col``, ``row``, 0-based, any shape), float32
    of that shape; 0 G outside the image and where ``visible`` is False (the far side of the Sun)."""
    out = map_coordinates(
        data, (np.ravel(row), np.ravel(col)), order=1, mode="constant", cval=0.0, prefilter=False,
        output=np.float32,
    ).reshape(np.shape(col))
    out[~visible] = 0.0
    return out
