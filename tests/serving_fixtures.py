"""Fixtures for the service tests: a tiny real model bundle, synthetic frames, a running service."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from astropy.time import Time

from ingest.build_dataset import main as build_main
from ingest.dataset import DatasetStore
from ingest.synthetic import SunConfig, SyntheticSun, slot_of_time, write_fits_series

START = Time("2000-06-01T00:00:00")


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A real two-member ONNX bundle for 16-frame videos, trained briefly on a tiny synthetic store.

    Its threshold is set low (0.05) so that alerts open: the tests exercise the
    alert machinery, not the model's skill.
    """
    from training.export import input_spec_for, write_bundle
    from training.train import TrainConfig, train_member

    root = tmp_path_factory.mktemp("bundle")
    assert build_main(["--preset", "small", "--videos", "20", "6", "--frames", "16", "--out", str(root / "s.zarr")]) == 0
    store = DatasetStore(root / "s.zarr")
    cat = store.catalog
    members = [train_member(store, cat.video_id[:14].to_numpy(), cat.crude_label[:14].to_numpy(),
                            cat.video_id[14:20].to_numpy(), cat.crude_label[14:20].to_numpy(), seed,
                            TrainConfig(lr=0.01, max_epochs=1, patience=1, augment="none"), progress=False)
               for seed in (0, 1)]
    return write_bundle(root / "bundle", [(m, "model6", s, {}) for s, m in zip((0, 1), members)], 0.05,
                        store.fingerprint(), {}, input_spec_for(store))


@pytest.fixture(scope="session")
def frames(tmp_path_factory) -> list[Path]:
    """Twelve consecutive 256² MDI-format frames of the synthetic Sun from START (missing slots skipped)."""
    slot0 = int(slot_of_time(START))
    return write_fits_series(SyntheticSun(SunConfig(), seed=0), range(slot0, slot0 + 12),
                             tmp_path_factory.mktemp("frames"), shape=(256, 256))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """A real uvicorn server for an app, on a free loopback port, in a thread."""

    def __init__(self, app):
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)
