"""The relabel loop's bookkeeping, the reviewers, the threshold and the splits."""
import io
import json

import numpy as np
import pandas as pd
import pytest

from common.ensemble import is_stable
from training.evaluate import onset_error_days, pr_crossing_threshold
from training.relabel import ratio, run_relabel_loop
from training.review import OracleReviewer, TerminalReviewer
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


def test_loop_reviews_only_new_disagreements_and_stops(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    truth = rng.integers(0, 2, n)
    crude = truth.copy()
    flipped = rng.choice(n, 40, replace=False)
    crude[flipped] = 1 - crude[flipped]
    months = rng.integers(1, 11, n)

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
