"""The shared rules in common/: the clock, a patch's disk passage, the ensemble decision, input recentring.

Plain numpy and astropy: no ONNX, no FITS, no torch.
"""
from __future__ import annotations

import math

import astropy.units as u
import numpy as np
import pytest
from astropy.time import Time

from common.clock import CADENCE, EPOCH, SLOTS_PER_DAY, check_cadence, slot_datetime, slot_isot, slot_of_time, slot_time
from common.config import VideoConfig
from common.ensemble import detects, is_stable, percentiles
from common.passage import SEARCH_DAYS, on_disk, passage_over, passage_start_slot
from common.video import recentre, scale_for_model

#: Synodic Carrington rotation: the observer's L0 falls by 360° every 27.2753 days.
SYNODIC_DEG_PER_DAY = 360.0 / 27.2753
SLOT0 = 40_000


def linear_l0(l0_at_slot0: float):
    """An ephemeris with L0 decreasing at the constant synodic rate, L0(SLOT0) = ``l0_at_slot0``."""
    def l0_deg(slots):
        days = (np.asarray(slots, dtype=np.float64) - SLOT0) / SLOTS_PER_DAY
        return (l0_at_slot0 - SYNODIC_DEG_PER_DAY * days) % 360.0
    return l0_deg


# ---- common.passage -------------------------------------------------------------------------

@pytest.mark.parametrize("east_of_limb_deg", [10.0, 3.3, 47.0])
@pytest.mark.parametrize("l0_at_slot0", [200.0, 5.0])  # 5°: the centre's longitude wraps through 0/360
def test_passage_starts_at_the_analytic_east_limb_crossing(east_of_limb_deg, l0_at_slot0):
    # At SLOT0 the centre is east_of_limb_deg east of the east limb (CMD = −90° − east_of_limb_deg);
    # CMD grows at the synodic rate, so it reaches −90° after east_of_limb_deg / rate days.
    lon = (l0_at_slot0 - 90.0 - east_of_limb_deg) % 360.0
    crossing = east_of_limb_deg / SYNODIC_DEG_PER_DAY * SLOTS_PER_DAY
    assert abs(crossing - round(crossing)) > 0.05  # no slot sits on the limb itself
    expected = SLOT0 + math.ceil(crossing)
    for later in (0, 1, 40, 150):  # asked at several slots while the centre is on the disk (~13.6 days)
        start = passage_start_slot([lon], expected + later, linear_l0(l0_at_slot0))
        assert start.dtype == np.int64 and start.tolist() == [expected]


def test_passage_start_vectorised_over_patches():
    l0 = linear_l0(200.0)
    offsets = np.array([10.0, 3.3, 47.0])
    lons = (200.0 - 90.0 - offsets) % 360.0
    slots = SLOT0 + np.array([30, 60, 120])
    expected = SLOT0 + np.ceil(offsets / SYNODIC_DEG_PER_DAY * SLOTS_PER_DAY).astype(int)
    assert passage_start_slot(lons, slots, l0).tolist() == expected.tolist()


def test_centre_on_disk_for_the_whole_search_window_starts_at_the_window_start():
    # An observer co-rotating with the patch: its centre never was behind the east limb.
    slot = SLOT0 + 3
    lons = 170.0 + np.array([-90.0, 0.0, 89.5])  # CMD −90° (on the disk), 0°, 89.5°
    start = passage_start_slot(lons, slot, lambda slots: np.full(np.shape(slots), 170.0))
    assert start.tolist() == [slot - SEARCH_DAYS * SLOTS_PER_DAY] * 3


def test_passage_over_when_the_centre_leaves_the_disk_or_the_video_is_full():
    n = 225
    start = np.array([100, 100, 100, 100])
    slot = np.array([100 + n - 1, 100 + n - 1, 100 + n, 100 + 10])
    on = np.array([True, False, True, True])
    assert passage_over(start, slot, on, n).tolist() == [False, True, True, False]
    assert bool(passage_over(0, n - 1, True, n)) is False
    assert bool(passage_over(0, n, True, n)) is True


def test_on_disk_boundaries():
    cmd = np.array([-90.0, np.nextafter(-90.0, -180.0), np.nextafter(90.0, 0.0), 90.0, 0.0, -180.0])
    assert on_disk(cmd).tolist() == [True, False, True, False, True, False]


# ---- common.ensemble ------------------------------------------------------------------------

def test_percentiles_over_members():
    probs = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((5, 3, 4), dtype=np.float32)  # members 0..4
    p25, median, p75 = percentiles(probs)
    assert p25.shape == median.shape == p75.shape == (3, 4)
    assert p25.dtype == median.dtype == p75.dtype == np.float64
    assert np.all(p25 == 1.0) and np.all(median == 2.0) and np.all(p75 == 3.0)


def test_stability_threshold_on_the_quartiles_is_unstable():
    p25 = np.array([0.7, 0.6, 0.5, 0.4, 0.3])
    p75 = np.array([0.9, 0.8, 0.6, 0.5, 0.7])
    # threshold 0.6: below p25 | equals p25 | equals p75 | above p75 | inside
    assert is_stable(p25, p75, 0.6).tolist() == [True, False, False, True, False]


def test_detection_is_strictly_above_the_threshold():
    assert detects(np.array([0.59, 0.6, 0.61]), 0.6).tolist() == [False, False, True]


# ---- common.clock ---------------------------------------------------------------------------

def test_slots_per_day_and_epoch():
    assert SLOTS_PER_DAY == 15
    assert slot_of_time(EPOCH) == 0
    assert slot_time(15).isot == "1996-01-02T00:00:00.000"


def test_slot_isot_and_datetime_are_the_slot_time_s():
    slots = np.r_[0, 1, 15, 15 * 3653, np.random.default_rng(3).integers(0, 300_000, 200)]  # 1996 to 2050
    assert [slot_isot(s) for s in slots] == list(slot_time(slots).isot)
    assert [slot_datetime(s).strftime("%Y%m%dT%H%M") for s in slots] == [t.strftime("%Y%m%dT%H%M") for t in slot_time(slots)]


def test_slot_time_round_trip():
    t = Time(["2000-06-01T00:00:00", "2003-10-28T11:12:00", "2010-12-31T22:24:00"], scale="utc")
    slots = slot_of_time(t)
    assert slots.dtype == np.int64
    assert list(slot_time(slots).isot) == list(t.isot)  # times on the grid come back exactly
    assert slot_of_time(slot_time(slots)).tolist() == slots.tolist()
    # off the grid: the nearest slot, less than half a cadence away
    off = t + 40 * u.min
    back = slot_time(slot_of_time(off))
    assert np.all(np.abs((back - off).to_value(u.min)) <= 48.0)
    assert isinstance(slot_of_time(t[0]), int)


def test_check_cadence_refuses_another_cadence_and_names_it():
    check_cadence(96 * u.min, "bundle")
    check_cadence(5760 * u.s, "bundle")
    check_cadence(CADENCE, "bundle")
    with pytest.raises(ValueError, match="HMI 12-min bundle"):
        check_cadence(12 * u.min, "HMI 12-min bundle")


# ---- common.video ---------------------------------------------------------------------------

def test_recentre_maps_zero_gauss_to_zero_and_the_clip_to_plus_minus_one():
    clip = VideoConfig().clip.to_value(u.G)
    out = recentre(scale_for_model(np.array([0.0, clip, -clip, 3 * clip, -3 * clip])))
    assert out.dtype == np.float32
    assert out.tolist() == [0.0, 1.0, -1.0, 1.0, -1.0]
    assert recentre(scale_for_model(np.array([250.0]), clip=500 * u.G)).tolist() == [0.5]  # B/clip
