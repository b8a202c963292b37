"""The relabel loop's bookkeeping, the reviewers, the threshold and the splits."""
import io
import json

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.time import Time
from sunpy.coordinates import sun

from common.ensemble import is_stable
from training.evaluate import onset_error_days, pr_crossing_threshold
from training.queue import PaperQueue, RankedQueue, class_thresholds, flagged, self_confidence
from training.relabel import ResumeError, ratio, run_relabel_loop
from training.review import OracleReviewer, ReviewerErrors, SimulatedReviewer, TerminalReviewer
from training.splits import relabel_folds, uncertainty_folds


class TruthStore:
    """Just enough of a DatasetStore for reviewers: a catalog with the truth, and videos."""

    def __init__(self, truth):
        self.catalog = pd.DataFrame({"video_id": np.arange(len(truth)), "true_class": truth})

    def video(self, i):
        return np.zeros((10, 90, 90), np.float32)


def test_splits_are_the_papers():
    folds = relabel_folds()
    assert [f.val_months for f in folds] == [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10)]
    assert all(set(f.train_months) | set(f.val_months) == set(range(1, 11)) for f in folds)
    unc = uncertainty_folds()
    assert [f.model for f in unc] == [6, 7, 8, 9]
    assert all(9 not in f.train_months + f.val_months and 10 not in f.train_months + f.val_months for f in unc)


def test_ratio():
    assert ratio(2, 6) == 0.5 and ratio(0, 4) == 0.0 and ratio(3, 3) == float("inf") and ratio(0, 0) == 0.0


def crude_catalog(rng: np.random.Generator, n: int, flips: int):
    """(truth, crude labels with ``flips`` of them wrong, months 1–10) for ``n`` videos, drawn from ``rng``."""
    truth = rng.integers(0, 2, n)
    crude = truth.copy()
    flipped = rng.choice(n, flips, replace=False)
    crude[flipped] = 1 - crude[flipped]
    return truth, crude, rng.integers(1, 11, n)


def test_loop_reviews_only_new_disagreements_and_stops(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    truth, crude, months = crude_catalog(rng, n, 40)

    def model(labels, n_pass):
        # a model that has learned the truth but errs on a fixed 10% of videos
        p = np.where(truth == 1, 0.9, 0.1)
        p[::10] = 1 - p[::10]
        return p

    oracle = OracleReviewer()
    labels, reviewed, records = run_relabel_loop(np.arange(n), months, crude, model, oracle, TruthStore(truth), tmp_path)
    first = records[0]
    # disagreements = mislabels the model gets right + videos the model gets wrong where the label is right
    wrong_model = np.zeros(n, bool)
    wrong_model[::10] = True
    assert first.new_fp + first.new_fn == int(((crude != truth) ^ wrong_model).sum())
    assert first.model_mistakes == int((wrong_model & (crude == truth)).sum())
    assert first.ratio == pytest.approx(first.model_mistakes / first.relabelled)
    assert oracle.looks == reviewed.sum() == first.reviewed_total
    # labels are now wrong only where the model agreed with a wrong crude label
    assert ((labels != truth) == (wrong_model & (crude != truth))).all()
    assert records[-1].ratio <= 0.5 or records[-1].relabelled == 0
    # persisted and resumable without reviewing again
    assert json.loads((tmp_path / "pass_1.json").read_text())["record"]["number"] == 1
    again = OracleReviewer()
    labels2, _, records2 = run_relabel_loop(np.arange(n), months, crude, model, again, TruthStore(truth), tmp_path)
    assert again.looks == 0 and (labels2 == labels).all() and len(records2) == len(records)


def test_terminal_reviewer_shows_montage_and_reads_answers(tmp_path):
    out = io.StringIO()
    reviewer = TerminalReviewer(tmp_path, stdin=io.StringIO("maybe\ny\nn\n"), stdout=out)
    answers = reviewer.review(TruthStore(np.array([0, 1])), np.array([0, 1]), np.array([0, 1]), np.array([0.8, 0.2]))
    assert answers.tolist() == [1, 0] and reviewer.looks == 2
    assert (tmp_path / "video_00000.png").stat().st_size > 1000
    assert "model probability 0.80" in out.getvalue() and out.getvalue().count("emergence? [y/n]") == 3
    with pytest.raises(EOFError):
        TerminalReviewer(tmp_path, stdin=io.StringIO(""), stdout=io.StringIO()).review(
            TruthStore(np.array([0])), np.array([0]), np.array([0]), np.array([0.5]))


def test_threshold_at_precision_recall_crossing():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 2000)
    scores = np.clip(0.6 + 0.25 * (labels - 0.5) * 2 + rng.normal(0, 0.2, 2000) - 0.1, 0, 1)
    t, grid, precision, recall = pr_crossing_threshold(scores, labels)
    k = np.searchsorted(grid, t)
    assert abs(precision[k] - recall[k]) == pytest.approx(np.abs(precision - recall).min())
    assert 0.4 < t < 0.8


def test_stability_and_onset_errors():
    assert is_stable(np.array([0.7, 0.5]), np.array([0.9, 0.7]), 0.6).tolist() == [True, False]
    e = onset_error_days(np.array([15, 30]), np.array([0, 15]), cadence_min=96)
    assert e["p50"] == pytest.approx(1.0)


def noisy_model(truth, seed=1):
    """Out-of-fold probabilities of a model that mostly knows the truth: confident where right, less so where wrong."""
    rng = np.random.default_rng(seed)
    wrong = rng.uniform(size=len(truth)) < 0.12
    confidence = np.where(wrong, rng.uniform(0.25, 0.5, len(truth)), rng.uniform(0.55, 0.99, len(truth)))
    return np.where(truth == 1, confidence, 1 - confidence), wrong


def test_confident_learning_thresholds_and_flags():
    p = np.array([0.9, 0.8, 0.4, 0.3, 0.6, 0.1])
    labels = np.array([1, 1, 1, 0, 0, 0])
    t0, t1 = class_thresholds(p, labels)
    assert t1 == pytest.approx(0.7) and t0 == pytest.approx((0.7 + 0.4 + 0.9) / 3)
    assert self_confidence(p, labels).tolist() == pytest.approx([0.9, 0.8, 0.4, 0.7, 0.4, 0.9])
    # label 1 at p 0.4: p(0) = 0.6 < t0 = 0.667, not flagged; label 0 at p 0.6 ≥ t1? no (0.6 < 0.7)
    assert flagged(p, labels).tolist() == [False, False, False, False, False, False]
    assert flagged(np.array([0.9, 0.8, 0.2, 0.3, 0.75, 0.1]), labels).tolist() == [False, False, True, False, True, False]


def test_ranked_queue_asks_likeliest_errors_first_and_stops_when_looks_stop_paying(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    truth, crude, months = crude_catalog(rng, n, 80)
    p, _ = noisy_model(truth)
    # a kind of video where the model is poor: its disagreements with the label are the model's fault
    tiles = rng.uniform(size=n) < 0.3
    p[tiles & (crude == truth)] = np.where(crude[tiles & (crude == truth)] == 1, 0.3, 0.7)
    kind = np.where(tiles, "tile", "region")

    results = {}
    for queue in (PaperQueue(), RankedQueue(batch=5, min_yield=0.3, agreement_looks=5)):
        oracle = OracleReviewer()
        labels, reviewed, records = run_relabel_loop(np.arange(n), months, crude, lambda labels, k: p, oracle,
                                                     TruthStore(truth), tmp_path / queue.name, queue=queue, strata=kind)
        results[queue.name] = (oracle.looks, float((labels == truth).mean()), records)
    paper_looks, paper_acc, _ = results["paper"]
    ranked_looks, ranked_acc, records = results["ranked"]
    first = records[0]
    assert first.stopped_early and first.agreement_looks == 5
    assert ranked_looks == sum(r.looks for r in records) < 0.75 * paper_looks
    assert ranked_acc >= paper_acc - 0.02  # a few of the least likely fixes left for fewer looks
    # the queue learnt that tile disagreements do not pay: a few looks there, most at regions
    tally = records[-1].strata
    tile_disagreements = int((tiles & ((p > 0.5).astype(int) != crude)).sum())
    assert tally["tile/label 1"][0] + tally["tile/label 0"][0] < 0.6 * tile_disagreements
    for stratum in ("region/label 0", "region/label 1"):
        assert tally[stratum][1] / tally[stratum][0] > 0.6 > 0.3 > tally["tile/label 0"][1] / tally["tile/label 0"][0]
    # the first batch: the five lowest self-confidence candidates of one stratum
    session = RankedQueue(batch=5).start(p, crude, np.zeros(n, bool), 0.5, 1, kind, {})
    batch = session.next_batch()
    conf = self_confidence(p, crude)
    stratum = {f"{kind[r]}/label {crude[r]}" for r in batch}
    assert len(batch) == 5 and len(stratum) == 1 and (np.diff(conf[batch]) >= 0).all()
    rest = session.by_stratum[stratum.pop()]
    assert conf[rest].min() >= conf[batch].max()
    assert ((p[session.agreements] > 0.5).astype(int) == crude[session.agreements]).all()


def test_ranked_queue_leaves_a_stratum_once_its_expected_yield_falls():
    labels = np.zeros(40, int)
    p = np.full(40, 0.9)  # forty disagreements in one stratum
    session = RankedQueue(batch=5, min_yield=0.3, agreement_looks=0).start(p, labels, np.zeros(40, bool), 0.5, 1)
    shown = 0
    while (rows := session.next_batch()) is not None:
        shown += len(rows)
        session.record(rows, np.zeros(len(rows), bool))  # none of them was the label's fault
    # Beta(1, 1): after 5 looks without a change the expected yield is 1/7 < 0.3
    assert shown == 5 and session.history["/label 0"] == [5, 0]
    more = RankedQueue(batch=5, min_yield=0.3).start(p, labels, np.zeros(40, bool), 0.5, 2, None, {"/label 0": [5, 0]})
    assert more.next_batch() is None  # a later pass remembers
    # ...but weighs an earlier pass as at most `memory` looks: a stratum that paid then (80 in 100) and no
    # longer does is left after 20 looks, (1 + 8) / (2 + 10 + 20) < 0.3, not after the hundreds the raw counts need
    again = RankedQueue(batch=5, min_yield=0.3, memory=10).start(p, labels, np.zeros(40, bool), 0.5, 3, None,
                                                                 {"/label 0": [100, 80]})
    shown = 0
    while (rows := again.next_batch()) is not None:
        shown += len(rows)
        again.record(rows, np.zeros(len(rows), bool))
    assert shown == 20 and again.history["/label 0"] == [120, 80]


def test_a_resumed_loop_refuses_another_reviewer_or_queue(tmp_path):
    truth = np.array([0, 1] * 20)
    crude = truth.copy()
    crude[:6] = 1 - crude[:6]
    months = np.arange(40) % 10 + 1
    run_relabel_loop(np.arange(40), months, crude, lambda labels, k: truth * 0.8 + 0.1, OracleReviewer(),
                     TruthStore(truth), tmp_path)
    with pytest.raises(ResumeError, match="reviewed by 'oracle'"):
        run_relabel_loop(np.arange(40), months, crude, lambda labels, k: truth * 0.8 + 0.1, SimulatedReviewer(),
                         TruthStore(truth), tmp_path)
    with pytest.raises(ResumeError, match="paper queue"):
        run_relabel_loop(np.arange(40), months, crude, lambda labels, k: truth * 0.8 + 0.1, OracleReviewer(),
                         TruthStore(truth), tmp_path, queue=RankedQueue())


class CatalogStore:
    """A catalog with what the simulated reviewer reads (position, time, flux, truth)."""

    def __init__(self, n, seed=0):
        rng = np.random.default_rng(seed)
        self.attrs = {"video": {"cadence_min": 96.0}}
        start = Time("2001-03-01T00:00:00")
        l0 = sun.L0(start + 112 * 96 * u.min).to_value(u.deg)
        self.cmd = rng.uniform(-85, 85, n)
        self.catalog = pd.DataFrame({
            "video_id": np.arange(n), "true_class": rng.integers(0, 2, n), "true_onset_frame": np.full(n, -1),
            "start_time": [start.isot] * n, "lon": (l0 + self.cmd) % 360,
            "flux_Mx": 10 ** rng.uniform(20.5, 22.5, n)})


def test_simulated_reviewer_errs_more_near_the_limb_and_for_weak_regions_and_repeats_itself():
    store = CatalogStore(4000)
    reviewer = SimulatedReviewer(ReviewerErrors(base=0.05, limb=0.15, weak=0.15), seed=3)
    ids = np.arange(4000)
    answers = reviewer.review(store, ids, np.zeros(4000, int), np.zeros(4000))
    wrong = answers != store.catalog.true_class.to_numpy()
    assert reviewer.looks == 4000 and reviewer.mistakes == wrong.sum()
    strong_centre = (np.abs(store.cmd) < 40) & (store.catalog.flux_Mx > 3e21)
    weak_limb = (np.abs(store.cmd) > 70) & (store.catalog.flux_Mx < 1e21)
    expected = ReviewerErrors().probability(store.catalog, 96.0)
    assert wrong[strong_centre].mean() == pytest.approx(0.05, abs=0.02)
    assert expected[weak_limb].mean() > 0.2 and weak_limb.sum() > 150
    assert wrong[weak_limb].mean() == pytest.approx(expected[weak_limb].mean(), abs=0.07)
    assert wrong.mean() == pytest.approx(expected.mean(), abs=0.015)
    again = SimulatedReviewer(ReviewerErrors(), seed=3).review(store, ids[::-1], np.zeros(4000, int), np.zeros(4000))
    assert (again[::-1] == answers).all()  # the same (seed, video) always gets the same answer
    assert (SimulatedReviewer(seed=4).review(store, ids, np.zeros(4000, int), np.zeros(4000)) != answers).any()
