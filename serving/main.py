"""``fluxwatch-serve``: run the service (scheduler + HTTP API + Kafka publisher)."""
from __future__ import annotations

import argparse
import logging
import sys

import astropy.units as u
import uvicorn

from common.config import PLACEHOLDER_UPLOAD_TOKEN, ServiceConfig
from serving.api import create_app
from serving.app import build
from serving.bundle import BundleError

log = logging.getLogger(__name__)


def config_from_args(argv=None) -> ServiceConfig:
    d = ServiceConfig()
    p = argparse.ArgumentParser(prog="fluxwatch-serve", description=__doc__)
    p.add_argument("--data-dir", default=d.data_dir)
    p.add_argument("--bundle", default=d.bundle, help="model bundle directory (train-ensemble's bundle/)")
    p.add_argument("--source", choices=["synthetic", "watch", "jsoc"], default=d.source,
                   help="synthetic: the synthetic Sun; watch: files dropped into incoming/ or uploaded; "
                        "jsoc: JSOC's near-real-time series as well (needs --jsoc-email)")
    p.add_argument("--jsoc-series", default=d.jsoc_series, help="DRMS series polled by --source jsoc")
    p.add_argument("--jsoc-email", default=d.jsoc_email, help="e-mail address registered for JSOC exports")
    p.add_argument("--jsoc-url", default=d.jsoc_url, help="base URL of another DRMS server (default: JSOC)")
    p.add_argument("--speedup", type=float, default=d.speedup, help="clock acceleration (cadence / speedup per cycle)")
    p.add_argument("--synthetic-start", default=d.synthetic_start)
    p.add_argument("--kafka", dest="kafka_bootstrap", default=d.kafka_bootstrap, help="bootstrap servers; none = no Kafka")
    p.add_argument("--alerts-topic", default=d.alerts_topic, help="Kafka topic of the alert events")
    p.add_argument("--status-topic", default=d.status_topic, help="compacted Kafka topic of the patch statuses")
    p.add_argument("--host", dest="http_host", default=d.http_host)
    p.add_argument("--port", dest="http_port", type=int, default=d.http_port)
    p.add_argument("--upload-token", default=d.upload_token,
                   help="bearer token of POST /upload; the default placeholder is refused unless --host is loopback")
    p.add_argument("--lat-limit-deg", type=float, default=d.lat_limit.to_value(u.deg))
    p.add_argument("--tile-overlap-deg", type=float, default=d.tile_overlap.to_value(u.deg),
                   help="overlap of neighbouring tiles (7.5 = half a tile); overlapping alerts are merged")
    p.add_argument("--present-at-start", action=argparse.BooleanOptionalAction, default=d.present_at_start,
                   help="mark passages seen only from mid-passage whose first frame already scores above the threshold "
                        "(no alert until the score falls back; see serving.alerts)")
    a = p.parse_args(argv)
    return ServiceConfig(data_dir=a.data_dir, bundle=a.bundle, source=a.source, speedup=a.speedup,
                         synthetic_start=a.synthetic_start, kafka_bootstrap=a.kafka_bootstrap,
                         alerts_topic=a.alerts_topic, status_topic=a.status_topic, http_host=a.http_host,
                         http_port=a.http_port, upload_token=a.upload_token, lat_limit=a.lat_limit_deg * u.deg,
                         tile_overlap=a.tile_overlap_deg * u.deg, present_at_start=a.present_at_start,
                         jsoc_series=a.jsoc_series, jsoc_email=a.jsoc_email, jsoc_url=a.jsoc_url)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # skipped runs while a long cycle finishes are expected
    logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python logs every connection at INFO
    config = config_from_args(argv)
    if config.upload_token == PLACEHOLDER_UPLOAD_TOKEN and not config.loopback_only:
        print(f"fluxwatch-serve: error: --host {config.http_host} listens beyond this machine, and the upload token is "
              f"the placeholder {PLACEHOLDER_UPLOAD_TOKEN!r} that anyone can read in the source: give --upload-token "
              "a secret, or listen on 127.0.0.1", file=sys.stderr)
        return 2
    try:
        app = build(config)
    except BundleError as exc:
        print(f"fluxwatch-serve: error: {exc}", file=sys.stderr)
        return 2
    app.start()
    try:
        uvicorn.run(create_app(app.service), host=config.http_host, port=config.http_port, log_level="warning")
    finally:
        app.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
