import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.time import Time
from sunpy.coordinates import HeliographicCarrington, Helioprojective

from common.config import PatchGridConfig, VideoConfig
from common.observer import Observer
from common.patches import PatchGrid, patch_id


def test_default_grid_is_the_papers():
    g = PatchGrid()
    assert g.config.pixels == 90
    assert len(g) == 24 * 12
    assert g.ids[0] == "L007.50S82.50" and g[0].lon == 7.5 and g[0].lat == -82.5
    assert len(set(g.ids)) == len(g)
    lon, lat = g.pixel_axes([0])
    assert lon.shape == (1, 90)
    np.testing.assert_allclose(np.diff(lon[0]), 1 / 6)
    # pixel centres sit half a pixel inside the 15° patch edges
    np.testing.assert_allclose([lon[0, 0], lon[0, -1]], [0 + 1 / 12, 15 - 1 / 12])


def test_ids_are_stable_and_derived_from_centres():
    g = PatchGrid()
    assert patch_id(172.5, 7.5) == "L172.50N07.50"
    assert g.index("L172.50N07.50") == g.ids.index("L172.50N07.50")
    p = g["L172.50N07.50"]
    assert (p.lon, p.lat) == (172.5, 7.5)
    assert PatchGrid().ids == g.ids
    with pytest.raises(KeyError, match="no patch"):
        g.index("L000.00N00.00")


def test_grid_tiles_edge_to_edge_without_overlap():
    g = PatchGrid()
    lon, lat = g.pixel_axes()
    # neighbours in longitude continue the pixel lattice exactly
    i, j = g.index("L007.50N07.50"), g.index("L022.50N07.50")
    assert lon[j, 0] - lon[i, -1] == pytest.approx(1 / 6)
    all_lat = np.unique(np.round(lat, 6))
    assert len(all_lat) == 12 * 90 and all_lat.min() > -90 and all_lat.max() < 90


def test_overlap_parameter():
    g = PatchGrid(PatchGridConfig(overlap=5 * u.deg))
    lon_centres = np.unique(g.lon)
    lat_centres = np.unique(g.lat)
    assert 15 - np.diff(lon_centres).max() >= 5 - 1e-9
    assert 15 - np.diff(lat_centres).max() >= 5 - 1e-9
    assert 360 / len(lon_centres) > 15 - 5 - 1.0  # the fewest patches that satisfy it
    assert lat_centres.min() == -82.5 and lat_centres.max() == 82.5


@pytest.mark.parametrize("kwargs", [dict(pixel_size=0.7 * u.deg), dict(overlap=15 * u.deg), dict(patch_size=15)])
def test_config_is_validated(kwargs):
    with pytest.raises((ValueError, TypeError)):
        PatchGridConfig(**kwargs)


def test_video_config_defaults():
    v = VideoConfig()
    assert v.n_frames == 225 and v.cadence == 96 * u.min and v.clip == 1000 * u.G
    assert v.duration.to_value(u.day) == pytest.approx(224 * 96 / 1440)


def test_on_disk_matches_sunpy_visibility():
    """A patch is on the disk iff sunpy says one of its pixel centres is visible."""
    t = Time("2010-10-15T19:12:26")
    obs = Observer(t, 192.9 * u.deg, 5.86 * u.deg, 1.479e11 * u.m, 696e6 * u.m)
    g = PatchGrid()
    lon, lat = g.pixel_axes()
    sub = slice(None, None, 3)
    L = np.broadcast_to(lon[:, None, sub], (len(g), 30, 30))
    B = np.broadcast_to(lat[:, sub, None], (len(g), 30, 30))
    observer = SkyCoord(obs.lon, obs.lat, obs.distance, frame=HeliographicCarrington(observer="self", obstime=t))
    car = SkyCoord(L * u.deg, B * u.deg, obs.rsun, frame=HeliographicCarrington(observer=observer, obstime=t, rsun=obs.rsun))
    hpc = car.transform_to(Helioprojective(observer=observer, obstime=t, rsun=obs.rsun))
    visible = hpc.is_visible().reshape(len(g), -1).any(axis=1)
    mask = g.on_disk(obs)
    # sub-sampled sunpy check may miss a patch with only a sliver visible, never the reverse
    assert (visible <= mask).all()
    assert (mask & ~visible).sum() <= 4
    assert 140 < mask.sum() < 190
