"""Upgrades keep the history: a state written by fluxwatch 2.x (alert schema 2.1) is migrated at start, after a
backup, and the stream goes on.

``tests/fixtures/state-2.1.tar.xz`` is ``state.sqlite`` and ``videos/`` as fluxwatch at commit 54af4b8 (the last
release of alert schema 2.1) wrote them: its tiny test bundle (16-frame videos, model ``fw-527e4e686c05``), tiles
within ±15°, 19 frames of the synthetic Sun from 2000-06-01 (seed 0, 256²) fed one at a time, no Kafka (its outbox
still waits)."""
from __future__ import annotations

import json
import shutil
import sqlite3
import tarfile
from pathlib import Path

import astropy.units as u
import jsonschema
import pytest
from astropy.time import Time

from common.clock import slot_isot, slot_of_time
from contract.events import AlertEvent, EventKind, PatchStatus, Reason, schema_path
from serving.compose import open_service
from serving.migrate import MigrationError
from sim import SunConfig, SyntheticSun, write_fits_series
from tests.test_serving import config

FIXTURE = Path(__file__).parent / "fixtures" / "state-2.1.tar.xz"
MODEL = "fw-527e4e686c05"  # the model version the fixture's scores carry


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> list[Path]:
    """The fixture's 19 frames, then 4 more."""
    slot0 = int(slot_of_time(Time("2000-06-01T00:00:00")))
    return write_fits_series(SyntheticSun(SunConfig(), seed=0), range(slot0, slot0 + 23),
                             tmp_path_factory.mktemp("stream"), shape=(256, 256))


def old_state(tmp_path: Path, stream: list[Path], fixture: Path = FIXTURE) -> Path:
    """The state of ``fixture`` (the 2.x one by default) in ``tmp_path/svc``, with its frames' files in
    ``processed/``."""
    data = tmp_path / "svc"
    data.mkdir()
    with tarfile.open(fixture) as tar:
        tar.extractall(data, filter="data")
    (data / "processed").mkdir()
    for source, in sqlite3.connect(data / "state.sqlite").execute("SELECT source FROM frames"):
        shutil.copy(next(p for p in stream if p.name == source), data / "processed" / source)
    return data


def bundle_of(model_version: str, tiny_bundle: Path, tmp_path: Path) -> Path:
    """The tiny bundle, its manifest naming ``model_version`` (the upgrade keeps the model it ran)."""
    bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    manifest = json.loads((bundle / "manifest.json").read_text())
    (bundle / "manifest.json").write_text(json.dumps({**manifest, "model_version": model_version}, indent=1))
    return bundle


def narrow(cfg):
    """The test service's settings with the fixture's tiles (within ±15°)."""
    return cfg.model_copy(update={"lat_limit": 15 * u.deg})


def rows(data: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(data / "state.sqlite")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_a_2x_state_is_backed_up_migrated_and_goes_on(tmp_path, tiny_bundle, stream):
    data = old_state(tmp_path, stream)
    before = {e: json.loads(p) for e, p in rows(data, "SELECT event_id, payload FROM alerts")}
    waiting = rows(data, "SELECT seq, event_id FROM outbox WHERE delivered IS NULL")
    assert rows(data, "PRAGMA user_version") == [(0,)] and len(before) == 9 and len(waiting) == 45
    assert {e["schema_version"] for e in before.values()} == {"2.1"}

    service = open_service(narrow(config(tmp_path, bundle_of(MODEL, tiny_bundle, tmp_path))))
    assert rows(data, "PRAGMA user_version") == [(5,)]
    saved = next((data / "backups").iterdir())
    assert saved.name.startswith("before-migration-v0-")
    assert json.loads((saved / "backup.json").read_text())["state_version"] == 0
    assert len(list((saved / "videos").iterdir())) == len(list((data / "videos").iterdir())) == 4

    schema = json.loads(schema_path("alert-event").read_text())
    events = {e.event_id: e for e in service.store.reader().alerts()}
    assert events.keys() == before.keys()
    for event_id, e in events.items():
        old = before[event_id]
        jsonschema.validate(e.payload(), schema)
        assert e.schema_version == "4.0" and e.simulated  # the synthetic Sun's files say so
        assert (e.probability.model_dump(), e.onset.frame, e.frame, e.patch.id, e.event.value) == \
            (old["probability"], old["onset"]["frame"], old["frame"], old["patch"]["id"], old["event"])
        assert e.frame_time == old["frame_time"] + "Z" and e.provenance.model_version == MODEL
        assert e.provenance.bundle_digest == service.bundle.digest and e.provenance.instrument == "SOHO/MDI"
        assert e.provenance.t_rec and e.provenance.file.startswith("mdi.fd_M_96m_lev182.")
        seq = int(event_id.rsplit("#")[1])
        assert e.supersedes == (f"{e.alert_id}#{seq - 1}" if seq > 1 else None)
        assert e.reason == {EventKind.closed: Reason.video_full}.get(e.event)  # 16-frame videos fill up
        assert e.region.flux_positive_Mx > 0 and e.region.flux_negative_Mx > 0
    for event_id, topic, payload in rows(data, "SELECT event_id, topic, payload FROM outbox"):
        model = AlertEvent if event_id in events else PatchStatus
        assert model.model_validate_json(payload).simulated
        assert topic == ("fluxwatch.simulated.alerts.v4" if model is AlertEvent else "fluxwatch.simulated.patch-status.v4")
    assert [r[0] for r in rows(data, "SELECT seq FROM outbox WHERE delivered IS NULL")] == [s for s, _ in waiting]

    scored = rows(data, "SELECT COUNT(*) FROM scores")[0][0]
    for path in stream[19:]:
        shutil.copy(path, service.inbox.incoming)
    assert service.run_cycle() == 3  # the newest waits for its slot's window
    assert rows(data, "SELECT COUNT(*) FROM frames") == [(22,)]
    assert rows(data, "SELECT COUNT(*) FROM scores")[0][0] > scored
    latest = [p.latest for p in service.store.reader().patches() if p.latest is not None]
    assert latest and {s.frame_time for s in latest} == {slot_isot(rows(data, "SELECT MAX(slot) FROM frames")[0][0]) + "Z"}
    assert {e.event_id for e in service.store.reader().alerts()} >= events.keys()


def test_a_2x_state_of_another_model_is_left_as_it_was_with_the_way_out(tmp_path, tiny_bundle, stream):
    data = old_state(tmp_path, stream)
    with pytest.raises(MigrationError, match=f"scores of model {MODEL}, and the service's bundle is model .*start "
                                             f"this fluxwatch once with the bundle of {MODEL}"):
        open_service(narrow(config(tmp_path, tiny_bundle)))
    assert rows(data, "PRAGMA user_version") == [(0,)]
    assert {json.loads(p)["schema_version"] for p, in rows(data, "SELECT payload FROM alerts")} == {"2.1"}


FIXTURE_3 = Path(__file__).parent / "fixtures" / "state-3.0.tar.xz"
MODEL_3 = "fw-d98bacea2a3d"  # the model version the 3.0 fixture's scores carry


def test_a_3_0_state_is_backed_up_migrated_to_4_0_and_goes_on(tmp_path, tiny_bundle, stream):
    """``tests/fixtures/state-3.0.tar.xz`` is ``state.sqlite`` and ``videos/`` as fluxwatch wrote them at the last
    commit of alert schema 3.0 (the one before this test): the tiny test bundle (model ``fw-d98bacea2a3d``), tiles
    within ±15°, the same 19 frames fed one at a time, no Kafka (its outbox waits)."""
    data = old_state(tmp_path, stream, FIXTURE_3)
    before = {e: json.loads(p) for e, p in rows(data, "SELECT event_id, payload FROM alerts")}
    waiting = rows(data, "SELECT seq, event_id, topic FROM outbox WHERE delivered IS NULL")
    assert rows(data, "PRAGMA user_version") == [(3,)] and len(before) == 9 and waiting
    assert {e["schema_version"] for e in before.values()} == {"3.0"}
    assert {t for _, _, t in waiting} == {"fluxwatch.simulated.alerts", "fluxwatch.simulated.patch-status"}

    service = open_service(narrow(config(tmp_path, bundle_of(MODEL_3, tiny_bundle, tmp_path))))
    assert rows(data, "PRAGMA user_version") == [(5,)]
    saved = next((data / "backups").iterdir())
    assert saved.name.startswith("before-migration-v3-")

    schema = json.loads(schema_path("alert-event").read_text())
    assert schema_path("alert-event").name == "alert-event-4.0.schema.json"
    events = {e.event_id: e for e in service.store.reader().alerts()}
    assert events.keys() == before.keys()
    for event_id, e in events.items():
        old = before[event_id]
        jsonschema.validate(e.payload(), schema)
        assert e.schema_version == "4.0" and e.payload()["region"]["flux_positive_Mx"] == old["region"]["flux_positive_mx"]
        assert e.payload()["region"]["flux_negative_change_Mx"] == old["region"]["flux_negative_change_mx"]
        assert (e.event.value, e.reason, e.probability.model_dump(), e.onset.frame, e.supersedes, e.published) == \
            (old["event"], old["reason"], old["probability"], old["onset"]["frame"], old["supersedes"], old["published"])
    for event_id, topic, payload in rows(data, "SELECT event_id, topic, payload FROM outbox WHERE delivered IS NULL"):
        model = AlertEvent if event_id in events else PatchStatus
        assert model.model_validate_json(payload).simulated
        assert topic == ("fluxwatch.simulated.alerts.v4" if model is AlertEvent else "fluxwatch.simulated.patch-status.v4")
    assert [r[0] for r in rows(data, "SELECT seq FROM outbox WHERE delivered IS NULL")] == [s for s, _, _ in waiting]

    scored = rows(data, "SELECT COUNT(*) FROM scores")[0][0]
    for path in stream[19:]:
        shutil.copy(path, service.inbox.incoming)
    assert service.run_cycle() == 3
    assert rows(data, "SELECT COUNT(*) FROM scores")[0][0] > scored
    assert {e.schema_version for e in service.store.reader().alerts()} == {"4.0"}


FIXTURE_4 = Path(__file__).parent / "fixtures" / "state-4.tar.xz"
ANSWERS_4 = Path(__file__).parent / "fixtures" / "state-4-answers.json"


def test_a_4_state_gets_each_patch_s_status_and_answers_as_it_did(tmp_path, tiny_bundle, stream):
    """``tests/fixtures/state-4.tar.xz`` is ``state.sqlite`` and ``videos/`` as fluxwatch wrote them at commit
    8172862 (the last of state version 4): the checked-in tiny bundle, tiles within ±15°, the same 19 frames fed one
    at a time, no Kafka; ``state-4-answers.json`` holds that code's answers to ``GET /patches`` and to
    ``GET /patches/{id}`` for every patch it had seen. Migrated, the reads from the new table answer the same."""
    data = old_state(tmp_path, stream, FIXTURE_4)
    assert rows(data, "PRAGMA user_version") == [(4,)]
    assert not rows(data, "SELECT name FROM sqlite_master WHERE name = 'patch_status'")

    service = open_service(narrow(config(tmp_path, tiny_bundle)))
    assert rows(data, "PRAGMA user_version") == [(5,)]
    assert next((data / "backups").iterdir()).name.startswith("before-migration-v4-")
    answers, reader = json.loads(ANSWERS_4.read_text()), service.store.reader()
    assert len(answers["patches"]) == 2 and {p["passage_status"] for p in answers["patch"].values()} == {"open", "closed"}
    assert [p.model_dump(mode="json") for p in reader.patches()] == answers["patches"]
    assert {pid: reader.patch(pid).model_dump(mode="json") for pid in answers["patch"]} == answers["patch"]

    for path in stream[19:]:
        shutil.copy(path, service.inbox.incoming)
    assert service.run_cycle() == 3
    newest = slot_isot(rows(data, "SELECT MAX(slot) FROM frames")[0][0]) + "Z"
    latest = [p.latest for p in reader.patches()]
    assert latest and {s.frame_time for s in latest if s} == {newest}
    assert {p.patch_id for p in reader.patches()} == set(service.store.open_passages())
