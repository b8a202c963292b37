"""build-dataset: catalog, crude labels against truth, the store, resumption, errors."""
import numpy as np
import pandas as pd
import pytest
import zarr
from astropy.time import Time

from common.clock import slot_of_time
from common.config import ServiceConfig
from common.patches import PatchGrid, patch_id
from ingest.dataset import CATALOG_COLUMNS, DatasetError, DatasetStore
from sim import SunConfig, SyntheticSun
from sim.build_dataset import PRESETS, label_quality, main, plan
from sim.catalog import DetectorConfig
from sim.settings import EVALUATION, RANGES, training_suns

TINY = ["--preset", "small", "--videos", "10", "4", "--tiles", "2", "2", "--frames", "24", "--settings", "2", "--workers", "2"]


@pytest.fixture(scope="module")
def small_plan():
    return plan(PRESETS["small"], seed=0)


@pytest.mark.system
def test_small_preset_crude_labels_err_like_the_papers(small_plan):
    q = label_quality(small_plan[small_plan.kind == "region"])
    assert q["videos"] == 240
    assert 0.75 <= q["crude_accuracy"] <= 0.90
    assert q["false_emergence"] > 0 and q["false_non_emergence"] > 0


def test_catalog_follows_the_papers_rules(small_plan):
    assert list(small_plan.columns) == list(CATALOG_COLUMNS)
    cat = small_plan[small_plan.kind == "region"]
    np.testing.assert_array_equal(cat.crude_label, (cat.first_obs_cmd > -60).astype(int))
    assert (cat.month.isin([11, 12]).sum()) == 40
    assert cat.first_obs_cmd.between(-90, 90).all()
    pos = cat[cat.true_class == 1]
    assert pos.true_onset_frame.between(0, 224).all() and (cat[cat.true_class == 0].true_onset_frame == -1).all()
    # a video starts when its patch centre comes over the east limb, ≤ ~14 days before first observation
    dt = (pd.to_datetime(cat.first_obs_time) - pd.to_datetime(cat.start_time)).dt.total_seconds() / 86400
    assert dt.between(0, 14.5).all()
    # both error kinds arise for physical reasons
    false_non = cat[(cat.crude_label == 0) & (cat.true_class == 1)]
    assert (false_non.first_obs_cmd <= -60).all()
    false_em = cat[(cat.crude_label == 1) & (cat.true_class == 0)]
    assert (false_em.first_obs_cmd > -60).all()
    # the crude onset: a day before the first (daily) catalog observation
    first = (pd.to_datetime(cat.first_obs_time) - pd.to_datetime(cat.start_time)).dt.total_seconds() / 86400 * 15
    np.testing.assert_array_equal(cat.crude_onset_frame, np.maximum(first.round().astype(int) - 15, 0))


def test_tiles_are_service_tiles_labelled_from_the_catalog_and_the_truth(small_plan):
    tiles = small_plan[small_plan.kind == "tile"]
    assert 150 <= len(tiles) <= 160 and tiles.month.isin([11, 12]).sum() >= 35
    grid = PatchGrid(ServiceConfig().patch_grid)
    assert set(zip(tiles.lon, tiles.lat)) <= set(zip(grid.lon, grid.lat))
    assert not tiles.duplicated(["setting", "lon", "lat", "start_slot"]).any()
    # quiet tiles and tiles over emergences both, and crude labels that err both ways
    assert 0.3 <= tiles.true_class.mean() <= 0.9
    q = label_quality(tiles)
    assert q["false_emergence"] + q["false_non_emergence"] > 0 and q["crude_accuracy"] >= 0.6
    # every true emergence in a tile is a BMR of at least the catalog's flux limit, with its onset in the video
    tables = [SyntheticSun(config, seed=seed).bmrs(Time("2000-01-01"), Time("2002-01-01"))
              for config, seed in training_suns(PRESETS["small"].n_settings, 0)]
    for row in tiles[tiles.true_class == 1].itertuples():
        table = tables[row.setting]
        b = list(table.id).index(row.bmr_id)
        assert table.flux_Mx[b] >= DetectorConfig().flux_threshold_Mx
        assert int(slot_of_time(table.t_onset[b])) - row.start_slot == row.true_onset_frame
        assert grid.index(patch_id(row.lon, row.lat)) in grid.overlapping(table.lon[b], table.lat[b], table.separation_deg[b] / 2)
    assert (tiles[tiles.crude_label == 1].crude_onset_frame >= 0).all() and (tiles[tiles.crude_label == 0].crude_onset_frame == -1).all()


def test_videos_are_shared_among_randomised_suns(small_plan):
    n = PRESETS["small"].n_settings
    suns = training_suns(n, 0)
    assert suns[0] == (SunConfig(), 0)  # the default Sun, with the dataset's seed
    assert len({seed for _, seed in suns}) == n and len({c.noise_G for c, _ in suns}) == n
    for config, _ in suns[1:]:
        for name, (lo, hi) in RANGES.items():
            assert lo <= getattr(config, name) <= hi
        assert config.growth_law == "flux-rate"  # the two-population law is held out of training
    held_out = EVALUATION["held-out"]
    assert held_out.growth_law != SunConfig().growth_law
    for name in ("noise_G", "psf_fwhm_arcsec"):  # and outside the training ranges on two more axes
        assert getattr(held_out, name) > RANGES[name][1]
    assert training_suns(n, 0) == suns and training_suns(n, 1)[1] != suns[1]
    counts = small_plan.groupby("setting").size()
    assert list(counts.index) == list(range(n)) and counts.max() - counts.min() <= 4
    assert small_plan[small_plan.kind == "region"].groupby("setting").size().sum() == 240


def test_build_writes_store_and_prints_accuracy(tmp_path, capsys):
    out = tmp_path / "tiny.zarr"
    assert main(TINY + ["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "crude-label accuracy vs truth:" in printed
    store = DatasetStore(out)
    assert len(store) == 18 and store.video_shape == (24, 90, 90)
    assert (store.catalog.kind == "tile").sum() == 4
    assert store.videos.dtype == np.float16
    v = store.video(0)
    assert v.dtype == np.float32 and np.abs(v).max() > 50  # real magnetograms, not blanks
    regions = store.catalog[store.catalog.kind == "region"]
    assert regions.month.isin([11, 12]).sum() == 4
    assert set(store.catalog.setting) == {0, 1} and [s["seed"] for s in store.attrs["suns"]][0] == 0


@pytest.mark.system
def test_build_resumes_after_interruption(tmp_path):
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    assert main(TINY + ["--out", str(a)]) == 0
    assert main(TINY + ["--out", str(b)]) == 0
    # what a kill leaves: some videos not written (zeros, flag down)
    root = zarr.open_group(b, mode="r+")
    written = root["written"][:]
    written[3:9] = False
    root["written"][:] = written
    root["videos"][3:9] = 0
    with pytest.raises(DatasetError, match="incomplete: 12 of 18"):
        DatasetStore(b)
    assert main(TINY + ["--out", str(b)]) == 0
    assert DatasetStore(b).fingerprint() == DatasetStore(a).fingerprint()


def test_build_refuses_a_different_plan(tmp_path, capsys):
    out = tmp_path / "s.zarr"
    assert main(TINY + ["--out", str(out)]) == 0
    assert main(TINY + ["--out", str(out), "--seed", "1"]) == 2
    assert "different preset/seed" in capsys.readouterr().err


@pytest.mark.parametrize("damage, words", [
    ("missing", "no dataset store here"),
    ("not_zarr", "not a"),
    ("no_catalog", "catalog.csv is missing"),
])
def test_malformed_store_is_named(tmp_path, damage, words):
    path = tmp_path / "store.zarr"
    if damage == "not_zarr":
        path.mkdir()
        (path / "junk.txt").write_text("x")
    elif damage == "no_catalog":
        assert main(TINY + ["--out", str(path)]) == 0
        (path / "catalog.csv").unlink()
    with pytest.raises(DatasetError, match=words) as info:
        DatasetStore(path)
    assert str(path) in str(info.value)


@pytest.mark.slow
def test_paper_preset_plan_has_the_papers_counts():
    cat = plan(PRESETS["paper"], seed=0)
    assert (~cat.month.isin([11, 12])).sum() == 2032 and cat.month.isin([11, 12]).sum() == 406
    assert cat.year.min() >= 1996 and cat.year.max() <= 2011
    q = label_quality(cat)
    assert 0.75 <= q["crude_accuracy"] <= 0.90 and q["false_emergence"] > 0 and q["false_non_emergence"] > 0
