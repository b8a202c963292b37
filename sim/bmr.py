"""Bipolar magnetic regions: when, where and how they emerge, and their footpoints over time.

Bipoles are drawn day by day: day ``d`` (days since EPOCH) has its own
generator seeded by (global seed, d), so the BMRs of any interval are the
same whichever interval is asked for. The daily count is Poisson with the
solar-cycle rate (see :class:`~sim.config.SunConfig`); each BMR
belongs to one of the cycles active that day (chosen in proportion to their
rates), which sets its latitude (butterfly drift) and leading polarity
(Hale's law). Some emerge in activity nests (:func:`nests_alive`), some
large ones bring companion bipoles (one multi-bipole region), and small
bipoles and ephemeral regions emerge everywhere below the catalog's size.

Footpoints at time t, τ = t − t_emerge (days), growth time T, decay time τ_d:

- pole flux Φ_p(τ) = (Φ/2) · sin²(π/2 · min(τ/T, 1)) · exp(−max(τ − T, 0)/τ_d),
  zero before emergence and after ``decay_efolds`` e-foldings;
- separation s(τ) = s0 + (s_f − s0) · sin²(π/2 · min(τ/1.5T, 1)), then constant;
- centre at the emergence latitude, drifting in Carrington longitude at
  Ω(φ) − Ω_Carrington; the leading footpoint lies s/2 to the west (higher
  Carrington longitude) and, for positive tilt γ, s/2·sin γ closer to the equator;
- Gaussian widths σ_lead = σ0, σ_follow = follow_spread·σ0, and after peak
  σ² grows by 2Dt (surface diffusion): the decaying region spreads into plage.

The two footpoints always carry equal and opposite flux.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from functools import cached_property
from typing import NamedTuple

import numpy as np
from astropy.time import Time
from scipy.special import ndtr, ndtri

from common.clock import EPOCH, EPOCH_MJD
from sim.config import SunConfig
from sim.physics import REACH_SIGMA, Blobs, carrington_drift_deg_day, diffusion_deg2_day, peak_field_G

_TAG_BMR = 0xB3
_TAG_NEST = 0x4E57
_NEST_BLOCK_DAYS = 27.0
#: SeedSequence takes non-negative integers: day numbers are offset by this.
_DAY_OFFSET = 1 << 40
#: Hathaway's cycle-shape constant.
_HATHAWAY_C = 0.71
_EPOCH_YEAR = 1996.0
_DAYS_PER_YEAR = 365.25


@dataclass(frozen=True)
class BMRTable:
    """BMRs as a structure of arrays, all of length n.

    id : str, stable (``BYYYYMMDD-kk``: emergence day and number within it; ``-ckk`` a companion bipole of a
        multi-bipole region, ``-skkk`` a small bipole or ephemeral region).
    region : str, the id of the region the bipole belongs to (its own id, or its primary's for a companion).
    population : ``'region'`` (an active-region BMR), ``'companion'`` (a further bipole of a multi-bipole
        region) or ``'small'`` (a small bipole or ephemeral region).
    t_days : emergence start, days since EPOCH (``t_emerge`` is the same as a Time); the truth onset, when the
        flux becomes detectable, is ``t_onset_days`` (``t_onset``).
    lon, lat : Carrington position of the centre at emergence start, deg.
    flux_Mx : final total unsigned flux (both footpoints), Mx.
    kind : ``'fast'`` (growth < 13 h) or ``'gradual'`` (growth > 13 h).
    growth_hours : time from emergence start to full flux, h.
    tilt_deg : Joy's-law tilt, deg; positive puts the leading footpoint closer to the equator.
    leading_sign : +1 / −1, polarity of the leading (western) footpoint.
    separation_deg : final footpoint separation, heliographic deg.
    decay_days : e-folding time of the flux after its peak, days.
    cycle : solar-cycle number the BMR belongs to.
    """

    id: np.ndarray
    region: np.ndarray
    population: np.ndarray
    t_days: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    flux_Mx: np.ndarray
    kind: np.ndarray
    growth_hours: np.ndarray
    tilt_deg: np.ndarray
    leading_sign: np.ndarray
    separation_deg: np.ndarray
    decay_days: np.ndarray
    cycle: np.ndarray

    def __len__(self) -> int:
        return len(self.t_days)

    def __getitem__(self, sel) -> BMRTable:
        """Rows ``sel`` (int array, bool mask or slice) as a new table."""
        return BMRTable(**{f.name: getattr(self, f.name)[sel] for f in fields(self)})

    @cached_property
    def t_emerge(self) -> Time:
        """Emergence start times (UTC)."""
        return Time(EPOCH_MJD + self.t_days, format="mjd", scale="utc")

    @cached_property
    def t_onset_days(self) -> np.ndarray:
        """Truth onsets: when the new flux first reaches a detectable level (:func:`detectable_onset_days`), days."""
        return detectable_onset_days(self)

    @cached_property
    def t_onset(self) -> Time:
        """Truth onsets (UTC)."""
        return Time(EPOCH_MJD + self.t_onset_days, format="mjd", scale="utc")

    @classmethod
    def concatenate(cls, tables: list[BMRTable]) -> BMRTable:
        return cls(**{f.name: np.concatenate([getattr(t, f.name) for t in tables]) for f in fields(cls)})


class BMRState(NamedTuple):
    """Footpoints of BMRs at given times, arrays of shape (..., n_times, 2), [..., 0] leading, [..., 1] following.

    lon, lat : Carrington position, deg (lon in [0, 360)).
    flux : signed flux, Mx (0 before emergence and after the BMR has decayed).
    """

    lon: np.ndarray
    lat: np.ndarray
    flux: np.ndarray


def _hathaway(x):
    x = np.maximum(x, 0.0)
    return x**3 / (np.exp(x * x) - _HATHAWAY_C)


_HATHAWAY_PEAK = float(_hathaway(np.linspace(0.5, 2.0, 20001)).max())


def cycles_at(config: SunConfig, year: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cycles that can be active in decimal ``year``: (numbers, start years, BMR rates per day)."""
    starts = np.asarray(config.cycle_starts_year, dtype=np.float64)
    amps = np.asarray(config.cycle_amplitudes, dtype=np.float64)
    numbers = config.first_cycle_number + np.arange(len(starts))
    p = config.cycle_period_yr
    n_before = max(int(np.ceil((starts[0] - year) / p)) + 2, 0)
    n_after = max(int(np.ceil((year - starts[-1]) / p)) + 1, 0)
    starts = np.concatenate([starts[0] - p * np.arange(n_before, 0, -1), starts, starts[-1] + p * np.arange(1, n_after + 1)])
    amps = np.concatenate([np.ones(n_before), amps, np.ones(n_after)])
    numbers = np.concatenate([numbers[0] - np.arange(n_before, 0, -1), numbers, numbers[-1] + np.arange(1, n_after + 1)])
    rate = config.bmr_peak_rate_per_day * amps * _hathaway((year - starts) / config.cycle_width_yr) / _HATHAWAY_PEAK
    return numbers, starts, rate


def _mean_lat_deg(config: SunConfig, tau_yr) -> np.ndarray:
    """Mean |latitude| (deg) of a cycle's BMRs ``tau_yr`` years after its start (Hathaway 2011)."""
    return config.butterfly_lat0_deg * np.exp(-np.asarray(tau_yr) / config.butterfly_decay_yr)


def _growth_hours(config: SunConfig, flux, fast, z, fast_median_h: float, gradual_median_h: float):
    """(growth time h, fast) of bipoles of final flux ``flux`` (Mx) under ``config.growth_law``; ``z`` N(0,1) draws."""
    if config.growth_law == "flux-rate":  # the same draws, so the same regions grow by another law
        rate_Mx_h = (config.emergence_rate_ref_Mx_h * (flux / 1e22) ** config.emergence_rate_exponent
                     * np.exp(config.emergence_rate_sigma_ln * z))
        growth = np.clip(flux / rate_Mx_h, config.growth_min_h, config.growth_max_h)
        return growth, growth < 13.0
    growth = np.where(
        fast,
        np.clip(fast_median_h * np.exp(config.fast_growth_sigma_ln * z), config.growth_min_h, 12.5),
        np.clip(gradual_median_h * np.exp(config.gradual_growth_sigma_ln * z), 13.5, config.growth_max_h),
    )
    return growth, fast


def _separation_deg(config: SunConfig, flux, z) -> np.ndarray:
    return config.separation_ref_deg * (flux / 1e22) ** config.separation_exponent * np.exp(config.separation_sigma_ln * z)


def _decay_days(config: SunConfig, flux, z) -> np.ndarray:
    return np.clip(config.decay_median_day * (flux / 3e21) ** config.decay_flux_exponent * np.exp(config.decay_sigma_ln * z),
                   config.decay_min_day, config.decay_max_day)


def nests_alive(config: SunConfig, seed: int, t_days: float) -> tuple[np.ndarray, np.ndarray]:
    """Carrington (lon, lat) in deg of the activity nests alive at ``t_days`` (days since EPOCH), shape (k,) each.

    Nests are drawn per 27-day block, each block from its own generator, so
    they are a pure function of (config, seed, time) like the BMRs.
    """
    life_lo, life_hi = config.nest_life_day
    lons, lats = [], []
    for block in range(int(np.floor((t_days - life_hi) / _NEST_BLOCK_DAYS)), int(np.floor(t_days / _NEST_BLOCK_DAYS)) + 1):
        rng = np.random.default_rng([seed, _TAG_NEST, block + _DAY_OFFSET])
        birth_day = (block + 0.5) * _NEST_BLOCK_DAYS
        year = _EPOCH_YEAR + birth_day / _DAYS_PER_YEAR
        _, starts, rates = cycles_at(config, year)
        n = rng.poisson(config.nests_per_rotation * rates.sum() / config.bmr_peak_rate_per_day) if rates.sum() > 0 else 0
        birth = block * _NEST_BLOCK_DAYS + _NEST_BLOCK_DAYS * rng.random(n)
        life = life_lo + (life_hi - life_lo) * rng.random(n)
        mean_lat = _mean_lat_deg(config, year - starts[np.argmax(rates)])
        lat = np.where(rng.random(n) < 0.5, -1, 1) * np.abs(mean_lat + config.lat_sd_min_deg * rng.standard_normal(n))
        lon = 360.0 * rng.random(n)
        alive = (birth <= t_days) & (t_days < birth + life)
        lons.append((lon + carrington_drift_deg_day(config, lat) * (t_days - birth))[alive] % 360.0)
        lats.append(lat[alive])
    return np.concatenate(lons), np.concatenate(lats)


def generate_day(config: SunConfig, seed: int, day: int) -> BMRTable:
    """The bipoles whose emergence starts during day ``day`` (days since EPOCH, [day, day + 1)).

    Active-region BMRs (some in activity nests, some with companion bipoles
    that may start after the day ends) and small bipoles; see :class:`~sim.config.SunConfig`.
    """
    rng = np.random.default_rng([seed, _TAG_BMR, day + _DAY_OFFSET])
    year = _EPOCH_YEAR + (day + 0.5) / _DAYS_PER_YEAR
    numbers, starts, rates = cycles_at(config, year)
    n = rng.poisson(rates.sum())
    which = rng.choice(len(rates), size=n, p=rates / rates.sum()) if n else np.zeros(0, dtype=int)
    t = day + np.sort(rng.random(n))
    mean_lat = _mean_lat_deg(config, year - starts[which])
    abs_lat = np.minimum(np.abs(mean_lat + (config.lat_sd_frac * mean_lat + config.lat_sd_min_deg) * rng.standard_normal(n)), 60.0)
    lat = np.where(rng.random(n) < 0.5, -1, 1) * abs_lat
    lon = 360.0 * rng.random(n)
    in_nest, pick, scatter = rng.random(n) < config.nest_fraction, rng.random(n), rng.standard_normal((2, n))
    if in_nest.any():
        nest_lon, nest_lat = nests_alive(config, seed, day + 0.5)
        if nest_lon.size:
            k = (pick * nest_lon.size).astype(int)[in_nest]
            lon[in_nest] = (nest_lon[k] + config.nest_scatter_deg * scatter[0, in_nest]) % 360.0
            lat[in_nest] = np.clip(nest_lat[k] + config.nest_scatter_deg * scatter[1, in_nest], -60.0, 60.0)
    lo, hi = (np.log(v / config.flux_median_Mx) / config.flux_sigma_ln for v in (config.flux_min_Mx, config.flux_max_Mx))
    flux = config.flux_median_Mx * np.exp(config.flux_sigma_ln * ndtri(ndtr(lo) + rng.random(n) * (ndtr(hi) - ndtr(lo))))
    growth, fast = _growth_hours(config, flux, rng.random(n) < config.fast_fraction, rng.standard_normal(n),
                                 config.fast_growth_median_h, config.gradual_growth_median_h)
    tilt = config.joy_slope * np.abs(lat) + config.tilt_scatter_deg * rng.standard_normal(n)
    north_leading = np.where(numbers[which] % 2 == 1, 1, -1)
    anti_hale = rng.random(n) < config.anti_hale_fraction
    hemisphere = np.where(lat >= 0, 1, -1)
    leading = (north_leading * hemisphere * np.where(anti_hale, -1, 1)).astype(np.int8)
    separation = _separation_deg(config, flux, rng.standard_normal(n))
    decay = _decay_days(config, flux, rng.standard_normal(n))
    date = (EPOCH.to_datetime() + dt.timedelta(days=int(day))).strftime("%Y%m%d")
    ids = np.array([f"B{date}-{k:02d}" for k in range(n)], dtype=object)
    regions = BMRTable(
        id=ids, region=ids.copy(), population=np.full(n, "region", dtype=object), t_days=t, lon=lon, lat=lat,
        flux_Mx=flux, kind=np.where(fast, "fast", "gradual").astype(object), growth_hours=growth, tilt_deg=tilt,
        leading_sign=leading, separation_deg=separation, decay_days=decay, cycle=numbers[which].astype(np.int64),
    )
    parts = [regions, _companions(config, rng, regions, date), _small_bipoles(config, rng, day, date)]
    return BMRTable.concatenate(parts)


def _companions(config: SunConfig, rng: np.random.Generator, regions: BMRTable, date: str) -> BMRTable:
    """One or two companion bipoles of some large BMRs (multi-bipole regions), each sharing its primary's region."""
    big = np.flatnonzero((regions.flux_Mx >= config.multi_min_flux_Mx) & (rng.random(len(regions)) < config.multi_fraction))
    primary = np.repeat(big, rng.integers(1, 3, size=big.size))
    m = primary.size
    p = regions[primary]
    share_lo, share_hi = config.multi_flux_share
    flux = p.flux_Mx * (share_lo + (share_hi - share_lo) * rng.random(m))
    t = p.t_days + config.multi_delay_day * rng.random(m)
    offset = 0.5 * p.separation_deg * rng.standard_normal((2, m))
    lat = np.clip(p.lat + offset[1], -60.0, 60.0)
    lon = (p.lon + offset[0] / np.cos(np.deg2rad(lat))) % 360.0
    growth, fast = _growth_hours(config, flux, rng.random(m) < config.fast_fraction, rng.standard_normal(m),
                                 config.fast_growth_median_h, config.gradual_growth_median_h)
    ids = np.array([f"B{date}-c{k:02d}" for k in range(m)], dtype=object)
    return BMRTable(
        id=ids, region=p.region.copy(), population=np.full(m, "companion", dtype=object), t_days=t, lon=lon,
        lat=lat, flux_Mx=flux,
        kind=np.where(fast, "fast", "gradual").astype(object), growth_hours=growth,
        tilt_deg=p.tilt_deg + config.tilt_scatter_deg * rng.standard_normal(m), leading_sign=p.leading_sign.copy(),
        separation_deg=_separation_deg(config, flux, rng.standard_normal(m)),
        decay_days=_decay_days(config, flux, rng.standard_normal(m)), cycle=p.cycle.copy(),
    )


def _small_bipoles(config: SunConfig, rng: np.random.Generator, day: int, date: str) -> BMRTable:
    """The day's small bipoles and ephemeral regions: any latitude, orientation and polarity order."""
    n = rng.poisson(config.small_rate_per_day)
    t = day + np.sort(rng.random(n))
    lat = np.rad2deg(np.arcsin(np.sin(np.deg2rad(config.small_max_lat_deg)) * (2.0 * rng.random(n) - 1.0)))
    lon = 360.0 * rng.random(n)
    lo, hi = (np.log(v / config.small_flux_median_Mx) / config.small_flux_sigma_ln
              for v in (config.small_flux_min_Mx, config.small_flux_max_Mx))
    flux = config.small_flux_median_Mx * np.exp(config.small_flux_sigma_ln * ndtri(ndtr(lo) + rng.random(n) * (ndtr(hi) - ndtr(lo))))
    growth = np.clip(config.small_growth_median_h * np.exp(config.fast_growth_sigma_ln * rng.standard_normal(n)),
                     config.growth_min_h, 12.5)
    fast = np.ones(n, dtype=bool)
    decay = np.clip(config.small_decay_median_day * np.exp(config.decay_sigma_ln * rng.standard_normal(n)),
                    0.25, config.decay_max_day)
    ids = np.array([f"B{date}-s{k:03d}" for k in range(n)], dtype=object)
    return BMRTable(
        id=ids, region=ids.copy(), population=np.full(n, "small", dtype=object), t_days=t, lon=lon, lat=lat,
        flux_Mx=flux, kind=np.where(fast, "fast", "gradual").astype(object), growth_hours=growth,
        tilt_deg=360.0 * rng.random(n) - 180.0, leading_sign=np.where(rng.random(n) < 0.5, -1, 1).astype(np.int8),
        separation_deg=_separation_deg(config, flux, rng.standard_normal(n)), decay_days=decay,
        cycle=np.zeros(n, dtype=np.int64),
    )


#: The flux at which a new region counts as begun (its truth onset), Mx: about the unsigned flux that MDI's
#: 20 G noise already puts over a small region's footprint (16 G mean |noise| over ~2e19 cm², 4°×4° at disk
#: centre is 3.8e20 Mx), so less new flux than this cannot be told from noise by any detector.
DETECTABLE_FLUX_MX = 3.0e20


def detectable_onset_days(table: BMRTable, flux_Mx: float = DETECTABLE_FLUX_MX) -> np.ndarray:
    """When each BMR's total flux first reaches ``flux_Mx`` (days since EPOCH, shape (n,)): the truth onset.

    The total flux grows as Φ·sin²(π/2·τ/T) (:func:`footpoints`), so τ = (2T/π)·asin(√(flux_Mx/Φ)).
    """
    growth_days = np.asarray(table.growth_hours, dtype=np.float64) / 24.0
    share = np.clip(flux_Mx / np.asarray(table.flux_Mx, dtype=np.float64), 0.0, 1.0)
    return np.asarray(table.t_days, dtype=np.float64) + 2.0 * growth_days / np.pi * np.arcsin(np.sqrt(share))


def _col(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)[:, None]


def max_life_day(config: SunConfig) -> float:
    """Longest time a BMR stays on the Sun, from emergence start to removal, days."""
    return config.growth_max_h / 24.0 + config.decay_efolds * config.decay_max_day


def base_sigma_deg(config: SunConfig, flux_Mx) -> np.ndarray:
    """Leading-footpoint width σ0 (deg) of BMRs of final total flux ``flux_Mx``."""
    return config.footpoint_sigma_ref_deg * (np.asarray(flux_Mx) / 2e21) ** config.footpoint_sigma_exponent


def footpoints(config: SunConfig, table: BMRTable, t_days) -> Blobs:
    """Footpoints of every BMR of ``table`` at times ``t_days`` (days since EPOCH, shape (m,)).

    Returns Blobs of shape (n, m, 2) whose ``amp`` is the signed footpoint flux in Mx
    (see :func:`footpoint_blobs` for the peak field).
    """
    tau = np.asarray(t_days, dtype=np.float64)[None, :] - _col(table.t_days)
    growth = _col(table.growth_hours) / 24.0
    decay = _col(table.decay_days)
    alive = (tau >= 0) & (tau <= growth + config.decay_efolds * decay)
    rise = np.sin(0.5 * np.pi * np.clip(tau / growth, 0.0, 1.0)) ** 2
    pole = 0.5 * _col(table.flux_Mx) * rise * np.exp(-np.maximum(tau - growth, 0.0) / decay) * alive
    s0, sf = config.separation_start_deg, _col(table.separation_deg)
    sep = s0 + (sf - s0) * np.sin(0.5 * np.pi * np.clip(tau / (1.5 * growth), 0.0, 1.0)) ** 2
    lat = _col(table.lat)
    lon_c = _col(table.lon) + carrington_drift_deg_day(config, lat) * np.maximum(tau, 0.0)
    tilt = np.deg2rad(_col(table.tilt_deg))
    hemisphere = np.where(lat >= 0, 1.0, -1.0)
    half_lon = 0.5 * sep * np.cos(tilt) / np.cos(np.deg2rad(lat))
    half_lat = 0.5 * sep * np.sin(tilt) * hemisphere
    sigma0 = base_sigma_deg(config, _col(table.flux_Mx))
    spread = 2.0 * diffusion_deg2_day(config) * np.maximum(tau - growth, 0.0)
    sign = _col(table.leading_sign)
    return Blobs(
        lon=np.stack([lon_c + half_lon, lon_c - half_lon], axis=-1) % 360.0,
        lat=np.stack([lat - half_lat, lat + half_lat], axis=-1),
        sigma=np.sqrt(np.stack([sigma0**2 + spread, (config.follow_spread * sigma0) ** 2 + spread], axis=-1)),
        amp=np.stack([sign * pole, -sign * pole], axis=-1),
    )


def footpoint_blobs(config: SunConfig, table: BMRTable, t_days) -> Blobs:
    """Footpoints as Gaussian concentrations with peak field (G) in ``amp``, shape (n, m, 2)."""
    fp = footpoints(config, table, t_days)
    return fp._replace(amp=peak_field_G(config, fp.amp, fp.sigma))


def max_reach_deg(config: SunConfig, table: BMRTable) -> np.ndarray:
    """Per BMR, the largest distance from its centre at which it adds field (deg, shape (n,))."""
    widest = config.follow_spread * base_sigma_deg(config, table.flux_Mx)
    spread = 2.0 * diffusion_deg2_day(config) * config.decay_efolds * np.asarray(table.decay_days)
    return 0.5 * np.asarray(table.separation_deg) + REACH_SIGMA * np.sqrt(widest**2 + spread)
