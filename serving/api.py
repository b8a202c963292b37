"""The HTTP API (FastAPI; OpenAPI at ``/docs`` and ``/openapi.json``).

Queries read through the store's read-only connections, so they see
committed frames only; an upload is checked (token, size, a readable
magnetogram) off the event loop and renamed into ``incoming/`` complete.
Every error is an RFC 9457 problem (``application/problem+json``,
:class:`serving.events.Problem`); ``GET /alerts`` pages with an opaque cursor.
"""
from __future__ import annotations

import base64
import binascii
import io
import json
import re
import secrets
import tempfile
import time
from collections.abc import Mapping
from http import HTTPStatus
from pathlib import Path

import numpy as np
from astropy.time import Time
from fastapi import BackgroundTasks, FastAPI, HTTPException, Query, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message

from common.clock import slot_isot, slot_of_time
from ingest.errors import IngestError
from ingest.magnetogram import read_frame
from serving.events import (
    SCHEMA_DIR,
    SCHEMA_VERSION,
    SCHEMAS,
    AlertPage,
    EventKind,
    Health,
    PatchDetail,
    PatchSummary,
    Problem,
    Readiness,
    SchemaRef,
    UploadAccepted,
    json_schema,
)
from serving.region import cutout_png
from serving.service import Service
from serving.voevent import author_of, to_voevent

ALERTS_PAGE_DEFAULT, ALERTS_PAGE_MAX = 100, 1000  # events per page of GET /alerts


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


def problem(request: Request, status: int, detail: str, headers: Mapping[str, str] | None = None, **extra) -> JSONResponse:
    """An RFC 9457 problem response; ``extra`` are extension members."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = f"HTTP {status}"
    body = Problem(title=title, status=status, detail=detail, instance=request.url.path, **extra)
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers,
                        media_type="application/problem+json")


def problems(*statuses: int) -> dict:
    """OpenAPI ``responses`` of a route's error statuses, each a :class:`Problem` (as problem+json: see ``openapi``)."""
    return {status: {"model": Problem, "description": HTTPStatus(status).phrase} for status in statuses}


def create_app(service: Service) -> FastAPI:
    """The API of a :class:`serving.service.Service`."""
    app = FastAPI(title="fluxwatch", version=SCHEMA_VERSION,
                  description="Live detection of emerging solar active regions in full-disk magnetograms.")
    config = service.config
    reader = service.store.reader()
    bearer = HTTPBearer(auto_error=False, description="the service's upload token (``--upload-token``)")

    @app.exception_handler(StarletteHTTPException)
    def http_problem(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(request, exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    def validation_problem(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        return problem(request, 422, detail, errors=errors)

    @app.exception_handler(Exception)
    def internal_problem(request: Request, exc: Exception) -> JSONResponse:
        return problem(request, 500, f"internal error ({type(exc).__name__}); the service log has the details")

    def openapi() -> dict:
        """FastAPI's OpenAPI, with every 4xx/5xx body declared as application/problem+json."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            for operation in (op for path in schema["paths"].values() for op in path.values()):
                for status, response in operation.get("responses", {}).items():
                    if status[0] in "45" and "application/json" in response.get("content", {}):
                        response["content"] = {"application/problem+json": response["content"]["application/json"]}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/health")
    def health() -> Health:
        """Liveness: the process answers."""
        return Health(status="ok")

    @app.get("/ready", response_model=Readiness, responses=problems(503))
    def ready(request: Request) -> JSONResponse:
        """Readiness: the model bundle is loaded, the warm start is not under way, at least one frame has been
        ingested, and the live source (when there is one) has not failed its last polls. Not ready: 503, a problem with the same fields besides."""
        newest = reader.newest_frame()
        source = service.source_state
        body = Readiness(ready=False, model_version=service.bundle.model_version, members=service.bundle.scorers,
                         newest_frame=newest[1] if newest else None,
                         source=source.as_dict() if source is not None else None,
                         warm_start=service.warm_start.as_dict()).model_dump(mode="json")
        warm = service.warm_start
        waiting = ([f"warming up from the archive ({warm.frames} of {warm.end_slot - warm.first_slot} history frames)"]
                   if warm.state == "warming" and warm.end_slot is not None and warm.first_slot is not None else []) + \
                  (["no frame ingested yet"] if newest is None else []) + \
                  ([f"the {source.name} source is failing its polls"] if source is not None and not source.healthy else [])
        if waiting:
            return problem(request, 503, "not ready: " + "; ".join(waiting), **body)
        return JSONResponse({**body, "ready": True})

    @app.get("/patches")
    def patches() -> list[PatchSummary]:
        """Every patch on the disk now, with its latest score and alert status."""
        return reader.patches()

    @app.get("/patches/{patch_id}", responses=problems(404, 422))
    def patch(patch_id: str) -> PatchDetail:
        """One patch: probability history (masking curve so far) and onset estimate of its latest passage."""
        found = reader.patch(patch_id)
        if found is None:
            raise HTTPException(404, f"no passage recorded for patch {patch_id!r}")
        return found

    def stored_video(patch_id: str, passage_start: str | None) -> tuple[tuple[int, str, int], np.ndarray]:
        """(the passage: start slot, status, last scored frame; its video) of a patch's passage from ``passage_start``
        (ISO UTC; its latest passage when None): 422 for a time that is not one, 404 when there is none, 410 when the
        retention policy removed it."""
        try:
            start = int(slot_of_time(Time(passage_start))) if passage_start is not None else None
        except ValueError:
            raise HTTPException(422, f"passage_start={passage_start!r} is not an ISO time") from None
        found = reader.passage(patch_id, start)
        video = service.store.read_video(patch_id, found[0]) if found else None
        if found is not None and video is None and found[1] == "closed" and found[2] >= 0:
            raise HTTPException(410, f"the video of patch {patch_id!r} from {slot_isot(found[0])} was removed by the "
                                     f"retention policy: closed passages' videos are kept {config.retain_videos} after "
                                     "their last frame (retain_videos); the alerts and scores stand")
        if found is None or video is None:
            raise HTTPException(404, f"no video recorded for patch {patch_id!r}"
                                     + (f" from {passage_start}" if passage_start is not None else ""))
        return found, video

    @app.get("/patches/{patch_id}/video", response_class=Response,
             responses={200: {"content": {"application/x-npy": {}},
                              "description": "NumPy .npy of float32 (n_frames, pixels, pixels), LoS field in G"},
                        **problems(404, 410, 422)})
    def patch_video(patch_id: str, passage_start: str | None = Query(
            None, description="ISO UTC time of the passage's frame 0 (an alert's passage_start); the latest passage when absent")
                    ) -> Response:
        """A patch passage's rolling video as a NumPy ``.npy`` file: float32 (n_frames, pixels, pixels), G, frames
        not yet observed 0 G (the dataset's padding). Headers: ``X-Passage-Start`` (ISO), ``X-Last-Frame`` (the
        newest frame scored, -1 before the first), ``X-Passage-Status`` (open or closed)."""
        found, video = stored_video(patch_id, passage_start or None)
        body = io.BytesIO()
        np.save(body, video, allow_pickle=False)
        return Response(body.getvalue(), media_type="application/x-npy",
                        headers={"X-Passage-Start": slot_isot(found[0]), "X-Last-Frame": str(found[2]),
                                 "X-Passage-Status": found[1]})

    @app.get("/patches/{patch_id}/cutout.png", response_class=Response,
             responses={200: {"content": {"image/png": {}}, "description": "grey PNG, black -300 G to white +300 G, "
                                                                          "north up: the onset frame left, the frame right"},
                        **problems(404, 410, 422)})
    def patch_cutout(patch_id: str,
                     passage_start: str = Query(description="ISO UTC time of the passage's frame 0 (an alert's passage_start)"),
                     frame: int = Query(ge=0, description="the frame to show (an alert's frame)"),
                     onset: int = Query(ge=0, description="the onset frame to show beside it (an alert's onset.frame)")) -> Response:
        """The cutout an alert's ``region.cutout`` links to: a small PNG of the patch at its onset and at the alert's
        frame, side by side (the patch's pixels, 1/6° each)."""
        found, video = stored_video(patch_id, passage_start)
        if max(frame, onset) > found[2]:
            raise HTTPException(404, f"patch {patch_id!r} from {passage_start} is scored up to frame {found[2]}; "
                                     f"frame {max(frame, onset)} is not observed yet")
        return Response(cutout_png(video, frame, onset), media_type="image/png")

    @app.get("/schemas")
    def schemas() -> list[SchemaRef]:
        """The published JSON Schemas of the topics' payloads: the current version of each, and earlier ones kept
        in ``deploy/schemas``. Within a major version only optional fields are added."""
        kept = (f.name.removesuffix(".schema.json").rsplit("-", 1) for f in SCHEMA_DIR.glob("*-*.schema.json"))
        versions = {(name, SCHEMA_VERSION) for name in SCHEMAS} | {(name, version) for name, version in kept}
        return [SchemaRef(name=n, version=v, current=v == SCHEMA_VERSION, url=f"/schemas/{n}/{v}")
                for n, v in sorted(versions) if n in SCHEMAS]

    @app.get("/schemas/{name}/{version}", response_class=JSONResponse,
             responses={200: {"content": {"application/schema+json": {}}, "description": "a JSON Schema (draft 2020-12)"},
                        **problems(404, 422)})
    def schema(name: str, version: str) -> JSONResponse:
        """One published JSON Schema: ``alert-event`` (the alerts topics, ``GET /alerts`` items) or ``patch-status``
        (the compacted status topics), at a version from ``GET /schemas``."""
        path = SCHEMA_DIR / f"{name}-{version}.schema.json"
        if name in SCHEMAS and version == SCHEMA_VERSION:
            body = json_schema(name)
        elif name in SCHEMAS and path.name in {f.name for f in SCHEMA_DIR.glob("*.schema.json")}:
            body = json.loads(path.read_text())
        else:
            raise HTTPException(404, f"no schema {name!r} at version {version!r}: see /schemas")
        return JSONResponse(body, media_type="application/schema+json")

    @app.get("/alerts", responses=problems(422))
    def alerts(
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

    @app.post("/upload", status_code=202, responses=problems(400, 401, 413, 422), openapi_extra={"requestBody": {
        "required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary", "description": "the FITS file"}}}}}}})
    async def upload(request: Request, background: BackgroundTasks,
                     credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> UploadAccepted:
        """Submit a full-disk magnetogram FITS file (``Authorization: Bearer <token>``); it is scored at once
        (after the response), not at the next cadence."""
        # Token and size are checked before the body is read (the form is parsed here, not by FastAPI ahead of the
        # route), and the size again as it arrives: a body without a Content-Length (chunked) is cut off too.
        if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), config.upload_token.encode()):
            service.metrics.reject("unauthorized")
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})
        limit = config.upload_max_bytes + 64 * 1024  # the file and its multipart envelope
        declared = request.headers.get("content-length")
        if declared is not None and not re.fullmatch(r"[0-9]+", declared):
            raise HTTPException(400, f"Content-Length {declared!r} is not a number of bytes")
        if declared is not None and int(declared) > limit:
            service.metrics.reject("too_large")
            raise HTTPException(413, f"upload of {declared} bytes exceeds the limit of {config.upload_max_bytes} bytes")
        received = 0

        async def receive_at_most_limit() -> Message:
            nonlocal received
            message = await request.receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413, f"upload of {received} bytes or more exceeds the limit of {config.upload_max_bytes} bytes")
            return message

        try:
            form = await Request(request.scope, receive_at_most_limit).form(max_files=1, max_fields=10)
        except HTTPException as exc:
            if exc.status_code == 413:
                service.metrics.reject("too_large")
            raise
        incoming = service.inbox.incoming
        tmp = tempfile.NamedTemporaryFile(dir=incoming.parent, suffix=".upload", delete=False)
        try:
            file = form.get("file")
            if not isinstance(file, StarletteUploadFile):
                raise HTTPException(422, "body: a multipart/form-data part 'file' with the FITS file is required")
            # The file's base name, of safe characters only: nothing it says can lead outside incoming/.
            name = re.sub(r"[^A-Za-z0-9._-]", "_", (file.filename or "").replace("\\", "/").rsplit("/", 1)[-1])[-120:]
            name = name or "upload.fits"
            if not name.lower().endswith(".fits"):  # the inbox takes *.fits (an "x.fts" upload is filed as "x.fts.fits")
                name += ".fits"
            with tmp:
                size = 0
                while chunk := await file.read(1 << 20):
                    size += len(chunk)
                    if size > config.upload_max_bytes:
                        service.metrics.reject("too_large")
                        raise HTTPException(413, f"{name}: exceeds the limit of {config.upload_max_bytes} bytes")
                    tmp.write(chunk)
            t0 = time.perf_counter()
            try:
                mag = await run_in_threadpool(read_frame, tmp.name, service.bundle.instrument)
            except IngestError as exc:
                service.metrics.reject(exc)
                raise HTTPException(422, f"{name}: {exc.problem}") from None
            accepted = f"upload_{mag.time.strftime('%Y%m%d_%H%M%S')}_{name}"
            # The frame is read: it joins its slot as it is, and is scored after the response (a sync task runs in a thread).
            await run_in_threadpool(service.accept, Path(tmp.name), accepted, mag, time.perf_counter() - t0)
        finally:
            Path(tmp.name).unlink(missing_ok=True)  # gone when accepted (moved into incoming/)
            await form.close()
        background.add_task(service.run_cycle, time.time())
        return UploadAccepted(accepted=accepted, time=mag.time.isot, slot=int(slot_of_time(mag.time)))

    @app.get("/metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition format"}})
    def metrics() -> Response:
        """Prometheus metrics."""
        body, content_type = service.metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/alerts/voevent", response_class=Response,
             responses={200: {"content": {"application/xml": {}},
                              "description": "VOEvent 2.0 XML: the event as a HEK Emerging Flux (EF) event"},
                        **problems(404, 422)})
    def alert_voevent(event_id: str = Query(..., description="the alert event's event_id")) -> Response:
        """One alert event as a VOEvent 2.0 document in the HEK's Emerging Flux form (:mod:`serving.voevent`): the
        same bytes as the service's VOEvent file of the event."""
        event = reader.alert(event_id)
        if event is None:
            raise HTTPException(404, f"no alert event {event_id!r}")
        return Response(to_voevent(event, author_of(config)), media_type="application/xml")

    return app
