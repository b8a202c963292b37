"""A BARD-like catalog of the synthetic Sun, the paper's crude labels, and the truth.

The Bipolar Active Region Detection catalog (Munoz-Jaramillo et al.) records
BMRs once a day. Our detector does the same on the synthetic Sun: at the
daily slot (00:00 UT, every 15th 96-min slot) a BMR is recorded when the
line-of-sight flux the observer would measure, Σ|Φ_i|·μ_i over its visible
footpoints times a lognormal measurement error, exceeds a threshold. Because
detection is flux-limited and μ weakens flux toward the limb, the paper's
crude rule (first observation west of −60° ⇒ emergence) errs for physical
reasons: regions emerging east of −60° are labelled non-emergence, and weak
regions that rotate in are first caught late and labelled emergence.

Each catalog BMR gets a video: a patch centred on its position at first
observation, fixed in the Carrington frame, starting at the slot its centre
comes over the east limb. The truth: class 1 if the BMR began emerging while
it was on the visible disk inside the video, with onset frame the slot at which
its new flux reached a detectable level (:data:`sim.bmr.DETECTABLE_FLUX_MX`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from astropy.time import Time

from common.clock import SLOTS_PER_DAY, slot_of_time, slot_time  # detections happen at slots ≡ 0 mod SLOTS_PER_DAY
from common.config import VideoConfig
from common.observer import central_meridian_distance
from common.passage import passage_start_slot
from sim import SyntheticSun, ephemeris

#: Days after emergence in which a BMR can be first recorded (about two disk passages).
SEARCH_DAYS = 40
#: The paper's crude rule: first observation west of this central-meridian longitude ⇒ emergence.
CRUDE_CMD_DEG = -60.0


@dataclass(frozen=True)
class DetectorConfig:
    """The BARD-like detector.

    Attributes
    ----------
    flux_threshold_Mx : LoS-projected unsigned flux needed for a detection.
    flux_error : lognormal σ of the flux measurement (fractional).
    """

    flux_threshold_Mx: float = 3.0e21
    flux_error: float = 0.15


def heliocentric_z(lon, lat, l0, b0):
    """Heliocentric z (towards the observer, solar radii) of surface points, and their μ ≈ z."""
    dl = np.deg2rad(lon - l0)
    la, b = np.deg2rad(lat), np.deg2rad(b0)
    return np.cos(b) * np.cos(la) * np.cos(dl) + np.sin(b) * np.sin(la)


def detect(sun: SyntheticSun, t_start: Time, t_end: Time, config: DetectorConfig = DetectorConfig(),
           seed: int = 0) -> pd.DataFrame:
    """Daily detections of the BMRs emerging in [t_start, t_end): the first observation of each.

    Returns one row per detected BMR: index into ``sun.bmrs(...)``, first
    observation slot, its central-meridian longitude, the measured flux and
    the BMR's flux-weighted centre (Carrington deg) at that time.
    """
    table = sun.bmrs(t_start, t_end)
    rng = np.random.default_rng([seed, 0xBA4D])
    # Bipoles too weak to reach the threshold even at disk centre with a +5σ measurement error are never recorded.
    candidates = np.flatnonzero(np.asarray(table.flux_Mx) * np.exp(5 * config.flux_error) >= config.flux_threshold_Mx)
    first_day = np.ceil(np.asarray(slot_of_time(table.t_emerge)) / SLOTS_PER_DAY).astype(int)[candidates]
    days = first_day[:, None] + np.arange(SEARCH_DAYS)[None, :]
    slots = days * SLOTS_PER_DAY
    l0, b0, _ = ephemeris(slots.ravel())
    l0, b0 = l0.reshape(slots.shape), b0.reshape(slots.shape)
    rows = []
    for j, i in enumerate(candidates):
        lon, lat, flux = sun.bmr_state(table, i, slot_time(slots[j]))  # (days, 2) each
        z = heliocentric_z(lon, lat, l0[j, :, None], b0[j, :, None])
        measured = (np.abs(flux) * np.clip(z, 0, None)).sum(axis=1)
        measured *= rng.lognormal(0.0, config.flux_error, size=measured.shape)
        centre_lon = _weighted_lon(lon, np.abs(flux))
        centre_lat = (lat * np.abs(flux)).sum(axis=1) / np.maximum(np.abs(flux).sum(axis=1), 1e-30)
        visible = np.abs(central_meridian_distance(centre_lon, l0[j])) < 90.0
        hit = np.flatnonzero((measured >= config.flux_threshold_Mx) & visible)
        if hit.size:
            k = hit[0]
            rows.append((int(i), int(slots[j, k]), float(central_meridian_distance(centre_lon[k], l0[j, k])),
                         float(measured[k]), float(centre_lon[k] % 360.0), float(centre_lat[k])))
    return pd.DataFrame(rows, columns=["bmr_index", "first_obs_slot", "first_obs_cmd", "first_obs_flux_Mx",
                                       "lon", "lat"])


def _weighted_lon(lon, weight):
    """Flux-weighted mean longitude of footpoints (deg), safe across the 0/360 seam."""
    ref = lon[:, :1]
    d = (lon - ref + 180.0) % 360.0 - 180.0
    return ref[:, 0] + (d * weight).sum(axis=1) / np.maximum(weight.sum(axis=1), 1e-30)


def video_start_slot(lon_c: np.ndarray, first_obs_slot: np.ndarray) -> np.ndarray:
    """First slot at which each patch centre is on the disk, before the first observation.

    The patch is fixed in the Carrington frame; it comes over the east limb
    (CMD = −90°) at most ~14 days before it can be observed. The rule is the
    one the live service applies, :func:`common.passage.passage_start_slot`,
    with SoHO's ephemeris.
    """
    return passage_start_slot(lon_c, first_obs_slot, lambda slots: ephemeris(slots)[0])


def truth(sun: SyntheticSun, table, bmr_index: np.ndarray, start_slot: np.ndarray, video: VideoConfig):
    """(true_class, true_onset_frame) for videos of the given BMRs.

    Class 1 when the BMR's onset (its flux reaching a detectable level,
    :attr:`sim.bmr.BMRTable.t_onset`) falls inside the video and the BMR was
    then on the visible disk; the onset frame is that slot's index.
    """
    t_slot = np.asarray(slot_of_time(table.t_onset))[bmr_index]
    onset = t_slot - start_slot
    l0, b0, _ = ephemeris(t_slot)
    z = heliocentric_z(np.asarray(table.lon)[bmr_index], np.asarray(table.lat)[bmr_index], l0, b0)
    on_disk = (z > 0) & (onset >= 0) & (onset < video.n_frames)
    return on_disk.astype(int), np.where(on_disk, onset, -1)
