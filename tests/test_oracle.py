"""The oracles (noise-free new flux per tile, the truth's and the visible one) on hand-built bipoles, and new onsets on
open alerts in the matcher."""
from dataclasses import replace

import numpy as np
import pytest
from astropy.time import Time

from common.clock import CADENCE_DAYS, slot_days, slot_of_time
from common.config import PatchGridConfig
from common.patches import PatchGrid
from evaluation.matching import Emergence, OpenedAlert, match
from evaluation.oracle import instrument_sigma_deg, oracle_alerts, tile_flux
from evaluation.replay import Passage, opened, policy_alerts
from evaluation.report import Exposure, plot_delays, summary
from serving.alerts import AlertState, passage_label, step
from sim import ephemeris
from sim.bmr import BMRTable
from sim.config import SunConfig
from tests.test_alerts import POLICY, REGION, score

GRID = PatchGrid(PatchGridConfig())
CONFIG = SunConfig()
SLOT0 = int(slot_of_time(Time("2002-03-01T00:00:00")))
T0 = float(slot_days(SLOT0))


def bipoles(*rows: tuple[float, float, float, float, float]) -> BMRTable:
    """A table of bipoles from (emergence start days, lon deg, lat deg, final flux Mx, growth h) rows; each decays
    slowly (10-day e-folding) so its flux stays near its peak for the oracle's three days."""
    t, lon, lat, flux, growth = (np.array(c, dtype=np.float64) for c in zip(*rows))
    n = len(t)
    ids = np.array([f"B{k}" for k in range(n)], dtype=object)
    return BMRTable(id=ids, region=ids.copy(), population=np.full(n, "region", dtype=object), t_days=t, lon=lon, lat=lat,
                    flux_Mx=flux, kind=np.full(n, "gradual", dtype=object), growth_hours=growth, tilt_deg=np.full(n, 5.0),
                    leading_sign=np.ones(n, np.int8), separation_deg=np.full(n, 3.0), decay_days=np.full(n, 10.0),
                    cycle=np.full(n, 23, np.int64))


def truth_flux(t: np.ndarray, start: float, flux: float, growth_h: float) -> np.ndarray:
    """The growth law by hand (Mx): Φ·sin²(π/2·min(τ/T, 1))·exp(−max(τ − T, 0)/10 d), τ = t − start ≥ 0."""
    tau, growth = t - start, growth_h / 24.0
    rise = np.sin(0.5 * np.pi * np.clip(tau / growth, 0.0, 1.0)) ** 2
    return np.where(tau >= 0, flux * rise * np.exp(-np.maximum(tau - growth, 0.0) / 10.0), 0.0)


def crossing(start: float, flux: float, growth_h: float, level: float) -> float:
    """When a bipole's flux reaches ``level`` while rising (days)."""
    return start + 2.0 * growth_h / 24.0 / np.pi * np.arcsin(np.sqrt(level / flux))


def tile_at(cmd_deg: float, lat_deg: float, slot: int = SLOT0) -> int:
    """The tile of the given latitude row whose centre is nearest ``cmd_deg`` from central meridian at ``slot``."""
    l0 = ephemeris(np.array([slot]))[0][0]
    row = np.flatnonzero(np.isclose(GRID.lat, lat_deg))
    return int(row[np.argmin(np.abs((GRID.lon[row] - l0 - cmd_deg + 180.0) % 360.0 - 180.0))])


def test_the_oracle_fires_at_the_first_slot_whose_new_flux_reaches_the_level_and_the_matcher_credits_it(tmp_path):
    j = tile_at(0.0, 7.5)
    start, flux, growth = T0 + 0.37, 5e21, 40.0
    table = bipoles((start, GRID.lon[j], 7.5, flux, growth))
    slots = SLOT0 + np.arange(60)
    tiles = tile_flux(CONFIG, table, GRID, slots)
    t = slot_days(slots)
    new = np.where(t - start < 3.0, truth_flux(t, start, flux, growth), 0.0)  # new for three days
    assert new[-1] == 0 < new.max()
    np.testing.assert_allclose(tiles.flux[:, j], new, rtol=1e-9, atol=1.0)
    assert tiles.flux.sum() == pytest.approx(tiles.flux[:, j].sum()), "its flux is in its tile only"

    first = int(np.ceil(crossing(start, flux, growth, 1e21) / CADENCE_DAYS))  # the first slot at or after the crossing
    alerts = oracle_alerts(tiles, 1e21)
    assert [(a.patch_id, a.opened_days) for a in alerts] == [(GRID.ids[j], pytest.approx(float(slot_days(first))))]
    assert tiles.flux[first - SLOT0 - 1, j] < 1e21 <= tiles.flux[first - SLOT0, j], "not at the slot before"
    onset = crossing(start, flux, growth, 3e20)  # the truth onset: 3e20 Mx reached
    assert alerts[0].onset_days == pytest.approx(onset)
    assert oracle_alerts(tiles, 3e21)[0].opened_days > alerts[0].opened_days, "a higher level fires later"

    m = match([Emergence("R", onset, float(GRID.lon[j]), 7.5, flux, 0.0)], alerts, GRID)
    assert m.detected["R"] == alerts[0] and m.false_alerts == []
    assert m.delays_days()[0] == pytest.approx(float(slot_days(first)) - onset)
    assert summary(m, Exposure(4.0, 4.0), 0)["detected_2d_count"] == 1
    assert plot_delays({"oracle": m}, tmp_path / "delays.png").stat().st_size > 10_000


def test_the_oracle_re_arms_only_once_the_new_flux_fell_below_the_level():
    j = tile_at(-30.0, 22.5)
    lon = float(GRID.lon[j])
    table = bipoles((T0 + 0.2, lon, 22.5, 4e21, 20.0),
                    (T0 + 1.5, lon + 2.0, 20.0, 4e21, 20.0),  # while the first still counts: the sum stays above
                    (T0 + 5.0, lon - 2.0, 25.0, 4e21, 20.0))  # after both aged out (3 days): a new alert
    tiles = tile_flux(CONFIG, table, GRID, SLOT0 + np.arange(7 * 15))
    everything = oracle_alerts(tiles)
    alerts = [a for a in everything if a.kind == "opened"]
    assert [a.patch_id for a in alerts] == [GRID.ids[j]] * 2
    assert [int(np.ceil(crossing(s, 4e21, 20.0, 1e21) / CADENCE_DAYS)) for s in (T0 + 0.2, T0 + 5.0)] == \
        [int(round(a.opened_days / CADENCE_DAYS)) for a in alerts]
    # while open, the second bipole taking over is reported as a new onset (its own), as an open alert's update is
    [update] = [a for a in everything if a.kind == "new_onset"]
    assert alerts[0].opened_days < update.opened_days < alerts[1].opened_days
    assert abs(update.onset_days - (T0 + 1.5)) < 0.3
    gone = int(np.ceil((T0 + 4.5) / CADENCE_DAYS)) - SLOT0  # the second bipole's three days are over
    assert tiles.flux[gone - 1, j] > 1e21 and tiles.flux[gone, j] == 0.0


def test_a_bipole_that_emerged_behind_the_limb_and_rotated_in_never_alerts():
    hidden, seen = tile_at(-120.0, 7.5), tile_at(-60.0, -7.5)
    table = bipoles((T0 + 0.1, GRID.lon[hidden], 7.5, 8e21, 12.0), (T0 + 0.1, GRID.lon[seen], -7.5, 8e21, 12.0))
    tiles = tile_flux(CONFIG, table, GRID, SLOT0 + np.arange(6 * 15), memory_days=6.0)
    assert tiles.on_disk[-15:, hidden].all(), "it rotated onto the disk within the oracle's memory"
    assert (tiles.flux[:, hidden] == 0).all()
    assert [a.patch_id for a in oracle_alerts(tiles)] == [GRID.ids[seen]]


def test_the_oracle_sums_two_small_bipoles_in_one_tile():
    j, alone = tile_at(10.0, -22.5), tile_at(40.0, -22.5)
    lon = float(GRID.lon[j])
    rows = [(T0 + 0.30, lon - 3.0, -20.0, 6e20, 6.0), (T0 + 0.55, lon + 3.0, -25.0, 6e20, 8.0)]
    table = bipoles(*rows, (T0 + 0.3, GRID.lon[alone], -22.5, 9e20, 6.0))
    slots = SLOT0 + np.arange(45)
    tiles = tile_flux(CONFIG, table, GRID, slots)
    total = sum(truth_flux(slot_days(slots), s, f, g) for s, _, _, f, g in rows)
    first = SLOT0 + int(np.argmax(total >= 1e21))
    assert total.max() > 1e21 and total[first - SLOT0 - 1] < 1e21
    alerts = [a for a in oracle_alerts(tiles, 1e21) if a.kind == "opened"]
    assert [(a.patch_id, a.opened_days) for a in alerts] == [(GRID.ids[j], pytest.approx(float(slot_days(first))))]
    assert sorted(a.patch_id for a in oracle_alerts(tiles, 8e20) if a.kind == "opened") == sorted([GRID.ids[j], GRID.ids[alone]]), \
        "the lone one at a lower level"


def test_a_new_onset_on_an_open_alert_detects_a_second_region_and_is_never_false():
    a, alon, alat, q = GRID.ids[100], float(GRID.lon[100]), float(GRID.lat[100]), GRID.ids[150]
    emergences = [Emergence("small", 100.0, alon, alat, 5e20, 0.0),  # too small to explain the opening: it is false
                  Emergence("big", 103.0, alon, alat, 5e21, 10.0)]  # emerges while that alert is still open
    opening = OpenedAlert("a/1", a, 100.3, 100.1)
    update = OpenedAlert("a/1#3", a, 103.6, 103.2, kind="new_onset")
    stray = OpenedAlert("q/1#2", q, 50.0, 49.5, kind="new_onset")  # nothing emerged there: still not a false alert
    without = match(emergences, [opening], GRID)
    assert without.detected == {"big": None} and without.false_alerts == [opening]
    with_update = match(emergences, [opening, update, stray], GRID)
    assert with_update.detected == {"big": update} and with_update.false_alerts == [opening]
    assert with_update.delays_days()[0] == pytest.approx(0.6)


def test_new_onsets_are_the_updates_whose_onset_moved_later_by_the_policys_frames_in_replay_and_events():
    # (median, onset frame, frame): opens; no event; onset +5 → new onset; onset −3 → update, not new; median −0.2 →
    # update with the onset unchanged, not new; onset +3 exactly → new onset
    history = [(0.9, 10, 20), (0.9, 11, 21), (0.95, 15, 22), (0.95, 12, 23), (0.75, 12, 24), (0.75, 15, 25)]
    scores = [score(m, onset=o, frame=f) for m, o, f in history]
    alerts, withdrawals = policy_alerts([Passage("L007.50N07.50", 1000, scores)], POLICY)
    alert_id = f"L007.50N07.50/{passage_label(1000)}/1"
    assert [(a.alert_id, a.kind) for a in alerts] == [(alert_id, "opened"), (f"{alert_id}#2", "new_onset"),
                                                      (f"{alert_id}#5", "new_onset")]
    assert withdrawals == []
    state = AlertState("L007.50N07.50", passage_label(1000))
    events = [t.event(s, "2000-06-02T08:00:00Z", REGION) for s in scores for t in step(state, POLICY, s)]
    assert [e.event.value for e in events] == ["opened", "updated", "updated", "updated", "updated"]
    assert opened(events, POLICY.onset_frames) == alerts
    assert [a.kind for a in opened(events, 6)] == ["opened"]


def test_the_visible_oracle_never_alerts_before_the_truth_oracle_and_later_while_footpoints_overlap():
    """The visible oracle renders the same bipoles as the instrument would, without noise: a young bipole's
    footpoints start 0.3° apart and overlap, so their opposite polarities cancel and less flux shows."""
    j = tile_at(10.0, 7.5)
    start, flux, growth = T0 + 0.37, 5e21, 40.0
    table = bipoles((start, GRID.lon[j], 7.5, flux, growth))
    slots = SLOT0 + np.arange(60)
    width = instrument_sigma_deg(CONFIG, 1.98)
    assert 0.05 < width < 0.2, "MDI's 4″ PSF and 2″ pixel: about a tenth of a degree"
    truth, seen = tile_flux(CONFIG, table, GRID, slots), tile_flux(CONFIG, table, GRID, slots, visible_sigma_deg=width)
    assert np.all(seen.flux <= truth.flux) and seen.flux[:, j].max() > 0
    growing = (truth.flux[:, j] > 0) & (slot_days(slots) < start + 0.5)
    assert np.all(seen.flux[growing, j] < 0.6 * truth.flux[growing, j]), "in its first half-day most flux cancels"
    (first_truth,), (first_seen,) = oracle_alerts(truth, 1e21), oracle_alerts(seen, 1e21)
    assert first_seen.opened_days > first_truth.opened_days
    assert first_seen.onset_days == first_truth.onset_days, "its onset estimate is the truth's"

    apart = replace(CONFIG, separation_start_deg=8.0)  # footpoints 8° apart from the start: nearly all flux shows
    table = replace(table, separation_deg=np.full(1, 8.0))
    truth, seen = tile_flux(apart, table, GRID, slots), tile_flux(apart, table, GRID, slots, visible_sigma_deg=width)
    shown = truth.flux[:, j] > 3e20
    np.testing.assert_allclose(seen.flux[shown, j], truth.flux[shown, j], rtol=0.02)
    (first_truth,), (first_seen,) = oracle_alerts(truth, 1e21), oracle_alerts(seen, 1e21)
    assert first_truth.opened_days <= first_seen.opened_days <= first_truth.opened_days + CADENCE_DAYS + 1e-9
