"""Event-level evaluation on held-out streams: the CNN side by side with the classical flux-rise baseline.

First chooses the bundle's operating point on the validation stream (seed 11,
``fluxwatch-evaluate --calibrate``: the alert threshold and the baseline's k for
0.5 false alerts per disk-day, recorded in the bundle's manifest), then streams
a stretch near solar maximum and one near minimum of the synthetic Sun (seed 7:
no training, validation, test or demo uses it; the demo and the training sets
use seed 0) through the service's own path (``fluxwatch-evaluate``), prints
each stream's table, then a stretch near maximum under a held-out setting of the
simulator (flux-dependent growth, which no training set has), and as its last
line the pooled figures of the two default-setting streams:
``detected_1d=… false_per_disk_day=… onset_median_d=… onset_iqr_d=… baseline_detected_1d=… baseline_false_per_disk_day=…``.
Numbers from the synthetic Sun are upper bounds for the real Sun.

Usage: python -m bench.alerts [--bundle runs/small/bundle] [--max-days 60] [--min-days 30] [--size 1024] [--keep-operating-point]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from evaluation.cli import calibrate, evaluate, last_line
from serving.bundle import ModelBundle

STREAMS = (("maximum", "2002-03-01T00:00:00", "max_days"), ("minimum", "2008-06-01T00:00:00", "min_days"))


def pooled(reports: list[dict], who: str) -> dict:
    n = sum(r[who]["emergences"] for r in reports)
    errors = np.concatenate([r[who]["onset_errors_d"] for r in reports] + [np.zeros(0)])
    q25, q50, q75 = np.percentile(errors, [25, 50, 75]) if errors.size else (np.nan,) * 3
    return {"detected_1d": sum(r[who]["detected_1d_count"] for r in reports) / n if n else float("nan"),
            "false_per_disk_day": sum(r[who]["false_alerts"] for r in reports) / sum(r[who]["disk_days"] for r in reports),
            "onset_median_d": q50, "onset_iqr_d": q75 - q25}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, default=Path("runs/small/bundle"))
    p.add_argument("--max-days", type=float, default=60.0)
    p.add_argument("--min-days", type=float, default=30.0)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--out", type=Path, default=Path("data/bench-alerts"))
    p.add_argument("--setting-days", type=float, default=30.0,
                   help="days near maximum under the held-out setting (flux-dependent growth); 0 skips it")
    p.add_argument("--keep-operating-point", action="store_true", help="use the bundle's recorded operating point as it is")
    a = p.parse_args()
    point = ModelBundle(a.bundle).manifest.get("operating_point")
    if not (a.keep_operating_point and point):
        point = calibrate(a.bundle, a.out / "validation", a.size)
    reports = []
    for name, start, days in STREAMS:
        print(f"--- held-out stream near solar {name}: seed 7, {getattr(a, days):g} days from {start}")
        reports.append(evaluate(a.bundle, 7, start, getattr(a, days), a.out / name, a.size,
                                baseline_k=point["baseline_flux_rise_k"]))
    if a.setting_days:
        print(f"--- held-out setting (flux-dependent growth, which no training set has): seed 7, {a.setting_days:g} days "
              f"from {STREAMS[0][1]}")
        held = evaluate(a.bundle, 7, STREAMS[0][1], a.setting_days, a.out / "flux-growth", a.size,
                        baseline_k=point["baseline_flux_rise_k"], setting="flux-growth")
        print(f"held-out setting: {last_line(held)} (not pooled into the line below)")
    c, b = pooled(reports, "cnn"), pooled(reports, "baseline")
    print(f"detected_1d={c['detected_1d']:.2f} false_per_disk_day={c['false_per_disk_day']:.2f} "
          f"onset_median_d={c['onset_median_d']:+.2f} onset_iqr_d={c['onset_iqr_d']:.2f} "
          f"baseline_detected_1d={b['detected_1d']:.2f} baseline_false_per_disk_day={b['false_per_disk_day']:.2f}")


if __name__ == "__main__":
    main()
