"""The review desk in a real headless browser (Debian's chromium and chromium-driver, driven by Selenium).

The relabel loop runs for real in a thread with a WebReviewer; only its model side is fixed (a train_pass that
returns set out-of-fold probabilities). The tests play the video, scrub, answer with the keyboard, undo, restart
the desk server mid-queue, and check the loop got exactly the decisions made; two reviewers who disagree send an
item to a third; the model side is hidden unless asked for; a real service's alerts are vetted and exported.
"""
import io
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from ingest.dataset import DatasetStore
from review.cli import main as review_main
from review.decisions import Decisions
from review.desk import DeskServer, create_app
from review.vetting import ALERTS_QUEUE, AlertSource, export_vetted
from review.web import TRAINING_QUEUE, WebReviewer
from serving.api import create_app as service_api
from serving.compose import open_service
from sim.build_dataset import main as build_main
from tests.support import ServerThread, free_port
from tests.test_serving import config, drop
from training.cli import main as train_main
from training.relabel import run_relabel_loop

SCREENSHOT = Path(__file__).parents[1] / "docs" / "review-desk.png"
ANSWER_KEYS = {1: "e", 0: "n", -1: "u"}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> DatasetStore:
    """Eight 48-frame synthetic patch videos (three days: their regions rotate in from the east limb)."""
    path = tmp_path_factory.mktemp("desk") / "store.zarr"
    assert build_main(["--preset", "small", "--videos", "6", "2", "--tiles", "0", "0", "--frames", "48", "--settings", "1",
                       "--workers", "1", "--out", str(path)]) == 0
    return DatasetStore(path)


def wait(driver, condition, timeout=15.0, what="the page"):
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition, f"timed out waiting for {what}")


def sign_in(driver, url: str, name: str) -> None:
    driver.get(url + "?change=1")
    field = wait(driver, ec.presence_of_element_located((By.ID, "name")), what="the name form")
    field.send_keys(name, Keys.ENTER)
    wait(driver, ec.presence_of_element_located((By.ID, "reviewer")), what="the queues page")


def heading(driver) -> str:
    return driver.find_element(By.TAG_NAME, "h1").text


def detached(element):
    """A wait condition: ``element`` has left the document. Like ``ec.staleness_of``, but chromedriver may answer
    a node caught mid-navigation with "Node with given id does not belong to the document" instead of a stale
    reference: that too means the old page is gone."""
    def condition(_driver) -> bool:
        try:
            element.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False
    return condition


def press(driver, key: str) -> str:
    """Press ``key`` on the page and wait for the page it leads to; returns its heading."""
    old = driver.find_element(By.TAG_NAME, "h1")
    ActionChains(driver).send_keys(key).perform()
    wait(driver, detached(old), what=f"the page after {key!r}")
    return wait(driver, ec.presence_of_element_located((By.TAG_NAME, "h1"))).text


def video_of(title: str) -> int:
    """The video id in an item page's heading, 'video 5 (training)'."""
    return int(title.split()[1])


def start_loop(store, run_dir, decisions, crude, probs):
    """The relabel loop in a thread, reviewed through the desk; returns (thread, result dict)."""
    ids = store.catalog.video_id.to_numpy()
    reviewer = WebReviewer(decisions, poll_s=0.05, log_every_s=0.5, progress=lambda line: None)
    out: dict = {}

    def loop():
        out["result"] = run_relabel_loop(ids, (ids % 10) + 1, crude, lambda labels, n: probs.copy(), reviewer, store, run_dir,
                                         progress=lambda line: None)
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread, out


def test_the_loop_gets_exactly_the_decisions_made_in_the_browser(store, browser, tmp_path):
    crude = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    probs = np.array([0.9, 0.1, 0.9, 0.1, 0.9, 0.8, 0.2, 0.1])  # rows 0-4 and 7 disagree with their label
    decisions = Decisions(tmp_path / "run" / "review" / "desk.sqlite")
    port = free_port()
    desk = DeskServer(create_app(decisions, fps=10), port=port).start()
    thread, out = start_loop(store, tmp_path / "run", decisions, crude, probs)
    wait(None, lambda _: len(decisions.items(TRAINING_QUEUE)) == 6, what="the loop to enqueue its disagreements")
    try:
        sign_in(browser, desk.url, "ann")
        browser.get(desk.url + "queue/training")
        title = wait(browser, ec.presence_of_element_located((By.TAG_NAME, "h1"))).text
        assert video_of(title) == 0, "the queue is in the loop's order"
        assert "0 / 6 decided" in browser.find_element(By.ID, "progress").text
        assert not browser.find_elements(By.ID, "model"), "blind review by default"

        # the video plays: the frame index advances and the canvas shows the frame
        index = browser.find_element(By.ID, "frame-index")
        wait(browser, lambda d: int(index.text) >= 3, what="the video to play")
        assert browser.find_element(By.ID, "play").text == "pause"
        drawn = browser.execute_script("const c = document.getElementById('video');"
                                       "return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)"
                                       ".filter((v, i) => i % 4 === 3 && v > 0).length")
        assert drawn == 360 * 360
        # the scrubber: a click pauses at a frame; the keys move it; the cursor on the flux curve follows
        scrubber = browser.find_element(By.ID, "scrubber")
        scrubber.click()
        assert browser.find_element(By.ID, "play").text == "play"
        last = store.video_shape[0] - 1
        scrubber.send_keys(Keys.END)
        assert index.text == str(last) and scrubber.get_attribute("value") == str(last)
        scrubber.send_keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT)
        assert index.text == str(last - 2)
        assert "UTC" in browser.find_element(By.ID, "frame-time").text
        time.sleep(0.3)
        assert index.text == str(last - 2), "paused while scrubbing"
        cursor = browser.find_element(By.ID, "cursor").value_of_css_property("left")
        assert float(cursor.rstrip("px")) > 0.5 * browser.find_element(By.ID, "curves").size["width"]

        made: dict[int, int] = {}
        title = press(browser, "e")  # video 0: emergence
        made[0] = 1
        assert video_of(title) == 1 and "1 / 6 decided" in browser.find_element(By.ID, "progress").text
        title = press(browser, "u")  # video 1: unsure -> back for a later look
        assert video_of(title) == 2
        title = press(browser, "n")  # video 2: non-emergence ...
        assert video_of(title) == 3
        title = press(browser, "z")  # ... undone after moving on: back to video 2
        assert video_of(title) == 2 and not browser.find_elements(By.ID, "yours")
        title = press(browser, "e")  # video 2: emergence after all
        made[2] = 1
        title = press(browser, "j")  # skip video 3 for now
        assert video_of(title) == 4
        SCREENSHOT.parent.mkdir(exist_ok=True)
        browser.find_element(By.ID, "scrubber").send_keys(Keys.END, *[Keys.ARROW_LEFT] * 6)  # the region on the disk
        browser.save_screenshot(str(SCREENSHOT))

        # the desk restarts mid-queue: the loop keeps waiting, nothing is lost
        desk.stop()
        assert thread.is_alive()
        desk = DeskServer(create_app(Decisions(decisions.path), fps=10), port=port).start()
        browser.refresh()
        title = wait(browser, ec.presence_of_element_located((By.TAG_NAME, "h1"))).text
        assert video_of(title) == 4 and "2 / 6 decided" in browser.find_element(By.ID, "progress").text
        title = press(browser, "n")  # video 4
        made[4] = 0
        title = press(browser, Keys.BACKSPACE)  # Backspace undoes too
        assert video_of(title) == 4
        title = press(browser, "n")
        assert video_of(title) == 7
        title = press(browser, "e")  # video 7
        made[7] = 1
        assert video_of(title) == 3, "the skipped item comes back"
        title = press(browser, Keys.ARROW_RIGHT)  # → is next too; video 1 (unsure) is last, then 3 again
        assert video_of(title) == 1
        assert "your answer so far: unsure" in browser.find_element(By.ID, "yours").text
        title = press(browser, "n")
        made[1] = 0
        assert video_of(title) == 3
        press(browser, "n")
        made[3] = 0
        assert "Nothing left for you" in heading(browser)
        thread.join(20)
        assert not thread.is_alive()
    finally:
        desk.stop()
    labels, reviewed, records = out["result"]
    rows = sorted(made)
    assert rows == [0, 1, 2, 3, 4, 7] and reviewed.tolist() == [r in made for r in range(8)]
    assert labels[rows].tolist() == [made[r] for r in rows], "the loop received exactly the decisions made"
    assert labels[[5, 6]].tolist() == crude[[5, 6]].tolist()
    assert records[0].model_mistakes == sum(made[r] == crude[r] for r in rows)
    history = decisions.history(TRAINING_QUEUE)
    assert all(d.reviewer == "ann" and d.at.endswith("+00:00") for d, _ in history)
    assert [s for _, s in history].count("undone") == 2 and [s for _, s in history].count("replaced") == 1


def test_a_disagreement_goes_to_a_third_reviewer_and_the_model_side_is_hidden_by_default(store, browser, tmp_path):
    decisions = Decisions(tmp_path / "desk.sqlite", min_decisive=2)  # two reviewers look at every video
    reviewer = WebReviewer(decisions, poll_s=0.05, progress=lambda line: None)
    out: dict = {}
    thread = threading.Thread(target=lambda: out.setdefault("answers", reviewer.review(
        store, np.array([4, 5]), np.array([0, 1]), np.array([0.83, 0.27]))), daemon=True)
    thread.start()
    wait(None, lambda _: len(decisions.items(TRAINING_QUEUE)) == 2, what="the batch")
    with ServerThread(create_app(decisions)) as server:
        url = server.url + "/"
        sign_in(browser, url, "ann")
        browser.get(url + "queue/training")
        wait(browser, ec.presence_of_element_located((By.ID, "video")))
        assert not browser.find_elements(By.ID, "model") and "hidden" in browser.find_element(By.CLASS_NAME, "blind").text
        browser.get(browser.current_url + "?show_model=1")
        assert browser.find_element(By.ID, "model").text == "current label: non-emergence; model probability 0.83"
        press(browser, "j")
        assert "model probability 0.27" in browser.find_element(By.ID, "model").text, "the setting is kept"
        browser.get(url + "?show_model=0")
        browser.get(url + "queue/training")
        assert not browser.find_elements(By.ID, "model")
        press(browser, "e")
        assert press(browser, "e").startswith("Nothing left")
        assert thread.is_alive(), "each video needs a second reviewer"
        sign_in(browser, url, "bob")
        browser.get(url + "queue/training")
        press(browser, "e")
        press(browser, "n")  # bob disagrees with ann on video 5
        assert "1 wait for another reviewer" in browser.find_element(By.TAG_NAME, "main").text
        assert thread.is_alive(), "a tie is not a decision"
        sign_in(browser, url, "cy")
        browser.get(url + "queue/training")
        assert video_of(heading(browser)) == 5, "the third reviewer sees only the disputed item"
        assert press(browser, "n").startswith("Nothing left")
        thread.join(10)
        assert out["answers"].tolist() == [1, 0], "the majority decides"
        agreement = httpx.get(url + "api/agreement").json()[TRAINING_QUEUE]
        assert agreement["items"] == 2 and agreement["fraction_agreeing"] == 0.5
        pair = next(p for p in agreement["pairs"] if p["reviewers"] == ["ann", "bob"])
        assert pair["items"] == 2 and pair["fraction_agreeing"] == 0.5 and pair["cohen_kappa"] == pytest.approx(0.0)
        browser.get(url + "agreement")
        assert "50%" in browser.find_element(By.CLASS_NAME, "agree").text and "ann · bob" in browser.page_source


@pytest.fixture(scope="module")
def service(tmp_path_factory, tiny_bundle, frames):
    """A real service that ingested the test frames (its alerts open: the tiny bundle's threshold is low), with its API."""
    svc = open_service(config(tmp_path_factory.mktemp("svc"), tiny_bundle))
    drop(frames, svc.dir)
    svc.run_cycle()
    with ServerThread(service_api(svc)) as api:
        yield svc, api.url


def test_the_service_serves_a_passage_video(service):
    svc, url = service
    alert = svc.store.reader().alerts()[0]
    response = httpx.get(f"{url}/patches/{alert.patch_id}/video", params={"passage_start": alert.passage_start})
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-npy"
    video = np.load(io.BytesIO(response.content))
    start = int(svc.store.reader().passage(alert.patch_id)[0])
    assert np.array_equal(video, svc.store.read_video(alert.patch_id, start)) and video.dtype == np.float32
    assert int(response.headers["x-last-frame"]) >= alert.frame and np.abs(video[alert.frame]).max() > 0
    assert httpx.get(f"{url}/patches/{alert.patch_id}/video").content == response.content, "latest passage by default"
    assert httpx.get(f"{url}/patches/L000.00N00.00/video").status_code == 404
    assert httpx.get(f"{url}/patches/{alert.patch_id}/video", params={"passage_start": "soon"}).status_code == 422


def test_alerts_are_vetted_in_the_desk_and_exported_as_a_dataset(service, browser, tmp_path, capsys):
    svc, url = service
    decisions = Decisions(tmp_path / "vetting" / "desk.sqlite")
    alerts = AlertSource(url, decisions, tmp_path / "vetting")
    n = alerts.sync()
    opened = list(dict.fromkeys(e.alert_id for e in svc.store.reader().alerts()))
    assert n == len(opened) and [i.info["alert"]["alert_id"] for i in decisions.items(ALERTS_QUEUE)] == opened
    snapshots = {p: p.stat().st_mtime_ns for p in (tmp_path / "vetting" / "alerts").glob("*.npy")}
    assert len(snapshots) == n and alerts.sync() == n
    assert {p: p.stat().st_mtime_ns for p in snapshots} == snapshots, "a sync fetches only what changed"
    with ServerThread(create_app(decisions, alerts=alerts)) as server:
        sign_in(browser, server.url + "/", "ann")
        browser.get(server.url + "/queue/alerts")
        wait(browser, lambda d: int(d.find_element(By.ID, "frame-index").text) >= 2, what="the alert's video to play")
        assert browser.find_element(By.ID, "answer-emergence").text == "confirm (e)"
        assert not browser.find_elements(By.ID, "model")
        made = {}
        for key, answer in (("e", 1), ("n", 0), ("u", -1), ("e", 1)):
            alert_id = heading(browser).split()[1]
            press(browser, key)
            made[alert_id] = answer
        browser.get(browser.current_url + "?show_model=1")
        assert "model: alert" in browser.find_element(By.ID, "model").text
    out = export_vetted(decisions, tmp_path / "vetting", tmp_path / "vetted.zarr")
    vetted = {a: v for a, v in made.items() if v != -1}
    assert len(out) == 3 and dict(zip(out.catalog.alert_id, out.catalog.crude_label)) == vetted
    assert out.catalog.verified.all() and (out.catalog.true_class == -1).all() and set(out.catalog.vetted_by) == {"ann"}
    reread = DatasetStore(out.path)
    for row in reread.catalog.itertuples():
        event = decisions.items(ALERTS_QUEUE)[opened.index(row.alert_id)].info["alert"]
        video = svc.store.read_video(event["patch_id"], int(row.start_slot))
        assert np.allclose(reread.video(row.video_id), video.astype(np.float16).astype(np.float32))
        assert (row.lon, row.lat) == (event["patch"]["carrington"]["lon"], event["patch"]["carrington"]["lat"])
    with pytest.raises(ValueError, match="exists"):
        export_vetted(decisions, tmp_path / "vetting", tmp_path / "vetted.zarr")
    assert review_main(["--desk-dir", str(tmp_path / "vetting"), "--export-vetted", str(tmp_path / "again.zarr")]) == 0
    assert "3 vetted alerts (2 confirmed, 1 rejected)" in capsys.readouterr().out
    assert review_main(["--desk-dir", str(tmp_path / "empty"), "--export-vetted", str(tmp_path / "none.zarr")]) == 2
    assert "no vetted alert to export yet" in capsys.readouterr().err


def test_command_lines_say_what_is_wrong(store, tmp_path, capsys):
    assert review_main(["--run", str(tmp_path / "no-run")]) == 2
    assert "start train-ensemble --reviewer web" in capsys.readouterr().err
    with ServerThread(create_app(Decisions(tmp_path / "other.sqlite"))) as busy:
        assert train_main(["--store", str(store.path), "--out", str(tmp_path / "run"), "--reviewer", "web",
                           "--desk-port", str(busy.port)]) == 2
        assert f"could not listen on 127.0.0.1:{busy.port}" in capsys.readouterr().err
    port = free_port()
    assert train_main(["--store", str(tmp_path / "missing.zarr"), "--out", str(tmp_path / "run"), "--reviewer", "web",
                       "--desk-port", str(port)]) == 2
    captured = capsys.readouterr()
    assert f"review desk: http://127.0.0.1:{port}/" in captured.out and "no dataset store here" in captured.err
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # the desk stopped and let its port go


def test_one_reviewer_guard_sends_pages_to_the_name_form_and_refuses_nameless_decisions(tmp_path):
    decisions = Decisions(tmp_path / "desk.sqlite")
    with ServerThread(create_app(decisions)) as server:
        for path in ("/queue/training", "/item/3", "/item/3/next"):
            r = httpx.get(server.url + path, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"] == "/?next=" + path, path
        for path, form in (("/item/3/decide", {"answer": "1"}), ("/undo", {"queue": "training"})):
            r = httpx.post(server.url + path, data=form, follow_redirects=False)
            assert r.status_code == 401 and "who you are" in r.json()["detail"], path
        named = httpx.get(server.url + "/queue/training", cookies={"reviewer": "ann"}, follow_redirects=False)
        assert named.status_code == 200 and "Nothing left for you in training" in named.text
        bad = httpx.get(server.url + "/queue/training", cookies={"reviewer": "<script>"}, follow_redirects=False)
        assert bad.status_code == 303
