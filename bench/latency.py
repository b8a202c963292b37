"""Frame-to-Kafka latency of the live service on CPU, with a real Kafka broker.

Each 1024² synthetic frame is dropped into the service's ``incoming/``; the
clock runs from the drop to the moment every resulting message (alerts and
patch status) has been acknowledged by the broker (``acks=all``). Last line:
``frame_to_kafka_p50_s=<x> frame_to_kafka_p95_s=<y> patches=<n> members=<m>``.

Usage: python -m bench.latency [--frames 8] [--bundle models/cnn]
"""
from __future__ import annotations

import os
import time

import numpy as np

from bench._service_setup import bench_setup, metric
from common.config import ServiceConfig
from devtools.kafka_broker import KafkaBroker
from serving.app import build


def main() -> None:
    with bench_setup(__doc__, frames=8) as (tmp, bundle, frames):
        with KafkaBroker().start(tmp / "kafka") as broker:
            app = build(ServiceConfig(data_dir=str(tmp / "svc"), bundle=str(bundle), source="watch",
                                      kafka_bootstrap=broker.bootstrap)).start(scheduler=False)
            service = app.service
            try:
                latencies = []
                for k, frame in enumerate(frames):
                    t0 = time.perf_counter()
                    os.replace(frame, service.dir / "incoming" / frame.name)
                    service.run_cycle()
                    while service.store.outbox.depth():
                        time.sleep(0.01)
                    dt = time.perf_counter() - t0
                    if k:  # the first frame opens every passage: a cold start, not the steady state
                        latencies.append(dt)
                    print(f"frame {k}: {dt:.2f} s, {int(metric(service, 'active_patches'))} active patches")
            finally:
                app.stop()
    p50, p95 = np.percentile(latencies, [50, 95])
    print(f"frame_to_kafka_p50_s={p50:.2f} frame_to_kafka_p95_s={p95:.2f} "
          f"patches={int(metric(service, 'active_patches'))} members={service.bundle.scorers}")


if __name__ == "__main__":
    main()
