"""The forecaster's pages (:mod:`serving.pages`): the disk at ``/`` (``?at=`` an earlier frame), a patch at
``/patch/{id}``, and the frames' pictures they show. Pages are not part of the API's OpenAPI document; the
pictures are."""
from __future__ import annotations

import time

import astropy.units as u
import numpy as np
from astropy.time import Time
from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

from common.clock import CADENCE_DAYS, SLOTS_PER_DAY, slot_of_time, slot_time
from common.figures import sprite_columns
from common.patches import flux_curves
from serving import pages
from serving.api.deps import ReaderDep, ServiceDep
from serving.api.problems import problems
from serving.diskview import DiskView
from serving.service import Service
from serving.store import Reader

router = APIRouter()


def header(service: Service, reader: Reader) -> pages.Header:
    """The service's state as ``/ready`` judges it, in words, the newest frame's age (and whether it is the
    synthetic Sun's) and the frames waiting in the inbox."""
    newest = reader.newest_frame()
    warm, source = service.warm_start, service.source_state
    if warm.state == "warming":
        state, ready = f"warm start: {warm.frames} history frames read", False
    elif newest is None:
        state, ready = "waiting for the first frame", False
    elif source is not None and not source.healthy:
        state, ready = f"the {source.name} source is failing its polls", False
    else:
        state, ready = "ready", True
    slots = service.views.slots()
    shown = service.views.view(slots[-1]) if slots else None
    inbox = service.inbox
    return pages.Header(state, ready, None if newest is None else time.time() - slot_time(newest[0]).unix,
                        simulated=shown is not None and shown.simulated,
                        waiting=len(inbox.waiting()) + len(inbox.held()))


class PageError(Exception):
    """A page that cannot be drawn: answered as an HTML page with ``status``."""

    def __init__(self, status: int, title: str, detail: str):
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def _view_at(service: Service, at: str | None) -> DiskView:
    """The view of the frame to show: ``at``'s, else the newest frame's with a view."""
    slots = service.views.slots()
    if at is None:
        found = service.views.view(slots[-1]) if slots else None
        if found is None:
            raise PageError(404, "No frame yet", "The service has not scored a frame yet; this page shows the disk "
                                                  "once it has.")
        return found
    try:
        slot = int(slot_of_time(Time(at)))
    except ValueError:
        raise PageError(422, "Not a time", f"at={at!r} is not an ISO time (e.g. 2002-03-10T12:48)") from None
    found = service.views.view(slot)
    if found is not None:
        return found
    if service.views.removed(slot):
        raise PageError(410, "Gone", f"The frame of {slot_time(slot).isot[:16]} UTC is older than the views kept "
                                     f"(retain_views: {service.config.retain_views.to_value(u.day):g} days before the "
                                     "newest frame); its alerts stand at /alerts.")
    raise PageError(404, "No such frame", f"No frame was scored at {slot_time(slot).isot[:16]} UTC.")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def disk(service: ServiceDep, reader: ReaderDep, at: str | None = None) -> HTMLResponse:
    """The disk now (or at the frame of ``at``), its patches' scores and its alerts."""
    head = header(service, reader)
    try:
        view = _view_at(service, at)
    except PageError as exc:
        return HTMLResponse(pages.problem_page(exc.status, exc.title, exc.detail, head), status_code=exc.status)
    slot = view.slot
    recent = [e for _, e in reader.alert_rows(since=slot_time(slot - service.bundle.n_frames),
                                              until=slot_time(slot + 1))]
    open_, ended = pages.alert_marks(recent, view.frame_time)
    day = slot_time(slot - SLOTS_PER_DAY).isot
    body = pages.disk_body(view, reader.scores_at(slot), open_, ended, [e for e in recent if e.frame_time >= day],
                           service.bundle.alert_threshold, historic=at is not None)
    return HTMLResponse(pages.page(f"fluxwatch: {view.frame_time[:16]}", head, body, live=at is None))


@router.get("/patch/{patch_id}", response_class=HTMLResponse, include_in_schema=False)
def patch(patch_id: str, service: ServiceDep, reader: ReaderDep) -> HTMLResponse:
    """A patch's latest passage: score curve, frames, flux and events."""
    head = header(service, reader)
    detail = reader.patch(patch_id)
    if detail is None:
        return HTMLResponse(pages.problem_page(404, "No such patch", f"No passage recorded for patch {patch_id!r}.",
                                               head), status_code=404)
    start = int(slot_of_time(Time(detail.passage_start)))
    events = [e for _, e in reader.alert_rows(since=slot_time(start), patch_id=patch_id) if e.passage == detail.alert["passage"]]
    video = service.store.read_video(patch_id, start)
    frames = [p.frame for p in detail.history]
    flux = None if video is None else flux_curves(video, service.grid[patch_id].lat,
                                                  service.grid.config.pixel_size.to_value(u.deg))
    shown = np.array(frames if video is not None else [], dtype=np.int64)
    columns = sprite_columns(int(shown[-1]) + 1) if len(shown) else 0
    body = pages.patch_body(detail, events, service.bundle.alert_threshold, CADENCE_DAYS, service.bundle.n_frames, flux,
                            shown, columns, service.bundle.pixels)
    return HTMLResponse(pages.page(f"fluxwatch: {patch_id}", head, body, live=True))


@router.get("/views/{slot}.png", response_class=FileResponse, responses={
    200: {"content": {"image/png": {}}, "description": "grey PNG of a scored frame, ±500 G, north up, 512² px"},
    **problems(404, 410, 422)})
def view_picture(slot: int, service: ServiceDep) -> FileResponse:
    """The live page's picture of the frame of ``slot`` (the clock's 96-min slot number); 410 once the retention
    removed it (``retain_views``)."""
    path = service.views.picture(slot)
    if not path.is_file():
        if service.views.removed(slot):
            raise HTTPException(410, f"the view of slot {slot} was removed by the retention policy (retain_views)")
        raise HTTPException(404, f"no view of slot {slot}")
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "public, max-age=31536000, immutable"})
