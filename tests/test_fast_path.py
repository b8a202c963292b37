"""The research loop's fast path (evaluation.replay.rescore): scoring the stored videos of a replay with a bundle
gives the service's own scores and alerts, for the CNN bundle and for a bundle that names the new-flux detector (the
default's kind)."""
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from common.config import CNN_BUNDLE
from common.newflux import NewFluxDetector
from evaluation.bundles import write_detector_bundle
from evaluation.cli import replay_stream
from evaluation.operating import Stream
from evaluation.replay import detector_series, opened, passages, policy_alerts, rescore, stored_emergence
from serving.bundle import BundleError, ModelBundle
from serving.service import Service


def same_scores(service: Service, bundle: ModelBundle) -> list:
    history = passages(service)
    again = rescore(service, history, bundle)
    assert [(p.patch_id, p.start_slot, [s.frame for s in p.scores]) for p in again] == \
        [(p.patch_id, p.start_slot, [s.frame for s in p.scores]) for p in history]
    stored = np.array([s.probability.members for p in history for s in p.scores])
    redone = np.array([s.probability.members for p in again for s in p.scores])
    assert stored.size > 100
    np.testing.assert_allclose(redone, stored, atol=2e-6)
    assert [s.onset.frame for p in again for s in p.scores] == [s.onset.frame for p in history for s in p.scores]
    return again


@pytest.mark.system
def test_rescoring_the_stored_videos_with_the_cnn_bundle_gives_the_services_scores_and_alerts(tmp_path):
    stream = Stream(7, "2002-03-01T00:00:00", 1.0)
    service = replay_stream(Path(CNN_BUNDLE), stream, tmp_path, 256)
    again = same_scores(service, ModelBundle(CNN_BUNDLE))
    low = replace(service.step.policy, threshold=0.2, present_at_start=False)  # some alerts open in a day
    alerts, _ = policy_alerts(again, low)
    assert alerts and alerts == policy_alerts(passages(service), low)[0]


@pytest.mark.system
def test_a_new_flux_bundle_runs_in_the_service_and_its_fast_path_gives_the_same_scores(tmp_path):
    """The service with a bundle that names the new-flux detector: its scores are F / (F + 1e21) of the detector's
    bipolar new flux F, the same flux the evaluation computes from the stored videos (μ from the Earth's ephemeris
    there, SoHO's here: a few per cent at most), and the fast path reproduces them."""
    level = 4e20
    bundle = write_detector_bundle(tmp_path / "bundle", NewFluxDetector(level_Mx=level))
    stream = Stream(7, "2002-03-01T00:00:00", 2.5)
    service = replay_stream(bundle, stream, tmp_path / "replay", 256, present_at_start=False)
    loaded = ModelBundle(bundle)
    assert loaded.detector == NewFluxDetector(level_Mx=NewFluxDetector().level_Mx) and loaded.members == []
    assert loaded.alert_threshold == pytest.approx(level / (level + 1e21))
    again = same_scores(service, loaded)
    by_id = lambda alerts: sorted(alerts, key=lambda a: a.alert_id)  # noqa: E731
    served = by_id(opened(service.store.reader().alerts()))
    assert served, "at 4e20 Mx the detector opens alerts in 2.5 days near maximum"
    assert by_id(policy_alerts(again, service.step.policy, stored_emergence(service))[0]) == served
    history = passages(service)
    series = {(s.patch_id, s.start_slot): s.values for s in detector_series(service, history, {"n": NewFluxDetector()})["n"]}
    judged = 0
    for p in history:
        for s in p.scores:
            flux = series[(p.patch_id, p.start_slot)][s.frame]
            p_ = s.probability.median
            if np.isfinite(flux) and flux > 2e20:
                judged += 1
                assert 1e21 * p_ / (1 - p_) == pytest.approx(flux, rel=0.05)
    assert judged > 10


def test_a_bundle_names_networks_or_a_detector_and_its_settings_are_checked(tmp_path):
    bundle = write_detector_bundle(tmp_path / "b", NewFluxDetector(level_Mx=5e20, box_px=24))
    assert ModelBundle(bundle).detector == NewFluxDetector(box_px=24)  # the level is the bundle's threshold
    manifest = json.loads((bundle / "manifest.json").read_text())
    for broken, problem in [({**manifest, "members": [{"file": "m.onnx"}]}, "either members .* or a detector"),
                            ({k: v for k, v in manifest.items() if k != "detector"}, "either members .* or a detector"),
                            ({**manifest, "detector": {**manifest["detector"], "settings": {"box_deg": 5}}},
                             "detector settings .*box_deg")]:
        (bundle / "manifest.json").write_text(json.dumps(broken))
        with pytest.raises(BundleError, match=problem):
            ModelBundle(bundle)
