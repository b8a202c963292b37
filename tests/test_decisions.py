"""The review desk's store without a browser: the final-decision rule, undo, the queue order, restarts, agreement,
and WebReviewer waiting for decisions made from another thread."""
import threading
import time

import numpy as np
import pytest

from review.decisions import Answer, Decisions, cohen_kappa, final_answer
from review.web import WebReviewer, video_key

E, N, U = Answer.EMERGENCE, Answer.NON_EMERGENCE, Answer.UNSURE


def entries(ids):
    return [(video_key(i), {"video_id": i}, 0, 0.9) for i in ids]


def test_final_answer_rule():
    assert final_answer([]) is None and final_answer([U]) is None
    assert final_answer([E]) == 1 and final_answer([N, U]) == 0
    assert final_answer([E, N]) is None, "two reviewers who disagree wait for a third"
    assert final_answer([E, N, E]) == 1 and final_answer([E, N, N, U]) == 0
    assert final_answer([E], min_decisive=2) is None and final_answer([E, E], min_decisive=2) == 1


def test_cohen_kappa():
    assert cohen_kappa([1, 0, 1, 0], [1, 0, 1, 0]) == pytest.approx(1.0)
    assert cohen_kappa([1, 0, 1, 0], [0, 1, 0, 1]) == pytest.approx(-1.0)
    # po = 0.75; pa = 0.5, pb = 0.25 -> pe = 0.5 -> kappa 0.5
    assert cohen_kappa([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(0.5)
    assert cohen_kappa([1, 1], [1, 1]) is None and cohen_kappa([], []) is None


def test_queue_order_unsure_undo_and_restart(tmp_path):
    d = Decisions(tmp_path / "desk.sqlite")
    seqs = d.enqueue("training", entries([7, 3, 9]))
    assert [i.key for i in d.items("training")] == ["video:7", "video:3", "video:9"], "the order the loop enqueued"
    assert d.enqueue("training", entries([3])) == [seqs[1]], "an item enqueued again keeps its place"
    a, b, c = seqs
    assert d.next_for("ann", "training") == a
    assert d.next_for("ann", "training", after=a) == b and d.next_for("ann", "training", after=c) == a
    d.decide(a, "ann", U)
    assert d.queue_for("ann", "training") == [b, c, a], "unsure goes back for a later look"
    assert d.queue_for("bob", "training") == [b, c, a], "fresh items before another reviewer's unsure ones"
    d.decide(b, "ann", E)
    d.decide(c, "ann", N)
    assert d.finals(["video:7", "video:3", "video:9"]) == {"video:7": None, "video:3": 1, "video:9": 0}
    assert d.undo("ann") == c and d.final(c) is None, "undo withdraws the latest decision"
    assert d.undo("ann") == b and d.undo("ann") == a and d.undo("ann") is None, "repeated undos go further back"
    d.decide(a, "ann", N)
    d.decide(a, "ann", E)  # a second thought replaces the first
    reopened = Decisions(tmp_path / "desk.sqlite")  # a restarted desk sees everything
    assert reopened.final(a) == 1 and reopened.queue_for("ann", "training") == [b, c]
    states = [s for _, s in reopened.history("training", "ann")]
    assert states == ["undone", "undone", "undone", "replaced", "active"]
    with pytest.raises(KeyError, match="no review item 99"):
        reopened.decide(99, "ann", E)
    with pytest.raises(ValueError, match="reviewer's name"):
        reopened.decide(a, " ", E)


def test_disagreement_goes_to_a_third_reviewer_and_agreement_is_reported(tmp_path):
    d = Decisions(tmp_path / "desk.sqlite")
    s = d.enqueue("training", entries(range(5)))
    for k, (ann, bob) in enumerate([(E, E), (N, N), (E, N), (N, N), (E, E)]):
        d.decide(s[k], "ann", ann)
        d.decide(s[k], "bob", bob)
    assert d.final(s[2]) is None
    assert d.queue_for("ann", "training") == [] and d.queue_for("bob", "training") == [], "neither can settle their own tie"
    assert d.queue_for("cy", "training") == [s[2]]
    assert d.progress("training", "ann").for_others == 1
    d.decide(s[2], "cy", N)
    assert d.final(s[2]) == 0, "the majority decides"
    a = d.agreement("training")
    assert a["items"] == 5 and a["unanimous"] == 4 and a["fraction_agreeing"] == pytest.approx(0.8)
    pair = next(p for p in a["pairs"] if p["reviewers"] == ["ann", "bob"])
    assert pair["items"] == 5 and pair["fraction_agreeing"] == pytest.approx(0.8)
    # ann 1,0,1,0,1 ; bob 1,0,0,0,1: po 0.8, pe 0.6*0.4 + 0.4*0.6 = 0.48
    assert pair["cohen_kappa"] == pytest.approx((0.8 - 0.48) / 0.52)
    assert a["reviewers"]["cy"] == {"decisive": 1, "unsure": 0}


def test_progress_estimates_time_left_from_the_pace(tmp_path):
    d = Decisions(tmp_path / "desk.sqlite")
    s = d.enqueue("training", entries(range(6)))
    for k, at in enumerate(["2026-01-01T10:00:00.000+00:00", "2026-01-01T10:00:10.000+00:00",
                            "2026-01-01T10:00:30.000+00:00", "2026-01-01T11:00:00.000+00:00"]):  # the last after a break
        d.decide(s[k], "ann", E, at=at)
    p = d.progress("training", "ann")
    assert (p.done, p.total, p.left) == (4, 6, 2)
    assert p.pace_s == pytest.approx(15.0) and p.eta_s == pytest.approx(30.0)
    assert d.progress("training", "newcomer").pace_s == pytest.approx(15.0), "everyone's pace until they have their own"


def test_web_reviewer_waits_for_every_decision_and_resumes(tmp_path):
    d = Decisions(tmp_path / "desk.sqlite")

    class Store:
        path = tmp_path / "store.zarr"

    logged = []
    reviewer = WebReviewer(d, url="http://desk/", poll_s=0.05, log_every_s=0.0, progress=logged.append)
    out = {}
    loop = threading.Thread(target=lambda: out.setdefault("a", reviewer.review(Store(), np.array([5, 2]), np.array([0, 1]),
                                                                                 np.array([0.8, 0.3]))))
    loop.start()
    deadline = time.time() + 10
    while len(d.items("training")) < 2 and time.time() < deadline:
        time.sleep(0.02)
    first, second = (i.seq for i in d.items("training"))
    d.decide(first, "ann", U)
    d.decide(second, "ann", N)
    time.sleep(0.3)
    assert loop.is_alive(), "an unsure item is not a decision"
    d.decide(first, "bob", E)
    loop.join(10)
    assert out["a"].tolist() == [1, 0] and reviewer.looks == 2
    assert any("waiting for 2 of 2 decisions" in line and "http://desk/" in line for line in logged)
    assert d.meta("store") == str(Store.path.resolve())
    again = WebReviewer(d, poll_s=0.05, progress=logged.append)  # train-ensemble rerun: nothing asked again
    assert again.review(Store(), np.array([5, 2]), np.array([0, 1]), np.array([0.8, 0.3])).tolist() == [1, 0]
    assert again.looks == 0


def test_the_rule_is_the_desks_and_persists(tmp_path):
    Decisions(tmp_path / "desk.sqlite", min_decisive=2)
    d = Decisions(tmp_path / "desk.sqlite")  # another process (train-ensemble waiting) applies the same rule
    assert d.min_decisive == 2
    (s,) = d.enqueue("training", entries([1]))
    d.decide(s, "ann", E)
    assert d.final(s) is None and d.queue_for("bob", "training") == [s]
    d.decide(s, "bob", E)
    assert d.finals(["video:1"]) == {"video:1": 1}
    with pytest.raises(ValueError, match="at least 1"):
        Decisions(tmp_path / "desk.sqlite", min_decisive=0)
    with pytest.raises(ValueError, match="is in queue 'training', not 'alerts'"):
        d.enqueue("alerts", entries([1]))
