"""The iterative relabel loop (paper, Methods and Figs. 2–3).

Each pass trains the five relabel models on the current labels, predicts
each video out of fold (the model that did not train on its months), and
compares with the labels: false positives (model says emergence, label says
not) and false negatives. A review queue (:mod:`training.queue`) chooses
which never-reviewed videos the reviewer sees: the paper's shows every new
disagreement; the ranked one the likeliest label errors first, until looks
stop paying. Where the reviewer sides with the label on a disagreement the
model erred (E); otherwise the reviewer's answer becomes the label.
R = |E| / (reviewed disagreements − |E|); the queue decides when the loop is
done (the paper: R ≤ 0.5).

Every pass is persisted (``pass_<n>.json``: labels, who changed what, the
statistics, the reviewer and the queue), so an interrupted loop resumes after
its last finished pass, and refuses to resume with another reviewer or queue.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from training.queue import PaperQueue, RankedQueue
from training.review import Reviewer
from training.splits import relabel_folds

#: (labels over all train+validation rows, pass number) -> out-of-fold probabilities for every row:
#: each row scored by the relabel model that validates on its months (:func:`training.splits.relabel_folds`).
TrainPass = Callable[[np.ndarray, int], np.ndarray]


class ResumeError(ValueError):
    """A saved pass was made with another reviewer or queue than the run resuming it."""


@dataclass
class PassRecord:
    """What one pass found. Counts are over videos; ``changed`` lists (video_id, old, new).

    ``fp``/``fn`` are all disagreements, ``new_fp``/``new_fn`` those never reviewed before; ``looks`` the
    videos shown this pass (``agreement_looks`` of them agreements); ``model_mistakes`` the reviewed
    disagreements where the reviewer kept the label; ``relabelled`` the labels changed (``agreement_relabelled``
    on agreements: model and label both wrong); ``first_batch_yield`` labels changed per look in the first batch;
    ``stopped_early`` whether new disagreements were left unreviewed; ``strata`` the ranked queue's tally after
    the pass, {stratum: [looks, labels changed]} over all passes so far.
    """

    number: int
    fp: int
    fn: int
    new_fp: int
    new_fn: int
    model_mistakes: int
    relabelled: int
    ratio: float
    reviewed_total: int
    accuracy_vs_labels: dict[str, float]
    changed: list[tuple[int, int, int]] = field(default_factory=list)
    looks: int = 0
    agreement_looks: int = 0
    agreement_relabelled: int = 0
    first_batch_yield: float = 0.0
    stopped_early: bool = False
    strata: dict[str, list[int]] = field(default_factory=dict)


def ratio(model_mistakes: int, disagreements: int) -> float:
    """R = |E| / (|fp| + |fn| − |E|); infinite when every disagreement was a model mistake."""
    label_mistakes = disagreements - model_mistakes
    return float("inf") if label_mistakes == 0 and model_mistakes > 0 else (model_mistakes / label_mistakes if label_mistakes else 0.0)


def run_relabel_loop(video_ids: np.ndarray, months: np.ndarray, crude: np.ndarray, train_pass: TrainPass,
                     reviewer: Reviewer, store, run_dir: str | Path, max_passes: int = 6,
                     threshold: float = 0.5, progress: Callable[[str], None] = print,
                     queue: PaperQueue | RankedQueue = PaperQueue(), strata: np.ndarray | None = None):
    """Run (or resume) the loop over the train+validation videos.

    Parameters
    ----------
    video_ids, months, crude : arrays (n,) for the train+validation rows: ids into the store, month 1–10, crude label.
    train_pass : trains the five fold models on the given labels and returns out-of-fold probabilities.
    reviewer : answers for the videos the queue shows (never one reviewed before).
    run_dir : where ``pass_<n>.json`` files go.
    queue : which videos each pass shows, and when the loop is done (default: the paper's).
    strata : (n,) str, what kind of video each row is (e.g. the catalog's ``kind``), for the ranked queue's
        yield estimates; None: by label only.

    Returns ``(labels, reviewed, records)``: final labels (n,), bool (n,) of
    videos a reviewer saw, and one :class:`PassRecord` per pass.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(crude, dtype=int).copy()
    reviewed = np.zeros(len(labels), dtype=bool)
    records: list[PassRecord] = []
    for n in range(1, max_passes + 1):
        saved = run_dir / f"pass_{n}.json"
        if saved.exists():
            state = json.loads(saved.read_text())
            made_by = (state.get("reviewer"), state.get("queue", "paper"))
            if made_by != (reviewer.name, queue.name):
                raise ResumeError(f"{saved}: pass {n} was reviewed by {made_by[0]!r} with the {made_by[1]} queue; "
                                  f"this run has {reviewer.name!r} with the {queue.name} queue. Resume with the same "
                                  f"reviewer and queue, or start a new run folder.")
            labels, reviewed = np.asarray(state["labels"]), np.asarray(state["reviewed"], dtype=bool)
            records.append(PassRecord(**{**state["record"], "changed": [tuple(c) for c in state["record"]["changed"]]}))
            progress(f"pass {n}: resumed from {saved}")
        else:
            history = {k: list(v) for k, v in records[-1].strata.items()} if records else {}
            records.append(_one_pass(n, video_ids, months, labels, reviewed, train_pass, reviewer, store, threshold,
                                     queue, strata, history))
            tmp = saved.with_suffix(".tmp")
            tmp.write_text(json.dumps({"labels": labels.tolist(), "reviewed": reviewed.tolist(),
                                       "reviewer": reviewer.name, "queue": queue.name, "record": asdict(records[-1])}))
            tmp.replace(saved)
        r = records[-1]
        progress(f"pass {n}: fp {r.fp} fn {r.fn}, {r.looks} reviewed ({r.agreement_looks} agreements), "
                 f"{r.model_mistakes} model mistakes, {r.relabelled} relabelled, R = {r.ratio:.2f}")
        if queue.loop_done(r.ratio, r.relabelled):
            break
    return labels, reviewed, records


def _one_pass(n, video_ids, months, labels, reviewed, train_pass, reviewer, store, threshold, queue, strata,
              history) -> PassRecord:
    """Train the folds, review what the queue shows, relabel in place (``labels``, ``reviewed``)."""
    probs = np.asarray(train_pass(labels.copy(), n))
    predicted = (probs > threshold).astype(int)
    accuracy = {}
    for fold in relabel_folds():
        _, val = fold.indices(months)
        accuracy[str(fold.model)] = float((predicted[val] == labels[val]).mean()) if len(val) else float("nan")
    fp = (predicted == 1) & (labels == 0)
    fn = (predicted == 0) & (labels == 1)
    new = (fp | fn) & ~reviewed
    session = queue.start(probs, labels, reviewed, threshold, n, strata, history)

    def look(rows: np.ndarray) -> np.ndarray:
        """Review ``rows``, apply the answers; returns bool (len(rows),): label changed."""
        if not len(rows):
            return np.zeros(0, dtype=bool)
        answers = np.asarray(reviewer.review(store, video_ids[rows], labels[rows], probs[rows]), dtype=int)
        change = answers != labels[rows]
        changed.extend((int(video_ids[r]), int(labels[r]), int(a)) for r, a, c in zip(rows, answers, change) if c)
        labels[rows] = answers
        reviewed[rows] = True
        return change

    changed: list[tuple[int, int, int]] = []
    disagreement_looks = model_mistakes = relabelled = looks = 0
    first_yield = None
    while (rows := session.next_batch()) is not None:
        disagreeing = new[rows]
        change = look(rows)
        session.record(rows, change)
        looks += len(rows)
        relabelled += int(change.sum())
        disagreement_looks += int(disagreeing.sum())
        model_mistakes += int((disagreeing & ~change).sum())
        first_yield = float(change.mean()) if first_yield is None else first_yield
    agreement_change = look(session.agreements)
    return PassRecord(
        number=n, fp=int(fp.sum()), fn=int(fn.sum()), new_fp=int((fp & new).sum()), new_fn=int((fn & new).sum()),
        model_mistakes=model_mistakes, relabelled=relabelled + int(agreement_change.sum()),
        ratio=ratio(model_mistakes, disagreement_looks), reviewed_total=int(reviewed.sum()),
        accuracy_vs_labels=accuracy, changed=changed, looks=looks + len(session.agreements),
        agreement_looks=len(session.agreements), agreement_relabelled=int(agreement_change.sum()),
        first_batch_yield=first_yield or 0.0, stopped_early=bool((new & ~reviewed).any()), strata=history,
    )
