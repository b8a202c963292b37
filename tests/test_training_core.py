"""training core: model, data + augmentation, training (learning, determinism, checkpoints), onset masking, ONNX bundle.

Runs on a tiny synthetic store written here in the ``build-dataset`` layout:
class 1 videos show a bipole that appears at a known frame; class 0 videos
are either quiet (noise only) or show a bipole present from frame 0.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import zarr

from common.onset import ensemble_onset_frame, member_onset_frames, onset_frame
from common.video import scale_for_model
from ingest.dataset import CATALOG_COLUMNS, KIND, DatasetStore, video_digest
from serving.bundle import ModelBundle
from training.data import N_AUGMENT, VideoDataset, augment, make_loader
from training.export import check_bundle, input_spec_for, write_bundle
from training.model import EmergenceCNN, EmergenceCNN2D, count_parameters, model_from_hparams
from training.onset import masked_videos, masking_curves
from training.train import TrainConfig, _run_epoch, load_member, predict, train_member

FRAMES, PIXELS = 16, 90
#: A preset that learns the synthetic task in a few epochs on CPU (the paper's lr 1e-4 is far slower).
FAST = TrainConfig(lr=0.01, max_epochs=8, patience=3)


def synthetic_video(rng: np.random.Generator, kind: str, onset: int) -> np.ndarray:
    """(FRAMES, PIXELS, PIXELS) G: 20 G noise, plus a ±800 G bipole from ``onset`` ('emerging') or frame 0 ('old')."""
    video = rng.normal(0.0, 20.0, (FRAMES, PIXELS, PIXELS)).astype(np.float32)
    if kind == "quiet":
        return video
    y, x = np.mgrid[0:PIXELS, 0:PIXELS]
    cy, cx = rng.uniform(30, 60, 2)
    half = rng.uniform(5, 9)
    angle = rng.uniform(-0.5, 0.5)
    dx, dy = half * np.cos(angle), half * np.sin(angle)
    sign = rng.choice([-1.0, 1.0])
    pole = lambda px, py: np.exp(-((x - px) ** 2 + (y - py) ** 2) / (2 * 4.0**2))  # noqa: E731
    bipole = sign * 800.0 * (pole(cx + dx, cy + dy) - pole(cx - dx, cy - dy))
    start = onset if kind == "emerging" else 0
    growth = np.clip((np.arange(FRAMES) - start + 1) / 2.0, 0.0, 1.0)  # full strength 2 frames after onset
    return video + growth[:, None, None] * bipole.astype(np.float32)


def write_store(path, n_videos: int, seed: int) -> DatasetStore:
    """A dataset store (zarr group + catalog.csv, as build-dataset writes it) of synthetic videos."""
    rng = np.random.default_rng(seed)
    kinds = np.array(["emerging", "quiet", "old"] * (n_videos // 3 + 1))[:n_videos]
    rng.shuffle(kinds)
    onsets = np.where(kinds == "emerging", rng.integers(5, 11, n_videos), -1)
    root = zarr.open_group(path, mode="w")
    videos = root.create_array("videos", shape=(n_videos, FRAMES, PIXELS, PIXELS), chunks=(1, FRAMES, PIXELS, PIXELS),
                               dtype="float16", fill_value=0)
    digest = np.zeros((n_videos, 32), np.uint8)
    for i, (kind, onset) in enumerate(zip(kinds, onsets)):
        stored = synthetic_video(rng, kind, onset).astype(np.float16)
        videos[i] = stored
        digest[i] = video_digest(stored)
    root.create_array("written", shape=(n_videos,), dtype="bool", fill_value=True)
    root.create_array("digest", shape=(n_videos, 32), dtype="uint8", fill_value=0)[:] = digest
    root.attrs.update({"kind": KIND, "video": {"n_frames": FRAMES, "cadence_min": 96.0, "clip_G": 1000.0}, "units": "G"})
    label = (kinds == "emerging").astype(int)
    cat = pd.DataFrame({c: 0 for c in CATALOG_COLUMNS}, index=range(n_videos))
    cat["video_id"] = np.arange(n_videos)
    cat["month"] = rng.integers(1, 13, n_videos)
    cat["crude_label"] = cat["true_class"] = label
    cat["true_onset_frame"] = cat["crude_onset_frame"] = onsets
    cat["verified"] = False
    cat.to_csv(path / "catalog.csv", index=False)
    return DatasetStore(path)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("store") / "tiny.zarr", 54, seed=1)


@pytest.fixture(scope="module")
def splits(store):
    labels = store.catalog.true_class.to_numpy()
    idx = np.arange(len(store))
    return idx[:36], labels[:36], idx[36:], labels[36:]


@pytest.fixture(scope="module")
def trained(store, splits, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "member_0_7.pt"
    member = train_member(store, *splits, seed=7, config=FAST, progress=False, checkpoint=path)
    return member, path


# ---- model -----------------------------------------------------------------------------------

def test_model_shapes_and_size():
    paper = EmergenceCNN()
    assert 0.7e6 <= count_parameters(paper) <= 0.9e6
    tiny = EmergenceCNN(n_frames=FRAMES).eval()
    with torch.no_grad():
        assert tiny(torch.rand(3, 1, FRAMES, PIXELS, PIXELS)).shape == (3,)
    for t in (2, 17, 32):
        assert EmergenceCNN(n_frames=t).eval()(torch.rand(1, 1, t, PIXELS, PIXELS)).shape == (1,)
    cpu = EmergenceCNN(time_stride=5, batch_norm=True, input_pool=True).eval()  # the small preset's
    kinds = [type(m).__name__ for m in cpu.features]
    assert kinds[:5] == ["AvgPool3d", "Conv3d", "BatchNorm3d", "SiLU", "MaxPool3d"] and kinds.count("BatchNorm3d") == 4
    assert count_parameters(cpu) < count_parameters(paper) / 5  # 4× fewer pixels reach the classifier
    with torch.no_grad():
        assert cpu(torch.rand(2, 1, 225, 90, 90)).shape == (2,)
    with pytest.raises(ValueError, match="too small"):
        EmergenceCNN(pixels=16, input_pool=True)


def test_2d_model_is_the_authors_network():
    paper = EmergenceCNN2D().eval()
    assert count_parameters(paper) == 2_288_737
    assert paper.first.in_channels == 225 and paper.first.padding == (1, 1)  # the frames are the channels
    kinds = [type(m).__name__ for m in paper.body]
    # swish then batch norm after every 3×3 convolution; pairs of convolutions per block, then a 2×2 max-pool
    assert kinds[:3] == ["SiLU", "BatchNorm2d", "Conv2d"] and kinds.count("MaxPool2d") == 4
    assert kinds.count("BatchNorm2d") == 8 and kinds[-2:] == ["Conv2d", "SiLU"]
    convs = [paper.first] + [m for m in paper.body if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128, 256, 256, 512]
    assert [c.padding for c in convs] == [(1, 1)] * 2 + [(0, 0)] * 7 and convs[-1].kernel_size == (2, 2)
    norms = [m for m in paper.body if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(n.momentum == 0.01 and n.eps == 1e-3 for n in norms)  # Keras: 0.99 of the running average
    x = torch.rand(2, 1, 225, PIXELS, PIXELS)
    with torch.no_grad():
        sizes = [paper.first(x[:, 0]).shape[-1]]
        h = paper.first(x[:, 0])
        for m in paper.body:
            h = m(h)
            if isinstance(m, torch.nn.MaxPool2d):
                sizes.append(h.shape[-1])
        assert sizes + [h.shape[-1]] == [90, 45, 20, 8, 2, 1] and h.shape[1] == 512
        assert paper(x).shape == (2,)
    assert [f.out_features for f in paper.classifier if isinstance(f, torch.nn.Linear)] == [512, 512, 1]
    assert [f.p for f in paper.classifier if isinstance(f, torch.nn.Dropout)] == [0.5, 0.5]
    rebuilt = model_from_hparams(paper.hparams)
    assert isinstance(rebuilt, EmergenceCNN2D) and rebuilt.hparams == paper.hparams
    old = {k: v for k, v in EmergenceCNN().hparams.items() if k != "architecture"}  # a checkpoint before the 2-D net
    assert isinstance(model_from_hparams(old), EmergenceCNN)
    with pytest.raises(ValueError, match="too small"):
        EmergenceCNN2D(pixels=20)


def test_2d_member_trains_checkpoints_and_keeps_its_labels(store, splits, tmp_path):
    config = TrainConfig(lr=0.01, max_epochs=2, patience=1, architecture="2d", channels=(4, 8, 8, 8), fc=(16, 16),
                         nesterov=True, monitor="accuracy")
    member = train_member(store, *splits, seed=2, config=config, progress=False, checkpoint=tmp_path / "m.pt")
    assert isinstance(member.model, EmergenceCNN2D)
    best = member.history[member.best_epoch - 1]
    assert best["val_accuracy"] == max(h["val_accuracy"] for h in member.history)  # monitor: plain accuracy
    loaded = load_member(tmp_path / "m.pt")
    assert loaded.config == config and isinstance(loaded.model, EmergenceCNN2D)
    np.testing.assert_array_equal(loaded.train_labels, splits[1])
    np.testing.assert_array_equal(loaded.val_labels, splits[3])
    np.testing.assert_array_equal(predict(loaded, store, splits[2]), predict(member, store, splits[2]))


def test_balanced_accuracy_does_not_reward_calling_everything_emergence():
    class AlwaysEmergence(torch.nn.Module):
        def forward(self, x):
            return torch.full((len(x),), 5.0)
    x, y = torch.zeros(8, 1), torch.tensor([1, 1, 1, 1, 1, 1, 0, 0], dtype=torch.float32)
    _, accuracy, balanced = _run_epoch(AlwaysEmergence(), [(x[:4], y[:4]), (x[4:], y[4:])], "cpu", progress=False)
    assert accuracy == 0.75 and balanced == 0.5


# ---- data ------------------------------------------------------------------------------------

def test_augmentation_flips(store):
    x = scale_for_model(store.video(0)).astype(np.float32)
    np.testing.assert_array_equal(augment(x, 0), x)
    np.testing.assert_array_equal(augment(x, 1), x[:, ::-1, :])  # latitude (rows) reversed
    np.testing.assert_allclose(augment(x, 2), scale_for_model(-store.video(0)), atol=1e-6)  # B -> -B
    np.testing.assert_allclose(augment(x, 3), 1.0 - x[:, ::-1, :], atol=1e-7)
    with pytest.raises(ValueError):
        augment(x, 4)


def test_dataset_is_four_times_the_videos(store, splits):
    idx, labels = splits[0][:5], splits[1][:5]
    plain, aug = VideoDataset(store, idx, labels), VideoDataset(store, idx, labels, augment="x4")
    assert len(plain) == 5 and len(aug) == 5 * N_AUGMENT
    x, y = aug[2 * N_AUGMENT + 3]
    assert x.shape == (1, FRAMES, PIXELS, PIXELS) and x.dtype == torch.float32 and float(y) == labels[2]
    np.testing.assert_allclose(x[0].numpy(), 1.0 - scale_for_model(store.video(idx[2]))[:, ::-1, :], atol=1e-7)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    order = lambda seed: torch.cat([y for _, y in make_loader(VideoDataset(store, idx, np.arange(5) % 2, augment="x4"), 4, True, seed)])  # noqa: E731
    assert torch.equal(order(3), order(3))


def test_cycled_augmentation_visits_every_variant_over_four_epochs(store, splits):
    idx, labels = splits[0][:3], splits[1][:3]
    cyc = VideoDataset(store, idx, labels, augment="cycle")
    assert len(cyc) == 3
    base = scale_for_model(store.video(idx[1]))
    seen = []
    for epoch in range(4):
        cyc.set_epoch(epoch)
        x = cyc[1][0][0].numpy()
        seen.append(next(v for v in range(N_AUGMENT) if np.allclose(x, augment(base, v), atol=1e-7)))
    assert seen == [1, 2, 3, 0]
    with pytest.raises(ValueError, match="augment must be one of"):
        VideoDataset(store, idx, labels, augment="x2")


def test_truncated_items_are_the_masked_video_labelled_by_whether_the_onset_is_reached(store):
    cat = store.catalog
    emerging, quiet = (int(np.flatnonzero(cat.true_class == c)[0]) for c in (1, 0))
    idx = np.array([emerging, quiet, emerging])
    labels = np.array([1, 0, 1])
    ds = VideoDataset(store, idx, labels, truncate=1.0, seed=5)
    ds.onsets[2] = -1  # an emergence whose onset the catalog does not give: never truncated
    onset = int(cat.crude_onset_frame[emerging])
    seen = {0: set(), 1: set()}
    for epoch in range(40):
        ds.set_epoch(epoch)
        for k in range(3):
            x, y = ds[k]
            full = scale_for_model(store.video(idx[k]))
            v = x[0].numpy()
            cut = next((n for n in range(FRAMES) if np.array_equal(v[n:], np.broadcast_to(v[n], v[n:].shape))), FRAMES)
            np.testing.assert_allclose(v[:cut + 1], full[:cut + 1], atol=1e-7)  # frames up to n are the video's
            if k == 2:
                assert float(y) == 1 and np.allclose(v, full, atol=1e-7)
            elif k == 1:
                assert float(y) == 0
            else:
                n = cut if not np.allclose(v, full, atol=1e-7) else FRAMES - 1
                assert float(y) == float(n >= onset)
                seen[int(y)].add(n)
    assert seen[0] and seen[1]  # both sides of the onset were drawn
    ds.set_epoch(3)
    assert torch.equal(ds[0][0], ds[0][0]) and float(ds[0][1]) == float(ds[0][1])  # drawn from (seed, epoch, item)
    plain = VideoDataset(store, idx, labels)
    assert all(np.allclose(plain[k][0][0].numpy(), scale_for_model(store.video(idx[k])), atol=1e-7) for k in range(3))


# ---- training --------------------------------------------------------------------------------

def test_member_learns_the_synthetic_task(store, splits, trained):
    member, _ = trained
    _, _, val_idx, val_labels = splits
    probs = predict(member, store, val_idx)
    assert probs.shape == (len(val_idx),) and probs.dtype == np.float32
    assert ((probs > 0.5) == val_labels).mean() >= 0.85
    best = member.history[member.best_epoch - 1]
    assert best["val_balanced_accuracy"] == max(h["val_balanced_accuracy"] for h in member.history)
    assert best["val_accuracy"] == member.val_accuracy
    assert member.dataset_fingerprint == store.fingerprint()


def test_training_is_deterministic_given_the_seed(store, splits):
    config = TrainConfig(lr=0.01, max_epochs=2, patience=2)
    sub = (splits[0][:12], splits[1][:12], splits[2][:6], splits[3][:6])
    a, b, c = (train_member(store, *sub, seed=s, config=config, progress=False) for s in (3, 3, 4))
    for (name, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert a.history[-1]["train_loss"] == b.history[-1]["train_loss"]
    np.testing.assert_array_equal(predict(a, store, sub[2]), predict(b, store, sub[2]))
    assert not torch.equal(a.model.features[0].weight, c.model.features[0].weight)


def test_checkpoint_round_trip(store, splits, trained):
    member, path = trained
    loaded = load_member(path)
    assert loaded.config == member.config and loaded.seed == 7 and loaded.best_epoch == member.best_epoch
    assert loaded.history == member.history
    np.testing.assert_array_equal(loaded.val_idx, splits[2])
    np.testing.assert_array_equal(predict(loaded, store, splits[2]), predict(member, store, splits[2]))


# ---- onset -----------------------------------------------------------------------------------

def test_masked_videos_repeat_frame_n():
    video = torch.arange(6.0)[:, None, None].expand(6, 2, 2)
    masked = masked_videos(video, torch.tensor([0, 2, 5]))
    assert masked.shape == (3, 1, 6, 2, 2)
    assert masked[:, 0, :, 0, 0].tolist() == [[0] * 6, [0, 1, 2, 2, 2, 2], [0, 1, 2, 3, 4, 5]]
    # the authors' lower_bound: frames before it are replaced by it, masking starts there
    held = masked_videos(video, torch.tensor([2, 4]), hold=2)
    assert held[:, 0, :, 0, 0].tolist() == [[2, 2, 2, 2, 2, 2], [2, 2, 2, 3, 4, 4]]
    with pytest.raises(ValueError, match="first 2 frames are held"):
        masked_videos(video, torch.tensor([1, 4]), hold=2)


def test_held_frames_keep_the_onset_after_them(store, trained):
    member, _ = trained
    i = int(store.catalog.index[store.catalog.true_class == 1][0])
    video = scale_for_model(store.video(i))
    curve = masking_curves(member, video, hold=3)
    assert curve.shape == (FRAMES - 3,)
    held_video = video.copy()
    held_video[:3] = video[3]  # what the authors mask: frames 0..2 replaced by frame 3
    unheld = masking_curves(member, held_video, frames=np.array([3, FRAMES - 1]))
    np.testing.assert_allclose(curve[[0, -1]], unheld, atol=1e-6)
    assert unheld[1] != pytest.approx(predict(member, store, [i])[0], abs=1e-7), "holding changed the video"
    # the live rule: a history that reaches past the held frames is searched from them on
    curves = np.array([[0.1, 0.9, 0.9, 0.9, 0.92, 0.99], [0.1, 0.2, 0.2, 0.3, 0.8, 0.9]])
    assert member_onset_frames(curves).tolist() == [1, 4]
    assert member_onset_frames(curves, hold=2).tolist() == [5, 4]
    assert member_onset_frames(curves[:, :3], hold=2).tolist() == [1, 1]  # not yet past frame 2: all of it


def test_onset_from_masking_lands_near_emergence(store, trained):
    member, _ = trained
    cat = store.catalog
    emerging = cat.index[cat.true_class == 1]
    errors = []
    for i in emerging[:6]:
        curve = masking_curves(member, scale_for_model(store.video(i)), batch_size=8)
        assert curve.shape == (FRAMES,) and curve.dtype == np.float32
        assert curve[-1] == pytest.approx(predict(member, store, [i])[0], abs=1e-5)
        errors.append(onset_frame(curve) - cat.true_onset_frame[i])
    assert np.median(np.abs(errors)) <= 2, errors
    assert onset_frame(np.array([0.1, 0.1, 0.2, 0.9, 0.95])) == 3
    assert ensemble_onset_frame(np.array([[0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 0, 1]])) == 2.0


# ---- export ----------------------------------------------------------------------------------

def test_bundle_matches_torch_and_has_a_full_manifest(store, splits, trained, tmp_path):
    member, _ = trained
    other = EmergenceCNN(n_frames=FRAMES).eval()
    spec = input_spec_for(store)
    out = write_bundle(tmp_path / "bundle", [(member, 0, 7, {"val_accuracy": member.val_accuracy}), (other, 1, 8, {})],
                       threshold=0.6, dataset_fingerprint=store.fingerprint(), metrics={"accuracy": np.float64(0.9)},
                       input_spec=spec)
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest) >= {"schema_version", "model_version", "input", "members", "threshold",
                             "dataset_fingerprint", "metrics", "versions", "created_utc"}
    assert manifest["input"] == {"name": "video", "dtype": "float32", "layout": "NCTHW", "n_frames": FRAMES,
                                 "pixels": PIXELS, "cadence_min": 96.0, "clip_G": 1000.0,
                                 "scaling": "clip ±clip G then (B+clip)/(2·clip)",
                                 "instrument": {"name": "SOHO/MDI", "plate_scale_arcsec": 1.98, "psf_fwhm_arcsec": 4.0,
                                                "noise_G": 20.0}}  # the synthetic store's
    assert [(m["fold"], m["seed"], m["file"]) for m in manifest["members"]] == [(0, 7, "member_0_7.onnx"), (1, 8, "member_1_8.onnx")]
    assert all(len(m["sha256"]) == 64 for m in manifest["members"])
    assert set(manifest["versions"]) >= {"torch", "onnx", "onnxruntime", "fluxwatch"}
    assert manifest["threshold"] == 0.6 and manifest["dataset_fingerprint"] == store.fingerprint()
    parts = ["", "_conv0", "_conv1", "_conv2", "_conv3", "_head"]
    assert sorted(p.name for p in out.iterdir()) == sorted(["manifest.json"] + [f"member_{m}{part}.onnx" for m in ("0_7", "1_8")
                                                                               for part in parts])
    stream = manifest["members"][0]["stream"]
    assert [(b["time_kernel"], b["time_stride"], b["time_padding"]) for b in stream["blocks"]] == \
        [(3, member.model.hparams["time_stride"], 1)] + [(3, 1, 1)] * 3
    assert ModelBundle(out).members[1].fold == "1"  # serving loads it: streaming graphs agree with the full ones
    videos = np.stack([scale_for_model(store.video(i)) for i in splits[2][:3]])
    assert check_bundle(out, videos, [member, other]) <= 1e-4
    assert check_bundle(out, videos[:1], [member, other]) <= 1e-4  # dynamic batch
    with pytest.raises(ValueError):
        write_bundle(tmp_path / "bad", [(EmergenceCNN(n_frames=20), 0, 0, {})], 0.5, "x", {}, spec)
