"""The alert events as published, a page at a time, and one event as a VOEvent."""
from __future__ import annotations

import base64
import binascii
import json

from astropy.time import Time
from fastapi import APIRouter, HTTPException, Query, Response

from contract.events import AlertEvent, AlertPage, EventKind
from serving.api.deps import ReaderDep, ServiceDep
from serving.api.problems import problems
from serving.voevent import author_of, to_voevent

ALERTS_PAGE_DEFAULT, ALERTS_PAGE_MAX = 100, 1000  # events per page of GET /alerts

router = APIRouter()


def encode_cursor(seq: int) -> str:
    """The opaque ``GET /alerts`` cursor after the event of publication sequence number ``seq`` (the store's
    :meth:`~serving.store.Reader.alert_rows`): URL-safe base64 of JSON."""
    return base64.urlsafe_b64encode(json.dumps({"after": seq}).encode()).decode()


def decode_cursor(cursor: str) -> int:
    """The sequence number of a cursor from :func:`encode_cursor`; ValueError for anything else."""
    try:
        seq = json.loads(base64.urlsafe_b64decode(cursor.encode()))["after"]
    except (binascii.Error, UnicodeError, ValueError, TypeError, KeyError):
        seq = None
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise ValueError(f"cursor={cursor!r} is not a cursor this API gave")
    return seq


@router.get("/alerts", responses=problems(422))
def alerts(
    reader: ReaderDep,
    cursor: str | None = Query(None, description="the previous page's next_cursor; the first page when absent"),
    limit: int = Query(ALERTS_PAGE_DEFAULT, ge=1, le=ALERTS_PAGE_MAX, description="events per page at most"),
    since: str | None = Query(None, description="ISO UTC time; events from frames at or after it"),
    until: str | None = Query(None, description="ISO UTC time; events from frames before it"),
    kind: list[EventKind] = Query([], description="event kinds to keep (repeat for several); all when absent"),
    lon_min: float = Query(0.0, ge=0, le=360, description="patch centre Carrington longitude at least this, deg"),
    lon_max: float = Query(360.0, ge=0, le=360, description="... at most this, deg; below lon_min: a box across 0°"),
    lat_min: float = Query(-90.0, ge=-90, le=90, description="patch centre Carrington latitude at least this, deg"),
    lat_max: float = Query(90.0, ge=-90, le=90, description="... at most this, deg"),
    min_probability: float | None = Query(None, ge=0, le=1, description="ensemble median probability at least this"),
    simulated: bool | None = Query(None, description="false: events from observed frames only; true: from the synthetic "
                                                     "Sun only; both when absent"),
) -> AlertPage:
    """Alert events (opened, updated, withdrawn, closed) in the order they were published, a page at a time:
    follow ``next_cursor`` (keeping the filters) while ``has_more``. The cursor marks the last event read, so
    events published later, even from a late frame, come after it: the last page's cursor polls for new ones."""
    times = {}
    for name, value in (("since", since), ("until", until)):
        try:
            times[name] = Time(value) if value else None
        except ValueError:
            raise HTTPException(422, f"{name}={value!r} is not an ISO time") from None
    try:
        after = decode_cursor(cursor) if cursor else None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if lat_min > lat_max:
        raise HTTPException(422, f"lat_min={lat_min} is above lat_max={lat_max}")
    box = (lon_min, lon_max, lat_min, lat_max) if (lon_min, lon_max, lat_min, lat_max) != (0, 360, -90, 90) else None
    found = reader.alert_rows(times["since"], times["until"], kinds=[str(k) for k in kind], box=box,
                              min_probability=min_probability, simulated=simulated, after=after, limit=limit + 1)
    page = found[:limit]
    return AlertPage(items=[e for _, e in page], has_more=len(found) > limit,
                     next_cursor=encode_cursor(page[-1][0]) if page else cursor)


@router.get("/alerts/event", responses=problems(404, 422))
def alert_event(reader: ReaderDep, event_id: str = Query(..., description="the alert event's event_id")) -> AlertEvent:
    """One alert event, as published."""
    event = reader.alert(event_id)
    if event is None:
        raise HTTPException(404, f"no alert event {event_id!r}")
    return event


@router.get("/alerts/voevent", response_class=Response,
            responses={200: {"content": {"application/xml": {}},
                             "description": "VOEvent 2.0 XML: the event as a HEK Emerging Flux (EF) event"},
                       **problems(404, 422)})
def alert_voevent(service: ServiceDep, reader: ReaderDep,
                  event_id: str = Query(..., description="the alert event's event_id")) -> Response:
    """One alert event as a VOEvent 2.0 document in the HEK's Emerging Flux form (:mod:`serving.voevent`): the
    same bytes as the service's VOEvent file of the event."""
    event = reader.alert(event_id)
    if event is None:
        raise HTTPException(404, f"no alert event {event_id!r}")
    return Response(to_voevent(event, author_of(service.config)), media_type="application/xml")
