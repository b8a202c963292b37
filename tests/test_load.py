"""Load (issue 13): concurrent API readers and uploaders against a real uvicorn server while the service ingests.

A feeder delivers a stream of frames at an accelerated cadence, each either dropped into ``incoming/`` (then a
cycle, as the scheduler runs it) or uploaded (``POST /upload`` scores it after the response), and times each from
delivery to commit. Meanwhile reader threads walk ``GET /patches``, ``GET /patches/{id}`` and the pages of
``GET /alerts``, and uploader threads post frames already scored (accepted, then superseded). Every response must
be the expected status, and every read consistent with the store's one-transaction commit of a frame: the
``latest`` scores of one ``/patches`` response share one frame time, within the newest frame ``/ready`` gave
before and after it; no ``/alerts`` page shows an event of a frame newer than ``/ready`` gives after it, nor an
event twice. The same stream is ingested without the load first, to compare ingest latency.

The fast part (a short stream, few threads) checks the consistency only; the ``reliability`` part runs a longer
stream under 8 readers and 2 uploaders and records the figures (requests per second, p50/p95 latencies, ingest
latency idle and loaded) in ``build/reliability/load.json``. Timings are reported, not asserted, beyond generous
bounds: this is a shared 2-core machine.
"""
import json
import random
import shutil
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
import numpy as np
import pytest
from astropy.time import Time

from common.clock import slot_of_time
from serving.api import create_app
from serving.compose import open_service
from serving.service import Service
from sim import SunConfig, SyntheticSun, write_fits_series
from tests.conftest import START
from tests.support import ServerThread
from tests.test_serving import config, drop

REPORT = Path(__file__).parents[1] / "build" / "reliability" / "load.json"
AUTH = {"Authorization": "Bearer s3cret"}  # tests.test_serving.config's upload token
CADENCE_S = 0.25  # the stream's cadence: 96 min / 23040


class Load:
    """What the load threads saw: latencies (s) by request kind, unexpected responses, inconsistent reads, and
    rounds each thread finished (a reader's: /patches, a patch and every /alerts page; an uploader's: an upload)."""

    def __init__(self):
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.inconsistent: list[str] = []
        self.rounds: dict[str, int] = defaultdict(int)
        self.stop = threading.Event()

    @property
    def requests(self) -> int:
        return sum(map(len, self.latency.values()))

    def get(self, client: httpx.Client, kind: str, path: str, expect=(200,), **kw) -> httpx.Response:
        t0 = time.perf_counter()
        r = client.request("POST" if kind == "upload" else "GET", path, **kw)
        self.latency[kind].append(time.perf_counter() - t0)
        if r.status_code not in expect:
            self.errors.append(f"{kind} {path}: {r.status_code} {r.text[:300]}")
        return r

    def newest(self, client: httpx.Client) -> str:
        """The newest frame's time by ``/ready`` ('' before the first)."""
        return self.get(client, "ready", "/ready", expect=(200, 503)).json()["newest_frame"] or ""

    def read(self, url: str, seed: int) -> None:
        """A reader: /patches and one patch, then every /alerts page, over and over, checking each read."""
        rng = random.Random(seed)
        with httpx.Client(base_url=url, timeout=120) as client:
            while not self.stop.is_set():
                before = self.newest(client)
                patches = self.get(client, "patches", "/patches").json()
                after = self.newest(client)
                times = {p["latest"]["frame_time"] for p in patches if p["latest"]}
                if len(times) > 1 or any(not before <= t <= after for t in times):
                    self.inconsistent.append(f"/patches latest at {sorted(times)}, /ready {before} then {after}")
                if patches:
                    one = rng.choice(patches)["patch_id"]
                    history = self.get(client, "patch", f"/patches/{one}").json()["history"]
                    if history and history[-1]["frame_time"] > self.newest(client):
                        self.inconsistent.append(f"/patches/{one} at {history[-1]['frame_time']}, past /ready")
                self.walk_alerts(client)
                self.rounds[threading.current_thread().name] += 1

    def walk_alerts(self, client: httpx.Client) -> None:
        seen: set[str] = set()
        params: dict = {"limit": 7}
        while not self.stop.is_set():
            page = self.get(client, "alerts", "/alerts", params=params).json()
            after = self.newest(client)
            for event in page["items"]:
                if event["frame_time"] > after or event["event_id"] in seen:
                    self.inconsistent.append(f"/alerts {event['event_id']} of {event['frame_time']}, /ready {after}, "
                                             f"{'again' if event['event_id'] in seen else 'first'}")
                seen.add(event["event_id"])
            if not page["has_more"]:
                return
            params["cursor"] = page["next_cursor"]

    def upload(self, url: str, frame: Path) -> None:
        """An uploader: posts a frame whose slot is scored already (202, then superseded), over and over."""
        with httpx.Client(base_url=url, timeout=120, headers=AUTH) as client:
            while not self.stop.is_set():
                self.get(client, "upload", "/upload", expect=(202,), files={"file": (frame.name, frame.read_bytes())})
                self.rounds[threading.current_thread().name] += 1


def feed(service: Service, url: str, frames: list[Path]) -> list[float]:
    """Deliver a stream, a frame per cadence (even ones dropped, odd ones uploaded), each once the one before is
    committed; returns each frame's seconds from delivery to commit."""
    reader = service.store.reader()
    committed = "SELECT COUNT(*) FROM frames"
    start = reader.db.execute(committed).fetchone()[0]
    latencies = []
    with httpx.Client(base_url=url, timeout=120, headers=AUTH) as client:
        for k, frame in enumerate(frames):
            t0 = time.perf_counter()
            if k % 2 == 0:
                shutil.copy(frame, service.inbox.incoming / frame.name)
                service.run_cycle()
            else:
                r = client.post("/upload", files={"file": (frame.name, frame.read_bytes())})
                assert r.status_code == 202, r.text
            while reader.db.execute(committed).fetchone()[0] < start + k + 1:
                time.sleep(0.002)
            latencies.append(time.perf_counter() - t0)
            time.sleep(CADENCE_S)
    return latencies


def run(root: Path, bundle: Path, frames: list[Path], readers: int = 0, uploaders: int = 0) -> tuple[list[float], Load, float]:
    """A fresh service ingests ``frames`` under the load (none: the idle run); (ingest latencies of all but the first
    frame, which opens every passage and is ingested before the load starts; the load; its duration in s)."""
    service = open_service(config(root, bundle))
    load = Load()
    with ServerThread(create_app(service)) as server:
        feed(service, server.url, frames[:1])
        threads = [threading.Thread(target=load.read, args=(server.url, i)) for i in range(readers)]
        threads += [threading.Thread(target=load.upload, args=(server.url, frames[0])) for _ in range(uploaders)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        try:
            latencies = feed(service, server.url, frames[1:])
            deadline = time.time() + 120  # a short stream on a busy machine: each thread finishes a round at least
            while any(load.rounds[t.name] < 1 for t in threads) and time.time() < deadline:
                time.sleep(0.05)
        finally:
            load.stop.set()
            for t in threads:
                t.join(120)
        duration = time.perf_counter() - t0
    assert service.store.db.execute("SELECT COUNT(*) FROM frames").fetchone()[0] == len(frames), "every frame once"
    return latencies, load, duration


def check(load: Load, threads: int) -> None:
    assert not load.errors, load.errors[:5]
    assert not load.inconsistent, load.inconsistent[:5]
    assert len(load.rounds) == threads and min(load.rounds.values()) >= 1, load.rounds


def ms(values: list[float], q: float) -> float:
    return round(1000 * float(np.percentile(values, q)), 1)


def test_reads_stay_consistent_while_the_service_ingests(tmp_path, tiny_bundle, frames):
    """A short stream under 2 readers and an uploader: every read consistent, every response as expected."""
    _, load, _ = run(tmp_path, tiny_bundle, frames[:6], readers=2, uploaders=1)
    check(load, 3)


def test_a_patch_read_sees_one_frame_when_a_frame_commits_during_it(tmp_path, tiny_bundle, frames):
    """The invariant the load checks, made to happen: a frame committed while ``Reader.patch`` is between its
    queries (here: right after it read the patch's status, before its history) is not in its answer."""
    service = open_service(config(tmp_path, tiny_bundle))
    drop(frames[:2], service.dir)
    service.run_cycle()
    reader = service.store.reader()
    pid = next(p.patch_id for p in reader.patches() if p.latest)
    history, calls = reader.history, []

    def commit_a_frame_first(*args):
        calls.append(args)
        drop(frames[2:3], service.dir)
        assert service.run_cycle() == 1
        return history(*args)

    reader.history = commit_a_frame_first  # type: ignore[method-assign]
    detail = reader.patch(pid)
    reader.history = history  # type: ignore[method-assign]
    assert len(calls) == 1 and detail is not None and detail.history
    assert int(slot_of_time(Time(detail.history[-1].frame_time))) == service.store.newest_frame()[0] - 1, \
        "the frame before the commit"
    assert len(reader.patch(pid).history) == len(detail.history) + 1


@pytest.fixture(scope="module")
def long_stream(tmp_path_factory) -> list[Path]:
    """36 slots of the synthetic Sun from START (missing slots skipped), like the ``frames`` fixture."""
    slot0 = int(slot_of_time(START))
    return write_fits_series(SyntheticSun(SunConfig(), seed=0), range(slot0, slot0 + 36),
                             tmp_path_factory.mktemp("stream"), shape=(256, 256))


@pytest.mark.reliability
def test_many_readers_and_uploaders_while_the_service_ingests(tmp_path, tiny_bundle, long_stream):
    """8 readers and 2 uploaders over a 36-slot stream: consistent reads, and ingest latency that holds (loaded p95
    within a generous bound of the idle one); the figures go to build/reliability/load.json."""
    readers, uploaders = 8, 2
    idle, _, _ = run(tmp_path / "idle", tiny_bundle, long_stream)
    loaded, load, duration = run(tmp_path / "loaded", tiny_bundle, long_stream, readers, uploaders)
    report = {"load_readers": readers, "load_uploaders": uploaders, "load_frames": len(long_stream),
              "load_requests": load.requests, "load_rps": round(load.requests / duration, 1),
              **{f"load_{q}_{kind}_ms": ms(values, int(q[1:])) for kind, values in sorted(load.latency.items())
                 for q in ("p50", "p95")},
              "load_ingest_p50_idle_s": round(float(np.percentile(idle, 50)), 3),
              "load_ingest_p95_idle_s": round(float(np.percentile(idle, 95)), 3),
              "load_ingest_p50_loaded_s": round(float(np.percentile(loaded, 50)), 3),
              "load_ingest_p95_loaded_s": round(float(np.percentile(loaded, 95)), 3),
              "load_inconsistent_reads": len(load.inconsistent), "load_errors": len(load.errors)}
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=1))
    check(load, readers + uploaders)
    assert report["load_ingest_p95_loaded_s"] <= 10 * report["load_ingest_p95_idle_s"] + 2.0, report
