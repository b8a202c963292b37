"""Rebuilds the serving tests' bundle, ``tests/data/tiny_bundle`` (needs torch): ``python -m tests.make_tiny_bundle``.

A real two-member ONNX bundle for 16-frame videos (the 3-D network, narrowed: 4–8 channels), trained briefly (one
epoch) on a tiny synthetic store. Its
threshold is set low (0.05) so that alerts open: the tests exercise the alert machinery, not the model's skill.
It is checked in so that the serving tests run without torch and without training anything.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from ingest.dataset import DatasetStore
from sim.build_dataset import main as build_main

OUT = Path(__file__).parent / "data" / "tiny_bundle"


def build(out: Path = OUT) -> Path:
    from training.export import input_spec_for, write_bundle
    from training.train import TrainConfig, train_member

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        assert build_main(["--preset", "small", "--videos", "20", "6", "--tiles", "4", "2", "--frames", "16", "--settings",
                           "2", "--out", str(root / "s.zarr")]) == 0
        store = DatasetStore(root / "s.zarr")
        cat = store.catalog
        members = [train_member(store, cat.video_id[:14].to_numpy(), cat.crude_label[:14].to_numpy(),
                                cat.video_id[14:20].to_numpy(), cat.crude_label[14:20].to_numpy(), seed,
                                TrainConfig(lr=0.01, max_epochs=1, patience=1, augment="none", channels=(4, 8, 8, 8), fc=(16, 8)), progress=False)
                   for seed in (0, 1)]
        built = write_bundle(root / "bundle", [(m, "model6", s, {}) for s, m in zip((0, 1), members)], 0.05,
                             store.fingerprint(), {}, input_spec_for(store))
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(built, out)
    return out


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))
