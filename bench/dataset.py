"""Dataset-builder throughput, and what it means for the paper-sized preset.

Plans the paper preset (simulating 16 years of BMRs, daily detection,
labels and truth: timed in full), then renders a sample of its videos with
the real builder (all cores, streamed to a zarr store) and extrapolates the
rendering to all of them. ``--full`` builds the whole paper preset instead.
Last line: ``videos_per_s=<x> paper_preset_minutes=<y>``.

Usage: python -m bench.dataset [--sample 160] [--workers N] [--full]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace

from sim.build_dataset import PRESETS, build, label_quality, plan


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sample", type=int, default=160, help="videos rendered to measure throughput")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--full", action="store_true", help="build the whole paper preset (no extrapolation)")
    args = p.parse_args()
    paper = PRESETS["paper"]
    n_paper = paper.n_trainval + paper.n_test
    t0 = time.perf_counter()
    catalog = plan(paper, seed=0)
    t_plan = time.perf_counter() - t0
    q = label_quality(catalog)
    print(f"paper preset plan: {q['videos']} videos, crude accuracy {q['crude_accuracy']:.3f}, planned in {t_plan:.1f} s")
    preset = paper if args.full else replace(paper, n_trainval=args.sample * 5 // 6, n_test=args.sample - args.sample * 5 // 6)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store = build(f"{tmp}/bench.zarr", preset, seed=0, workers=args.workers)
        t_build = time.perf_counter() - t0
        n = len(store)
        size_gb = sum(f.stat().st_size for f in store.path.rglob("*") if f.is_file()) / 1e9
    # the sample's build time includes its own (short) planning; count only rendering for the rate
    t0 = time.perf_counter()
    plan(preset, seed=0)
    t_sample_plan = time.perf_counter() - t0
    rate = n / max(t_build - t_sample_plan, 1e-9)
    minutes = t_build / 60 if args.full else (t_plan + n_paper / rate) / 60
    print(f"rendered {n} videos ({size_gb:.2f} GB on disk) in {t_build - t_sample_plan:.1f} s with {args.workers} workers"
          + ("" if args.full else f"; paper preset = plan {t_plan:.0f} s + {n_paper} videos at this rate"))
    print(f"videos_per_s={rate:.2f} paper_preset_minutes={minutes:.1f}")


if __name__ == "__main__":
    main()
