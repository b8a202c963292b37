"""The forecaster's live page under load: the disk page's time to first paint while the service ingests, and
``--clients`` push connections (``GET /events/stream``) held through ``--minutes`` of the accelerated synthetic
feed, each checked to receive every alert event once, in order.

The service runs as :mod:`bench.soak` runs it (``python -m serving.main`` on the synthetic feed at ``--speedup``, a
fresh data directory, warm start off, no Kafka). Once it has scored its first frame, ``--clients`` threads open the
stream with ``Last-Event-ID: 0`` (every event from the first) and read it to the end; every ``--paint-every`` s a
headless Chromium loads ``/`` afresh and reads the page's first contentful paint from the browser's Performance API
(navigation start to first paint, so the server's answer, the picture and the drawing are all in it). At the end
the events each client received are compared with the service's own list (``GET /alerts``, every page).

Last line: ``paint_p50_ms=… paint_p95_ms=… paints=… clients=… frames=… events=… lost=… duplicated=… out_of_order=…``
(lost, duplicated and out of order: summed over clients; all three must be 0).

Usage: python -m bench.live [--minutes 60] [--clients 50] [--speedup 1920] [--paint-every 10] [--out data/bench-live]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from bench.soak import ServiceProcess, retention_settings
from common.config import DEFAULT_BUNDLE


class Client(threading.Thread):
    """One push connection, from the first event, until ``stop`` is set: the alert events' ids and the frames'
    slots it received, in order."""

    def __init__(self, url: str, stop: threading.Event):
        super().__init__(daemon=True)
        self.url, self.stop = url, stop
        self.alerts: list[str] = []
        self.frames: list[int] = []
        self.error: str | None = None

    def run(self) -> None:
        try:
            with httpx.stream("GET", self.url + "/events/stream", headers={"Last-Event-ID": "0"},
                              timeout=httpx.Timeout(30.0, read=60.0)) as response:
                fields: dict[str, str] = {}
                for line in response.iter_lines():
                    if line == "":
                        if fields.get("event") == "alert":
                            self.alerts.append(json.loads(fields["data"])["event_id"])
                        elif fields.get("event") == "frame":
                            self.frames.append(json.loads(fields["data"])["slot"])
                        fields = {}
                        if self.stop.is_set():
                            return
                    elif not line.startswith(":"):
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
                    elif self.stop.is_set():
                        return
        except httpx.HTTPError as exc:
            self.error = repr(exc)


def published(url: str) -> list[str]:
    """Every event id the service published, in publication order (``GET /alerts``, page by page)."""
    out, cursor = [], None
    while True:
        page = httpx.get(url + "/alerts", params={"limit": 1000, **({"cursor": cursor} if cursor else {})}, timeout=60).json()
        out += [e["event_id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return out


def browser():
    """Headless Chromium through Selenium (Debian's chromium and chromium-driver, as the tests use)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=options)


def first_paint_ms(driver, url: str) -> float | None:
    driver.get(url)
    for _ in range(50):
        paint = driver.execute_script("const p = performance.getEntriesByType('paint')"
                                      ".find(e => e.name === 'first-contentful-paint'); return p ? p.startTime : null;")
        if paint is not None:
            return float(paint)
        time.sleep(0.1)
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=60.0, help="wall minutes the connections are held")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--speedup", type=float, default=1920.0, help="clock acceleration: one 96-min slot per 3 s")
    p.add_argument("--paint-every", type=float, default=10.0, help="seconds between page loads")
    p.add_argument("--bundle", type=Path, default=Path(DEFAULT_BUNDLE))
    p.add_argument("--out", type=Path, default=Path("data/bench-live"))
    args = p.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    service = ServiceProcess(args.out / "service", args.bundle, args.speedup, retention_settings(args.speedup, {}), None,
                             args.out / "service.log").start()
    stop = threading.Event()
    clients: list[Client] = []
    paints: list[float] = []
    try:
        while httpx.get(service.url + "/ready", timeout=5).status_code != 200:  # a frame is scored: the page has a disk
            service.check()
            time.sleep(0.5)
        clients = [Client(service.url, stop) for _ in range(args.clients)]
        for c in clients:
            c.start()
        driver = browser()
        try:
            end = time.monotonic() + args.minutes * 60
            while time.monotonic() < end:
                service.check()
                t0 = time.monotonic()
                ms = first_paint_ms(driver, service.url + "/")
                if ms is not None:
                    paints.append(ms)
                print(f"\r{len(paints)} page loads, last first paint {ms} ms; "
                      f"{min(len(c.frames) for c in clients)} frames pushed", end="", flush=True)
                time.sleep(max(0.0, args.paint_every - (time.monotonic() - t0)))
        finally:
            driver.quit()
        time.sleep(5)  # the last frame's events reach every client
        ids = published(service.url)
    finally:
        stop.set()
        service.stop()
        for c in clients:
            c.join(70)
    print()
    order = {event_id: k for k, event_id in enumerate(ids)}
    lost = duplicated = out_of_order = 0
    for c in clients:
        got = c.alerts
        lost += len(set(ids) - set(got))
        duplicated += len(got) - len(set(got))
        places = [order[e] for e in got if e in order]  # events after the final list was read come last: not judged
        out_of_order += sum(1 for a, b in zip(places, places[1:]) if b <= a)
        if c.error:
            print(f"a client ended early: {c.error}")
    frames = max((len(c.frames) for c in clients), default=0)
    p50, p95 = (np.percentile(paints, [50, 95]) if paints else (float("nan"), float("nan")))
    print(f"{len(paints)} page loads while the service ingested; {args.clients} clients held {args.minutes:g} min "
          f"through {frames} frames and {len(ids)} events")
    print(f"paint_p50_ms={p50:.0f} paint_p95_ms={p95:.0f} paints={len(paints)} clients={args.clients} frames={frames} "
          f"events={len(ids)} lost={lost} duplicated={duplicated} out_of_order={out_of_order}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
