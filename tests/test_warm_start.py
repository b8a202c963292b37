"""The warm start: a service started mid-passage on the synthetic source fills every open passage's past from the
source's archive before its first live frame, and alerts on an emergence that began before it started."""
from __future__ import annotations

from pathlib import Path

import pytest
from astropy.time import Time

from common.clock import days_since_epoch, slot_of_time
from common.config import DEFAULT_BUNDLE, ServiceConfig
from evaluation.cli import stream_truth
from evaluation.matching import match
from evaluation.replay import opened
from serving.app import build
from sim import SunConfig, SyntheticSun

ROOT = Path(__file__).resolve().parents[1]
#: Three emergences of ≥ 3×10²¹ Mx begin in the day before it, on the Sun that the service's feed renders.
START = "2000-07-02T00:00:00"
LIVE_FRAMES = 15


@pytest.fixture(scope="module")
def warm_app(tmp_path_factory):
    cfg = ServiceConfig(data_dir=str(tmp_path_factory.mktemp("warm")), bundle=str(ROOT / DEFAULT_BUNDLE),
                        source="synthetic", synthetic_start=START, warm_start=True)
    app = build(cfg)
    assert app.service.warm_start.state == "pending"
    app.warm_start()
    yield app


@pytest.mark.system
def test_the_warm_start_fills_every_open_passage_from_its_start(warm_app):
    service, status = warm_app.service, warm_app.service.warm_start
    end = int(slot_of_time(Time(START)))
    n = service.bundle.n_frames
    assert status.state == "done" and (status.first_slot, status.end_slot) == (end - n, end)
    assert status.frames >= 0.9 * n and status.seconds > 0  # the synthetic Sun misses a few slots, as MDI did
    assert service.metrics.warm_start_frames._value.get() == status.frames
    assert service.store.newest_frame()[0] == end - 1
    state = service.store.snapshot(end)
    assert len(state.open) > 50
    observed = set(state.observed.tolist())
    for (pid, start), passage in state.open.items():
        # every slot of the passage that the archive holds is in its video: its history is not missing
        expected = {s for s in range(max(start, end - n), end) if s in observed}
        assert {start + int(k) for k in passage.frames} >= expected, pid
        assert passage.latest is not None and passage.latest.observed_from <= max(0, end - n - start) + 3


@pytest.mark.system
def test_a_warm_service_alerts_on_an_emergence_that_began_before_it_started(warm_app):
    service = warm_app.service
    for _ in range(LIVE_FRAMES):
        warm_app.cycle()
    events = service.store.reader().alerts()
    first = int(slot_of_time(Time(START)))
    began_before = [e for e in stream_truth(SyntheticSun(SunConfig(), seed=0), first - 15, first)
                    if e.flux_Mx >= 3e21]
    assert began_before
    m = match(began_before, opened(events), service.grid)
    hits = [a for a in m.detected.values() if a is not None]
    assert hits, f"no alert on any of {[(e.region, e.onset_days) for e in began_before]}"
    start_day = float(days_since_epoch(Time(START)))
    print([(a.patch_id, round(a.opened_days - start_day, 2), round(a.onset_days - start_day, 2)) for a in hits])
    # onsets estimated before the start: the passages' past was there to be read
    assert min(a.onset_days for a in hits) < start_day
