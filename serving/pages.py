"""The forecaster's pages, drawn on the server: HTML with inline SVG, one stylesheet and one small script
(``static/live.css``, ``static/live.js``), nothing fetched from elsewhere.

* :func:`disk_body`: the disk at a frame (its view, :mod:`serving.diskview`), every patch shaded by its score, the
  open alerts boxed and labelled, the alerts ended or withdrawn in the day before marked apart;
* :func:`patch_body`: a patch's passage: its score curve (ensemble median, members' quartiles, threshold, onset and
  its uncertainty, the frames events came from), its frames to scrub through, its flux, its events.

Colours (``static/live.css``): viridis for scores and the Okabe–Ito set for alerts, both told apart with colour-blind vision; every
patch is a link, reached by keyboard as by mouse.
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape
from urllib.parse import urlencode

import numpy as np

from contract.events import AlertEvent, EventKind, PatchDetail
from serving.diskview import DiskView

#: viridis at scores 0, 0.1, ..., 1.
VIRIDIS = ("#440154", "#482475", "#414487", "#355f8d", "#2a788e", "#21918c", "#22a884", "#44bf70", "#7ad151", "#bddf26",
           "#fde725")


def score_colour(p: float) -> str:
    return VIRIDIS[int(round(min(max(p, 0.0), 1.0) * 10))]


@dataclass(frozen=True)
class Header:
    """What the header tells of the service: its state in words (ready, warming up, the source failing), the
    newest frame's age (s), whether it is the synthetic Sun's (its age then says nothing), and its lag: the frames
    received but not yet scored (being read, or waiting for their slot)."""

    state: str
    ready: bool
    age_s: float | None
    simulated: bool = False
    waiting: int = 0


def _age(header: Header) -> str:
    seconds = header.age_s
    if seconds is None:
        return "no frame yet"
    if header.simulated:
        return "from the synthetic Sun"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} d ago"


def _lag(header: Header) -> str:
    n = header.waiting
    return f" · {n} frame{'s' if n != 1 else ''} waiting" if n else ""


def page(title: str, header: Header, body: str, live: bool) -> str:
    """A whole page; ``live``: its script follows the push channel and redraws on each frame and event."""
    state = f'<span class="state {"ready" if header.ready else "waiting"}">{escape(header.state)}</span>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/live.css"></head>
<body data-live="{'1' if live else '0'}">
<header><a href="/" class="home">fluxwatch</a> {state}
<span id="age" class="age">newest frame {escape(_age(header))}{_lag(header)}</span>
<span id="connection" class="connection" role="status">{'connecting…' if live else 'not live'}</span></header>
<main>{body}</main>
<script src="/static/live.js"></script></body></html>"""


def _points(outline: list[list[float]]) -> str:
    return " ".join(f"{x:g},{y:g}" for x, y in outline)


def _label_at(outline: list[list[float]]) -> tuple[float, float]:
    """Where a mark's label goes: centred above the outline."""
    a = np.asarray(outline)
    return float(a[:, 0].mean()), float(a[:, 1].min()) - 4.0


def _event_row(e: AlertEvent, with_patch: bool) -> str:
    ids = escape(e.event_id, quote=True)
    query = escape(urlencode({"event_id": e.event_id}), quote=True)  # an event id holds '/' and '#'
    patch = f'<td><a href="/patch/{escape(e.patch_id)}">{escape(e.patch_id)}</a></td>' if with_patch else ""
    return (f'<tr class="event {e.event.value}" data-event-id="{ids}"><td>{escape(e.frame_time[:16])}</td>{patch}'
            f"<td>{e.event.value}{f' ({escape(e.reason.value)})' if e.reason else ''}</td>"
            f"<td>{e.probability.median:.2f}</td><td>{escape(e.onset.time_utc[:16])}</td>"
            f'<td><a href="/alerts/event?{query}">JSON</a> · '
            f'<a href="/alerts/voevent?{query}">VOEvent</a></td></tr>')


def events_table(events: list[AlertEvent], with_patch: bool, table_id: str = "events") -> str:
    """Events, newest first, with links to each one's JSON and VOEvent."""
    head = "<th>frame (UTC)</th>" + ("<th>patch</th>" if with_patch else "") + \
        "<th>event</th><th>median</th><th>onset (UTC)</th><th></th>"
    rows = "".join(_event_row(e, with_patch) for e in reversed(events))
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def alert_marks(events: list[AlertEvent], at_time: str) -> tuple[dict[str, AlertEvent], dict[str, AlertEvent]]:
    """From a frame's recent events, oldest first: (open alerts by patch: their latest event; alerts ended or
    withdrawn in the day before the frame, by patch: their last event). ``at_time`` is the frame's ISO time."""
    latest: dict[str, AlertEvent] = {}
    for e in events:
        latest[e.alert_id] = e
    day_before = (np.datetime64(at_time.rstrip("Z")) - np.timedelta64(1, "D")).astype(str)
    open_, ended = {}, {}
    for e in latest.values():
        if e.event in (EventKind.opened, EventKind.updated):
            open_[e.patch_id] = e
        elif e.frame_time.rstrip("Z") >= day_before:
            ended[e.patch_id] = e
    return open_, ended


def disk_svg(view: DiskView, scores: dict[str, tuple[float, str, float]], open_: dict[str, AlertEvent],
             ended: dict[str, AlertEvent], threshold: float) -> str:
    """The disk: the frame's picture within the limb, each patch outlined and shaded by its score, the alerts
    marked over them."""
    cx, cy = view.centre
    parts = [f'<svg id="disk-svg" viewBox="0 0 {view.size} {view.size}" role="img" '
             f'aria-label="the solar disk at {escape(view.frame_time)} with the patch grid and the alerts">'
             f'<defs><clipPath id="limb"><circle cx="{cx}" cy="{cy}" r="{view.radius}"/></clipPath></defs>'
             f'<rect width="{view.size}" height="{view.size}" class="sky"/>'
             f'<image href="/views/{view.slot}.png" width="{view.size}" height="{view.size}" clip-path="url(#limb)"/>']
    for pid, outline in sorted(view.outlines.items()):
        scored = scores.get(pid)
        fill = score_colour(scored[0]) if scored is not None else "none"
        kind = "open" if pid in open_ else (ended[pid].event.value if pid in ended else "")
        tip = (f"{pid}: score {scored[0]:.2f} (threshold {threshold:.2f}), onset {scored[1][:16]} ± {scored[2]:.0f} h"
               if scored is not None else f"{pid}: not scored at this frame")
        if kind:
            e = open_.get(pid) or ended[pid]
            tip += f"; alert {e.alert_id} {e.event.value}"
        parts.append(f'<a href="/patch/{escape(pid)}" class="patch {kind}" data-patch="{escape(pid)}" '
                     f'data-score="{"" if scored is None else f"{scored[0]:.3f}"}" aria-label="{escape(tip, quote=True)}">'
                     f'<title>{escape(tip)}</title>'
                     f'<polygon points="{_points(outline)}" fill="{fill}"/></a>')
    for marks in (ended, open_):
        for pid, e in sorted(marks.items()):
            if pid not in view.outlines:
                continue
            x, y = _label_at(view.outlines[pid])
            kind = "open" if marks is open_ else e.event.value
            parts.append(f'<g class="mark {kind}" data-patch="{escape(pid)}"><polygon points="{_points(view.outlines[pid])}"/>'
                         f'<text x="{x:.1f}" y="{y:.1f}">{escape(pid)} {e.probability.median:.2f}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def legend(threshold: float) -> str:
    steps = "".join(f'<span class="swatch" style="background:{c}" title="{i / 10:.1f}"></span>' for i, c in enumerate(VIRIDIS))
    return (f'<div class="legend"><div>score 0 {steps} 1 (alert at {threshold:.2f})</div>'
            f'<div><span class="key open"></span>open alert <span class="key ended"></span>closed in the last day '
            f'<span class="key withdrawn"></span>withdrawn in the last day</div></div>')


def disk_body(view: DiskView, scores, open_: dict[str, AlertEvent], ended: dict[str, AlertEvent],
              events: list[AlertEvent], threshold: float, historic: bool) -> str:
    """The disk page's body: the frame's facts, the disk, its alerts and the day's events."""
    when = f"the disk at {escape(view.frame_time[:16])} UTC"
    banner = ('<p class="historic">An earlier frame: this page does not follow the live feed. '
              '<a href="/">The disk now</a></p>') if historic else ""
    alerts = "".join(f'<li><a href="/patch/{escape(pid)}">{escape(pid)}</a> {e.event.value} at '
                     f"{escape(e.frame_time[11:16])}, median {e.probability.median:.2f}, onset "
                     f"{escape(e.onset.time_utc[:16])} ± {e.onset.uncertainty_hours:.0f} h</li>"
                     for pid, e in sorted(open_.items(), key=lambda kv: -kv[1].probability.median))
    return f"""<section id="disk" data-slot="{view.slot}">
<h1>{when} <small>{escape(view.instrument)} · QUALITY 0x{view.quality:08x} · {escape(view.source)}</small></h1>{banner}
<div class="disk-and-alerts"><figure>{disk_svg(view, scores, open_, ended, threshold)}
<figcaption id="focus" aria-live="polite">Hover or focus a patch (Tab) for its score; Enter opens it.</figcaption>
{legend(threshold)}</figure>
<aside><h2>Open alerts ({len(open_)})</h2><ul id="open-alerts">{alerts or '<li>none</li>'}</ul>
<h2>Events of the last day</h2>{events_table(events, with_patch=True)}</aside></div></section>"""


# ---- the patch page ------------------------------------------------------------------------------------------

W, H, LEFT, RIGHT, TOP, BOTTOM = 720, 280, 48, 12, 12, 34


def _axes(days_max: float, y_label: str, y_ticks: list[tuple[float, str]], to_y) -> list[str]:
    """The frame of a time plot: its box, day ticks and the y ticks (value, label)."""
    to_x = lambda d: LEFT + (W - LEFT - RIGHT) * d / days_max  # noqa: E731
    out = [f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}" class="frame"/>']
    step = 1 if days_max <= 8 else 2
    for d in range(0, int(days_max) + 1, step):
        out.append(f'<line x1="{to_x(d):.1f}" x2="{to_x(d):.1f}" y1="{H - BOTTOM}" y2="{H - BOTTOM + 4}" class="tick"/>'
                   f'<text x="{to_x(d):.1f}" y="{H - BOTTOM + 16}" class="tick-label">{d}</text>')
    for v, label in y_ticks:
        out.append(f'<text x="{LEFT - 6}" y="{to_y(v) + 4:.1f}" class="tick-label y">{label}</text>'
                   f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{to_y(v):.1f}" y2="{to_y(v):.1f}" class="grid"/>')
    out.append(f'<text x="{(LEFT + W) / 2}" y="{H - 2}" class="axis-label">days since the passage began</text>'
               f'<text x="12" y="{(TOP + H - BOTTOM) / 2}" class="axis-label" '
               f'transform="rotate(-90 12 {(TOP + H - BOTTOM) / 2})">{y_label}</text>')
    return out


def curve_svg(detail: PatchDetail, events: list[AlertEvent], threshold: float, cadence_days: float,
              n_frames: int) -> str:
    """The passage's score curve: median line, members' quartile band, threshold, onset ± its uncertainty, the
    frames its events came from."""
    days_max = n_frames * cadence_days
    to_x = lambda frame: LEFT + (W - LEFT - RIGHT) * frame * cadence_days / days_max  # noqa: E731
    to_y = lambda p: TOP + (H - TOP - BOTTOM) * (1 - p)  # noqa: E731
    out = [f'<svg id="curve" viewBox="0 0 {W} {H}" role="img" aria-label="score of the passage against time">']
    out += _axes(days_max, "probability", [(v, f"{v:g}") for v in (0, 0.25, 0.5, 0.75, 1.0)], to_y)
    h = detail.history
    if h:
        band = [f"{to_x(p.frame):.1f},{to_y(p.p75):.1f}" for p in h] + \
               [f"{to_x(p.frame):.1f},{to_y(p.p25):.1f}" for p in reversed(h)]
        out.append(f'<polygon class="band" points="{" ".join(band)}"><title>members\' 25th–75th percentiles</title></polygon>')
        out.append(f'<polyline class="median" points="{" ".join(f"{to_x(p.frame):.1f},{to_y(p.median):.1f}" for p in h)}">'
                   "<title>ensemble median</title></polyline>")
    out.append(f'<line class="threshold" x1="{LEFT}" x2="{W - RIGHT}" y1="{to_y(threshold):.1f}" y2="{to_y(threshold):.1f}">'
               f"<title>alert threshold {threshold:.2f}</title></line>")
    if detail.onset is not None:
        o = detail.onset
        half = o.uncertainty_hours / 24 / cadence_days
        x0, x1 = to_x(max(o.frame - half, 0)), to_x(min(o.frame + half, n_frames))
        out.append(f'<rect class="onset-band" x="{x0:.1f}" y="{TOP}" width="{max(x1 - x0, 1):.1f}" height="{H - TOP - BOTTOM}"/>'
                   f'<line class="onset" x1="{to_x(o.frame):.1f}" x2="{to_x(o.frame):.1f}" y1="{TOP}" y2="{H - BOTTOM}">'
                   f"<title>estimated onset {escape(o.time_utc[:16])} ± {o.uncertainty_hours:.0f} h</title></line>")
    for e in events:
        x, y = to_x(e.frame), to_y(e.probability.median)
        out.append(f'<path class="event-mark {e.event.value}" d="M{x:.1f},{y - 7:.1f} l5,-8 h-10 z">'
                   f"<title>{e.event.value} at {escape(e.frame_time[:16])}</title></path>")
    out.append("</svg>")
    return "".join(out)


def flux_svg(flux: dict[str, np.ndarray], frames: np.ndarray, cadence_days: float, n_frames: int) -> str:
    """The tile's flux at its observed frames: unsigned, positive and negative, 10²¹ Mx."""
    days_max = n_frames * cadence_days
    top = max(float(flux["unsigned"][frames].max()) / 1e21 if len(frames) else 0.0, 0.1) * 1.1
    to_x = lambda frame: LEFT + (W - LEFT - RIGHT) * frame * cadence_days / days_max  # noqa: E731
    to_y = lambda v: TOP + (H - TOP - BOTTOM) * (1 - v / top)  # noqa: E731
    ticks = [(v, f"{v:g}") for v in np.round(np.linspace(0, top / 1.1, 4), 2)]
    out = [f'<svg id="flux" viewBox="0 0 {W} {H}" role="img" aria-label="the tile\'s magnetic flux against time">']
    out += _axes(days_max, "flux, 10²¹ Mx", ticks, to_y)
    for name in ("unsigned", "positive", "negative"):
        pts = " ".join(f"{to_x(k):.1f},{to_y(flux[name][k] / 1e21):.1f}" for k in frames)
        out.append(f'<polyline class="flux {name}" points="{pts}"><title>{name}</title></polyline>')
    out.append(f'<text x="{W - RIGHT - 4}" y="{TOP + 14}" class="flux-key">'
               '<tspan class="unsigned">unsigned</tspan> <tspan class="positive">positive</tspan> '
               '<tspan class="negative">negative</tspan></text></svg>')
    return "".join(out)


def patch_body(detail: PatchDetail, events: list[AlertEvent], threshold: float, cadence_days: float, n_frames: int,
               flux: dict[str, np.ndarray] | None, frames: np.ndarray, sprite_columns: int, pixels: int) -> str:
    """A patch page's body: the curve, the frames, the flux and the events of its latest passage."""
    status = detail.alert.get("status", "idle")
    last = int(frames[-1]) if len(frames) else -1
    scrub = (f"""<section id="frames"><h2>Its frames</h2>
<div class="cutout" id="cutout" data-columns="{sprite_columns}" data-pixels="{pixels}"
 style="background-image:url('/patches/{escape(detail.patch_id)}/frames.png?passage_start={escape(detail.passage_start)}&amp;last={last}')"
 role="img" aria-label="the patch at the chosen frame"></div>
<label>frame <input type="range" id="scrubber" min="0" max="{max(last, 0)}" value="{max(last, 0)}"
 data-frames="{' '.join(str(int(k)) for k in frames)}" data-cadence-days="{cadence_days}"></label>
<output id="frame-label">{last}</output></section>""" if last >= 0 else "")
    return f"""<section id="patch" data-patch="{escape(detail.patch_id)}">
<h1>{escape(detail.patch_id)} <small>passage from {escape(detail.passage_start[:16])} UTC, {detail.passage_status};
alert {escape(str(status))}</small></h1>
<section><h2>Score</h2>{curve_svg(detail, events, threshold, cadence_days, n_frames)}
<p class="keys"><span class="key median"></span>ensemble median <span class="key band"></span>members' quartiles
<span class="key threshold"></span>threshold {threshold:.2f} <span class="key onset"></span>onset ± uncertainty
<span class="key event-mark"></span>events</p></section>
{scrub}
{f'<section><h2>Flux</h2>{flux_svg(flux, frames, cadence_days, n_frames)}</section>' if flux is not None else ''}
<section><h2>Events of this passage</h2>{events_table(events, with_patch=False)}</section></section>"""


def problem_page(status: int, title: str, detail: str, header: Header) -> str:
    return page(title, header, f'<section class="problem"><h1>{status} {escape(title)}</h1><p>{escape(detail)}</p>'
                                f'<p><a href="/">The disk now</a></p></section>', live=False)
