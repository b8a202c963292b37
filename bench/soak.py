"""Soak test: the real service (``fluxwatch-serve``) on the accelerated synthetic feed for ``--days`` simulated days,
with the API read at a steady rate and retention on, sampled once per simulated day.

The service runs as a subprocess on a fresh data directory, with the shipped bundle, warm start off, a free loopback
port, and a real Kafka broker (:mod:`devtools.kafka_broker`) so that its outbox is delivered (``--no-kafka``: none).
Its clock runs ``--speedup`` times real time: one 96-min slot per 5760 s / speedup of wall time (1.5 s at the
default 3840; the service renders and scores a 1024² synthetic frame in about 0.85 s on 2 cores). Each ``retain_*``
period of :class:`common.config.ServiceConfig` (its default, or ``--retain NAME=DAYS``) is read as simulated time:
the policy ages files and delivered messages by the wall clock, so those periods are given to the service divided by
the speedup; the periods it counts in observation time (:data:`OBSERVATION_TIME`) are given as they are.

A reader thread sends ``--rate`` GET requests a second (``/ready``, ``/patches``, ``/patches/{id}``, ``/alerts``
polled with its cursor as a consumer does, and ``/alerts?since=`` the last simulated day); each latency is filed
under the simulated day of the newest frame (``/ready``'s ``newest_frame``) when it was sent. At the end of every
simulated day it samples from ``/proc/<pid>`` the resident memory, open files and threads, from ``GET /metrics``
the disk use by kind (``fluxwatch_disk_bytes{kind}``; ``other``: the rest of the data directory), the database's
size (``state.sqlite`` + ``-wal``) and its bytes by table (SQLite's ``dbstat``), and the day's API p95. The days
of a data gap of the synthetic Sun (no frames) are sampled together when the next frame comes.

Figures: ``rss_growth_pct``, growth of resident memory from the end of day 7 to the last day, %;
``disk_mb_per_day`` and ``db_mb_per_day``, least-squares slopes over the second half of the run (retention in its
steady state), MB/day; ``api_p95_ms_first`` / ``_last``, p95 over the first / last 7 days' requests, ms;
``open_files_growth`` (and threads beside it), the change from the end of day 7 to the last day. Targets: memory
growth ≤ 10 %, disk and database flat (the fitted growth over the second half within 5 % of their level), API p95
at the end ≤ 1.2 × the first week's, no growth in open files or threads. Each route's p95 and request count in the
first and the last week are printed beside them.

Writes ``soak.csv`` (daily samples), ``soak_requests.csv`` (every request), ``soak.png`` (one panel per quantity
against simulated day) and ``service.log`` into ``--out``. Last line:
``days=… rss_growth_pct=… disk_mb_per_day=… db_mb_per_day=… api_p95_ms_first=… api_p95_ms_last=… open_files_growth=…``.

Usage: python -m bench.soak [--days 90] [--speedup 3840] [--rate 10] [--retain processed=10] [--no-kafka]
       [--out data/bench-soak] [--data-dir DIR]
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import astropy.units as u
import httpx
import numpy as np
from astropy.time import Time
from prometheus_client.parser import text_string_to_metric_families
from tqdm import tqdm

from common.clock import CADENCE, slot_isot, slot_of_time
from common.config import CNN_BUNDLE, ServiceConfig
from common.figures import pyplot
from devtools.kafka_broker import free_port

MB = 1e6
#: Figures of the first week end here (simulated days); the memory, file and thread growth are counted from here.
WEEK = 7
#: Targets: memory growth (%), disk/database growth over the second half (% of its level), p95 ratio (last/first).
RSS_GROWTH_MAX_PCT, FLAT_MAX_PCT, P95_RATIO_MAX = 10.0, 5.0, 1.2
START = "2000-06-01T00:00:00"
#: The ``retain_*`` periods that :mod:`serving.retention` counts in observation time (slots), not by the wall clock.
OBSERVATION_TIME = frozenset({"retain_scores", "retain_views"})
ROUTES = ("ready", "patches", "patch", "ready", "alerts", "patch", "ready", "alerts_day")


# ---- the service ----------------------------------------------------------------------------------------------


def retention_settings(speedup: float, overrides: dict[str, float]) -> list[tuple[str, u.Quantity, float]]:
    """Each ``retain_*`` period of :class:`ServiceConfig` (``overrides``: simulated days by name, else its default),
    as (name, simulated period, seconds to give the service: period / ``speedup``, or the period itself for those in
    :data:`OBSERVATION_TIME`); periods that are None stay off."""
    out = []
    for name, f in ServiceConfig.model_fields.items():
        if not name.startswith("retain_"):
            continue
        period = overrides[name] * u.day if name in overrides else f.default
        if isinstance(period, u.Quantity) and period.unit.is_equivalent(u.day):
            seconds = float(period.to_value(u.s))
            out.append((name, period.to(u.day), seconds if name in OBSERVATION_TIME else seconds / speedup))
    unknown = set(overrides) - {name for name, _, _ in out}
    if unknown:
        raise SystemExit(f"--retain: no retention period {', '.join(sorted(unknown))} in ServiceConfig")
    return out


@dataclass
class ServiceProcess:
    """``python -m serving.main`` on the synthetic feed, its output in ``log``.

    Parameters
    ----------
    data_dir : Path
        Its (fresh) data directory.
    bundle : Path
        The model bundle.
    speedup : float
        Clock acceleration (slots per cadence of wall time).
    retention : list of (name, simulated period, seconds)
        From :func:`retention_settings`; given as ``FLUXWATCH_<NAME>`` in seconds.
    kafka : str or None
        Kafka bootstrap servers, or None.
    log : Path
        File of the service's stdout and stderr.
    """

    data_dir: Path
    bundle: Path
    speedup: float
    retention: list[tuple[str, u.Quantity, float]]
    kafka: str | None
    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float = 120.0) -> ServiceProcess:
        """Start the service and wait until its API answers (``/health``)."""
        env = {**os.environ, "FLUXWATCH_WARM_START": "false"}
        env.update({f"FLUXWATCH_{name.upper()}": f"{seconds!r} s" for name, _, seconds in self.retention})
        cmd = [sys.executable, "-m", "serving.main", "--source", "synthetic", "--synthetic-start", START,
               "--speedup", repr(self.speedup), "--data-dir", str(self.data_dir), "--bundle", str(self.bundle),
               "--host", "127.0.0.1", "--port", str(self.port)] + (["--kafka", self.kafka] if self.kafka else [])
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            time.sleep(0.5)
        raise RuntimeError(f"the service did not answer within {timeout_s:.0f} s; see {self.log}")

    def check(self) -> None:
        """Raise if the service has exited."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace").splitlines()[-20:]
            raise RuntimeError(f"the service exited with code {self.proc.returncode}:\n" + "\n".join(tail))

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, and the exit code (SIGKILL after ``timeout_s`` s: -9)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@contextlib.contextmanager
def kafka_broker(scratch: Path, wanted: bool) -> Iterator[str | None]:
    """A real Kafka broker's bootstrap address, or None (not wanted, or it did not start: said so)."""
    if not wanted:
        print("kafka: none (--no-kafka): the outbox is not delivered")
        yield None
        return
    from devtools.kafka_broker import KafkaBroker, KafkaBrokerError

    try:
        broker = KafkaBroker().start(scratch / "kafka")
    except KafkaBrokerError as exc:
        print(f"kafka: the broker did not start, running without it (the outbox is not delivered): {exc}")
        yield None
        return
    print(f"kafka: a real broker at {broker.bootstrap}")
    with broker:
        yield broker.bootstrap


# ---- the API reader -------------------------------------------------------------------------------------------


@dataclass
class Request:
    """One API request: the simulated day (since the first slot) of the newest frame when it was sent, the route,
    its latency (s) and HTTP status (0: no answer)."""

    day: float
    route: str
    latency_s: float
    status: int


class ApiReader(threading.Thread):
    """GET requests at a steady ``rate`` (per s) in the mix :data:`ROUTES`, each recorded as a :class:`Request`.

    ``day`` follows ``/ready``'s ``newest_frame``: simulated days since ``t0`` (None before the first frame).
    """

    def __init__(self, url: str, rate: float, t0: datetime):
        super().__init__(name="api-reader", daemon=True)
        self.url, self.period_s, self.t0 = url, 1.0 / rate, t0
        self.day: float | None = None
        self.requests: list[Request] = []
        self.patch_ids: list[str] = []
        self.cursor: str | None = None
        self.rng = random.Random(0)
        self.halt = threading.Event()

    def _request(self, route: str) -> tuple[str, dict]:
        if route == "patch":
            return (f"/patches/{self.rng.choice(self.patch_ids)}", {}) if self.patch_ids else ("/patches", {})
        if route == "alerts":
            return "/alerts", {"limit": 100, **({"cursor": self.cursor} if self.cursor else {})}
        if route == "alerts_day":
            since = self.t0 + timedelta(days=max(0.0, (self.day or 0.0) - 1))
            return "/alerts", {"limit": 100, "since": since.strftime("%Y-%m-%dT%H:%M:%S")}
        return "/" + route, {}

    def _read(self, route: str, response: httpx.Response) -> None:
        """Keep what the next requests need: the newest frame's day, patch ids, the alerts cursor."""
        if route == "ready" and response.status_code in (200, 503):
            newest = response.json().get("newest_frame")
            if newest:
                self.day = (datetime.fromisoformat(newest.rstrip("Z")) - self.t0) / timedelta(days=1)
        elif route == "patches" and response.status_code == 200:
            self.patch_ids = [p["patch_id"] for p in response.json()]
        elif route == "alerts" and response.status_code == 200:
            self.cursor = response.json().get("next_cursor") or self.cursor

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            due, k = time.monotonic(), 0
            while not self.halt.is_set():
                route = ROUTES[k % len(ROUTES)]
                k += 1
                path, params = self._request(route)
                day = self.day
                t0 = time.perf_counter()
                try:
                    response = client.get(path, params=params)
                    status = response.status_code
                except httpx.HTTPError:
                    response, status = None, 0
                latency = time.perf_counter() - t0
                if response is not None:
                    self._read(route, response)
                if day is not None:
                    self.requests.append(Request(day, route, latency, status))
                due = max(due + self.period_s, time.monotonic())  # steady: no burst to catch up after a slow answer
                self.halt.wait(max(0.0, due - time.monotonic()))

    def stop(self) -> None:
        self.halt.set()
        self.join(60)


# ---- daily samples --------------------------------------------------------------------------------------------


def fd_kinds(pid: int) -> dict[str, int]:
    """Open files of process ``pid`` by kind: all, the SQLite state's (``state.sqlite*``), sockets, and others."""
    kinds = {"open_files": 0, "open_files_sqlite": 0, "open_files_socket": 0, "open_files_other": 0}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):  # closed as we look
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            kind = "sqlite" if "state.sqlite" in target else "socket" if target.startswith("socket:") else "other"
            kinds["open_files"] += 1
            kinds[f"open_files_{kind}"] += 1
    return kinds


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds used so far (user + system) by process ``pid``, and by the whole machine (every core, all but
    idle and I/O wait)."""
    tick = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    machine = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (int(fields[11]) + int(fields[12])) / tick, (sum(machine) - machine[3] - machine[4]) / tick


def proc_sample(pid: int, reads: int = 5) -> dict[str, float]:
    """Resident memory (MB: VmRSS, and its anonymous and file-backed parts, the latter mostly the memory-mapped
    videos), memory mappings, open files (by kind, :func:`fd_kinds`) and threads of process ``pid``: of ``reads``
    reads 20 ms apart, the least of each (the open files by kind of the read with the fewest), so that a file open
    for a moment (a frame being read) is not counted; and the CPU seconds of the process and the machine so far."""
    keys = {"VmRSS:": "rss_mb", "RssAnon:": "rss_anon_mb", "RssFile:": "rss_file_mb"}
    reads_: list[dict[str, float]] = []
    for k in range(reads):
        sample: dict[str, float] = {}
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, *value = line.split()
            if name in keys:
                sample[keys[name]] = int(value[0]) * 1024 / MB
        sample["mappings"] = len(Path(f"/proc/{pid}/maps").read_text().splitlines())
        sample["threads"] = len(os.listdir(f"/proc/{pid}/task"))
        sample.update(fd_kinds(pid))
        reads_.append(sample)
        if k < reads - 1:
            time.sleep(0.02)
    out = {key: min(r[key] for r in reads_) for key in reads_[0] if not key.startswith("open_files")}
    out.update({k: v for k, v in min(reads_, key=lambda r: r["open_files"]).items() if k.startswith("open_files")})
    out["cpu_s"], out["machine_cpu_s"] = cpu_seconds(pid)
    return out


def metrics_sample(url: str) -> dict[str, float]:
    """From ``GET /metrics``: disk bytes by kind (MB), frames ingested, open alerts, active patches."""
    out: dict[str, float] = {}
    text = httpx.get(url + "/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "fluxwatch_disk_bytes":
                out[f"disk_{s.labels['kind']}_mb"] = s.value / MB
            elif s.name in ("fluxwatch_frames_ingested_total", "fluxwatch_open_alerts", "fluxwatch_active_patches"):
                out[s.name.removeprefix("fluxwatch_").removesuffix("_total")] = s.value
    return out


def dir_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (apparent sizes)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(FileNotFoundError):  # retention removes files as we walk
                total += os.stat(os.path.join(root, name)).st_size
    return total


def db_tables(path: Path) -> dict[str, int]:
    """Bytes of each table of the SQLite database at ``path``, its indexes included (``dbstat``), read-only."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        owner = dict(db.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"))
        sizes: dict[str, int] = {}
        for name, size in db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
            table = owner.get(name, name)
            sizes[table] = sizes.get(table, 0) + size
        return sizes
    except sqlite3.OperationalError:  # an SQLite built without dbstat
        return {}
    finally:
        db.close()


def table_rows(path: Path) -> dict[str, int]:
    """Rows of each table of the SQLite database at ``path`` (``outbox_undelivered``: its outbox rows that Kafka has
    not acknowledged), read-only."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        rows = {t: db.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
        if "outbox" in rows:
            rows["outbox_undelivered"] = db.execute("SELECT COUNT(*) FROM outbox WHERE delivered IS NULL").fetchone()[0]
        return rows
    finally:
        db.close()


def p95_ms(latencies: list[float]) -> float:
    """95th percentile of latencies in s, as ms (NaN when none)."""
    return float(np.percentile(latencies, 95) * 1000) if latencies else float("nan")


def daily_sample(day: int, wall_s: float, service: ServiceProcess, reader: ApiReader) -> dict[str, float]:
    """The samples at the end of simulated ``day`` (1 = the first): process, disk, database and API (the requests
    sent during that day)."""
    sample: dict[str, float] = {"day": day, "wall_s": round(wall_s, 1), **proc_sample(service.pid)}
    sample.update(metrics_sample(service.url))
    kinds = sum(v for k, v in sample.items() if k.startswith("disk_") and k.endswith("_mb"))
    total = dir_bytes(service.data_dir) / MB
    sample["disk_other_mb"] = max(0.0, total - kinds)
    sample["disk_total_mb"] = total
    db = service.data_dir / "state.sqlite"
    sample["db_mb"] = sum(p.stat().st_size for p in (db, db.with_name(db.name + "-wal")) if p.exists()) / MB
    sample.update({f"db_{t}_mb": size / MB for t, size in db_tables(db).items()})
    sample.update({f"rows_{t}": n for t, n in table_rows(db).items()})
    requests = [r for r in reader.requests if day - 1 <= r.day < day]
    sample["requests"] = len(requests)
    sample["errors"] = sum(1 for r in requests if r.status == 0 or r.status >= 500)
    sample["p95_ms"] = p95_ms([r.latency_s for r in requests])
    for route in dict.fromkeys(ROUTES):
        sample[f"p95_{route}_ms"] = p95_ms([r.latency_s for r in requests if r.route == route])
    return sample


# ---- figures --------------------------------------------------------------------------------------------------


def slope(days: np.ndarray, values: np.ndarray) -> float:
    """Least-squares slope of ``values`` against ``days`` (units per day)."""
    return float(np.polyfit(days, values, 1)[0]) if len(days) >= 2 else float("nan")


@dataclass
class Figure:
    """A summary figure, its target and whether it is met."""

    name: str
    value: float
    target: str
    met: bool


def weeks(requests: list[Request], days: int) -> tuple[list[Request], list[Request]]:
    """The requests of the first and of the last week of a run of ``days`` simulated days."""
    return ([r for r in requests if r.day < min(WEEK, days)],
            [r for r in requests if max(0, days - WEEK) <= r.day < days])


def figures(samples: list[dict[str, float]], requests: list[Request], days: int) -> tuple[list[Figure], int, int]:
    """The summary figures of a run; also the day the growth is counted from and the first day of the fits."""
    col = {k: np.array([s.get(k, np.nan) for s in samples], float) for k in ("day", "rss_mb", "open_files", "threads",
                                                                           "disk_total_mb", "db_mb")}
    d = col["day"]
    base = min(WEEK, max(1, days // 2))  # the end of the first week (of the first half in a short run)
    b, last = int(np.flatnonzero(d == base)[0]), -1
    half = days // 2
    fit = d >= half

    def flat(name: str, key: str) -> Figure:
        rate = slope(d[fit], col[key][fit])
        bound = FLAT_MAX_PCT / 100 * float(np.mean(col[key][fit])) / max(1, days - half)
        return Figure(name, rate, f"|x| <= {bound:.2f} ({FLAT_MAX_PCT:g}% of level over days {half}-{days})",
                      abs(rate) <= bound)

    rss = 100 * (col["rss_mb"][last] / col["rss_mb"][b] - 1)
    first, end = (p95_ms([r.latency_s for r in week]) for week in weeks(requests, days))
    fds = int(col["open_files"][last] - col["open_files"][b])
    threads = int(col["threads"][last] - col["threads"][b])
    return [
        Figure("rss_growth_pct", rss, f"<= {RSS_GROWTH_MAX_PCT:g} (day {base} to {days})", rss <= RSS_GROWTH_MAX_PCT),
        flat("disk_mb_per_day", "disk_total_mb"),
        flat("db_mb_per_day", "db_mb"),
        Figure("api_p95_ms_first", first, f"days 0-{min(WEEK, days)}", True),
        Figure("api_p95_ms_last", end, f"<= {P95_RATIO_MAX:g} x first = {P95_RATIO_MAX * first:.1f}",
               end <= P95_RATIO_MAX * first),
        Figure("open_files_growth", fds, f"<= 0 (day {base} to {days})", fds <= 0),
        Figure("threads_growth", threads, f"<= 0 (day {base} to {days})", threads <= 0),
    ], base, half


def plot(samples: list[dict[str, float]], base: int, half: int, path: Path) -> Path:
    """One panel per quantity against simulated day; the growth base and the fitted half marked."""
    plt = pyplot()
    keys = list(dict.fromkeys(k for s in samples for k in s))
    col = {k: np.array([s.get(k, np.nan) for s in samples], float) for k in keys}
    d = col["day"]
    fig, axes = plt.subplots(4, 2, figsize=(13, 14), sharex=True)

    def starts(prefix: str, total: str) -> list[str]:
        return [total] + [k for k in keys if k.startswith(prefix) and k != total]

    panels = [
        ("resident memory (MB): all, anonymous, file-backed", ["rss_mb", "rss_anon_mb", "rss_file_mb"]),
        ("open files (by kind), threads; memory mappings (right axis)",
         ["open_files", "open_files_sqlite", "open_files_socket", "open_files_other", "threads"]),
        ("disk by kind (MB)", starts("disk_", "disk_total_mb")),
        ("database (MB): state.sqlite + wal, by table", starts("db_", "db_mb")),
        ("API p95 (ms) of the requests sent that day, by route", starts("p95_", "p95_ms")),
        ("database rows by table (thousands)", [k + "_k" for k in keys if k.startswith("rows_")]),
        ("open alerts, active patches, outbox not yet on Kafka", ["open_alerts", "active_patches", "rows_outbox_undelivered"]),
        ("seconds per simulated day: wall, CPU of the service and of the rest of the machine",
         ["wall_s_per_day", "service_cpu_s_per_day", "other_cpu_s_per_day"]),
    ]
    col["wall_s_per_day"] = np.diff(col["wall_s"], prepend=0.0)
    if "cpu_s" in col:
        col["service_cpu_s_per_day"] = np.diff(col["cpu_s"], prepend=np.nan)
        col["other_cpu_s_per_day"] = np.diff(col["machine_cpu_s"], prepend=np.nan) - col["service_cpu_s_per_day"]
    col.update({k + "_k": col[k] / 1000 for k in keys if k.startswith("rows_")})
    for ax, (title, names) in zip(axes.flat, panels):
        for name in names:
            if name in col and np.isfinite(col[name]).any():
                ax.plot(d, col[name], lw=2.0 if name == names[0] else 1.0,
                        label=name.removesuffix("_mb").removesuffix("_ms").removesuffix("_k"))
        if title.startswith(("disk by kind", "database (MB)")):
            fit = d >= half
            if fit.sum() >= 2:
                a, c = np.polyfit(d[fit], col[names[0]][fit], 1)
                ax.plot(d[fit], a * d[fit] + c, "k--", lw=1, label=f"fit: {a:+.2f} MB/day")
        if title.startswith("open files") and "mappings" in col:
            right = ax.twinx()
            right.plot(d, col["mappings"], color="grey", lw=1, ls="--", label="mappings")
            right.legend(fontsize=7, loc="lower right")
        ax.axvline(base, color="grey", lw=0.8, ls=":")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("simulated day")
    fig.suptitle(f"fluxwatch soak: {int(d[-1])} simulated days")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_csv(rows: list[dict], path: Path) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, keys, restval="")
        writer.writeheader()
        writer.writerows(rows)


# ---- main -----------------------------------------------------------------------------------------------------


def parse_retain(items: list[str]) -> dict[str, float]:
    """``NAME=DAYS`` items (NAME with or without ``retain_``) as {retain_NAME: simulated days}."""
    out = {}
    for item in items:
        name, _, days = item.partition("=")
        out["retain_" + name.removeprefix("retain_")] = float(days)
    return out


def run(args: argparse.Namespace, data_dir: Path, scratch: Path) -> tuple[list[dict[str, float]], list[Request]]:
    """The service, a broker and the reader for ``args.days`` simulated days; the daily samples and the requests."""
    retention = retention_settings(args.speedup, parse_retain(args.retain))
    print(f"speedup {args.speedup:g}: one {CADENCE} slot per {CADENCE.to_value(u.s) / args.speedup:.2f} s; "
          f"{args.days} simulated days in about {args.days * 86400 / args.speedup / 60:.0f} min")
    print("retention (simulated period -> period given to the service): " + ", ".join(
        f"{name} {period:.4g} -> " + (f"{seconds / 86400:.4g} d (observation time)" if name in OBSERVATION_TIME
                                      else f"{seconds:.1f} s (wall clock)") for name, period, seconds in retention))
    t0 = datetime.fromisoformat(slot_isot(int(slot_of_time(Time(START)))))
    samples: list[dict[str, float]] = []
    with kafka_broker(scratch, args.kafka) as bootstrap:
        service = ServiceProcess(data_dir, args.bundle.resolve(), args.speedup, retention, bootstrap, args.out / "service.log")
        print(f"service: pid {service.start().pid} at {service.url}, data in {data_dir}, log {service.log}")
        reader = ApiReader(service.url, args.rate, t0)
        reader.start()
        wall0 = last_progress = time.monotonic()
        last_day = None
        try:
            with tqdm(total=args.days, unit="day", desc="simulated days") as bar:
                while len(samples) < args.days:
                    service.check()
                    day = reader.day
                    if day != last_day:
                        last_day, last_progress = day, time.monotonic()
                    elif time.monotonic() - last_progress > args.stall_s:
                        raise RuntimeError(f"no new frame for {args.stall_s:.0f} s (newest: day {day}); see {service.log}")
                    if day is None or day < len(samples) + 1:
                        time.sleep(0.1)
                        continue
                    samples.append(daily_sample(len(samples) + 1, time.monotonic() - wall0, service, reader))
                    write_csv(samples, args.out / "soak.csv")  # day by day: a run cut short keeps its samples
                    s = samples[-1]
                    bar.set_postfix_str(f"rss {s['rss_mb']:.0f} MB, fds {s['open_files']:.0f}, threads {s['threads']:.0f}, "
                                        f"disk {s['disk_total_mb']:.0f} MB, db {s['db_mb']:.0f} MB, p95 {s['p95_ms']:.0f} ms")
                    bar.update(1)
        finally:
            reader.stop()
            code = service.stop()
            print(f"service stopped by SIGTERM: exit code {code}" + ("" if code == 0 else f" (NOT 0: see {service.log})"))
    wall = samples[-1]["wall_s"] - samples[0]["wall_s"]  # from the end of day 1: start-up aside
    print(f"wall time {samples[-1]['wall_s'] / 60:.1f} min for {len(samples)} simulated days: effective speedup "
          f"{(len(samples) - 1) * 86400 / wall:.0f} after day 1 (asked {args.speedup:g}); {len(reader.requests)} requests, "
          f"{sum(1 for r in reader.requests if r.status == 0 or r.status >= 500)} errors (no answer or 5xx)")
    print("state.sqlite at the end, rows: " + ", ".join(f"{t} {n}" for t, n in table_rows(data_dir / "state.sqlite").items())
          + "; MB: " + ", ".join(f"{t} {n / MB:.1f}" for t, n in db_tables(data_dir / "state.sqlite").items()))
    if code != 0:
        raise SystemExit(f"the service exited with code {code}")
    return samples, reader.requests


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--days", type=int, default=90, help="simulated days (default 90)")
    p.add_argument("--speedup", type=float, default=3840.0, help="clock acceleration (default 3840: a slot per 1.5 s)")
    p.add_argument("--rate", type=float, default=10.0, help=(
        "API requests per second (default 10: about 225 per simulated day, 1,500 per week at the default speedup)"))
    p.add_argument("--retain", action="append", default=[], metavar="NAME=DAYS",
                   help="a retention period in simulated days (e.g. processed=10); default: ServiceConfig's")
    p.add_argument("--kafka", action=argparse.BooleanOptionalAction, default=True, help="run a real Kafka broker")
    p.add_argument("--bundle", type=Path, default=Path(CNN_BUNDLE))
    p.add_argument("--out", type=Path, default=Path("data/bench-soak"), help="where the CSVs and the plot go")
    p.add_argument("--data-dir", type=Path, help="the service's data directory, kept (default: a temporary one)")
    p.add_argument("--stall-s", type=float, default=900.0, help=(
        "give up after this long without a new frame (s; the synthetic Sun has gaps of days)"))
    args = p.parse_args()
    if args.days < 2:
        p.error("--days must be at least 2")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "service.log").unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="fluxwatch-soak-") as name:
        scratch = Path(name)
        data_dir = args.data_dir.resolve() if args.data_dir else scratch / "service"
        if data_dir.exists() and any(data_dir.iterdir()):
            p.error(f"--data-dir {data_dir} is not empty: the soak starts from a fresh state")
        samples, requests = run(args, data_dir, scratch)
    write_csv(samples, args.out / "soak.csv")
    write_csv([vars(r) for r in requests], args.out / "soak_requests.csv")
    found, base, half = figures(samples, requests, args.days)
    print(f"plot: {plot(samples, base, half, args.out / 'soak.png')}; daily samples: {args.out / 'soak.csv'}; "
          f"requests: {args.out / 'soak_requests.csv'}")
    width = max(len(f.target) for f in found)
    print(f"{'figure':<20} {'value':>10}  {'target':<{width}}  met")
    for f in found:
        print(f"{f.name:<20} {f.value:>10.2f}  {f.target:<{width}}  {'yes' if f.met else 'NO'}")
    first, last = weeks(requests, args.days)
    print(f"{'route':<12} {'p95 first week, ms':>19} {'requests':>9} {'p95 last week, ms':>18} {'requests':>9}")
    for route in dict.fromkeys(ROUTES):
        a, b = ([r.latency_s for r in rs if r.route == route] for rs in (first, last))
        print(f"{route:<12} {p95_ms(a):>19.1f} {len(a):>9} {p95_ms(b):>18.1f} {len(b):>9}")
    v = {f.name: f.value for f in found}
    print(f"days={len(samples)} rss_growth_pct={v['rss_growth_pct']:.1f} disk_mb_per_day={v['disk_mb_per_day']:.2f} "
          f"db_mb_per_day={v['db_mb_per_day']:.2f} api_p95_ms_first={v['api_p95_ms_first']:.1f} "
          f"api_p95_ms_last={v['api_p95_ms_last']:.1f} open_files_growth={v['open_files_growth']:.0f}")


if __name__ == "__main__":
    main()
