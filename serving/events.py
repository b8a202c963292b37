"""The alert contract: typed scores, alert events and patch status, the single source of every payload.

The same models build the Kafka and JSON-lines payloads, the HTTP API's
OpenAPI response models, and the published JSON Schema in
``deploy/schemas/alert-event.schema.json`` (written by
``python -m serving.events``; a test checks the file matches).

Compatibility rule: within a major ``schema_version``, only new optional
fields are added; removing or changing a field bumps the major version.
Version 2.0 dropped the top-level copies ``median`` and ``onset_frame`` of
``probability.median`` and ``onset.frame``; 2.1 added ``observed_from``.
"""
from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "2.1"
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "deploy" / "schemas" / "alert-event.schema.json"

Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class EventKind(StrEnum):
    """What happened to an alert."""

    opened = "opened"
    updated = "updated"
    withdrawn = "withdrawn"
    closed = "closed"


class AlertStatus(StrEnum):
    """Where a patch's alert stands in its passage."""

    idle = "idle"
    open = "open"
    closed = "closed"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class LonLat(_Model):
    lon: float = Field(description="longitude, deg")
    lat: float = Field(ge=-90, le=90, description="latitude, deg")


class PatchPosition(_Model):
    id: str
    carrington: LonLat = Field(description="patch centre, Carrington deg")
    stonyhurst: LonLat = Field(description="patch centre at frame_time, Stonyhurst deg")


class EnsembleProbability(_Model):
    median: Probability = Field(description="the ensemble's probability: median over members")
    p25: Probability
    p75: Probability
    members: list[Probability] = Field(min_length=1, description="each member's sigmoid output")
    stable: bool = Field(description="the threshold lies outside [p25, p75]")


class Onset(_Model):
    frame: int = Field(ge=0, description="ensemble median of each member's frame of maximum probability gradient")
    time_utc: str = Field(json_schema_extra={"format": "date-time"})
    uncertainty_hours: float = Field(ge=0, description="half the members' 25th-75th percentile onset range")


class Score(_Model):
    """One patch scored at one frame: the ensemble's masked score and onset estimate so far."""

    model_version: str = Field(description="the bundle's manifest model_version")
    patch: PatchPosition
    passage_start: str = Field(json_schema_extra={"format": "date-time"},
                               description="UTC time of frame 0 (the patch centre at the east limb)")
    frame: int = Field(ge=0, description="index of the newest frame scored")
    frame_time: str = Field(json_schema_extra={"format": "date-time"},
                            description="UTC time of the frame the score was computed from")
    probability: EnsembleProbability
    onset: Onset
    threshold: Probability = Field(description="the threshold on the median that alerts open above: the bundle's operating "
                                               "point for its target false-alarm rate, else its training threshold")
    observed_from: int = Field(0, ge=0, description=(
        "the first frame of the passage the service observed; earlier frames repeat it (a service started "
        "mid-passage, or missing frames). Flux already there at this frame is not an emergence the service saw, "
        "so an alert opens only on an onset estimate after it"))

    def payload(self) -> dict:
        """The published JSON object (also of the subclasses: alert events, patch status)."""
        return self.model_dump(mode="json")


class AlertEvent(Score):
    """One event of an alert's lifecycle, as published on the alerts topic (key: patch id; header
    event_id) and by ``GET /alerts``. Probabilities are ensemble medians and percentiles of the members'
    sigmoid outputs; frames index the patch passage's video at the bundle's cadence."""

    model_config = ConfigDict(title="fluxwatch emergence alert event")

    schema_version: Literal["2.1"] = "2.1"
    event: EventKind
    alert_id: str = Field(description="<patch id>/<passage start YYYYMMDDTHHMM>/<n-th opening>; stable across restarts")
    event_id: str = Field(description="<alert id>#<sequence>; unique, the deduplication key")
    patch_id: str = Field(pattern=r"^L[0-9]{3}\.[0-9]{2}[NS][0-9]{2}\.[0-9]{2}$")
    passage: str


class PatchStatus(Score):
    """A patch's latest score and alert status, as published on the compacted status topic (key: patch id)."""

    alert: AlertStatus


class PatchSummary(_Model):
    """A patch on the disk now: ``GET /patches``."""

    patch_id: str
    passage_start: str
    alert: AlertStatus
    alert_id: str | None
    latest: Score | None


class HistoryPoint(_Model):
    frame: int
    frame_time: str
    median: Probability
    p25: Probability
    p75: Probability


class PatchDetail(_Model):
    """One patch's latest passage: ``GET /patches/{patch_id}``."""

    patch_id: str
    passage_start: str
    passage_status: Literal["open", "closed"]
    history: list[HistoryPoint] = Field(description="the masking curve so far, one point per scored frame")
    onset: Onset | None
    alert: dict = Field(description="the alert state of the passage")


class AlertPage(_Model):
    """One page of alert events: ``GET /alerts``."""

    items: list[AlertEvent] = Field(description="events in the order they were published (their frames' order, "
                                                "but a late frame's events come after those already published)")
    next_cursor: str | None = Field(description="opaque, after the last event of this page (the request's cursor when "
                                                "the page is empty): pass it as ``cursor`` with the same filters for "
                                                "the next page, or later for the events published since; null when "
                                                "there is no event yet and no cursor was given")
    has_more: bool = Field(description="more events are published after this page now")


class Problem(_Model):
    """An error response (RFC 9457 problem details, ``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field("about:blank", description="a URI naming the problem type; about:blank: the status says it all")
    title: str = Field(description="the HTTP status phrase")
    status: int = Field(description="the HTTP status code")
    detail: str = Field(description="what went wrong with this request, in words")
    instance: str = Field(description="the path of the request")


class Health(_Model):
    """``GET /health``."""

    status: Literal["ok"]


class Readiness(_Model):
    """``GET /ready``: 200 with this when ready, else 503 with the same fields in a problem body."""

    ready: bool
    model_version: str
    members: int = Field(description="ensemble members in the bundle")
    newest_frame: str | None = Field(json_schema_extra={"format": "date-time"}, description="UTC time of the newest frame ingested")
    source: dict | None = Field(description="the live source's poll state (None without one)")


class UploadAccepted(_Model):
    """``POST /upload``: the frame was read and is scored after the response."""

    accepted: str = Field(description="the file's name in processed/")
    time: str = Field(json_schema_extra={"format": "date-time"}, description="UTC observation time of the frame")
    slot: int = Field(description="the frame's cadence slot")


def json_schema() -> dict:
    """The published JSON Schema of :class:`AlertEvent` (draft 2020-12)."""
    schema = AlertEvent.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://fluxwatch.invalid/schemas/alert-event/{SCHEMA_VERSION}", **schema}


def render_schema() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # python -m serving.events [--check]: write (or check) deploy/schemas/
    if "--check" in sys.argv[1:]:
        sys.exit(0 if SCHEMA_PATH.read_text() == render_schema() else 1)
    SCHEMA_PATH.write_text(render_schema())
