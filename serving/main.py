"""``fluxwatch-serve``: run the service (scheduler + HTTP API + Kafka publisher).

Settings come from the flags, then the environment (``FLUXWATCH_<FIELD>``), then ``--config FILE`` (TOML), then
the defaults (:class:`common.config.ServiceConfig`); a flag not given leaves the setting to the others.
"""
from __future__ import annotations

import signal
import sys

import uvicorn

from common.config import PLACEHOLDER_UPLOAD_TOKEN, ConfigError
from serving.api import create_app
from serving.app import build
from serving.bundle import BundleError
from serving.cli import configured
from serving.store import StateError


def _terminated(signum, frame) -> None:
    raise SystemExit(0)


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
    except (BundleError, StateError, ConfigError) as exc:
        print(f"fluxwatch-serve: error: {exc}", file=sys.stderr)
        return 2
    # uvicorn stops serving on SIGTERM, stops the app (the lifespan: the scheduler, the watcher and the publisher, in
    # order), then raises the signal again: exit 0 (a stop asked for is not a failure).
    signal.signal(signal.SIGTERM, _terminated)
    uvicorn.run(create_app(app.service, app), host=config.http_host, port=config.http_port, log_level="warning",
                log_config=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
