"""``fluxwatch-evaluate``: stream a held-out stretch of the synthetic Sun through the service and score its alerts.

Prints the event-level table of the CNN and of the classical baseline (at the
bundle's operating point, chosen on the validation stream by ``--calibrate``;
a bundle without one is compared with the baseline tuned on the same stream to
the CNN's false-alarm rate), the Brier score of the scores, writes
``report.json``, the operating curves (``operating_curve.png``) and the
reliability diagram (``reliability.png``), and ends with the line
``detected_1d=… false_per_disk_day=… onset_median_d=… onset_iqr_d=…
baseline_detected_1d=… baseline_false_per_disk_day=…``.

Counted emergences start at least ``--warmup-days`` after the stream starts
and at least two days before it ends; every emergence can explain an alert.
Numbers from the synthetic Sun are upper bounds for the real Sun.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from astropy.time import Time
from tqdm import tqdm

from common.clock import CADENCE_DAYS, SLOTS_PER_DAY, slot_days, slot_of_time
from common.config import ServiceConfig
from common.patches import PatchGrid
from evaluation.baseline import FluxRiseDetector
from evaluation.calibration import forecasts, plot_reliability
from evaluation.matching import Emergence, Match, MatchRule, match
from evaluation.operating import TARGET_FALSE_PER_DISK_DAY, VALIDATION, choose, record
from evaluation.replay import baseline_alerts, baseline_flux, opened, passages, policy_alerts, replay, truth
from evaluation.report import Exposure, plot_operating_curves, summary, table
from serving.bundle import ModelBundle
from serving.events import AlertEvent, EventKind
from serving.service import Service
from sim import SunConfig, SyntheticSun

THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.025), 3)
KS = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0)


#: Settings of the synthetic Sun to evaluate on: the default (the training sets' settings) and held-out ones
#: that no training set uses.
SETTINGS = {"default": SunConfig(), "flux-growth": SunConfig(growth_law="flux-rate")}


def evaluate(bundle: Path, seed: int, start: str, days: float, out: Path, size: int = 1024, warmup_days: float = 1.0,
             detector: FluxRiseDetector = FluxRiseDetector(), baseline_k: float | None = None, setting: str = "default",
             log=print) -> dict:
    """Replay, match and report one stream; returns the report (also ``out/report.json``).

    The CNN alerts at the bundle's alert threshold (its operating point, if it has one). The baseline
    runs at ``baseline_k`` (e.g. chosen on the validation stream), else at the k whose false-alarm rate
    on this stream is nearest the CNN's (said so in the table).
    """
    out.mkdir(parents=True, exist_ok=True)
    first = int(slot_of_time(Time(start)))
    end = first + int(round(days * SLOTS_PER_DAY))
    sun = SyntheticSun(SETTINGS[setting], seed=seed)
    service = Service(ServiceConfig(data_dir=str(out / "service"), bundle=str(bundle), source="watch"))
    slots = range(first, end)
    for chunk in tqdm(range(0, len(slots), SLOTS_PER_DAY), desc="streaming days", unit="day"):
        replay(service, sun, slots[chunk : chunk + SLOTS_PER_DAY], (size, size), out / "staging")
    history = passages(service)
    rule = MatchRule()
    emergences = truth(sun, first - int(rule.window_days * SLOTS_PER_DAY), end)
    counted = (float(slot_days(first)) + warmup_days, float(slot_days(end)) - 2.0)
    exposure = Exposure(disk_days=len(slots) * CADENCE_DAYS, patch_days=sum(len(p.scores) for p in history) * CADENCE_DAYS)
    grid = service.step.grid

    cnn, cnn_summary = score_events(service.store.reader().alerts(), emergences, grid, exposure, counted, rule)
    policy = service.step.policy
    cnn_curve = []
    for t in THRESHOLDS:
        alerts, _ = policy_alerts(history, replace(policy, threshold=float(t)))
        s = summary(match(emergences, alerts, grid, rule, counted), exposure, 0)
        cnn_curve.append((float(t), s["false_per_disk_day"], s["detected_1d"]))
    base = {}
    series = baseline_flux(service, history, detector)
    for k in sorted({*KS, *([baseline_k] if baseline_k else [])}):
        m = match(emergences, baseline_alerts(series, replace(detector, k=k)), grid, rule, counted)
        base[k] = (m, summary(m, exposure, 0))
    if baseline_k:
        k_op, how = baseline_k, "chosen on the validation stream"
    else:
        k_op = min(KS, key=lambda k: (abs(base[k][1]["false_per_disk_day"] - cnn_summary["false_per_disk_day"]), -k))
        how = "tuned on this stream to the CNN's false-alarm rate"
    base_match, base_summary = base[k_op]
    f = forecasts(history, emergences, grid, rule)

    log(table(f"CNN (alert threshold {policy.threshold:.3f})", cnn, cnn_summary))
    log(f"  calibration of the scores: Brier {f.brier:.4f} over {len(f.p)} scored frames (base rate {f.base_rate:.4f}; "
        f"always saying it scores {f.base_rate * (1 - f.base_rate):.4f})")
    log(table(f"baseline (flux rise, k = {k_op:g}, {how})", base_match, base_summary))
    png = plot_operating_curves(
        {"CNN (threshold)": cnn_curve, "baseline (k)": [(k, s["false_per_disk_day"], s["detected_1d"]) for k, (_, s) in base.items()]},
        {"CNN (threshold)": (cnn_summary["false_per_disk_day"], cnn_summary["detected_1d"]),
         "baseline (k)": (base_summary["false_per_disk_day"], base_summary["detected_1d"])}, out / "operating_curve.png")
    reliability_png = plot_reliability(f, out / "reliability.png", f"seed {seed}, {days:g} d from {start[:10]} (synthetic Sun)")
    report = {"stream": {"seed": seed, "start": start, "days": days, "size": size, "bundle": str(bundle), "setting": setting,
                         "counted_onsets_days": counted, "disk_days": exposure.disk_days, "patch_days": exposure.patch_days},
              "cnn": {**cnn_summary, "threshold": policy.threshold, "brier": f.brier, "base_rate": f.base_rate,
                      "reliability": f.reliability()},
              "cnn_curve": cnn_curve, "baseline": {**base_summary, "k": k_op, "k_chosen": how},
              "baseline_curve": [(k, s["false_per_disk_day"], s["detected_1d"]) for k, (_, s) in base.items()],
              "operating_curve_png": str(png), "reliability_png": str(reliability_png),
              "note": "synthetic Sun: an upper bound for the real Sun"}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    log(last_line(report))
    return report


def calibrate(bundle: Path, out: Path, size: int = 1024, target: float = TARGET_FALSE_PER_DISK_DAY, log=print) -> dict:
    """Replay the validation stream, choose the CNN's alert threshold and the baseline's k for ``target`` false
    alerts per disk-day, and record them in the bundle's manifest; returns the operating point."""
    v = VALIDATION
    log(f"--- validation stream: seed {v.seed}, {v.days:g} days from {v.start}")
    report = evaluate(bundle, v.seed, v.start, v.days, out, size, log=log)
    threshold = choose(report["cnn_curve"], target)
    _, false_rate, detected = next(c for c in report["cnn_curve"] if c[0] == threshold)
    k = choose(report["baseline_curve"], target)
    point = {"threshold": threshold, "target_false_per_disk_day": target, "baseline_flux_rise_k": k,
             "validation": {**asdict(v), "size": size, "false_per_disk_day": false_rate, "detected_1d": detected},
             "note": "chosen on the synthetic Sun's validation stream (evaluation.operating)"}
    record(bundle, point)
    log(f"operating point recorded in {bundle / 'manifest.json'}: alert threshold {threshold:.3f} (validation: "
        f"{false_rate:.2f} false per disk-day, detected within 1 d {detected:.2f}); baseline k {k:g}")
    return point


def score_events(events: list[AlertEvent], emergences: list[Emergence], grid: PatchGrid, exposure: Exposure,
                 counted: tuple[float, float], rule: MatchRule = MatchRule()) -> tuple[Match, dict]:
    """Match a service's alert events to the truth and summarise them (:func:`evaluation.report.summary`)."""
    m = match(emergences, opened(events), grid, rule, counted)
    return m, summary(m, exposure, sum(e.event == EventKind.withdrawn for e in events))


def last_line(report: dict) -> str:
    c, b = report["cnn"], report["baseline"]
    return (f"detected_1d={c['detected_1d']:.2f} false_per_disk_day={c['false_per_disk_day']:.2f} "
            f"onset_median_d={c['onset_median_d']:+.2f} onset_iqr_d={c['onset_iqr_d']:.2f} "
            f"baseline_detected_1d={b['detected_1d']:.2f} baseline_false_per_disk_day={b['false_per_disk_day']:.2f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="fluxwatch-evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, default=Path("runs/small/bundle"))
    p.add_argument("--seed", type=int, default=7, help="synthetic Sun seed (held out: training and the demo use 0)")
    p.add_argument("--start", default="2002-03-01T00:00:00", help="first frame (UTC)")
    p.add_argument("--days", type=float, default=60.0)
    p.add_argument("--size", type=int, default=1024, help="full-disk frame side, pixels")
    p.add_argument("--out", type=Path, default=Path("data/evaluate"))
    p.add_argument("--setting", choices=sorted(SETTINGS), default="default",
                   help="synthetic Sun settings: the training sets' (default) or a held-out one")
    p.add_argument("--calibrate", action="store_true",
                   help="replay the validation stream instead, choose the alert threshold for --target and record it in the bundle")
    p.add_argument("--target", type=float, default=TARGET_FALSE_PER_DISK_DAY, help="false alerts per disk-day (--calibrate)")
    a = p.parse_args(argv)
    if a.calibrate:
        calibrate(a.bundle, a.out, a.size, a.target)
    else:
        k = ModelBundle(a.bundle).manifest.get("operating_point", {}).get("baseline_flux_rise_k")
        evaluate(a.bundle, a.seed, a.start, a.days, a.out, a.size, baseline_k=k, setting=a.setting)
    return 0


if __name__ == "__main__":
    sys.exit(main())
