"""The event-level report: detection, timeliness, onset error and false alerts, with the operating curves and the
distributions of delay."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.figures import pyplot
from evaluation.matching import Match


@dataclass(frozen=True)
class Exposure:
    """How much Sun was watched: disk-days (stream length) and patch-days (scored patch frames × cadence)."""

    disk_days: float
    patch_days: float


def _median_iqr(x: np.ndarray) -> tuple[float, float]:
    if len(x) == 0:
        return float("nan"), float("nan")
    q25, q50, q75 = np.percentile(x, [25, 50, 75])
    return float(q50), float(q75 - q25)


def _count_within(m: Match, days: float) -> int:
    """How many counted emergences were alerted within ``days`` of onset."""
    return int(round(m.detected_within(days) * len(m.detected))) if m.detected else 0


def summary(m: Match, exposure: Exposure, withdrawals: int) -> dict:
    """The headline numbers of one detector on one stream (days; rates per disk-day and per 100 patch-days)."""
    delay, delay_iqr = _median_iqr(m.delays_days())
    onset, onset_iqr = _median_iqr(m.onset_errors_days())
    return {"emergences": len(m.detected), "detected_1d": m.detected_within(1.0), "detected_2d": m.detected_within(2.0),
            "delay_median_d": delay, "delay_iqr_d": delay_iqr, "onset_median_d": onset, "onset_iqr_d": onset_iqr,
            "false_alerts": len(m.false_alerts), "false_per_disk_day": len(m.false_alerts) / exposure.disk_days,
            "false_per_100_patch_days": 100 * len(m.false_alerts) / max(exposure.patch_days, 1e-9),
            "withdrawals": withdrawals, "onset_errors_d": m.onset_errors_days().tolist(),
            "detected_1d_count": _count_within(m, 1.0), "detected_2d_count": _count_within(m, 2.0),
            "disk_days": exposure.disk_days}


def true_withdrawals(m: Match, withdrawn) -> int:
    """How many of the alerts ``withdrawn`` (their ids) were on true regions: openings the matcher did not call false."""
    false = {a.alert_id for a in m.false_alerts}
    return sum(w not in false for w in withdrawn)


def pooled(summaries: list[dict]) -> dict:
    """One detector's figures over several streams' summaries (:func:`summary`): detection rates over all their
    counted emergences, false alerts over all their disk-days, onset errors over all alerts, and the withdrawals
    of alerts on true regions."""
    n = sum(s["emergences"] for s in summaries)
    errors = np.concatenate([s["onset_errors_d"] for s in summaries] + [np.zeros(0)])
    q25, q50, q75 = np.percentile(errors, [25, 50, 75]) if errors.size else (np.nan,) * 3
    return {"detected_1d": sum(s["detected_1d_count"] for s in summaries) / n if n else float("nan"),
            "detected_2d": sum(s["detected_2d_count"] for s in summaries) / n if n else float("nan"),
            "false_per_disk_day": sum(s["false_alerts"] for s in summaries) / sum(s["disk_days"] for s in summaries),
            "onset_median_d": float(q50), "onset_iqr_d": float(q75 - q25),
            "true_withdrawals": sum(s.get("true_withdrawals", 0) for s in summaries)}


def binned_rows(m: Match) -> list[tuple[str, int, float, float]]:
    """(bin, emergences, detected within 1 d, within 2 d) by flux bin and, for counted regions, by |CMD| bin."""
    rows = []

    def row(name: str, found: dict) -> None:
        delays = [None if a is None else a.opened_days - m.emergences[r].onset_days for r, a in found.items()]
        def within(days: float) -> float:
            return float(np.mean([x is not None and x <= days for x in delays])) if delays else float("nan")

        rows.append((name, len(delays), within(1.0), within(2.0)))

    row("flux 1-3e21 Mx", m.small)
    row("flux >= 3e21 Mx", m.detected)
    for lo, hi in ((0, 30), (30, 60)):
        row(f"  |CMD| {lo}-{hi} deg", {r: a for r, a in m.detected.items() if lo <= abs(m.emergences[r].cmd_deg) < hi})
    return rows


def table(name: str, m: Match, s: dict) -> str:
    lines = [f"{name}: {s['emergences']} emergences >= 3e21 Mx, {s['false_alerts']} false alerts "
             f"({s['false_per_disk_day']:.2f} per disk-day, {s['false_per_100_patch_days']:.2f} per 100 patch-days), "
             f"{s['withdrawals']} withdrawals",
             f"  time to alert: median {s['delay_median_d']:+.2f} d (IQR {s['delay_iqr_d']:.2f}); onset error: median "
             f"{s['onset_median_d']:+.2f} d (IQR {s['onset_iqr_d']:.2f})",
             f"  {'bin':<22} {'n':>4} {'<=1 d':>7} {'<=2 d':>7}"]
    lines += [f"  {b:<22} {n:>4} {d1:>7.2f} {d2:>7.2f}" for b, n, d1, d2 in binned_rows(m)]
    return "\n".join(lines)


def plot_operating_curves(curves: dict[str, list[tuple[float, float, float]]], marks: dict[str, tuple[float, float]],
                          path: Path) -> Path:
    """Detection within 1 d vs false alerts per disk-day, one curve per detector: (knob, false/day, detected) points."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, points in curves.items():
        pts = sorted(points, key=lambda p: p[1])
        line, = ax.plot([p[1] for p in pts], [p[2] for p in pts], marker="o", ms=3, label=name)
        if name in marks:
            ax.plot(*marks[name], marker="*", ms=14, color=line.get_color(), label=f"{name}: operating point")
    ax.set_xlabel("false alerts per disk-day")
    ax.set_ylabel("emergences >= 3e21 Mx alerted within 1 d")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xscale("symlog", linthresh=0.1)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Operating curves (synthetic Sun: an upper bound)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_delays(matches: dict[str, Match], path: Path, max_days: float = 5.0) -> Path:
    """The fraction of counted emergences (≥ 3×10²¹ Mx) alerted within x days of onset against x in [0, ``max_days``]
    (days), one curve per detector at its operating point: how soon a forecaster hears of a new region."""
    plt = pyplot()
    days = np.linspace(0.0, max_days, 501)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, m in matches.items():
        ax.plot(days, [m.detected_within(d) for d in days], drawstyle="steps-post", label=f"{name} ({len(m.detected)} emergences)")
    for d in (1.0, 2.0):
        ax.axvline(d, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("delay from onset to alert, days")
    ax.set_ylabel("fraction of emergences >= 3e21 Mx alerted")
    ax.set_xlim(0, max_days)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Onset to alert at the operating points (synthetic Sun)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
