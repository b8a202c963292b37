"""The alert contract: typed scores, alert events and patch status, the single source of every payload.

The same models build the Kafka and JSON-lines payloads, the HTTP API's
OpenAPI response models, and the published JSON Schema in
``deploy/schemas/alert-event-<version>.schema.json`` (written by
``python -m contract.events``; a test checks the file matches).

Compatibility rule: within a major ``schema_version``, only new optional
fields are added; removing or changing a field bumps the major version, and
consumers must ignore fields they do not know. Version 2.0 dropped the
top-level copies ``median`` and ``onset_frame`` of ``probability.median`` and
``onset.frame``; 2.1 added ``observed_from``; 3.0 added ``simulated``,
``provenance`` (which took over ``model_version``), ``published``,
``reason``, ``supersedes`` and ``region``, and the status's ``final``;
its times are RFC 3339 with their zone (``Z``). 4.0: an alert whose
probability falls after a region emerged is ``closed`` with reason
``emergence_phase_over`` (not ``withdrawn``: a withdrawal now says nothing
emerged) and its patch's passage goes on, so ``closed`` is final only with
``left_disk`` or ``video_full``; the region's fluxes are spelled ``…_Mx``
(3.0: ``…_mx``); the topics carry the major version (``….v4``).
"""
from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

SCHEMA_VERSION = "4.0"
SCHEMA_DIR = Path(__file__).resolve().parents[1] / "deploy" / "schemas"

Probability = Annotated[float, Field(ge=0.0, le=1.0)]


def _utc(value: str) -> str:
    """An ISO 8601 UTC time as RFC 3339 wants it: with its zone, ``Z`` (astropy's ``isot`` has none)."""
    return value if value.endswith(("Z", "+00:00")) else value + "Z"


#: A UTC time: RFC 3339 (``2000-06-01T17:36:00.000Z``); a time without a zone is taken as UTC and given its ``Z``.
UtcTime = Annotated[str, AfterValidator(_utc), Field(json_schema_extra={"format": "date-time"})]


class EventKind(StrEnum):
    """What happened to an alert: ``opened``; ``updated``; ``withdrawn`` (the probability fell and nothing emerged:
    the alert was wrong); ``closed`` (it ended: the emergence phase of the region it reported is over, or the
    passage is over)."""

    opened = "opened"
    updated = "updated"
    withdrawn = "withdrawn"
    closed = "closed"


class AlertStatus(StrEnum):
    """Where a patch's alert stands in its passage."""

    idle = "idle"
    open = "open"
    closed = "closed"


class Reason(StrEnum):
    """Why an alert was withdrawn or closed."""

    probability_fell = "probability_fell"  # the median fell below threshold − hysteresis and nothing emerged
    emergence_phase_over = "emergence_phase_over"  # the median fell, and the patch shows the region that emerged
    left_disk = "left_disk"  # the patch centre passed the west limb
    video_full = "video_full"  # the passage's video is full (n_frames observed): the patch is no longer scored


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
    time_utc: UtcTime
    uncertainty_hours: float = Field(ge=0, description="half the members' 25th-75th percentile onset range")


class Provenance(_Model):
    """Where a score came from: the input frame and the model."""

    instrument: str = Field(description="the instrument that observed the frame, e.g. SDO/HMI, SOHO/MDI")
    series: str | None = Field(description="the DRMS series the frame is from (its header's DSNAME, else its JSOC "
                                           "file name's), e.g. hmi.M_720s_nrt; null when the file does not say")
    file: str = Field(description="the input file's name")
    t_obs: UtcTime = Field(description="UTC observation time of the frame")
    t_rec: str | None = Field(description="the frame's T_REC as its header writes it (TAI slot time); null without one")
    quality: int | None = Field(description="the instrument's QUALITY word (0 = good); null when the header has none")
    model_version: str = Field(description="the bundle's manifest model_version")
    bundle_digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$",
                               description="SHA-256 of the bundle's manifest.json, which holds every member file's SHA-256")


class Score(_Model):
    """One patch scored at one frame: the ensemble's masked score and onset estimate so far."""

    simulated: bool = Field(description="scored from frames of the synthetic Sun, not from observations: never a real alert")
    provenance: Provenance
    patch: PatchPosition
    passage_start: UtcTime = Field(description="UTC time of frame 0 (the patch centre at the east limb)")
    frame: int = Field(ge=0, description="index of the newest frame scored")
    frame_time: UtcTime = Field(description="UTC time of the frame the score was computed from")
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

    def payload_json(self) -> str:
        """The published JSON text: :meth:`payload` with sorted keys, as every topic, table and log carries it."""
        return json.dumps(self.payload(), sort_keys=True)


class Box(_Model):
    """A box in Carrington coordinates, deg; ``lon_min`` > ``lon_max`` for a box across 0°."""

    lon_min: float = Field(ge=0, lt=360)
    lon_max: float = Field(ge=0, lt=360)
    lat_min: float = Field(ge=-90, le=90)
    lat_max: float = Field(ge=-90, le=90)


class Region(_Model):
    """What the patch video shows at the event's frame: where the strong field is and how much flux it holds.

    Fluxes are line-of-sight, through the patch's pixels of |B| ≥ ``field_floor_G`` (their areas on the solar
    surface; no projection correction), so noise adds little; negative flux is given as a magnitude."""

    bbox: Box = Field(description="the pixels of |B| ≥ field_floor_G at the event's frame; the whole patch if none")
    field_floor_G: float = Field(gt=0, description="the field below which a pixel counts neither in bbox nor in the fluxes, G")
    flux_positive_Mx: float = Field(ge=0, description="positive flux at the event's frame, Mx")
    flux_negative_Mx: float = Field(ge=0, description="negative flux at the event's frame (magnitude), Mx")
    flux_positive_change_Mx: float = Field(description="positive flux at the event's frame minus at the onset frame, Mx")
    flux_negative_change_Mx: float = Field(description="negative flux (magnitude) at the event's frame minus at onset, Mx")
    cutout: str = Field(description="path of a PNG of the patch at onset and at the event's frame, on this service's API")


class AlertEvent(Score):
    """One event of an alert's lifecycle, as published on the alerts topic (key: patch id; header
    event_id) and by ``GET /alerts``. Probabilities are ensemble medians and percentiles of the members'
    sigmoid outputs; frames index the patch passage's video at the bundle's cadence."""

    model_config = ConfigDict(title="fluxwatch emergence alert event")

    schema_version: str = Field(SCHEMA_VERSION, pattern=r"^4\.[0-9]+$", description=(
        "major.minor of this contract; a reader of 4.0 reads any 4.x (a minor version only adds optional fields, which "
        "a reader ignores)"))
    event: EventKind
    alert_id: str = Field(description="<patch id>/<passage start YYYYMMDDTHHMM>/<n-th opening>; stable across restarts")
    event_id: str = Field(description="<alert id>#<sequence>; unique, the deduplication key")
    patch_id: str = Field(pattern=r"^L[0-9]{3}\.[0-9]{2}[NS][0-9]{2}\.[0-9]{2}$")
    passage: str
    published: UtcTime = Field(description="UTC time the service decided the event (committed it for publication); a replay "
                                       "of the same frames gives the same event_id and a later time")
    supersedes: str | None = Field(description="the event_id of this alert's previous event (its state until now); null "
                                               "for an opening")
    reason: Reason | None = Field(description="why the alert was withdrawn or closed; null for opened and updated")
    region: Region


class PatchStatus(Score):
    """A patch's latest score and alert status, as published on the compacted status topic (key: patch id)."""

    alert: AlertStatus
    final: bool = Field(False, description="the passage is over (the patch left the disk or its video is full): the "
                                           "patch's last status until it next rotates onto the disk; alert is closed")


class PatchSummary(_Model):
    """A patch on the disk now: ``GET /patches``."""

    patch_id: str
    passage_start: UtcTime
    alert: AlertStatus
    alert_id: str | None
    latest: Score | None


class HistoryPoint(_Model):
    frame: int
    frame_time: UtcTime
    median: Probability
    p25: Probability
    p75: Probability


class PatchDetail(_Model):
    """One patch's latest passage: ``GET /patches/{patch_id}``."""

    patch_id: str
    passage_start: UtcTime
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
    newest_frame: UtcTime | None = Field(description="UTC time of the newest frame ingested")
    source: dict | None = Field(description="the live source's poll state (None without one)")
    warm_start: dict = Field(description="the warm start from the source's archive: state (pending, warming, done, "
                                         "failed, off), UTC times filled from and to, frames, seconds, error")


class UploadAccepted(_Model):
    """``POST /upload``: the frame's header was checked; the frame is read and scored after the response."""

    accepted: str = Field(description="the file's name in the service's inbox")
    time: UtcTime = Field(description="UTC observation time of the frame, from its header")
    slot: int = Field(description="the frame's cadence slot")
    status: str = Field(description="the path of its status (GET: an UploadStatus)")


class UploadStatus(_Model):
    """``GET /uploads/{name}``: where an uploaded frame is."""

    accepted: str = Field(description="the file's name in the service's inbox")
    state: Literal["reading", "pending", "scored", "superseded", "rejected"] = Field(description=(
        "reading: waiting to be read; pending: read, waiting for its slot to be scored (a closer frame may replace "
        "it); scored; superseded: its slot has a closer frame, or was scored already; rejected: it cannot be read "
        "as a magnetogram"))
    reason: str | None = Field(None, description="why it was superseded or rejected")


class SchemaRef(_Model):
    """A published JSON Schema: ``GET /schemas``."""

    name: str = Field(description="alert-event (the alerts topics' payload) or patch-status (the status topics')")
    version: str = Field(description="its schema_version")
    current: bool = Field(description="the version this service publishes")
    url: str = Field(description="its path on this API")


#: The published schemas: the payloads of the alerts topic and of the status topic, by name.
SCHEMAS: dict[str, type[BaseModel]] = {"alert-event": AlertEvent, "patch-status": PatchStatus}


def json_schema(name: str = "alert-event") -> dict:
    """The published JSON Schema (draft 2020-12) of one of :data:`SCHEMAS`, at :data:`SCHEMA_VERSION`."""
    schema = SCHEMAS[name].model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://fluxwatch.invalid/schemas/{name}/{SCHEMA_VERSION}", **schema}


def schema_path(name: str) -> Path:
    """The file in ``deploy/schemas`` of a published schema, named with its version."""
    return SCHEMA_DIR / f"{name}-{SCHEMA_VERSION}.schema.json"


def render_schema(name: str = "alert-event") -> str:
    return json.dumps(json_schema(name), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # python -m contract.events [--check]: write (or check) deploy/schemas/
    if "--check" in sys.argv[1:]:
        sys.exit(0 if all(schema_path(n).is_file() and schema_path(n).read_text() == render_schema(n) for n in SCHEMAS) else 1)
    for name in SCHEMAS:
        schema_path(name).write_text(render_schema(name))
