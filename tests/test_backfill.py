"""The archive backfill on Dask: the same alerts and scores as the live service, resumable, and a catalog that
matches its alerts."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.time import Time

from archive.chunk import REPORT, plan
from archive.cli import backfill
from archive.frames import FileFrames, input_paths
from common.clock import slot_of_time
from common.config import ServiceConfig
from contract.events import AlertEvent
from serving.alerts import emergence_events
from serving.compose import open_service
from serving.service import Service
from sim import SunConfig, SyntheticSun, write_fits_series
from tests.conftest import START

DAYS = 12
#: Fewer tiles than the service's default (±45°): the test is about the mechanism.
LAT_LIMIT = 30 * u.deg


@pytest.fixture(scope="module")
def stretch(tmp_path_factory) -> Path:
    """12 days of 128² synthetic full-disk frames (missing slots skipped)."""
    slot0 = int(slot_of_time(START))
    folder = tmp_path_factory.mktemp("stretch")
    write_fits_series(SyntheticSun(SunConfig(), seed=1), range(slot0, slot0 + DAYS * 15), folder, shape=(128, 128))
    return folder


def service_config(tmp: Path, bundle: Path) -> ServiceConfig:
    return ServiceConfig(data_dir=str(tmp / "svc"), bundle=str(bundle), lat_limit=LAT_LIMIT, source="watch")


@pytest.fixture(scope="module")
def sequential(tmp_path_factory, stretch, tiny_bundle) -> Service:
    """The live service, fed the stretch's files one at a time in slot order."""
    service = open_service(service_config(tmp_path_factory.mktemp("sequential"), tiny_bundle))
    for f in sorted(stretch.iterdir()):
        shutil.copy(f, service.dir / "incoming" / f.name)
        service.run_cycle()
    return service


def without_publication_time(e: AlertEvent) -> dict:
    return e.model_dump(exclude={"published"})


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory, stretch, tiny_bundle) -> tuple[Path, dict, FileFrames]:
    """The stretch backfilled on a LocalCluster of 2 workers in chunks of 3 days: (output folder, report, frames)."""
    tmp = tmp_path_factory.mktemp("backfill")
    frames = FileFrames.scan(input_paths([str(stretch)]), progress=False)
    report = backfill(frames, tmp / "out", str(tiny_bundle), service_config(tmp, tiny_bundle), chunk_days=3, workers=2,
                      progress=False, log=lambda *_: None)
    return tmp / "out", report, frames


def events_in(out: Path) -> list[AlertEvent]:
    return [AlertEvent.model_validate_json(line) for line in (out / "alerts.jsonl").read_text().splitlines()]


@pytest.mark.system
def test_the_distributed_backfill_gives_the_sequential_services_alerts_and_scores(backfilled, sequential):
    out, report, frames = backfilled
    assert len(frames.slots()) > 0.9 * DAYS * 15 and not frames.refused
    assert report["chunks"] == 4 and report["frames"] == len(frames.slots())
    assert report["warmup_frames"] >= 3 * 15, "each later chunk replays its passages' past (16 slots)"

    expected = sequential.store.reader().alerts()
    got = events_in(out)
    assert len(expected) >= 10, "the stretch must exercise the alerts"
    assert [e.event_id for e in got] == [e.event_id for e in expected]
    assert [without_publication_time(e) for e in got] == [without_publication_time(e) for e in expected]

    stored = pd.read_sql("SELECT patch_id, start_slot AS passage_start_slot, frame, slot, summary FROM scores",
                         sequential.store.db)
    stored["median"] = [json.loads(s)["probability"]["median"] for s in stored.summary]
    scores = pd.read_parquet(out / "scores.parquet")
    keys = ["patch_id", "passage_start_slot", "frame"]
    joined = stored.merge(scores, on=keys, how="outer", suffixes=("_svc", "_backfill"), indicator=True)
    assert (joined["_merge"] == "both").all(), "the same patch passages scored at the same frames"
    assert (joined.slot_svc == joined.slot_backfill).all()
    assert np.abs(joined.median_svc - joined.median_backfill).max() <= 1e-6


@pytest.mark.system
def test_the_catalog_has_one_row_per_alerted_emergence_with_its_alerts_values(backfilled):
    out, report, _ = backfilled
    events = events_in(out)
    catalog = pd.read_parquet(out / "catalog.parquet")
    emergences = emergence_events(events)
    assert len(catalog) == len(emergences) > 0
    for (_, row), e in zip(catalog.iterrows(), emergences):
        assert row.region_id in (e.alert_id, e.event_id) and row.patch_id == e.patch_id
        assert row.first_alert_time == pd.Timestamp(e.frame_time) and row.onset_time == pd.Timestamp(e.onset.time_utc)
        assert (row.carrington_lon, row.carrington_lat) == (e.patch.carrington.lon, e.patch.carrington.lat)
        assert row.flux_at_alert_Mx == pytest.approx(e.region.flux_positive_Mx + e.region.flux_negative_Mx)
        assert row.peak_probability >= e.probability.median and row.bundle_digest == e.provenance.bundle_digest
    assert report["catalog_rows"] == len(catalog) and (out / "butterfly.png").stat().st_size > 10_000


@pytest.mark.system
def test_a_killed_backfill_rerun_skips_its_finished_chunks_and_ends_the_same(tmp_path, stretch, tiny_bundle, sequential):
    listing = tmp_path / "files.txt"
    files = sorted(stretch.iterdir())[:80]
    broken = tmp_path / "broken.fits"
    broken.write_bytes(b"SIMPLE  =                    T" + b" " * 50 + b"END" + b" " * 77)
    listing.write_text("\n".join(map(str, [*files, broken])))
    out = tmp_path / "out"
    env = {**os.environ, "FLUXWATCH_LAT_LIMIT": str(LAT_LIMIT)}
    command = [sys.executable, "-m", "archive.cli", f"@{listing}", "--out", str(out), "--bundle", str(tiny_bundle),
               "--chunk-days", "1", "--workers", "1"]
    job = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(out.glob(f"chunks/*/{REPORT}"))) < 2 and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(job.pid, signal.SIGKILL)  # the client, the scheduler and the worker at once
    job.wait()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in out.glob(f"chunks/*/{REPORT}")}
    slots = FileFrames.scan(files, progress=False).slots()
    n_chunks = len(plan(slots, 15, 16))
    assert 2 <= len(finished) < n_chunks, "killed part-way"
    assert not (out / "alerts.jsonl").exists()

    assert subprocess.run(command, env=env, capture_output=True).returncode == 0
    assert {name: (out / "chunks" / name / REPORT).stat().st_mtime_ns for name in finished} == finished, "not redone"
    assert len(list(out.glob(f"chunks/*/{REPORT}"))) == n_chunks
    got = events_in(out)
    expected = [e for e in sequential.store.reader().alerts() if slot_of_time(Time(e.frame_time)) <= slots[-1]]
    assert got and [without_publication_time(e) for e in got] == [without_publication_time(e) for e in expected]
    (refused,) = json.loads((out / "report.json").read_text())["refused"]
    assert refused["file"] == str(broken) and str(broken) in refused["problem"], "a clear error naming the file"
    with pytest.raises(ValueError, match="lat_limit"):  # chunks of another grid are not mixed into this catalog
        backfill(files, out, str(tiny_bundle), ServiceConfig(bundle=str(tiny_bundle)), progress=False)


def test_chunks_cover_the_period_once_and_replay_the_video_length_before_them():
    slots = list(range(1000, 1400))
    chunks = plan(slots, 150, 225)
    assert [(c.first, c.end, c.warm_from) for c in chunks] == [(1000, 1150, 1000), (1150, 1300, 1000), (1300, 1400, 1075)]
    later = plan(slots, 150, 225, first=1250)  # --from: earlier frames only warm up
    assert [(c.first, c.end, c.warm_from) for c in later] == [(1250, 1400, 1025)]
