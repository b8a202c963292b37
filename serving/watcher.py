"""Prompt ingest: a file appearing in ``incoming/`` is taken at once, not at the next cadence.

A file-system watcher (watchfiles: inotify on Linux) wakes the service when a
FITS file is added to ``incoming/`` (feeds and uploads rename files into
place, so an added file is complete). The cadence job stays as a sweep.
"""
from __future__ import annotations

import logging
import threading
import time

from watchfiles import Change, watch

from serving.service import Service

log = logging.getLogger(__name__)


def _added_fits(change: Change, path: str) -> bool:
    return change == Change.added and path.lower().endswith(".fits")


class IncomingWatcher:
    """Runs :meth:`Service.run_cycle` (with the wall clock) whenever FITS files are added to ``incoming/``."""

    def __init__(self, service: Service):
        self.service = service
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="incoming-watcher", daemon=True)

    def start(self) -> IncomingWatcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        for _ in watch(self.service.inbox.incoming, watch_filter=_added_fits, stop_event=self._stop, debounce=200,
                       step=50, raise_interrupt=False):
            try:
                self.service.run_cycle(now=time.time())
            except Exception:  # keep watching: the sweep and the next file retry
                log.exception("prompt ingest failed")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
