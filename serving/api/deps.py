"""What a route depends on: the service the app serves and the store's read-only view of it (committed frames only)."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from serving.service import Service
from serving.store import Reader


def service_of(request: Request) -> Service:
    return request.app.state.service


def reader_of(request: Request) -> Reader:
    return request.app.state.reader


ServiceDep = Annotated[Service, Depends(service_of)]
ReaderDep = Annotated[Reader, Depends(reader_of)]
