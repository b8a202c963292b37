"""The alert state machine on its own: typed scores in, events out (no ONNX, no FITS)."""
import pytest

from contract.events import (
    AlertStatus,
    Box,
    EnsembleProbability,
    EventKind,
    LonLat,
    Onset,
    PatchPosition,
    Provenance,
    Reason,
    Region,
    Score,
)
from serving.alerts import AlertPolicy, AlertState, step

POLICY = AlertPolicy(threshold=0.5, hysteresis=0.1, onset_frames=3, probability_step=0.1)
PROVENANCE = Provenance(instrument="SDO/HMI", series="hmi.M_720s_nrt", file="x.fits", t_obs="2000-06-02T08:00:00.000",
                        t_rec=None, quality=0, model_version="test", bundle_digest="sha256:" + "0" * 64)
REGION = Region(bbox=Box(lon_min=0, lon_max=15, lat_min=0, lat_max=15), field_floor_G=50, flux_positive_Mx=1e21,
                flux_negative_Mx=1e21, flux_positive_change_Mx=0, flux_negative_change_Mx=0, cutout="/x.png")


def score(median: float, onset: int = 10, frame: int = 20, observed_from: int = 0) -> Score:
    return Score(simulated=False, provenance=PROVENANCE, patch=PatchPosition(id="L007.50N07.50", carrington=LonLat(lon=7.5, lat=7.5),
                                                            stonyhurst=LonLat(lon=-20.0, lat=7.5)),
                 passage_start="2000-06-01T00:00:00.000", frame=frame, frame_time="2000-06-02T08:00:00.000",
                 probability=EnsembleProbability(median=median, p25=median, p75=median, members=[median],
                                                 stable=True),
                 onset=Onset(frame=onset, time_utc="2000-06-01T16:00:00.000", uncertainty_hours=0.0), threshold=0.5,
                 observed_from=observed_from)


def run(medians_onsets, state=None, ended=None):
    state = state or AlertState("L007.50N07.50", "20000601T0000")
    kinds = []
    for median, onset in medians_onsets:
        kinds += [e.kind.value for e in step(state, POLICY, score(median, onset), ended)]
    return state, kinds


def test_opens_strictly_above_the_threshold():
    state, kinds = run([(0.5, 10)])
    assert kinds == [] and state.status is AlertStatus.idle
    state, kinds = run([(0.51, 10)])
    assert kinds == ["opened"] and state.status is AlertStatus.open and state.alert_id == "L007.50N07.50/20000601T0000/1"


def test_flux_there_when_observation_began_is_not_an_emergence():
    """A region that rotated in (onset at frame 0), or that was on the disk when the service started
    mid-passage (onset at the first observed frame, the earlier ones filled), opens nothing; a rise
    after observation began does."""
    state = AlertState("L007.50N07.50", "20000601T0000")
    assert step(state, POLICY, score(0.9, onset=0, frame=5)) == []
    assert step(state, POLICY, score(0.3, onset=40, frame=40, observed_from=40)) == []
    assert state.status is AlertStatus.idle and not state.present_at_start
    events = step(state, POLICY, score(0.9, onset=44, frame=46, observed_from=40))
    assert [e.kind for e in events] == [EventKind.opened]


def test_a_passage_that_scores_high_on_its_first_observed_frame_alerts_only_after_it_fell_back():
    state = AlertState("L007.50N07.50", "20000601T0000")
    assert step(state, POLICY, score(0.8, onset=40, frame=40, observed_from=40)) == []
    assert state.present_at_start
    assert step(state, POLICY, score(0.9, onset=41, frame=41, observed_from=40)) == []  # still there
    assert step(state, POLICY, score(0.45, onset=41, frame=42, observed_from=40)) == []  # not yet below 0.4
    assert state.present_at_start
    assert step(state, POLICY, score(0.3, onset=41, frame=43, observed_from=40)) == []
    assert not state.present_at_start
    events = step(state, POLICY, score(0.9, onset=60, frame=61, observed_from=40))  # a new rise
    assert [e.kind for e in events] == [EventKind.opened]
    assert AlertState(**state.to_dict()) == state  # persisted with the rest


def test_a_tile_opens_no_alert_while_a_tile_sharing_area_with_it_has_one():
    state = AlertState("L007.50N07.50", "20000601T0000")
    assert step(state, POLICY, score(0.9), neighbour_open=True) == []
    assert [e.kind for e in step(state, POLICY, score(0.9))] == [EventKind.opened]


def test_updates_on_onset_or_probability_moves_only():
    _, kinds = run([(0.6, 10), (0.62, 11), (0.65, 12)])  # small moves: nothing new to say
    assert kinds == ["opened"]
    _, kinds = run([(0.6, 10), (0.6, 13)])  # the onset moved by 3 frames since the last event
    assert kinds == ["opened", "updated"]
    _, kinds = run([(0.6, 10), (0.72, 10), (0.77, 10), (0.83, 10)])  # 0.1 since the last *event*, not the last score
    assert kinds == ["opened", "updated", "updated"]


def test_hysteresis_withdraws_below_threshold_minus_hysteresis_and_reopens_with_a_new_id():
    state, kinds = run([(0.55, 10), (0.48, 10), (0.46, 10)])
    assert kinds == ["opened"] and state.status is AlertStatus.open  # inside the hysteresis band
    state, kinds = run([(0.39, 10)], state)
    assert kinds == ["withdrawn"] and state.status is AlertStatus.idle
    state, kinds = run([(0.55, 10)], state)
    assert kinds == ["opened"] and state.alert_id.endswith("/2") and state.seq == 1


def test_event_ids_are_sequential_per_opening():
    state = AlertState("L007.50N07.50", "20000601T0000")
    ids = [e.event_id for m, o in [(0.6, 10), (0.6, 20), (0.3, 20)] for e in step(state, POLICY, score(m, o))]
    assert ids == [f"L007.50N07.50/20000601T0000/1#{n}" for n in (1, 2, 3)]


@pytest.mark.parametrize("opened", [True, False])
def test_leaving_the_disk_closes_for_good(opened):
    state, _ = run([(0.6 if opened else 0.2, 10)])
    _, kinds = run([(0.2, 10)], state, ended=Reason.left_disk)
    assert kinds == (["closed"] if opened else []) and state.status is AlertStatus.closed
    assert run([(0.9, 10)], state)[1] == [], "a closed passage never alerts again"


def test_state_survives_a_round_trip_through_its_dict():
    state, _ = run([(0.6, 10), (0.6, 14)])
    again = AlertState(**state.to_dict())
    assert again == state and again.status is AlertStatus.open
    assert [e.kind for e in step(again, POLICY, score(0.2, 14))] == [EventKind.withdrawn]


def test_each_event_supersedes_the_last_and_says_why_it_ended():
    state = AlertState("L007.50N07.50", "20000601T0000")
    scores = [score(m, o, frame=20 + i) for i, (m, o) in enumerate([(0.6, 10), (0.6, 20), (0.3, 20), (0.7, 21)])]
    decided = [(t, s) for s in scores for t in step(state, POLICY, s)]
    decided += [(t, scores[-1]) for t in step(state, POLICY, scores[-1], ended=Reason.video_full)]
    events = [t.event(s, "2026-11-27T00:00:00.000", REGION) for t, s in decided]
    assert [(e.event, e.supersedes, e.reason) for e in events] == [
        (EventKind.opened, None, None),
        (EventKind.updated, "L007.50N07.50/20000601T0000/1#1", None),
        (EventKind.withdrawn, "L007.50N07.50/20000601T0000/1#2", Reason.probability_fell),
        (EventKind.opened, None, None),  # a new alert: it replaces nothing
        (EventKind.closed, "L007.50N07.50/20000601T0000/2#1", Reason.video_full)]
    assert all(e.region == REGION and e.provenance == PROVENANCE for e in events)
    assert [e.frame for e in events] == [s.frame for _, s in decided], "each event carries the score it was decided on"


@pytest.mark.parametrize("emerged, kind, reason", [
    (True, EventKind.closed, Reason.emergence_phase_over),  # a region emerged: its new phase is over
    (False, EventKind.withdrawn, Reason.probability_fell)])  # nothing emerged: the alert was wrong
def test_a_falling_alert_is_closed_when_a_region_emerged_and_withdrawn_when_none_did(emerged, kind, reason):
    asked = []

    def emerged_since(onset: int) -> bool:
        asked.append(onset)
        return emerged

    state = AlertState("L007.50N07.50", "20000601T0000")
    assert [t.kind for t in step(state, POLICY, score(0.55, 10), emerged_since=emerged_since)] == [EventKind.opened]
    assert [t.kind for t in step(state, POLICY, score(0.47, 10), emerged_since=emerged_since)] == []
    assert not asked, "what the patch shows is asked only when an open alert's probability falls"
    [t] = step(state, POLICY, score(0.35, 10), emerged_since=emerged_since)
    assert (t.kind, t.reason) == (kind, reason) and asked == [10], "the change since the alert's onset"
    assert state.status is AlertStatus.idle, "the passage goes on: a later region opens the next alert"
    assert [t.kind for t in step(state, POLICY, score(0.7, 30))] == [EventKind.opened] and state.alert_id.endswith("/2")
