"""``make demo``: fluxwatch end to end on the embedded default, on one machine.

1. the synthetic Sun as FITS files through ingest, and the small training set (``sim.demo``);
2. the small ensemble (``train-ensemble --preset small``, about 17 min on 2 cores; reused when its
   bundle exists — ``--bundle`` points elsewhere);
3. a real Kafka broker (KRaft) and the service on the accelerated synthetic feed;
4. a Kafka consumer prints alerts as they arrive, with onset estimates next to the synthetic
   truth, and a summary: alerts, hits, misses, onset errors.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.time import Time
from tqdm import tqdm

from common.clock import CADENCE, slot_of_time, slot_time
from devtools.kafka_broker import KafkaBroker
from serving.bundle import BundleError, ModelBundle
from sim import SunConfig, SyntheticSun
from sim import demo as data_demo

ALERTS, STATUS = "fluxwatch.alerts", "fluxwatch.patch-status"


def ensure_bundle(store: Path, run: Path) -> Path:
    """The small ensemble's bundle under ``run``: reused if the service can load it, else (re)made by
    train-ensemble (which resumes from the run's checkpoints, so an outdated bundle is only re-exported)."""
    bundle = run / "bundle"
    try:
        ModelBundle(bundle)
        print(f"reusing model bundle {bundle}")
        return bundle
    except BundleError as exc:
        print(f"no usable bundle ({exc})")
    print("training the small ensemble (train-ensemble --preset small); this takes about 17 minutes on 2 cores")
    subprocess.run([sys.executable, "-m", "training.cli", "--store", str(store), "--out", str(run), "--preset", "small"],
                   check=True)
    return bundle


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("data/demo"))
    p.add_argument("--bundle", type=Path, help="an existing model bundle (default: train or reuse runs/small)")
    p.add_argument("--start", default="2000-06-20T00:00:00", help="synthetic feed start (UTC)")
    p.add_argument("--frames", type=int, default=20, help="96-min frames to stream")
    p.add_argument("--tick", type=float, default=12.0, help="wall seconds per 96-min cadence")
    p.add_argument("--port", type=int, default=8000)
    args = p.parse_args(argv)

    data_demo.main(["--out", str(args.out)])
    bundle = args.bundle or ensure_bundle(args.out / "small.zarr", Path("runs/small"))

    service_dir = args.out / "service"
    for fresh in (service_dir, args.out / "kafka"):  # a new stream each run: no old alerts replayed
        shutil.rmtree(fresh, ignore_errors=True)
    from kafka import KafkaConsumer

    with KafkaBroker().start(args.out / "kafka") as broker:
        print(f"Kafka broker up at {broker.bootstrap}")
        proc = subprocess.Popen([sys.executable, "-m", "serving.main", "--data-dir", str(service_dir), "--bundle", str(bundle),
                                 "--source", "synthetic", "--synthetic-start", args.start, "--speedup", str(CADENCE.to_value(u.s) / args.tick),
                                 "--kafka", broker.bootstrap, "--port", str(args.port)])
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=1000)
        alerts = []
        first = int(slot_of_time(Time(args.start)))
        progress = tqdm(total=args.frames, desc="frames streamed", unit="frame")
        try:
            deadline = time.time() + args.frames * args.tick + 120
            print(f"service on http://127.0.0.1:{args.port} (API docs at /docs), streaming {args.frames} frames ...")
            while time.time() < deadline:
                if ALERTS not in (consumer.topics() or set()):
                    time.sleep(1)
                    continue
                if not consumer.subscription():
                    consumer.subscribe([ALERTS])
                for record in consumer:
                    event = json.loads(record.value)
                    alerts.append(event)
                    if event["event"] == "updated":
                        continue  # counted in the summary; opened, withdrawn and closed are shown
                    tqdm.write(f"  {event['frame_time'][:16]} {event['event']:>9} {event['patch_id']}  p={event['probability']['median']:.2f}"
                          f"  onset {event['onset']['time_utc'][:16]} ± {event['onset']['uncertainty_hours']:.0f} h")
                done = json.loads((service_dir / "feed.json").read_text())["next_slot"] if (service_dir / "feed.json").exists() else first
                progress.update(min(done - first, args.frames) - progress.n)
                if done >= first + args.frames and not list((service_dir / "incoming").glob("*.fits")):
                    break
        finally:
            progress.close()
            proc.terminate()
            proc.wait(30)
            consumer.close()
    summarize(alerts, Time(args.start), args.frames)
    return 0


def summarize(alerts: list[dict], start: Time, frames: int) -> None:
    """Alerts against the synthetic truth.

    A true emergence is a BMR that began emerging on the visible disk while the feed ran, in a
    patch the service watches. A hit is such a patch with an opened alert; a miss one without;
    a false alert an opened alert on a patch with no true emergence in its passage.
    """
    from common.config import PatchGridConfig, ServiceConfig
    from common.observer import central_meridian_distance
    from common.patches import PatchGrid
    from sim import ephemeris

    sun = SyntheticSun(SunConfig(), seed=0)
    end = slot_time(int(slot_of_time(start)) + frames)
    grid = PatchGrid(PatchGridConfig(lat_limit=ServiceConfig().lat_limit))
    table = sun.bmrs(start, end)
    l0, _, _ = ephemeris(table.t_emerge)
    on_disk = np.abs(central_meridian_distance(table.lon, l0)) < 90
    half = grid.config.patch_size.to_value("deg") / 2
    truth = {}
    for i in np.flatnonzero(on_disk):
        dlon = np.abs((grid.lon - table.lon[i] + 180) % 360 - 180)
        inside = np.flatnonzero((dlon <= half) & (np.abs(grid.lat - table.lat[i]) <= half))
        for k in inside:
            truth.setdefault(grid.ids[k], []).append(table.t_emerge[i])
    opened = [a for a in alerts if a["event"] == "opened"]
    alerted = {a["patch_id"]: a for a in opened}
    hits = [p for p in truth if p in alerted]
    errors = [(Time(alerted[p]["onset"]["time_utc"]) - min(truth[p])).to_value("day") for p in hits]
    print(f"\nsummary: {len(alerts)} alert events, {len(opened)} alerts opened; {len(truth)} patches with a true "
          f"on-disk emergence during the run: {len(hits)} hits, {len(truth) - len(hits)} misses; "
          f"{len([p for p in alerted if p not in truth])} alerts on patches without one")
    if errors:
        q = np.percentile(errors, [25, 50, 75])
        print(f"onset error (estimate - truth) for hits, days: median {q[1]:+.2f}, 25-75th [{q[0]:+.2f}, {q[2]:+.2f}]")


if __name__ == "__main__":
    sys.exit(main())
