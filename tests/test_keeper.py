"""The two state keepers give the frame step the same state: the same frames through the frame runner on the
SQLite store and on the memory keeper give the same results, frame by frame."""
from __future__ import annotations

from pathlib import Path

import astropy.units as u
import pytest
from astropy.time import Time

from common.clock import slot_of_time
from ingest.magnetogram import read_frame
from serving.bundle import ModelBundle
from serving.keeper import MemoryKeeper
from serving.runner import FrameRunner
from serving.step import frame_step
from serving.store import Store
from sim import SunConfig, SyntheticSun, write_fits_series
from tests.test_serving import config


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> list[Path]:
    """20 slots of the synthetic Sun (256²): longer than the tiny bundle's 16-frame videos, so passages close."""
    slot0 = int(slot_of_time(Time("2000-06-01T00:00:00")))
    return write_fits_series(SyntheticSun(SunConfig(), seed=0), range(slot0, slot0 + 20),
                             tmp_path_factory.mktemp("stream"), shape=(256, 256))


def outcome(result) -> tuple:
    """What a frame's result says, as text and numbers (but the events' wall-clock publication times)."""
    return (result.slot, sorted(result.opened), sorted(result.closed),
            [(r.key, r.members, r.score.model_dump_json()) for r in result.scores],
            sorted((key, state.to_dict()) for key, state in result.alert_states.items()),
            [e.model_dump_json(exclude={"published"}) for e in result.events],
            [(key, k, frame.tobytes()) for key, k, frame in result.video_frames])


def test_the_memory_keeper_gives_the_step_what_the_store_does(tmp_path, tiny_bundle, stream):
    cfg = config(tmp_path, tiny_bundle).model_copy(update={"lat_limit": 15 * u.deg})
    bundle = ModelBundle(tiny_bundle)
    on_disk = FrameRunner(frame_step(bundle, cfg), Store(tmp_path / "store", bundle.n_frames, bundle.pixels))
    in_memory = FrameRunner(frame_step(bundle, cfg), MemoryKeeper(bundle.n_frames, bundle.pixels))
    closed = events = 0
    for path in stream:
        mag = read_frame(path, bundle.instrument)
        a, b = on_disk.run(mag, path.name), in_memory.run(mag, path.name)
        assert outcome(a) == outcome(b), path.name
        closed, events = closed + len(a.closed), events + len(a.events)
    assert closed and events  # the stream opens alerts and closes passages
    keeper = in_memory.keeper
    assert isinstance(keeper, MemoryKeeper) and len(keeper.videos) == len(keeper.passages)  # closed ones' dropped


def test_the_memory_keeper_takes_frames_in_time_order(tiny_bundle, stream):
    bundle = ModelBundle(tiny_bundle)
    runner = FrameRunner(frame_step(bundle, config(Path("/unused"), tiny_bundle)), MemoryKeeper(bundle.n_frames, bundle.pixels))
    runner.run(read_frame(stream[1], bundle.instrument), stream[1].name)
    with pytest.raises(ValueError, match="in time order: slot .* after slot"):
        runner.run(read_frame(stream[0], bundle.instrument), stream[0].name)
