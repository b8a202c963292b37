"""Retention: files and videos go on the operator's schedule, nothing an open passage needs goes, and an API route
whose data aged out answers 410 Gone."""
from __future__ import annotations

import os
import shutil
import time

import astropy.units as u
import httpx
import pytest
from astropy.time import Time

from common.clock import SLOTS_PER_DAY, slot_isot, slot_of_time
from serving.alerts import passage_label
from serving.api import create_app
from serving.compose import open_service
from sim import SunConfig, SyntheticSun, write_fits_series
from tests.support import ServerThread
from tests.test_serving import config

DAY = 86400.0


def closed_passages(store) -> list[tuple[str, int]]:
    """(patch id, start slot) of every closed passage."""
    return list(store.db.execute("SELECT patch_id, start_slot FROM passages WHERE status = 'closed'"))


def _age(path, days: float) -> None:
    t = time.time() - days * DAY
    os.utime(path, (t, t))


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    """Twenty 256² frames: with the tiny bundle's 16-frame videos, the first passages close (video full)."""
    slot0 = int(slot_of_time(Time("2000-06-01T00:00:00")))
    return write_fits_series(SyntheticSun(SunConfig(), seed=0), range(slot0, slot0 + 20),
                             tmp_path_factory.mktemp("stream"), shape=(256, 256))


def test_retention_removes_on_schedule_and_keeps_what_open_passages_need(tmp_path, tiny_bundle, stream):
    archive = tmp_path / "archive"
    service = open_service(config(tmp_path, tiny_bundle, retain_superseded="1 d", retain_rejected="1 d",
                             retain_processed="2 d", archive_dir=str(archive), retain_videos="3 d",
                             voevent_dir="voevents"))
    for path in stream:
        shutil.copy(path, service.inbox.incoming)
        service.run_cycle()
    shutil.copy(stream[-1], service.inbox.incoming / ("again_" + stream[-1].name))  # its slot is scored: superseded
    (service.inbox.incoming / "junk.fits").write_bytes(b"not a FITS file")  # rejected
    service.run_cycle()
    superseded, rejected = service.inbox.superseded / ("again_" + stream[-1].name), service.inbox.rejected / "junk.fits"
    assert superseded.exists() and rejected.exists()
    processed = sorted(service.inbox.processed.glob("*.fits"))
    has_video = lambda key: service.store.video_path(*key).exists()  # noqa: E731
    closed = [key for key in closed_passages(service.store) if has_video(key)]
    opened = [key for key in service.store.open_passages().items() if has_video(key)]
    assert len(closed) >= 2 and opened
    old_closed, new_closed = closed[0], closed[1]
    old_open = opened[0]
    for path in (superseded, rejected, processed[0], processed[1]):
        _age(path, 5)
    for key in (old_closed, old_open):
        _age(service.store.video_path(*key), 4)
    _age(service.store.video_path(*new_closed), 2)

    service.run_cycle()
    assert not superseded.exists() and not superseded.with_name(superseded.name + ".superseded.txt").exists()
    assert not rejected.exists() and not rejected.with_name(rejected.name + ".error.txt").exists()
    assert sorted(p.name for p in archive.iterdir()) == [processed[0].name, processed[1].name]
    assert sorted(service.inbox.processed.glob("*.fits")) == processed[2:]
    assert not service.store.video_path(*old_closed).exists()
    assert service.store.video_path(*old_open).exists()  # an open passage keeps its video, whatever its age
    assert service.store.video_path(*new_closed).exists()
    metric = service.metrics.registry.get_sample_value
    assert metric("fluxwatch_disk_bytes", {"kind": "processed"}) == sum(p.stat().st_size for p in processed[2:])
    assert metric("fluxwatch_disk_bytes", {"kind": "rejected"}) == 0
    assert metric("fluxwatch_disk_free_bytes") > 0
    alert_files = [service.dir / "alerts.jsonl", *(service.dir / "voevents").iterdir()]
    assert len(alert_files) > 1  # the alerts are kept whole: the log and a VOEvent per event
    assert metric("fluxwatch_disk_bytes", {"kind": "alerts"}) == sum(p.stat().st_size for p in alert_files)

    pid, start = old_closed
    with ServerThread(create_app(service)) as server:
        gone = httpx.get(f"{server.url}/patches/{pid}/video", params={"passage_start": slot_isot(start)})
        assert gone.status_code == 410 and gone.headers["content-type"] == "application/problem+json"
        assert "removed by the retention policy" in gone.json()["detail"] and "retain_videos" in gone.json()["detail"]
        cutout = httpx.get(f"{server.url}/patches/{pid}/cutout.png",
                           params={"passage_start": slot_isot(start), "frame": 1, "onset": 0})
        assert cutout.status_code == 410
        kept = httpx.get(f"{server.url}/patches/{new_closed[0]}/video", params={"passage_start": slot_isot(new_closed[1])})
        assert kept.status_code == 200
        assert httpx.get(f"{server.url}/patches/{pid}").status_code == 200  # its scores and alerts stand


def test_scores_thin_after_their_period_and_delivered_messages_go(tmp_path, tiny_bundle, stream):
    """A closed passage's scores older than retain_scores keep one a day, its event frames and its last frame; an
    open passage's keep every frame (the step reads them); acknowledged outbox messages go, pending ones stay."""
    service = open_service(config(tmp_path, tiny_bundle, retain_scores=None))
    for path in stream:
        shutil.copy(path, service.inbox.incoming)
        service.run_cycle()
    db = service.store.db
    frames = lambda key: {f for (f,) in db.execute(  # noqa: E731
        "SELECT frame FROM scores WHERE patch_id = ? AND start_slot = ?", key)}
    closed, opened = closed_passages(service.store), list(service.store.open_passages().items())
    before = {key: frames(key) for key in closed + opened}
    assert sum(len(before[key]) >= 5 for key in closed) >= 2
    event_frames: dict = {}
    for e in service.store.reader().alerts():
        event_frames.setdefault((e.patch_id, e.passage), set()).add(e.frame)
    assert any(event_frames.values())
    pending = service.store.outbox.pending(limit=-1)
    service.store.outbox.mark_delivered([m.seq for m in pending[:5]])

    service.config = service.config.model_copy(update={"retain_scores": 0.1 * u.day, "retain_delivered": 0 * u.s})
    time.sleep(0.01)
    service.run_cycle()
    newest = service.store.newest_frame()[0]
    thinned = 0
    for key in (key for key in closed if before[key]):
        old = {f for f in before[key] if key[1] + f < newest - 1}  # slot of frame f: start + f (no gaps here)
        kept = {f for f in old if f % SLOTS_PER_DAY == 0} | {max(before[key])} | event_frames.get((key[0], passage_label(key[1])), set())
        assert frames(key) == (before[key] - old) | (old & kept), key
        thinned += len(before[key] - frames(key))
    assert thinned >= 8
    assert all(frames(key) == before[key] for key in opened)
    assert [m.seq for m in service.store.outbox.pending(limit=-1)] == [m.seq for m in pending[5:]]
    assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == len(pending) - 5
