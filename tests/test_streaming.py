"""Incremental streaming scores equal the full members' masked scores (3-D members cut into time windows, the authors'
frames-as-channels 2-D members summed frame by frame); bundles whose streaming graphs disagree are refused."""
import json
import shutil

import astropy.units as u
import numpy as np
import pytest
import torch

from common.config import ServiceConfig
from common.patches import PatchGrid
from serving.bundle import BundleError, ModelBundle
from serving.compose import open_service
from serving.streaming import FrameSumMember, max_pool
from training.export import make_input_spec, write_bundle
from training.model import EmergenceCNN, EmergenceCNN2D

GRID = PatchGrid()


def masked(video: np.ndarray, k: int) -> np.ndarray:
    """The paper's masked video at n = k: frames 0..k, then frame k repeated."""
    return np.concatenate([video[: k + 1], np.repeat(video[k : k + 1], len(video) - k - 1, axis=0)])


def emerging_video(n_frames: int, pixels: int, seed: int) -> np.ndarray:
    """Noise (G) with a bipole growing from the middle frame on, so the masked scores move with k."""
    rng = np.random.default_rng(seed)
    video = rng.normal(0.0, 50.0, (n_frames, pixels, pixels)).astype(np.float32)
    y, x = np.mgrid[:pixels, :pixels] / pixels
    bipole = 800 * (np.exp(-((x - 0.4) ** 2 + (y - 0.5) ** 2) / 0.01) - np.exp(-((x - 0.6) ** 2 + (y - 0.5) ** 2) / 0.01))
    growth = np.clip((np.arange(n_frames) - n_frames // 2) / (n_frames / 4), 0, 1)
    return video + (growth[:, None, None] * bipole).astype(np.float32)


@pytest.fixture(scope="module", params=[{"time_stride": 3}, {"time_stride": 5, "batch_norm": True, "input_pool": True},
                                        {"architecture": "2d"}], ids=["3d", "small", "paper-2d"])
def full_size_bundle(request, tmp_path_factory):
    """One untrained member of the full 225×90² shape: the 3-D architecture, the small preset's (batch norm with
    random statistics, so that it is not the identity, and the input pool), or the authors' 2-D network."""
    torch.manual_seed(3)
    if request.param.get("architecture") == "2d":
        model: torch.nn.Module = EmergenceCNN2D(n_frames=225, pixels=90).eval()
        model.first.weight.data *= 30  # Glorot weights over 225 frames barely move the later layers
    else:
        model = EmergenceCNN(n_frames=225, pixels=90, **request.param).eval()
    for layer in model.modules():
        if isinstance(layer, (torch.nn.BatchNorm3d, torch.nn.BatchNorm2d)):
            layer.running_mean.uniform_(-0.1, 0.1)
            layer.running_var.uniform_(0.5, 2.0)
            layer.weight.data.uniform_(0.5, 1.5)
            layer.bias.data.uniform_(-0.2, 0.2)
    model.classifier[-1].weight.data *= 30  # an untrained head barely moves: make the scores sensitive
    return write_bundle(tmp_path_factory.mktemp("full_size"), [(model, "model6", 0, {})], 0.5, "untrained", {},
                        make_input_spec(225, 90))


def stream_all(streams, video, frames_scored, key="p"):
    """Stream ``video`` scoring the given frames in order; returns (n_members, len(frames_scored))."""
    out, last = [], -1
    for k in frames_scored:
        out.append(streams.score([(key, k, video[last + 1 : k + 1])])[:, 0])
        last = k
    return np.array(out).T


@pytest.mark.system
def test_streaming_equals_the_full_model_at_every_frame_of_a_225_frame_video(full_size_bundle):
    bundle = ModelBundle(full_size_bundle)
    video = emerging_video(225, 90, seed=0)
    ks = np.arange(225)
    full = bundle.probabilities(np.stack([masked(video, k) for k in ks]))
    streamed = stream_all(bundle.streaming(GRID), video, ks)
    assert full.std() > 0.01, "the masked scores must move with k for this check to mean anything"
    assert np.abs(streamed - full).max() <= 1e-5


def tiny_2d(seed: int) -> EmergenceCNN2D:
    """An untrained, narrow 2-D member for 16-frame videos whose scores move with the frames."""
    torch.manual_seed(seed)
    model = EmergenceCNN2D(n_frames=16, pixels=90, channels=(4, 8, 8, 8), conv_out=16, fc=(16, 16)).eval()
    model.first.weight.data *= 30
    model.classifier[-1].weight.data *= 30
    return model


@pytest.fixture(scope="module")
def paper_bundle(tmp_path_factory):
    """Two 2-D members for 16-frame videos, threshold 0.05, onset held for 4 frames."""
    return write_bundle(tmp_path_factory.mktemp("paper"), [(tiny_2d(s), "model1", s, {}) for s in (0, 1)], 0.05,
                        "untrained", {}, make_input_spec(16, 90), onset_hold=4)


@pytest.fixture(scope="module")
def mixed_bundle(tmp_path_factory):
    """A 3-D member between two 2-D ones: a time-windowed member that is neither first nor last."""
    torch.manual_seed(5)
    members = [(tiny_2d(0), "model1", 0, {}), (EmergenceCNN(n_frames=16).eval(), "model6", 0, {}),
               (tiny_2d(1), "model2", 1, {})]
    return write_bundle(tmp_path_factory.mktemp("mixed"), members, 0.5, "untrained", {}, make_input_spec(16, 90))


def test_a_2d_member_streams_as_a_running_sum_of_its_first_convolution(paper_bundle):
    bundle = ModelBundle(paper_bundle)
    manifest = json.loads((paper_bundle / "manifest.json").read_text())
    entry = manifest["members"][0]
    assert entry["architecture"]["architecture"] == "2d" and entry["stream"]["kind"] == "frame-sum"
    assert entry["stream"]["first"]["padding"] == [1, 1] and manifest["onset"] == {"hold_frames": 4}
    assert bundle.onset_hold == 4
    member = bundle.members[0].stream
    assert isinstance(member, FrameSumMember) and member.kernels.shape == (16, 4, 9)
    np.testing.assert_allclose(member.tails[0], member.kernels[1:].sum(axis=0))  # R_0: every later frame's kernels
    assert not member.tails[-1].any()  # nothing after the last frame


@pytest.mark.parametrize("which", ["tiny_bundle", "mixed_bundle", "paper_bundle"])
def test_streaming_with_jumps_rebuilds_and_many_streams(which, request):
    bundle = ModelBundle(request.getfixturevalue(which))
    T, P = bundle.n_frames, bundle.pixels
    videos = [emerging_video(T, P, seed) for seed in range(3)]
    full = [bundle.probabilities(np.stack([masked(v, k) for k in range(T)])) for v in videos]
    streams = bundle.streaming(GRID)
    # frames skipped (several new frames at once), then a rebuild half-way, on three streams side by side
    plan = [0, 1, 4, 5, 9, 10, 15]
    got = {s: [] for s in range(3)}
    last = -1
    for k in plan:
        if k == 9:
            streams.forget(1)  # stream 1 restarts from its stored video
        items = []
        for s in range(3):
            start = 0 if streams.frontier(s) is None else last + 1
            items.append((s, k, videos[s][start : k + 1]))
        for s, p in enumerate(streams.score(items).T):
            got[s].append(p)
        last = k
    for s in range(3):
        assert np.abs(np.array(got[s]).T - full[s][:, plan]).max() <= 1e-5
    assert streams.frontier(0) == 15 and streams.frontier(99) is None
    assert max(np.ptp(f) for f in full) > 1e-3, "the masked scores must move with k far beyond the 1e-5 compared"
    video_steps = streams._streams[0][0]
    assert len(video_steps.final) <= 3, "frames no window reads any more are dropped (none kept for 2-D members)"


def test_a_2d_bundle_scores_in_the_service(tmp_path, paper_bundle, frames):
    """The service path (ingest, frame step, store) with a frames-as-channels bundle: every stored score is the
    full member on the masked stored video."""
    service = open_service(ServiceConfig(data_dir=str(tmp_path / "svc"), bundle=str(paper_bundle), lat_limit=45 * u.deg,
                                    present_at_start=False, source="watch"))
    for f in frames[:6]:
        shutil.copy(f, service.dir / "incoming" / f.name)
    service.run_cycle()
    bundle = service.bundle
    checked = 0
    state = service.store.snapshot(service.store.newest_frame()[0] + 1)
    for key, passage in [(key, p) for key, p in state.open.items() if p.frames.size][:5]:
        k = int(passage.frames[-1])
        video = state.frames(key, 0, k + 1)
        full = bundle.probabilities(masked(np.concatenate([video, np.zeros((16 - k - 1, 90, 90), np.float32)]), k)[None])
        assert np.abs(passage.curves[:, -1] - full[:, 0]).max() <= 1e-5
        checked += 1
    assert checked == 5


def test_stream_refuses_frames_that_do_not_reach_the_scored_frame(tiny_bundle):
    streams = ModelBundle(tiny_bundle).streaming(GRID)
    video = emerging_video(16, 90, 0)
    streams.score([("p", 3, video[:4])])
    with pytest.raises(ValueError, match="do not reach frame 6"):
        streams.score([("p", 6, video[4:6])])
    with pytest.raises(ValueError, match="outside the video"):
        streams.score([("q", 16, video)])
    with pytest.raises(ValueError, match="do not reach frame 6 from the start"):
        streams.score([("p", 4, video[4:5]), ("q", 6, video[:3])])
    assert streams.frontier("p") == 3 and streams.frontier("q") is None, "a refused batch changes no stream"


def test_max_pool_stage_drops_the_remainder():
    stage = max_pool(2)
    assert stage.length(5) == 2 and stage.start(1) == 2
    windows = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2, 1, 1)
    assert np.array_equal(stage.run(windows), windows[:, :, 1])


def test_bundle_whose_streaming_graphs_disagree_is_refused(tmp_path, tiny_bundle):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    first, second = manifest["members"]
    first["stream"]["head"] = second["stream"]["head"]  # a valid graph of the other member: checksums still match
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="streaming graphs differ from the full members"):
        ModelBundle(bundle)


def test_2d_bundle_whose_first_convolution_disagrees_is_refused(tmp_path, paper_bundle):
    bundle = tmp_path / "bundle"
    shutil.copytree(paper_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    first, second = manifest["members"]
    second["stream"]["first"] = first["stream"]["first"]  # the other member's weights: checksums still match
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="streaming graphs differ from the full members"):
        ModelBundle(bundle)


def test_bundle_of_an_older_schema_is_refused(tmp_path, tiny_bundle):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["schema_version"] = 1
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="schema version 1 is not 2"):
        ModelBundle(bundle)
