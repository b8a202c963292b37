"""The alert lifecycle of one patch on one disk passage.

States (:class:`~contract.events.AlertStatus`):

- ``idle`` → ``open`` when the ensemble median calls an emergence
  (:func:`common.ensemble.detects`: above the alert threshold), provided that
  the passage is not marked ``present_at_start``, that the onset estimate lies
  after the first frame of the passage the service observed
  (``Score.observed_from``), and that no tile sharing area with it has an
  alert open (the overlapping-tiles option: one region, one alert). Flux
  already there when observation began is not an emergence the service saw:
  a region that rotated in over the limb has its onset at frame 0, and a
  passage the service saw only from mid-passage (a cold start, or missing
  frames) whose first observed frame already scores above the threshold is
  marked ``present_at_start`` until its median falls below
  ``threshold − hysteresis`` (``AlertPolicy.present_at_start``, on by default);
- while open, an ``updated`` event when the onset estimate moves by
  ``onset_frames`` or more, or the median by ``probability_step`` or more,
  since the last event;
- when the median falls below ``threshold − hysteresis`` (back to idle; a
  later opening gets the next sequence number): ``closed`` with reason
  ``emergence_phase_over`` when the patch shows a region that emerged about
  the onset the alert last reported (its bipolar new flux reached
  :data:`serving.region.EMERGED_MX`, :func:`serving.region.emerged`: a real
  region whose growth has slowed is not new any more, and is not a false
  alarm), else ``withdrawn`` with reason ``probability_fell`` (nothing
  emerged: the alert was wrong);
- ``closed`` when the passage ends (final), with reason ``left_disk`` or
  ``video_full``.

Each event after the opening ``supersedes`` the alert's previous event, as
SWPC's updates and cancellations name the message they replace.

Ids are derived, not drawn: ``<patch>/<passage start>/<n>`` for the n-th
opening in a passage, and each event carries ``<alert id>#<seq>``, so a
restarted service that replays the same frames produces the same ids and
consumers can drop duplicates.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from common.clock import slot_datetime
from common.ensemble import detects
from contract.events import AlertEvent, AlertStatus, EventKind, Reason, Region, Score


@dataclass(frozen=True)
class AlertPolicy:
    """When to open, update and withdraw (probabilities are ensemble medians in [0, 1])."""

    threshold: float
    hysteresis: float = 0.1
    onset_frames: int = 3
    probability_step: float = 0.1
    present_at_start: bool = True


def passage_label(start_slot: int) -> str:
    """The passage part of alert ids: the UTC start time as ``YYYYMMDDTHHMM``."""
    return slot_datetime(start_slot).strftime("%Y%m%dT%H%M")


@dataclass
class AlertState:
    """Persistable per-patch alert state for the current passage."""

    patch_id: str
    passage: str
    status: AlertStatus = AlertStatus.idle
    openings: int = 0
    seq: int = 0
    last_onset: int | None = None
    last_median: float | None = None
    present_at_start: bool = False
    history: list[dict] = field(default_factory=list)

    def __post_init__(self):
        self.status = AlertStatus(self.status)

    @property
    def alert_id(self) -> str | None:
        return f"{self.patch_id}/{self.passage}/{self.openings}" if self.openings else None

    def to_dict(self) -> dict:
        return {**asdict(self), "status": self.status.value}


@dataclass(frozen=True)
class Transition:
    """One event the state machine decided: what happened, to which alert, and why; :meth:`event` makes the
    published :class:`~contract.events.AlertEvent` of it."""

    kind: EventKind
    patch_id: str
    passage: str
    alert_id: str
    event_id: str
    supersedes: str | None  # the alert's previous event
    reason: Reason | None  # for withdrawn and closed

    def event(self, score: Score, published: str, region: Region) -> AlertEvent:
        """The event with the score it was decided on, the time it was decided (ISO UTC) and its region."""
        return AlertEvent(event=self.kind, alert_id=self.alert_id, event_id=self.event_id, patch_id=self.patch_id,
                          passage=self.passage, published=published, supersedes=self.supersedes, reason=self.reason,
                          region=region, **dict(score))


def step(state: AlertState, policy: AlertPolicy, score: Score, ended: Reason | None = None,
         neighbour_open: bool = False, emerged_since: Callable[[int], bool] | None = None) -> list[Transition]:
    """Advance ``state`` (in place) with one cadence's score; return the events to publish.

    ``ended``: the passage is over, for this reason (:attr:`Reason.left_disk` or :attr:`Reason.video_full`).
    ``neighbour_open``: a tile sharing area with this one has an alert open (this one then opens none).
    ``emerged_since``: whether the patch shows a region that emerged about a given frame (asked, with the onset the
    alert last reported, only when an open alert's probability falls; without it the alert is withdrawn).
    """
    if state.status is AlertStatus.closed:
        return []
    median = score.probability.median
    if ended is not None:
        events = [_transition(state, EventKind.closed, score, ended)] if state.status is AlertStatus.open else []
        state.status = AlertStatus.closed
        return events
    if policy.present_at_start and score.frame == score.observed_from > 0 and detects(median, policy.threshold):
        state.present_at_start = True
    elif state.present_at_start and median < policy.threshold - policy.hysteresis:
        state.present_at_start = False
    if (state.status is AlertStatus.idle and detects(median, policy.threshold) and not state.present_at_start
            and score.onset.frame > score.observed_from and not neighbour_open):
        state.status, state.openings, state.seq = AlertStatus.open, state.openings + 1, 0
        return [_transition(state, EventKind.opened, score)]
    if state.status is AlertStatus.open:
        if state.last_onset is None or state.last_median is None:  # both set by the opening event
            raise ValueError(f"alert {state.alert_id} is open without an opening event")
        if median < policy.threshold - policy.hysteresis:
            state.status = AlertStatus.idle
            if emerged_since is not None and emerged_since(state.last_onset):
                return [_transition(state, EventKind.closed, score, Reason.emergence_phase_over)]
            return [_transition(state, EventKind.withdrawn, score, Reason.probability_fell)]
        if (abs(score.onset.frame - state.last_onset) >= policy.onset_frames
                or abs(median - state.last_median) >= policy.probability_step):
            return [_transition(state, EventKind.updated, score)]
    return []


def _transition(state: AlertState, kind: EventKind, score: Score, reason: Reason | None = None) -> Transition:
    if state.alert_id is None:
        raise ValueError(f"a {kind} event for patch {state.patch_id} without an alert id")
    previous = f"{state.alert_id}#{state.seq}" if state.seq else None
    state.seq += 1
    state.last_onset, state.last_median = score.onset.frame, score.probability.median
    transition = Transition(kind, state.patch_id, state.passage, state.alert_id, f"{state.alert_id}#{state.seq}",
                            previous, reason)
    state.history.append({"event": kind.value, "event_id": transition.event_id, "median": state.last_median,
                          "onset_frame": state.last_onset})
    return transition


def is_new_onset(kind: EventKind, previous_onset: int | None, onset: int, onset_frames: int) -> bool:
    """Whether an event of ``kind`` with onset estimate ``onset`` (frame) reports a new emergence on an open alert:
    an ``updated`` event whose onset moved later by ``onset_frames`` or more since the alert's previous event
    (``previous_onset``), as when a region emerges in a tile whose alert an earlier, smaller one opened."""
    return kind is EventKind.updated and previous_onset is not None and onset - previous_onset >= onset_frames


def emergence_events(events: list[AlertEvent], onset_frames: int = AlertPolicy.onset_frames) -> list[AlertEvent]:
    """The events among ``events`` that report an emergence: every ``opened`` event, and every new onset
    (:func:`is_new_onset`, against the event it supersedes)."""
    onset_of = {e.event_id: e.onset.frame for e in events}
    return [e for e in events if e.event is EventKind.opened
            or is_new_onset(e.event, onset_of.get(e.supersedes or ""), e.onset.frame, onset_frames)]
