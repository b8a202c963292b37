"""The catalog against the synthetic Sun's truth: what a backfill over a simulated period found and missed.

The backfill's alerts go through the evaluation's matcher (:mod:`evaluation.matching`): recall by true flux and
by central-meridian distance at onset, the share of catalog rows a true emergence explains (precision), and
the onset error. The simulator is not the Sun: these are upper bounds for the real archive.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from archive.frames import SyntheticFrames
from common.clock import EPOCH, SLOTS_PER_DAY, slot_days
from common.patches import PatchGrid
from contract.events import AlertEvent, EventKind
from evaluation.matching import Emergence, MatchRule, match
from evaluation.replay import opened, truth

#: Regions whose onset falls this close to the period's start are not counted: a cold start sees them mid-way.
COLD_START_DAYS = 1.0
#: ... nor this close to its end: too late to be alerted before it ends.
END_DAYS = 2.0


def compare(events: list[AlertEvent], frames: SyntheticFrames, grid: PatchGrid, rule: MatchRule = MatchRule()) -> dict:
    """Recall (by true flux and |CMD| at onset), precision (by the tile's flux and |CMD| at the alert) and onset
    error of ``events`` against the truth of ``frames``."""
    emergences = truth(frames.sun, frames.first - int(rule.window_days * SLOTS_PER_DAY), frames.end, rule.any_flux_Mx)
    counted = (float(slot_days(frames.first)) + COLD_START_DAYS, float(slot_days(frames.end)) - END_DAYS)
    alerts = opened(events)
    m = match(emergences, alerts, grid, rule, counted)
    found = {**m.small, **m.detected}

    def recall(regions: list[Emergence]) -> dict:
        hits = [found[e.region] is not None for e in regions]
        return {"n": len(hits), "recall": float(np.mean(hits)) if hits else float("nan")}

    counted_regions = [m.emergences[r] for r in found]
    by_flux = {f"{lo:.0e}-{hi:.0e} Mx": recall([e for e in counted_regions if lo <= e.flux_Mx < hi])
               for lo, hi in ((1e21, 3e21), (3e21, 1e22), (1e22, np.inf))}
    by_cmd = {f"|CMD| {lo}-{hi} deg": recall([e for e in counted_regions if lo <= abs(e.cmd_deg) < hi])
              for lo, hi in ((0, 30), (30, 60))}
    false = {a.alert_id for a in m.false_alerts}
    openings = [e for e in events if e.event is EventKind.opened]

    def precision(chosen: list[AlertEvent]) -> dict:
        return {"n": len(chosen), "precision": float(np.mean([e.alert_id not in false for e in chosen]))
                if chosen else float("nan")}

    def flux(e: AlertEvent) -> float:
        return e.region.flux_positive_Mx + e.region.flux_negative_Mx

    precision_by_flux = {f"{lo:.0e}-{hi:.0e} Mx": precision([e for e in openings if lo <= flux(e) < hi])
                         for lo, hi in ((0, 3e21), (3e21, 1e22), (1e22, np.inf))}
    precision_by_cmd = {f"|CMD| {lo}-{hi} deg": precision([e for e in openings
                                                          if lo <= abs(e.patch.stonyhurst.lon) < hi])
                        for lo, hi in ((0, 30), (30, 60), (60, 90))}
    errors = np.array([a.onset_days - m.emergences[r].onset_days for r, a in found.items() if a is not None])
    q25, q50, q75 = np.percentile(errors, [25, 50, 75]) if errors.size else (np.nan,) * 3
    return {"emergences_counted": len(found), "catalog_rows": len(alerts),
            "precision": precision(openings)["precision"], "precision_by_flux": precision_by_flux,
            "precision_by_cmd": precision_by_cmd, "recall_by_flux": by_flux, "recall_by_cmd": by_cmd,
            "onset_error_median_d": float(q50), "onset_error_iqr_d": float(q75 - q25),
            "counted_onsets_days": counted, "note": "synthetic Sun: an upper bound for the real archive"}


def truth_table(frames: SyntheticFrames, rule: MatchRule = MatchRule()) -> pd.DataFrame:
    """The period's true emergences that count (at least ``rule.any_flux_Mx``, within ``rule.max_cmd_deg`` of the
    central meridian at onset): onset_time UTC, lat deg, flux_Mx, for the butterfly plot."""
    rows = [e for e in truth(frames.sun, frames.first, frames.end, rule.any_flux_Mx) if abs(e.cmd_deg) <= rule.max_cmd_deg]
    epoch = pd.Timestamp(EPOCH.isot, tz="UTC")
    return pd.DataFrame({"onset_time": [epoch + pd.Timedelta(days=e.onset_days) for e in rows],
                         "lat": [e.lat for e in rows], "flux_Mx": [e.flux_Mx for e in rows]})
