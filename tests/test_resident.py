"""GPU-ready training on the CPU: videos held on the device give the loader's batches (same items, order,
augmentation and masking), a member trains from them and under bfloat16 autocast, and a causal member learns the
tiny task from dense targets."""
import numpy as np
import pytest
import torch

from tests.test_training_core import FAST, write_store
from training.data import ResidentLoader, VideoDataset, make_loader
from training.model import EmergenceCausal
from training.train import TrainConfig, predict, train_member


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("store") / "tiny.zarr", 30, seed=2)


@pytest.mark.parametrize("options", [{"augment": "x4"}, {"augment": "cycle", "truncate": 0.5}, {"augment": "cycle", "dense": True}],
                         ids=["x4", "cycle-masked", "dense"])
def test_resident_batches_are_the_loaders(store, options):
    labels = store.catalog.true_class.to_numpy()
    dataset = VideoDataset(store, np.arange(20), labels[:20], seed=3, **options)
    loader, resident = make_loader(dataset, 6, True, seed=5), ResidentLoader(dataset, 6, True, seed=5, device="cpu")
    assert len(loader) == len(resident)
    for epoch in (1, 2):  # the order and the draws move on with the epoch in both
        dataset.set_epoch(epoch)
        for (x, y), (xr, yr) in zip(loader, resident, strict=True):
            assert x.shape == xr.shape and torch.equal(y, yr)
            assert (x - xr).abs().max() < 1e-3  # float16 on the device
    if options.get("truncate"):
        some = next(iter(resident))[0][:, 0]
        assert any(torch.equal(v[-1], v[-2]) for v in some), "masked items repeat their frame to the end"


@pytest.mark.system
def test_a_member_trains_from_resident_videos_under_bf16_and_learns(store):
    labels = store.catalog.true_class.to_numpy()
    idx = np.arange(len(store))
    config = TrainConfig(**{**FAST.__dict__, "resident": True, "precision": "bf16", "max_epochs": 6})
    member = train_member(store, idx[:22], labels[:22], idx[22:], labels[22:], seed=1, config=config, progress=False)
    assert member.history[-1]["train_loss"] < member.history[0]["train_loss"]
    assert ((predict(member, store, idx[22:]) > 0.5) == labels[22:]).mean() >= 0.75


def test_a_causal_member_learns_from_dense_targets(store):
    labels = store.catalog.true_class.to_numpy()
    idx = np.arange(len(store))
    config = TrainConfig(architecture="causal", optimizer="adam", lr=1e-2, max_epochs=15, patience=15, augment="cycle", batch_size=6)
    member = train_member(store, idx[:22], labels[:22], idx[22:], labels[22:], seed=0, config=config, progress=False)
    assert isinstance(member.model, EmergenceCausal)
    assert ((predict(member, store, idx[22:]) > 0.5) == labels[22:]).mean() >= 0.75
