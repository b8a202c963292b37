"""Where the observer stands, and where solar surface points appear to it.

The observer is described in the Carrington frame of the observation:
Carrington longitude ``lon`` (L0), latitude ``lat`` (B0) and distance from Sun
centre. Values come from a sunpy map (:meth:`Observer.from_map`), so sunpy does
the ephemeris and keyword handling; this module only does the vectorised
rotations that turn Carrington (lon, lat) on the surface into heliocentric
Cartesian coordinates (Thompson 2006, A&A 449, 791).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import astropy.units as u
import numpy as np
from astropy.time import Time

from common.clock import slot_time


@lru_cache(maxsize=4096)
def earth_angles(slot: int) -> tuple[float, float]:
    """The Earth's Carrington longitude L0 and latitude B0 (rad) at a slot's time (sunpy): SoHO and SDO see the Sun
    from within 0.1° of them, near enough for the cosine of a pixel's heliocentric angle."""
    from sunpy.coordinates import sun

    t = slot_time(slot)
    return float(sun.L0(t).to_value("rad")), float(sun.B0(t).to_value("rad"))


def mu_at(lon_deg: np.ndarray, lat_deg: np.ndarray, slots) -> np.ndarray:
    """μ (the cosine of the heliocentric angle; ≤ 0 behind the limb) of a patch's pixels at ``slots`` (m,), seen from
    the Earth: (m, len(lat_deg), len(lon_deg)) for the columns' longitudes and the rows' latitudes (deg)."""
    angles = np.array([earth_angles(int(s)) for s in np.atleast_1d(slots)])
    _, _, mu = heliocentric(np.asarray(lon_deg)[None, None, :], np.asarray(lat_deg)[None, :, None],
                            angles[:, 0, None, None], angles[:, 1, None, None])
    return mu


def central_meridian_distance(lon_deg, l0_deg):
    """Longitude from the central meridian (Carrington lon − L0), deg in [-180, 180); negative is east."""
    return (np.asarray(lon_deg) - l0_deg + 180.0) % 360.0 - 180.0


def heliocentric(lon_deg, lat_deg, l0_rad, b0_rad, dtype=np.float64):
    """Heliocentric Cartesian coordinates (solar radii; x west, y north, z towards the observer) of Carrington
    surface points (deg) seen from Carrington longitude ``l0_rad`` and latitude ``b0_rad`` (rad). All four
    broadcast against each other: a grid for one observer, or one point's track over many observers."""
    dlon = np.deg2rad(np.asarray(lon_deg, dtype=np.float64)) - l0_rad
    lat = np.deg2rad(np.asarray(lat_deg, dtype=np.float64))
    cos_lat, sin_lat = np.cos(lat).astype(dtype), np.sin(lat).astype(dtype)
    cos_dlon, sin_dlon = np.cos(dlon).astype(dtype), np.sin(dlon).astype(dtype)
    cos_b0, sin_b0 = np.cos(b0_rad).astype(dtype), np.sin(b0_rad).astype(dtype)
    cc = cos_lat * cos_dlon
    x = cos_lat * sin_dlon
    y = cos_b0 * sin_lat - sin_b0 * cc
    z = cos_b0 * cc + sin_b0 * sin_lat
    return x, y, z


@dataclass(frozen=True)
class Observer:
    """An observer of the Sun at one instant.

    Attributes
    ----------
    time : Time
        Observation time (the frame's obstime).
    lon, lat : Quantity[deg]
        Carrington longitude (L0) and latitude (B0) of the observer.
    distance : Quantity[m]
        Observer distance from Sun centre.
    rsun : Quantity[m]
        Radius of the surface that is observed (the photosphere, 695.7 Mm by
        IAU 2015; MDI and HMI headers use 696 Mm).
    stonyhurst_lon : Quantity[deg]
        Stonyhurst longitude of the observer: 0 on the Sun–Earth line (SoHO, SDO
        and the synthetic observers), the map's own otherwise.
    """

    time: Time
    lon: u.Quantity
    lat: u.Quantity
    distance: u.Quantity
    rsun: u.Quantity
    stonyhurst_lon: u.Quantity = 0 * u.deg

    @classmethod
    def from_map(cls, smap) -> Observer:
        """The observer of a sunpy map, in the Carrington frame sunpy defines for it."""
        from sunpy.coordinates import HeliographicCarrington

        frame = smap.coordinate_frame
        obs = frame.observer
        car = obs.transform_to(HeliographicCarrington(observer="self", obstime=frame.obstime))
        return cls(
            time=Time(frame.obstime),
            lon=car.lon.to(u.deg) % (360 * u.deg),
            lat=car.lat.to(u.deg),
            distance=car.radius.to(u.m),
            rsun=frame.rsun.to(u.m),
            stonyhurst_lon=obs.lon.to(u.deg),
        )

    def stonyhurst(self, lon_deg, lat_deg) -> tuple[np.ndarray, np.ndarray]:
        """Stonyhurst (lon in [-180, 180), lat), deg, at this observer's time of Carrington surface points (deg).

        The two frames share the solar rotation axis and, for one observer, differ by one rotation about it
        (sunpy's ``hgs_to_hgc``): a point is as far west of the observer in both.
        """
        west_of_observer = np.asarray(lon_deg, dtype=np.float64) - self.lon.to_value(u.deg)
        lon = (west_of_observer + self.stonyhurst_lon.to_value(u.deg) + 180.0) % 360.0 - 180.0
        return lon, np.asarray(lat_deg, dtype=np.float64)

    def l0_at(self, times: Time) -> np.ndarray:
        """This observer's Carrington longitude (deg) at other ``times``, for an observer near the Sun–Earth line
        (SoHO, SDO): sunpy's L0 of the Earth, shifted to agree with this observer at its own time."""
        from sunpy.coordinates import sun

        offset = self.lon.to_value(u.deg) - sun.L0(self.time).to_value(u.deg)
        return (sun.L0(times).to_value(u.deg) + offset) % 360.0

    @cached_property
    def _angles(self) -> tuple[float, float, float]:
        """(L0 [rad], B0 [rad], distance [solar radii])."""
        return (
            self.lon.to_value(u.rad),
            self.lat.to_value(u.rad),
            (self.distance / self.rsun).decompose().value,
        )

    @property
    def distance_rsun(self) -> float:
        """Observer distance in units of the observed solar radius."""
        return self._angles[2]

    def heliocentric(self, lon_deg, lat_deg, dtype=np.float64):
        """Heliocentric Cartesian coordinates of surface points, in solar radii.

        ``lon_deg`` and ``lat_deg`` are Carrington coordinates in degrees that
        broadcast against each other (pass a column and a row to get a grid
        for the price of its edges). Returns ``(x, y, z)``: x to solar west,
        y to solar north, z towards the observer, each of the broadcast shape.
        """
        l0, b0, _ = self._angles
        return heliocentric(lon_deg, lat_deg, l0, b0, dtype)

    def visible(self, z):
        """True where a surface point with heliocentric ``z`` (solar radii) faces the observer.

        A point on the sphere is visible when it lies in front of the tangent
        cone from the observer: z > R / D.
        """
        return z > 1.0 / self.distance_rsun

    def carrington(self, x, y, z):
        """Carrington (lon, lat) in degrees of heliocentric points (solar radii), inverse of :meth:`heliocentric`."""
        l0, b0, _ = self._angles
        cos_b0, sin_b0 = np.cos(b0), np.sin(b0)
        cc = cos_b0 * z - sin_b0 * y
        sin_lat = cos_b0 * y + sin_b0 * z
        lat = np.rad2deg(np.arcsin(np.clip(sin_lat / np.sqrt(x * x + y * y + z * z), -1.0, 1.0)))
        lon = np.rad2deg(np.arctan2(x, cc) + l0) % 360.0
        return lon, lat

    def mu(self, x, y, z):
        """Cosine of the angle between the local vertical and the line of sight to the observer.

        For surface points (solar radii); the finite observer distance is
        included, so μ reaches 0 at the true limb, z = R/D.
        """
        d = self.distance_rsun
        to_obs_z = d - z
        return (x * -x + y * -y + z * to_obs_z) / np.sqrt(x * x + y * y + to_obs_z * to_obs_z)
