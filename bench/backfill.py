"""Backfill throughput: how long the service takes to ingest and score a year of 96-min frames.

Streams consecutive 1024² synthetic frames through the service (no Kafka:
alerts go to the API tables and the JSON-lines log), measures frames per
second over the steady state and extrapolates to a year (5,479 slots).
Last line: ``frames_per_s=<x> year_minutes=<y>``.

Usage: python -m bench.backfill [--frames 12] [--bundle runs/causal/bundle]
"""
from __future__ import annotations

import shutil
import time

from bench._service_setup import bench_setup, metric
from common.config import ServiceConfig
from serving.service import Service

SLOTS_PER_YEAR = 365.25 * 15


def main() -> None:
    with bench_setup(__doc__, frames=12) as (tmp, bundle, frames):
        service = Service(ServiceConfig(data_dir=str(tmp / "svc"), bundle=str(bundle), source="watch"))
        shutil.move(str(frames[0]), service.dir / "incoming")
        service.run_cycle()  # opens every passage: not part of the steady state
        for f in frames[1:]:
            shutil.move(str(f), service.dir / "incoming")
        scoring0, t0 = metric(service, "scoring_latency_seconds_sum"), time.perf_counter()
        done = service.run_cycle()
        elapsed = time.perf_counter() - t0
        scoring_s = metric(service, "scoring_latency_seconds_sum") - scoring0
    fps = done / elapsed
    patches, members = int(metric(service, "active_patches")), len(service.bundle.members)
    print(f"per frame: {scoring_s / done:.2f} s scoring ({members} members x {patches} patches), "
          f"{(elapsed - scoring_s) / done:.2f} s the rest (read, project, store, alerts)")
    print(f"{done} frames in {elapsed:.1f} s; a year is {SLOTS_PER_YEAR:.0f} slots")
    print(f"frames_per_s={fps:.3f} year_minutes={SLOTS_PER_YEAR / fps / 60:.1f}")


if __name__ == "__main__":
    main()
