"""The synthetic Sun: B_r(Carrington lon, lat, t) of a quiet Sun with emerging and decaying BMRs."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from astropy.time import Time

from common.clock import CADENCE_DAYS, days_since_epoch, slot_days
from common.patches import PatchGrid
from sim import procedural as pr
from sim.bmr import (
    BMRState,
    BMRTable,
    footpoint_blobs,
    footpoints,
    generate_day,
    max_life_day,
    max_reach_deg,
)
from sim.config import SunConfig
from sim.gauss import compact, patch_field, point_field
from sim.physics import REACH_SIGMA, Blobs, carrington_drift_deg_day, wrap180
from sim.quiet import quiet_elements

_TAG_MISSING = 0x3155
_TAG_GAP = 0x6A9
#: Slots per block of the multi-day gap schedule (≈ 68 days; longer than any gap).
_GAP_BLOCK = 1024


class SyntheticSun:
    """A seedable synthetic Sun with ground truth.

    B_r at any (lon, lat, t) is a pure function of ``(config, seed)``: the
    quiet Sun is procedural per space-time cell (:mod:`~sim.quiet`),
    BMRs are drawn per day (:mod:`~sim.bmr`), so any region and
    time can be evaluated without simulating the rest.
    """

    def __init__(self, config: SunConfig = SunConfig(), seed: int = 0):
        self.config = config
        self.seed = int(seed)
        self.grid = PatchGrid()
        self._day = lru_cache(maxsize=8192)(lambda day: generate_day(config, self.seed, day))

    # ---- BMRs ---------------------------------------------------------------------------

    def _bmr_days(self, t_lo: float, t_hi: float) -> BMRTable:
        """BMRs emerging in the days containing [t_lo, t_hi] (days since EPOCH)."""
        return BMRTable.concatenate([self._day(d) for d in range(int(np.floor(t_lo)), int(np.floor(t_hi)) + 1)])

    def bmrs(self, t_start: Time, t_end: Time) -> BMRTable:
        """All bipoles whose emergence starts in [t_start, t_end), in time order."""
        a, b = float(days_since_epoch(t_start)), float(days_since_epoch(t_end))
        table = self._bmr_days(a - np.ceil(self.config.multi_delay_day), b)  # companions start after their day
        table = table[(table.t_days >= a) & (table.t_days < b)]
        return table[np.argsort(table.t_days, kind="stable")]

    def bmr_state(self, table: BMRTable, index, times: Time) -> BMRState:
        """Footpoints of BMRs ``table[index]`` at ``times`` (1-d Time, m times).

        ``index`` an int gives arrays of shape (m, 2); an index array or bool
        mask of n rows gives (n, m, 2). Column 0 is the leading footpoint, 1
        the following one; ``flux`` is signed (Mx), positions are Carrington
        deg including the differential-rotation drift since emergence.
        """
        t = np.atleast_1d(days_since_epoch(times))
        rows = table[np.array([index])] if np.ndim(index) == 0 else table[index]
        fp = footpoints(self.config, rows, t)
        state = BMRState(fp.lon, fp.lat, fp.amp)
        return BMRState(*(a[0] for a in state)) if np.ndim(index) == 0 else state

    # ---- the field ----------------------------------------------------------------------

    def _bmr_blobs(self, t_days: np.ndarray, lat_lo: float, lat_hi: float, lon_c: float, lon_half: float) -> Blobs:
        """Footpoints (F, 2n) at times ``t_days`` of the BMRs that can reach the region; lon absolute."""
        t_lo, t_hi = float(t_days.min()), float(t_days.max())
        table = self._bmr_days(t_lo - max_life_day(self.config), t_hi)
        reach = max_reach_deg(self.config, table)
        near = (table.lat + reach >= lat_lo) & (table.lat - reach <= lat_hi)
        if lon_half < 180.0:
            # The centre's longitude moves linearly; bound it over the interval.
            drift = carrington_drift_deg_day(self.config, table.lat)
            a = wrap180(table.lon + drift * np.maximum(t_lo - table.t_days, 0.0) - lon_c)
            b = a + drift * (t_hi - np.maximum(t_lo, table.t_days))
            reach_lon = reach / np.maximum(np.cos(np.deg2rad(np.minimum(np.abs(table.lat) + reach, 90.0))), 1e-9)
            near &= (np.maximum(a, b) >= -lon_half - reach_lon) & (np.minimum(a, b) <= lon_half + reach_lon)
        near &= table.t_days <= t_hi
        blobs = footpoint_blobs(self.config, table[near], t_days)  # (n, F, 2)
        return Blobs(*(a.transpose(1, 0, 2).reshape(len(t_days), -1) for a in blobs))

    def radial_field(self, lon_deg, lat_deg, time: Time) -> np.ndarray:
        """B_r (G, float64) at Carrington points (deg, broadcast together) at one ``time``."""
        lon = np.asarray(lon_deg, dtype=np.float64)
        lat = np.asarray(lat_deg, dtype=np.float64)
        t = float(days_since_epoch(time))
        lat_lo, lat_hi = float(lat.min(initial=90.0)), float(lat.max(initial=-90.0))
        lon_c, lon_half = _lon_window(lon)
        el = quiet_elements(self.config, self.seed, lat_lo, lat_hi, lon_c, lon_half, t, t)
        quiet = el.blobs(self.config, np.array([t]))
        bmr = self._bmr_blobs(np.array([t]), lat_lo, lat_hi, lon_c, lon_half)
        blobs = Blobs(*(np.concatenate([q[0], b[0]]) for q, b in zip(quiet, bmr)))
        return point_field(lon, lat, blobs)

    def _patch_blobs(self, lon_c: float, lat_c: float, t_days: np.ndarray, half: float) -> Blobs:
        """Per frame, the concentrations that reach the square of half-side ``half`` (deg) about the centre:
        Blobs (F, K), lon relative to ``lon_c``. ``t_days`` (days since EPOCH, shape (F,)) must be increasing.
        """
        lat_lo, lat_hi = lat_c - half, lat_c + half
        el = quiet_elements(self.config, self.seed, lat_lo, lat_hi, lon_c, half, float(t_days[0]), float(t_days[-1]))
        q_frame, quiet = el.pairs(self.config, t_days)
        bmr = self._bmr_blobs(t_days, lat_lo, lat_hi, lon_c, half)
        b_frame = np.repeat(np.arange(len(t_days)), bmr.lon.shape[1])
        frame = np.concatenate([q_frame, b_frame])
        lon, lat, sigma, amp = (np.concatenate([q, np.ravel(b)]) for q, b in zip(quiet, bmr))
        lon = wrap180(lon - lon_c)
        reach = REACH_SIGMA * sigma
        cos_lat = np.cos(np.deg2rad(np.clip(lat, -90.0, 90.0)))
        keep = (amp != 0) & (np.abs(lat - lat_c) <= half + reach) & (np.abs(lon) * cos_lat <= half * cos_lat + reach)
        return compact(frame[keep], Blobs(lon[keep], lat[keep], sigma[keep], amp[keep]), len(t_days))

    def patch_frames(self, lon_c: float, lat_c: float, slots, offsets: np.ndarray | None = None) -> np.ndarray:
        """B_r (G) on the patch centred at (lon_c, lat_c) at slots ``slots``: float32 (len(slots), n, n).

        Pixel centres are at ``offsets`` (deg, shape (n,)) from the centre along both axes; by default the
        patch grid's (:attr:`common.patches.PatchGrid.offsets`).
        """
        offsets = self.grid.offsets if offsets is None else np.asarray(offsets, dtype=np.float64)
        t = slot_days(np.atleast_1d(slots))
        half = float(np.abs(offsets).max() + 0.5 * np.abs(np.diff(offsets[:2])).sum())  # to the pixels' edges
        return patch_field(self._patch_blobs(float(lon_c), float(lat_c), t, half), float(lat_c), offsets)

    def patch_video(self, lon_c: float, lat_c: float, slot0: int, n_frames: int) -> np.ndarray:
        """B_r (G) on a patch at slots slot0 … slot0 + n_frames − 1: float32 (n_frames, n, n), [frame, lat, lon].

        The patch is fixed in the Carrington frame with pixel centres at
        ``common.patches`` offsets from (lon_c, lat_c) (deg).
        """
        return self.patch_frames(lon_c, lat_c, int(slot0) + np.arange(int(n_frames)))

    # ---- the observing schedule ---------------------------------------------------------

    def observed(self, slots) -> np.ndarray:
        """True where slot numbers ``slots`` (int array-like) have a magnetogram; bool of the same shape.

        A pure function of (seed, slot): single slots are missing with
        probability ``missing_single_fraction``; each block of ``_GAP_BLOCK``
        slots holds a multi-day gap with probability ``gaps_per_year`` × its
        length in years, at a random start, possibly running into the next block.
        """
        c = self.config
        slots = np.asarray(slots, dtype=np.int64)
        flat = slots.ravel()
        missing = pr.uniform(pr.keys(self.seed, _TAG_MISSING, flat), 0) < c.missing_single_fraction
        block = np.floor_divide(flat, _GAP_BLOCK)
        p_gap = c.gaps_per_year * _GAP_BLOCK * CADENCE_DAYS / 365.25
        for b in (block, block - 1):
            key = pr.keys(self.seed, _TAG_GAP, b)
            start = b * _GAP_BLOCK + np.floor(pr.uniform(key, 1) * _GAP_BLOCK).astype(np.int64)
            days = c.gap_days[0] + pr.uniform(key, 2) * (c.gap_days[1] - c.gap_days[0])
            length = np.rint(days / CADENCE_DAYS).astype(np.int64)
            missing |= (pr.uniform(key, 0) < p_gap) & (flat >= start) & (flat < start + length)
        return ~missing.reshape(slots.shape)


def _lon_window(lon: np.ndarray) -> tuple[float, float]:
    """(centre, half-width) in deg of the smallest longitude arc holding all of ``lon``; half-width 180 when wide."""
    if lon.size == 0:
        return 0.0, 0.0
    centre = float(np.rad2deg(np.arctan2(np.sin(np.deg2rad(lon)).mean(), np.cos(np.deg2rad(lon)).mean())))
    half = float(np.abs(wrap180(lon - centre)).max())
    return centre, (180.0 if half > 120.0 else half)
