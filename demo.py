"""``make demo``: fluxwatch end to end on the embedded default, on one machine.

1. the synthetic Sun as FITS files through ingest, and the small training set (``sim.demo``);
2. the default bundle, the causal detector (``train-ensemble --preset causal --reviewer simulated``; reused
   when its bundle exists — ``--bundle`` points elsewhere), and its alert threshold for 0.2 false alerts per disk-day chosen
   on the validation stream (``fluxwatch-evaluate --calibrate``), once;
3. a real Kafka broker (KRaft) and the service on the accelerated synthetic feed;
4. a Kafka consumer prints alerts as they arrive, and the stream's event-level summary against the
   synthetic truth (the rule of ``evaluation.matching``): emergences alerted within 1 and 2 days,
   time to alert, onset error, false alerts per disk-day.
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
from astropy.time import Time
from tqdm import tqdm

from common.clock import CADENCE, slot_of_time
from common.config import ServiceConfig
from devtools.kafka_broker import KafkaBroker
from serving.bundle import BundleError, ModelBundle
from sim import SunConfig, SyntheticSun
from sim import demo as data_demo


def ensure_bundle(store: Path, run: Path) -> Path:
    """The default bundle under ``run``: reused if the service can load it, else (re)made by
    train-ensemble (which resumes from the run's checkpoints, so an outdated bundle is only re-exported)."""
    bundle = run / "bundle"
    try:
        ModelBundle(bundle)
        print(f"reusing model bundle {bundle}")
        return bundle
    except BundleError as exc:
        print(f"no usable bundle ({exc})")
    print("training the causal detector (train-ensemble --preset causal --reviewer simulated); about 25 minutes on 2 cores")
    subprocess.run([sys.executable, "-m", "training.cli", "--store", str(store), "--out", str(run), "--preset", "causal",
                    "--reviewer", "simulated"], check=True)
    return bundle


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("data/demo"))
    p.add_argument("--bundle", type=Path, help="an existing model bundle (default: train or reuse runs/causal)")
    p.add_argument("--start", default="2000-06-20T00:00:00", help="synthetic feed start (UTC)")
    p.add_argument("--frames", type=int, default=20, help="96-min frames to stream")
    p.add_argument("--tick", type=float, default=12.0, help="wall seconds per 96-min cadence")
    p.add_argument("--port", type=int, default=8000)
    args = p.parse_args(argv)

    data_demo.main(["--out", str(args.out)])
    bundle = args.bundle or ensure_bundle(args.out / data_demo.STORE, Path("runs/causal"))
    if "operating_point" not in ModelBundle(bundle).manifest:
        from evaluation.cli import calibrate

        print("choosing the alert threshold on the validation stream (fluxwatch-evaluate --calibrate; about 8 minutes)")
        calibrate(bundle, args.out / "validation")

    service_dir = args.out / "service"
    for fresh in (service_dir, args.out / "kafka"):  # a new stream each run: no old alerts replayed
        shutil.rmtree(fresh, ignore_errors=True)
    from kafka import KafkaConsumer

    alerts_topic = ServiceConfig().simulated_alerts_topic  # the synthetic Sun's events go to the simulated topics
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
                if alerts_topic not in (consumer.topics() or set()):
                    time.sleep(1)
                    continue
                if not consumer.subscription():
                    consumer.subscribe([alerts_topic])
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
    summarize(alerts, Time(args.start), args.frames, service_dir)
    return 0


def summarize(alerts: list[dict], start: Time, frames: int, service_dir: Path) -> None:
    """The stream's alerts against the synthetic truth, by the event-level rule of :mod:`evaluation.matching`
    (the one ``bench.alerts`` reports); every emergence during the stream is counted."""
    from common.clock import CADENCE_DAYS, slot_days
    from common.patches import PatchGrid
    from evaluation.cli import score_events, stream_truth
    from evaluation.report import Exposure, table
    from serving.events import AlertEvent
    from serving.store import Reader

    first = int(slot_of_time(start))
    reader = Reader(service_dir / "state.sqlite")
    patch_days = sum(len(reader.scores(*key)) for key in reader.passages()) * CADENCE_DAYS
    emergences = stream_truth(SyntheticSun(SunConfig(), seed=0), first, first + frames)
    m, s = score_events([AlertEvent.model_validate(a) for a in alerts], emergences, PatchGrid(ServiceConfig().patch_grid),
                        Exposure(frames * CADENCE_DAYS, patch_days), (float(slot_days(first)), float(slot_days(first + frames))))
    print(f"\nsummary: {len(alerts)} alert events on the stream's {frames} frames "
          "(synthetic Sun: an upper bound for the real Sun; regions that emerged in the stream's last day could not yet be alerted)")
    print(table("CNN", m, s))


if __name__ == "__main__":
    sys.exit(main())
