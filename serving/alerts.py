"""The alert lifecycle of one patch on one disk passage.

States: ``idle`` → ``open`` when the ensemble median reaches the bundle's
threshold; while open, an ``updated`` event when the onset estimate moves by
``onset_frames`` or more, or the median by ``probability_step`` or more,
since the last event; ``withdrawn`` when the median falls below
``threshold − hysteresis`` (back to idle; a later opening gets the next
sequence number); ``closed`` when the patch leaves the disk (final).

Ids are derived, not drawn: ``<patch>/<passage start>/<n>`` for the n-th
opening in a passage, and each event carries ``<alert id>#<seq>``, so a
restarted service that replays the same frames produces the same ids and
consumers can drop duplicates.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

SCHEMA_VERSION = "1.0"


@dataclass(frozen=True)
class AlertPolicy:
    """When to open, update and withdraw (probabilities are ensemble medians in [0, 1])."""

    threshold: float
    hysteresis: float = 0.1
    onset_frames: int = 3
    probability_step: float = 0.1


@dataclass
class AlertState:
    """Persistable per-patch alert state for the current passage."""

    patch_id: str
    passage: str
    status: str = "idle"  # idle | open | closed
    openings: int = 0
    seq: int = 0
    last_onset: int | None = None
    last_median: float | None = None
    history: list[dict] = field(default_factory=list)

    @property
    def alert_id(self) -> str | None:
        return f"{self.patch_id}/{self.passage}/{self.openings}" if self.openings else None

    def to_dict(self) -> dict:
        return asdict(self)


def step(state: AlertState, policy: AlertPolicy, score: dict, on_disk: bool) -> list[dict]:
    """Advance ``state`` (in place) with one cadence's score; return the events to publish.

    ``score`` holds at least ``median`` (float) and ``onset_frame`` (int);
    every key of it is copied into the event.
    """
    if state.status == "closed":
        return []
    events = []
    median = float(score["median"])
    if not on_disk:
        if state.status == "open":
            events.append(_event(state, "closed", score))
        state.status = "closed"
        return events
    if state.status == "idle" and median >= policy.threshold:
        state.status, state.openings, state.seq = "open", state.openings + 1, 0
        events.append(_event(state, "opened", score))
    elif state.status == "open":
        if median < policy.threshold - policy.hysteresis:
            events.append(_event(state, "withdrawn", score))
            state.status = "idle"
        elif (abs(int(score["onset_frame"]) - state.last_onset) >= policy.onset_frames
              or abs(median - state.last_median) >= policy.probability_step):
            events.append(_event(state, "updated", score))
    return events


def _event(state: AlertState, kind: str, score: dict) -> dict:
    state.seq += 1
    state.last_onset, state.last_median = int(score["onset_frame"]), float(score["median"])
    event = {
        "schema_version": SCHEMA_VERSION,
        "event": kind,
        "alert_id": state.alert_id,
        "event_id": f"{state.alert_id}#{state.seq}",
        "patch_id": state.patch_id,
        "passage": state.passage,
        **score,
    }
    state.history.append({"event": kind, "event_id": event["event_id"], "median": state.last_median,
                          "onset_frame": state.last_onset})
    return event
