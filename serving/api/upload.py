"""A full-disk magnetogram submitted over HTTP: its token, size and header checked off the event loop, renamed into
``incoming/`` complete, then read (by the service's bounded reader) and scored after the response; its progress at
``GET /uploads/{name}``."""
from __future__ import annotations

import os
import re
import secrets
import tempfile
import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, HTTPException, Request, Response, Security
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.types import Message

from common.clock import slot_of_time
from contract.events import UploadAccepted, UploadStatus
from ingest.errors import IngestError
from serving.api.deps import ServiceDep
from serving.api.problems import problems

router = APIRouter()
bearer = HTTPBearer(auto_error=False, description="the service's upload token (``--upload-token``)")


@router.post("/upload", status_code=202, responses=problems(400, 401, 413, 422), openapi_extra={"requestBody": {
    "required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary", "description": "the FITS file"}}}}}}})
async def upload(request: Request, response: Response, background: BackgroundTasks, service: ServiceDep,
                 credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> UploadAccepted:
    """Submit a full-disk magnetogram FITS file (``Authorization: Bearer <token>``). Its header is checked before
    the answer; the frame is read and scored at once after it (not at the next cadence): follow it at the
    ``status`` path (also the ``Location`` header)."""
    # Token and size are checked before the body is read (the form is parsed here, not by FastAPI ahead of the
    # route), and the size again as it arrives: a body without a Content-Length (chunked) is cut off too.
    config = service.config
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
        try:
            t = await run_in_threadpool(service.reader.header_time, Path(tmp.name))
        except IngestError as exc:
            service.metrics.reject(exc)
            raise HTTPException(422, f"{name}: {exc.problem}") from None
        accepted = f"upload_{t.strftime('%Y%m%d_%H%M%S')}_{name}"
        os.replace(tmp.name, incoming / accepted)  # complete: the service reads it from incoming/ like a fed file
    finally:
        Path(tmp.name).unlink(missing_ok=True)  # gone when accepted (moved into incoming/)
        await form.close()
    background.add_task(service.run_cycle, time.time())
    status = f"/uploads/{accepted}"
    response.headers["Location"] = status
    return UploadAccepted(accepted=accepted, time=t.isot, slot=int(slot_of_time(t)), status=status)


@router.get("/uploads/{name}", responses=problems(404, 422))
def upload_status(name: Annotated[str, PathParam(pattern=r"^[A-Za-z0-9._-]{1,200}$")],
                  service: ServiceDep) -> UploadStatus:
    """Where an uploaded frame is: being read, waiting for its slot, scored, superseded or rejected (with why)."""
    where = service.inbox.state(name)
    if where is None:
        raise HTTPException(404, f"no file {name!r} in the inbox (never received, or removed by the retention)")
    return UploadStatus(accepted=name, state=where[0], reason=where[1])
