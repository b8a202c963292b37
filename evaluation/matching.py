"""Event-level scoring of alerts against the truth: what a forecaster asks of the service.

The rule (documented here once; the benches and the demo use it):

* A **true emergence** is a bipolar region that starts emerging on the visible
  disk within ``max_cmd_deg`` (60°) of central meridian. It is *counted* when
  its final flux is at least ``min_flux_Mx`` (3×10²¹ Mx); regions of 1–3×10²¹
  Mx are reported in their own bin and never make an alert false.
* A region is **in** every tile its footprint (centre ± ``half_extent_deg``
  in longitude and latitude) overlaps, so one region straddling several
  tiles counts once, and an alert on any of its tiles detects it.
* It is **detected** by the first alert that opens on one of its tiles no
  earlier than ``lead_days`` (½ day) before its onset and no later than
  ``window_days`` after it. The delay is alert time − onset; the onset error
  is the alert's onset estimate − the true onset.
* An opened alert is **false** when no region of at least ``any_flux_Mx``
  (1×10²¹ Mx) that started emerging on the visible disk, with onset in
  [alert − ``window_days``, alert + ``lead_days``], is in its tile (a region
  that emerged behind the limb and rotated in does not explain an alert).
* A **new onset** on an open alert (an ``updated`` event whose onset
  estimate moved later by at least the policy's ``onset_frames``: a second
  region emerging in a tile whose alert is already open, which opens
  nothing) detects an emergence as an opening does, but is never itself
  false: an update is not a new alert, the opening it updates is judged.

Times are days on one axis (e.g. days since :data:`common.clock.EPOCH`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from common.patches import PatchGrid


@dataclass(frozen=True)
class Emergence:
    """One true emergence: onset (days), centre (Carrington deg), final unsigned flux (Mx), CMD at onset (deg)."""

    region: str
    onset_days: float
    lon: float
    lat: float
    flux_Mx: float
    cmd_deg: float
    half_extent_deg: float = 0.0


@dataclass(frozen=True)
class OpenedAlert:
    """An alert as the matcher takes it: its id, tile, frame time and onset estimate (days), and its kind:
    ``"opened"`` (an opening) or ``"new_onset"`` (an update of an open alert reporting a later onset)."""

    alert_id: str
    patch_id: str
    opened_days: float
    onset_days: float
    kind: Literal["opened", "new_onset"] = "opened"


@dataclass(frozen=True)
class MatchRule:
    min_flux_Mx: float = 3e21
    any_flux_Mx: float = 1e21
    max_cmd_deg: float = 60.0
    lead_days: float = 0.5
    window_days: float = 5.0


@dataclass
class Match:
    """The outcome for each counted emergence and each alert."""

    detected: dict[str, OpenedAlert | None] = field(default_factory=dict)  # counted region → its first alert
    small: dict[str, OpenedAlert | None] = field(default_factory=dict)  # 1–3×10²¹ Mx regions, reported apart
    false_alerts: list[OpenedAlert] = field(default_factory=list)
    emergences: dict[str, Emergence] = field(default_factory=dict)

    def delays_days(self) -> np.ndarray:
        return np.array([a.opened_days - self.emergences[r].onset_days for r, a in self.detected.items() if a])

    def onset_errors_days(self) -> np.ndarray:
        return np.array([a.onset_days - self.emergences[r].onset_days for r, a in self.detected.items() if a])

    def detected_within(self, days: float) -> float:
        """Fraction of counted emergences alerted within ``days`` of onset (nan when there are none)."""
        if not self.detected:
            return float("nan")
        return float(np.mean([a is not None and a.opened_days - self.emergences[r].onset_days <= days
                              for r, a in self.detected.items()]))


def tiles_of(region: Emergence, grid: PatchGrid) -> set[str]:
    """Ids of the tiles the region's footprint overlaps."""
    return {grid.ids[i] for i in grid.overlapping(region.lon, region.lat, region.half_extent_deg)}


def match(emergences: list[Emergence], alerts: list[OpenedAlert], grid: PatchGrid, rule: MatchRule = MatchRule(),
          counted: tuple[float, float] = (-np.inf, np.inf)) -> Match:
    """Match alerts (openings and new onsets) to true emergences by :data:`the rule <evaluation.matching>`.

    Only emergences with onset in ``counted`` (days) are counted (a stream's edges: regions that emerged
    before it began, or too late to be alerted before it ends); all of them can explain an alert.
    """
    result = Match(emergences={e.region: e for e in emergences})
    visible = [e for e in emergences if abs(e.cmd_deg) <= rule.max_cmd_deg and counted[0] <= e.onset_days <= counted[1]]
    tiles = {e.region: tiles_of(e, grid) for e in emergences}
    by_time = sorted(alerts, key=lambda a: a.opened_days)
    for e in visible:
        if e.flux_Mx < rule.any_flux_Mx:
            continue
        first = next((a for a in by_time if a.patch_id in tiles[e.region]
                      and e.onset_days - rule.lead_days <= a.opened_days <= e.onset_days + rule.window_days), None)
        (result.detected if e.flux_Mx >= rule.min_flux_Mx else result.small)[e.region] = first
    for a in [a for a in by_time if a.kind == "opened"]:  # an update is never a false alert
        explained = any(a.patch_id in tiles[e.region] and e.flux_Mx >= rule.any_flux_Mx and abs(e.cmd_deg) < 90.0
                        and a.opened_days - rule.window_days <= e.onset_days <= a.opened_days + rule.lead_days
                        for e in emergences)
        if not explained:
            result.false_alerts.append(a)
    return result
