"""A 12-min SDO/HMI stream through the service on CPU: 4096² frames in, one frame per 96-min slot scored.

The synthetic Sun is observed by HMI (``sim.write_hmi_series``: 4096², 0.504″
pixels, ``CROTA2`` = 180°, in JSOC's file format: a Rice-compressed image of
32-bit integers, ``BSCALE`` 0.1, ``BLANK`` for missing pixels) every 12 minutes,
as the ``hmi.M_720s_nrt`` records arrive, over ``--slots`` slots (eight records
each, rendered beforehand by ``--workers`` processes).

1. **Stages:** the last slot's records read in this process, stage by stage
   (decompression and scaling, header and map, disk mask, the rest of the cleaning, brought
   to MDI): median seconds.
2. **The stream:** each file is dropped into the service's ``incoming/`` and
   taken at once; the clock runs from the drop to the moment the service has
   finished with it (read by the service's reader process, brought to MDI, and,
   when it is its slot's best, projected, scored and its alerts handed on).
   ``real_format_frame_s_p95``: p95 over the frames scored on arrival, the first
   slot's (a cold start: every passage created) excluded.
3. **Uploads:** the records posted to the running API (``POST /upload``):
   ``upload_accept_s_p95`` is the p95 time from the request's start (the
   13-MB body over loopback included) to its 202.

Last line: ``real_format_frame_s_p95=<x> upload_accept_s_p95=<u> frames_kept_per_slot=<y> superseded=<n>
rejected=<m>``. The 2026-12-07 issue's figure ``hmi_frame_to_alert_p95_s`` is the stream's p95 as the
service read frames before (in its own process), measured the same way.

Usage: python -m bench.hmi [--slots 3] [--workers 2] [--bundle models/cnn]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import astropy.units as u
import httpx
import numpy as np
from astropy.time import Time

import ingest.magnetogram
from bench._service_setup import START, bundle_or_untrained, metric
from common.clock import slot_of_time, slot_time
from common.config import CNN_BUNDLE, ServiceConfig
from ingest.magnetogram import read_frame
from ingest.projection import ImageGeometry
from serving.api import create_app
from serving.compose import open_service
from serving.metrics import REJECT_REASONS
from sim import SunConfig, SyntheticSun, write_hmi_series
from tests.support import ServerThread

#: The stages of a read, by the function that does each (module, name); the rest of read_frame is "cleaning".
STAGES = {"decompression and scaling": (ingest.magnetogram, "_open"), "header and map": (ingest.magnetogram, "_geometry"),
          "disk mask": (ImageGeometry, "on_disk_mask"), "brought to MDI": (ingest.magnetogram, "harmonise")}

#: HMI's records around a slot, minutes from its time (T_REC every 12 min; UTC a few tens of seconds off TAI).
OFFSETS_MIN = np.arange(-42, 48, 12) + 0.5


def _render(job: tuple[str, str]) -> Path:
    folder, t = job
    return write_hmi_series(SyntheticSun(SunConfig(), seed=0), Time(t), folder)[0]


@contextmanager
def timed_stages(spent: dict[str, float]) -> Iterator[None]:
    """Add the seconds each of :data:`STAGES` takes to ``spent`` while in the block."""
    originals = {name: getattr(owner, attr) for name, (owner, attr) in STAGES.items()}

    def timer(name, function):
        def run(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - t0
        return run

    for name, (owner, attr) in STAGES.items():
        setattr(owner, attr, timer(name, originals[name]))
    try:
        yield
    finally:
        for name, (owner, attr) in STAGES.items():
            setattr(owner, attr, originals[name])


def stage_profile(frames: list[Path], service) -> dict[str, float]:
    """Median seconds of each stage of reading ``frames`` in this process."""
    rows = []
    for path in frames:
        spent: dict[str, float] = defaultdict(float)
        t0 = time.perf_counter()
        with timed_stages(spent):
            read_frame(path, service.bundle.instrument)
        spent["cleaning"] = time.perf_counter() - t0 - sum(spent.values())
        rows.append(spent)
    return {name: float(np.median([r[name] for r in rows])) for name in [*STAGES, "cleaning"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slots", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="processes rendering the 4096² frames beforehand")
    p.add_argument("--bundle", type=Path, default=Path(CNN_BUNDLE))
    a = p.parse_args()
    slot0 = int(slot_of_time(START))
    times = [slot_time(slot0 + s) + m * u.min for s in range(a.slots) for m in OFFSETS_MIN]
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        bundle, what = bundle_or_untrained(a.bundle, tmp)
        print(f"model: {what}")
        t0 = time.perf_counter()
        with ProcessPoolExecutor(a.workers) as pool:
            frames = list(pool.map(_render, [(str(tmp / "frames"), t.isot) for t in times]))
        print(f"rendered {len(frames)} 4096² HMI frames in {time.perf_counter() - t0:.0f} s")
        service = open_service(ServiceConfig(data_dir=str(tmp / "svc"), bundle=str(bundle), source="watch"))
        stages = stage_profile(frames[-len(OFFSETS_MIN):], service)
        latencies = []
        for k, frame in enumerate(frames):
            t0 = time.perf_counter()
            os.replace(frame, service.inbox.incoming / frame.name)
            scored = service.run_cycle()
            dt = time.perf_counter() - t0
            print(f"{frame.name}: {dt:5.2f} s, {'scored' if scored else 'waiting or superseded'}")
            if scored and k >= len(OFFSETS_MIN):  # the first slot opens every passage: a cold start
                latencies.append(dt)
        assert all(service.store.has_frame(slot0 + s) for s in range(a.slots))
        kept = len(list(service.inbox.processed.glob("*.fits"))) / a.slots
        superseded = int(metric(service, "frames_superseded_total"))
        rejected = int(sum(service.metrics.registry.get_sample_value("fluxwatch_frames_rejected_total", {"reason": r})
                           or 0.0 for r in REJECT_REASONS))
        accept = []
        with ServerThread(create_app(service)) as server:
            for frame in sorted(service.inbox.processed.glob("*.fits")) + sorted(service.inbox.superseded.glob("*.fits")):
                body = frame.read_bytes()
                t0 = time.perf_counter()
                r = httpx.post(f"{server.url}/upload", files={"file": (frame.name, body)},
                               headers={"Authorization": f"Bearer {service.config.upload_token}"}, timeout=60)
                accept.append(time.perf_counter() - t0)
                assert r.status_code == 202, r.text
        service.close()
    print("stages of a read, median s: " + ", ".join(f"{k} {v:.3f}" for k, v in stages.items())
          + f"; read in all {sum(stages.values()):.3f}")
    print(f"uploads: {len(accept)}, 202 after {np.median(accept):.3f} s median")
    print(f"real_format_frame_s_p95={np.percentile(latencies, 95):.2f} upload_accept_s_p95={np.percentile(accept, 95):.2f} "
          f"frames_kept_per_slot={kept:.2f} superseded={superseded} rejected={rejected}")


if __name__ == "__main__":
    main()
