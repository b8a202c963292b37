"""``fluxwatch-evaluate``: stream a held-out stretch of the synthetic Sun through the service and score its alerts.

Prints the event-level table of the CNN and of the classical baseline (at the
bundle's operating point, chosen on the validation streams by ``--calibrate``;
a bundle without one is compared with the baseline tuned on the same stream to
the CNN's false-alarm rate) and of the oracle (:mod:`evaluation.oracle`: the
simulator's noise-free new flux in a tile reaching ``--oracle-flux``, the
ceiling), the Brier score of the scores, writes ``report.json``, the operating
curves of the three (``operating_curve.png``), their delays from onset to alert
(``delays.png``) and the reliability diagram (``reliability.png``), and ends
with the line ``detected_1d=… detected_2d=… false_per_disk_day=…
onset_median_d=… onset_iqr_d=… baseline_detected_1d=…
baseline_false_per_disk_day=… oracle_detected_1d=… oracle_detected_2d=…``.

A replay is kept in ``--out`` (resumed when rerun); the report is computed from
the stored scores, so any threshold can be reported without a second replay.
Counted emergences start at least one day after the stream starts and at least
two days before it ends; every emergence can explain an alert.
Numbers from the synthetic Sun are upper bounds for the real Sun.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from astropy.time import Time
from tqdm import tqdm

from common.clock import CADENCE_DAYS, SLOTS_PER_DAY, slot_days, slot_of_time
from common.config import DEFAULT_BUNDLE, ServiceConfig
from common.newflux import NewFluxDetector
from common.patches import PatchGrid
from contract.events import AlertEvent, EventKind
from evaluation.baseline import FluxRiseDetector
from evaluation.calibration import forecasts, plot_reliability
from evaluation.matching import Emergence, Match, MatchRule, OpenedAlert, match
from evaluation.operating import TARGET_FALSE_PER_DISK_DAY, VALIDATION, Stream, choose, pooled_curve, record
from evaluation.oracle import MEMORY_DAYS, ORACLE_FLUX_MX, instrument_sigma_deg, oracle_alerts, stream_tile_flux
from evaluation.replay import (
    detector_alerts,
    detector_series,
    opened,
    passages,
    policy_alerts,
    replay,
    stored_emergence,
    truth,
)
from evaluation.report import Exposure, plot_delays, plot_operating_curves, summary, table, true_withdrawals
from serving.alerts import passage_label
from serving.bundle import ModelBundle
from serving.compose import open_service
from serving.service import Service
from sim import SyntheticSun
from sim.settings import EVALUATION

THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.025), 3)
KS = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0)
#: The oracle's levels F on its operating curve, Mx.
ORACLE_LEVELS_MX = (3e20, 5e20, 7e20, 1e21, 1.5e21, 2e21, 3e21)
#: The new-flux detector's levels F on its operating curve, Mx.
NEWFLUX_LEVELS_MX = (4e20, 5e20, 6e20, 7e20, 8e20, 9e20, 1e21, 1.2e21, 1.5e21, 2e21, 3e21)
#: MDI's plate scale at its 1024² frame, arcsec per pixel.
MDI_PLATE_SCALE_ARCSEC = 1.98


def stream_slots(stream: Stream) -> tuple[int, int]:
    """The first slot of ``stream`` and the slot after its last."""
    first = int(slot_of_time(Time(stream.start)))
    return first, first + int(round(stream.days * SLOTS_PER_DAY))


def replay_stream(bundle: Path, stream: Stream, out: Path, size: int = 1024, setting: str = "default",
                  **service_options) -> Service:
    """Stream ``stream`` through a service scoring with ``bundle`` in ``out/service``; returns the service.

    ``service_options`` are further :class:`common.config.ServiceConfig` fields (e.g. the alert policy's).
    Resumable: a rerun skips the slots already ingested. A folder holding another stream, model version, setting,
    simulator or frame size is refused.
    """
    out.mkdir(parents=True, exist_ok=True)
    spec = json.loads(json.dumps({"stream": asdict(stream), "setting": setting, "size": size, "bundle": str(bundle),
                                  "model_version": ModelBundle(bundle).model_version,
                                  "sun": asdict(EVALUATION[setting])}))  # a changed simulator is another replay
    spec_path = out / "stream.json"
    # where the bundle lies does not change the replay: its model version says what it scores
    if spec_path.exists() and {**json.loads(spec_path.read_text()), "bundle": None} != {**spec, "bundle": None}:
        raise SystemExit(f"fluxwatch-evaluate: {out} holds another replay ({spec_path.read_text().strip()}); "
                         "remove it or choose another --out")
    spec_path.write_text(json.dumps(spec))
    service = open_service(ServiceConfig(data_dir=str(out / "service"), bundle=str(bundle), source="watch", **service_options))
    first, end = stream_slots(stream)
    newest = service.store.newest_frame()
    slots = range(first if newest is None else max(first, newest[0] + 1), end)
    sun = SyntheticSun(EVALUATION[setting], seed=stream.seed)
    for chunk in tqdm(range(0, len(slots), SLOTS_PER_DAY), desc=f"streaming days (seed {stream.seed}, {setting})", unit="day"):
        replay(service, sun, slots[chunk : chunk + SLOTS_PER_DAY], (size, size), out / "staging")
    return service


def report_stream(service: Service, stream: Stream, out: Path, setting: str = "default", threshold: float | None = None,
                  baseline_k: float | None = None, newflux_level: float | None = None, warmup_days: float = 1.0,
                  detector: FluxRiseDetector = FluxRiseDetector(), newflux: NewFluxDetector = NewFluxDetector(),
                  oracle_flux: float = ORACLE_FLUX_MX, log=print) -> dict:
    """Match and report a replayed stream; returns the report (also ``out/report.json``).

    The CNN alerts at ``threshold`` (default: the service's, i.e. the bundle's alert threshold), re-run
    over the stored scores (:func:`evaluation.replay.policy_alerts`: exactly the service's alerts). The
    classical detectors run on the stored patch videos (their series cached in ``out/series``): the
    flux-rise baseline at ``baseline_k`` and the new-flux detector (:mod:`common.newflux`) at
    ``newflux_level`` (Mx; e.g. chosen on the validation streams), else each at the knob whose false-alarm
    rate on this stream is nearest the CNN's (said so in the table). The oracles (:mod:`evaluation.oracle`:
    the truth's and the visible one's) alert at ``oracle_flux`` (Mx) of new flux in a tile.
    """
    first, end = stream_slots(stream)
    history = passages(service)
    rule = MatchRule()
    sun = SyntheticSun(EVALUATION[setting], seed=stream.seed)
    emergences = stream_truth(sun, first, end, rule)
    counted = (float(slot_days(first)) + warmup_days, float(slot_days(end)) - 2.0)
    exposure = Exposure(disk_days=(end - first) * CADENCE_DAYS, patch_days=sum(len(p.scores) for p in history) * CADENCE_DAYS)
    grid = service.grid
    policy = replace(service.step.policy, threshold=service.step.policy.threshold if threshold is None else threshold)

    def scored(alerts: list[OpenedAlert], withdrawn: Sequence[str] = ()) -> tuple[Match, dict]:
        m = match(emergences, alerts, grid, rule, counted)
        return m, {**summary(m, exposure, len(withdrawn)), "true_withdrawals": true_withdrawals(m, withdrawn)}

    emergence = stored_emergence(service)
    alerts, withdrawn = policy_alerts(history, policy, emergence)
    cnn, cnn_summary = scored(alerts, withdrawn)
    cold = passage_label(first)  # passages that began before the stream: the service saw them from mid-passage
    cnn_summary["false_alerts_cold_start"] = sum(a.alert_id.split("/")[1] < cold for a in cnn.false_alerts)
    cnn_curve = [(float(t), *_curve_point(scored(policy_alerts(history, replace(policy, threshold=float(t)), emergence)[0])[1]))
                 for t in THRESHOLDS]

    series = detector_series(service, history, {"baseline": detector, "newflux": newflux}, cache=out / "series")
    results = {"cnn": Outcome(cnn, cnn_summary, cnn_curve, policy.threshold, "the bundle's operating point")}
    for name, d, knobs, chosen in (("baseline", detector, KS, baseline_k), ("newflux", newflux, NEWFLUX_LEVELS_MX, newflux_level)):
        sweep = {k: scored(detector_alerts(series[name], replace(d, **{d.knob: k}), name))
                 for k in sorted({*knobs, *([chosen] if chosen else [])})}
        if chosen:
            k_op, how = chosen, "chosen on the validation streams"
        else:
            k_op = min(knobs, key=lambda k: (abs(sweep[k][1]["false_per_disk_day"] - cnn_summary["false_per_disk_day"]), -k))
            how = "tuned on this stream to the CNN's false-alarm rate"
        results[name] = Outcome(*sweep[k_op], [(k, *_curve_point(s)) for k, (_, s) in sweep.items()], k_op, how)
    for name, widen in (("oracle", None), ("visible_oracle", instrument_sigma_deg(sun.config, _plate_scale(size_of(service))))):
        tiles = stream_tile_flux(sun, grid, first, end, visible_sigma_deg=widen)
        sweep = {level: scored(oracle_alerts(tiles, level)) for level in sorted({*ORACLE_LEVELS_MX, oracle_flux})}
        results[name] = Outcome(*sweep[oracle_flux], [(level, *_curve_point(s)) for level, (_, s) in sweep.items()],
                                oracle_flux, "the oracle's level")
    f = forecasts(history, emergences, grid, rule)

    log(table(f"CNN (alert threshold {policy.threshold:.3f})", cnn, cnn_summary))
    log(f"  of the false alerts, {cnn_summary['false_alerts_cold_start']} in passages the service saw only from mid-passage "
        f"(cold start); {cnn_summary['true_withdrawals']} withdrawals of alerts on true regions; calibration of the "
        f"scores: Brier {f.brier:.4f} over {len(f.p)} scored frames (base rate {f.base_rate:.4f}; always saying it "
        f"scores {f.base_rate * (1 - f.base_rate):.4f})")
    b, n = results["baseline"], results["newflux"]
    log(table(f"baseline (flux rise, k = {b.knob:g}, {b.how})", b.match, b.summary))
    log(table(f"new-flux detector (bipolar new flux >= {n.knob:.3g} Mx in a {newflux.box_px / 6:g} deg box, {n.how})",
              n.match, n.summary))
    log(table(f"oracle (noise-free new flux >= {oracle_flux:.3g} Mx in a tile from bipoles of the last {MEMORY_DAYS:g} d: "
              "the physics' ceiling)", results["oracle"].match, results["oracle"].summary))
    log(table(f"visible oracle (the same bipoles as the instrument renders them, no noise, >= {oracle_flux:.3g} Mx: "
              "the ceiling for a detector of magnetograms)", results["visible_oracle"].match, results["visible_oracle"].summary))
    out.mkdir(parents=True, exist_ok=True)
    png = plot_operating_curves({LABELS[k]: r.curve for k, r in results.items()},
                                {LABELS[k]: _curve_point(r.summary) for k, r in results.items()}, out / "operating_curve.png")
    delays_png = plot_delays({LABELS[k].split(" (")[0]: r.match for k, r in results.items()}, out / "delays.png")
    reliability_png = plot_reliability(f, out / "reliability.png",
                                       f"seed {stream.seed}, {stream.days:g} d from {stream.start[:10]}, {setting} (synthetic Sun)")
    report = {"stream": {**asdict(stream), "setting": setting, "bundle": str(service.bundle.path),
                         "counted_onsets_days": counted, "disk_days": exposure.disk_days, "patch_days": exposure.patch_days},
              "cnn": {**cnn_summary, "threshold": policy.threshold, "brier": f.brier, "base_rate": f.base_rate,
                      "reliability": f.reliability()},
              "cnn_curve": cnn_curve,
              "baseline": {**b.summary, "k": b.knob, "k_chosen": b.how}, "baseline_curve": b.curve,
              "newflux": {**n.summary, "level_Mx": n.knob, "level_chosen": n.how, "detector": asdict(newflux)},
              "newflux_curve": n.curve,
              "oracle": {**results["oracle"].summary, "flux_Mx": oracle_flux, "memory_days": MEMORY_DAYS},
              "oracle_curve": results["oracle"].curve,
              "visible_oracle": {**results["visible_oracle"].summary, "flux_Mx": oracle_flux},
              "visible_oracle_curve": results["visible_oracle"].curve,
              "operating_curve_png": str(png), "delays_png": str(delays_png), "reliability_png": str(reliability_png),
              "note": "synthetic Sun: an upper bound for the real Sun"}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    log(last_line(report))
    return report


@dataclass(frozen=True)
class Outcome:
    """One detector on one stream: the match and summary at its operating knob, its operating curve ((knob,
    false alerts per disk-day, detected within 1 d) points), the knob and how it was chosen."""

    match: Match
    summary: dict
    curve: list[tuple[float, float, float]]
    knob: float
    how: str


#: The detectors of a report and their names in the figures.
LABELS = {"cnn": "CNN (threshold)", "baseline": "baseline (k)", "newflux": "new flux (F, Mx)",
          "oracle": "oracle (F, Mx)", "visible_oracle": "visible oracle (F, Mx)"}


def _curve_point(s: dict) -> tuple[float, float]:
    """(false alerts per disk-day, detected within 1 d) of a summary: a point of an operating curve."""
    return s["false_per_disk_day"], s["detected_1d"]


def size_of(service: Service) -> int:
    """The side (pixels) of the full-disk frames a replay fed the service (from its folder's ``stream.json``)."""
    spec = Path(service.config.data_dir).parent / "stream.json"
    return int(json.loads(spec.read_text())["size"]) if spec.exists() else 1024


def _plate_scale(size: int) -> float:
    """MDI's plate scale (arcsec per pixel) for a full-disk frame of side ``size``."""
    return MDI_PLATE_SCALE_ARCSEC * 1024 / size


def evaluate(bundle: Path, stream: Stream, out: Path, size: int = 1024, setting: str = "default",
             service_options: dict | None = None, **report) -> dict:
    """:func:`replay_stream` then :func:`report_stream` (keyword arguments go to the latter)."""
    return report_stream(replay_stream(bundle, stream, out, size, setting, **(service_options or {})), stream, out,
                         setting, **report)


def calibrate(bundle: Path, out: Path, size: int = 1024, target: float = TARGET_FALSE_PER_DISK_DAY, log=print) -> dict:
    """Replay the validation streams (:data:`~evaluation.operating.VALIDATION`, each in its folder under ``out``; or
    resume them), choose the CNN's alert threshold, the baseline's k and the new-flux detector's level for ``target``
    false alerts per disk-day on their pooled curves, and record them in the bundle's manifest; returns the
    operating point."""
    reports = {}
    for name, v in VALIDATION.items():
        log(f"--- validation stream {name}: seed {v.seed}, {v.days:g} days from {v.start}")
        reports[name] = evaluate(bundle, v, out / name, size, log=log)

    def curve(key: str) -> list[tuple[float, float, float]]:
        return pooled_curve([r[key] for r in reports.values()], [r["stream"]["disk_days"] for r in reports.values()],
                            [r["cnn"]["emergences"] for r in reports.values()])

    cnn = curve("cnn_curve")
    threshold = choose(cnn, target)
    _, false_rate, detected = next(c for c in cnn if c[0] == threshold)
    k = choose(curve("baseline_curve"), target)
    level = choose(curve("newflux_curve"), target)
    point = {"threshold": threshold, "target_false_per_disk_day": target, "baseline_flux_rise_k": k, "newflux_level_Mx": level,
             "validation": {"streams": {name: asdict(v) for name, v in VALIDATION.items()}, "size": size,
                            "false_per_disk_day": false_rate, "detected_1d": detected},
             "note": "chosen on the synthetic Sun's validation streams, pooled (evaluation.operating)"}
    record(bundle, point)
    log(f"operating point recorded in {bundle / 'manifest.json'}: alert threshold {threshold:.3f} (validation, pooled: "
        f"{false_rate:.2f} false per disk-day, detected within 1 d {detected:.2f}); baseline k {k:g}; new-flux level {level:.3g} Mx")
    return point


def stream_truth(sun: SyntheticSun, first: int, end: int, rule: MatchRule = MatchRule()) -> list[Emergence]:
    """The emergences that can explain an alert of the stream [first, end) (slots): from ``rule.window_days`` before it."""
    return truth(sun, first - int(rule.window_days * SLOTS_PER_DAY), end, min_flux_Mx=rule.any_flux_Mx)


def score_events(events: list[AlertEvent], emergences: list[Emergence], grid: PatchGrid, exposure: Exposure,
                 counted: tuple[float, float], rule: MatchRule = MatchRule()) -> tuple[Match, dict]:
    """Match a service's alert events to the truth and summarise them (:func:`evaluation.report.summary`)."""
    m = match(emergences, opened(events), grid, rule, counted)
    return m, summary(m, exposure, sum(e.event == EventKind.withdrawn for e in events))


def last_line(report: dict) -> str:
    """The report's last line from its ``cnn``, ``baseline``, ``newflux``, ``oracle`` and ``visible_oracle`` summaries
    (those of one stream, or pooled)."""
    c, b, o = report["cnn"], report["baseline"], report["oracle"]
    v, n = report["visible_oracle"], report["newflux"]
    return (f"detected_1d={c['detected_1d']:.2f} detected_2d={c['detected_2d']:.2f} false_per_disk_day={c['false_per_disk_day']:.2f} "
            f"onset_median_d={c['onset_median_d']:+.2f} onset_iqr_d={c['onset_iqr_d']:.2f} "
            f"baseline_detected_1d={b['detected_1d']:.2f} baseline_false_per_disk_day={b['false_per_disk_day']:.2f} "
            f"oracle_detected_1d={o['detected_1d']:.2f} oracle_detected_2d={o['detected_2d']:.2f} "
            f"visible_oracle_detected_1d={v['detected_1d']:.2f} newflux_detected_1d={n['detected_1d']:.2f} "
            f"newflux_false_per_disk_day={n['false_per_disk_day']:.2f} true_withdrawals={c['true_withdrawals']:d}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="fluxwatch-evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, default=Path(DEFAULT_BUNDLE))
    p.add_argument("--seed", type=int, default=7, help="synthetic Sun seed (held out: training and the demo use 0)")
    p.add_argument("--start", default="2002-03-01T00:00:00", help="first frame (UTC)")
    p.add_argument("--days", type=float, default=60.0)
    p.add_argument("--size", type=int, default=1024, help="full-disk frame side, pixels")
    p.add_argument("--out", type=Path, default=Path("data/evaluate"))
    p.add_argument("--setting", choices=sorted(EVALUATION), default="default",
                   help="synthetic Sun settings: the training sets' (default) or a held-out one")
    p.add_argument("--calibrate", action="store_true",
                   help="replay the validation streams instead (in folders under --out), choose the alert threshold for "
                        "--target and record it in the bundle")
    p.add_argument("--target", type=float, default=TARGET_FALSE_PER_DISK_DAY, help="false alerts per disk-day (--calibrate)")
    p.add_argument("--oracle-flux", type=float, default=ORACLE_FLUX_MX,
                   help="the oracle's level F: noise-free new flux in a tile that makes it alert, Mx")
    a = p.parse_args(argv)
    if a.calibrate:
        calibrate(a.bundle, a.out, a.size, a.target)
    else:
        point = ModelBundle(a.bundle).manifest.get("operating_point", {})
        evaluate(a.bundle, Stream(a.seed, a.start, a.days), a.out, a.size, a.setting, baseline_k=point.get("baseline_flux_rise_k"),
                 newflux_level=point.get("newflux_level_Mx"), oracle_flux=a.oracle_flux)
    return 0


if __name__ == "__main__":
    sys.exit(main())
