"""The alert contract a consumer builds on (schema 4.0), checked on a real service's events: provenance, simulated
vs observed and their topics, supersession and reasons, final statuses, region fluxes and cutouts, the versioned
schemas, the settings (environment, file, flags), JSON logs, the Kafka settings and the consumer example."""
import hashlib
import io
import json
import logging
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
from astropy.constants import R_sun
from astropy.io import fits
from astropy.time import Time
from kafka import KafkaConsumer, KafkaProducer
from PIL import Image

from common.clock import slot_of_time, slot_time
from common.config import ConfigError, ServiceConfig
from common.figures import CLIP_G
from common.observer import central_meridian_distance
from common.passage import on_disk
from contract.events import SCHEMA_VERSION, EventKind, PatchStatus, Reason, json_schema
from ingest.magnetogram import read_frame, read_magnetogram
from serving.api import create_app
from serving.app import build
from serving.cli import config_from_args, configure_logging
from serving.compose import open_service
from serving.region import FIELD_FLOOR_G
from sim import SunConfig, SyntheticSun, write_fits_series, write_hmi_series
from tests.conftest import START
from tests.support import ServerThread, bipole, cadence_times, synthetic_mdi_series
from tests.test_serving import config, drop, wait_for

ROOT = Path(__file__).resolve().parents[1]
#: The far frame: one passage (225 frames) and more after the test frames' start, so every passage they opened ends.
FAR = 240


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_bundle, frames):
    """(service, its events, its outbox messages in order, the time before it ran): the synthetic test frames,
    then a frame FAR slots on that ends every passage they opened."""
    tmp = tmp_path_factory.mktemp("contract")
    far = write_fits_series(SyntheticSun(SunConfig(), seed=0), [int(slot_of_time(START)) + FAR], tmp / "far", shape=(256, 256))
    assert far, "the far slot is observed"
    svc = open_service(config(tmp, tiny_bundle))
    before = time.time()
    drop(frames, svc.dir)
    svc.run_cycle()
    drop(far, svc.dir)
    svc.run_cycle()
    rows = svc.store.db.execute("SELECT topic, key, payload FROM outbox ORDER BY seq").fetchall()
    return svc, svc.store.reader().alerts(), [(t, k, json.loads(p)) for t, k, p in rows], before


def test_every_event_names_the_frame_and_the_model_it_came_from(run, tiny_bundle):
    svc, events, _, before = run
    assert len(events) > 10
    digest = "sha256:" + hashlib.sha256((tiny_bundle / "manifest.json").read_bytes()).hexdigest()
    processed = {p.name: p for p in (svc.dir / "processed").iterdir()}
    for e in events:
        p = e.provenance
        assert p.file in processed, "the file the event was decided on, as filed in processed/"
        header = fits.getheader(processed[p.file])
        assert (p.instrument, p.series) == ("SOHO/MDI", "mdi.fd_M_96m_lev182")
        assert p.t_rec == header["T_REC"] and p.quality == header.get("QUALITY")
        assert Time(p.t_obs) == read_frame(processed[p.file]).time, "T_OBS is the frame's observation time"
        assert abs(Time(p.t_obs) - Time(e.frame_time)) < 48 * u.min, "the frame is the slot's"
        assert p.model_version == svc.bundle.model_version and p.bundle_digest == digest
        assert before <= Time(e.published).unix <= time.time()


def test_hmi_frames_report_their_series_time_and_quality(real_hmi_file, tmp_path):
    """A real HMI header (sunpy's test file) and the synthetic Sun's HMI frames: the observing instrument is
    reported after the frame is brought to MDI."""
    origin = read_magnetogram(real_hmi_file).origin  # (its resampled pixels are too coarse to bring to MDI)
    header = fits.getheader(real_hmi_file, 1 if fits.getheader(real_hmi_file).get("NAXIS", 0) == 0 else 0)
    assert origin.instrument == "SDO/HMI" and not origin.simulated
    assert origin.t_rec == header.get("T_REC") and origin.quality == (header["QUALITY"] if "QUALITY" in header else None)
    path = write_hmi_series(SyntheticSun(SunConfig(), seed=0), Time("2000-06-01T00:12:00"), tmp_path, shape=(1024, 1024))[0]
    mag = read_frame(path)
    assert mag.instrument == "SOHO/MDI", "brought to the model's instrument"
    assert (mag.origin.instrument, mag.origin.series, mag.origin.quality, mag.origin.simulated) == \
        ("SDO/HMI", "hmi.M_720s", 0, True)
    assert mag.origin.t_rec == fits.getheader(path, 1)["T_REC"]


def test_the_series_is_the_headers_whatever_the_files_name(real_hmi_file, tmp_path):
    """Provenance from the frame (issue 30): a real HMI file named as no series is, and a frame renamed to a
    name that looks like another series, report the series their headers say."""
    real = real_hmi_file.rename(tmp_path / "sunpy_test_map.fits")
    assert read_magnetogram(real).origin.series == "hmi.Ic_45s"  # CONTENT, CADENCE 45 s, QLOOK 0
    path = write_hmi_series(SyntheticSun(SunConfig(), seed=0), Time("2000-06-01T00:12:00"), tmp_path, shape=(512, 512))[0]
    renamed = path.rename(tmp_path / "hmi.sharp_fulldisk_sample_2_TAI.fits")
    assert read_magnetogram(renamed).origin.series == "hmi.M_720s"
    with fits.open(renamed, mode="update") as hdul:
        hdul[1].header["QLOOK"] = 1  # a quick-look record: the near-real-time series
    assert read_magnetogram(renamed).origin.series == "hmi.M_720s_nrt"
    with fits.open(renamed, mode="update") as hdul:
        hdul[1].header["DSNAME"] = "hmi.M_45s_nrt"  # a header that names its series says so
    assert read_magnetogram(renamed).origin.series == "hmi.M_45s_nrt"
    with fits.open(renamed, mode="update") as hdul:
        del hdul[1].header["DSNAME"]
        hdul[1].header["CADENCE"] = 90.0  # no HMI series of that cadence: unknown, not guessed from the name
    assert read_magnetogram(renamed).origin.series is None


def test_simulated_and_observed_events_go_to_their_own_topics(run, tiny_bundle, tmp_path):
    svc, events, messages, _ = run
    alerts_sim, status_sim = svc.config.topics[True]
    assert all(e.simulated for e in events), "the synthetic Sun's frames carry the SIMULATE card"
    assert {t for t, _, _ in messages} == {alerts_sim, status_sim}, "nothing simulated on the observation topics"
    # Frames without the card (written here, as an instrument's pipeline would) give observed events.
    times = cadence_times("2000-06-01T00:00:00", 3)
    field = bipole(30.0, 10.0)
    observed = open_service(config(tmp_path, tiny_bundle))
    drop(synthetic_mdi_series(tmp_path / "obs", times, field), observed.dir)
    observed.run_cycle()
    rows = observed.store.db.execute("SELECT topic, payload FROM outbox").fetchall()
    assert rows and {t for t, _ in rows} <= set(svc.config.topics[False])
    assert not any(json.loads(p)["simulated"] for _, p in rows)


def test_each_event_supersedes_the_last_of_its_alert_and_endings_say_why(run):
    svc, events, _, _ = run
    last: dict[str, str] = {}
    for e in events:
        assert e.supersedes == (None if e.event is EventKind.opened else last[e.alert_id])
        last[e.alert_id] = e.event_id
        assert (e.reason is not None) == (e.event in (EventKind.withdrawn, EventKind.closed))
        if e.event is EventKind.withdrawn:  # nothing emerged
            assert e.reason is Reason.probability_fell and e.probability.median < e.threshold - 0.1
        if e.reason is Reason.emergence_phase_over:  # a region emerged and is no longer new
            assert e.event is EventKind.closed and e.probability.median < e.threshold - 0.1
    closed = [e for e in events if e.event is EventKind.closed and e.reason is not Reason.emergence_phase_over]
    assert closed, "the far frame ends the passages of open alerts"
    for e in closed:  # patches that left the disk during the test frames, and all that the far frame ends
        closing = read_frame(svc.dir / "processed" / e.provenance.file)
        assert Time(e.frame_time).isot == slot_time(slot_of_time(closing.time)).isot
        visible = on_disk(central_meridian_distance(e.patch.carrington.lon, closing.observer.lon.to_value(u.deg)))
        assert e.reason is (Reason.video_full if visible else Reason.left_disk)
    assert {e.reason for e in closed} == {Reason.video_full, Reason.left_disk}


def test_the_status_topic_ends_every_passage_with_a_final_closed_status(run):
    svc, _, messages, _ = run
    status_topic = svc.config.topics[True][1]
    statuses = [(k, PatchStatus.model_validate(p)) for t, k, p in messages if t == status_topic]
    closed = svc.store.db.execute("SELECT patch_id, start_slot FROM passages WHERE status = 'closed'").fetchall()
    assert closed
    finals = {k: s for k, s in statuses if s.final}
    for pid, start in closed:
        if svc.store.db.execute("SELECT 1 FROM scores WHERE patch_id = ? AND start_slot = ?", (pid, start)).fetchone():
            assert finals[pid].alert == "closed" and Time(finals[pid].passage_start).isot == slot_time(start).isot
    latest = dict(statuses)  # what the compacted topic keeps: the last value per key
    open_now = svc.store.snapshot(svc.store.newest_frame()[0] + 1).open_alert_patches()
    assert all(s.alert != "open" or pid in open_now for pid, s in latest.items()), "no stale open status"


def flux_by_hand(frame: np.ndarray, lat_deg: np.ndarray, pixel_deg: float) -> tuple[float, float]:
    """(positive, |negative|) flux, Mx, with astropy units: B × (R_sun dθ)² cos(lat) over |B| ≥ the floor."""
    b = np.where(np.abs(frame) >= FIELD_FLOOR_G, frame, 0.0) * u.G
    area = ((R_sun * np.deg2rad(pixel_deg)) ** 2 * np.cos(np.deg2rad(lat_deg)))[:, None]
    to_mx = lambda x: (x * area).sum().to_value(u.G * u.cm**2)  # noqa: E731  (1 Mx = 1 G cm²)
    return to_mx(np.clip(b, 0 * u.G, None)), to_mx(np.clip(-b, 0 * u.G, None))


def test_region_fluxes_box_and_change_since_onset_match_the_patch_video(run):
    svc, events, _, _ = run
    grid = svc.grid
    pixel = grid.config.pixel_size.to_value(u.deg)
    checked = 0
    for e in (e for e in events if e.event is not EventKind.closed):
        start = int(slot_of_time(Time(e.passage_start)))
        video = svc.store.read_video(e.patch_id, start)
        lon, lat = (a[0] for a in grid.pixel_axes([grid.index(e.patch_id)]))
        pos, neg = flux_by_hand(video[e.frame], lat, pixel)
        pos0, neg0 = flux_by_hand(video[e.onset.frame], lat, pixel)
        r = e.region
        assert r.flux_positive_Mx == pytest.approx(pos, rel=1e-6) and r.flux_negative_Mx == pytest.approx(neg, rel=1e-6)
        assert r.flux_positive_change_Mx == pytest.approx(pos - pos0, rel=1e-6, abs=1e12)
        assert r.flux_negative_change_Mx == pytest.approx(neg - neg0, rel=1e-6, abs=1e12)
        rows, cols = np.nonzero(np.abs(video[e.frame]) >= FIELD_FLOOR_G)
        if rows.size:
            assert r.bbox.lat_min <= lat[rows].min() and lat[rows].max() <= r.bbox.lat_max
            assert r.bbox.lat_max - r.bbox.lat_min == pytest.approx(lat[rows].max() - lat[rows].min() + pixel)
        assert e.patch.carrington.lat - 7.5 - 1e-9 <= r.bbox.lat_min <= r.bbox.lat_max <= e.patch.carrington.lat + 7.5 + 1e-9
        assert r.cutout.startswith(f"/patches/{e.patch_id}/cutout.png?")
        checked += 1
    assert checked > 10


def test_the_cutout_shows_the_patch_at_onset_and_at_the_event(run):
    svc, events, _, _ = run
    e = next(e for e in events if e.event is EventKind.opened)
    video = svc.store.read_video(e.patch_id, int(slot_of_time(Time(e.passage_start))))
    with ServerThread(create_app(svc)) as server:
        r = httpx.get(server.url + e.region.cutout)
        too_late = httpx.get(f"{server.url}/patches/{e.patch_id}/cutout.png",
                             params={"passage_start": e.passage_start, "frame": 224, "onset": 0})
        bad_time = httpx.get(f"{server.url}/patches/{e.patch_id}/cutout.png",
                             params={"passage_start": "soon", "frame": 1, "onset": 0})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    image = np.asarray(Image.open(io.BytesIO(r.content)))
    px = video.shape[1]
    assert image.shape == (px, 2 * px)
    grey = lambda f: np.clip((f / CLIP_G + 1.0) * 127.5, 0, 255).astype(np.uint8)[::-1]  # noqa: E731  (north up)
    assert np.array_equal(image[:, :px], grey(video[e.onset.frame])) and np.array_equal(image[:, px:], grey(video[e.frame]))
    assert too_late.status_code == 404 and "not observed yet" in too_late.json()["detail"]
    assert bad_time.status_code == 422 and bad_time.headers["content-type"] == "application/problem+json"


def test_schemas_are_versioned_and_served(run):
    svc, _, _, _ = run
    with ServerThread(create_app(svc)) as server:
        listed = httpx.get(f"{server.url}/schemas").json()
        current = httpx.get(f"{server.url}/schemas/alert-event/{SCHEMA_VERSION}")
        old = httpx.get(f"{server.url}/schemas/alert-event/2.1")
        missing = httpx.get(f"{server.url}/schemas/alert-event/9.9")
        page = httpx.get(f"{server.url}/alerts", params={"limit": 1000}).json()
    assert {(s["name"], s["version"], s["current"]) for s in listed} >= {
        ("alert-event", SCHEMA_VERSION, True), ("patch-status", SCHEMA_VERSION, True), ("alert-event", "2.1", False),
        ("alert-event", "3.0", False)}
    assert current.headers["content-type"] == "application/schema+json" and current.json() == json_schema("alert-event")
    assert old.json()["properties"]["schema_version"]["const"] == "2.1"
    assert missing.status_code == 404 and "/schemas" in missing.json()["detail"]
    validator = jsonschema.Draft202012Validator(current.json())
    for item in page["items"]:
        validator.validate(item)
    assert not validator.is_valid({**page["items"][0], "provenance": {"file": "x"}})


def test_settings_come_from_flags_then_environment_then_file(tmp_path, monkeypatch, capsys):
    file = tmp_path / "fluxwatch.toml"
    file.write_text('lat_limit = "40 deg"\nhttp_port = 9001\nkafka_partitions = 3\n'
                    '[kafka_options]\nsecurity_protocol = "SASL_SSL"\nsasl_mechanism = "PLAIN"\n')
    monkeypatch.setenv("FLUXWATCH_HTTP_PORT", "9002")
    monkeypatch.setenv("FLUXWATCH_SLOT_READY_OFFSET", "3 min")
    c = config_from_args(["--config", str(file), "--lat-limit-deg", "35", "--synthetic-seed", "5"])
    assert c.lat_limit == 35 * u.deg and c.synthetic_seed == 5, "a flag beats the file"
    assert c.http_port == 9002 and c.slot_ready_offset == 3 * u.min, "the environment beats the file"
    assert c.kafka_partitions == 3 and c.kafka_options == {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"}
    assert ServiceConfig.load(file).lat_limit == 40 * u.deg
    file.write_text('lat_limit = "40 s"\nbogus = 1\n')
    with pytest.raises(ConfigError, match=f"{file.name}.*lat_limit.*deg.*bogus"):
        ServiceConfig.load(file)
    monkeypatch.setenv("FLUXWATCH_SOURCE", "moon")
    with pytest.raises(ConfigError, match="environment.*source"):
        ServiceConfig.load()
    done = subprocess.run([sys.executable, "-m", "serving.main", "--config", str(file)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 2 and "fluxwatch-serve: error:" in done.stderr and "Traceback" not in done.stderr


def test_json_logs_are_one_object_per_line(capsys):
    handlers, level = logging.root.handlers[:], logging.root.level
    configure_logging("json")
    try:
        logging.getLogger("serving.service").warning("rejected %s: %s", "x.fits", "no such file")
    finally:  # the handler writes to this test's captured stderr: put back the ones before
        logging.root.handlers[:] = handlers
        logging.root.setLevel(level)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["level"] == "WARNING" and line["logger"] == "serving.service"
    assert line["message"] == "rejected x.fits: no such file" and "time" in line


def test_kafka_topics_partitions_keys_and_client_options(tmp_path, tiny_bundle, frames, kafka_broker):
    """Topics are made with the configured partitions; each patch's events sit on one partition in order (the key
    is the patch id); the client options reach the producer, which is idempotent."""
    tag = uuid.uuid4().hex[:8]
    cfg = config(tmp_path, tiny_bundle, kafka_bootstrap=kafka_broker.bootstrap, kafka_partitions=3,
                 kafka_options={"client_id": f"contract-{tag}"}, simulated_alerts_topic=f"sim-alerts-{tag}",
                 simulated_status_topic=f"sim-status-{tag}", alerts_topic=f"alerts-{tag}", status_topic=f"status-{tag}")
    app = build(cfg).start(scheduler=False)
    try:
        drop(frames, app.service.dir)
        app.service.run_cycle()
        wait_for(lambda: app.service.store.outbox.depth() == 0, 60, "delivery")
        producer = app.publisher._producer
        assert producer.config["client_id"] == f"contract-{tag}" and producer.config["enable_idempotence"]
    finally:
        app.stop()
    consumer = KafkaConsumer(cfg.simulated_alerts_topic, bootstrap_servers=kafka_broker.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=4000, enable_auto_commit=False)
    try:
        records = list(consumer)
        assert {len(consumer.partitions_for_topic(t)) for t in cfg.topics[True] + cfg.topics[False]} == {3}
    finally:
        consumer.close()
    partitions: dict[str, set[int]] = {}
    order: dict[str, list[str]] = {}
    for r in records:
        event = json.loads(r.value)
        partitions.setdefault(r.key.decode(), set()).add(r.partition)
        order.setdefault(event["alert_id"], []).append(event["event_id"])
    assert len({p for ps in partitions.values() for p in ps}) > 1, "the patches spread over the partitions"
    assert all(len(ps) == 1 for ps in partitions.values()), "one patch, one partition"
    assert all(ids == sorted(ids, key=lambda i: int(i.rsplit("#", 1)[1])) for ids in order.values()), "in order"


def test_the_consumer_example_dedupes_skips_other_majors_and_reads_unknown_fields(run, kafka_broker):
    _, events, _, _ = run
    topic = f"example-{uuid.uuid4().hex[:8]}"
    payloads = [{**e.payload(), "simulated": False} for e in events[:6]]  # as if observed
    kafka_broker.create_topic(topic)
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
    for p in payloads + payloads[:3]:  # a redelivery of the first three
        producer.send(topic, json.dumps(p).encode())
    producer.send(topic, json.dumps({**payloads[0], "event_id": "future#1", "schema_version": "5.0"}).encode())
    producer.send(topic, json.dumps({**payloads[1], "event_id": "extra#1", "a_new_optional_field": [1, 2]}).encode())
    producer.send(topic, json.dumps({**payloads[2], "event_id": "sim#1", "simulated": True}).encode())
    producer.send(topic, json.dumps({**payloads[3], "event_id": "minor#1", "schema_version": "4.1"}).encode())
    producer.flush()
    producer.close()
    done = subprocess.run([sys.executable, "examples/consume_alerts.py", "--bootstrap", kafka_broker.bootstrap, "--topic",
                           topic, "--idle-seconds", "5"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 6 + 2, "each event once, the unknown field and the minor version read past, the other major " \
        "and the simulated set aside"
    assert lines[6:] == [lines[1], lines[3]]  # extra#1 and minor#1: the events they copy, printed again
    assert all(e.alert_id in line and e.frame_time in line for e, line in zip(events[:6], lines))
    assert "future#1: schema_version 5.0" in done.stderr and "sim#1: simulated" in done.stderr
