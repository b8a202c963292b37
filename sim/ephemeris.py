"""SoHO's view of the Sun for many times at once, from sunpy's ephemeris.

The same computation as :func:`ingest.instruments.mdi.soho_observer` (the Earth from
``sunpy.coordinates.get_earth``, 1% sunward, in the Carrington frame with
``observer='self'``), done in one vectorised call for an array of times.

sunpy costs about 0.6 ms per time, too slow for every 96-min slot of many
years, while the observer moves smoothly (L0 by ~13.2°/day plus yearly terms,
B0 and the distance yearly). So slot values come from sunpy at daily nodes,
one call per block of ``_BLOCK_NODES`` days cached per process, interpolated
with a cubic spline (L0 unwrapped) in TAI days, which run smoothly across
leap seconds. The interpolation error is below 1e-7°
in L0 and B0 and 100 m (7e-10 of the distance, from the Earth's monthly
wobble about the Earth–Moon barycentre), tested against ``soho_observer``.
Arbitrary Times go to sunpy directly.
"""
from __future__ import annotations

from functools import lru_cache

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.time import Time
from scipy.interpolate import CubicSpline

from common.clock import EPOCH_MJD, slot_days, slot_time
from common.observer import Observer
from ingest.instruments.mdi import MDI_RSUN_REF, SOHO_DISTANCE_FACTOR

#: Days covered by one cached sunpy call, and extra nodes on each side so the spline is accurate at the edges.
_BLOCK_NODES = 64
_MARGIN_NODES = 4


def _soho(times: Time) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(L0 deg in [0, 360), B0 deg, distance m) of SoHO at ``times`` (1-d Time), one sunpy call."""
    from sunpy.coordinates import HeliographicCarrington, get_earth

    earth = get_earth(times)
    soho = SkyCoord(earth.lon, earth.lat, earth.radius * SOHO_DISTANCE_FACTOR, frame=earth.frame)
    car = soho.transform_to(HeliographicCarrington(observer="self", obstime=times))
    return car.lon.to_value(u.deg) % 360.0, car.lat.to_value(u.deg), car.radius.to_value(u.m)


def _tai_days(utc_days: np.ndarray) -> np.ndarray:
    """TAI days since EPOCH of instants given in UTC days since EPOCH."""
    return Time(EPOCH_MJD + utc_days, format="mjd", scale="utc").tai.mjd - EPOCH_MJD


@lru_cache(maxsize=1024)
def _block(index: int) -> tuple[CubicSpline, CubicSpline, CubicSpline]:
    """Splines of (L0 unwrapped, rad; B0, deg; distance, m) against TAI days since EPOCH for one block."""
    days = (index * _BLOCK_NODES + np.arange(-_MARGIN_NODES, _BLOCK_NODES + _MARGIN_NODES + 1)).astype(np.float64)
    l0, b0, d = _soho(Time(EPOCH_MJD + days, format="mjd", scale="utc"))
    tai = _tai_days(days)
    return CubicSpline(tai, np.unwrap(np.deg2rad(l0))), CubicSpline(tai, b0), CubicSpline(tai, d)


def ephemeris(slots_or_times) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SoHO's Carrington longitude L0 (deg, [0, 360)), latitude B0 (deg) and distance (m) from Sun centre.

    Takes slot numbers (ints, any shape) or a Time (any shape); returns three
    float64 arrays of that shape, equal to ``soho_observer(t)``'s values
    (to the interpolation error above for slot numbers).
    """
    if isinstance(slots_or_times, Time):
        t = slots_or_times
        l0, b0, d = _soho(t.reshape(-1) if t.ndim else t.reshape(1))
        return l0.reshape(t.shape), b0.reshape(t.shape), d.reshape(t.shape)
    slots = np.asarray(slots_or_times, dtype=np.int64)
    days = slot_days(slots.ravel())
    tai = _tai_days(days)
    blocks, inverse = np.unique(np.floor_divide(days, _BLOCK_NODES).astype(np.int64), return_inverse=True)
    out = [np.empty(days.shape) for _ in range(3)]
    for b, index in enumerate(blocks):
        sel = inverse == b
        for o, spline in zip(out, _block(int(index))):
            o[sel] = spline(tai[sel])
    out[0] = np.rad2deg(out[0]) % 360.0
    l0, b0, distance = (o.reshape(slots.shape) for o in out)
    return l0, b0, distance


def observer_at(slot: int) -> Observer:
    """The SoHO/MDI observer (common.observer.Observer) at slot ``slot``."""
    l0, b0, d = ephemeris(np.array([slot]))
    return Observer(time=slot_time(int(slot)), lon=l0[0] * u.deg, lat=b0[0] * u.deg, distance=d[0] * u.m,
                    rsun=MDI_RSUN_REF)
