"""The command line of the service's programs: the settings of ``fluxwatch-serve``'s flags, and the logging they ask for.

Settings come from the flags, then the environment (``FLUXWATCH_<FIELD>``), then ``--config FILE`` (TOML), then
the defaults (:class:`common.config.ServiceConfig`); a flag not given leaves the setting to the others. The backup
and the rebuild take the same flags.
"""
from __future__ import annotations

import argparse
import logging
import sys

import astropy.units as u

from common.config import ConfigError, ServiceConfig

_DESCRIPTION = "run the service (scheduler + HTTP API + Kafka publisher)"


def _help(field: str, unit: str = "") -> str:
    """A flag's help: the setting's description and default (:class:`common.config.ServiceConfig`)."""
    f = ServiceConfig.model_fields[field]
    default = f.default.to_value() if hasattr(f.default, "to_value") else f.default
    return f"{f.description} (default {default}{unit})"


def parser() -> argparse.ArgumentParser:
    """The flags; each defaults to None (not given), so that the environment and the file can set it."""
    p = argparse.ArgumentParser(prog="fluxwatch-serve", description=_DESCRIPTION, argument_default=None)
    p.add_argument("--config", help="TOML file of settings (ServiceConfig's fields as top-level keys)")
    for field in ("data_dir", "bundle", "jsoc_series", "jsoc_email", "jsoc_url", "synthetic_start", "alerts_topic",
                  "status_topic", "simulated_alerts_topic", "simulated_status_topic", "upload_token"):
        p.add_argument("--" + field.replace("_", "-"), help=_help(field))
    p.add_argument("--source", choices=["synthetic", "watch", "jsoc"], help=_help("source"))
    p.add_argument("--synthetic-seed", type=int, help=_help("synthetic_seed"))
    p.add_argument("--speedup", type=float, help=_help("speedup"))
    p.add_argument("--kafka", dest="kafka_bootstrap", help=_help("kafka_bootstrap"))
    p.add_argument("--host", dest="http_host", help=_help("http_host"))
    p.add_argument("--port", dest="http_port", type=int, help=_help("http_port"))
    p.add_argument("--lat-limit-deg", type=float, help=_help("lat_limit", " deg"))
    p.add_argument("--tile-overlap-deg", type=float, help=_help("tile_overlap", " deg"))
    for field in ("warm_start", "present_at_start"):
        p.add_argument("--" + field.replace("_", "-"), action=argparse.BooleanOptionalAction, help=_help(field))
    p.add_argument("--log-format", choices=["text", "json"], help=_help("log_format"))
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
