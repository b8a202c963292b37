"""Observing the synthetic Sun: ephemeris, μ projection, noise, missing frames, and FITS vs direct rendering."""

import astropy.units as u
import numpy as np
import pytest
from astropy.time import Time

from common.clock import slot_of_time, slot_time
from common.config import VideoConfig
from common.patches import PatchGrid
from ingest.cli import ingest_series
from ingest.instruments.mdi import mdi_geometry, mdi_header, soho_observer
from ingest.magnetogram import read_magnetogram
from ingest.projection import ImageGeometry
from ingest.videos import VideoStore
from sim import (
    SunConfig,
    SyntheticSun,
    ephemeris,
    observe_patch_video,
    observer_at,
    write_fits_series,
)
from sim.render import form_image


@pytest.fixture(scope="module")
def sun():
    return SyntheticSun(SunConfig(), seed=0)


def cmd(lon, slot):
    """Central-meridian distance (deg) of Carrington longitude ``lon`` at ``slot``."""
    return (lon - ephemeris(np.atleast_1d(slot))[0] + 180) % 360 - 180


def big_bmr_near_centre(sun, start="2000-03-01", days_after=4):
    """(table, index, slot): a large low-latitude BMR within 15° of the central meridian ``days_after`` after emerging."""
    table = sun.bmrs(Time(start), Time(start) + 60 * u.day)
    slot = slot_of_time(table.t_emerge) + 15 * days_after
    ok = (table.flux_Mx > 8e21) & (np.abs(table.lat) < 20) & (np.abs(cmd(table.lon, slot)) < 15)
    i = int(np.flatnonzero(ok)[np.argmax(table.flux_Mx[ok])])
    return table, i, int(slot[i])


def test_ephemeris_is_sunpys_soho_observer():
    slots = np.array([0, 1, 4000, 61234, 99999])
    l0, b0, d = ephemeris(slots)
    for k, s in enumerate(slots):
        obs = soho_observer(slot_time(s))
        assert abs((obs.lon.to_value(u.deg) - l0[k] + 180) % 360 - 180) < 1e-7
        assert abs(obs.lat.to_value(u.deg) - b0[k]) < 1e-7
        assert abs(obs.distance.to_value(u.m) - d[k]) < 100
    o = observer_at(61234)
    assert o.lon.to_value(u.deg) == pytest.approx(l0[3]) and o.time == slot_time(61234)
    t = Time("2004-07-04T12:34:56")
    lt, bt, dt = ephemeris(t)
    assert lt == pytest.approx(soho_observer(t).lon.to_value(u.deg), abs=1e-9)
    year = ephemeris(slot_of_time(Time("2005-01-01")) + 15 * np.arange(366))
    assert year[1].max() == pytest.approx(7.25, abs=0.05) and year[1].min() == pytest.approx(-7.25, abs=0.05)
    assert year[2].max() / year[2].min() == pytest.approx(1.034, abs=0.002)  # aphelion / perihelion


def test_los_field_is_radial_field_times_mu(sun):
    """Without PSF or noise the patch video is B_r·μ, to the bilinear sampling of 1.98″ image pixels."""
    sun = SyntheticSun(SunConfig(psf_fwhm_arcsec=0.0), seed=sun.seed)
    table, i, slot = big_bmr_near_centre(sun)
    lon_c, lat_c = float(table.lon[i]), float(table.lat[i])
    grid = PatchGrid()
    mus = []
    for s in (slot, slot + 4 * 15):  # at disk centre, then 4 days later, ~50° to the west
        if not sun.observed(np.array([s]))[0]:
            s += 1
        los = observe_patch_video(sun, lon_c, lat_c, s, 1, noise=False)[0][0]
        br = sun.patch_video(lon_c, lat_c, s, 1)[0]
        obs = observer_at(s)
        mu = obs.mu(*obs.heliocentric(lon_c + grid.offsets[None, :], lat_c + grid.offsets[:, None]))
        strong = np.abs(br) > 100
        assert strong.sum() > 50
        ratio = los[strong] / (br * mu)[strong]
        assert np.median(ratio) == pytest.approx(1.0, abs=0.03) and np.percentile(np.abs(ratio - 1), 90) < 0.08
        peak = np.unravel_index(np.argmax(np.abs(br)), br.shape)
        mus.append(los[peak] / br[peak])
    assert mus[0] > 0.9 and mus[1] < 0.75


def test_missing_frames_follow_one_schedule(sun):
    slots = np.arange(slot_of_time(Time("1996-01-01")), slot_of_time(Time("2012-01-01")))
    observed = sun.observed(slots)
    assert 0.02 < 1 - observed.mean() < 0.08
    edges = np.flatnonzero(np.diff(np.r_[1, observed.astype(int), 1]))
    runs = edges[1::2] - edges[::2]
    assert (runs == 1).sum() > 0.5 * len(runs)  # mostly single missing frames ...
    assert (runs >= 15).sum() >= 5  # ... and some multi-day gaps
    np.testing.assert_array_equal(sun.observed(slots[1000:1300]), observed[1000:1300])
    assert not np.array_equal(SyntheticSun(seed=1).observed(slots), observed)
    s0 = int(slots[np.flatnonzero(~observed)[10]]) - 100
    _, obs_video = observe_patch_video(sun, 30.0, 0.0, s0, 225)
    np.testing.assert_array_equal(obs_video, observed[s0 - slots[0]: s0 - slots[0] + 225])


def test_video_cleaning_limb_and_gaps(sun):
    config = SunConfig(missing_single_fraction=0.2)
    gappy = SyntheticSun(config, seed=0)
    table, i, slot = big_bmr_near_centre(gappy)
    video, observed = observe_patch_video(gappy, float(table.lon[i]), float(table.lat[i]), slot - 30, 225)
    assert video.dtype == np.float32 and video.shape == (225, 90, 90)
    assert (~observed).sum() > 20
    inner = np.flatnonzero(~observed[1:-1] & observed[:-2] & observed[2:]) + 1
    np.testing.assert_allclose(video[inner], (video[inner - 1] + video[inner + 1]) / 2, atol=1e-3)
    # the patch rotates over the west limb about 7 days after the central meridian: far side = 0 G
    behind = np.flatnonzero(cmd(float(table.lon[i]), slot - 30 + np.arange(225)) > 110)
    assert len(behind) > 50 and (video[behind] == 0).all()
    assert (np.abs(video[:30]) > 0).all()


def test_noise_level_and_saturation(sun):
    s = slot_of_time(Time("1996-09-01"))  # solar minimum
    lon_c = float(ephemeris(np.array([s]))[0][0])
    obs = observer_at(s)
    image = mdi_geometry()
    rows = cols = np.arange(462, 562)  # 100² image pixels at disk centre (μ > 0.99)
    pixel = [form_image(lambda lon, lat: 0 * lon, sun.config, 0, s, obs, image, rows, cols, noise=n) for n in (True, False)]
    assert (pixel[0] - pixel[1]).std() == pytest.approx(20 * 1.005, rel=0.03)  # the noise of one image pixel
    quiet = {}
    for name, dlon in (("centre", 0.0), ("limb", 65.0)):
        noisy, observed = observe_patch_video(sun, lon_c + dlon, 0.0, s, 20)
        clean, _ = observe_patch_video(sun, lon_c + dlon, 0.0, s, 20, noise=False)
        quiet[name] = (noisy - clean)[observed].std()
    # A patch pixel (1/6° ≈ 1.4 image pixels at disk centre) interpolates four independent image pixels: on
    # average Σw² = (2/3)², so σ × 2/3, as ingest makes of a live frame.
    assert quiet["centre"] == pytest.approx(20 * 2 / 3, rel=0.07)
    # Toward the limb the pixel noise grows and foreshortened image pixels are shared by patch pixels.
    assert 1.2 < quiet["limb"] / quiet["centre"] < 1.6
    table, i, slot = big_bmr_near_centre(sun)
    saturated = SyntheticSun(SunConfig(saturation_G=300.0), seed=0)
    video, _ = observe_patch_video(saturated, float(table.lon[i]), float(table.lat[i]), slot, 3)
    assert 285.0 < np.abs(video).max() <= 300.0 + 1e-3  # saturated image pixels, bilinearly sampled


def test_videos_are_deterministic_per_seed():
    lon_c = float(ephemeris(np.array([40000]))[0][0])  # at disk centre
    a, b, c = (observe_patch_video(SyntheticSun(seed=s), lon_c, 15.0, 40000, 30)[0] for s in (7, 7, 8))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 5


def test_full_disk_fits_ingest_matches_direct_patch_video(tmp_path):
    """The training videos go through the live path's instrument: FITS (1024², real MDI keywords, noise and
    PSF) → ingest_series (read_magnetogram, project_patches) gives the directly formed patch videos, noise and
    all, to the 0.01 G scaling of the files and the interpolation of B_r on the 1/12° grid the patch path
    renders. Measured for patches within 85° of disk centre: rms ≤ 0.3 G and max |Δ| ≤ 4.4 G (noise 20 G)."""
    sun = SyntheticSun(SunConfig(missing_single_fraction=0.3), seed=0)
    table, i, slot = big_bmr_near_centre(sun)
    slots = slot + np.arange(5)
    assert not sun.observed(slots).all() and sun.observed(slots).sum() >= 2
    paths = write_fits_series(sun, slots, tmp_path / "fits")
    assert len(paths) == sun.observed(slots).sum()
    mag = read_magnetogram(paths[0])
    assert mag.observer.lat.to_value(u.deg) == pytest.approx(ephemeris(slots[sun.observed(slots)][:1])[1][0], abs=1e-6)
    out = ingest_series(paths, tmp_path / "videos.zarr", start=slot_time(slots[0]), video=VideoConfig(n_frames=5),
                        progress=False)
    store = VideoStore(out)
    np.testing.assert_array_equal(store.observed, sun.observed(slots))
    grid = store.grid
    distance = np.hypot(cmd(grid.lon, slots[0]), grid.lat)
    central = np.flatnonzero(distance < 85)
    assert len(central) > 80 and (distance[central] > 75).sum() > 10
    worst, peak = 0.0, 0.0
    for p in central:
        direct, _ = observe_patch_video(sun, float(grid.lon[p]), float(grid.lat[p]), int(slots[0]), 5)
        diff = store[p] - direct
        worst, peak = max(worst, np.abs(diff).max()), max(peak, np.abs(direct).max())
        assert np.sqrt((diff**2).mean()) < 0.4
    assert worst < 5.0
    assert peak > 400  # the comparison saw the BMR's strong field


@pytest.mark.parametrize("shape", [(1024, 1024), (256, 256)])
def test_mdi_geometry_is_the_headers_wcs(shape):
    from astropy.wcs import WCS

    a = mdi_geometry(shape)
    b = ImageGeometry.from_wcs(WCS(mdi_header(observer_at(40000), shape)), shape)
    np.testing.assert_allclose(a.crpix, b.crpix)
    np.testing.assert_allclose(a.crval, b.crval, atol=1e-15)
    np.testing.assert_allclose(a.pixel_from_plane, b.pixel_from_plane, rtol=1e-12)
