"""A stand-in for JSOC's DRMS web API on loopback, for the JSOC source's tests (JSOC cannot be reached from here).

It answers the three requests ``drms`` makes for the source, with the response
shapes JSOC documents (http://jsoc.stanford.edu/jsocwiki/AjaxJsocConnect):

* ``checkAddress.sh?address=…&checkonly=1`` → ``{"status": 2}`` for a registered address (4 otherwise);
* ``jsoc_info?op=rs_list&ds=<series>[<T_REC>/<minutes>m(@<step>m)]&key=T_REC,QUALITY`` → ``{"status": 0, "count": n,
  "keywords": [{"name": "T_REC", "values": […]}, {"name": "QUALITY", "values": […]}]}``;
* ``jsoc_fetch?op=exp_request&ds=<series>[<T_REC>]{magnetogram}&method=url_quick&protocol=as-is…`` (one
  record, or a record set as ``jsoc_info`` takes it) → ``{"status": 0, "method": "url_quick", "protocol": "as-is",
  "dir": null, "count": n, "data": [{"record": "<series>[<T_REC>]{magnetogram}", "filename": "/SUM…/magnetogram.fits"},
  …]}``;

and serves the files under ``/SUM…``. ``fail_next`` makes the next requests answer HTTP 500; ``requests``
counts what was asked, by CGI name.
"""
from __future__ import annotations

import json
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import astropy.units as u
from astropy.io import fits
from astropy.time import Time

_WINDOW = re.compile(r"^(?P<series>[\w.]+)\[(?P<start>[\d._:]+)_TAI/(?P<minutes>\d+)m(@(?P<step>\d+)m)?\]$")
_RECORD = re.compile(r"^(?P<series>[\w.]+)\[(?P<t_rec>[\d._:]+_TAI)\]\{(?P<segment>\w+)\}$")


def _tai(t_rec: str) -> Time:
    date, clock = t_rec.removesuffix("_TAI").split("_")
    return Time(date.replace(".", "-") + "T" + clock, scale="tai")


class DrmsStandIn:
    """``with DrmsStandIn(series, registered) as server:`` … ``server.url``; ``server.add(path)`` publishes a record."""

    def __init__(self, series: str, registered: set[str]):
        self.series, self.registered = series, registered
        self.records: dict[str, tuple[str, Path]] = {}  # T_REC → (QUALITY, file)
        self.requests: Counter[str] = Counter()
        self.fail_next = 0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                stand_in._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> DrmsStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(self, path: Path) -> str:
        """Publish an HMI file as a record of the series; returns its T_REC."""
        header = fits.getheader(path, 1)
        self.records[header["T_REC"]] = (f"0x{int(header['QUALITY']):08x}", path)
        return header["T_REC"]

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlparse(h.path)
        name = url.path.rsplit("/", 1)[-1]
        self.requests[name] += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            return self._send(h, 500, b"Internal Server Error", "text/plain")
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if name == "checkAddress.sh":
            registered = q.get("address", "").replace("%40", "@") in self.registered
            return self._json(h, {"status": 2 if registered else 4, "msg": "registered" if registered else "unknown"})
        if name == "jsoc_info" and q.get("op") == "rs_list":
            chosen = self._record_set(q.get("ds", ""))
            if chosen is None:
                return self._json(h, {"status": 1, "error": f"bad record set {q.get('ds')!r}"})
            return self._json(h, {"status": 0, "count": len(chosen), "keywords": [
                {"name": "T_REC", "values": chosen}, {"name": "QUALITY", "values": [self.records[t][0] for t in chosen]}]})
        if name == "jsoc_fetch" and q.get("op") == "exp_request":
            ds, _, segment = q.get("ds", "").rstrip("}").partition("{")
            m = _RECORD.match(q.get("ds", ""))
            chosen = [m["t_rec"]] if m and m["t_rec"] in self.records else self._record_set(ds)
            if not chosen or not segment or q.get("notify") not in self.registered:
                return self._json(h, {"status": 4, "error": f"cannot export {q.get('ds')!r} for {q.get('notify')!r}"})
            files = [{"record": f"{self.series}[{t}]{{{segment}}}",
                      "filename": f"/SUM1/D{sorted(self.records).index(t)}/S00000/{segment}.fits"} for t in chosen]
            return self._json(h, {"status": 0, "requestid": None, "method": q.get("method"), "protocol": q.get("protocol"),
                                  "dir": None, "wait": 0, "count": len(files), "size": len(files), "data": files})
        if url.path.startswith("/SUM1/D"):
            index = int(url.path.split("/")[2][1:])
            return self._send(h, 200, self.records[sorted(self.records)[index]][1].read_bytes(), "application/fits")
        return self._send(h, 404, b"not found", "text/plain")

    def _record_set(self, ds: str) -> list[str] | None:
        """The T_RECs of a record set ``series[<start>_TAI/<minutes>m(@<step>m)]`` (None if it is not one): those in
        the window, the first of each step when a step is given."""
        m = _WINDOW.match(ds)
        if not m or m["series"] != self.series:
            return None
        start = _tai(m["start"] + "_TAI")
        end = start + int(m["minutes"]) * u.min
        chosen = sorted(t for t in self.records if start <= _tai(t) < end)
        if m["step"]:
            firsts: dict[int, str] = {}
            for t in chosen:
                firsts.setdefault(round((_tai(t) - start).to_value(u.s)) // (60 * int(m["step"])), t)
            chosen = sorted(firsts.values())
        return chosen

    def _json(self, h, body: dict) -> None:
        self._send(h, 200, json.dumps(body).encode("latin1"), "application/json")

    @staticmethod
    def _send(h, status: int, body: bytes, kind: str) -> None:
        h.send_response(status)
        h.send_header("Content-Type", kind)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
