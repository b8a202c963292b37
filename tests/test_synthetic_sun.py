"""The synthetic Sun's physics: BMR emergence, Joy's and Hale's laws, rotation, cycle, determinism."""
import astropy.units as u
import numpy as np
import pytest
from astropy.time import Time
from sunpy.sun.models import differential_rotation

from common.clock import EPOCH, slot_of_time, slot_time
from evaluation.replay import truth
from sim import BMRTable, SunConfig, SyntheticSun
from sim.bmr import DETECTABLE_FLUX_MX, footpoint_blobs, nests_alive
from sim.catalog import detect
from sim.gauss import point_field
from sim.physics import Blobs

YEAR = 365.25


@pytest.fixture(scope="module")
def sun():
    return SyntheticSun(SunConfig(), seed=0)


def active(table: BMRTable) -> BMRTable:
    """The active-region BMRs of a table (no companion bipoles, small bipoles or ephemeral regions)."""
    return table[table.population == "region"]


@pytest.fixture(scope="module")
def cycle23(sun):
    """Active-region BMRs of 1996–2008 (cycle 23 and the start of 24)."""
    return active(sun.bmrs(Time("1996-01-01"), Time("2009-01-01")))


def one_bmr(lat, lon=100.0, t_days=1000.0, **kw) -> BMRTable:
    """A hand-made BMR table of one region (days since EPOCH)."""
    row = dict(id=np.array(["T"], dtype=object), region=np.array(["T"], dtype=object),
               population=np.array(["region"], dtype=object), t_days=np.array([t_days]), lon=np.array([lon]), lat=np.array([lat]),
               flux_Mx=np.array([1e22]), kind=np.array(["gradual"], dtype=object), growth_hours=np.array([24.0]),
               tilt_deg=np.array([10.0]), leading_sign=np.array([1], dtype=np.int8), separation_deg=np.array([5.0]),
               decay_days=np.array([20.0]), cycle=np.array([23]))
    row.update({k: np.array([v]) for k, v in kw.items()})
    return BMRTable(**row)


def test_slots_are_96_minutes_from_the_1996_epoch():
    assert slot_time(0) == EPOCH and EPOCH.isot == "1996-01-01T00:00:00.000"
    assert slot_time(15 * 3653).isot == "2006-01-01T00:00:00.000"  # round UTC times, leap seconds aside
    assert slot_of_time(slot_time(123456) + 40 * u.min) == 123456
    np.testing.assert_array_equal(slot_of_time(slot_time(np.array([-5, 0, 7]))), [-5, 0, 7])


def test_bmr_flux_is_balanced_and_carried_by_the_field(sun):
    """The rendered field of one BMR (the renderer's own footpoint concentrations) has zero net flux
    and carries the flux bmr_state reports."""
    for lat, t_after in ((15.0, 0.5), (-22.0, 3.0), (8.0, 12.0)):
        table = one_bmr(lat, separation_deg=10.0)
        t = np.array([1000.0 + t_after])
        flux = sun.bmr_state(table, 0, Time(EPOCH.mjd + t, format="mjd")).flux[0]
        assert flux.sum() == 0 and flux[0] > 0
        step = 0.05
        g_lon = 100.0 + np.arange(-20, 20, step)
        g_lat = lat + np.arange(-20, 20, step)
        blobs = footpoint_blobs(sun.config, table, t)
        br = point_field(g_lon[None, :], g_lat[:, None], Blobs(*(a.ravel() for a in blobs)))
        dA = (np.deg2rad(step) * sun.config.rsun_cm) ** 2 * np.cos(np.deg2rad(g_lat))[:, None]  # R² cos φ dλ dφ
        net, unsigned = (br * dA).sum(), (np.abs(br) * dA).sum()
        assert abs(net) < 2e-3 * unsigned
        if t_after == 3.0:  # footpoints well apart: |B_r| integrates to their flux (overlapping ones partly cancel)
            assert unsigned == pytest.approx(np.abs(flux).sum(), rel=0.01)
        assert unsigned <= np.abs(flux).sum() * 1.001


def test_joys_law_leading_footpoint_nearer_the_equator(sun, cycle23):
    t = cycle23.t_emerge + 5 * u.day
    sel = np.arange(0, len(cycle23), 7)
    lat = np.array([sun.bmr_state(cycle23, i, t[i].reshape(1)).lat[0] for i in sel])  # (n, 2)
    lead_nearer = np.abs(lat[:, 0]) < np.abs(lat[:, 1])
    tilt = cycle23.tilt_deg[sel]
    np.testing.assert_array_equal(lead_nearer, tilt > 0)  # positive tilt means exactly this, both hemispheres
    north = cycle23.lat[sel] > 0
    assert lead_nearer[north].mean() > 0.7 and lead_nearer[~north].mean() > 0.7
    slope = np.polyfit(np.abs(cycle23.lat), cycle23.tilt_deg, 1)[0]
    assert slope == pytest.approx(0.5, abs=0.1)


def test_hale_polarity_flips_between_hemispheres_and_cycles(sun):
    for years, cycle, north_leading in ((("1999", "2003"), 23, +1), (("2011", "2014"), 24, -1)):
        table = sun.bmrs(Time(f"{years[0]}-01-01"), Time(f"{years[1]}-01-01"))
        table = table[table.cycle == cycle]
        north = table.lat > 0
        assert len(table) > 300
        assert (table.leading_sign[north] == north_leading).mean() > 0.9
        assert (table.leading_sign[~north] == -north_leading).mean() > 0.9
    # the leading footpoint is the western one (higher Carrington longitude)
    table = active(sun.bmrs(Time("2000-01-01"), Time("2000-01-15")))
    lon = sun.bmr_state(table, np.arange(len(table)), Time(["2000-02-01"])).lon[:, 0]
    assert (((lon[:, 0] - lon[:, 1] + 180) % 360 - 180)[table.t_days < table.t_days.max()] > 0).all()


@pytest.mark.parametrize("lat", [0.0, 30.0, -30.0])
def test_differential_rotation_in_the_carrington_frame(sun, lat):
    table = one_bmr(lat)
    t = Time(EPOCH.mjd + 1000 + np.array([5.0, 6.0]), format="mjd")  # well after separation levels off
    lon = sun.bmr_state(table, 0, t).lon
    drift = (lon[1] - lon[0] + 180) % 360 - 180  # deg/day, both footpoints
    # the published rate of small magnetic features (Howard et al. 1990), as sunpy has it
    howard = differential_rotation(1 * u.day, lat * u.deg, model="howard", frame_time="sidereal").to_value(u.deg)
    np.testing.assert_allclose(drift, howard - 14.1844, atol=1e-3)
    # near the equator magnetic features outrun the Carrington frame; at 30° they lag it
    assert drift[0] > 0.1 if lat == 0 else drift[0] < -0.45


def test_growth_timescales_of_fast_and_gradual_emergence():
    sun = SyntheticSun(SunConfig(growth_law="populations"), seed=0)
    table = active(sun.bmrs(Time("2001-01-01"), Time("2001-03-01")))
    fast = table.kind == "fast"
    assert 0.2 < fast.mean() < 0.5
    hours = np.arange(0, 200, 0.25)
    flux = np.abs(sun.bmr_state(table, np.arange(len(table)), table.t_emerge[0] + 0 * u.s).flux)  # shape check only
    assert flux.shape == (len(table), 1, 2)
    t_full = []
    for i in range(len(table)):
        f = np.abs(sun.bmr_state(table, i, table.t_emerge[i] + hours * u.h).flux[:, 0])
        t_full.append(hours[np.argmax(f)])  # growth ends at peak flux; decay follows
        assert f[0] < 1e-6 * f.max() and f.max() == pytest.approx(table.flux_Mx[i] / 2, rel=0.01)
    t_full = np.array(t_full)
    assert (t_full[fast] < 13).all() and (t_full[~fast] > 13).all()
    assert np.median(t_full[~fast]) > 20


def test_the_flux_rate_growth_law_grows_large_regions_for_days_at_published_rates(cycle23):
    alt = cycle23  # the default law
    two = active(SyntheticSun(SunConfig(growth_law="populations"), seed=0).bmrs(Time("1996-01-01"), Time("2009-01-01")))
    # the same regions (the same draws), grown by another law
    np.testing.assert_array_equal(alt.t_days, two.t_days)
    np.testing.assert_array_equal(alt.flux_Mx, two.flux_Mx)
    small, large = alt.flux_Mx < 2e21, alt.flux_Mx > 1e22
    assert np.median(alt.growth_hours[large]) > 2.5 * np.median(alt.growth_hours[small])  # growth time rises with flux
    assert np.median(alt.growth_hours[large]) > 72  # days for large regions
    # the mean rate Φ / T: of order 1e19–1e20 Mx/h (Norton et al. 2017), rising as Φ^0.57 (Otsuji et al. 2011)
    unclipped = (alt.growth_hours > 2.0) & (alt.growth_hours < 120.0)
    rate = (alt.flux_Mx / alt.growth_hours)[unclipped]
    assert 1e19 < np.median(rate) < 1e20
    slope = np.polyfit(np.log(alt.flux_Mx[unclipped]), np.log(rate), 1)[0]
    assert 0.4 < slope < 0.75
    # under the two-population law growth does not depend on flux
    assert abs(np.median(two.growth_hours[large]) / np.median(two.growth_hours[small]) - 1) < 0.5


def test_the_truth_onset_is_when_the_new_flux_becomes_detectable(sun):
    table = sun.bmrs(Time("2001-01-01"), Time("2001-01-20"))
    table = table[table.flux_Mx > 2 * DETECTABLE_FLUX_MX]
    assert (table.t_onset_days > table.t_days).all()
    for i in range(len(table)):
        total = np.abs(sun.bmr_state(table, i, table.t_onset[i] + [-60, 0, 60] * u.s).flux).sum(axis=-1)
        assert total[0] < DETECTABLE_FLUX_MX < total[2] and total[1] == pytest.approx(DETECTABLE_FLUX_MX, rel=0.02)
    assert 3 < np.median((table.t_onset_days - table.t_days) * 24) < 24  # hours after the emergence starts


def test_flux_distribution_and_decay(cycle23, sun):
    flux = cycle23.flux_Mx
    assert flux.min() >= 1e21 and flux.max() <= 3e22
    assert 2e21 < np.median(flux) < 6e21
    assert 0.03 < (flux > 1e22).mean() < 0.3  # lognormal tail
    assert 3 <= cycle23.decay_days.min() and cycle23.decay_days.max() <= 20
    i = int(np.argmax(flux))
    peak = cycle23.t_emerge[i] + cycle23.growth_hours[i] * u.h
    f = np.abs(sun.bmr_state(cycle23, i, peak + [0, 1, 10] * u.day).flux[:, 0])
    np.testing.assert_allclose(f[1:] / f[0], np.exp(-np.array([1, 10]) / cycle23.decay_days[i]), rtol=1e-6)


def test_latitudes_follow_the_butterfly(cycle23):
    assert (np.abs(cycle23.lat) <= 30).mean() > 0.9
    years = cycle23.t_days / YEAR + 1996
    early = np.abs(cycle23.lat[(years > 1997) & (years < 1999)]).mean()
    late = np.abs(cycle23.lat[(years > 2004) & (years < 2008) & (cycle23.cycle == 23)]).mean()
    assert early - late > 8
    per_year = np.bincount(years.astype(int) - 1996)
    assert per_year.argmax() in (4, 5, 6) and per_year[4] > 5 * per_year[12]  # maximum 2000-02, minimum 2008


def test_determinism_and_interval_independence():
    a, b, c = SyntheticSun(seed=5), SyntheticSun(seed=5), SyntheticSun(seed=6)
    t0, t1 = Time("2002-03-01"), Time("2002-04-01")
    ta, tb, tc = a.bmrs(t0, t1), b.bmrs(t0, t1), c.bmrs(t0, t1)
    np.testing.assert_array_equal(ta.id, tb.id)
    np.testing.assert_array_equal(ta.flux_Mx, tb.flux_Mx)
    assert len(tc) != len(ta) or not np.array_equal(tc.flux_Mx, ta.flux_Mx)
    part = a.bmrs(Time("2002-03-10T06:00"), Time("2002-03-20"))
    keep = np.isin(ta.id, part.id)
    np.testing.assert_array_equal(ta.lon[keep], part.lon)
    assert 0 < keep.sum() < len(ta)


def test_field_is_a_pure_function_of_position(sun):
    t = Time("2003-05-05T05:05")
    lon, lat = np.array([10.0, 10.3, 11.0]), np.array([-5.0, -4.8, -4.0])
    alone = sun.radial_field(lon, lat, t)
    far_lon, far_lat = np.r_[lon, 200.0, 350.0], np.r_[lat, 60.0, -70.0]
    np.testing.assert_allclose(sun.radial_field(far_lon, far_lat, t)[:3], alone, rtol=1e-12, atol=1e-12)
    grid = sun.radial_field(np.arange(0, 30, 0.2)[None, :], np.arange(-20, 10, 0.2)[:, None], t)
    assert grid.max() > 20 and grid.min() < -20  # mixed-polarity network
    assert sun.patch_video(10.0, -5.0, slot_of_time(t), 1).std() > 3


def test_quiet_network_drifts_and_changes(sun):
    """Quiet-Sun elements move and turn over within a day: frames a day apart decorrelate."""
    lon_c, lat_c = 200.0, 10.0
    slot = slot_of_time(Time("1996-06-01"))  # solar minimum: quiet Sun only, mostly
    v = sun.patch_video(lon_c, lat_c, slot, 31)
    r = [np.corrcoef(v[0].ravel(), v[k].ravel())[0, 1] for k in (1, 15, 30)]
    assert r[0] > 0.9 and r[1] < 0.6 and r[2] < 0.3


def test_small_bipoles_and_ephemeral_regions_emerge_everywhere_below_the_catalogs_size(sun):
    t0, t1 = Time("2008-06-01"), Time("2008-07-01")  # solar minimum: few active regions
    table = sun.bmrs(t0, t1)
    small = table[table.population == "small"]
    assert len(small) / 30 == pytest.approx(60, rel=0.15)
    assert small.flux_Mx.min() >= 5e19 and small.flux_Mx.max() <= 1e21
    assert np.abs(np.sin(np.deg2rad(small.lat))).mean() == pytest.approx(0.5 * np.sin(np.deg2rad(60)), abs=0.05)
    assert np.median(small.growth_hours) < 6 and np.median(small.decay_days) < 1.5
    assert 0.35 < (np.cos(np.deg2rad(small.tilt_deg)) < 0).mean() < 0.65  # any orientation
    # strong enough to stand out of the noise: the peak field of a median one is several times MDI's 20 G
    i = int(np.argmin(np.abs(small.flux_Mx - np.median(small.flux_Mx))))
    peak = np.abs(footpoint_blobs(sun.config, small[np.array([i])], small.t_days[i:i + 1] + small.growth_hours[i] / 24).amp)
    assert peak.max() > 80
    # too weak for the flux-limited catalog and for the event-level truth (at maximum, where both have regions)
    t0, t1 = Time("2000-06-01"), Time("2000-06-15")
    table = sun.bmrs(t0, t1)
    small = table[table.population == "small"]
    found = detect(sun, t0, t1)
    assert len(found) and not (table.population[found.bmr_index.to_numpy()] == "small").any()
    counted = truth(sun, slot_of_time(t0), slot_of_time(t1), min_flux_Mx=1e21)
    assert counted and not set(e.region for e in counted) & set(small.id)


def test_activity_nests_gather_emergences(sun):
    def near_a_nest(s: SyntheticSun) -> float:
        table = active(s.bmrs(Time("2000-01-01"), Time("2000-05-01")))
        near = []
        for t, lon, lat in zip(table.t_days, table.lon, table.lat):
            n_lon, n_lat = nests_alive(s.config, s.seed, t)
            d = np.hypot(((n_lon - lon + 180) % 360 - 180) * np.cos(np.deg2rad(lat)), n_lat - lat)
            near.append(d.min(initial=np.inf) < 3 * s.config.nest_scatter_deg)
        return float(np.mean(near))

    assert 15 < len(nests_alive(sun.config, sun.seed, 1600.0)[0]) < 60  # at the 2000 maximum
    assert near_a_nest(sun) > near_a_nest(SyntheticSun(SunConfig(nest_fraction=0.0), seed=0)) + 0.25


def test_multi_bipole_regions_count_once(sun):
    t0, t1 = Time("2000-01-01"), Time("2000-07-01")
    table = sun.bmrs(t0, t1)
    companions = table[table.population == "companion"]
    big = active(table).flux_Mx >= sun.config.multi_min_flux_Mx
    with_companions = np.isin(active(table).id, companions.region)
    assert with_companions[big].mean() == pytest.approx(sun.config.multi_fraction, abs=0.08)
    assert not with_companions[~big].any()
    row = {r: i for i, r in enumerate(table.id)}
    checked = 0
    for c in range(len(companions)):
        p = row.get(companions.region[c])
        if p is None:
            continue
        checked += 1
        assert 0 <= companions.t_days[c] - table.t_days[p] <= sun.config.multi_delay_day
        assert 0.2 * table.flux_Mx[p] <= companions.flux_Mx[c] <= 0.6 * table.flux_Mx[p]
        assert companions.leading_sign[c] == table.leading_sign[p]
        assert abs(companions.lat[c] - table.lat[p]) < 3 * table.separation_deg[p]
    assert checked > 20
    counted = {e.region: e for e in truth(sun, slot_of_time(t0), slot_of_time(t1))}
    assert not set(companions.id) & set(counted)  # one emergence per region ...
    for region in set(companions.region) & set(counted):
        e, members = counted[region], np.flatnonzero(table.region == region)
        assert e.flux_Mx == pytest.approx(table.flux_Mx[members].sum())  # ... with its total flux,
        assert e.onset_days == pytest.approx(table.t_onset_days[members].min())  # its first onset
        for m in members:  # and a footprint that holds every bipole
            assert abs((table.lon[m] - e.lon + 180) % 360 - 180) + table.separation_deg[m] / 2 <= e.half_extent_deg + 1e-9
            assert abs(table.lat[m] - e.lat) + table.separation_deg[m] / 2 <= e.half_extent_deg + 1e-9
