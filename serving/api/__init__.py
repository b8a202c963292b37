"""The HTTP API (FastAPI; OpenAPI at ``/docs`` and ``/openapi.json``): one router per concern.

Queries read through the store's read-only connections, so they see committed frames only (:mod:`.deps`);
every error is an RFC 9457 problem (:mod:`.problems`); ``GET /alerts`` pages with an opaque cursor
(:mod:`.alerts`); an upload is checked off the event loop and renamed into ``incoming/`` complete (:mod:`.upload`);
``GET /events/stream`` pushes every event and frame (:mod:`.stream`); the forecaster's pages are at ``/`` and
``/patch/{id}`` (:mod:`.pages`), their stylesheet and script under ``/static``.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from contract.events import SCHEMA_VERSION
from serving.api import alerts, operations, pages, patches, schemas, stream, upload
from serving.api.alerts import decode_cursor, encode_cursor
from serving.api.problems import answer_with_problems
from serving.api.stream import Changes
from serving.service import Service

__all__ = ["create_app", "decode_cursor", "encode_cursor"]

#: The pages' stylesheet and script.
STATIC = Path(__file__).parents[1] / "static"


class Lifecycle(Protocol):
    """What runs beside the API and starts and stops with it (:class:`serving.app.App`)."""

    def start(self) -> object: ...

    def stop(self) -> None: ...


def create_app(service: Service, lifecycle: Lifecycle | None = None) -> FastAPI:
    """The API of a :class:`serving.service.Service`; ``lifecycle`` (the scheduler, the watcher, the publisher) is
    started before the API answers and stopped, in order, after it has stopped answering."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if lifecycle is not None:
            lifecycle.start()
        polling = asyncio.create_task(app.state.changes.run())
        try:
            yield
        finally:
            polling.cancel()
            if lifecycle is not None:
                lifecycle.stop()

    app = FastAPI(title="fluxwatch", version=SCHEMA_VERSION, lifespan=lifespan,
                  description="Live detection of emerging solar active regions in full-disk magnetograms.")
    app.state.service = service
    app.state.reader = service.store.reader()
    app.state.changes = Changes(app.state.reader)
    answer_with_problems(app)
    for router in (operations.router, patches.router, schemas.router, alerts.router, upload.router, stream.router,
                   pages.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
