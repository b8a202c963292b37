"""The procedural quiet Sun: network elements that drift, fragment and cancel.

The sphere is cut into cells of ``cell_deg`` × ``cell_deg`` (Carrington
longitude × latitude) × 1 day. Each cell's features are drawn from
counter-based hashes of (global seed, cell indices, feature number) (see
:mod:`sim.procedural`), so B_r anywhere at any time is a pure
function of the seed and the configuration, and a region is evaluated by
generating only the cells whose features can reach it.

Every feature is an *element*: a Gaussian concentration (see
:mod:`sim.physics`) on a straight track in Carrington (λ, φ),
alive during [t0, t1], whose flux follows a trapezoid over its life: a
linear rise over the first ``rise`` fraction, full flux, a linear fall over
the last ``fall`` fraction. Two kinds of cell features make elements:

- a network family: one unipolar element of random sign that either fades
  (rise 0.3, fall 0.4) or, at the end of its life, fragments into two
  same-sign children that share its flux, move apart and fade linearly;
- a cancelling pair: two equal and opposite elements that converge and lose
  their flux linearly until they meet (the flux vanishes as they touch).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim import procedural as pr
from sim.config import SunConfig
from sim.physics import REACH_SIGMA, Blobs, carrington_drift_deg_day, peak_field_G, wrap180

_TAG_QUIET = 0x51
#: A rise or fall "fraction" this small means a step (full flux from the start, or to the end).
_STEP = 1e-9
#: Random velocities are clipped at this many rms per component.
_SPEED_CLIP = 2.5


@dataclass(frozen=True)
class Elements:
    """Quiet-Sun elements, 1-d arrays of one length.

    t0, t1 : life span, days since EPOCH.
    lon0, lat0 : Carrington position at t0, deg.
    vlon, vlat : Carrington-frame velocity, deg of longitude / latitude per day
        (differential rotation included).
    flux : signed full flux, Mx.
    rise, fall : fractions of the life spent rising from 0 and falling to 0.
    sigma : Gaussian width, deg.
    """

    t0: np.ndarray
    t1: np.ndarray
    lon0: np.ndarray
    lat0: np.ndarray
    vlon: np.ndarray
    vlat: np.ndarray
    flux: np.ndarray
    rise: np.ndarray
    fall: np.ndarray
    sigma: np.ndarray

    def __len__(self) -> int:
        return len(self.t0)

    def select(self, mask) -> Elements:
        return Elements(**{k: v[mask] for k, v in self.__dict__.items()})

    def blobs(self, config: SunConfig, t_days) -> Blobs:
        """The elements at times ``t_days`` (days since EPOCH, shape (F,)): Blobs of shape (F, N)."""
        t = np.asarray(t_days, dtype=np.float64)[:, None]
        dt = t - self.t0
        a = dt / (self.t1 - self.t0)
        shape = np.clip(np.minimum(a / self.rise, (1.0 - a) / self.fall), 0.0, 1.0)
        shape[(a < 0) | (a > 1)] = 0.0
        return Blobs(
            lon=self.lon0 + self.vlon * dt,
            lat=self.lat0 + self.vlat * dt,
            sigma=np.broadcast_to(self.sigma, shape.shape),
            amp=peak_field_G(config, self.flux, self.sigma) * shape,
        )


    def pairs(self, config: SunConfig, t_days) -> tuple[np.ndarray, Blobs]:
        """The live elements at sorted times ``t_days`` (shape (F,)) as pairs: (frame index, Blobs), 1-d.

        Only (frame, element) pairs with the element alive are formed, so the
        cost follows the elements' lifetimes, not the length of the video.
        """
        t = np.asarray(t_days, dtype=np.float64)
        first = np.searchsorted(t, self.t0, side="left")
        count = np.maximum(np.searchsorted(t, self.t1, side="right") - first, 0)
        element = np.repeat(np.arange(len(self)), count)
        frame = first[element] + np.arange(len(element)) - np.repeat(np.cumsum(count) - count, count)
        dt = t[frame] - self.t0[element]
        a = dt / (self.t1 - self.t0)[element]
        shape = np.clip(np.minimum(a / self.rise[element], (1.0 - a) / self.fall[element]), 0.0, 1.0)
        sigma = self.sigma[element]
        return frame, Blobs(
            lon=self.lon0[element] + self.vlon[element] * dt,
            lat=self.lat0[element] + self.vlat[element] * dt,
            sigma=sigma,
            amp=peak_field_G(config, self.flux[element], sigma) * shape,
        )


def _concat(parts: list[dict]) -> Elements:
    return Elements(**{k: np.concatenate([p[k] for p in parts]) for k in parts[0]})


def _max_span_day(config: SunConfig) -> float:
    """Longest time from a family's birth to its last element's death (parent + child), days."""
    return 2.0 * config.network_life_range_day[1]


def _max_wander_deg(config: SunConfig) -> float:
    """Largest distance (great-circle deg) an element gets from its family's birth place, rotation aside."""
    speed = _SPEED_CLIP * config.network_speed_deg_day * np.sqrt(2.0)
    life = config.network_life_range_day[1]
    return max(speed * 2 * life + config.fragment_speed_deg_day * life,
               speed * life + config.cancel_separation_deg[1] / 2)


def _cells(config: SunConfig, lat_lo, lat_hi, lon_c, lon_half, t_lo, t_hi):
    """Indices (i lon, j lat, d day) of the cells whose features can reach the region, 1-d int arrays."""
    c = config.cell_deg
    n_cols, n_rows = round(360 / c), round(180 / c)
    span = _max_span_day(config)
    wander = _max_wander_deg(config) + REACH_SIGMA * config.network_sigma_deg[1]
    j = np.arange(max(int(np.floor((lat_lo - wander) / c)), -n_rows // 2),
                  min(int(np.floor((lat_hi + wander) / c)), n_rows // 2 - 1) + 1)
    d = np.arange(int(np.floor(t_lo - span)), int(np.floor(t_hi)) + 1)
    jj, dd = (grid.ravel() for grid in np.meshgrid(j, d, indexing="ij"))
    band_edge = np.maximum(np.abs(jj * c), np.abs((jj + 1) * c))
    cos_min = np.cos(np.deg2rad(np.minimum(band_edge + wander, 90.0)))
    drift = -carrington_drift_deg_day(config, np.minimum(band_edge + wander, 90.0)) * (np.minimum(t_hi, dd + 1 + span) - dd)
    lo = -lon_half - wander / np.maximum(cos_min, 1e-9)
    hi = lon_half + wander / np.maximum(cos_min, 1e-9) + drift
    i_lo = np.floor((lon_c + lo) / c).astype(np.int64)
    i_hi = np.floor((lon_c + hi) / c).astype(np.int64)
    full = (i_hi - i_lo + 1 >= n_cols) | (lon_half >= 180.0)
    i_lo = np.where(full, 0, i_lo)
    count = np.where(full, n_cols, i_hi - i_lo + 1)
    cell = np.repeat(np.arange(len(jj)), count)
    i = (i_lo[cell] + np.arange(len(cell)) - np.repeat(np.cumsum(count) - count, count)) % n_cols
    return i, jj[cell], dd[cell]


def _birth(config: SunConfig, key, i, j, d, flux_median_Mx: float):
    """Draws shared by every quiet-Sun family, for elements with keys ``key`` born in cells (i, j, d).

    Returns (t0 [day], lon [deg], lat [deg, uniform in sin lat], signed flux [Mx], life [day],
    sigma [deg], vx, vy [deg/day, heliographic random drift]).
    """
    c = config.cell_deg
    t0 = d + pr.uniform(key, 0)
    lon = (i + pr.uniform(key, 1)) * c
    s1, s2 = np.sin(np.deg2rad(j * c)), np.sin(np.deg2rad((j + 1) * c))
    lat = np.rad2deg(np.arcsin(s1 + pr.uniform(key, 2) * (s2 - s1)))
    sign = np.where(pr.uniform(key, 3) < 0.5, -1.0, 1.0)
    flux = sign * pr.lognormal(key, 4, flux_median_Mx, config.network_flux_sigma_ln, hi=config.network_flux_max_Mx)
    life = pr.lognormal(key, 5, config.network_life_median_day, config.network_life_sigma_ln,
                        *config.network_life_range_day)
    sig_lo, sig_hi = config.network_sigma_deg
    sigma = sig_lo + pr.uniform(key, 6) * (sig_hi - sig_lo)
    vx = np.clip(pr.normal(key, 7), -_SPEED_CLIP, _SPEED_CLIP) * config.network_speed_deg_day
    vy = np.clip(pr.normal(key, 8), -_SPEED_CLIP, _SPEED_CLIP) * config.network_speed_deg_day
    return t0, lon, lat, flux, life, sigma, vx, vy


def _network(config: SunConfig, key, i, j, d) -> list[dict]:
    """Elements of the network families with keys ``key`` born in cells (i, j, d)."""
    n = len(key)
    t0, lon0, lat0, flux, life, sigma, vx, vy = _birth(config, key, i, j, d, config.network_flux_median_Mx)
    frag = pr.uniform(key, 9) < config.fragment_probability
    vlon = vx / np.cos(np.deg2rad(lat0)) + carrington_drift_deg_day(config, lat0)
    parent = dict(t0=t0, t1=t0 + life, lon0=lon0, lat0=lat0, vlon=vlon, vlat=vy, flux=flux,
                  rise=np.full(n, 0.3), fall=np.where(frag, _STEP, 0.4), sigma=sigma)
    # Children start where and when the parent ends, at full share of its flux.
    f = frag
    share = 0.3 + 0.4 * pr.uniform(key[f], 10)
    angle = 2 * np.pi * pr.uniform(key[f], 11)
    end_lon, end_lat = lon0[f] + vlon[f] * life[f], lat0[f] + vy[f] * life[f]
    cos_end = np.cos(np.deg2rad(end_lat))
    drift_end = carrington_drift_deg_day(config, end_lat)
    children = []
    for k, (part, direction) in enumerate(((share, 1.0), (1.0 - share, -1.0))):
        sx = vx[f] + direction * config.fragment_speed_deg_day * np.cos(angle)
        sy = vy[f] + direction * config.fragment_speed_deg_day * np.sin(angle)
        child_life = life[f] * (0.5 + 0.5 * pr.uniform(key[f], 12 + k))
        children.append(dict(t0=t0[f] + life[f], t1=t0[f] + life[f] + child_life, lon0=end_lon, lat0=end_lat,
                             vlon=sx / cos_end + drift_end, vlat=sy, flux=flux[f] * part,
                             rise=np.full(f.sum(), _STEP), fall=np.ones(f.sum()), sigma=sigma[f]))
    return [parent, *children]


def _cancelling(config: SunConfig, key, i, j, d) -> list[dict]:
    """Elements of the cancelling pairs with keys ``key`` born in cells (i, j, d)."""
    n = len(key)
    t0, lon_c, lat_c, flux, life, sigma, vx, vy = _birth(config, key, i, j, d, config.cancel_flux_median_Mx)
    sep_lo, sep_hi = config.cancel_separation_deg
    half = 0.5 * (sep_lo + pr.uniform(key, 9) * (sep_hi - sep_lo))
    angle = 2 * np.pi * pr.uniform(key, 10)
    cos_lat = np.cos(np.deg2rad(lat_c))
    drift = carrington_drift_deg_day(config, lat_c)
    pair = []
    for side in (1.0, -1.0):
        ox, oy = side * half * np.cos(angle), side * half * np.sin(angle)
        # Converge on the pair's centre at t1, when the flux has fallen to zero.
        pair.append(dict(t0=t0, t1=t0 + life, lon0=lon_c + ox / cos_lat, lat0=lat_c + oy,
                         vlon=(vx - ox / life) / cos_lat + drift, vlat=vy - oy / life, flux=side * flux,
                         rise=np.full(n, 0.1), fall=np.full(n, 0.9), sigma=sigma))
    return pair


def quiet_elements(config: SunConfig, seed: int, lat_lo: float, lat_hi: float, lon_c: float, lon_half: float,
                   t_lo: float, t_hi: float) -> Elements:
    """The quiet-Sun elements that can come within reach of a region during [t_lo, t_hi].

    The region is latitudes [lat_lo, lat_hi] (deg) and Carrington longitudes
    within ``lon_half`` deg of ``lon_c`` (``lon_half`` ≥ 180: all). Times are
    days since EPOCH. Elements are kept when their track's bounding box
    during the interval comes within REACH_SIGMA·σ of the region: a superset
    of the elements that contribute, the same for any query that covers it.
    """
    c = config.cell_deg
    i, j, d = _cells(config, lat_lo, lat_hi, lon_c, lon_half, t_lo, t_hi)
    cell_key = pr.keys(seed, _TAG_QUIET, i, j, d)
    area = c * (np.sin(np.deg2rad((j + 1) * c)) - np.sin(np.deg2rad(j * c))) * 180.0 / np.pi  # deg²
    parts = []
    for kind, (rate, make) in enumerate(((config.network_rate_per_deg2_day, _network),
                                         (config.cancel_rate_per_deg2_day, _cancelling))):
        if rate <= 0 or len(cell_key) == 0:
            continue
        count = pr.poisson(cell_key, kind, rate * area)
        cell = np.repeat(np.arange(len(cell_key)), count)
        number = np.arange(len(cell)) - np.repeat(np.cumsum(count) - count, count)
        parts += make(config, pr.keys(cell_key[cell], kind, number), i[cell], j[cell], d[cell])
    if not parts:
        parts = [{k: np.zeros(0) for k in Elements.__dataclass_fields__}]
    el = _concat(parts)
    a, b = np.maximum(el.t0, t_lo), np.minimum(el.t1, t_hi)
    live = a <= b
    lat_a, lat_b = el.lat0 + el.vlat * (a - el.t0), el.lat0 + el.vlat * (b - el.t0)
    reach = REACH_SIGMA * el.sigma
    near = live & (np.maximum(lat_a, lat_b) >= lat_lo - reach) & (np.minimum(lat_a, lat_b) <= lat_hi + reach)
    if lon_half < 180.0:
        lon_a = wrap180(el.lon0 + el.vlon * (a - el.t0) - lon_c)
        lon_b = lon_a + el.vlon * (b - a)
        cos_max = np.cos(np.deg2rad(np.minimum(np.maximum(np.abs(lat_a), np.abs(lat_b)) + reach, 90.0)))
        reach_lon = reach / np.maximum(cos_max, 1e-9)
        near &= (np.maximum(lon_a, lon_b) >= -lon_half - reach_lon) & (np.minimum(lon_a, lon_b) <= lon_half + reach_lon)
    return el.select(near)
