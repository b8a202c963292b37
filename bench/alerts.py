"""Event-level evaluation on held-out streams: the CNN side by side with the classical detectors and the ceilings.

Replays (``--workers`` at a time, each resumable) the validation streams (seed 11,
declining phase and minimum) and the held-out streams of the synthetic Sun through the service's own path:
a stretch near solar maximum and one near minimum (seed 7: no training,
validation, test or demo uses it; the demo and the training sets use seed 0),
and a stretch near maximum under the held-out setting of the simulator
(``sim.settings.EVALUATION["held-out"]``: two-population growth, 30 G noise and
a 6″ PSF, outside every training Sun's ranges). Then chooses the bundle's
operating point on the validation streams pooled (the alert threshold and the
baseline's k and the new-flux detector's level for 0.2 false alerts per disk-day, recorded in the bundle's
manifest, as ``fluxwatch-evaluate --calibrate`` does), prints each held-out
stream's tables at it (the CNN, the flux-rise baseline, the new-flux
detector of :mod:`common.newflux`, and the two ceilings of
:mod:`evaluation.oracle`: the truth oracle and the visible one), and as its
last line the pooled figures of the two default-setting held-out streams:
``detected_1d=… detected_2d=… false_per_disk_day=… onset_median_d=… onset_iqr_d=… baseline_detected_1d=…
baseline_false_per_disk_day=… oracle_detected_1d=… oracle_detected_2d=… visible_oracle_detected_1d=…
newflux_detected_1d=… newflux_false_per_disk_day=… true_withdrawals=…``.
Numbers from the synthetic Sun are upper bounds for the real Sun.

Usage: python -m bench.alerts [--bundle models/cnn] [--max-days 60] [--min-days 30] [--setting-days 30]
                              [--size 1024] [--workers 2]
"""
from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from common.config import CNN_BUNDLE
from evaluation.cli import calibrate, last_line, replay_stream, report_stream
from evaluation.operating import VALIDATION, Stream
from evaluation.report import pooled as pooled_summaries

#: The detectors each report holds.
DETECTORS = ("cnn", "baseline", "newflux", "oracle", "visible_oracle")


def pooled(reports: list[dict], who: str) -> dict:
    """One detector's (``who``: one of :data:`DETECTORS`) figures pooled over several streams' reports
    (:func:`evaluation.report.pooled`)."""
    return pooled_summaries([r[who] for r in reports])


#: False alerts per disk-day at which the CNN's and the baseline's operating curves are compared.
RATES = (0.05, 0.1, 0.2, 0.3, 0.5)


def best_within(curve: list, rate: float) -> float:
    """The most emergences alerted within 1 d by any knob of ``curve`` ((knob, false/day, detected) points) with at
    most ``rate`` false alerts per disk-day (0 when none)."""
    return max((float(np.nan_to_num(d)) for _, f, d in curve if f <= rate), default=0.0)


def curves_side_by_side(report: dict) -> str:
    """One line per detector: detection within 1 d at each of :data:`RATES`, and whether the CNN is above the
    baseline and at or above the new-flux detector at every rate."""
    rows = {who: [best_within(report[f"{who}_curve"], r) for r in RATES] for who in DETECTORS}
    lines = ["  best alerted within 1 d at false alerts per disk-day <= " + " ".join(f"{r:>5g}" for r in RATES)]
    lines += [f"  {who:<14}" + " " * 41 + " ".join(f"{v:>5.2f}" for v in values) for who, values in rows.items()]
    if report["cnn"]["emergences"]:
        above = all(c > b for c, b in zip(rows["cnn"], rows["baseline"]))
        level = all(c >= n for c, n in zip(rows["cnn"], rows["newflux"]))
        lines.append(f"  CNN above the baseline at every rate: {'yes' if above else 'no'}; "
                     f"at or above the new-flux detector at every rate: {'yes' if level else 'no'}")
    return "\n".join(lines)


def _replay(job: tuple[Path, Stream, Path, int, str]) -> None:
    replay_stream(*job)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, default=Path(CNN_BUNDLE))
    p.add_argument("--max-days", type=float, default=60.0)
    p.add_argument("--min-days", type=float, default=30.0)
    p.add_argument("--setting-days", type=float, default=30.0,
                   help="days near maximum under the held-out setting (sim.settings); 0 skips it")
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--workers", type=int, default=2, help="streams replayed at once")
    p.add_argument("--out", type=Path, default=Path("data/bench-alerts"))
    a = p.parse_args()
    held_out = {"maximum": (Stream(7, "2002-03-01T00:00:00", a.max_days), "default"),
                "minimum": (Stream(7, "2008-06-01T00:00:00", a.min_days), "default")}
    if a.setting_days:
        held_out["held-out"] = (Stream(7, "2002-03-01T00:00:00", a.setting_days), "held-out")
    jobs = [(a.bundle, stream, a.out / name, a.size, "default") for name, stream in VALIDATION.items()]
    jobs += [(a.bundle, stream, a.out / name, a.size, setting) for name, (stream, setting) in held_out.items()]
    with ProcessPoolExecutor(a.workers) as pool:
        list(pool.map(_replay, jobs))
    point = calibrate(a.bundle, a.out, a.size)  # the replays are there: only chooses and records
    reports = {}
    for name, (stream, setting) in held_out.items():
        print(f"--- held-out stream {name}: seed {stream.seed}, {stream.days:g} days from {stream.start}, {setting} setting")
        service = replay_stream(a.bundle, stream, a.out / name, a.size, setting)
        reports[name] = report_stream(service, stream, a.out / name, setting, threshold=point["threshold"],
                                      baseline_k=point["baseline_flux_rise_k"], newflux_level=point["newflux_level_Mx"])
        print(curves_side_by_side(reports[name]))
    if "held-out" in reports:
        print(f"held-out setting (two-population growth, 30 G noise, 6″ PSF): {last_line(reports['held-out'])} "
              "(not pooled below)")
    default = [reports["maximum"], reports["minimum"]]
    print(last_line({who: pooled(default, who) for who in DETECTORS}))


if __name__ == "__main__":
    main()
