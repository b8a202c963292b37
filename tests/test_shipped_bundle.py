"""The shipped bundles: the default (``models/default``) is the new-flux detector; the CNN ensemble (``models/cnn``)
loads, its files are those of its manifest, it scores; ``make train`` reproduces its numbers (slow)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from common.config import CNN_BUNDLE, DEFAULT_BUNDLE, ServiceConfig
from serving.bundle import ModelBundle

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / CNN_BUNDLE


def _entries(manifest: dict) -> list[dict]:
    """Every file entry of a manifest (a member's full graph and its streaming graphs)."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node and "sha256" in node:
                found.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(manifest["members"])
    return found


def test_the_service_uses_the_new_flux_detector_by_default_and_the_cnn_bundle_is_small():
    assert ServiceConfig().bundle == DEFAULT_BUNDLE
    default = ModelBundle(ROOT / DEFAULT_BUNDLE)
    assert default.manifest["detector"]["kind"] == "newflux" and not default.manifest.get("members")
    point = default.manifest["operating_point"]
    assert point["threshold"] == default.alert_threshold and set(point["validation"]["streams"]) == {"validation", "validation-minimum"}
    size = sum(f.stat().st_size for f in SHIPPED.iterdir())
    assert size < 5 * 2**20, f"{size / 2**20:.1f} MiB"


def test_shipped_files_match_their_digests_and_the_training_report():
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    entries = _entries(manifest)
    assert len(entries) == 3 * len(manifest["members"])  # full graph, encoder and head per causal member
    for e in entries:
        assert hashlib.sha256((SHIPPED / e["file"]).read_bytes()).hexdigest() == e["sha256"], e["file"]
    listed = {e["file"] for e in entries} | {"manifest.json", "training.json"}
    assert {f.name for f in SHIPPED.iterdir()} == listed  # nothing unlisted is shipped
    report = json.loads((SHIPPED / "training.json").read_text())
    assert report["dataset_fingerprint"] == manifest["dataset_fingerprint"]
    assert len(report["code_commit"]) == 40 and report["commands"]
    assert 0 < report["event_level"]["detected_1d"] <= 1


def test_shipped_bundle_scores_an_emerging_patch_above_a_quiet_one():
    bundle = ModelBundle(SHIPPED)  # loading checks the streaming graphs against the full ones
    assert bundle.manifest["operating_point"]["threshold"] == bundle.alert_threshold
    rng = np.random.default_rng(0)
    n, p = bundle.n_frames, bundle.pixels
    quiet = rng.normal(0, 20, (n, p, p)).astype(np.float32)
    emerging = quiet.copy()
    yy, xx = np.mgrid[:p, :p]
    for k in range(n - 30, n):  # a bipole growing over the last 30 frames (two days) to ±600 G
        amp = 20.0 * (k - n + 31)
        emerging[k] += amp * (np.exp(-((xx - 38) ** 2 + (yy - 45) ** 2) / 30) - np.exp(-((xx - 52) ** 2 + (yy - 45) ** 2) / 30))
    probs = bundle.probabilities(np.stack([quiet, emerging]))
    assert probs.shape == (len(bundle.members), 2)
    assert np.all((0 <= probs) & (probs <= 1))
    assert np.median(probs[:, 1]) > np.median(probs[:, 0])


@pytest.mark.slow
def test_make_train_reproduces_the_shipped_numbers(tmp_path):
    from training.default import TOLERANCE, train, validation

    bundle = train(tmp_path / "data", tmp_path / "run")
    new, shipped = validation(bundle), validation(SHIPPED)
    for key, tol in TOLERANCE.items():
        assert abs(new[key] - shipped[key]) <= tol, (key, new[key], shipped[key])
