"""The forecaster's live pages and the push channel, over a real service and a real uvicorn server: the pages in
headless Chromium (the ``browser`` fixture), the stream read as a client reads it (httpx, Server-Sent Events).

The tiny bundle's threshold is low, so the test frames open alerts: the disk page must box them, a patch page must
draw its passage's curve, the stream must carry every event once, in order, and resume after a restart.
"""
from __future__ import annotations

import io
import json
import re
import threading
import time

import astropy.units as u
import httpx
import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from common.clock import slot_isot, slot_of_time
from common.patches import PatchGrid
from ingest.magnetogram import read_magnetogram
from serving import pages
from serving.api import create_app
from serving.compose import open_service
from serving.diskview import SIZE, draw
from tests.support import ServerThread
from tests.test_serving import config, drop


def wait(driver, condition, timeout=20.0, what="the page"):
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition, f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_bundle, frames):
    """A service that ingested the test frames (its alerts open), its API and pages on a real server."""
    svc = open_service(config(tmp_path_factory.mktemp("live"), tiny_bundle))
    drop(frames, svc.dir)
    svc.run_cycle()
    with ServerThread(create_app(svc)) as server:
        yield svc, server.url


def open_alert_patches(svc) -> set[str]:
    return {p.patch_id for p in svc.store.reader().patches() if p.alert.value == "open"}


# ---- the views ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["mdi", "hmi"])
def test_a_view_is_north_up_and_outlines_the_patches_on_the_disk(which, real_mdi_file, real_hmi_file):
    """The picture has north up whatever the instrument's roll (HMI is stored north down), and the outlines
    are where the patches' corners project."""
    path = real_mdi_file if which == "mdi" else real_hmi_file
    mag = read_magnetogram(path)  # as stored: HMI north down
    grid = PatchGrid()
    png, view = draw(mag, grid, path.name)
    picture = np.asarray(Image.open(io.BytesIO(png)))
    assert picture.shape == (SIZE, SIZE) and view.size == SIZE
    on_disk = grid.on_disk(mag.observer)
    assert 0.8 * on_disk.sum() <= len(view.outlines) <= on_disk.sum()
    cx, cy = view.centre
    assert np.hypot(cx - SIZE / 2, cy - SIZE / 2) < 0.1 * SIZE and 0.2 * SIZE < view.radius < 0.55 * SIZE
    north = [pid for pid in view.outlines if grid[pid].lat > 60]
    south = [pid for pid in view.outlines if grid[pid].lat < -60]
    assert north and south
    assert max(np.mean(view.outlines[p], axis=0)[1] for p in north) < cy < min(np.mean(view.outlines[p], axis=0)[1] for p in south)
    for outline in view.outlines.values():  # every point within the limb (0.5 px of drawing)
        assert np.all(np.hypot(*(np.asarray(outline) - (cx, cy)).T) <= view.radius * 1.02 + 0.5)


def test_views_are_kept_for_retain_views_and_an_older_frame_answers_410(tmp_path, tiny_bundle, frames, browser):
    svc = open_service(config(tmp_path, tiny_bundle, retain_views=(5 / 15) * u.day))
    drop(frames, svc.dir)
    svc.run_cycle()
    slots = [int(p.stem) for p in (svc.dir / "views").glob("*.json")]
    newest = svc.store.newest_frame()[0]
    assert slots and min(slots) >= newest - 5 and max(slots) == newest
    first = svc.store.db.execute("SELECT MIN(slot) FROM frames").fetchone()[0]  # scored, its view gone since
    assert first < newest - 5
    with ServerThread(create_app(svc)) as server:
        response = httpx.get(f"{server.url}/", params={"at": slot_isot(first)})
        assert response.status_code == 410 and "retain_views" in response.text
        assert httpx.get(f"{server.url}/views/{newest - 10}.png").status_code == 410
        picture = httpx.get(f"{server.url}/views/{newest}.png")
        assert picture.status_code == 200 and Image.open(io.BytesIO(picture.content)).size == (SIZE, SIZE)
        assert httpx.get(f"{server.url}/", params={"at": "soon"}).status_code == 422
        browser.get(f"{server.url}/?at={slot_isot(first)}")
        assert browser.find_element(By.TAG_NAME, "h1").text == "410 Gone"
        browser.get(f"{server.url}/?at={slot_isot(newest)}")
        assert "An earlier frame" in browser.find_element(By.CLASS_NAME, "historic").text
        assert browser.find_element(By.ID, "connection").text == "not live"


# ---- the pages in a browser ---------------------------------------------------------------------------------

def test_the_disk_page_draws_the_grid_shaded_by_score_and_boxes_the_open_alerts(served, browser):
    svc, url = served
    view = svc.views.view(svc.views.slots()[-1])
    scores = svc.store.reader().scores_at(view.slot)
    browser.get(url + "/")
    wait(browser, ec.presence_of_element_located((By.ID, "disk-svg")))
    patches = browser.find_elements(By.CSS_SELECTOR, "#disk-svg a.patch")
    assert len(patches) == len(view.outlines) > 30
    shaded = {p.get_attribute("data-patch"): p.get_attribute("data-score") for p in patches}
    assert {pid for pid, s in shaded.items() if s} == set(scores) & set(view.outlines)
    expected = open_alert_patches(svc) & set(view.outlines)
    assert expected, "the tiny bundle opens alerts on the test frames"
    boxes = browser.find_elements(By.CSS_SELECTOR, "#disk-svg g.mark.open")
    assert {b.get_attribute("data-patch") for b in boxes} == expected
    assert all(b.find_element(By.TAG_NAME, "text").text.startswith(b.get_attribute("data-patch")) for b in boxes)
    assert browser.find_element(By.CSS_SELECTOR, "header .state").text == "ready"
    wait(browser, lambda d: d.find_element(By.ID, "connection").text == "live", what="the push channel")
    # the keyboard reaches the patches; focus shows the figures; Enter opens the patch
    body = browser.find_element(By.TAG_NAME, "body")
    for _ in range(40):
        body.send_keys(Keys.TAB)
        focused = browser.switch_to.active_element
        if "patch" in (focused.get_attribute("class") or ""):
            break
    pid = focused.get_attribute("data-patch")
    assert pid and browser.find_element(By.ID, "focus").text.startswith(pid)
    focused.send_keys(Keys.ENTER)
    wait(browser, ec.presence_of_element_located((By.ID, "curve")), what="the patch page")
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith(pid)


def test_a_patch_page_draws_its_curve_with_the_threshold_and_the_onset(served, browser):
    svc, url = served
    pid = sorted(open_alert_patches(svc))[0]
    detail = svc.store.reader().patch(pid)
    events = [e for e in svc.store.reader().alerts() if e.patch_id == pid and e.passage == detail.alert["passage"]]
    browser.get(f"{url}/patch/{pid}")
    curve = wait(browser, ec.presence_of_element_located((By.ID, "curve")))
    median = curve.find_element(By.CSS_SELECTOR, "polyline.median").get_attribute("points").split()
    assert len(median) == len(detail.history) >= 3
    # the threshold line and the onset line where the plot's axes put them
    threshold_y = float(curve.find_element(By.CSS_SELECTOR, "line.threshold").get_attribute("y1"))
    assert threshold_y == pytest.approx(pages.TOP + (pages.H - pages.TOP - pages.BOTTOM) * (1 - svc.bundle.alert_threshold),
                                        abs=0.1)
    onset_x = float(curve.find_element(By.CSS_SELECTOR, "line.onset").get_attribute("x1"))
    assert onset_x == pytest.approx(pages.LEFT + (pages.W - pages.LEFT - pages.RIGHT) * detail.onset.frame / svc.bundle.n_frames,
                                    abs=0.1)
    first_x = float(median[0].split(",")[0])
    assert first_x == pytest.approx(pages.LEFT + (pages.W - pages.LEFT - pages.RIGHT) * detail.history[0].frame
                                    / svc.bundle.n_frames, abs=0.1)
    assert len(curve.find_elements(By.CSS_SELECTOR, "path.event-mark")) == len(events) >= 1
    rows = browser.find_elements(By.CSS_SELECTOR, "#events tbody tr")
    assert [r.get_attribute("data-event-id") for r in rows] == [e.event_id for e in reversed(events)]
    json_link = rows[0].find_element(By.LINK_TEXT, "JSON").get_attribute("href")
    answer = httpx.get(json_link)
    assert answer.status_code == 200, (json_link, answer.text)
    assert answer.json()["event_id"] == events[-1].event_id
    # the frames: the sheet is there and the scrubber moves through it
    scrubber = browser.find_element(By.ID, "scrubber")
    assert int(scrubber.get_attribute("max")) == detail.history[-1].frame
    scrubber.send_keys(Keys.HOME)
    assert browser.find_element(By.ID, "frame-label").text.startswith("frame 0")
    sheet = httpx.get(f"{url}/patches/{pid}/frames.png")
    assert sheet.status_code == 200 and int(sheet.headers["x-columns"]) >= 1
    assert browser.find_elements(By.CSS_SELECTOR, "#flux polyline.flux.unsigned")


@pytest.mark.system  # live ingest beside an open page or stream, and a restart: end to end
def test_an_event_published_while_the_page_is_open_appears_without_a_reload(tmp_path, tiny_bundle, frames, browser):
    svc = open_service(config(tmp_path, tiny_bundle))
    drop(frames[:6], svc.dir)
    svc.run_cycle()
    before = {e.event_id for e in svc.store.reader().alerts()}
    with ServerThread(create_app(svc)) as server:
        browser.get(server.url + "/")
        wait(browser, lambda d: d.find_element(By.ID, "connection").text == "live", what="the push channel")
        browser.execute_script("window.notReloaded = true")
        drop(frames[6:], svc.dir)
        svc.run_cycle()
        new = [e for e in svc.store.reader().alerts() if e.event_id not in before]
        assert new, "the later frames publish events"
        last_slot = svc.views.slots()[-1]
        wait(browser, lambda d: d.find_element(By.ID, "disk").get_attribute("data-slot") == str(last_slot),
             what="the newest frame's disk")
        wait(browser, lambda d: d.execute_script("return document.body.dataset.lastEvent") == new[-1].event_id,
             what="the last event")
        shown = "return [...document.querySelectorAll('#events tbody tr')].map(r => r.dataset.eventId)"  # at once: redraws
        wait(browser, lambda d: {e.event_id for e in new} <= set(d.execute_script(shown)), what="the new events' rows")
        assert browser.execute_script("return window.notReloaded") is True


def test_the_header_tells_the_frames_waiting(tmp_path, tiny_bundle, frames):
    svc = open_service(config(tmp_path, tiny_bundle))
    drop(frames[:3], svc.dir)
    svc.run_cycle()
    with ServerThread(create_app(svc)) as server:
        assert "frame waiting" not in httpx.get(server.url + "/").text
        drop(frames[3:5], svc.dir)  # received, not yet taken
        age = re.search(r'<span id="age"[^>]*>([^<]*)</span>', httpx.get(server.url + "/").text).group(1)
        assert age.endswith(" · 2 frames waiting"), age
    svc.close()


# ---- the push channel ---------------------------------------------------------------------------------------

def read_stream(url: str, headers: dict, until, timeout: float = 30.0) -> list[tuple[str, str | None, str]]:
    """(event, id, data) of the stream's messages until ``until(messages)`` is true."""
    messages: list[tuple[str, str | None, str]] = []
    deadline = time.time() + timeout
    with httpx.stream("GET", url + "/events/stream", headers=headers, timeout=timeout) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if line == "":
                if "data" in fields:
                    messages.append((fields.get("event", "message"), fields.get("id"), fields["data"]))
                    if until(messages):
                        return messages
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            if time.time() > deadline:
                break
    raise AssertionError(f"the stream stopped before the condition: {messages}")


@pytest.mark.system  # live ingest beside an open page or stream, and a restart: end to end
def test_the_stream_sends_every_event_once_in_order_and_resumes_after_a_restart(tmp_path, tiny_bundle, frames):
    svc = open_service(config(tmp_path, tiny_bundle))
    last = int(slot_of_time(read_magnetogram(frames[4]).time))
    with ServerThread(create_app(svc)) as server:
        got: list = []
        reader = threading.Thread(target=lambda: got.extend(read_stream(server.url, {}, lambda m: any(
            k == "frame" and json.loads(d)["slot"] == last for k, _, d in m))))
        reader.start()
        time.sleep(1.0)  # connected before the first frame: a new client gets what comes after it
        for batch in (frames[:3], frames[3:5]):
            drop(batch, svc.dir)
            svc.run_cycle()
            time.sleep(0.8)
        reader.join(60)
    rows = svc.store.reader().alert_rows()
    seen = [e for e in got if e[0] == "alert"]
    assert [int(i) for _, i, _ in seen] == [seq for seq, _ in rows[: len(seen)]] and len(seen) >= 2
    assert [json.loads(d)["event_id"] for _, _, d in seen] == [e.event_id for _, e in rows[: len(seen)]]
    frames_seen = [json.loads(d)["slot"] for k, _, d in got if k == "frame"]
    assert frames_seen == sorted(set(frames_seen))
    # the service restarts on its data; a client resumes after the last event it received
    del svc
    again = open_service(config(tmp_path, tiny_bundle))
    drop(frames[5:], again.dir)
    again.run_cycle()
    rows = again.store.reader().alert_rows()
    middle = int(seen[len(seen) // 2][1])
    rest = [seq for seq, _ in rows if seq > middle]
    with ServerThread(create_app(again)) as server:
        resumed = read_stream(server.url, {"Last-Event-ID": str(middle)},
                              lambda m: sum(1 for k, _, _ in m if k == "alert") >= len(rest))
        assert [int(i) for k, i, _ in resumed if k == "alert"] == rest
        assert httpx.get(server.url + "/events/stream", headers={"Last-Event-ID": "x"}).status_code == 422
        assert "/events/stream" in httpx.get(server.url + "/openapi.json").json()["paths"]


def test_the_pages_fetch_nothing_from_elsewhere(served):
    _, url = served
    for path in ("/", "/patch/" + sorted(open_alert_patches(served[0]))[0], "/static/live.js", "/static/live.css"):
        text = httpx.get(url + path).text
        assert not re.search(r"(src|href)=\"https?://|url\(https?:|fetch\(\"https?://", text), path
