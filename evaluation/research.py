"""The research loop: a candidate detector of stored videos measured on the cached replays in minutes.

``python -m bench.alerts`` replays the validation streams and the held-out
streams through the service once (kept in ``data/bench-alerts``). A candidate
detector of passage videos (:class:`evaluation.replay.VideoDetector`: the
new-flux detector with other settings, the flux-rise baseline, or a new
class) needs no second replay: its series are computed from the stored
videos (cached per settings), its knob is swept, the operating point is
chosen on the validation streams (pooled) for 0.2 false alerts per disk-day, and the
held-out streams are reported at that point, with the same matcher and
truth as the bench. One line per try goes to ``--log`` (tab-separated), the
research log's raw material.

A candidate **bundle** (``--bundle``: a new-flux bundle with other
settings, a retrained network) is measured the same way through the fast
path (:func:`evaluation.replay.rescore`: its scores of the stored videos, as
the service would give them) and the service's alert lifecycle; ``--record``
writes the operating point chosen on the validation streams into its manifest,
as ``fluxwatch-evaluate --calibrate`` does after a replay.

Usage: python -m evaluation.research [--replays data/bench-alerts] [--set box_px=24 --set n_sigma=2.5 …]
                                     [--detector newflux|baseline] [--knobs 2e20 3e20 …] [--log data/research.tsv] [--note "…"]
                                     [--validation-only]
       python -m evaluation.research --bundle models/default [--record] [--validation-only]
Numbers from the synthetic Sun are upper bounds for the real Sun.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from common.clock import CADENCE_DAYS, SLOTS_PER_DAY, slot_days, slot_isot
from common.config import ServiceConfig
from common.newflux import NewFluxDetector
from evaluation.baseline import FluxRiseDetector
from evaluation.cli import KS, NEWFLUX_LEVELS_MX, THRESHOLDS, size_of, stream_slots, stream_truth
from evaluation.matching import MatchRule, match
from evaluation.operating import TARGET_FALSE_PER_DISK_DAY, VALIDATION, Stream, choose, pooled_curve, record
from evaluation.replay import (
    VideoDetector,
    detector_alerts,
    detector_series,
    passages,
    policy_alerts,
    rescore,
    stored_emergence,
)
from evaluation.report import Exposure, pooled, summary, true_withdrawals
from serving.bundle import ModelBundle
from serving.compose import open_service
from serving.service import Service
from serving.store import STATE_FILE, Reader
from sim import SyntheticSun
from sim.settings import EVALUATION

#: The detectors the loop knows by name, and the knob values swept for each.
DETECTORS: dict[str, tuple[type, tuple[float, ...]]] = {"newflux": (NewFluxDetector, NEWFLUX_LEVELS_MX),
                                                         "baseline": (FluxRiseDetector, KS)}


@dataclass
class StreamCase:
    """A replayed stream ready for candidates: its service (over the stored replay), truth and exposure."""

    name: str
    stream: Stream
    setting: str
    service: Service
    emergences: list
    counted: tuple[float, float]
    exposure: Exposure
    cache: Path

    @classmethod
    def open(cls, folder: Path, warmup_days: float = 1.0) -> StreamCase:
        spec = json.loads((folder / "stream.json").read_text())
        stream, setting = Stream(**spec["stream"]), spec["setting"]
        first, end = stream_slots(stream)
        # read only, before a service is built on the folder: a replay still running must not be touched
        newest = Reader(folder / "service" / STATE_FILE).newest_frame() if (folder / "service" / STATE_FILE).exists() else None
        if newest is None or newest[0] < end - SLOTS_PER_DAY:  # a frame may be missing at the end, not a day of them
            raise SystemExit(f"{folder}: the replay is not complete (frames up to "
                             f"{'none' if newest is None else slot_isot(newest[0])} of {slot_isot(end - 1)}); finish it "
                             "with python -m bench.alerts first (its series would be cached incomplete)")
        service = open_service(ServiceConfig(data_dir=str(folder / "service"), bundle=spec["bundle"], source="watch"))
        emergences = stream_truth(SyntheticSun(EVALUATION[setting], seed=stream.seed), first, end)
        return cls(folder.name, stream, setting, service, emergences,
                   (float(slot_days(first)) + warmup_days, float(slot_days(end)) - 2.0),
                   Exposure((end - first) * CADENCE_DAYS, 0.0), folder / "series")

    def curve(self, name: str, detector: VideoDetector, knobs) -> dict[float, dict]:
        """The detector's summary at each knob value on this stream."""
        series = detector_series(self.service, passages(self.service), {name: detector}, cache=self.cache)[name]
        out = {}
        for k in knobs:
            m = match(self.emergences, detector_alerts(series, replace(detector, **{detector.knob: k}), name),  # type: ignore[type-var]
                      self.service.grid, MatchRule(), self.counted)
            out[float(k)] = summary(m, self.exposure, 0)
        return out


    def bundle_curve(self, bundle: ModelBundle, thresholds) -> dict[float, dict]:
        """A bundle's summary at each alert threshold on this stream: the stored videos rescored (the fast path),
        alerts by the service's lifecycle; the true withdrawals counted."""
        history = passages(self.service)
        if bundle.model_version != self.service.bundle.model_version:
            history = rescore(self.service, history, bundle)
        emergence = stored_emergence(self.service)
        out = {}
        for t in thresholds:
            alerts, withdrawn = policy_alerts(history, replace(self.service.step.policy, threshold=float(t)), emergence)
            m = match(self.emergences, alerts, self.service.grid, MatchRule(), self.counted)
            out[float(t)] = {**summary(m, self.exposure, len(withdrawn)), "true_withdrawals": true_withdrawals(m, withdrawn)}
        return out


def _choose(curves: list[dict[float, dict]], target: float) -> tuple[float, dict]:
    """The knob chosen for ``target`` false alerts per disk-day on the validation streams' curves (summaries by
    knob) pooled as the bench pools them (:func:`evaluation.operating.pooled_curve`), and the pooled figures there."""
    some = [next(iter(c.values())) for c in curves]
    points = pooled_curve([[(k, s["false_per_disk_day"], s["detected_1d"]) for k, s in c.items()] for c in curves],
                          [s["disk_days"] for s in some], [s["emergences"] for s in some])
    knob = choose(points, target)
    return knob, pooled([c[knob] for c in curves])


def evaluate_candidate(detector: VideoDetector, name: str, knobs, validation: list[StreamCase],
                       held_out: list[StreamCase], target: float = TARGET_FALSE_PER_DISK_DAY) -> dict:
    """The candidate's knob chosen on the ``validation`` streams (pooled) for ``target`` false alerts per disk-day,
    and its figures there and on each held-out stream (pooled over the default-setting ones)."""
    t0 = time.perf_counter()
    knob, v = _choose([case.curve(name, detector, knobs) for case in validation], target)
    held = {case.name: case.curve(name, detector, [knob])[knob] for case in held_out}
    default = [held[c.name] for c in held_out if c.setting == "default"]
    return {"knob": knob, "validation": v, "held_out": held, "pooled": pooled(default) if default else {},
            "seconds": time.perf_counter() - t0}


def evaluate_bundle(bundle: ModelBundle, validation: list[StreamCase], held_out: list[StreamCase],
                    target: float = TARGET_FALSE_PER_DISK_DAY) -> dict:
    """:func:`evaluate_candidate` for a bundle: its alert threshold chosen on the ``validation`` streams."""
    t0 = time.perf_counter()
    threshold, v = _choose([case.bundle_curve(bundle, THRESHOLDS) for case in validation], target)
    held = {case.name: case.bundle_curve(bundle, [threshold])[threshold] for case in held_out}
    default = [held[c.name] for c in held_out if c.setting == "default"]
    return {"knob": threshold, "validation": v, "held_out": held, "pooled": pooled(default) if default else {},
            "seconds": time.perf_counter() - t0}


def _row(figures: dict) -> str:
    return (f"{figures['detected_1d']:.2f}\t{figures['detected_2d']:.2f}\t{figures['false_per_disk_day']:.2f}\t"
            f"{figures['onset_median_d']:+.2f}\t{figures['onset_iqr_d']:.2f}\t{figures.get('true_withdrawals', 0)}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m evaluation.research", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replays", type=Path, default=Path("data/bench-alerts"))
    p.add_argument("--detector", choices=sorted(DETECTORS), default="newflux")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a detector setting (repeatable)")
    p.add_argument("--log", type=Path, default=Path("data/research.tsv"))
    p.add_argument("--note", default="")
    p.add_argument("--knobs", type=float, nargs="+", help="the knob values swept (default: the detector's grid)")
    p.add_argument("--validation-only", action="store_true", help="tune on the validation streams without looking further")
    p.add_argument("--bundle", type=Path, help="measure this bundle through the fast path instead of a detector")
    p.add_argument("--record", action="store_true", help="write the threshold chosen on validation into --bundle's manifest")
    a = p.parse_args(argv)
    folders = [f for f in sorted(a.replays.iterdir()) if (f / "stream.json").exists()
               and (f.name in VALIDATION or not a.validation_only)]
    cases = {f.name: StreamCase.open(f) for f in folders}
    missing = [name for name in VALIDATION if name not in cases]
    if missing:
        p.error(f"{a.replays} holds no replay of {', '.join(missing)}: run python -m bench.alerts first")
    validation = [cases.pop(name) for name in VALIDATION]
    if a.bundle:
        bundle = ModelBundle(a.bundle)
        result = evaluate_bundle(bundle, validation, list(cases.values()))
        name, settings_text = f"bundle {a.bundle}", json.dumps(bundle.manifest.get("detector") or bundle.model_version)
        if a.record:
            v = result["validation"]
            record(a.bundle, {"threshold": result["knob"], "target_false_per_disk_day": TARGET_FALSE_PER_DISK_DAY,
                              "validation": {"streams": {c.name: asdict(c.stream) for c in validation},
                                             "size": size_of(validation[0].service),
                                             "false_per_disk_day": v["false_per_disk_day"], "detected_1d": v["detected_1d"]},
                              "note": "chosen on the synthetic Sun's validation streams, pooled, through the fast path "
                                      "(evaluation.research: the stored videos rescored)"})
            print(f"operating point recorded in {a.bundle / 'manifest.json'}: alert threshold {result['knob']:.3f}")
        return _report(name, settings_text, result, cases, a.log, a.note)
    cls, knobs = DETECTORS[a.detector]
    knobs = tuple(a.knobs) if a.knobs else knobs
    types = {f.name: f.type for f in fields(cls)}
    settings = {}
    for item in a.set:
        key, _, value = item.partition("=")
        if key not in types:
            p.error(f"--set {item}: {cls.__name__} has no setting {key!r}; it has {', '.join(types)}")
        settings[key] = {"int": int, "float": float}.get(str(types[key]), str)(value)
    detector = cls(**settings)
    result = evaluate_candidate(detector, a.detector, knobs, validation, list(cases.values()))
    return _report(f"{a.detector} {settings or '(defaults)'}", json.dumps(asdict(detector)), result, cases, a.log, a.note)


def _report(name: str, settings: str, result: dict, cases: dict, log: Path, note: str) -> int:
    """Print a try's figures and add its line to the research log."""
    print(f"{name}: knob {result['knob']:.3g} chosen on validation ({result['seconds']:.0f} s; synthetic Sun: upper bounds)")
    print("stream\tdetected_1d\tdetected_2d\tfalse_per_disk_day\tonset_median_d\tonset_iqr_d\ttrue_withdrawals")
    print(f"validation (pooled)\t{_row(result['validation'])}")
    for stream, s in result["held_out"].items():
        print(f"{stream}\t{_row(s)}")
    if cases:
        print(f"pooled held-out (default setting)\t{_row(result['pooled'])}")
    log.parent.mkdir(parents=True, exist_ok=True)
    new = not log.exists()
    with log.open("a") as f:
        if new:
            f.write("detector\tsettings\tknob\tvalidation d1 d2 false onset iqr true_withdrawals\t"
                    "held-out pooled d1 d2 false onset iqr true_withdrawals\tnote\n")
        f.write(f"{name}\t{settings}\t{result['knob']:.3g}\t{_row(result['validation'])}\t"
                f"{_row(result['pooled']) if result['pooled'] else '-'}\t{note}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
