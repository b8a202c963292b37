"""A 12-min SDO/HMI stream through the service on CPU: 4096² frames in, one frame per 96-min slot scored.

The synthetic Sun is observed by HMI (``sim.write_hmi_series``: 4096², 0.504″
pixels, Rice-compressed, ``CROTA2`` = 180°) every 12 minutes, as the
``hmi.M_720s_nrt`` records arrive, over ``--slots`` slots (eight records
each, rendered beforehand by ``--workers`` processes). Each file is dropped
into the service's ``incoming/`` and taken at once; the clock runs from the
drop to the moment the service has finished with it (read, brought to MDI,
and, when it is its slot's best, projected, scored and its alerts handed
on). Last line:
``hmi_frame_to_alert_p95_s=<x> frames_kept_per_slot=<y> superseded=<n> rejected=<m>``
(p95 over the frames that were scored on arrival, the first slot's being a
cold start excluded).

Usage: python -m bench.hmi [--slots 3] [--workers 2] [--bundle models/cnn]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.time import Time

from bench._service_setup import START, bundle_or_untrained, metric
from common.clock import slot_of_time, slot_time
from common.config import CNN_BUNDLE, ServiceConfig
from serving.compose import open_service
from serving.metrics import REJECT_REASONS
from sim import SunConfig, SyntheticSun, write_hmi_series

#: HMI's records around a slot, minutes from its time (T_REC every 12 min; UTC a few tens of seconds off TAI).
OFFSETS_MIN = np.arange(-42, 48, 12) + 0.5


def _render(job: tuple[str, str]) -> Path:
    folder, t = job
    return write_hmi_series(SyntheticSun(SunConfig(), seed=0), Time(t), folder)[0]


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
    print(f"hmi_frame_to_alert_p95_s={np.percentile(latencies, 95):.2f} frames_kept_per_slot={kept:.2f} "
          f"superseded={superseded} rejected={rejected}")


if __name__ == "__main__":
    main()
