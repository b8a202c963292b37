"""The review desk: a FastAPI app of server-rendered pages and one small script (``static/desk.js``), no build step.

Pages: ``/`` (who you are, the queues and their progress, the blind-review setting), ``/queue/{queue}`` (the next
item for you), ``/item/{seq}`` (the video playing with its scrubber, the flux curve, the place on the disk; the
current label, the model's probability and its masking curve only with the setting on), ``/agreement``; JSON:
``/api/agreement``, ``/api/progress``. Decisions are form posts (``/item/{seq}/decide``, ``/undo``) that the
keyboard drives: ``e`` emergence / confirm, ``n`` non-emergence / reject, ``u`` unsure, ``z`` or Backspace undo,
``j`` or → next, space play / pause, ``,`` ``.`` step a frame.

The reviewer's name (asked once, kept in a cookie) goes with every decision. Blind review is the default
(``show_model=False``); ``?show_model=1`` (kept in a cookie) or the server's setting shows the model side.
"""
from __future__ import annotations

import re
import socket
import threading
import time
from functools import lru_cache
from html import escape
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import numpy as np
import uvicorn
from astropy.time import Time
from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from common.clock import CADENCE_DAYS, slot_isot, slot_of_time
from common.figures import Sprite, sprite
from common.patches import flux_curves
from contract.events import AlertEvent
from ingest.dataset import DatasetStore
from review import media
from review.decisions import Answer, Decisions, Item
from review.vetting import ALERTS_QUEUE, AlertSource, ServiceError, snapshot
from review.web import TRAINING_QUEUE

STATIC = Path(__file__).parent / "static"
NAME = re.compile(r"^[\w .@-]{1,40}$")
WORDS = {  # what the three answers are called in each queue
    TRAINING_QUEUE: {1: "emergence", 0: "non-emergence", -1: "unsure"},
    ALERTS_QUEUE: {1: "confirm", 0: "reject", -1: "unsure"},
}


def _page(title: str, body: str, reviewer: str | None = None) -> HTMLResponse:
    who = (f'<span id="reviewer">reviewer: <b>{escape(reviewer)}</b></span> · <a href="/?change=1">change</a>'
           if reviewer else "")
    return HTMLResponse(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)} · fluxwatch review</title>
<link rel="stylesheet" href="/static/desk.css"></head>
<body><header><a href="/"><b>fluxwatch review desk</b></a> · <a href="/agreement">agreement</a> <span class="who">{who}</span></header>
<main>{body}</main><script src="/static/desk.js"></script></body></html>""")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "an estimate after your first decisions"
    if seconds < 90:
        return f"about {seconds:.0f} s left"
    if seconds < 5400:
        return f"about {seconds / 60:.0f} min left"
    return f"about {seconds / 3600:.1f} h left"


def _number(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


class _Media:
    """An item's video, place and model curve, and the figures drawn from them (cached per item and snapshot)."""

    def __init__(self, decisions: Decisions):
        self.decisions = decisions
        self.folder = decisions.path.parent
        self._store: DatasetStore | None = None
        self._lock = threading.Lock()
        self.figures = lru_cache(maxsize=64)(self._figures)

    def store(self) -> DatasetStore:
        path = self.decisions.meta("store")
        if path is None:
            raise HTTPException(409, f"{self.decisions.path}: the desk does not know the run's dataset store yet")
        with self._lock:
            if self._store is None or str(self._store.path) != path:
                self._store = DatasetStore(path)
            return self._store

    def version(self, item: Item) -> float:
        """Changes when the item's video changes (an alert's snapshot is refreshed until it is decided)."""
        path = self.folder / "alerts" / f"{item.seq}.npy"
        return path.stat().st_mtime if item.queue == ALERTS_QUEUE and path.exists() else 0.0

    def source(self, item: Item) -> tuple[np.ndarray, float, float, int, np.ndarray | None, float | None]:
        """(video (n_frames, px, px) G, Carrington lon, lat (deg), start slot, masking curve (n_frames,) or None,
        threshold or None) of an item."""
        if item.queue == ALERTS_QUEUE:
            alert = AlertEvent.model_validate(item.info["alert"])
            try:
                video = snapshot(self.folder, item.seq)
            except FileNotFoundError as exc:
                raise HTTPException(404, str(exc)) from None
            masking = None
            if item.info.get("masking"):
                curve = np.array([np.nan if p is None else p for p in item.info["masking"]], dtype=float)
                masking = np.full(len(video), np.nan)
                masking[:min(len(curve), len(video))] = curve[:len(video)]
            place = alert.patch.carrington
            return video, place.lon, place.lat, int(slot_of_time(Time(alert.passage_start))), masking, alert.threshold
        store = self.store()
        vid = int(item.info["video_id"])
        row = store.catalog.set_index("video_id").loc[vid]
        return store.video(vid), float(row.lon), float(row.lat), int(row.start_slot), None, None

    def _figures(self, seq: int, version: float, with_model: bool) -> tuple[Sprite, media.Curves, bytes, int]:
        item = self.decisions.item(seq)
        if item is None:
            raise HTTPException(404, f"no review item {seq}")
        video, lon, lat, start, masking, threshold = self.source(item)
        curves = media.curves_figure(flux_curves(video, lat), masking if with_model else None, threshold)
        disk = media.disk_figure(lon, lat, media.frame_times(start, len(video)))
        return sprite(video), curves, disk, start


class _NoReviewer(Exception):
    """The request has no reviewer's name (cookie)."""


def reviewer_of(request: Request) -> str | None:
    """The reviewer's name of the request's cookie, None when there is none or it is not a name."""
    name = request.cookies.get("reviewer")
    return name if name and NAME.match(name) else None


def _reviewer_required(request: Request) -> str:
    name = reviewer_of(request)
    if name is None:
        raise _NoReviewer
    return name


#: A route's reviewer: pages without one go to the name form first, decisions are refused (401).
Reviewer = Annotated[str, Depends(_reviewer_required)]


def create_app(decisions: Decisions, show_model: bool = False, alerts: AlertSource | None = None, fps: float = 8.0) -> FastAPI:
    """The desk over ``decisions``; ``show_model`` the default of the setting; ``alerts`` the live alerts to vet
    (synced on page loads); ``fps`` the playback rate (frames per second)."""
    app = FastAPI(title="fluxwatch review desk", description=__doc__)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    figures = _Media(decisions)

    def model_shown(request: Request) -> bool:
        value = request.query_params.get("show_model", request.cookies.get("show_model"))
        return show_model if value is None else value == "1"

    def keep_setting(request: Request, response: Response) -> Response:
        if "show_model" in request.query_params:
            response.set_cookie("show_model", "1" if request.query_params["show_model"] == "1" else "0", samesite="lax")
        return response

    def item_or_404(seq: int) -> Item:
        item = decisions.item(seq)
        if item is None:
            raise HTTPException(404, f"no review item {seq}")
        return item

    def sync_alerts() -> str:
        if alerts is None:
            return ""
        try:
            alerts.maybe_sync()
        except ServiceError as exc:
            return f'<p class="error">could not read the alerts: {escape(str(exc))}</p>'
        return ""

    @app.exception_handler(_NoReviewer)
    def need_name(request: Request, exc: _NoReviewer) -> Response:
        """A page asks who you are first, then comes back; a decision without a name is refused."""
        if request.method == "GET":
            return RedirectResponse(f"/?next={quote(str(request.url.path))}", status_code=303)
        return JSONResponse({"detail": "tell the desk who you are first (/)"}, status_code=401)

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request, next: str = "/", change: int = 0) -> Response:
        """Who you are; every queue with its progress; the setting."""
        reviewer = None if change else reviewer_of(request)
        if reviewer is None:
            form = f"""<h1>Who is reviewing?</h1><form method="post" action="/reviewer">
<input type="hidden" name="next" value="{escape(next)}">
<label>Your name <input id="name" name="name" autofocus required pattern="[\\w .@\\-]{{1,40}}"></label>
<button id="start" type="submit">start</button></form>
<p>Your name goes with every decision you make (two reviewers who disagree on an item send it to a third).</p>"""
            return _page("who", form)
        note = sync_alerts()
        rows = []
        for queue in decisions.queues():
            p = decisions.progress(queue, reviewer)
            rows.append(f'<tr><td><a href="/queue/{queue}">{queue}</a></td><td>{p.done} / {p.total}</td><td>{p.left}</td>'
                        f"<td>{p.for_others}</td><td>{_duration(p.eta_s)}</td></tr>")
        shown = model_shown(request)
        table = ("<table><tr><th>queue</th><th>decided</th><th>open</th><th>waiting for another reviewer</th><th>time left</th></tr>"
                 + "".join(rows) + "</table>") if rows else \
            "<p>Nothing to review yet: a queue fills when the relabel loop asks, or when the service has alerts.</p>"
        setting = (f'<p>Blind review: the current label and the model\'s probability are <b>{"shown" if shown else "hidden"}</b>. '
                   f'<a id="toggle-model" href="/?show_model={0 if shown else 1}">{"hide" if shown else "show"} them</a></p>')
        return keep_setting(request, _page("queues", f"<h1>Queues</h1>{note}{table}{setting}", reviewer))

    @app.post("/reviewer")
    def set_reviewer(name: str = Form(...), next: str = Form("/")) -> Response:
        """Remember the reviewer's name (cookie)."""
        name = name.strip()
        if not NAME.match(name):
            raise HTTPException(422, f"reviewer name {name!r}: use 1-40 letters, digits, spaces or . @ - _")
        response = RedirectResponse(next if next.startswith("/") else "/", status_code=303)
        response.set_cookie("reviewer", name, max_age=365 * 86400, samesite="lax")
        return response

    @app.get("/queue/{queue}", response_class=HTMLResponse)
    def queue_next(queue: str, reviewer: Reviewer) -> Response:
        """The next item of ``queue`` for you, or a page saying the queue is done for you."""
        note = sync_alerts() if queue == ALERTS_QUEUE else ""
        seq = decisions.next_for(reviewer, queue)
        if seq is not None:
            return RedirectResponse(f"/item/{seq}", status_code=303)
        p = decisions.progress(queue, reviewer)
        waiting = f" {p.for_others} wait for another reviewer." if p.for_others else ""
        return _page("done", f'{note}<h1 id="queue-done">Nothing left for you in {escape(queue)}</h1>'
                     f"<p>{p.done} of {p.total} decided.{waiting}</p>", reviewer)

    @app.get("/item/{seq}", response_class=HTMLResponse)
    def item_page(request: Request, seq: int, reviewer: Reviewer) -> Response:
        """One item: the video playing, its scrubber, the flux curve, the disk; the answer buttons and keys."""
        item = item_or_404(seq)
        shown = model_shown(request)
        sprite, curves, _, start = figures.figures(seq, figures.version(item), shown)
        words = WORDS.get(item.queue, WORDS[TRAINING_QUEUE])
        p = decisions.progress(item.queue, reviewer)
        mine = decisions.votes(item.queue)[seq].get(reviewer)
        yours = f'<p id="yours">your answer so far: <b>{words[mine]}</b></p>' if mine is not None else ""
        if item.queue == ALERTS_QUEUE:
            alert = AlertEvent.model_validate(item.info["alert"])
            title = f"alert {escape(alert.alert_id)}"
            model = (f'<p id="model">model: alert {escape(alert.event)}, probability {alert.probability.median:.2f} '
                     f'(threshold {alert.threshold:.2f}), onset frame {alert.onset.frame}</p>')
        else:
            title = f"video {item.info['video_id']}"
            label = "emergence" if item.label == 1 else "non-emergence"
            model = f'<p id="model">current label: <b>{label}</b>; model probability {item.probability:.2f}</p>'
        model = model if shown else '<p class="blind">blind review: label and model hidden</p>'
        version = figures.version(item)
        buttons = "".join(
            f'<button id="answer-{name}" type="submit" name="answer" value="{value}" data-key="{key}">{words[value]} ({key})</button>'
            for name, value, key in (("emergence", 1, "e"), ("non-emergence", 0, "n"), ("unsure", -1, "u")))
        body = f"""<h1>{title} <small>({escape(item.queue)})</small></h1>
<p id="progress">{p.done} / {p.total} decided · {p.left} open · {_duration(p.eta_s)}</p>
<div class="desk">
<section class="player">
<canvas id="video" width="360" height="360" data-sprite="/media/{seq}/sprite.png?v={version}&amp;m={int(shown)}"
  data-columns="{sprite.columns}" data-frames="{sprite.frames}" data-pixels="{sprite.pixels}" data-fps="{fps}"
  data-start="{slot_isot(start)}" data-cadence-min="{CADENCE_DAYS * 1440:g}"></canvas>
<div class="controls"><button id="play" type="button">pause</button>
<input id="scrubber" type="range" min="0" max="{sprite.frames - 1}" value="0" step="1">
frame <span id="frame-index">0</span> / {sprite.frames - 1} · <span id="frame-time"></span></div>
<form id="decide" method="post" action="/item/{seq}/decide">{buttons}</form>
<form id="undo-form" method="post" action="/undo"><input type="hidden" name="queue" value="{escape(item.queue)}">
<button id="undo" type="submit">undo my last (z)</button> <a id="next" href="/item/{seq}/next">next (j / →)</a></form>
{yours}{model}
<p class="keys">keys: e {words[1]} · n {words[0]} · u unsure · z undo · j next · space play/pause · , . step</p>
</section>
<section class="figures">
<div class="curves"><img id="curves" src="/media/{seq}/curves.png?v={version}&amp;m={int(shown)}" alt="flux over time">
<div id="cursor" data-x0="{curves.x0:.4f}" data-x1="{curves.x1:.4f}"></div></div>
<img id="disk" src="/media/{seq}/disk.png?v={version}" alt="the patch on the disk">
</section></div>"""
        return keep_setting(request, _page(title, body, reviewer))

    @app.post("/item/{seq}/decide")
    def decide(seq: int, reviewer: Reviewer, answer: int = Form(...)) -> Response:
        """Record your answer (1, 0 or -1) and go to your next item."""
        item = item_or_404(seq)
        if answer not in (-1, 0, 1):
            raise HTTPException(422, f"answer {answer}: must be 1 (emergence), 0 (non-emergence) or -1 (unsure)")
        decisions.decide(seq, reviewer, Answer(answer))
        following = decisions.next_for(reviewer, item.queue, after=seq)
        return RedirectResponse(f"/item/{following}" if following is not None else f"/queue/{item.queue}", status_code=303)

    @app.get("/item/{seq}/next")
    def skip(seq: int, reviewer: Reviewer) -> Response:
        """Leave this item for later and show the next one."""
        item = item_or_404(seq)
        following = decisions.next_for(reviewer, item.queue, after=seq)
        return RedirectResponse(f"/item/{following}" if following is not None else f"/queue/{item.queue}", status_code=303)

    @app.post("/undo")
    def undo(reviewer: Reviewer, queue: str = Form(...)) -> Response:
        """Withdraw your latest decision in ``queue`` and show its item again."""
        seq = decisions.undo(reviewer, queue)
        return RedirectResponse(f"/item/{seq}" if seq is not None else f"/queue/{queue}", status_code=303)

    @app.get("/media/{seq}/{name}.png")
    def figure(seq: int, name: str, m: int = 0) -> Response:
        """``sprite`` (every frame, tiled), ``curves`` (flux; the masking curve when ``m=1``) or ``disk``."""
        item = item_or_404(seq)
        sprite, curves, disk, _ = figures.figures(seq, figures.version(item), bool(m))
        pngs = {"sprite": sprite.png, "curves": curves.png, "disk": disk}
        if name not in pngs:
            raise HTTPException(404, f"no figure {name!r} (sprite, curves or disk)")
        return Response(pngs[name], media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/agreement")
    def agreement_json() -> dict:
        """Agreement between reviewers per queue (:meth:`review.decisions.Decisions.agreement`)."""
        return {queue: decisions.agreement(queue) for queue in decisions.queues()}

    @app.get("/api/progress")
    def progress_json(request: Request) -> dict:
        """Each queue's progress for the reviewer of the cookie (or for nobody in particular)."""
        reviewer = reviewer_of(request) or ""
        return {queue: decisions.progress(queue, reviewer).__dict__ for queue in decisions.queues()}

    @app.get("/agreement", response_class=HTMLResponse)
    def agreement_page(request: Request) -> Response:
        """Agreement between reviewers, per queue."""
        parts = []
        for queue, a in agreement_json().items():
            frac = "–" if a["fraction_agreeing"] is None else f"{a['fraction_agreeing']:.0%}"
            pairs = "".join(
                f"<tr><td>{escape(p['reviewers'][0])} · {escape(p['reviewers'][1])}</td><td>{p['items']}</td>"
                f"<td>{p['fraction_agreeing']:.0%}</td><td>{_number(p['cohen_kappa'])}</td></tr>" for p in a["pairs"])
            people = ", ".join(f"{escape(r)} ({c['decisive']} decisive, {c['unsure']} unsure)" for r, c in a["reviewers"].items())
            parts.append(f"<h2>{escape(queue)}</h2><p>{a['items']} items with two or more decisive answers; "
                         f'<span class="agree">{frac}</span> unanimous.</p><p>reviewers: {people or "none yet"}</p>'
                         "<table><tr><th>pair</th><th>items both answered</th><th>agreeing</th><th>Cohen's κ</th></tr>"
                         f"{pairs}</table>")
        body = "<h1>Agreement between reviewers</h1>" + ("".join(parts) or "<p>No decisions yet.</p>")
        body += '<p><a href="/api/agreement">as JSON</a></p>'
        return _page("agreement", body, reviewer_of(request))

    return app


class DeskServer:
    """The desk served by uvicorn in a daemon thread (``train-ensemble --reviewer web``; the tests' restarts)."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 8765):
        self.host, self.port = host, port
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self, timeout_s: float = 20.0) -> DeskServer:
        """Start serving; raises RuntimeError naming the address if it cannot listen there."""
        # Bind here, not in uvicorn's thread, so a port in use is an error for the caller.
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise RuntimeError(f"the review desk could not listen on {self.host}:{self.port} ({exc.strerror})") from None
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, name="review-desk", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the review desk did not start on {self.host}:{self.port}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(10)
