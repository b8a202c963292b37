"""``train-ensemble``: the paper's method on a dataset store, ending in an ONNX model bundle."""
from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ingest.dataset import DatasetError
from training.ensemble import PRESETS, run
from training.queue import QUEUES
from training.relabel import ResumeError
from training.review import OracleReviewer, Reviewer, SimulatedReviewer, TerminalReviewer


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="train-ensemble", description=__doc__)
    p.add_argument("--store", type=Path, required=True, help="dataset store written by build-dataset")
    p.add_argument("--out", type=Path, required=True, help="run folder (created; rerun to resume)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="small",
                   help="small: CPU-sized (default); paper: the full spec, meant for --device cuda")
    p.add_argument("--reviewer", choices=["oracle", "simulated", "terminal", "web"], default="oracle",
                   help="oracle answers from the synthetic truth; simulated from the truth with a person's mistakes "
                        "(more near the limb and for weak regions); terminal asks you; web serves the review desk in the "
                        "browser and waits for its decisions (fluxwatch-review --run OUT serves it from another process too)")
    p.add_argument("--desk-host", default="127.0.0.1", help="address of the review desk (--reviewer web)")
    p.add_argument("--desk-port", type=int, default=8765, help="port of the review desk (--reviewer web)")
    p.add_argument("--desk-min-decisive", type=int, help="decisive answers each video needs at the desk (default 1; "
                   "2 or more asks several reviewers, a tie goes to one more)")
    p.add_argument("--queue", choices=sorted(QUEUES), help="relabel review queue: paper (every new disagreement, "
                   "the preset's default) or ranked (likeliest label errors first, until looks stop paying; its relabel models "
                   "train --max-epochs epochs, none chosen on the block it audits)")
    p.add_argument("--device", default="cpu", help="torch device(s), comma-separated, e.g. cuda:0,cuda:1")
    p.add_argument("--workers", type=int, default=1, help="members trained at once (one per device is natural)")
    p.add_argument("--precision", choices=["fp32", "bf16"],
                   help="forward pass in float32 or under bfloat16 autocast (default: bf16 on a GPU, fp32 on the CPU)")
    p.add_argument("--data", choices=["resident", "loader"],
                   help="videos held on the device (resident: augmented and masked there) or read by a loader each epoch "
                        "(default: resident on a GPU, loader on the CPU; bench/gpu.py measures both)")
    p.add_argument("--loader-workers", type=int, default=0, help="loader processes reading videos (--data loader)")
    p.add_argument("--max-epochs", type=int, help="override the preset's epochs per member")
    p.add_argument("--lr", type=float, help="override the preset's learning rate")
    p.add_argument("--max-passes", type=int, help="override the preset's cap on relabel passes")
    p.add_argument("--seeds", type=int, nargs="+", help="override the seeds per uncertainty model")
    args = p.parse_args(argv)
    preset = PRESETS[args.preset]
    gpu = args.device.startswith("cuda")
    train = replace(preset.train, precision=args.precision or ("bf16" if gpu else "fp32"),
                    resident=(args.data or ("resident" if gpu else "loader")) == "resident", num_workers=args.loader_workers)
    if args.max_epochs:
        train = replace(train, max_epochs=args.max_epochs)
    if args.lr:
        train = replace(train, lr=args.lr)
    preset = replace(preset, train=train, max_passes=args.max_passes or preset.max_passes,
                     seeds=tuple(args.seeds) if args.seeds else preset.seeds)
    if args.queue:
        # the ranked loop's relabel models train a fixed number of epochs: none is chosen on the block it audits
        preset = replace(preset, queue=QUEUES[args.queue](), relabel_select="last" if args.queue == "ranked" else "best")
    reviewers: dict[str, Callable[[], Reviewer]] = {
        "oracle": OracleReviewer, "simulated": SimulatedReviewer, "terminal": lambda: TerminalReviewer(args.out / "review")}
    desk = None
    if args.reviewer == "web":
        from review.decisions import Decisions
        from review.desk import DeskServer, create_app
        from review.web import WebReviewer

        decisions = Decisions(args.out / "review" / "desk.sqlite", min_decisive=args.desk_min_decisive)
        try:
            desk = DeskServer(create_app(decisions), args.desk_host, args.desk_port).start()
        except RuntimeError as exc:
            print(f"train-ensemble: error: {exc}; choose another --desk-port", file=sys.stderr)
            return 2
        print(f"review desk: {desk.url} (decisions in {decisions.path})", flush=True)
        reviewer: Reviewer = WebReviewer(decisions, url=desk.url)
    else:
        reviewer = reviewers[args.reviewer]()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="torch.onnx")
    try:
        report = run(args.store, args.out, preset, reviewer, devices=args.device.split(","), workers=args.workers)
    except (DatasetError, ResumeError) as exc:
        print(f"train-ensemble: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if desk is not None:
            desk.stop()
    t, o, r = report["test"], report["onset"]["error_days_percentiles"], report["relabel"]
    print(f"reviewed {r['reviewed_fraction']:.0%} of train+validation videos (paper ~50%); "
          f"labels vs truth {r['crude_accuracy_vs_truth']:.3f} crude -> {r['final_label_accuracy_vs_truth']:.3f} cleaned")
    print(f"threshold {report['threshold']['value']:.2f} (paper 0.6); test accuracy vs truth "
          f"median {t['accuracy_vs_truth']['median']:.3f} p25 {t['accuracy_vs_truth']['p25']:.3f} "
          f"p75 {t['accuracy_vs_truth']['p75']:.3f} (paper 0.83/0.79/0.71)")
    print("onset error days p5/p25/p50/p75/p95: " + " ".join(f"{o[k]:+.2f}" for k in ("p5", "p25", "p50", "p75", "p95"))
          + " (paper -2.1/+0.1/+0.4/+1.1/+2.7)")
    print(f"bundle {report['bundle']['path']}; report {args.out / 'report.json'}; {report['wall_time_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
