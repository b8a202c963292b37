"""The fast path held to sunpy/astropy coordinates on sunpy's real MDI header and HMI map."""
import warnings

import astropy.units as u
import numpy as np
import pytest
import sunpy.map
from astropy.coordinates import SkyCoord
from sunpy.coordinates import HeliographicCarrington
from sunpy.map.maputils import all_coordinates_from_map, coordinate_is_on_solar_disk

from ingest.magnetogram import read_magnetogram
from ingest.projection import carrington_to_pixel
from tests.support import real_mdi_header, write_real_mdi


def load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_magnetogram(path), sunpy.map.Map(path)


def carrington_grid(smap, lon0, n=60):
    lon, lat = np.meshgrid(np.linspace(lon0 - 89.5, lon0 + 89.5, n), np.linspace(-89, 89, n))
    frame = HeliographicCarrington(observer=smap.observer_coordinate, obstime=smap.coordinate_frame.obstime,
                                   rsun=smap.coordinate_frame.rsun)
    return lon, lat, SkyCoord(lon * u.deg, lat * u.deg, frame=frame)


def test_observer_is_read_from_the_real_mdi_header(real_mdi_file):
    mag, _ = load(real_mdi_file)
    h = real_mdi_header()
    assert mag.observer.lon.to_value(u.deg) == pytest.approx(h["CRLN_OBS"], abs=1e-9)
    assert mag.observer.lat.to_value(u.deg) == pytest.approx(h["CRLT_OBS"], abs=1e-9)
    assert mag.observer.distance.to_value(u.m) == pytest.approx(h["DSUN_OBS"], rel=1e-12)
    assert mag.observer.rsun == 696e6 * u.m


@pytest.mark.parametrize("which", ["mdi64", "mdi1024", "hmi"])
def test_fast_path_matches_sunpy_world_to_pixel(which, tmp_path, real_hmi_file):
    path = real_hmi_file if which == "hmi" else write_real_mdi(tmp_path / "m.fits", (int(which[3:]),) * 2)
    mag, smap = load(path)
    lon, lat, coords = carrington_grid(smap, mag.observer.lon.to_value(u.deg))
    ref_col, ref_row = smap.wcs.world_to_pixel(coords)
    col, row, visible = carrington_to_pixel(mag.observer, mag.image, lon, lat)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sunpy_visible = coords.transform_to(smap.coordinate_frame).is_visible()
    # Same hemisphere test as sunpy's, except at the limb: sunpy's is_visible
    # has a 1 m tolerance that admits points up to ~11" of heliographic angle beyond it.
    _, _, z = mag.observer.heliocentric(lon, lat)
    disagree = visible != sunpy_visible
    assert np.abs(z - 1 / mag.observer.distance_rsun)[disagree].max(initial=0) < np.sin(np.deg2rad(11 / 3600))
    assert visible.mean() > 0.4
    assert np.abs(col - ref_col)[visible].max() <= 0.01
    assert np.abs(row - ref_row)[visible].max() <= 0.01


@pytest.mark.parametrize("which", ["mdi", "hmi"])
def test_disk_centre_and_limb_against_sunpy(which, real_mdi_file, real_hmi_file):
    mag, smap = load(real_hmi_file if which == "hmi" else real_mdi_file)
    obs = mag.observer
    # The sub-observer point appears at Sun centre.
    col, row, vis = carrington_to_pixel(obs, mag.image, obs.lon.to_value(u.deg), obs.lat.to_value(u.deg))
    centre = smap.wcs.world_to_pixel(SkyCoord(0 * u.arcsec, 0 * u.arcsec, frame=smap.coordinate_frame))
    assert vis and abs(col - centre[0]) <= 0.01 and abs(row - centre[1]) <= 0.01
    # Points just inside the limb, all round, land on sunpy's limb circle.
    limb = np.deg2rad(89.7 - 90)  # angular distance from the limb of the visible cap
    theta = np.linspace(0, 2 * np.pi, 36, endpoint=False)
    d = obs.distance_rsun
    rho = np.arccos(1 / d) + limb  # heliocentric angle from the sub-observer point
    x, y, z = np.sin(rho) * np.cos(theta), np.sin(rho) * np.sin(theta), np.full_like(theta, np.cos(rho))
    lon, lat = obs.carrington(x, y, z)
    col, row, vis = carrington_to_pixel(obs, mag.image, lon, lat)
    assert vis.all()
    frame = HeliographicCarrington(observer=smap.observer_coordinate, obstime=smap.coordinate_frame.obstime,
                                   rsun=smap.coordinate_frame.rsun)
    ref = smap.wcs.world_to_pixel(SkyCoord(lon * u.deg, lat * u.deg, frame=frame))
    assert np.abs(col - ref[0]).max() <= 0.01 and np.abs(row - ref[1]).max() <= 0.01
    # ... at the apparent solar radius (RSUN_OBS) from the centre, to within a tenth of a pixel.
    radius_px = np.hypot(col - centre[0], row - centre[1])
    rsun_px = (smap.rsun_obs / smap.scale[0]).to_value(u.pix)
    np.testing.assert_allclose(radius_px, rsun_px, atol=0.05)


@pytest.mark.parametrize("which", ["mdi", "hmi"])
def test_cleaning_zeroes_off_disk_and_missing(which, real_mdi_file, real_hmi_file):
    mag, smap = load(real_hmi_file if which == "hmi" else real_mdi_file)
    on_disk = coordinate_is_on_solar_disk(all_coordinates_from_map(smap))
    np.testing.assert_array_equal(mag.image.on_disk_mask(mag.observer.distance_rsun), on_disk)
    np.testing.assert_array_equal(mag.on_disk, on_disk)  # the mask the magnetogram carries on
    assert (mag.data[~on_disk] == 0).all()
    assert np.isfinite(mag.data).all() and mag.data.dtype == np.float32
    raw = np.nan_to_num(smap.data)
    if which == "mdi":
        # BSCALE applied, BLANK row zeroed; the rest equals sunpy's reading
        np.testing.assert_allclose(mag.data[on_disk], raw[on_disk], rtol=1e-6)
        assert (mag.data[0] == 0).all()
    else:
        assert mag.missing_on_disk == np.count_nonzero(~np.isfinite(smap.data) & on_disk)


def test_pixel_to_surface_roundtrip_and_sunpy(real_hmi_file):
    mag, smap = load(real_hmi_file)
    rows, cols = np.mgrid[0:100, 0:100]
    x, y, z, on = mag.image.heliocentric_from_pixels(cols, rows, mag.observer.distance_rsun)
    lon, lat = mag.observer.carrington(x, y, z)
    c, r, _ = carrington_to_pixel(mag.observer, mag.image, lon, lat)
    assert np.abs(c - cols)[on].max() < 1e-6 and np.abs(r - rows)[on].max() < 1e-6
    frame = HeliographicCarrington(observer=smap.observer_coordinate, obstime=smap.coordinate_frame.obstime)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = smap.pixel_to_world(cols * u.pix, rows * u.pix).transform_to(frame)
    dlon = (ref.lon.deg - lon + 180) % 360 - 180
    assert np.abs(dlon[on]).max() < 1e-5 and np.abs(ref.lat.deg - lat)[on].max() < 1e-5
    mu = mag.observer.mu(x, y, z)
    assert mu[on].min() >= 0 and mu[on].max() <= 1


@pytest.mark.parametrize("which", ["mdi", "hmi", "synthetic"])
def test_stonyhurst_positions_are_sunpy_s(which, real_mdi_file, real_hmi_file):
    """The one-rotation conversion gives what sunpy's transform gives, for an observer read from a file, off the
    Sun–Earth line (SDO) or on it, and for one built on it (the synthetic ephemeris' spline puts it 10⁻⁸° off)."""
    from sunpy.coordinates import HeliographicStonyhurst

    from sim.ephemeris import observer_at

    obs = observer_at(100_000) if which == "synthetic" else load(real_mdi_file if which == "mdi" else real_hmi_file)[0].observer
    lon, lat = np.meshgrid(np.arange(0.0, 360.0, 7.5), np.arange(-82.5, 90.0, 15.0))
    me = SkyCoord(obs.lon, obs.lat, obs.distance, frame=HeliographicCarrington(observer="self", obstime=obs.time))
    want = SkyCoord(lon * u.deg, lat * u.deg, frame=HeliographicCarrington(observer=me, obstime=obs.time)).transform_to(
        HeliographicStonyhurst(obstime=obs.time))
    got_lon, got_lat = obs.stonyhurst(lon, lat)
    tolerance = 1e-7 if which == "synthetic" else 1e-9
    assert np.abs(got_lon - want.lon.wrap_at(180 * u.deg).to_value(u.deg)).max() < tolerance
    assert np.abs(got_lat - want.lat.to_value(u.deg)).max() < 1e-9
    assert got_lon.min() >= -180.0 and got_lon.max() < 180.0
    if which == "hmi":
        assert abs(obs.stonyhurst_lon.to_value(u.deg)) > 1e-4  # SDO is off the line: the test would see a wrong offset


@pytest.mark.parametrize("crval_arcsec, angle_deg, shape, scale_arcsec", [
    ((0.0, 0.0), 180.0, (512, 512), 4.0), ((300.0, -200.0), 33.0, (400, 700), 5.0),
    ((0.0, 0.0), 0.0, (64, 64), 40.0), ((900.0, 0.0), -0.1, (300, 256), 6.0)])
def test_the_disk_mask_by_row_spans_is_the_test_of_every_pixel(crval_arcsec, angle_deg, shape, scale_arcsec):
    """The mask is solved row by row and tested exactly near the limb only: equal to the test of every pixel for
    references off the Sun's centre, rotated images, cut disks and a disk of a few pixels."""
    from ingest.projection import ImageGeometry

    rad = np.deg2rad(scale_arcsec / 3600)
    a = np.deg2rad(angle_deg)
    plane_from_pixel = rad * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    image = ImageGeometry(shape, np.array([shape[1] / 2 - 0.5, shape[0] / 2 + 3.2]),
                          np.deg2rad(np.array(crval_arcsec) / 3600), np.linalg.inv(plane_from_pixel))
    ny, nx = shape
    every = image._meets_disk(np.arange(nx)[None, :], np.arange(ny)[:, None], 215.0)
    assert 0 < every.sum() < every.size or crval_arcsec == (0.0, 0.0)
    np.testing.assert_array_equal(image.on_disk_mask(215.0), every)
