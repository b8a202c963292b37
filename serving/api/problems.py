"""Every error of the API is an RFC 9457 problem (``application/problem+json``, :class:`contract.events.Problem`)."""
from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from contract.events import Problem


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


def answer_with_problems(app: FastAPI) -> None:
    """Make every error of ``app`` a problem, and its OpenAPI document say so of every 4xx/5xx body."""

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
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            for operation in (op for path in schema["paths"].values() for op in path.values()):
                for status, response in operation.get("responses", {}).items():
                    if status[0] in "45" and "application/json" in response.get("content", {}):
                        response["content"] = {"application/problem+json": response["content"]["application/json"]}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
