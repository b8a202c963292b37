"""The published JSON Schemas of the topics' payloads, current and earlier versions."""
from __future__ import annotations

import json

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse

from contract.events import SCHEMA_DIR, SCHEMA_VERSION, SCHEMAS, SchemaRef, json_schema
from serving.api.problems import problems

router = APIRouter()


@router.get("/schemas")
def schemas() -> list[SchemaRef]:
    """The published JSON Schemas of the topics' payloads: the current version of each, and earlier ones kept
    in ``deploy/schemas``. Within a major version only optional fields are added."""
    kept = (f.name.removesuffix(".schema.json").rsplit("-", 1) for f in SCHEMA_DIR.glob("*-*.schema.json"))
    versions = {(name, SCHEMA_VERSION) for name in SCHEMAS} | {(name, version) for name, version in kept}
    return [SchemaRef(name=n, version=v, current=v == SCHEMA_VERSION, url=f"/schemas/{n}/{v}")
            for n, v in sorted(versions) if n in SCHEMAS]


@router.get("/schemas/{name}/{version}", response_class=JSONResponse,
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
