"""What an operator and an orchestrator ask: liveness, readiness and the Prometheus metrics."""
from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from contract.events import Health, Readiness
from serving.api.deps import ReaderDep, ServiceDep
from serving.api.problems import problem, problems

router = APIRouter()


@router.get("/health")
def health() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get("/ready", response_model=Readiness, responses=problems(503))
def ready(request: Request, service: ServiceDep, reader: ReaderDep) -> JSONResponse:
    """Readiness: the model bundle is loaded, the warm start is not under way, at least one frame has been
    ingested, and the live source (when there is one) has not failed its last polls. Not ready: 503, a problem with the same fields besides."""
    newest = reader.newest_frame()
    source = service.source_state
    warm = service.warm_start
    body = Readiness(ready=False, model_version=service.bundle.model_version, members=service.bundle.scorers,
                     newest_frame=newest[1] if newest else None,
                     source=source.as_dict() if source is not None else None,
                     warm_start=warm.as_dict()).model_dump(mode="json")
    waiting = ([f"warming up from the archive ({warm.frames} of {warm.end_slot - warm.first_slot} history frames)"]
               if warm.state == "warming" and warm.end_slot is not None and warm.first_slot is not None else []) + \
              (["no frame ingested yet"] if newest is None else []) + \
              ([f"the {source.name} source is failing its polls"] if source is not None and not source.healthy else [])
    if waiting:
        return problem(request, 503, "not ready: " + "; ".join(waiting), **body)
    return JSONResponse({**body, "ready": True})


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition format"}})
def metrics(service: ServiceDep) -> Response:
    """Prometheus metrics."""
    body, content_type = service.metrics.exposition()
    return Response(body, media_type=content_type)
