"""The iterative relabel loop (paper, Methods and Figs. 2–3).

Each pass trains the five relabel models on the current labels, predicts
each video out of fold (the model that did not train on its months), and
collects the disagreements with the labels: false positives (model says
emergence, label says not) and false negatives. Only disagreements not
reviewed in an earlier pass go to the reviewer. Where the reviewer sides
with the label the model erred (E); otherwise the label was wrong and the
reviewer's answer becomes the label. R = |E| / (|fp| + |fn| − |E|) over the
new disagreements; passes repeat while R > 0.5 and the last pass changed a label.

Every pass is persisted (``pass_<n>.json``: labels, who changed what, the
statistics), so an interrupted loop resumes after its last finished pass.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from training.review import Reviewer
from training.splits import relabel_folds

#: (labels over all train+validation rows, pass number) -> out-of-fold probabilities for every row:
#: each row scored by the relabel model that validates on its months (:func:`training.splits.relabel_folds`).
TrainPass = Callable[[np.ndarray, int], np.ndarray]


@dataclass
class PassRecord:
    """What one pass found. Counts are over videos; ``changed`` lists (video_id, old, new)."""

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


def ratio(model_mistakes: int, disagreements: int) -> float:
    """R = |E| / (|fp| + |fn| − |E|); infinite when every disagreement was a model mistake."""
    label_mistakes = disagreements - model_mistakes
    return float("inf") if label_mistakes == 0 and model_mistakes > 0 else (model_mistakes / label_mistakes if label_mistakes else 0.0)


def run_relabel_loop(video_ids: np.ndarray, months: np.ndarray, crude: np.ndarray, train_pass: TrainPass,
                     reviewer: Reviewer, store, run_dir: str | Path, max_passes: int = 6,
                     threshold: float = 0.5, progress: Callable[[str], None] = print):
    """Run (or resume) the loop over the train+validation videos.

    Parameters
    ----------
    video_ids, months, crude : arrays (n,) for the train+validation rows: ids into the store, month 1–10, crude label.
    train_pass : trains the five fold models on the given labels and returns out-of-fold probabilities.
    reviewer : answers for disagreements never reviewed before.
    run_dir : where ``pass_<n>.json`` files go.

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
            labels, reviewed = np.asarray(state["labels"]), np.asarray(state["reviewed"], dtype=bool)
            records.append(PassRecord(**{**state["record"], "changed": [tuple(c) for c in state["record"]["changed"]]}))
            progress(f"pass {n}: resumed from {saved}")
        else:
            records.append(_one_pass(n, video_ids, months, labels, reviewed, train_pass, reviewer, store, threshold))
            tmp = saved.with_suffix(".tmp")
            tmp.write_text(json.dumps({"labels": labels.tolist(), "reviewed": reviewed.tolist(),
                                       "reviewer": reviewer.name, "record": asdict(records[-1])}))
            tmp.replace(saved)
        r = records[-1]
        progress(f"pass {n}: fp {r.fp} fn {r.fn}, new {r.new_fp + r.new_fn} reviewed, "
                 f"{r.model_mistakes} model mistakes, {r.relabelled} relabelled, R = {r.ratio:.2f}")
        # The paper's rule is R ≤ 0.5. Training is deterministic, so a pass that changed no label
        # would be repeated exactly by the next one: that is convergence too.
        if r.ratio <= 0.5 or r.relabelled == 0:
            break
    return labels, reviewed, records


def _one_pass(n, video_ids, months, labels, reviewed, train_pass, reviewer, store, threshold) -> PassRecord:
    """Train the folds, review new disagreements, relabel in place (``labels``, ``reviewed``)."""
    probs = np.asarray(train_pass(labels.copy(), n))
    predicted = (probs > threshold).astype(int)
    accuracy = {}
    for fold in relabel_folds():
        _, val = fold.indices(months)
        accuracy[str(fold.model)] = float((predicted[val] == labels[val]).mean()) if len(val) else float("nan")
    fp = (predicted == 1) & (labels == 0)
    fn = (predicted == 0) & (labels == 1)
    new = (fp | fn) & ~reviewed
    rows = np.flatnonzero(new)
    answers = reviewer.review(store, video_ids[rows], labels[rows], probs[rows]) if len(rows) else np.array([], int)
    model_mistake = answers == labels[rows]
    changed = [(int(video_ids[r]), int(labels[r]), int(a)) for r, a, m in zip(rows, answers, model_mistake) if not m]
    labels[rows] = answers
    reviewed[rows] = True
    e = int(model_mistake.sum())
    return PassRecord(
        number=n, fp=int(fp.sum()), fn=int(fn.sum()), new_fp=int((fp & new).sum()), new_fn=int((fn & new).sum()),
        model_mistakes=e, relabelled=len(rows) - e, ratio=ratio(e, len(rows)), reviewed_total=int(reviewed.sum()),
        accuracy_vs_labels=accuracy, changed=changed,
    )
