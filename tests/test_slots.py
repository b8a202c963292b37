"""Slot selection: of the frames of one 96-min slot (HMI sends eight), the service scores the one closest to the
slot's time, once, and counts the others as superseded, not rejected."""
import shutil

import astropy.units as u
import numpy as np
import pytest
from astropy.time import Time

from common.clock import slot_of_time, slot_time
from serving.compose import open_service
from serving.service import Service
from sim import SunConfig, SyntheticSun, write_hmi_series
from tests.test_serving import config

SLOT = int(slot_of_time(Time("2000-06-01T12:00")))
#: HMI's 12-min records around two slots: −47 … +37 min from each slot time.
OFFSETS_MIN = np.arange(-47, 48, 12)


@pytest.fixture(scope="module")
def hmi_stream(tmp_path_factory):
    """1024² synthetic HMI frames (2.0″ pixels) at 12-min cadence over slots SLOT and SLOT + 1: {(slot, offset): path}."""
    folder = tmp_path_factory.mktemp("hmi")
    sun = SyntheticSun(SunConfig(), seed=0)
    keys = [(s, int(m)) for s in (SLOT, SLOT + 1) for m in OFFSETS_MIN]
    times = Time([slot_time(s) + m * u.min for s, m in keys])
    return dict(zip(keys, write_hmi_series(sun, times, folder, shape=(1024, 1024))))


def arrive(service: Service, path, now=None) -> int:
    shutil.copy(path, service.inbox.incoming / path.name)
    return service.run_cycle(now)


def counted(service: Service) -> tuple[float, float]:
    m = service.metrics.registry
    rejected = sum(m.get_sample_value("fluxwatch_frames_rejected_total", {"reason": r}) or 0.0
                   for r in ("not_fits", "instrument", "bad_quality", "missing_keyword", "other"))
    return m.get_sample_value("fluxwatch_frames_superseded_total"), rejected


def test_a_12_minute_stream_keeps_the_frame_closest_to_each_slot(tmp_path, tiny_bundle, hmi_stream):
    service = open_service(config(tmp_path, tiny_bundle))
    scored = [arrive(service, path) for _, path in sorted(hmi_stream.items())]
    # −47, −35, −23, −11 wait, each replacing the one before; +1 min is as good as it gets and is scored at once
    assert scored == [0, 0, 0, 0, 1, 0, 0, 0] * 2
    assert counted(service) == (14, 0)
    for s in (SLOT, SLOT + 1):
        assert service.store.has_frame(s)
    used = sorted(p.name for p in service.inbox.processed.glob("*.fits"))
    assert used == sorted(hmi_stream[(s, 1)].name for s in (SLOT, SLOT + 1))
    assert len(list(service.inbox.superseded.glob("*.superseded.txt"))) == 14
    assert not list(service.inbox.pending.iterdir()) and not list(service.inbox.rejected.iterdir())


def test_a_better_frame_replaces_a_waiting_one_and_is_superseded_once_the_slot_is_scored(tmp_path, tiny_bundle, hmi_stream):
    service = open_service(config(tmp_path, tiny_bundle))
    assert arrive(service, hmi_stream[(SLOT, 25)]) == 0  # 25 min off: waits
    assert arrive(service, hmi_stream[(SLOT, -11)]) == 0  # closer: replaces it, still waits
    assert [p.name for p in service.inbox.pending.glob("*.fits")] == [hmi_stream[(SLOT, -11)].name]
    assert arrive(service, hmi_stream[(SLOT + 1, -47)]) == 1  # a frame of the next slot: SLOT's best is scored
    assert service.store.has_frame(SLOT) and not service.store.has_frame(SLOT + 1)
    assert arrive(service, hmi_stream[(SLOT, 1)]) == 0  # better, but its slot was scored: superseded, not rescored
    assert counted(service) == (2, 0)
    reason = (service.inbox.superseded / (hmi_stream[(SLOT, 1)].name + ".superseded.txt")).read_text()
    assert "was already scored" in reason


def test_a_waiting_frame_survives_a_restart_and_is_scored_when_its_window_passes(tmp_path, tiny_bundle, hmi_stream):
    first = open_service(config(tmp_path, tiny_bundle))
    assert arrive(first, hmi_stream[(SLOT, -23)]) == 0
    assert first.run_cycle(now=slot_time(SLOT).unix + 40 * 60) == 0  # within the window: keeps waiting
    again = open_service(config(tmp_path, tiny_bundle))  # a restart: pending/ is read back
    assert list(again.pending) == [SLOT]
    assert again.run_cycle(now=slot_time(SLOT).unix + 49 * 60) == 1  # the window (± 48 min) has passed
    assert again.store.has_frame(SLOT)
