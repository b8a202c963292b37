"""train-ensemble end to end on a tiny store: bundle loads in ONNX Runtime, the report has every field."""
import json

import numpy as np
import onnxruntime as ort
import pytest

from common.video import scale_for_model
from ingest.dataset import DatasetStore
from sim.build_dataset import main as build_main
from training.cli import main

FAST = ["--preset", "small", "--max-epochs", "1", "--max-passes", "2", "--seeds", "0"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ens")
    store = root / "tiny.zarr"
    assert build_main(["--preset", "small", "--videos", "60", "12", "--tiles", "10", "4", "--frames", "16", "--settings", "2",
                       "--out", str(store)]) == 0
    out = root / "run"
    assert main(["--store", str(store), "--out", str(out)] + FAST) == 0
    return store, out


@pytest.mark.system
def test_report_has_every_number(run):
    _, out = run
    report = json.loads((out / "report.json").read_text())
    relabel = report["relabel"]
    assert relabel["passes"] and {"fp", "fn", "model_mistakes", "relabelled", "ratio", "reviewed_total"} <= set(relabel["passes"][0])
    assert 0 <= relabel["reviewed_fraction"] <= 1
    # the relabel loop's looks only: the test set's reviews (report["test"]["reviewed"]) are counted apart
    assert relabel["reviewer_looks"] == relabel["passes"][-1]["reviewed_total"] == sum(p["looks"] for p in relabel["passes"])
    assert report["test"]["reviewed"] > 0
    for key in ("crude_accuracy_vs_truth", "final_label_accuracy_vs_truth"):
        assert 0 <= relabel[key] <= 1
    assert len(report["ensemble"]["members"]) == 4
    assert 0 < report["threshold"]["value"] < 1
    for target in ("accuracy_vs_truth", "accuracy_vs_labels"):
        assert {"median", "p25", "p75", "stable", "unstable"} <= set(report["test"][target])
        assert 0 <= report["test"][target]["median"] <= 1
    by_kind = report["test"]["median_accuracy_vs_truth_by_kind"]
    assert set(by_kind) == {"region", "tile"} and all(0 <= a <= 1 for a in by_kind.values())
    assert set(report["onset"]["error_days_percentiles"]) == {"p5", "p25", "p50", "p75", "p95"}
    assert report["bundle"]["onnx_vs_torch_max_abs"] <= 1e-4
    for fig in report["figures"]:
        assert (out / "figures").exists() and open(fig, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert report["wall_time_s"] > 0


@pytest.mark.system
def test_bundle_loads_and_scores_in_onnx_runtime(run):
    store_path, out = run
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    assert manifest["input"]["n_frames"] == 16 and manifest["input"]["pixels"] == 90
    assert manifest["dataset_fingerprint"] == DatasetStore(store_path).fingerprint()
    assert len(manifest["members"]) == 4 and 0 < manifest["threshold"] < 1
    store = DatasetStore(store_path)
    x = np.stack([scale_for_model(store.video(i)) for i in range(3)])[:, None]
    for member in manifest["members"]:
        session = ort.InferenceSession(str(out / "bundle" / member["file"]), providers=["CPUExecutionProvider"])
        p = session.run(None, {"video": x})[0]
        assert p.shape == (3,) and ((p >= 0) & (p <= 1)).all()


@pytest.mark.system
def test_rerun_resumes_without_retraining(run):
    store, out = run
    checkpoints = sorted(out.rglob("*.pt"))
    before = {p: p.stat().st_mtime_ns for p in checkpoints}
    assert main(["--store", str(store), "--out", str(out)] + FAST) == 0
    assert {p: p.stat().st_mtime_ns for p in checkpoints} == before


def test_missing_store_is_a_clear_error(tmp_path, capsys):
    assert main(["--store", str(tmp_path / "nope.zarr"), "--out", str(tmp_path / "run")]) == 2
    assert "no dataset store here" in capsys.readouterr().err


@pytest.mark.system
def test_resuming_with_another_reviewer_is_a_clear_error(run, capsys):
    store, out = run
    assert main(["--store", str(store), "--out", str(out), "--reviewer", "simulated"] + FAST) == 2
    err = capsys.readouterr().err
    assert "pass_1.json" in err and "reviewed by 'oracle'" in err and "new run folder" in err
