"""``fluxwatch-serve``: run the service (scheduler + HTTP API + Kafka publisher).

Settings come from the flags, then the environment (``FLUXWATCH_<FIELD>``), then ``--config FILE`` (TOML), then
the defaults (:class:`common.config.ServiceConfig`); a flag not given leaves the setting to the others.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys

import astropy.units as u
import uvicorn

from common.config import PLACEHOLDER_UPLOAD_TOKEN, ConfigError, ServiceConfig
from serving.api import create_app
from serving.app import build
from serving.bundle import BundleError
from serving.store import StateError

log = logging.getLogger(__name__)


def parser() -> argparse.ArgumentParser:
    """The flags; each defaults to None (not given), so that the environment and the file can set it."""
    d = ServiceConfig.model_fields
    p = argparse.ArgumentParser(prog="fluxwatch-serve", description=__doc__.splitlines()[0], argument_default=None)
    p.add_argument("--config", help="TOML file of settings (ServiceConfig's fields as top-level keys)")
    p.add_argument("--data-dir", help=f"state, videos and files (default {d['data_dir'].default})")
    p.add_argument("--bundle", help="model bundle directory (train-ensemble's bundle/)")
    p.add_argument("--source", choices=["synthetic", "watch", "jsoc"],
                   help="synthetic: the synthetic Sun (its alerts are simulated ones, on their own topics); watch: "
                        "files dropped into incoming/ or uploaded; jsoc: JSOC's near-real-time series as well (needs --jsoc-email)")
    p.add_argument("--warm-start", action=argparse.BooleanOptionalAction,
                   help="before the first live frame, fill the last 15 days from the source's archive (default on)")
    p.add_argument("--jsoc-series", help=f"DRMS series polled by --source jsoc (default {d['jsoc_series'].default})")
    p.add_argument("--jsoc-email", help="e-mail address registered for JSOC exports")
    p.add_argument("--jsoc-url", help="base URL of another DRMS server (default: JSOC)")
    p.add_argument("--speedup", type=float, help="clock acceleration (cadence / speedup per cycle)")
    p.add_argument("--synthetic-start", help="first slot time of the synthetic feed (ISO UTC)")
    p.add_argument("--kafka", dest="kafka_bootstrap", help="bootstrap servers; none = no Kafka")
    for kind, what in (("alerts", "the alert events"), ("status", "the patch statuses (compacted)")):
        for simulated in (False, True):
            prefix = "simulated-" if simulated else ""
            default = d[f"{prefix.replace('-', '_')}{kind}_topic"].default
            p.add_argument(f"--{prefix}{kind}-topic", help=f"Kafka topic of {what}{' from simulated frames' if simulated else ''} "
                                                           f"(default {default})")
    p.add_argument("--host", dest="http_host", help=f"HTTP host (default {d['http_host'].default})")
    p.add_argument("--port", dest="http_port", type=int, help=f"HTTP port (default {d['http_port'].default})")
    p.add_argument("--upload-token",
                   help="bearer token of POST /upload; the default placeholder is refused unless --host is loopback")
    p.add_argument("--lat-limit-deg", type=float, help="patches cover latitudes within ± this (default 45)")
    p.add_argument("--tile-overlap-deg", type=float,
                   help="overlap of neighbouring tiles (7.5 = half a tile); overlapping alerts are merged")
    p.add_argument("--present-at-start", action=argparse.BooleanOptionalAction,
                   help="mark passages seen only from mid-passage whose first frame already scores above the threshold "
                        "(no alert until the score falls back; see serving.alerts)")
    p.add_argument("--log-format", choices=["text", "json"], help="json: one JSON object per log line")
    return p


def config_from_args(argv=None) -> ServiceConfig:
    """The settings of a command line (flags over environment over ``--config`` file over defaults)."""
    given = {k: v for k, v in vars(parser().parse_args(argv)).items() if v is not None}
    file = given.pop("config", None)
    for flag, field in (("lat_limit_deg", "lat_limit"), ("tile_overlap_deg", "tile_overlap")):
        if flag in given:
            given[field] = given.pop(flag) * u.deg
    return ServiceConfig.load(file, **given)


def configure_logging(log_format: str) -> None:
    """Text lines, or JSON objects (python-json-logger) with the time, level, logger and message."""
    handler = logging.StreamHandler()
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                           rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # skipped runs while a long cycle finishes are expected
    logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python logs every connection at INFO


def _terminated(signum, frame) -> None:
    raise SystemExit(0)


def configured(prog: str, argv=None) -> ServiceConfig | None:
    """The settings of a command line (:func:`config_from_args`), with logging set up as they say; None, the error
    printed as ``prog``'s, when they cannot be used."""
    try:
        config = config_from_args(argv)
    except ConfigError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return None
    configure_logging(config.log_format)
    return config


def main(argv=None) -> int:
    config = configured("fluxwatch-serve", argv)
    if config is None:
        return 2
    if config.upload_token == PLACEHOLDER_UPLOAD_TOKEN and not config.loopback_only:
        print(f"fluxwatch-serve: error: --host {config.http_host} listens beyond this machine, and the upload token is "
              f"the placeholder {PLACEHOLDER_UPLOAD_TOKEN!r} that anyone can read in the source: give --upload-token "
              "a secret, or listen on 127.0.0.1", file=sys.stderr)
        return 2
    try:
        app = build(config)
    except (BundleError, StateError) as exc:
        print(f"fluxwatch-serve: error: {exc}", file=sys.stderr)
        return 2
    app.start()
    # uvicorn stops serving on SIGTERM, then raises it again: end through the finally below, so that the scheduler,
    # the watcher and the publisher stop in order, and exit 0 (a stop asked for is not a failure).
    signal.signal(signal.SIGTERM, _terminated)
    try:
        uvicorn.run(create_app(app.service), host=config.http_host, port=config.http_port, log_level="warning",
                    log_config=None)
    finally:
        app.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
