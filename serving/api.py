"""The HTTP API (FastAPI; OpenAPI at ``/docs`` and ``/openapi.json``).

Queries read through the store's read-only connections, so they see
committed frames only; an upload is checked (token, size, a readable
magnetogram) off the event loop and renamed into ``incoming/`` complete.
"""
from __future__ import annotations

import io
import secrets
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.time import Time
from fastapi import BackgroundTasks, FastAPI, Header, HTTPException, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from common.clock import slot_of_time, slot_time
from ingest.errors import IngestError
from ingest.magnetogram import read_frame
from serving.events import SCHEMA_VERSION, AlertEvent, PatchDetail, PatchSummary
from serving.service import Service


def create_app(service: Service) -> FastAPI:
    """The API of a :class:`serving.service.Service`."""
    app = FastAPI(title="fluxwatch", version=SCHEMA_VERSION,
                  description="Live detection of emerging solar active regions in full-disk magnetograms.")
    config = service.config
    reader = service.store.reader()

    @app.get("/health")
    def health() -> dict:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready")
    def ready() -> JSONResponse:
        """Readiness: the model bundle is loaded, at least one frame has been ingested, and the live source (when
        there is one) has not failed its last polls."""
        newest = reader.newest_frame()
        source = service.source_state
        ok = newest is not None and (source is None or source.healthy)
        body = {"ready": ok, "model_version": service.bundle.model_version,
                "members": len(service.bundle.members), "newest_frame": newest[1] if newest else None,
                "source": source.as_dict() if source is not None else None}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/patches")
    def patches() -> list[PatchSummary]:
        """Every patch on the disk now, with its latest score and alert status."""
        return reader.patches()

    @app.get("/patches/{patch_id}")
    def patch(patch_id: str) -> PatchDetail:
        """One patch: probability history (masking curve so far) and onset estimate of its latest passage."""
        found = reader.patch(patch_id)
        if found is None:
            raise HTTPException(404, f"no passage recorded for patch {patch_id!r}")
        return found

    @app.get("/patches/{patch_id}/video", response_class=Response,
             responses={200: {"content": {"application/x-npy": {}},
                              "description": "NumPy .npy of float32 (n_frames, pixels, pixels), LoS field in G"}})
    def patch_video(patch_id: str, passage_start: str | None = Query(
            None, description="ISO UTC time of the passage's frame 0 (an alert's passage_start); the latest passage when absent")
                    ) -> Response:
        """A patch passage's rolling video as a NumPy ``.npy`` file: float32 (n_frames, pixels, pixels), G, frames
        not yet observed 0 G (the dataset's padding). Headers: ``X-Passage-Start`` (ISO), ``X-Last-Frame`` (the
        newest frame scored, -1 before the first), ``X-Passage-Status`` (open or closed)."""
        try:
            start = int(slot_of_time(Time(passage_start))) if passage_start else None
        except ValueError:
            raise HTTPException(422, f"passage_start={passage_start!r} is not an ISO time") from None
        found = reader.passage(patch_id, start)
        video = service.store.read_video(patch_id, found[0]) if found else None
        if found is None or video is None:
            raise HTTPException(404, f"no video recorded for patch {patch_id!r}" + (f" from {passage_start}" if passage_start else ""))
        body = io.BytesIO()
        np.save(body, video, allow_pickle=False)
        return Response(body.getvalue(), media_type="application/x-npy",
                        headers={"X-Passage-Start": slot_time(found[0]).isot, "X-Last-Frame": str(found[2]),
                                 "X-Passage-Status": found[1]})

    @app.get("/alerts")
    def alerts(since: str | None = Query(None, description="ISO UTC time; events from frames at or after it")
               ) -> list[AlertEvent]:
        """Alert events (opened, updated, withdrawn, closed), oldest first."""
        try:
            t = Time(since) if since else None
        except ValueError:
            raise HTTPException(422, f"since={since!r} is not an ISO time") from None
        return reader.alerts(t)

    @app.post("/upload", status_code=202)
    async def upload(request: Request, file: UploadFile, background: BackgroundTasks,
                     authorization: str | None = Header(None)) -> dict:
        """Submit a full-disk magnetogram FITS file (``Authorization: Bearer <token>``); it is scored at once
        (after the response), not at the next cadence."""
        if authorization is None or not secrets.compare_digest(authorization, f"Bearer {config.upload_token}"):
            service.metrics.reject("unauthorized")
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})
        declared = int(request.headers.get("content-length", 0))
        if declared > config.upload_max_bytes + 64 * 1024:
            service.metrics.reject("too_large")
            raise HTTPException(413, f"upload of {declared} bytes exceeds the limit of {config.upload_max_bytes} bytes")
        name = Path(file.filename or "upload.fits").name
        if not name.lower().endswith(".fits"):  # the inbox takes *.fits (an "x.fts" upload is filed as "x.fts.fits")
            name += ".fits"
        incoming = service.inbox.incoming
        with tempfile.NamedTemporaryFile(dir=incoming.parent, suffix=".upload", delete=False) as tmp:
            size = 0
            while chunk := await file.read(1 << 20):
                size += len(chunk)
                if size > config.upload_max_bytes:
                    Path(tmp.name).unlink()
                    service.metrics.reject("too_large")
                    raise HTTPException(413, f"{name}: exceeds the limit of {config.upload_max_bytes} bytes")
                tmp.write(chunk)
        t0 = time.perf_counter()
        try:
            mag = await run_in_threadpool(read_frame, tmp.name, service.bundle.instrument)
        except IngestError as exc:
            Path(tmp.name).unlink()
            service.metrics.reject(exc)
            raise HTTPException(422, f"{name}: {exc.problem}") from None
        accepted = f"upload_{mag.time.strftime('%Y%m%d_%H%M%S')}_{name}"
        # The frame is read: it joins its slot as it is, and is scored after the response (a sync task runs in a thread).
        await run_in_threadpool(service.accept, Path(tmp.name), accepted, mag, time.perf_counter() - t0)
        background.add_task(service.run_cycle, time.time())
        return {"accepted": accepted, "time": mag.time.isot, "slot": int(slot_of_time(mag.time))}

    @app.get("/metrics")
    def metrics() -> Response:
        """Prometheus metrics."""
        body, content_type = service.metrics.exposition()
        return Response(body, media_type=content_type)

    return app
