"""Metrics, Prometheus rules and the Grafana dashboard, checked against real Prometheus tools.

- ``promtool check`` validates deploy/prometheus/{prometheus,rules}.yml, and
  ``promtool test rules`` drives every alert with synthetic series.
- A real Prometheus (Debian's ``prometheus``) scrapes the running service's
  ``/metrics`` (uvicorn) while it ingests real frames; every query of
  deploy/grafana/dashboard.json and every recording rule must then return finite data.

The Prometheus tests are skipped only when the binaries are not installed
(Debian/Ubuntu: ``apt-get install prometheus``).
"""
from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import astropy.units as u
import pytest
import yaml

from common.config import ServiceConfig
from devtools.kafka_broker import free_port
from ingest.errors import (
    EmptyDataError,
    IngestError,
    InstrumentError,
    MemoryLimitError,
    MissingKeywordError,
    NoImageDataError,
    NotFITSError,
    QualityError,
    ReaderDiedError,
    TimeLimitError,
    TimeOrderError,
    TruncatedFITSError,
    UnitError,
)
from serving.api import create_app
from serving.compose import open_service
from serving.metrics import ALERT_EVENTS, REJECT_REASONS, Metrics
from tests.support import ServerThread

ROOT = Path(__file__).resolve().parents[1]
PROM_DIR = ROOT / "deploy" / "prometheus"
PROM_CONFIG = PROM_DIR / "prometheus.yml"
RULES = PROM_DIR / "rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboard.json"

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian/Ubuntu: apt-get install prometheus)")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus not installed (Debian/Ubuntu: apt-get install prometheus)")

#: Values given to Grafana's variables when the dashboard's queries are run directly.
GRAFANA_VARS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m", "window": "1m", "job": "fluxwatch"}
_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


def substitute(expr: str) -> str:
    """``expr`` with Grafana variables replaced by :data:`GRAFANA_VARS` (KeyError on an unknown one)."""
    return _VAR.sub(lambda m: GRAFANA_VARS[next(g for g in m.groups() if g)], expr)


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title / refId, expr) for every target of every panel, rows included."""
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dash["panels"]:
        for p in [panel, *panel.get("panels", [])]:
            for t in p.get("targets", []):
                out.append((f"{p['title']} / {t['refId']}", t["expr"]))
    return out


def exercise(m: Metrics) -> None:
    """Touch every metric and every label value once."""
    m.frames_ingested.inc(3)
    for cls in (NotFITSError, TruncatedFITSError, NoImageDataError, UnitError,
                MissingKeywordError, EmptyDataError, TimeOrderError, InstrumentError, QualityError, MemoryLimitError,
                TimeLimitError, ReaderDiedError):
        m.reject(cls("f.fits", "bad"))
    for reason in ("too_large", "unauthorized", "other"):
        m.reject(reason)
    m.frames_superseded.inc(7)
    m.frame_quality_bits.labels("SDO/HMI", "QUAL_ECLIPSE", "refused").inc()
    m.frame_quality_bits.labels("SDO/HMI", "QUAL_LOWINTERPNUM", "recorded").inc()
    m.warm_start_frames.set(219)
    m.disk_bytes.labels(kind="processed").set(2e9)
    m.disk_free_bytes.set(5e10)
    m.warm_start_seconds.set(123.0)
    m.source_fetched.inc(8)
    m.source_errors.inc()
    m.source_consecutive_errors.set(1)
    m.source_last_success.set(time.time())
    for dt in (0.07, 0.3, 1.2, 4.0):
        m.ingest_latency.observe(dt)
        m.scoring_latency.observe(dt * 5)
        m.frame_to_publish.observe(dt * 6)
        m.observation_to_publish.observe(dt * 1000)
    m.active_patches.set(412)
    m.open_alerts.set(2)
    for event in ALERT_EVENTS:
        m.alerts_published.labels(event=event).inc()
    m.outbox_depth.set(5)
    m.kafka_errors.inc()
    m.set_newest_frame_time(time.time() - 30)
    m.set_model("test-bundle-1", 10)


# ---------------------------------------------------------------- unit tests


@pytest.mark.parametrize("cls, reason", [
    (NotFITSError, "not_fits"), (TruncatedFITSError, "truncated"), (NoImageDataError, "no_image"),
    (UnitError, "bad_unit"), (MissingKeywordError, "missing_keyword"), (EmptyDataError, "empty"),
    (TimeOrderError, "time_order"),
])
def test_reason_for_maps_each_ingest_error(cls, reason):
    assert Metrics.reason_for(cls("a.fits", "problem")) == reason
    assert reason in REJECT_REASONS


def test_reason_for_subclasses_and_unknown_errors():
    class ShortData(TruncatedFITSError):
        """A subclass maps like its base."""

    assert Metrics.reason_for(ShortData("a.fits", "short")) == "truncated"
    assert Metrics.reason_for(IngestError("a.fits", "generic")) == "other"
    assert Metrics.reason_for(ValueError("boom")) == "other"


def test_reject_counts_by_reason_and_refuses_unknown_labels():
    m = Metrics()
    assert m.reject(UnitError("a.fits", "BUNIT=DN")) == "bad_unit"
    assert m.reject("bad_quality") == "bad_quality"
    assert m.registry.get_sample_value("fluxwatch_frames_rejected_total", {"reason": "bad_unit"}) == 1
    assert m.registry.get_sample_value("fluxwatch_frames_rejected_total", {"reason": "bad_quality"}) == 1
    assert m.registry.get_sample_value("fluxwatch_frames_rejected_total", {"reason": "other"}) == 0
    with pytest.raises(ValueError, match="unknown rejection reason"):
        m.reject("cosmic_rays")


def test_newest_frame_age_grows_between_frames():
    now = [1000.0]
    m = Metrics(clock=lambda: now[0])
    age = lambda: m.registry.get_sample_value("fluxwatch_newest_frame_age_seconds")  # noqa: E731
    now[0] = 1100.0
    assert age() == 100.0  # since start-up until the first frame
    m.set_newest_frame_time(1090.0)
    assert age() == 10.0
    now[0] = 1190.0
    assert age() == 100.0
    m.set_newest_frame_time()
    assert age() == 0.0


def test_exposition_has_every_metric_and_label():
    m = Metrics()
    exercise(m)
    body, ctype = m.exposition()
    text = body.decode()
    assert ctype.startswith("text/plain")
    for name in ("frames_ingested_total", "ingest_latency_seconds_bucket", "scoring_latency_seconds_bucket",
                 "frame_to_publish_seconds_bucket", "active_patches", "open_alerts", "outbox_depth",
                 "kafka_errors_total", "newest_frame_age_seconds"):
        assert f"\nfluxwatch_{name}" in text, name
    for reason in REJECT_REASONS:
        assert f'fluxwatch_frames_rejected_total{{reason="{reason}"}} 1.0' in text
    for event in ALERT_EVENTS:
        assert f'fluxwatch_alerts_published_total{{event="{event}"}} 1.0' in text
    assert 'fluxwatch_model_info{members="10",model_version="test-bundle-1"} 1.0' in text
    assert 'le="0.05"' in text and 'le="120.0"' in text


def test_dashboard_structure_covers_every_metric():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["schemaVersion"] >= 38
    ds_var = {v["name"]: v for v in dash["templating"]["list"]}["DS_PROMETHEUS"]
    assert (ds_var["type"], ds_var["query"]) == ("datasource", "prometheus")
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, p["title"]
            assert p["targets"], p["title"]
    exprs = " ".join(e for _, e in dashboard_queries())
    for family in Metrics().registry.collect():
        assert family.name in exprs, f"no panel shows {family.name}"


def test_rules_and_dashboard_name_only_exported_metrics():
    m = Metrics()
    exercise(m)
    exported = {s.name for fam in m.registry.collect() for s in fam.samples}
    referenced = set(re.findall(r"fluxwatch_\w+", RULES.read_text() + json.dumps(dashboard_queries())))
    assert referenced, "no fluxwatch metric referenced"
    assert referenced <= exported, referenced - exported


# ---------------------------------------------------------------- promtool


@needs_promtool
def test_promtool_check_config_and_rules():
    for args in (["check", "config", str(PROM_CONFIG)], ["check", "rules", str(RULES)]):
        r = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr


def _firing(eval_time: str, *alerts: str) -> dict:
    """A promtool expression test: exactly ``alerts`` are firing at ``eval_time``."""
    return {"expr": 'count by (alertname) (ALERTS{alertstate="firing"})', "eval_time": eval_time,
            "exp_samples": [{"labels": f'{{alertname="{a}"}}', "value": 1} for a in alerts]}


def _case(series: dict[str, str], *checks: dict) -> dict:
    """One promtool test: 1-minute samples of ``series`` (plus a healthy ``up``) and ``checks``."""
    series = {'up{job="fluxwatch",instance="i"}': "1x500", **series}
    return {"interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series.items()],
            "promql_expr_test": list(checks)}


def _m(name: str, **labels: str) -> str:
    """A series selector of the fluxwatch job's instance ``i``."""
    extra = "".join(f',{k}="{v}"' for k, v in labels.items())
    return f'{name}{{job="fluxwatch",instance="i"{extra}}}'


@needs_promtool
def test_alert_rules_fire_when_they_should(tmp_path):
    cases = [
        _case({_m("fluxwatch_newest_frame_age_seconds"): "0+60x200", _m("fluxwatch_outbox_depth"): "0x200",
               _m("fluxwatch_kafka_errors_total"): "0x200", _m("fluxwatch_frames_ingested_total"): "0+1x200",
               _m("fluxwatch_frames_rejected_total", reason="not_fits"): "0x200"},
              _firing("100m")),
        {"interval": "1m", "input_series": [{"series": 'up{job="fluxwatch",instance="i"}', "values": "1x5 0x20"}],
         "promql_expr_test": [_firing("4m"), _firing("15m", "FluxwatchDown")]},
        _case({_m("fluxwatch_newest_frame_age_seconds"): "0+60x400"},  # > 3 * 5760 s after 288 min
              _firing("280m"), _firing("295m", "FluxwatchNoNewFrame")),
        _case({_m("fluxwatch_outbox_depth"): "0x10 150x20"},
              _firing("15m"), _firing("25m", "FluxwatchOutboxBacklog")),
        _case({_m("fluxwatch_outbox_depth"): "0x30 1+0.1x300"},  # drained until 30 min, then never
              _firing("100m"), _firing("170m", "FluxwatchOutboxGrowing")),
        _case({_m("fluxwatch_kafka_errors_total"): "0x10 1+1x30"},
              _firing("10m"), _firing("30m", "FluxwatchKafkaErrors")),
        _case({_m("fluxwatch_frames_ingested_total"): "0+1x100",
               _m("fluxwatch_frames_rejected_total", reason="not_fits"): "0+1x100"},
              _firing("60m", "FluxwatchHighRejectionRate")),
        _case({_m("fluxwatch_scoring_latency_seconds_bucket", le="30.0"): "0x100",
               _m("fluxwatch_scoring_latency_seconds_bucket", le="60.0"): "0x100",
               _m("fluxwatch_scoring_latency_seconds_bucket", le="120.0"): "0+1x100",
               _m("fluxwatch_scoring_latency_seconds_bucket", le="+Inf"): "0+1x100"},
              _firing("10m"), _firing("60m", "FluxwatchScoringSlow")),
        _case({_m("fluxwatch_observation_to_publish_seconds_bucket", le="7200.0"): "0+1x30 30x200",
               _m("fluxwatch_observation_to_publish_seconds_bucket", le="10800.0"): "0+1x30 30x200",
               _m("fluxwatch_observation_to_publish_seconds_bucket", le="14400.0"): "0+1x30 30+1x200",
               _m("fluxwatch_observation_to_publish_seconds_bucket", le="+Inf"): "0+1x30 30+1x200"},
              _firing("60m"), _firing("230m", "FluxwatchAlertsLate")),  # 2 h until 30 min, then 3–4 h
        _case({_m("fluxwatch_disk_free_bytes"): "1e9x100 1e9-1e6x300"},  # 1 GB free, then 1.4 GB a day written
              _firing("90m"), _firing("200m", "FluxwatchDiskFilling")),
    ]
    spec = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": cases}
    test_file = tmp_path / "rules_test.yml"
    test_file.write_text(json.dumps(spec))  # JSON is YAML
    r = subprocess.run([PROMTOOL, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


# ---------------------------------------------------------------- live Prometheus


class PromAPI:
    """The HTTP API of a running Prometheus."""

    def __init__(self, base: str):
        self.base = base

    def query(self, expr: str) -> list[dict]:
        """The instant-vector result of ``expr`` now (raises on a bad query)."""
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as r:
            data = json.load(r)
        assert data["status"] == "success", data
        assert data["data"]["resultType"] == "vector", data
        return data["data"]["result"]

    def wait_finite(self, expr: str, deadline: float) -> list[dict]:
        """Poll ``expr`` until it returns only finite values, or fail at ``deadline``."""
        while True:
            result = self.query(expr)
            if result and all(math.isfinite(float(s["value"][1])) for s in result):
                return result
            assert time.monotonic() < deadline, f"{expr!r} gave {result}"
            time.sleep(0.25)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory, tiny_bundle, frames):
    """A real Prometheus scraping the running service's /metrics every second, after two rounds of activity.

    Each round the service ingests and scores a real frame, and every remaining
    label value is touched once (rejections by every reason, every alert event).
    """
    tmp = tmp_path_factory.mktemp("prometheus")
    service = open_service(ServiceConfig(data_dir=str(tmp / "svc"), bundle=str(tiny_bundle), source="watch",
                                    lat_limit=45 * u.deg))
    m = service.metrics
    server = ServerThread(create_app(service)).__enter__()
    config = yaml.safe_load(PROM_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(RULES)]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{server.port}"]}]
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(tmp / "prometheus.log", "w")
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT)
    api = PromAPI(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        ingested = f'fluxwatch_frames_ingested_total{{job="{job["job_name"]}"}}'
        for frame in frames[:2]:  # two scraped rounds, so rates and quantiles over them are finite
            shutil.copy(frame, service.dir / "incoming" / frame.name)
            assert service.run_cycle() == 1
            exercise(m)
            while True:
                assert proc.poll() is None, (tmp / "prometheus.log").read_text()
                try:
                    result = api.query(ingested)
                except OSError:
                    result = []
                if result and float(result[0]["value"][1]) == m.frames_ingested._value.get():
                    break
                assert time.monotonic() < deadline, f"not scraped: {(tmp / 'prometheus.log').read_text()}"
                time.sleep(0.25)
        yield api
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        server.__exit__(None, None, None)


@needs_prometheus
@pytest.mark.parametrize("where, expr", dashboard_queries(), ids=[w for w, _ in dashboard_queries()])
def test_dashboard_query_returns_data(prometheus, where, expr):
    prometheus.wait_finite(substitute(expr), time.monotonic() + 5)


@needs_prometheus
def test_recording_rules_evaluate_on_real_metrics(prometheus):
    groups = yaml.safe_load(RULES.read_text())["groups"]
    records = [r["record"] for g in groups for r in g["rules"] if "record" in r]
    assert records
    deadline = time.monotonic() + 10
    for record in records:
        prometheus.wait_finite(record, deadline)
