"""The paper preset's code path on a tiny store (2-D members, models 1–5 tested, held onset frames), and the review's
bugs: a checkpoint is reused only for the labels it was trained on; onsets and the ONNX check scale with the store's
clip."""
import json
from dataclasses import replace

import astropy.units as u
import numpy as np
import pytest
import zarr

import training.ensemble as ensemble
from common.video import scale_for_model
from ingest.dataset import DatasetStore
from serving.bundle import ModelBundle
from serving.streaming import FrameSumMember
from sim.build_dataset import main as build_main
from tests.test_training_core import write_store
from training.ensemble import PRESETS, MemberJob, _train_job
from training.model import EmergenceCNN2D
from training.onset import masking_curves
from training.review import OracleReviewer
from training.train import TrainConfig, load_member, save_member

CLIP = 500.0  # G, not the default 1000 G: scaling with the default would show
HOLD = 4


def test_a_checkpoint_is_reused_only_for_the_labels_it_was_trained_on(tmp_path):
    store = write_store(tmp_path / "s.zarr", 24, seed=2)
    labels = store.catalog.true_class.to_numpy()
    idx = np.arange(24)
    path = tmp_path / "member.pt"
    job = MemberJob(str(store.path), str(path), idx[:16], labels[:16], idx[16:], labels[16:], 0,
                    TrainConfig(lr=0.01, max_epochs=1, patience=1, augment="none"), "cpu", False)

    def train(j) -> int:
        _train_job(j)
        return path.stat().st_mtime_ns

    first = train(job)
    assert train(job) == first, "same data, config, rows and labels: reused"
    flipped = labels.copy()
    flipped[:3] = 1 - flipped[:3]
    relabelled = replace(job, train_labels=flipped[:16])
    second = train(relabelled)
    assert second != first, "changed training labels: retrained"
    np.testing.assert_array_equal(load_member(path).train_labels, flipped[:16])
    assert train(relabelled) == second
    third = train(replace(relabelled, val_labels=1 - labels[16:]))
    assert third != second, "changed validation labels: retrained"
    member = load_member(path)
    member.train_labels = member.val_labels = None
    save_member(member, path)  # as a checkpoint from before members stored their labels
    legacy = path.stat().st_mtime_ns
    assert train(replace(relabelled, val_labels=1 - labels[16:])) != legacy, "unknown labels: retrained"
    assert load_member(path).train_labels is not None


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    """The paper preset, narrowed to a CPU (1 epoch unaugmented, narrow 2-D members, one seed, one relabel pass), on a tiny
    16-frame store whose clip is 500 G; the ONNX check's sample is recorded."""
    root = tmp_path_factory.mktemp("paper")
    store_path = root / "tiny.zarr"
    assert build_main(["--preset", "small", "--videos", "60", "12", "--tiles", "10", "4", "--frames", "16",
                       "--settings", "2", "--out", str(store_path)]) == 0
    group = zarr.open_group(store_path, mode="r+")
    group.attrs["video"] = dict(group.attrs["video"]) | {"clip_G": CLIP}
    paper = PRESETS["paper"]
    preset = replace(paper, train=replace(paper.train, channels=(4, 8, 8, 8), fc=(16, 16), max_epochs=1, patience=1,
                                          augment="none"),
                     seeds=(0,), max_passes=1, onset_hold=HOLD)
    samples = []
    check_bundle = ensemble.check_bundle

    def recording_check(path, videos, models):
        samples.append(np.array(videos))
        return check_bundle(path, videos, models)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ensemble, "check_bundle", recording_check)
        report = ensemble.run(store_path, root / "run", preset, OracleReviewer(), log=lambda *a: None)
    return DatasetStore(store_path), root / "run", report, samples


@pytest.mark.system
def test_paper_preset_tests_and_bundles_models_1_to_5_and_reports_6_to_9_beside(paper_run):
    store, run, report, _ = paper_run
    assert PRESETS["paper"].train.architecture == "2d" and PRESETS["paper"].onset_stride == 1
    assert PRESETS["paper"].onset_hold == 30 and PRESETS["small"].onset_hold == 0
    members = report["ensemble"]["members"]
    assert report["ensemble"]["test_ensemble"] == "models 1-5"
    assert [(m["model"], m["seed"]) for m in members] == [(m, 0) for m in range(1, 6)]
    assert [m["model"] for m in report["ensemble"]["threshold_members"]] == [6, 7, 8, 9]
    beside = report["test_models_6_9"]
    assert set(beside) == {"stable_fraction", "accuracy_vs_truth", "accuracy_vs_labels"}
    assert 0 <= beside["accuracy_vs_truth"]["median"] <= 1
    assert report["onset"]["frames_held"] == HOLD and report["onset"]["frames_evaluated_every"] == 1
    manifest = json.loads((run / "bundle" / "manifest.json").read_text())
    assert [m["fold"] for m in manifest["members"]] == [f"model{m}" for m in range(1, 6)]
    assert all(m["architecture"]["architecture"] == "2d" and m["stream"]["kind"] == "frame-sum"
               for m in manifest["members"])
    assert manifest["onset"] == {"hold_frames": HOLD} and manifest["input"]["clip_G"] == CLIP
    bundle = ModelBundle(run / "bundle")  # the service loads it: streaming agrees with the full members
    assert all(isinstance(m.stream, FrameSumMember) for m in bundle.members) and bundle.onset_hold == HOLD
    for m in range(1, 6):
        assert isinstance(load_member(run / "test_ensemble" / f"model_{m}_seed_0.pt").model, EmergenceCNN2D)


@pytest.mark.system
def test_onset_curves_and_the_onnx_check_scale_with_the_stores_clip(paper_run):
    store, run, report, samples = paper_run
    ids = store.catalog[store.catalog.month.isin((11, 12))].video_id.to_numpy()
    expected = np.stack([scale_for_model(store.video(int(i)), CLIP * u.G) for i in ids[:4]])
    assert len(samples) == 1
    np.testing.assert_array_equal(samples[0], expected)
    assert report["onset"]["videos"] == len(list((run / "onset").rglob("*.npy")))
    # the onset step's curves, for a test video whether or not the one-epoch members detect an emergence in it;
    # their weights amplified, so that a 1-epoch member's curve moves with the scaling
    members = [load_member(run / "test_ensemble" / f"model_{m}_seed_0.pt") for m in (1, 2)]
    for m in members:
        m.model.first.weight.data *= 30
        m.model.classifier[-1].weight.data *= 30
    video_id = int(ids[0])
    frames, curves = ensemble.onset_curves(store, members, [video_id], 1, HOLD, run / "check")
    np.testing.assert_array_equal(frames, np.arange(HOLD, store.video_shape[0]))
    video = scale_for_model(store.video(video_id), CLIP * u.G)
    expected = np.stack([masking_curves(m, video, frames=frames, hold=HOLD) for m in members])
    np.testing.assert_allclose(curves[0], expected, atol=1e-6)
    default = np.stack([masking_curves(m, scale_for_model(store.video(video_id)), frames=frames, hold=HOLD)
                        for m in members])
    assert np.abs(default - expected).max() > 1e-4, "the default clip would give other curves"
    assert (run / "check" / f"video_{video_id}_stride_1_hold_{HOLD}.npy").exists()
