"""The JSOC near-real-time source, against a DRMS stand-in on loopback (JSOC itself cannot be reached here)."""
import time

import astropy.units as u
import httpx
import numpy as np
import pytest
from astropy.time import Time

from common.clock import CADENCE, slot_of_time, slot_time
from ingest.magnetogram import read_magnetogram
from serving.api import create_app
from serving.app import build
from serving.jsoc import UNREADY_AFTER_ERRORS, JsocSource
from serving.metrics import Metrics
from sim import SunConfig, SyntheticSun, write_hmi_series
from tests.drms_standin import DrmsStandIn
from tests.support import ServerThread
from tests.test_serving import config, wait_for

SERIES = "hmi.M_720s_nrt"
EMAIL = "forecaster@example.org"


def hmi_frames(folder, times) -> list:
    """Synthetic HMI frames (1024², quick to render) at ``times``."""
    return write_hmi_series(SyntheticSun(SunConfig(), seed=0), Time(times), folder, shape=(1024, 1024))


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Four 12-min HMI records on 2026-11-27."""
    t0 = Time("2026-11-27T00:00:00")
    return hmi_frames(tmp_path_factory.mktemp("jsoc"), t0 + np.arange(4) * 12 * u.min)


def source(tmp_path, server, metrics=None) -> JsocSource:
    incoming = tmp_path / "incoming"
    incoming.mkdir(exist_ok=True)
    return JsocSource(SERIES, EMAIL, incoming, tmp_path / "jsoc_state.json", metrics or Metrics(), server_url=server.url)


def test_fetches_new_records_once_across_restarts(tmp_path, records):
    with DrmsStandIn(SERIES, {EMAIL}) as server:
        for path in records[:3]:
            server.add(path)
        now = Time("2026-11-27T00:40:00").unix
        first = source(tmp_path, server)
        assert first.tick(now) == 3
        fetched = sorted((tmp_path / "incoming").glob("*.fits"))
        assert [read_magnetogram(p).instrument for p in fetched] == ["SDO/HMI"] * 3
        assert server.requests["jsoc_fetch"] == 1, "one export of the poll's record set"
        again = source(tmp_path, server)  # a restart: jsoc_state.json remembers what was fetched
        assert again.tick(now + 200) == 0 and server.requests["jsoc_fetch"] == 1, "nothing new: no export"
        server.add(records[3])
        assert again.tick(now + 400) == 1 and server.requests["jsoc_fetch"] == 2
        assert again.state.fetched == 1 and again.metrics.source_fetched._value.get() == 1


def test_history_fetches_one_record_per_slot_over_a_span(tmp_path):
    # the warm start's archive: two 12-min records in each of two 96-min slots; the one at each slot's time comes
    t0 = Time("2026-11-27T00:00:00")
    frames = hmi_frames(tmp_path / "frames", t0 + [0, 12, 96, 108] * u.min)
    with DrmsStandIn(SERIES, {EMAIL}) as server:
        for path in frames:
            server.add(path)
        src = source(tmp_path, server)
        got = list(src.history(t0, t0 + 2 * CADENCE))
        assert [read_magnetogram(p).time.isot[:16] for p in got] == ["2026-11-27T00:00", "2026-11-27T01:36"]
        assert server.requests["jsoc_fetch"] == 1 and src.state.fetched == 2, "one export for the whole span"
        # the live poll that follows does not fetch them again: one export for its two new records
        assert src.tick((t0 + 110 * u.min).unix) == 2 and server.requests["jsoc_fetch"] == 2


def test_backs_off_on_server_errors_and_reports_itself_unready(tmp_path, records):
    with DrmsStandIn(SERIES, {EMAIL}) as server:
        server.add(records[0])
        metrics = Metrics()
        src = source(tmp_path, server, metrics)
        server.fail_next = 100
        t = Time("2026-11-27T00:10:00").unix
        delays = []
        for _ in range(UNREADY_AFTER_ERRORS + 1):
            asked = sum(server.requests.values())
            assert src.tick(t) == 0
            assert sum(server.requests.values()) == asked + 1  # one failed request per poll
            assert src.tick(t + 1) == 0 and sum(server.requests.values()) == asked + 1  # backing off: not asked
            delays.append(src.state.next_poll - t)
            t = src.state.next_poll
        assert delays == [240.0, 480.0, 960.0, 1800.0]  # 2 min × 2ⁿ, at most 30 min
        assert not src.state.healthy and "HTTP" in src.state.last_error
        assert metrics.source_consecutive_errors._value.get() == UNREADY_AFTER_ERRORS + 1
        assert metrics.source_errors._value.get() == UNREADY_AFTER_ERRORS + 1
        server.fail_next = 0
        assert src.tick(t) == 1 and src.state.healthy and src.state.consecutive_errors == 0


def test_an_unregistered_address_is_refused_clearly(tmp_path, records):
    with DrmsStandIn(SERIES, {"someone-else@example.org"}) as server:
        server.add(records[0])
        src = source(tmp_path, server)
        assert src.tick(Time("2026-11-27T00:10:00").unix) == 0
        assert "email" in src.state.last_error.lower() or "address" in src.state.last_error.lower()


def test_the_service_scores_jsoc_frames_as_they_arrive_and_shows_the_source_in_ready(tmp_path, tiny_bundle):
    # Three 12-min records around the newest slot time at least 15 min past, so that one of them is within
    # slot_ready_offset of its slot's time and the slot is scored at once, wherever "now" falls between slots.
    slot = slot_of_time(Time(time.time() - 15 * 60 - CADENCE.to_value(u.s) / 2, format="unix"))
    with DrmsStandIn(SERIES, {EMAIL}) as server:
        for path in hmi_frames(tmp_path / "frames", slot_time(slot) + [-12, 0, 12] * u.min):
            server.add(path)
        app = build(config(tmp_path, tiny_bundle, source="jsoc", jsoc_email=EMAIL, jsoc_url=server.url)).start()
        try:
            with ServerThread(create_app(app.service)) as api:
                wait_for(lambda: app.service.store.newest_frame() is not None, timeout=30, what="a JSOC frame scored")
                ready = httpx.get(f"{api.url}/ready").json()
                assert ready["ready"] and ready["source"]["name"] == f"jsoc:{SERIES}"
                assert ready["source"]["fetched"] == 3 and ready["source"]["healthy"]
        finally:
            app.stop()


def test_a_warm_start_whose_archive_fails_goes_live_without_it(tmp_path, tiny_bundle):
    with DrmsStandIn(SERIES, {EMAIL}) as server:
        server.fail_next = 1000  # JSOC answers 500 to everything
        app = build(config(tmp_path, tiny_bundle, source="jsoc", jsoc_email=EMAIL, jsoc_url=server.url,
                           warm_start=True))
        warm = app.service.warm_start
        assert warm.state == "pending" and not warm.finished
        app.warm_start()
        assert warm.state == "failed" and warm.finished and warm.error and warm.frames == 0
        with ServerThread(create_app(app.service)) as api:
            assert httpx.get(f"{api.url}/ready").json()["warm_start"]["state"] == "failed"
        before = sum(server.requests.values())
        app.poll()  # the live poll is no longer held back
        assert sum(server.requests.values()) > before and app.source.state.consecutive_errors == 1
