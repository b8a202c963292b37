"""The soak benchmark's helpers (``bench.soak``): retention periods scaled to the wall clock, and its figures."""
from __future__ import annotations

import astropy.units as u
import pytest

from bench.soak import OBSERVATION_TIME, Request, figures, retention_settings


def test_wall_clock_periods_are_divided_by_the_speedup_and_observation_time_ones_are_not():
    settings = {name: (period, seconds) for name, period, seconds in retention_settings(100.0, {"retain_processed": 10})}
    assert settings["retain_processed"] == (10 * u.day, 10 * 86400 / 100)
    assert settings["retain_superseded"][1] == pytest.approx(settings["retain_superseded"][0].to_value(u.s) / 100)
    for name in OBSERVATION_TIME & set(settings):
        assert settings[name][1] == settings[name][0].to_value(u.s)
    with pytest.raises(SystemExit):
        retention_settings(100.0, {"retain_nothing": 1})


def test_figures_of_a_steady_run_meet_their_targets_and_growth_does_not():
    days = 20
    steady = [{"day": d, "rss_mb": 100.0, "open_files": 20, "threads": 10, "disk_total_mb": 500.0, "db_mb": 50.0}
              for d in range(1, days + 1)]
    requests = [Request(day=d / 10, route="ready", latency_s=0.01, status=200) for d in range(days * 10)]
    found, base, half = figures(steady, requests, days)
    assert (base, half) == (7, 10)
    assert all(f.met for f in found), found
    growing = [{**s, "rss_mb": 100.0 + 2 * s["day"], "db_mb": 50.0 + s["day"], "open_files": 20 + s["day"]} for s in steady]
    slow = [Request(r.day, r.route, 0.01 if r.day < 10 else 0.05, 200) for r in requests]
    met = {f.name: f.met for f in figures(growing, slow, days)[0]}
    assert met == {"rss_growth_pct": False, "disk_mb_per_day": True, "db_mb_per_day": False, "api_p95_ms_first": True,
                   "api_p95_ms_last": False, "open_files_growth": False, "threads_growth": True}
