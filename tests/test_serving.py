"""The live service against real parts: FITS files, ONNX Runtime, a Kafka broker, an HTTP server, kill -9."""
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import astropy.units as u
import httpx
import jsonschema
import numpy as np
import pytest
from astropy.io import fits
from kafka import KafkaConsumer

from common.config import ServiceConfig
from contract.events import SCHEMAS, AlertEvent, EventKind, render_schema, schema_path
from serving.api import create_app
from serving.app import build
from serving.compose import open_service
from serving.store import Store
from tests.support import ServerThread, free_port


def config(tmp_path, bundle, **kw) -> ServiceConfig:
    """The test service. The tiny bundle scores every patch alike (≈ 0.505, above its 0.05 threshold), so with
    the cold-start marking on, every passage of a test stream (all seen from mid-passage) would stay marked and
    nothing would open: the tests of the alert machinery turn it off; the cold-start test turns it on."""
    kw = {"present_at_start": False, "source": "watch", **kw}
    return ServiceConfig(data_dir=str(tmp_path / "svc"), bundle=str(bundle), lat_limit=45 * u.deg,
                         upload_token="s3cret", **kw)


def drop(frame_paths, service_dir):
    for p in frame_paths:
        shutil.copy(p, service_dir / "incoming" / p.name)


def wait_for(predicate, timeout=60.0, what="condition", poll=0.2):
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll)


def consume(bootstrap, topic, timeout_s: float = 4) -> list:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=int(timeout_s * 1000), enable_auto_commit=False)
    try:
        return [(r.key.decode(), dict(r.headers).get("event_id", b"").decode(), json.loads(r.value)) for r in consumer]
    finally:
        consumer.close()


def events(service) -> list[dict]:
    """Every alert event a service recorded, as published."""
    return [e.payload() for e in service.store.reader().alerts()]


def scores(db) -> dict:
    """{(patch, passage start, frame): member probabilities} of a service's database."""
    return {(pid, start, k): np.array(json.loads(probs))
            for pid, start, k, probs in db.execute("SELECT patch_id, start_slot, frame, probs FROM scores")}


def kafka_config(tmp_path, bundle, broker):
    tag = uuid.uuid4().hex[:8]
    return config(tmp_path, bundle, kafka_bootstrap=broker.bootstrap, alerts_topic=f"alerts-{tag}",
                  status_topic=f"status-{tag}", simulated_alerts_topic=f"sim-alerts-{tag}",
                  simulated_status_topic=f"sim-status-{tag}")


def test_alerts_reach_kafka_and_match_the_api(tmp_path, tiny_bundle, frames, kafka_broker):
    cfg = kafka_config(tmp_path, tiny_bundle, kafka_broker)
    app = build(cfg).start(scheduler=False)
    service = app.service
    try:
        drop(frames, service.dir)
        assert service.run_cycle() == len(frames)
        wait_for(lambda: service.store.outbox.depth() == 0, what="outbox to drain")
        # the gauge follows the publisher, not only the end of each cycle (when the frame's messages still wait)
        wait_for(lambda: service.metrics.registry.get_sample_value("fluxwatch_outbox_depth") == 0, what="the gauge at 0")
        with ServerThread(create_app(service)) as server:
            api = httpx.get(f"{server.url}/alerts", params={"limit": 1000}).json()["items"]
            patches = httpx.get(f"{server.url}/patches").json()
            one = httpx.get(f"{server.url}/patches/{patches[0]['patch_id']}").json()
            metrics = httpx.get(f"{server.url}/metrics").text
            assert httpx.get(f"{server.url}/ready").status_code == 200
            assert httpx.get(f"{server.url}/patches/L000.00N00.00").status_code == 404
            assert "/upload" in httpx.get(f"{server.url}/openapi.json").json()["paths"]
    finally:
        app.stop()
    alerts_topic, status_topic = cfg.topics[True]  # the test frames are the synthetic Sun's: simulated events
    events = consume(kafka_broker.bootstrap, alerts_topic)
    assert api, "the low-threshold bundle must open alerts"
    kafka_ids = [e for _, e, _ in events]
    assert len(kafka_ids) == len(set(kafka_ids)), "no duplicate events on Kafka"
    assert sorted(kafka_ids) == sorted(a["event_id"] for a in api)
    assert all(key == value["patch_id"] for key, _, value in events)
    validator = jsonschema.Draft202012Validator(json.loads(schema_path("alert-event").read_text()))
    for event in api:
        validator.validate(event)  # every published event follows the schema in deploy/
    assert not validator.is_valid({k: v for k, v in api[0].items() if k != "onset"})
    first = api[0]
    assert first["event"] == "opened" and first["schema_version"] == "4.0" and first["simulated"] is True
    assert "median" not in first and "onset_frame" not in first, "one copy of each field"
    for field in ("alert_id", "provenance", "patch", "onset", "probability", "frame_time", "region", "published"):
        assert field in first
    assert set(first["patch"]) == {"id", "carrington", "stonyhurst"} and "time_utc" in first["onset"]
    assert {e["event_id"] for e in map(json.loads, (service.dir / "alerts.jsonl").read_text().splitlines())} == set(kafka_ids)
    assert not consume(kafka_broker.bootstrap, cfg.alerts_topic, timeout_s=2), "nothing simulated on the real topic"
    status = consume(kafka_broker.bootstrap, status_topic)
    assert {p["patch_id"] for p in patches} <= {k for k, _, _ in status}  # every patch scored has a status
    assert one["history"] and one["onset"]["frame"] >= 0
    assert f"fluxwatch_frames_ingested_total {float(len(frames))}" in metrics


@pytest.mark.system
def test_broker_down_then_up_loses_no_alert(tmp_path, tiny_bundle, frames, kafka_broker):
    cfg = kafka_config(tmp_path, tiny_bundle, kafka_broker)
    app = build(cfg).start(scheduler=False)
    service = app.service
    try:
        kafka_broker.stop()
        drop(frames, service.dir)
        service.run_cycle()
        pending = service.store.outbox.depth()
        assert pending > 0
        wait_for(lambda: service.metrics.kafka_errors._value.get() > 0, 30, "a Kafka error to be counted")
        assert service.store.outbox.depth() == pending
        kafka_broker.restart()
        wait_for(lambda: service.store.outbox.depth() == 0, 90, "the outbox to drain after the broker returned")
    finally:
        app.stop()
        if not kafka_broker.running:
            kafka_broker.restart()
    ids = [e for _, e, _ in consume(kafka_broker.bootstrap, cfg.topics[True][0])]
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(a["event_id"] for a in events(service))


def run_server(cfg_dir, bundle, port):
    return subprocess.Popen([sys.executable, "-m", "serving.main", "--source", "watch", "--data-dir", str(cfg_dir),
                             "--bundle", str(bundle), "--port", str(port), "--speedup", "23040",
                             "--lat-limit-deg", "45", "--no-present-at-start"],  # as config() does
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_restart_after_kill_loses_no_frame_and_duplicates_no_alert(tmp_path, tiny_bundle, frames):
    # the reference: the same frames through one uninterrupted service
    reference = open_service(config(tmp_path / "ref", tiny_bundle))
    drop(frames, reference.dir)
    reference.run_cycle()
    expected_events = sorted(a["event_id"] for a in events(reference))
    expected_slots = [r[0] for r in reference.store.db.execute("SELECT slot FROM frames ORDER BY slot")]
    expected_scores = scores(reference.store.db)

    data = tmp_path / "killed"
    (data / "incoming").mkdir(parents=True)
    port = free_port()
    proc = run_server(data, tiny_bundle, port)
    try:
        drop(frames[:5], data)
        wait_for(lambda: len(list((data / "processed").glob("*.fits"))) == 5, 120, "the first frames")
        drop(frames[5:], data)
        wait_for(lambda: len(list((data / "processed").glob("*.fits"))) >= 6, 120, "the next frame", poll=0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        def unscored():
            return list((data / "incoming").glob("*.fits")) + list((data / "pending").glob("*.fits"))

        assert unscored(), "the kill landed mid-way through the rest"
        proc = run_server(data, tiny_bundle, port)
        wait_for(lambda: not unscored(), 120, "the rest after the restart")
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200, 30, "ready")
        proc.terminate()
        assert proc.wait(30) == 0, "SIGTERM stops the service in order and exits 0"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(20)
    db = sqlite3.connect(data / "state.sqlite")
    assert [r[0] for r in db.execute("SELECT slot FROM frames ORDER BY slot")] == expected_slots
    assert sorted(r[0] for r in db.execute("SELECT event_id FROM alerts")) == expected_events
    got = scores(db)  # the streams rebuilt after the kill score exactly as the uninterrupted ones
    assert got.keys() == expected_scores.keys()
    assert max(np.abs(got[key] - expected_scores[key]).max() for key in got) <= 1e-5
    logged = [json.loads(line)["event_id"] for line in (data / "alerts.jsonl").read_text().splitlines()]
    assert sorted(logged) == expected_events, "the JSON-lines log has every event once"


def test_a_cold_start_marks_the_frames_it_did_not_see_and_alerts_only_on_later_rises(tmp_path, tiny_bundle, frames):
    service = open_service(config(tmp_path, tiny_bundle, present_at_start=True))
    drop(frames, service.dir)
    service.run_cycle()
    reader = service.store.reader()
    ingested = [r[0] for r in service.store.db.execute("SELECT slot FROM frames ORDER BY slot")]
    cold = 0
    for pid, start in reader.passages():
        first_seen = next(s for s in ingested if s >= start) - start
        if history := reader.scores(pid, start):  # (a passage whose video ended before the first frame has none)
            cold += first_seen > 0
            assert {s.observed_from for s in history} == {first_seen}
            assert service.store.alert_state(pid, start).present_at_start == (history[0].probability.median > 0.05)
    assert cold > 10, "a service started mid-passage has passages it saw only part of"
    # every passage was seen from mid-passage and already scored above the threshold there (the tiny bundle
    # scores ≈ 0.505 everywhere): nothing is an emergence the service saw
    assert reader.alerts() == []
    # without the marking, the same stream opens alerts, each on an onset after the first observed frame
    unmarked = open_service(config(tmp_path / "unmarked", tiny_bundle))
    drop(frames, unmarked.dir)
    unmarked.run_cycle()
    opened = [e for e in unmarked.store.reader().alerts() if e.event == EventKind.opened]
    assert opened and all(e.onset.frame > e.observed_from for e in opened)


def test_overlapping_tiles_give_one_alert_per_region(tmp_path, tiny_bundle, frames):
    service = open_service(config(tmp_path, tiny_bundle, tile_overlap=7.5 * u.deg))
    grid = service.grid
    assert len(grid) == 48 * 11 and all(len(n) == 8 for n in grid.sharing_area[48:-48])  # half-tile steps
    drop(frames, service.dir)
    service.run_cycle()
    events = sorted(service.store.reader().alerts(), key=lambda e: e.frame_time)
    assert sum(e.event == EventKind.opened for e in events) >= 2
    open_now: set[str] = set()
    for e in events:  # replayed in time order: never two tiles sharing area open at once
        if e.event == EventKind.opened:
            assert not {grid.ids[n] for n in grid.sharing_area[grid.index(e.patch_id)]} & open_now, e.alert_id
            open_now.add(e.patch_id)
        elif e.event in (EventKind.withdrawn, EventKind.closed):
            open_now.discard(e.patch_id)


def test_late_frame_takes_its_slot_and_later_scores_use_it(tmp_path, tiny_bundle, frames):
    reference = open_service(config(tmp_path / "ref", tiny_bundle))
    drop(frames, reference.dir)
    reference.run_cycle()

    service = open_service(config(tmp_path / "late", tiny_bundle))
    drop(frames[:7] + frames[8:9], service.dir)
    service.run_cycle()
    drop(frames[7:8], service.dir)  # arrives after a newer frame, inside the open passages
    assert service.run_cycle() == 1
    drop(frames[9:], service.dir)
    service.run_cycle()

    slots = [r[0] for r in service.store.db.execute("SELECT slot FROM frames ORDER BY slot")]
    assert slots == [r[0] for r in reference.store.db.execute("SELECT slot FROM frames ORDER BY slot")]
    late_slot = slots[7]
    ref, got = scores(reference.store.db), scores(service.store.db)
    assert any(key[1] < late_slot for key in got), "the late frame falls inside scored passages"
    assert not [key for key in got if key[1] + key[2] == late_slot], "a late frame is filed, not scored"
    after = [key for key in ref if key[1] + key[2] > slots[8]]
    assert after and all(key in got for key in after)
    assert max(np.abs(got[key] - ref[key]).max() for key in after) <= 1e-6, "scores after the late frame use it"
    for pid, start in service.store.open_passages().items():  # and it sits in its slot of every video
        if 0 <= late_slot - start < service.bundle.n_frames:
            assert np.array_equal(service.store.video(pid, start)[late_slot - start],
                                  reference.store.video(pid, start)[late_slot - start])


def test_warm_start_rebuilds_the_scoring_state_of_every_open_passage(tmp_path, tiny_bundle, frames):
    first = open_service(config(tmp_path, tiny_bundle))
    drop(frames[:8], first.dir)
    first.run_cycle()
    open_ = first.store.open_passages()
    latest = {}  # the last scored frame of each open passage
    for pid, start, k in scores(first.store.db):
        if open_.get(pid) == start:
            latest[pid, start] = max(k, latest.get((pid, start), -1))
    restarted = open_service(config(tmp_path, tiny_bundle))
    assert restarted.warm() == len(latest) > 0
    assert {key: restarted.step.streams.frontier(key) for key in latest} == latest
    assert restarted.warm() == 0, "a warm stream is not rebuilt twice"


@pytest.fixture
def api(tmp_path, tiny_bundle):
    service = open_service(config(tmp_path, tiny_bundle, upload_max_bytes=400_000))
    with ServerThread(create_app(service)) as server:
        yield server.url, service


def test_good_upload_is_accepted_and_scored_within_seconds(api, frames):
    url, service = api
    t0 = time.monotonic()
    r = httpx.post(f"{url}/upload", files={"file": (frames[0].name, frames[0].read_bytes())},
                   headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 202, r.text
    accepted, status = r.json()["accepted"], r.json()["status"]
    assert r.headers["location"] == status == f"/uploads/{accepted}"
    # scored, then its file moved to processed/ (a moment later: the store commits first)
    wait_for(lambda: httpx.get(url + status).json() == {"accepted": accepted, "state": "scored", "reason": None},
             timeout=10, what="the upload scored and filed")
    assert service.store.has_frame(r.json()["slot"]) and (service.inbox.processed / accepted).exists()
    assert time.monotonic() - t0 < 10  # not at the next cadence (96 min)
    # the same frame again: its slot is scored already
    again = httpx.post(f"{url}/upload", files={"file": ("again.fits", frames[0].read_bytes())},
                       headers={"Authorization": "Bearer s3cret"})
    wait_for(lambda: httpx.get(url + again.json()["status"]).json()["state"] == "superseded", timeout=10,
             what="the second upload superseded")
    assert "was already scored" in httpx.get(url + again.json()["status"]).json()["reason"]
    missing = httpx.get(f"{url}/uploads/nothing.fits")
    assert missing.status_code == 404 and "no file 'nothing.fits'" in missing.json()["detail"]
    assert httpx.get(f"{url}/uploads/..%2Fstate.sqlite").status_code in (404, 422)


def test_an_upload_whose_data_cannot_be_read_is_accepted_then_rejected_with_the_reason(api, frames, tmp_path):
    """The header is checked before the answer; the data only when the frame is read, after it."""
    url, service = api
    with fits.open(frames[2], do_not_scale_image_data=True) as hdul:
        hdul[0].data[:] = hdul[0].header["BLANK"]  # every pixel missing
        hdul.writeto(tmp_path / "blank.fits")
    r = httpx.post(f"{url}/upload", files={"file": ("blank.fits", (tmp_path / "blank.fits").read_bytes())},
                   headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 202, r.text
    wait_for(lambda: httpx.get(url + r.json()["status"]).json()["state"] == "rejected", timeout=10,
             what="the blank upload rejected")
    reason = httpx.get(url + r.json()["status"]).json()["reason"]
    assert r.json()["accepted"] in reason and "every pixel is missing" in reason


def test_an_upload_named_fts_is_scored_too(api, frames):
    url, service = api
    r = httpx.post(f"{url}/upload", files={"file": ("frame.fts", frames[1].read_bytes())},
                   headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 202, r.text
    assert r.json()["accepted"].endswith(".fts.fits")
    wait_for(lambda: service.store.has_frame(r.json()["slot"]), timeout=10, what="the .fts upload scored")


def test_a_file_dropped_into_incoming_is_scored_within_seconds(tmp_path, tiny_bundle, frames):
    app = build(config(tmp_path, tiny_bundle)).start()  # the cadence job runs now, then in 96 min
    try:
        time.sleep(0.5)  # the watcher is watching
        t0 = time.monotonic()
        drop(frames[:1], app.service.dir)
        wait_for(lambda: app.service.store.newest_frame() is not None, timeout=10, what="the dropped file scored")
        assert time.monotonic() - t0 < 10
    finally:
        app.stop()


@pytest.mark.parametrize("case, status, words", [
    ("no_token", 401, "bearer token"),
    ("wrong_token", 401, "bearer token"),
    ("not_fits", 422, "not a readable FITS file"),
    ("truncated", 422, "truncated"),
    ("too_large", 413, "exceeds the limit"),
])
def test_bad_upload_is_refused_with_a_clear_message(api, frames, case, status, words):
    url, service = api
    good = frames[0].read_bytes()
    body = {"not_fits": b"hello, this is not FITS", "truncated": good[: len(good) // 2],
            "too_large": good + b"\0" * 500_000}.get(case, good)
    headers = {} if case == "no_token" else {"Authorization": "Bearer " + ("nope" if case == "wrong_token" else "s3cret")}
    r = httpx.post(f"{url}/upload", files={"file": ("frame.fits", body)}, headers=headers)
    assert r.status_code == status and words in r.json()["detail"]
    if case in ("not_fits", "truncated"):
        assert "frame.fits" in r.json()["detail"]
    assert not list((service.dir / "incoming").iterdir())


def test_published_schema_is_generated_from_the_event_model():
    for name in SCHEMAS:
        assert schema_path(name).read_text() == render_schema(name), "regenerate it: python -m contract.events"
    assert set(AlertEvent.model_json_schema()["required"]) >= {"event", "event_id", "probability", "onset"}


def test_api_reads_see_committed_frames_only(tmp_path, tiny_bundle, frames):
    service = open_service(config(tmp_path, tiny_bundle))
    reader = service.store.reader()
    drop(frames[:1], service.dir)
    service.run_cycle()
    committed = reader.newest_frame()
    db = service.store.db
    db.execute("BEGIN")
    db.execute("INSERT INTO frames VALUES (?, ?, ?, ?)", (committed[0] + 1, "2000-06-01T01:36:00.000", "x.fits", 0.0))
    assert service.store.newest_frame()[0] == committed[0] + 1  # the writer sees its own transaction
    assert reader.newest_frame() == committed, "a reader must not see an uncommitted frame"
    db.rollback()
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.db.execute("DELETE FROM frames")


def test_serving_imports_neither_torch_nor_the_simulator():
    code = ("import sys, serving.app, serving.api, serving.main; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sim', 'training')); "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("key, value, words", [
    ("cadence_min", 12.0, "differs from the service clock's 96"),
    ("scaling", "B/1000", "input scaling 'B/1000' is not"),
    ("instrument", {"name": "NSO/GONG", "plate_scale_arcsec": 2.5, "psf_fwhm_arcsec": 5.0, "noise_G": 3.0},
     "no adapter for instrument 'NSO/GONG'"),
])
def test_a_bundle_for_another_clock_or_scaling_is_refused(tmp_path, tiny_bundle, key, value, words):
    from serving.bundle import BundleError, ModelBundle

    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["input"][key] = value
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=words) as refused:
        ModelBundle(bundle)
    assert str(bundle / "manifest.json") in str(refused.value)


def test_the_keeper_holds_in_memory_what_the_database_holds(tmp_path, tiny_bundle, frames):
    """The store keeps the open passages' curves and alert states in memory after its first snapshot and writes
    them through: at every frame, its snapshot equals one read afresh from the database (as at a restart)."""
    service = open_service(config(tmp_path, tiny_bundle))
    compared = 0
    for i, frame in enumerate(frames):
        drop([frame], service.dir)
        service.run_cycle()
        slot = service.store.newest_frame()[0] + 1
        kept, fresh = service.store.snapshot(slot), Store(service.dir, service.bundle.n_frames, service.bundle.pixels).snapshot(slot)
        assert kept.open.keys() == fresh.open.keys()
        compared += len(kept.open)
        for key, p in kept.open.items():
            q = fresh.open[key]
            assert np.array_equal(p.frames, q.frames) and np.array_equal(p.curves, q.curves), (i, key)
            assert p.alert.to_dict() == q.alert.to_dict() and p.latest_json == q.latest_json, (i, key)
    assert compared > 100 and any(p.alert.status.value == "open" for p in kept.open.values()), "alert states too"
