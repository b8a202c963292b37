"""The push channel: ``GET /events/stream``, Server-Sent Events of every alert event and every scored frame.

One task per app polls the store for its newest frame and event (:class:`Changes`, twice a second: two indexed
lookups); each open stream wakes on a change and reads the events after the last one it sent, so every client gets
every event once, in publication order, whatever the number of clients. An alert event carries its publication
sequence number as its SSE ``id``: a client that reconnects (the browser's ``EventSource`` does by itself) sends it
back as ``Last-Event-ID`` and resumes after it, across a restart of the service too. A frame event has no id.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.sse import EventSourceResponse, ServerSentEvent

from common.clock import slot_isot
from serving.api.deps import ReaderDep
from serving.api.problems import problems
from serving.store import Reader

router = APIRouter()

#: How often the store is polled for a new frame or event, s.
POLL_S = 0.5
#: How long a browser waits before reconnecting, ms.
RETRY_MS = 2000


class Changes:
    """The newest frame's slot and the newest event's sequence number in the store, polled by one task
    (:meth:`run`) for every open stream."""

    def __init__(self, reader: Reader):
        self.reader = reader
        self.current: tuple[int, int] = (-1, 0)
        self._changed = asyncio.Condition()

    def newest(self) -> tuple[int, int]:
        """(newest frame's slot or -1, newest event's sequence number or 0)."""
        slot, seq = self.reader.db.execute(
            "SELECT (SELECT MAX(slot) FROM frames), (SELECT MAX(rowid) FROM alerts)").fetchone()
        return (-1 if slot is None else int(slot)), (0 if seq is None else int(seq))

    async def run(self) -> None:
        """Poll until cancelled, waking the streams at each change."""
        while True:
            newest = await run_in_threadpool(self.newest)
            if newest != self.current:
                async with self._changed:
                    self.current = newest
                    self._changed.notify_all()
            await asyncio.sleep(POLL_S)

    async def after(self, seen: tuple[int, int]) -> tuple[int, int]:
        """The newest (slot, sequence number) once it differs from ``seen``."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.current != seen)
            return self.current


def last_event(last_event_id: str | None = Header(None, description=(
        "the id of the last alert event received: the stream resumes after it; new events only when absent"))) -> int | None:
    """The sequence number a client resumes after (None: a new client, given what comes); checked before the stream
    starts, so that a bad one is a 422."""
    if not last_event_id:
        return None
    if not last_event_id.isdigit():
        raise HTTPException(422, f"Last-Event-ID {last_event_id!r} is not an id this stream sent")
    return int(last_event_id)


@router.get("/events/stream", response_class=EventSourceResponse, responses={
    **problems(422), 200: {"description": "``event: alert`` (``id``: its publication sequence number; ``data``: the alert event as "
                         "on the alerts topic) and ``event: frame`` (``data``: {slot, frame_time} of a scored frame)"}})
async def events_stream(request: Request, reader: ReaderDep, resume: Annotated[int | None, Depends(last_event)]
                        ) -> AsyncIterator[ServerSentEvent]:
    """Every alert event (opened, updated, withdrawn, closed) as it is published, in publication order, and every
    scored frame, pushed as Server-Sent Events (the browser's ``EventSource``)."""
    changes: Changes = request.app.state.changes
    seen = await run_in_threadpool(changes.newest)
    after = seen[1] if resume is None else resume
    yield ServerSentEvent(comment="fluxwatch events", retry=RETRY_MS)
    slot = seen[0]
    while True:
        if after < seen[1]:
            for seq, event in await run_in_threadpool(reader.alert_rows, after=after):
                yield ServerSentEvent(raw_data=event.model_dump_json(), event="alert", id=str(seq))
                after = seq
        if seen[0] > slot:
            slot = seen[0]
            yield ServerSentEvent(raw_data=json.dumps({"slot": slot, "frame_time": slot_isot(slot) + "Z"}), event="frame")
        seen = await changes.after(seen)
