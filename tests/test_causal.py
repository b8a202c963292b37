"""The causal detector (issue 19): frame n's output depends on frames ≤ n only, one pass gives every frame's score,
the service's stream reproduces it at every frame, and its dense targets label each frame of a video."""
import numpy as np
import pytest
import torch

from common.patches import PatchGrid
from serving.bundle import ModelBundle
from serving.streaming import CausalMember
from training.data import NEW_FRAMES, ONSET_WEIGHT, ONSET_WEIGHT_FRAMES, dense_targets
from training.export import make_input_spec, write_bundle
from training.model import EmergenceCausal
from training.onset import masking_curves
from training.train import TrainConfig

GRID = PatchGrid()


def emerging_video(n_frames: int, pixels: int, seed: int, onset: int) -> np.ndarray:
    """Noise (G) with a bipole growing from ``onset`` on."""
    rng = np.random.default_rng(seed)
    video = rng.normal(0.0, 50.0, (n_frames, pixels, pixels)).astype(np.float32)
    y, x = np.mgrid[:pixels, :pixels] / pixels
    bipole = 800 * (np.exp(-((x - 0.4) ** 2 + (y - 0.5) ** 2) / 0.01) - np.exp(-((x - 0.6) ** 2 + (y - 0.5) ** 2) / 0.01))
    growth = np.clip((np.arange(n_frames) - onset) / 20, 0, 1)
    return video + (growth[:, None, None] * bipole).astype(np.float32)


def untrained(seed: int = 0, **shape) -> EmergenceCausal:
    """An untrained causal model whose batch norms are not the identity and whose scores move."""
    torch.manual_seed(seed)
    model = EmergenceCausal(**shape).eval()
    for layer in model.modules():
        if isinstance(layer, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            layer.running_mean.uniform_(-0.1, 0.1)
            layer.running_var.uniform_(0.5, 2.0)
    return model


def test_output_at_frame_n_ignores_later_frames():
    model = untrained()
    video = torch.rand(1, 1, 60, 90, 90)
    changed = video.clone()
    changed[:, :, 31:] = torch.rand(1, 1, 29, 90, 90)
    with torch.no_grad():
        a, b = model.frame_logits(video)[0], model.frame_logits(changed)[0]
    assert torch.equal(a[:31], b[:31])  # frames ≤ 30 see nothing of the change
    assert (a[31:] - b[31:]).abs().max() > 1e-3  # and the later frames do
    assert torch.allclose(model(video), a.max())  # the video-level logit is the largest frame's


def test_masking_curve_of_a_causal_model_is_its_frame_probability():
    model = untrained()
    video = np.random.default_rng(1).random((40, 90, 90), dtype=np.float32)
    with torch.no_grad():
        frames = torch.sigmoid(model.frame_logits(torch.from_numpy(video)[None, None]))[0].numpy()
    assert np.allclose(masking_curves(model, video, frames=np.arange(5, 40, 5)), frames[5::5], atol=1e-6)


@pytest.fixture(scope="module")
def causal_bundle(tmp_path_factory):
    return write_bundle(tmp_path_factory.mktemp("causal"), [(untrained(3), "model6", 0, {}), (untrained(4), "model7", 0, {})],
                        0.5, "untrained", {}, make_input_spec(225, 90))


def test_streaming_equals_the_full_model_at_every_frame(causal_bundle):
    bundle = ModelBundle(causal_bundle)  # its load check compares one frame already
    assert all(isinstance(m.stream, CausalMember) for m in bundle.members)
    video = emerging_video(225, 90, seed=5, onset=100)
    x = (np.clip(video, -1000, 1000) + 1000) / 2000
    full = np.stack([m.session.run(["frame_probability"], {"video": x[None, None].astype(np.float32)})[0][0]
                     for m in bundle.members])
    streams, streamed, last = bundle.streaming(GRID), [], -1
    for k in (*range(0, 70), 80, 81, 150, 224):  # one frame at a time, then several at once
        streamed.append(streams.score([("p", k, video[last + 1 : k + 1])])[:, 0])
        last = k
    ks = [*range(0, 70), 80, 81, 150, 224]
    assert np.abs(np.stack(streamed, axis=1) - full[:, ks]).max() < 1e-4
    assert np.ptp(full) > 0.05  # the scores move: the comparison is not between constants
    rebuilt = bundle.streaming(GRID).score([("q", 150, video[:151])])[:, 0]  # a stream rebuilt from the stored video
    assert np.abs(rebuilt - full[:, 150]).max() < 1e-4


def test_dense_targets_of_an_emergence_a_rotating_in_region_and_an_ephemeral_region():
    emergence = dense_targets(1, 40, 225)
    assert (emergence[0, :40] == 0).all() and (emergence[0, 40:] == 1).all()
    assert (emergence[1, :40] == 1).all()  # not yet: counted
    assert (emergence[1, 40 : 40 + ONSET_WEIGHT_FRAMES] == ONSET_WEIGHT).all()  # the first day: weighted up
    assert (emergence[1, 40 + ONSET_WEIGHT_FRAMES : 40 + NEW_FRAMES] == 1).all()
    assert (emergence[1, 40 + NEW_FRAMES :] == 0).all()  # no longer new: not a target any more
    # a region that rotated in over the east limb: crude label 0 (first seen east of -60°), 0 at every frame
    rotating_in = dense_targets(0, 0, 225)
    assert (rotating_in[0] == 0).all() and (rotating_in[1] == 1).all()
    # an ephemeral region is not in the catalog: label 0, no onset
    ephemeral = dense_targets(0, -1, 225)
    assert (ephemeral[0] == 0).all() and (ephemeral[1] == 1).all()
    # a reviewer's emergence without a catalog onset: an emergence at some frame, no frame known
    added = dense_targets(1, -1, 225)
    assert added[0].max() == 1 and added[1].sum() == 0


def test_a_causal_member_is_trained_on_every_frame():
    with pytest.raises(ValueError, match="truncate"):
        TrainConfig(architecture="causal", truncate=0.5)
    assert TrainConfig(architecture="causal").dense and not TrainConfig().dense
    assert isinstance(TrainConfig(architecture="causal").build_model(225, 90), EmergenceCausal)


def test_a_batch_without_weight_trains_on_nothing_and_a_diverged_loss_stops_training():
    from training.train import _run_epoch

    model = EmergenceCausal(n_frames=12)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    unknown = torch.from_numpy(dense_targets(1, -1, 12))[None]  # an emergence whose onset nobody knows: no weight
    before = [p.detach().clone() for p in model.parameters()]
    loss, _, _ = _run_epoch(model, [(torch.rand(1, 1, 12, 90, 90), unknown)], "cpu", optimizer, progress=False)
    assert loss == 0.0 and all(torch.isfinite(p).all() for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    broken = torch.full((2, 1, 12, 90, 90), float("nan"))
    with pytest.raises(FloatingPointError, match="diverged"):
        _run_epoch(model, [(broken, torch.from_numpy(np.stack([dense_targets(0, -1, 12)] * 2)))], "cpu", optimizer, progress=False)
