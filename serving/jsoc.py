"""The JSOC near-real-time source: new records of an HMI line-of-sight series, fetched into ``incoming/``.

Each poll asks JSOC (through ``drms``, the JSOC client) for the records of
the configured series over the last ``jsoc_lookback`` (``T_REC`` and
``QUALITY``) and, when a record is new, one ``url_quick``/``as-is`` export of
the record set's magnetogram segment (immediate URLs of the stored files; the
warm start's 15 days at 96-min cadence are one export too; JSOC requires an
e-mail address registered at
http://jsoc.stanford.edu/ajax/register_email.html for exports). Each record
not fetched before is downloaded to a temporary name and renamed into ``incoming/``, where the
service takes it at once (:mod:`serving.watcher`); slot selection keeps the
best of a slot's eight 12-min records. The ``T_REC``s fetched are kept in
``jsoc_state.json`` so that a restart fetches nothing twice. A failed poll
backs off exponentially (``jsoc_poll`` × 2ⁿ, at most ``jsoc_max_backoff``);
the source's state is in the metrics (``fluxwatch_source_*``) and ``/ready``.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
from astropy.time import Time

from common.clock import CADENCE
from serving.metrics import Metrics
from serving.store import StateError

log = logging.getLogger(__name__)

#: The T_REC in an exported record's name, ``hmi.M_720s_nrt[2026.11.27_00:00:00_TAI][2]{magnetogram}``.
_T_REC = re.compile(r"\[(\d{4}\.\d\d\.\d\d_\d\d:\d\d:\d\d(?:\.\d+)?_TAI)\]")
#: Consecutive failed polls after which the service reports itself not ready.
UNREADY_AFTER_ERRORS = 3


def _tai(t: Time) -> str:
    """A time as DRMS writes a T_REC, floored to the TAI minute (records fall on whole TAI minutes, slots on UTC
    ones): ``2026.12.05_00:00:00_TAI``."""
    return t.tai.strftime("%Y.%m.%d_%H:%M:00_TAI")


@dataclass
class SourceState:
    """What the source has done: shown by ``/ready`` and the metrics."""

    name: str
    fetched: int = 0
    consecutive_errors: int = 0
    last_error: str | None = None
    last_success: float | None = None  # Unix seconds
    next_poll: float = 0.0  # Unix seconds; later than now while backing off

    @property
    def healthy(self) -> bool:
        return self.consecutive_errors < UNREADY_AFTER_ERRORS

    def as_dict(self) -> dict:
        return {"name": self.name, "healthy": self.healthy, "fetched": self.fetched,
                "consecutive_errors": self.consecutive_errors, "last_error": self.last_error,
                "last_success": Time(self.last_success, format="unix").isot if self.last_success else None}


@dataclass
class JsocSource:
    """Polls a JSOC series and downloads new records into ``incoming``.

    ``server_url`` is the base URL of a DRMS server that answers like JSOC
    (``<url>/cgi-bin/ajax/jsoc_info`` …, files under ``<url>/``); ``None`` is JSOC itself.
    """

    series: str
    email: str
    incoming: Path
    state_path: Path
    metrics: Metrics
    server_url: str | None = None
    segment: str = "magnetogram"
    lookback: u.Quantity = 6 * u.h
    poll: u.Quantity = 2 * u.min
    max_backoff: u.Quantity = 30 * u.min
    timeout_s: float = 60.0
    state: SourceState = field(init=False)
    _seen: dict[str, float] = field(init=False, default_factory=dict)  # T_REC → when fetched (Unix s)

    def __post_init__(self):
        self.state = SourceState(f"jsoc:{self.series}")
        if self.state_path.exists():
            try:
                self._seen = dict(json.loads(self.state_path.read_text()).get("fetched", {}))
            except (ValueError, AttributeError, TypeError) as exc:
                raise StateError(f"{self.state_path} is damaged ({exc!r}): delete it and the source fetches the "
                                 "series' recent records again (frames of slots already scored are set aside in "
                                 "superseded/)") from exc

    def _client(self):
        import drms

        if self.server_url is None:
            return drms.Client(email=self.email)
        base = self.server_url.rstrip("/")
        server = drms.ServerConfig(name="fluxwatch-drms", cgi_baseurl=f"{base}/cgi-bin/ajax/", cgi_jsoc_info="jsoc_info",
                                   cgi_jsoc_fetch="jsoc_fetch", cgi_check_address="checkAddress.sh",
                                   http_download_baseurl=f"{base}/")  # JSOC's CGI names (drms's "jsoc" config)
        return drms.Client(server=server, email=self.email)

    def tick(self, now: float | None = None) -> int:
        """Poll unless backing off; returns files fetched. Never raises: errors are counted and backed off."""
        now = time.time() if now is None else now
        if now < self.state.next_poll:
            return 0
        try:
            fetched = self.fetch_new(now)
        except Exception as exc:  # network, server or parse errors: back off and report
            s = self.state
            s.consecutive_errors += 1
            s.last_error = f"{type(exc).__name__}: {exc}"
            delay = min(self.poll.to_value(u.s) * 2 ** s.consecutive_errors, self.max_backoff.to_value(u.s))
            s.next_poll = now + delay
            self.metrics.source_errors.inc()
            self.metrics.source_consecutive_errors.set(s.consecutive_errors)
            log.warning("JSOC poll failed (%d in a row; next in %.0f s): %s", s.consecutive_errors, delay, s.last_error)
            return 0
        s = self.state
        s.consecutive_errors, s.last_error, s.last_success = 0, None, now
        s.next_poll = now + self.poll.to_value(u.s)
        self.metrics.source_consecutive_errors.set(0)
        self.metrics.source_last_success.set(now)
        return fetched

    def fetch_new(self, now: float) -> int:
        """Query the lookback window and fetch every record not fetched before; returns files fetched."""
        start = Time(now - self.lookback.to_value(u.s), format="unix")
        return sum(1 for _ in self._fetch(f"{self.series}[{_tai(start)}/{self.lookback.to_value(u.min):.0f}m]", now))

    def history(self, first: Time, end: Time) -> Iterator[Path]:
        """Fetch the series' records at 96-min cadence over [first, end) into ``incoming/`` (the warm start's
        archive); yields each file as it arrives."""
        minutes = (end - first).to_value(u.min)
        yield from self._fetch(f"{self.series}[{_tai(first)}/{minutes:.0f}m@{CADENCE.to_value(u.min):.0f}m]", time.time())

    def _fetch(self, query: str, now: float) -> Iterator[Path]:
        """Download every record of ``query`` not fetched before, oldest first, from one export of the record set
        (a warm start's 15 days at 96-min cadence are one request, not ~225)."""
        client = self._client()
        keys = client.query(query, key="T_REC,QUALITY", convert_numeric=False)
        new = sorted(t for t in keys.get("T_REC", []) if t not in self._seen)
        if not new:
            return
        export = client.export(f"{query}{{{self.segment}}}", method="url_quick", protocol="as-is")
        urls: dict[str, list[str]] = {}
        for record, url in zip(export.urls.record, export.urls.url):
            found = _T_REC.search(record)
            if found:
                urls.setdefault(found.group(1), []).append(url)
        for t_rec in new:
            if t_rec not in urls:
                log.warning("JSOC listed %s[%s] but its export holds no file for it: skipped", self.series, t_rec)
                continue
            for url in urls[t_rec]:
                path = self._download(url, t_rec)
                self.state.fetched += 1
                self.metrics.source_fetched.inc()
                yield path
            self._seen[t_rec] = now
            self._save(now)

    def _download(self, url: str, t_rec: str) -> Path:
        name = f"{self.series}.{t_rec.replace('.', '').replace(':', '').replace('_TAI', '')}.{self.segment}.fits"
        target = self.incoming / name
        tmp = self.incoming.parent / (name + ".part")
        with urllib.request.urlopen(url, timeout=self.timeout_s) as r, open(tmp, "wb") as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)
        os.replace(tmp, target)  # complete when it appears in incoming/
        return target

    def _save(self, now: float) -> None:
        keep = now - self.lookback.to_value(u.s) - 86400.0  # records older than the window can never come back
        self._seen = {k: v for k, v in self._seen.items() if v >= keep}
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        tmp.write_text(json.dumps({"series": self.series, "fetched": self._seen}))
        os.replace(tmp, self.state_path)
