"""The event-level matcher on a hand-built stream, and the classical flux-rise baseline on synthetic tiles."""
import json
import shutil

import numpy as np
import pytest

from bench.alerts import DETECTORS, pooled
from common.clock import SLOTS_PER_DAY
from common.config import PatchGridConfig, ServiceConfig
from common.manifest import ManifestError
from common.patches import PatchGrid, carrington_pixel_area_cm2
from contract.events import EventKind
from evaluation.baseline import FluxRiseDetector
from evaluation.calibration import forecasts
from evaluation.cli import KS, ORACLE_LEVELS_MX, evaluate, last_line, replay_stream, report_stream
from evaluation.matching import Emergence, OpenedAlert, match
from evaluation.operating import Stream, choose, pooled_curve, record
from evaluation.replay import Passage, opened, passages, policy_alerts, stored_emergence
from serving.bundle import BundleError, ModelBundle
from serving.compose import open_service
from tests.test_alerts import score

GRID = PatchGrid(PatchGridConfig())


def tile(i: int) -> tuple[str, float, float]:
    return GRID.ids[i], float(GRID.lon[i]), float(GRID.lat[i])


def test_matcher_counts_hits_misses_false_alerts_and_one_region_over_two_tiles():
    (a, alon, alat), (b1, blon, blat), (b2, _, _) = tile(100), tile(110), tile(111)  # 110 and 111 are neighbours
    (c, clon, clat), (d, dlon, dlat), (q, _, _), (f, flon, flat) = tile(130), tile(140), tile(150), tile(160)
    edge = blon + GRID.config.patch_size.to_value("deg") / 2  # on the border of tiles 110 and 111
    emergences = [
        Emergence("A", 100.0, alon, alat, 5e21, 10.0),
        Emergence("B", 200.0, edge, blat, 4e21, -20.0, half_extent_deg=2.0),
        Emergence("C", 300.0, clon, clat, 6e21, 0.0),  # never alerted: a miss
        Emergence("D", 400.0, dlon, dlat, 2e21, 5.0),  # 1-3e21: reported apart, explains its alert
        Emergence("F", 500.0, flon, flat, 9e21, 75.0),  # beyond 60 deg: not counted, but it explains its alert
    ]
    alerts = [
        OpenedAlert("a/1", a, 100.4, 100.1),
        OpenedAlert("b/1", b1, 201.5, 199.5),
        OpenedAlert("b/2", b2, 200.2, 200.0),
        OpenedAlert("d/1", d, 400.3, 400.0),
        OpenedAlert("q/1", q, 250.0, 249.0),  # nothing emerged there: false
        OpenedAlert("f/1", f, 500.5, 500.0),
        OpenedAlert("c/early", c, 298.0, 298.0),  # two days before C's onset: too early to count, and false
    ]
    m = match(emergences, alerts, GRID)
    assert set(m.detected) == {"A", "B", "C"}, "A, B and C are counted, B once"
    assert m.detected["A"].alert_id == "a/1" and m.detected["B"].alert_id == "b/2" and m.detected["C"] is None
    assert set(m.small) == {"D"} and m.small["D"].alert_id == "d/1"
    assert sorted(a.alert_id for a in m.false_alerts) == ["c/early", "q/1"]
    assert m.detected_within(1.0) == pytest.approx(2 / 3)
    np.testing.assert_allclose(sorted(m.delays_days()), [0.2, 0.4])
    np.testing.assert_allclose(sorted(m.onset_errors_days()), [0.0, 0.1])


P, T = 30, 80
LAT = np.full((P, P), 10.0)  # pixel latitudes, deg


def bipole_field(flux_scale: float, rng) -> np.ndarray:
    """A bipole of ~8e21 Mx at full scale (peaks of 2000 G, σ of 3 px of 1/6°)."""
    y, x = np.mgrid[0:P, 0:P]
    lead = np.exp(-((x - 21) ** 2 + (y - 15) ** 2) / 18.0)
    follow = np.exp(-((x - 9) ** 2 + (y - 15) ** 2) / 18.0)
    return flux_scale * 2000.0 * (lead - follow)


def series(b_r: np.ndarray, mu: np.ndarray, rng) -> np.ndarray:
    """(T, P, P) B_los = B_r μ on the visible disk plus 20 G noise."""
    return np.where(mu > 0, b_r * np.clip(mu, 0, None), 0.0) + rng.normal(0, 20.0, b_r.shape)


def test_baseline_fires_on_an_emergence_and_not_on_a_rotating_in_region_or_quiet_sun():
    rng = np.random.default_rng(0)
    detector = FluxRiseDetector()
    area = carrington_pixel_area_cm2(LAT, 1 / 6)
    at_centre = np.full((T, P, P), 0.95)

    growth = np.clip((np.arange(T) - 40) / 10.0, 0, 1)  # emerges at frame 40, full after 10 frames
    emerging = np.stack([bipole_field(g, rng) for g in growth])
    fired = detector.trigger_frame(detector.flux(series(emerging, at_centre, rng), at_centre, area))
    assert fired is not None and 40 <= fired <= 46

    mu_rot = np.broadcast_to(np.linspace(-0.3, 0.95, T)[:, None, None], (T, P, P))  # rotates in over the east limb
    rotating = np.broadcast_to(bipole_field(1.0, rng), (T, P, P))
    seen = series(rotating, mu_rot, rng)
    assert detector.trigger_frame(detector.flux(seen, mu_rot, area)) is None

    quiet = detector.flux(series(np.zeros((T, P, P)), at_centre, rng), at_centre, area)
    assert detector.trigger_frame(quiet) is None


LAST_LINE_KEYS = ["detected_1d", "detected_2d", "false_per_disk_day", "onset_median_d", "onset_iqr_d", "baseline_detected_1d",
                  "baseline_false_per_disk_day", "oracle_detected_1d", "oracle_detected_2d", "visible_oracle_detected_1d",
                  "newflux_detected_1d", "newflux_false_per_disk_day", "true_withdrawals"]


def test_the_pooled_last_line_pools_detections_over_the_streams_emergences():
    def stream(n: int, d1: int, d2: int, false: int, days: float, errors: list[float]) -> dict:
        return {"emergences": n, "detected_1d_count": d1, "detected_2d_count": d2, "false_alerts": false, "disk_days": days,
                "onset_errors_d": errors}

    reports = [{who: stream(4, 1, 3, 6, 60.0, [0.5, 1.5]) for who in DETECTORS},
               {who: stream(0, 0, 0, 3, 30.0, []) for who in DETECTORS}]
    reports[0]["cnn"]["true_withdrawals"], reports[1]["cnn"]["true_withdrawals"] = 2, 1
    reports[1]["newflux"]["detected_1d_count"] = 0
    line = last_line({who: pooled(reports, who) for who in DETECTORS})
    assert [kv.split("=")[0] for kv in line.split()] == LAST_LINE_KEYS
    assert "detected_1d=0.25 detected_2d=0.75 false_per_disk_day=0.10 onset_median_d=+1.00 onset_iqr_d=0.50" in line
    assert "oracle_detected_1d=0.25 oracle_detected_2d=0.75" in line
    assert line.endswith("newflux_false_per_disk_day=0.10 true_withdrawals=3")


def test_replay_through_the_service_and_policy_replay_give_the_same_alerts(tmp_path, tiny_bundle):
    """A short held-out stretch through the service's own path; re-running the alert policy over the stored
    scores gives exactly the service's alerts (so the operating curve needs no second replay)."""
    stream = Stream(7, "2002-03-01T00:00:00", 1.0)
    unmarked = {"present_at_start": False}  # the tiny bundle scores ≈ 0.505 everywhere: see tests/test_serving.config
    lines: list[str] = []
    report = evaluate(tiny_bundle, stream, tmp_path, size=256, service_options=unmarked, warmup_days=0.0, log=lines.append)
    service = open_service(ServiceConfig(data_dir=str(tmp_path / "service"), bundle=str(tiny_bundle), source="watch", **unmarked))
    events = service.store.reader().alerts()
    assert opened(events), "the low-threshold tiny bundle opens alerts"
    replayed, withdrawals = policy_alerts(passages(service), service.step.policy, stored_emergence(service))
    assert sorted(replayed, key=lambda a: a.alert_id) == sorted(opened(events), key=lambda a: a.alert_id)
    assert len(withdrawals) == sum(e.event == EventKind.withdrawn for e in events)
    frames = service.store.db.execute("SELECT COUNT(*) FROM frames").fetchone()[0]
    assert 0 < frames <= SLOTS_PER_DAY and report["stream"]["disk_days"] == pytest.approx(1.0)
    assert report["cnn"]["emergences"] == 0, "a one-day stream counts no emergence (onsets need two days to the end)"
    assert 0 < report["cnn"]["false_alerts"] <= len(opened(events))
    assert (tmp_path / "operating_curve.png").stat().st_size > 10_000
    assert (tmp_path / "reliability.png").stat().st_size > 10_000
    assert (tmp_path / "delays.png").stat().st_size > 10_000
    assert lines[-1] == last_line(report) and [kv.split("=")[0] for kv in lines[-1].split()] == LAST_LINE_KEYS
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["baseline"]["k"] in KS and saved["baseline"]["k_chosen"] == "tuned on this stream to the CNN's false-alarm rate"
    assert 0 <= saved["cnn"]["brier"] <= 1 and saved["cnn"]["threshold"] == pytest.approx(0.05)
    assert saved["oracle"]["flux_Mx"] == 1e21 and [c[0] for c in saved["oracle_curve"]] == list(ORACLE_LEVELS_MX)
    assert saved["oracle"]["emergences"] == 0
    # a rerun resumes (nothing left to replay) and reports any threshold from the stored scores
    again = report_stream(replay_stream(tiny_bundle, stream, tmp_path, 256, **unmarked), stream, tmp_path, threshold=0.3,
                          warmup_days=0.0, log=lambda *a: None)
    assert service.store.db.execute("SELECT COUNT(*) FROM frames").fetchone()[0] == frames
    assert again["cnn"]["threshold"] == 0.3
    assert again["cnn"]["false_per_disk_day"] == next(f for t, f, _ in report["cnn_curve"] if t == 0.3)
    assert [c[1] for c in again["cnn_curve"]] == [c[1] for c in report["cnn_curve"]]
    with pytest.raises(SystemExit, match="holds another replay"):
        replay_stream(tiny_bundle, Stream(7, "2002-03-05T00:00:00", 1.0), tmp_path, 256, **unmarked)


def test_forecasts_verify_when_an_emergence_in_the_tile_has_begun_by_the_frame():
    pid, lon, lat = tile(100)
    other, olon, olat = tile(200)
    start = 30_000  # slot of frame 0; days are slot_days
    t0 = start / SLOTS_PER_DAY
    emergences = [Emergence("new", t0 + 2.0, lon, lat, 5e21, 0.0),  # emerges at frame 30 of the first passage
                  Emergence("old", t0 - 1.0, olon, olat, 5e21, 0.0),  # before the second passage began: not seen
                  Emergence("tiny", t0 + 1.0, olon, olat, 2e21, 0.0)]  # below the counted flux
    history = [Passage(pid, start, [score(0.1, frame=k) for k in (10, 29, 30, 31)]),
               Passage(other, start, [score(0.8, frame=k) for k in (10, 40)])]
    f = forecasts(history, emergences, GRID)
    np.testing.assert_array_equal(f.y, [0, 0, 1, 1, 0, 0])
    assert f.brier == pytest.approx((0.01 * 2 + 0.81 * 2 + 0.64 * 2) / 6)
    assert f.reliability() == [(pytest.approx(0.1), 0.5, 4), (pytest.approx(0.8), 0.0, 2)]


def test_validation_curves_pool_false_alerts_over_disk_days_and_detections_over_emergences():
    """A 60-day stream with 30 regions and a 30-day quiet one: pooled, the quiet stream's false alerts weigh by its
    days and its detections (it has no region) not at all; a knob only one curve holds is dropped."""
    busy = [(0.4, 0.3, 0.8), (0.5, 0.1, 0.6), (0.6, 0.0, 0.4)]
    quiet = [(0.4, 0.9, float("nan")), (0.5, 0.4, float("nan")), (0.6, 0.1, float("nan")), (0.7, 0.0, float("nan"))]
    pooled = pooled_curve([busy, quiet], [60.0, 30.0], [30, 0])
    assert [k for k, _, _ in pooled] == [0.4, 0.5, 0.6]
    np.testing.assert_allclose([f for _, f, _ in pooled], [0.5, 0.2, 1 / 30])
    np.testing.assert_allclose([d for _, _, d in pooled], [0.8, 0.6, 0.4])
    assert choose(pooled, 0.2) == 0.5 and choose(busy, 0.2) == 0.5 and choose(pooled, 0.1) == 0.6


def test_operating_point_is_the_most_sensitive_knob_within_the_target_and_the_service_alerts_at_it(tmp_path, tiny_bundle):
    curve = [(0.2, 2.0, 0.9), (0.3, 0.6, 0.8), (0.4, 0.45, 0.6), (0.5, 0.3, 0.7), (0.55, 0.2, 0.7), (0.6, 0.2, 0.7),
             (0.7, 0.1, 0.4)]
    assert choose(curve, 0.5) == 0.55  # the most detections within the target; then fewer false; then more sensitive
    assert choose(curve, 0.01) == 0.7  # nothing meets it: the strictest
    assert choose([(2.0, 0.9, 0.8), (5.0, 0.4, 0.6), (10.0, 0.1, 0.3)], 0.5) == 5.0
    assert choose([(0.3, 0.4, float("nan")), (0.5, 0.2, float("nan"))], 0.5) == 0.5  # no emergences: fewer false
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    record(bundle, {"threshold": 0.4, "target_false_per_disk_day": 0.5})
    loaded = ModelBundle(bundle)
    assert loaded.threshold == pytest.approx(0.05) and loaded.alert_threshold == 0.4
    service = open_service(ServiceConfig(data_dir=str(tmp_path / "service"), bundle=str(bundle), source="watch"))
    assert service.step.policy.threshold == 0.4
    with pytest.raises(ManifestError, match=r"operating_point.threshold = 1.5: Input should be less than 1"):
        record(bundle, {"threshold": 1.5})  # refused before it is written
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["operating_point"]["threshold"] = 1.5  # written by hand
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"manifest.json: operating_point.threshold = 1.5"):
        ModelBundle(bundle)
