"""The Carrington patch grid: 15°×15° patches at 1/6° per pixel.

A patch is a square in Carrington longitude and latitude; its frame is a
``(pixels, pixels)`` array indexed ``[lat, lon]``: row 0 is the southernmost
pixel row, column 0 the easternmost (lowest Carrington longitude) pixel
column, so with ``origin='lower'`` north is up and west is right, as on the
disk. A patch id is derived from its centre only, so ids are stable across
runs and machines for a given grid configuration.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import astropy.units as u
import numpy as np
from astropy.constants import R_sun

from common.config import PatchGridConfig
from common.observer import Observer


def carrington_pixel_area_cm2(lat_deg: np.ndarray, pixel_deg: float) -> np.ndarray:
    """Surface area (cm²) of Carrington pixels of side ``pixel_deg`` centred at latitudes ``lat_deg``."""
    side = (R_sun * np.deg2rad(pixel_deg)).to_value(u.cm)
    return side * side * np.cos(np.deg2rad(lat_deg))


def polarity_flux_Mx(field_G: np.ndarray, row_lat_deg: np.ndarray, pixel_deg: float,
                     floor_G: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(positive, |negative|) line-of-sight flux (Mx) of patch frames ``field_G`` (..., pixels, pixels; G, its rows
    at Carrington latitudes ``row_lat_deg``) through the pixels of |B| ≥ ``floor_G``, each weighed by its area on
    the solar surface (no projection correction): arrays of the frames' leading shape."""
    b = np.nan_to_num(np.asarray(field_G, dtype=np.float64))
    b = np.where(np.abs(b) >= floor_G, b, 0.0)
    area = carrington_pixel_area_cm2(row_lat_deg, pixel_deg)[:, None]
    return (np.clip(b, 0, None) * area).sum(axis=(-2, -1)), (np.clip(-b, 0, None) * area).sum(axis=(-2, -1))


def pixel_latitudes(lat_deg: float, pixels: int, pixel_deg: float) -> np.ndarray:
    """Carrington latitude (deg) of each pixel row of a patch centred at ``lat_deg``, row 0 southernmost."""
    return lat_deg + (np.arange(pixels) - (pixels - 1) / 2) * pixel_deg


def flux_curves(video: np.ndarray, lat_deg: float, pixel_deg: float | None = None) -> dict[str, np.ndarray]:
    """Line-of-sight magnetic flux (Mx) through the patch at every frame: ``unsigned`` (Σ|B|·area),
    ``positive`` and ``negative`` (|Σ B<0|·area), each float (n_frames,). Areas are the Carrington pixels' on the
    solar surface; the field is not corrected for projection (a region near the limb shows less flux)."""
    pixel_deg = pixel_deg if pixel_deg is not None else PatchGridConfig().pixel_size.to_value(u.deg)
    positive, negative = polarity_flux_Mx(video, pixel_latitudes(lat_deg, video.shape[1], pixel_deg), pixel_deg)
    return {"unsigned": positive + negative, "positive": positive, "negative": negative}


def patch_id(lon_deg: float, lat_deg: float) -> str:
    """Stable id of the patch centred at Carrington (lon, lat), e.g. ``L172.50N07.50``."""
    hemisphere = "N" if lat_deg >= 0 else "S"
    return f"L{lon_deg % 360:06.2f}{hemisphere}{abs(lat_deg):05.2f}"


@dataclass(frozen=True)
class Patch:
    """One patch: its id and its centre in Carrington degrees."""

    id: str
    lon: float
    lat: float


class PatchGrid:
    """The tiling of the Carrington sphere into patches.

    Longitude centres are evenly spaced over 360° and latitude centres evenly
    over ``[-lat_limit, +lat_limit]``, with the fewest patches whose overlap is
    at least ``config.overlap``.
    """

    def __init__(self, config: PatchGridConfig | None = None):
        self.config = config or PatchGridConfig()
        size = self.config.patch_size.to_value("deg")
        stride = size - self.config.overlap.to_value("deg")
        limit = self.config.lat_limit.to_value("deg")
        n_lon = math.ceil(360.0 / stride - 1e-9)
        n_lat = math.ceil((2 * limit - size) / stride - 1e-9) + 1
        lon_centres = (np.arange(n_lon) + 0.5) * (360.0 / n_lon)
        lat_centres = np.linspace(-limit + size / 2, limit - size / 2, n_lat)
        lat_grid, lon_grid = np.meshgrid(lat_centres, lon_centres, indexing="ij")
        #: Patch centres, degrees, shape (n_patches,), ordered south to north then by longitude.
        self.lon = lon_grid.ravel()
        self.lat = lat_grid.ravel()
        self.ids = [patch_id(lo, la) for lo, la in zip(self.lon, self.lat)]
        self._index = {pid: i for i, pid in enumerate(self.ids)}
        n = self.config.pixels
        #: Pixel-centre offsets from the patch centre along each axis, degrees, shape (pixels,).
        self.offsets = (np.arange(n) - (n - 1) / 2) * self.config.pixel_size.to_value("deg")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, key: int | str) -> Patch:
        i = self.index(key) if isinstance(key, str) else key
        return Patch(self.ids[i], float(self.lon[i]), float(self.lat[i]))

    def index(self, pid: str) -> int:
        try:
            return self._index[pid]
        except KeyError:
            raise KeyError(f"no patch {pid!r} in this grid ({self.config})") from None

    def pixel_axes(self, indices=None) -> tuple[np.ndarray, np.ndarray]:
        """Carrington pixel-centre coordinates of patches, degrees.

        Returns ``(lon, lat)``, each of shape ``(n, pixels)``: the longitude of
        every pixel column and the latitude of every pixel row. The grid of a
        patch is their outer product (the patch is separable).
        """
        idx = np.arange(len(self)) if indices is None else np.asarray(indices)
        return self.lon[idx, None] + self.offsets, self.lat[idx, None] + self.offsets

    def overlapping(self, lon_deg: float, lat_deg: float, half_extent_deg: float = 0.0) -> np.ndarray:
        """Indices of the patches that a footprint overlaps: centre (Carrington deg) ± ``half_extent_deg`` in
        longitude and latitude. A point (``half_extent_deg`` = 0) on a shared edge is in both patches."""
        half = self.config.patch_size.to_value("deg") / 2 + half_extent_deg
        dlon = np.abs((self.lon - lon_deg + 180.0) % 360.0 - 180.0)
        return np.flatnonzero((dlon <= half) & (np.abs(self.lat - lat_deg) <= half))

    @cached_property
    def sharing_area(self) -> list[np.ndarray]:
        """For each patch, the indices of the other patches that share area with it (none when patches only
        meet edge to edge, i.e. without overlap)."""
        size = self.config.patch_size.to_value("deg")
        out = []
        for i in range(len(self)):
            dlon = np.abs((self.lon - self.lon[i] + 180.0) % 360.0 - 180.0)
            near = (dlon < size - 1e-9) & (np.abs(self.lat - self.lat[i]) < size - 1e-9)
            near[i] = False
            out.append(np.flatnonzero(near))
        return out

    def on_disk(self, observer: Observer) -> np.ndarray:
        """Boolean mask, shape (n_patches,): patches with any pixel centre facing the observer.

        The visible cap is far larger than a patch, so a patch has a visible
        pixel exactly when a pixel on its perimeter is visible: only the
        perimeter is tested.
        """
        lon, lat = self.pixel_axes()
        n = self.config.pixels
        edge = np.r_[0, n - 1]
        perim_lon = np.concatenate([np.repeat(lon[:, edge], n, axis=1), np.tile(lon, 2)], axis=1)
        perim_lat = np.concatenate([np.tile(lat, 2), np.repeat(lat[:, edge], n, axis=1)], axis=1)
        _, _, z = observer.heliocentric(perim_lon, np.clip(perim_lat, -90.0, 90.0))
        return observer.visible(z).any(axis=1)
