"""Patch projection: the fast path against sunpy's Map.reproject_to."""
import warnings

import numpy as np
import pytest
import sunpy.map

from common.patches import PatchGrid
from ingest.magnetogram import read_magnetogram
from ingest.projection import carrington_to_pixel, project_patches
from ingest.reference import reproject_patches
from tests.support import bipole, synthetic_mdi_series


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    """A 1024² MDI-format frame with bipoles all over the disk."""
    fields = [bipole(lon, lat, peak=1500) for lon in range(0, 360, 20) for lat in (-50, -20, 5, 35, 70)]
    path, = synthetic_mdi_series(tmp_path_factory.mktemp("proj"), ["2011-03-07T12:00"],
                                 lambda lo, la: sum(f(lo, la) for f in fields), shape=(1024, 1024))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mag = read_magnetogram(path)
        smap = sunpy.map.Map(mag.data, sunpy.map.Map(path).meta)
    return mag, smap


def test_fast_path_matches_reproject_to(frame):
    mag, smap = frame
    grid = PatchGrid()
    idx = np.flatnonzero(grid.on_disk(mag.observer))
    ours = project_patches(mag.data, mag.observer, mag.image, grid, idx)
    ref = reproject_patches(smap, grid, idx)
    lon, lat = grid.pixel_axes(idx)
    _, _, visible = carrington_to_pixel(mag.observer, mag.image, lon[:, None, :], lat[:, :, None])
    _, _, z = mag.observer.heliocentric(lon[:, None, :], lat[:, :, None])
    both = np.isfinite(ref) & visible
    assert both.mean() > 0.5
    assert np.abs(ours - ref)[both].max() <= 0.5
    assert np.abs(ours).max() > 500  # the comparison saw real structure
    # Where sunpy leaves a patch pixel undefined (far side) the fast path gives 0 G ...
    assert (ours[~np.isfinite(ref)] == 0).all()
    # ... and defines every pixel sunpy does, but for a fringe reproject keeps up to
    # a patch pixel beyond the limb (on the far side, so rightly 0 G here).
    fringe = np.isfinite(ref) & ~visible
    beyond = np.rad2deg(np.arcsin(1 / mag.observer.distance_rsun - z[fringe]))
    assert beyond.max(initial=0) < grid.config.pixel_size.to_value("deg")


def test_far_side_patches_are_zero(frame):
    mag, _ = frame
    grid = PatchGrid()
    off = np.flatnonzero(~grid.on_disk(mag.observer))
    assert len(off) > 50
    assert (project_patches(mag.data, mag.observer, mag.image, grid, off) == 0).all()
