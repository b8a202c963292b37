"""A synthetic MDI series → patch videos on the cadence grid."""
import astropy.units as u
import numpy as np
import pytest
from astropy.time import Time

from common.config import VideoConfig
from common.video import fill_gaps, scale_for_model, slot_of
from ingest.cli import main
from ingest.videos import VideoStore
from tests.support import bipole, cadence_times, synthetic_mdi_series

START = Time("2011-03-07T00:00:00")


def test_scale_for_model_is_the_authors():
    np.testing.assert_allclose(scale_for_model(np.array([-2000.0, -1000, 0, 500, 1000, 3000])),
                               [0, 0, 0.5, 0.75, 1, 1])


def test_fill_gaps_interpolates_repeats_and_pads():
    frames = np.zeros((8, 1, 1))
    observed = np.array([0, 1, 0, 0, 1, 1, 0, 0], bool)
    frames[1], frames[4], frames[5] = 3.0, 9.0, 1.0
    frames[[0, 2, 3, 6, 7]] = 99.0  # garbage in unobserved slots is replaced
    np.testing.assert_allclose(fill_gaps(frames, observed).ravel(), [3, 3, 5, 7, 9, 1, 0, 0])


def test_slot_of_rounds_to_nearest_cadence():
    times = START + [0, 47, 49, 96 * 3 + 10] * u.min
    np.testing.assert_array_equal(slot_of(times, START), [0, 0, 1, 3])


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """Frames 0,1,2,4,5 of a 10-slot window (3 missing; 6-9 past the end of data), plus a duplicate of slot 2."""
    folder = tmp_path_factory.mktemp("series")
    lon0, lat0 = 127.0, 8.0  # L0 is 119° at START: near disk centre
    times = cadence_times(START, 6)[[0, 1, 2, 4, 5]] + 40 * u.s
    paths = synthetic_mdi_series(folder, times, bipole(lon0, lat0, separation=5, peak=1000))
    dup = synthetic_mdi_series(folder / "dup", [times[2] + 20 * u.min], bipole(lon0, lat0))[0]
    dup.rename(folder / (paths[2].name.replace(".fits", "_dup.fits")))
    out = folder / "videos.zarr"
    assert main([str(folder), "--out", str(out), "--frames", "10", "--start", START.isot]) == 0
    return VideoStore(out), (lon0, lat0)


def test_series_slots_gaps_and_padding(series):
    store, _ = series
    np.testing.assert_array_equal(store.observed, [1, 1, 1, 0, 1, 1, 0, 0, 0, 0])
    assert any("already filled" in why for _, why in store.attrs["skipped"])
    video = store["L127.50N07.50"]
    assert video.shape == (10, 90, 90)
    np.testing.assert_allclose(video[3], (video[2] + video[4]) / 2, atol=1e-4)
    assert (video[6:] == 0).all()
    assert np.abs(video[:6]).max() > 300


def test_bipole_lands_where_it_is_on_the_sun(series):
    store, (lon0, lat0) = series
    grid = store.grid
    i = grid.index("L127.50N07.50")
    frame = store[i][0]
    lon, lat = grid.pixel_axes([i])
    # positive (leading, west) and negative (following, east) footpoints at ±2.5° from lon0
    pos = np.unravel_index(np.argmax(frame), frame.shape)
    neg = np.unravel_index(np.argmin(frame), frame.shape)
    assert lat[0, pos[0]] == pytest.approx(lat0, abs=0.2) and lon[0, pos[1]] == pytest.approx(lon0 + 2.5, abs=0.2)
    assert lat[0, neg[0]] == pytest.approx(lat0, abs=0.2) and lon[0, neg[1]] == pytest.approx(lon0 - 2.5, abs=0.2)
    # LoS field is B_r·μ: peak below 1000 G by the μ of its position, not more
    assert 0.5 * 1000 < frame.max() < 1000


def test_far_side_patch_is_zero(series):
    store, _ = series
    # the patch opposite the sub-observer point (L0 = 119°) stays on the far side
    assert not store[store.grid.index("L307.50N07.50")].any()
    assert store.video == VideoConfig(n_frames=10)
