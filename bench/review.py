"""Human effort: the paper's relabel loop against the ranked queue, with a reviewer who makes mistakes.

Runs the relabel loop twice on one dataset store with the same seeds (each
relabel model's seed is its fold number) and the same simulated reviewer
(:class:`training.review.SimulatedReviewer`: 5% wrong at disk centre, more
near the limb and for weak regions; the same video always gets the same
answer, so both loops meet the same mistakes):

- **paper**: every new disagreement reviewed; relabel models keep their
  validation-peak epoch (the block they audit); stop when R ≤ 0.5;
- **ranked**: likeliest label errors first (confident learning's
  self-confidence within strata of catalog kind and label), 5 looks at a
  time from the stratum of highest expected yield, learnt from the
  reviewer's answers, until none is expected to change 3 labels in 10; 5
  low-margin agreements a pass; relabel models train a fixed number of
  epochs.

Both use the small preset's training with at most ``--epochs`` epochs a
model and ``--max-passes`` passes. Prints a table (passes, looks, share of
videos looked at, labels changed, reviewer mistakes, label accuracy against
the synthetic truth), writes ``review_effort.png`` (label accuracy against
looks, pass by pass) and, as its last line,
``paper_looks_frac=… paper_label_acc=… ranked_looks_frac=… ranked_label_acc=…``.
Label accuracies are against the synthetic truth: for the real Sun they
are upper bounds. Resumable: checkpoints and passes live under ``--out``.

Usage: python -m bench.review [--store data/bench/small.zarr] [--out runs/bench-review] [--epochs 6] [--max-passes 3]
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ingest.dataset import DatasetStore  # noqa: E402
from sim.build_dataset import main as build_dataset  # noqa: E402
from training.ensemble import PRESETS, relabel  # noqa: E402
from training.queue import PaperQueue, Queue, RankedQueue  # noqa: E402
from training.review import SimulatedReviewer  # noqa: E402
from training.splits import TEST_MONTHS  # noqa: E402

LOOPS: dict[str, tuple[Queue, str]] = {"paper": (PaperQueue(), "best"), "ranked": (RankedQueue(batch=5, min_yield=0.3, agreement_looks=5), "last")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench.review", description=__doc__.split("\n\n")[0])
    p.add_argument("--store", type=Path, default=Path("data/bench/small.zarr"),
                   help="dataset store (built with build-dataset --preset small --settings 8 if missing)")
    p.add_argument("--out", type=Path, default=Path("runs/bench-review"))
    p.add_argument("--epochs", type=int, default=6, help="epochs per relabel model (paper loop: the most)")
    p.add_argument("--max-passes", type=int, default=3)
    p.add_argument("--reviewer-seed", type=int, default=0)
    args = p.parse_args(argv)
    if not args.store.exists():
        build_dataset(["--preset", "small", "--settings", "8", "--out", str(args.store)])
    store = DatasetStore(args.store)
    trainval = store.catalog[~store.catalog.month.isin(TEST_MONTHS)].reset_index(drop=True)
    truth, crude = trainval.true_class.to_numpy(), trainval.crude_label.to_numpy()
    small = PRESETS["small"]
    rows, curves = [], {}
    for name, (queue, select) in LOOPS.items():
        preset = replace(small, train=replace(small.train, max_epochs=args.epochs), max_passes=args.max_passes,
                         queue=queue, relabel_select=select)
        reviewer = SimulatedReviewer(seed=args.reviewer_seed)
        run_dir = args.out / name
        labels, reviewed, records = relabel(store, trainval, run_dir, preset, reviewer)
        passes = [json.loads((run_dir / f"pass_{r.number}.json").read_text()) for r in records]
        looks = np.cumsum([0] + [r.looks for r in records])
        accuracy = [float((crude == truth).mean())] + [float((np.asarray(s["labels"]) == truth).mean()) for s in passes]
        curves[name] = (looks, accuracy)
        truth_of = dict(zip(trainval.video_id.to_numpy().tolist(), truth.tolist()))
        wrong_answers = sum(new != truth_of[vid] for r in records for vid, _, new in r.changed)
        rows.append({"loop": name, "passes": len(records), "looks": int(looks[-1]),
                     "looks_frac": float(looks[-1] / len(trainval)), "relabelled": sum(r.relabelled for r in records),
                     "wrong_relabels": wrong_answers, "agreement_finds": sum(r.agreement_relabelled for r in records),
                     "label_acc": accuracy[-1]})
    print(f"relabel loops on {len(trainval)} train+validation videos of {args.store}; crude label accuracy "
          f"{(crude == truth).mean():.3f}; simulated reviewer (seed {args.reviewer_seed}); accuracies vs the synthetic "
          "truth are upper bounds for the real Sun")
    print(f"{'loop':8} {'passes':>6} {'looks':>6} {'looks%':>7} {'relabelled':>10} {'wrongly':>9} {'agree finds':>11} "
          f"{'label acc':>9}")
    for r in rows:
        print(f"{r['loop']:8} {r['passes']:6d} {r['looks']:6d} {r['looks_frac']:7.1%} {r['relabelled']:10d} "
              f"{r['wrong_relabels']:9d} {r['agreement_finds']:11d} {r['label_acc']:9.3f}")
    figure = args.out / "review_effort.png"
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (looks, accuracy) in curves.items():
        ax.plot(looks, accuracy, marker="o", label=name)
    ax.set_xlabel("reviewer looks")
    ax.set_ylabel("label accuracy vs synthetic truth")
    ax.set_title("Relabel loop: label accuracy against human effort")
    ax.legend()
    fig.tight_layout()
    fig.savefig(figure, dpi=120)
    print(f"figure {figure}")
    paper, ranked = rows
    print(f"paper_looks_frac={paper['looks_frac']:.3f} paper_label_acc={paper['label_acc']:.3f} "
          f"ranked_looks_frac={ranked['looks_frac']:.3f} ranked_label_acc={ranked['label_acc']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
