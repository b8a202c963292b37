"""Faults (issue 13): the real ``fluxwatch-serve`` killed, cut off from Kafka, out of disk, its state damaged.

Every run starts the service as a subprocess on a fresh data dir with the test
frames in ``incoming/``, the real Kafka broker and topics of its own, breaks it
and lets it (or its restart) finish; nothing waits on fixed sleeps, every wait
is on an event (the process's exit, the store's state, the API, the log):

* kill -9: :mod:`serving.faults` makes the process send itself SIGKILL the n-th
  time it reaches a named point (point and n drawn from a seeded RNG, the seed
  printed); the service is started again without the fault;
* the broker stops mid-run and comes back;
* the data dir is on a small tmpfs that fills up mid-run, then space is freed;
* ``state.sqlite`` is damaged: the service must refuse it, ``python -m serving.rebuild`` must rebuild it.

Each run is then compared with one uninterrupted run of the same frames (the reference):

* frames: every reference slot is in the ``frames`` table and every file in ``processed/``;
* alerts: the ``alerts`` table and ``GET /alerts`` hold the reference's events, payloads equal but for when
  they were published;
* Kafka: the alerts topics hold each reference event id exactly once, and nothing else;
* the JSON-lines alert log holds each event once.

The reliability variant's figures (kills, frames lost, alerts lost and duplicated, ...) go to
``build/reliability/faults.json`` for ``python -m devtools.reliability_summary``.
"""
from __future__ import annotations

import collections
import errno
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition

from serving.compose import open_service
from serving.faults import ENV, POINTS
from serving.rebuild import rebuild
from serving.store import SCHEMA, STATE_VERSION, StateError, Store
from tests.support import free_port
from tests.test_serving import config, drop, wait_for

REPORT = Path("build/reliability/faults.json")
#: The service's topics (flag --<name>-topic, topic <name>-<run's tag>); the test frames' events are simulated ones.
TOPICS = ("alerts", "status", "simulated-alerts", "simulated-status")
#: Fields of an alert event that differ between runs: when it was published.
WHEN = ("published",)
#: How long one service run may take to do its work (start, ONNX, the test frames) on a slow, busy machine.
RUN_TIMEOUT_S = 240


@dataclass(frozen=True)
class Reference:
    """What an uninterrupted run of the test frames stores."""

    slots: list[int]
    files: list[str]
    alerts: dict[str, dict]  # event id → payload
    frames_with_events: int


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_bundle, frames) -> Reference:
    """The test frames through one uninterrupted in-process service with the options of :func:`options`."""
    service = open_service(config(tmp_path_factory.mktemp("reference"), tiny_bundle))
    drop(frames, service.dir)
    service.run_cycle()
    events = [e.payload() for e in service.store.reader().alerts()]
    assert events, "the test frames must open alerts (the tiny bundle's threshold is low)"
    slots = [r[0] for r in service.store.db.execute("SELECT slot FROM frames ORDER BY slot")]
    return Reference(slots, sorted(p.name for p in frames), {e["event_id"]: e for e in events},
                     len({e["frame_time"] for e in events}))


@dataclass
class Tally:
    """The figures of ``faults.json``: what was done, and what was lost or duplicated (all must stay 0)."""

    seed: int = 0
    kills: int = 0
    kills_at_read: int = 0
    kills_at_video: int = 0
    kills_at_commit: int = 0
    kills_at_alert_log: int = 0
    kills_at_done: int = 0
    kills_at_published: int = 0
    broker_outages: int = 0
    disk_full_runs: int = 0
    corrupt_state_runs: int = 0
    frames_lost: int = 0
    frames_misfiled: int = 0
    alerts_lost: int = 0
    alerts_duplicated: int = 0
    alerts_unexpected: int = 0
    alerts_differing: int = 0
    log_lines_lost: int = 0
    log_lines_duplicated: int = 0
    seconds: float = 0.0

    def failures(self) -> dict[str, int]:
        """The figures that must be 0 and are not."""
        counts = ("seed", "kills", "broker_outages", "disk_full_runs", "corrupt_state_runs", "seconds")
        return {k: v for k, v in asdict(self).items() if v and k not in counts and not k.startswith("kills_at_")}


def options(data: Path, bundle: Path, bootstrap: str, tag: str) -> list[str]:
    """The test service's options (those of ``config`` in test_serving) on ``data``, with the topics of ``tag``."""
    return ["--source", "watch", "--data-dir", str(data), "--bundle", str(bundle), "--speedup", "23040",
            "--lat-limit-deg", "45", "--no-present-at-start", "--kafka", bootstrap,
            *(f"--{t}-topic={t}-{tag}" for t in TOPICS)]


class Served:
    """One ``fluxwatch-serve --source watch`` subprocess on ``data``, publishing to the topics of ``tag``;
    its output is appended to ``log`` (``<data>.log`` by default)."""

    def __init__(self, data: Path, bundle: Path, bootstrap: str, tag: str, fault: str | None = None,
                 log: Path | None = None):
        self.data, self.port, self.log = data, free_port(), log or data.with_name(data.name + ".log")
        env = {k: v for k, v in os.environ.items() if k != ENV} | ({ENV: fault} if fault else {})
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "serving.main", *options(data, bundle, bootstrap, tag), "--port", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, env=env)

    def stop(self) -> int:
        """SIGTERM (unless it exited), then its exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(30)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def progress(data: Path) -> tuple[int, int]:
    """(frames stored, outbox messages waiting) of the service on ``data``; (0, 0) before its state exists."""
    try:
        db = sqlite3.connect(f"file:{data / 'state.sqlite'}?mode=ro", uri=True, timeout=5)
        try:
            return (db.execute("SELECT COUNT(*) FROM frames").fetchone()[0],
                    db.execute("SELECT COUNT(*) FROM outbox WHERE delivered IS NULL").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:  # not created yet
        return 0, 0


def settled(data: Path, n_slots: int) -> bool:
    """Whether the service on ``data`` has stored ``n_slots`` frames, filed every file and delivered every message."""
    if any((data / "incoming").glob("*.fits")) or any((data / "pending").glob("*.fits")):
        return False
    return progress(data) == (n_slots, 0)


def topic_event_ids(bootstrap: str, topic: str) -> collections.Counter:
    """How many times each event id (the ``event_id`` header) is on ``topic``, read to its end offsets."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=20000)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        ids: collections.Counter = collections.Counter()
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            assert time.monotonic() < deadline, f"read {sum(ids.values())} records of {topic}, not up to its end"
            for records in consumer.poll(timeout_ms=500).values():
                ids.update(v.decode() for r in records for k, v in r.headers if k == "event_id")
        return ids
    finally:
        consumer.close()


def ready(served: Served) -> bool:
    """Whether the service's API answers ``GET /ready`` with 200."""
    try:
        return httpx.get(f"http://127.0.0.1:{served.port}/ready", timeout=5).status_code == 200
    except httpx.HTTPError:  # not listening yet
        return False


def finish(served: Served, ref: Reference) -> dict[str, dict]:
    """Let a running service finish every frame and deliver every message, then stop it; returns its
    ``GET /alerts`` (event id → payload)."""
    try:
        wait_for(lambda: (settled(served.data, len(ref.slots)) and ready(served)) or served.proc.poll() is not None,
                 RUN_TIMEOUT_S, "the service to finish the frames")
        assert served.proc.poll() is None, f"the service exited:\n{served.output()[-3000:]}"
        items = httpx.get(f"http://127.0.0.1:{served.port}/alerts", params={"limit": 1000}, timeout=10).json()["items"]
    finally:
        served.stop()
    return {e["event_id"]: e for e in items}


def scientific(event: dict) -> dict:
    """An event's payload without the fields that differ between runs (:data:`WHEN`)."""
    return {k: v for k, v in event.items() if k not in WHEN}


def check(data: Path, bootstrap: str, tag: str, api: dict[str, dict], ref: Reference, tally: Tally) -> None:
    """Count into ``tally`` what a finished run lost, duplicated or got wrong against the reference."""
    db = sqlite3.connect(data / "state.sqlite")
    try:
        slots = {r[0] for r in db.execute("SELECT slot FROM frames")}
        stored = {e: json.loads(p) for e, p in db.execute("SELECT event_id, payload FROM alerts")}
    finally:
        db.close()
    tally.frames_lost += len(set(ref.slots) - slots)
    tally.frames_misfiled += len(set(ref.files) - {p.name for p in (data / "processed").glob("*.fits")})
    on_kafka = topic_event_ids(bootstrap, f"alerts-{tag}") + topic_event_ids(bootstrap, f"simulated-alerts-{tag}")
    tally.alerts_lost += len(ref.alerts.keys() - on_kafka.keys()) + len(ref.alerts.keys() - stored.keys())
    tally.alerts_duplicated += sum(n - 1 for n in on_kafka.values())
    tally.alerts_unexpected += len(on_kafka.keys() - ref.alerts.keys()) + len(stored.keys() - ref.alerts.keys())
    tally.alerts_differing += sum(scientific(stored[e]) != scientific(p) for e, p in ref.alerts.items() if e in stored)
    tally.alerts_differing += api != stored
    logged = collections.Counter(json.loads(line)["event_id"] for line in (data / "alerts.jsonl").read_text().splitlines())
    tally.log_lines_lost += len(ref.alerts.keys() - logged.keys())
    tally.log_lines_duplicated += sum(n - 1 for n in logged.values())


def killed(data: Path, bundle: Path, bootstrap: str, tag: str, fault: str, n_slots: int) -> None:
    """Run the service on ``data`` with ``fault`` armed until it kills itself; it must die by SIGKILL."""
    served = Served(data, bundle, bootstrap, tag, fault)
    try:
        wait_for(lambda: served.proc.poll() is not None or settled(data, n_slots), RUN_TIMEOUT_S, f"the kill at {fault}")
    finally:
        served.stop()
    assert served.proc.returncode == -signal.SIGKILL, \
        f"the fault {fault} did not kill the service (exit {served.proc.returncode}):\n{served.output()[-3000:]}"


def kill_runs(n_kills: int, seed: int, root: Path, bundle: Path, frames: list[Path], broker, ref: Reference,
              tally: Tally) -> None:
    """``n_kills`` runs, each killed once at a point and arrival drawn by ``random.Random(seed)`` (every point
    in turn, in a shuffled order), then finished and checked against the reference."""
    rng = random.Random(seed)
    points = [p for _ in range(-(-n_kills // len(POINTS))) for p in rng.sample(POINTS, len(POINTS))][:n_kills]
    reached = {"alert-log": ref.frames_with_events, "published": 2}  # the others: once per frame
    for i, point in enumerate(points):
        fault = f"{point}:{rng.randint(1, reached.get(point, len(ref.slots)))}"
        data, tag = root / f"kill{i}", uuid.uuid4().hex[:8]
        (data / "incoming").mkdir(parents=True)
        drop(frames, data)
        killed(data, bundle, broker.bootstrap, tag, fault, len(ref.slots))
        print(f"run {i}: killed at {fault}")
        tally.kills += 1
        at = f"kills_at_{point.replace('-', '_')}"
        setattr(tally, at, getattr(tally, at) + 1)
        check(data, broker.bootstrap, tag, finish(Served(data, bundle, broker.bootstrap, tag), ref), ref, tally)


def broker_outage(root: Path, bundle: Path, frames: list[Path], broker, ref: Reference, tally: Tally) -> None:
    """The broker stops after the first frames: the service goes on storing frames while their messages wait in
    the outbox; the broker comes back and every message is delivered once."""
    data, tag = root / "outage", uuid.uuid4().hex[:8]
    (data / "incoming").mkdir(parents=True)
    drop(frames[:4], data)
    served = Served(data, bundle, broker.bootstrap, tag)
    try:
        wait_for(lambda: settled(data, 4), RUN_TIMEOUT_S, "the first frames")
        broker.stop()
        drop(frames[4:], data)
        wait_for(lambda: progress(data)[0] == len(ref.slots), RUN_TIMEOUT_S, "the frames stored while the broker is away")
        assert progress(data)[1] > 0 and served.proc.poll() is None, "the messages wait in the outbox"
    except BaseException:
        served.stop()
        raise
    finally:
        if not broker.running:
            broker.restart()
    tally.broker_outages += 1
    check(data, broker.bootstrap, tag, finish(served, ref), ref, tally)


def fill(path: Path) -> None:
    """Write zeros to ``path`` until its file system is full."""
    with path.open("wb", buffering=0) as f:
        for chunk in (2**20, 2**12):
            try:
                while True:
                    f.write(bytes(chunk))
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc


def full_disk(root: Path, bundle: Path, frames: list[Path], broker, ref: Reference, tally: Tally) -> None:
    """The data dir is on a 32 MiB tmpfs that fills up after the first frames: the next frame cannot be stored,
    the service logs why and keeps it in ``pending/`` (no crash, no crash loop); once space is freed, it and the
    rest are stored and the run equals the reference."""
    disk, tag = root / "disk", uuid.uuid4().hex[:8]
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(disk)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        data, staging = disk / "data", disk / "staging"
        (data / "incoming").mkdir(parents=True)
        (staging / "incoming").mkdir(parents=True)
        drop(frames[:5], data)
        drop(frames[5:], staging)
        served = Served(data, bundle, broker.bootstrap, tag, log=root / "disk.log")
        try:
            wait_for(lambda: settled(data, 5), RUN_TIMEOUT_S, "the first frames")
            fill(disk / "ballast")
            for path in sorted((staging / "incoming").iterdir()):  # a rename needs no space
                path.rename(data / "incoming" / path.name)
            wait_for(lambda: served.output().count(f"could not store {frames[5].name}") >= 2 or served.proc.poll() is not None,
                     RUN_TIMEOUT_S, "the full disk to be logged twice (a retry)")
            assert served.proc.poll() is None, f"the service died on a full disk:\n{served.output()[-3000:]}"
            refusal = next(line for line in served.output().splitlines() if "could not store" in line)
            assert "No space left on device" in refusal or "disk is full" in refusal, refusal
            assert progress(data)[0] == 5 and (data / "pending" / frames[5].name).exists(), "the frame waits"
            (disk / "ballast").unlink()
        except BaseException:
            served.stop()
            raise
        tally.disk_full_runs += 1
        check(data, broker.bootstrap, tag, finish(served, ref), ref, tally)
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def damage_header(path: Path) -> None:
    """Overwrite the SQLite header: not a database any more."""
    with path.open("r+b") as f:
        f.write(b"this is no longer a database file" * 3)


def damage_pages(path: Path) -> None:
    """Overwrite the second half of the file with 0xFF: malformed b-tree pages."""
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(size // 2)
        f.write(b"\xff" * (size - size // 2))


def damage_truncate(path: Path) -> None:
    """Cut the file to a third (a lost write, a disk that filled mid-copy)."""
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 3)


DAMAGES = {"header": damage_header, "pages": damage_pages, "truncated": damage_truncate}


def checkpointed(path: Path) -> Path:
    """``path`` with its write-ahead log folded in (so that damaging the file damages the whole state)."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return path


def corrupt_state(damage: str, root: Path, bundle: Path, frames: list[Path], broker, ref: Reference,
                  tally: Tally) -> None:
    """A finished run's ``state.sqlite`` is damaged: the service refuses to start (exit 2) with a message naming the
    file and the rebuild, no traceback; ``python -m serving.rebuild`` with the same options rebuilds it from
    ``processed/``, and the service, started again, has every frame and the reference's alerts, and publishes
    none twice."""
    data, tag = root / f"corrupt-{damage}", uuid.uuid4().hex[:8]
    (data / "incoming").mkdir(parents=True)
    drop(frames, data)
    check(data, broker.bootstrap, tag, finish(Served(data, bundle, broker.bootstrap, tag), ref), ref, tally)
    DAMAGES[damage](checkpointed(data / "state.sqlite"))
    refused = Served(data, bundle, broker.bootstrap, tag)
    try:
        assert refused.proc.wait(RUN_TIMEOUT_S) == 2, refused.output()[-3000:]
    finally:
        refused.stop()
    said = refused.output()
    assert f"{data / 'state.sqlite'} is damaged" in said and "python -m serving.rebuild" in said, said[-3000:]
    assert "Traceback" not in said, said[-3000:]
    rebuilt = subprocess.run([sys.executable, "-m", "serving.rebuild", *options(data, bundle, broker.bootstrap, tag)],
                             capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    tally.corrupt_state_runs += 1
    check(data, broker.bootstrap, tag, finish(Served(data, bundle, broker.bootstrap, tag), ref), ref, tally)


def draw_seed() -> int:
    """``FLUXWATCH_FAULT_SEED`` when set (to replay a run), else a fresh seed; printed either way."""
    seed = int(os.environ.get("FLUXWATCH_FAULT_SEED") or random.SystemRandom().randrange(2**31))
    print(f"fault seed {seed} (rerun with FLUXWATCH_FAULT_SEED={seed})")
    return seed


@pytest.mark.system
def test_a_few_kills_lose_and_duplicate_nothing(tmp_path, tiny_bundle, frames, kafka_broker, reference):
    """Three kill -9 runs at random points: after a restart, every frame is stored once and every alert is in
    the store, the API and on Kafka exactly once, equal to an uninterrupted run's."""
    tally = Tally()
    kill_runs(3, draw_seed(), tmp_path, tiny_bundle, frames, kafka_broker, reference, tally)
    assert tally.kills == 3 and not tally.failures(), tally


@pytest.mark.reliability
def test_faults_lose_and_duplicate_nothing(tmp_path, tiny_bundle, frames, kafka_broker, reference):
    """The reliability suite's faults: 24 kill -9 runs (every point four times), a broker outage, a full disk and
    two damaged states; the figures go to faults.json and every loss, duplicate or difference must be 0."""
    t0 = time.monotonic()
    tally = Tally(seed=draw_seed())
    try:
        kill_runs(24, tally.seed, tmp_path, tiny_bundle, frames, kafka_broker, reference, tally)
        broker_outage(tmp_path, tiny_bundle, frames, kafka_broker, reference, tally)
        full_disk(tmp_path, tiny_bundle, frames, kafka_broker, reference, tally)
        for damage in ("header", "truncated"):
            corrupt_state(damage, tmp_path, tiny_bundle, frames, kafka_broker, reference, tally)
    finally:
        tally.seconds = round(time.monotonic() - t0, 1)
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(json.dumps(asdict(tally)))
    assert tally.kills >= 20 and not tally.failures(), tally


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_state_database_is_refused_with_its_name_and_the_way_out(tmp_path, damage):
    """A damaged ``state.sqlite`` stops the store at once with a :class:`StateError` naming the file and the
    rebuild, not a traceback from deep inside sqlite3 at the first query."""
    store = Store(tmp_path, 16, 8)
    with store.db:
        store.db.executemany("INSERT INTO frames VALUES (?, ?, ?, ?)",
                             [(slot, "2000-06-01T00:00:00", f"frame{slot}.fits", 0.0) for slot in range(5000)])
    store.db.close()
    DAMAGES[damage](checkpointed(tmp_path / "state.sqlite"))
    with pytest.raises(StateError, match=f"{tmp_path / 'state.sqlite'} is damaged .*python -m serving.rebuild"):
        Store(tmp_path, 16, 8)


def test_a_state_of_another_version_is_refused_and_rebuilt(tmp_path, tiny_bundle, frames):
    """A ``state.sqlite`` of a version with no migration to this one (a newer fluxwatch's) is refused by its version,
    not misread at the first query; the rebuild replays processed/ into a state of this version."""
    (tmp_path / "svc").mkdir()
    old = sqlite3.connect(tmp_path / "svc" / "state.sqlite")
    old.executescript(SCHEMA + "PRAGMA user_version = 7;")  # a newer fluxwatch's: no migration leads back from it
    old.close()
    with pytest.raises(StateError, match="holds state version 7, written by another fluxwatch .* version 5: alert "
                                         "schema 4.0.*python -m serving.rebuild"):
        Store(tmp_path / "svc", 16, 8)
    (tmp_path / "svc" / "processed").mkdir()
    for f in frames[:2]:
        shutil.copy(f, tmp_path / "svc" / "processed" / f.name)
    cfg = config(tmp_path, tiny_bundle)
    assert rebuild(cfg)[0] == 2
    assert sqlite3.connect(tmp_path / "svc" / "state.sqlite").execute("PRAGMA user_version").fetchone()[0] == 5


def test_damaged_source_state_files_are_refused_with_their_names(tmp_path):
    """A damaged ``feed.json`` or ``jsoc_state.json`` is named, with what deleting it does."""
    from serving.feed import SyntheticFeed
    from serving.jsoc import JsocSource
    from serving.metrics import Metrics

    (tmp_path / "feed.json").write_text('{"next_slot": ')
    with pytest.raises(StateError, match=f"{tmp_path / 'feed.json'} is damaged .*delete it"):
        SyntheticFeed(tmp_path, "2000-06-01T00:00:00")
    (tmp_path / "jsoc_state.json").write_text("[1, 2")
    with pytest.raises(StateError, match=f"{tmp_path / 'jsoc_state.json'} is damaged .*delete it"):
        JsocSource("hmi.M_720s_nrt", "x@example.org", tmp_path, tmp_path / "jsoc_state.json", Metrics())


@pytest.mark.system
def test_a_backup_of_a_running_service_restores_into_a_fresh_folder_and_the_stream_goes_on(
        tmp_path, tiny_bundle, frames, kafka_broker, reference):
    """``fluxwatch-backup create`` while the service runs; it goes on with more frames and publishes their alerts,
    then its data dir is lost. ``fluxwatch-backup restore`` into a fresh folder, and the whole stream fed again: every frame is stored,
    every alert of the reference is in the restored state and on Kafka exactly once."""
    data, tag, saved = tmp_path / "live", uuid.uuid4().hex[:8], tmp_path / "backup"
    (data / "incoming").mkdir(parents=True)
    drop(frames[:5], data)
    served = Served(data, tiny_bundle, kafka_broker.bootstrap, tag)
    try:
        wait_for(lambda: settled(data, 5), RUN_TIMEOUT_S, "the first frames")
        made = subprocess.run([sys.executable, "-m", "serving.backup", "create", str(saved), "--data-dir", str(data)],
                              capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        assert made.returncode == 0, made.stdout + made.stderr
        drop(frames[5:], data)
    except BaseException:
        served.stop()
        raise
    finish(served, reference)  # it went on: alerts after the backup reached Kafka
    info = json.loads((saved / "backup.json").read_text())
    assert info["frames"] == 5 and info["state_version"] == STATE_VERSION and info["videos"] == len(list((saved / "videos").iterdir()))
    assert 0 < info["events"] < len(reference.alerts)  # the events after the backup are decided again: none twice

    fresh = tmp_path / "restored"
    restored = subprocess.run([sys.executable, "-m", "serving.backup", "restore", str(saved),
                               *options(fresh, tiny_bundle, kafka_broker.bootstrap, tag)],
                              capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    again = subprocess.run([sys.executable, "-m", "serving.backup", "restore", str(saved), "--data-dir", str(fresh)],
                           capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert again.returncode == 2 and f"{fresh} holds a state already" in again.stderr
    (fresh / "incoming").mkdir(parents=True, exist_ok=True)
    drop(frames, fresh)  # the source delivers the stream again: the slots the backup holds are superseded
    api = finish(Served(fresh, tiny_bundle, kafka_broker.bootstrap, tag), reference)

    db = sqlite3.connect(fresh / "state.sqlite")
    slots = [r[0] for r in db.execute("SELECT slot FROM frames ORDER BY slot")]
    stored = {e: json.loads(p) for e, p in db.execute("SELECT event_id, payload FROM alerts")}
    db.close()
    assert slots == reference.slots
    assert stored.keys() == reference.alerts.keys() == api.keys()
    assert all(scientific(stored[e]) == scientific(p) for e, p in reference.alerts.items())
    on_kafka = topic_event_ids(kafka_broker.bootstrap, f"alerts-{tag}") + \
        topic_event_ids(kafka_broker.bootstrap, f"simulated-alerts-{tag}")
    assert on_kafka.keys() == reference.alerts.keys()
    assert max(on_kafka.values()) == 1, {e: n for e, n in on_kafka.items() if n > 1}
