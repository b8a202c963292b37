"""The HTTP API's contract against a real running service: /alerts pages and filters, RFC 9457 problem bodies,
the OpenAPI's models and bearer scheme, and the refusal to serve beyond loopback with the placeholder token."""
import subprocess
import sys
from http import HTTPStatus

import httpx
import pytest

from common.config import PLACEHOLDER_UPLOAD_TOKEN, ServiceConfig
from contract.events import AlertEvent
from serving.api import create_app
from serving.compose import open_service
from serving.store import Reader
from tests.support import ServerThread
from tests.test_serving import config, drop

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_bundle, frames):
    """(the service's every alert event as the store has it, the API's URL): a service that ingested the test
    frames (the tiny bundle's low threshold opens alerts)."""
    svc = open_service(config(tmp_path_factory.mktemp("svc"), tiny_bundle))
    drop(frames, svc.dir)
    svc.run_cycle()
    with ServerThread(create_app(svc)) as server:
        yield svc.store.reader().alerts(), server.url


def walk(url: str, **params) -> tuple[list[dict], int]:
    """Every event of ``GET /alerts`` with ``params``, following next_cursor; (events, pages)."""
    items, pages, cursor = [], 0, None
    while True:
        r = httpx.get(f"{url}/alerts", params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        page = r.json()
        items += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return items, pages
        assert len(page["items"]) == params["limit"], "only the last page is short"


def ids(events) -> list[str]:
    return [e["event_id"] if isinstance(e, dict) else e.event_id for e in events]


def test_pages_walk_every_alert_once_in_order(served):
    every, url = served
    assert len(every) > 10, "the test stream opens many alerts"
    items, pages = walk(url, limit=7)
    assert ids(items) == ids(every), "each event once, in the order published"
    assert pages == -(-len(every) // 7)
    assert [AlertEvent.model_validate(e) for e in items] == every, "items are the published events"
    default = httpx.get(f"{url}/alerts").json()
    assert ids(default["items"]) == ids(every[:100]) and default["has_more"] == (len(every) > 100)


def test_the_last_cursor_polls_for_events_published_later(tmp_path, tiny_bundle, frames):
    svc = open_service(config(tmp_path, tiny_bundle))
    with ServerThread(create_app(svc)) as server:
        empty = httpx.get(f"{server.url}/alerts").json()
        assert empty == {"items": [], "next_cursor": None, "has_more": False}
        drop(frames[:6], svc.dir)
        svc.run_cycle()
        first, _ = walk(server.url, limit=10)
        last = httpx.get(f"{server.url}/alerts", params={"limit": 10**3}).json()["next_cursor"]
        assert first and httpx.get(f"{server.url}/alerts", params={"cursor": last}).json() == \
            {"items": [], "next_cursor": last, "has_more": False}, "caught up: the cursor stays"
        drop(frames[6:], svc.dir)
        svc.run_cycle()
        later, _ = walk(server.url, limit=10, cursor=last)
        every = svc.store.reader().alerts()
    assert later and ids(first) + ids(later) == ids(every), "the events published since, each once"


def test_time_filters_split_the_alerts_at_a_frame_time(served):
    every, url = served
    times = sorted({e.frame_time for e in every})
    assert len(times) > 1
    t = times[len(times) // 2]
    since, _ = walk(url, since=t, limit=5)
    until, _ = walk(url, until=t, limit=5)
    assert ids(since) == ids(e for e in every if e.frame_time >= t) and since
    assert ids(until) == ids(e for e in every if e.frame_time < t) and until
    window, _ = walk(url, since=times[0], until=times[1], limit=5)
    assert ids(window) == ids(e for e in every if e.frame_time == times[0])


def test_kind_filter_keeps_the_kinds_asked_for(served):
    every, url = served
    kinds = {e.event for e in every}
    for kind in kinds:
        got, _ = walk(url, kind=kind.value, limit=5)
        assert ids(got) == ids(e for e in every if e.event == kind) and got
    both, _ = walk(url, kind=["opened", "closed"], limit=5)
    assert ids(both) == ids(e for e in every if e.event in ("opened", "closed"))
    r = httpx.get(f"{url}/alerts", params={"kind": "exploded"})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM and "kind" in r.json()["detail"]


def test_region_box_keeps_patch_centres_inside_it(served):
    every, url = served
    lon, lat = every[0].patch.carrington.lon, every[0].patch.carrington.lat
    box = {"lon_min": max(lon - 10, 0), "lon_max": min(lon + 10, 360), "lat_min": lat - 10, "lat_max": lat + 10}
    got, _ = walk(url, **box, limit=5)
    inside = [e for e in every if box["lon_min"] <= e.patch.carrington.lon <= box["lon_max"]
              and box["lat_min"] <= e.patch.carrington.lat <= box["lat_max"]]
    assert ids(got) == ids(inside) and every[0].event_id in ids(got) and len(got) < len(every)
    # lon_min above lon_max: a box across 0°, here every longitude but a 10° band around an event's
    anchor = next(e for e in every if 5 <= e.patch.carrington.lon < 355)
    lon_min, lon_max = anchor.patch.carrington.lon + 5, anchor.patch.carrington.lon - 5
    across, _ = walk(url, lon_min=lon_min, lon_max=lon_max, limit=50)
    outside = [e for e in every if e.patch.carrington.lon >= lon_min or e.patch.carrington.lon <= lon_max]
    assert ids(across) == ids(outside) and anchor.event_id not in ids(across) and across
    r = httpx.get(f"{url}/alerts", params={"lat_min": 20, "lat_max": -20})
    assert r.status_code == 422 and "lat_min=20.0 is above lat_max=-20.0" in r.json()["detail"]


def test_min_probability_keeps_events_at_or_above_it(served):
    every, url = served
    medians = sorted(e.probability.median for e in every)
    p = medians[len(medians) // 2]
    got, _ = walk(url, min_probability=p, limit=5)
    assert ids(got) == ids(e for e in every if e.probability.median >= p) and got
    assert httpx.get(f"{url}/alerts", params={"min_probability": min(1.0, medians[-1] + 1e-6)}).json()["items"] == []
    filtered, _ = walk(url, min_probability=p, kind="opened", limit=3)
    assert ids(filtered) == ids(e for e in every if e.probability.median >= p and e.event == "opened")


def test_simulated_keeps_the_synthetic_suns_events_or_the_observed_ones(served):
    every, url = served
    assert all(e.simulated for e in every), "the test frames are the synthetic Sun's"
    assert ids(walk(url, simulated="true", limit=50)[0]) == ids(every)
    assert walk(url, simulated="false", limit=50)[0] == []


def assert_problem(r: httpx.Response, status: int, path: str, *words: str) -> dict:
    assert r.status_code == status and r.headers["content-type"] == PROBLEM, r.text
    body = r.json()
    assert {k: body[k] for k in ("type", "status", "instance")} == {"type": "about:blank", "status": status, "instance": path}
    assert body["title"] and all(w in body["detail"] for w in words), body
    return body


def test_errors_are_problem_details(served):
    _, url = served
    assert_problem(httpx.get(f"{url}/patches/L000.00N00.00"), 404, "/patches/L000.00N00.00",
                   "no passage recorded for patch 'L000.00N00.00'")
    assert_problem(httpx.get(f"{url}/nowhere"), 404, "/nowhere", "Not Found")
    body = assert_problem(httpx.get(f"{url}/alerts", params={"limit": 0}), 422, "/alerts", "limit")
    assert body["title"] == HTTPStatus(422).phrase and body["errors"][0]["loc"] == ["query", "limit"]
    assert_problem(httpx.get(f"{url}/alerts", params={"since": "soon"}), 422, "/alerts", "since='soon' is not an ISO time")
    assert_problem(httpx.get(f"{url}/alerts", params={"cursor": "bm90IGEgY3Vyc29y"}), 422, "/alerts",
                   "is not a cursor this API gave")
    r = httpx.post(f"{url}/upload", files={"file": ("frame.fits", b"SIMPLE")})
    assert_problem(r, 401, "/upload", "missing or wrong bearer token")
    assert r.headers["www-authenticate"] == "Bearer"
    r = httpx.post(f"{url}/upload", files={"file": ("frame.fits", b"SIMPLE")}, headers={"Authorization": "Bearer nöpe".encode("latin-1")})
    assert_problem(r, 401, "/upload", "bearer token")


def test_an_internal_error_is_a_problem_that_keeps_the_exception_in_the_log(served, monkeypatch):
    _, url = served

    def broken(self):
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(Reader, "patches", broken)
    body = assert_problem(httpx.get(f"{url}/patches"), 500, "/patches", "internal error (RuntimeError)")
    assert "disk on fire" not in body["detail"]


def test_not_ready_is_a_problem_with_the_readiness_fields(tmp_path, tiny_bundle):
    with ServerThread(create_app(open_service(config(tmp_path, tiny_bundle)))) as server:
        body = assert_problem(httpx.get(f"{server.url}/ready"), 503, "/ready", "not ready: no frame ingested yet")
    assert body["ready"] is False and body["newest_frame"] is None and body["members"] == 2


def test_openapi_declares_the_models_and_the_bearer_scheme(served):
    _, url = served
    spec = httpx.get(f"{url}/openapi.json").json()
    schemas, paths = spec["components"]["schemas"], spec["paths"]
    assert {"AlertPage", "AlertEvent", "Problem", "Readiness", "Health", "UploadAccepted", "PatchDetail"} <= set(schemas)
    assert "HTTPValidationError" not in schemas, "validation errors are problems too"
    ok = {path: paths[path]["get" if path != "/upload" else "post"]["responses"]["20" + ("2" if path == "/upload" else "0")]
          for path in paths}
    assert ok["/alerts"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/AlertPage"}
    assert ok["/upload"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/UploadAccepted"}
    assert ok["/ready"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Readiness"}
    assert "application/x-npy" in ok["/patches/{patch_id}/video"]["content"]
    for path, status in (("/alerts", "422"), ("/patches/{patch_id}", "404"), ("/upload", "401"), ("/upload", "413"),
                         ("/ready", "503")):
        response = next(iter(paths[path].values()))["responses"][status]
        assert response["content"] == {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}, (path, status)
    assert spec["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http", "scheme": "bearer", "description": "the service's upload token (``--upload-token``)"}
    assert paths["/upload"]["post"]["security"] == [{"HTTPBearer": []}]
    assert all("security" not in op for path, item in paths.items() if path != "/upload" for op in item.values())
    alerts = {p["name"] for p in paths["/alerts"]["get"]["parameters"]}
    assert alerts == {"cursor", "limit", "since", "until", "kind", "lon_min", "lon_max", "lat_min", "lat_max",
                      "min_probability", "simulated"}


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True),
                                            ("localhost", True), ("0.0.0.0", False), ("::", False),
                                            ("192.168.1.5", False), ("sun.example.org", False)])
def test_loopback_hosts(host, loopback):
    assert ServiceConfig(http_host=host).loopback_only is loopback


def test_the_placeholder_token_is_refused_beyond_loopback(tmp_path):
    def serve(*args):
        return subprocess.run([sys.executable, "-m", "serving.main", "--data-dir", str(tmp_path / "svc"),
                               "--bundle", str(tmp_path / "no-bundle"), *args], capture_output=True, text=True, timeout=120)
    refused = serve("--host", "0.0.0.0")
    assert refused.returncode == 2
    assert (f"--host 0.0.0.0 listens beyond this machine, and the upload token is the placeholder "
            f"{PLACEHOLDER_UPLOAD_TOKEN!r}") in refused.stderr and "--upload-token" in refused.stderr
    # past the check (a real token; loopback with the placeholder) the service goes on to load its bundle
    for args in (("--host", "0.0.0.0", "--upload-token", "s3cret"), ("--host", "127.0.0.1")):
        went_on = serve(*args)
        assert went_on.returncode == 2 and "no manifest.json" in went_on.stderr and "listens beyond" not in went_on.stderr
