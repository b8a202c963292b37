"""GPU training throughput: a paper-size synthetic set, paper-preset members, videos read by a loader vs held on the device.

One self-contained command for a GPU machine:

1. builds the paper preset's dataset (2,032 + 406 videos of 225 × 90² px) with every core
   (resumed when rerun; ``--tiny``: 16 + 4 videos of 16 frames);
2. times one ×4-augmented training epoch of a paper-preset member (the authors' 2-D net) over relabel
   fold 1's training videos, read each epoch by a DataLoader (``--loader-workers`` processes, pinned
   memory), and the same epoch with the videos held on the device (float16, augmented there);
3. trains one whole paper-preset member (at most 20 epochs, patience 5) the faster way;
4. extrapolates the paper preset's training time from it: ``PAPER_MEMBERS`` members (three relabel passes of
   five models, models 6–9 × 2 seeds, models 1–5 × 2 seeds).

On a GPU the forward passes run under bfloat16 autocast and the 2-D net channels-last; on the CPU in float32.
Last line: ``loader_videos_per_s=… resident_videos_per_s=… member_s=… paper_preset_min=…``.

Usage: python -m bench.gpu [--device cuda] [--tiny] [--store data/bench-gpu/paper.zarr] [--loader-workers 8]
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ingest.dataset import DatasetStore
from sim.build_dataset import PRESETS as DATASETS
from sim.build_dataset import TEST_MONTHS, build
from training.data import VideoDataset
from training.ensemble import PRESETS
from training.splits import relabel_folds
from training.train import _run_epoch, batches, new_model, train_member

#: Members a paper-preset run trains: three relabel passes × 5, models 6–9 × 2 seeds, models 1–5 × 2 seeds.
PAPER_MEMBERS = 3 * 5 + 4 * 2 + 5 * 2


def epoch_videos_per_s(store: DatasetStore, idx: np.ndarray, labels: np.ndarray, config, device: torch.device,
                       resident: bool) -> tuple[float, float]:
    """(videos per second of one ×4-augmented training epoch, seconds spent first copying the videos to the device)."""
    dataset = VideoDataset(store, idx, labels, augment=config.augment, seed=0)
    t0 = time.perf_counter()
    loader = batches(dataset, replace(config, resident=resident), True, 0, device)
    load_s = time.perf_counter() - t0
    torch.manual_seed(0)
    model, optimizer = new_model(config, *store.video_shape[:2], device)
    _sync(device)
    t0 = time.perf_counter()
    _run_epoch(model, loader, device, optimizer, progress=False, bf16=config.precision == "bf16")
    _sync(device)
    return len(dataset) / (time.perf_counter() - t0), load_s


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="a 20-video, 16-frame set and two epochs: checks the bench on a CPU")
    p.add_argument("--store", type=Path, help="dataset store (built when missing; default under data/bench-gpu/)")
    p.add_argument("--loader-workers", type=int, default=min(8, os.cpu_count() or 1), help="DataLoader processes")
    a = p.parse_args(argv)
    device = torch.device(a.device)
    gpu = device.type == "cuda"
    preset = DATASETS["paper"]
    if a.tiny:
        preset = replace(preset, n_trainval=16, n_test=4, n_frames=16)
    path = a.store or Path("data/bench-gpu") / ("tiny.zarr" if a.tiny else "paper.zarr")
    t0 = time.perf_counter()
    store = build(path, preset, seed=0, workers=os.cpu_count() or 1, progress=not a.tiny)
    print(f"dataset {path}: {len(store)} videos of {store.video_shape} ready in {time.perf_counter() - t0:.0f} s "
          f"({os.cpu_count()} cores)")
    cat = store.catalog
    trainval = cat[~cat.month.isin(TEST_MONTHS)]
    ids, months, labels = trainval.video_id.to_numpy(), trainval.month.to_numpy(), trainval.crude_label.to_numpy()
    tr, va = relabel_folds()[0].indices(months)
    config = replace(PRESETS["paper"].train, precision="bf16" if gpu else "fp32", num_workers=a.loader_workers if gpu else 0,
                     max_epochs=2 if a.tiny else PRESETS["paper"].train.max_epochs)
    name = torch.cuda.get_device_name(device) if gpu else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device {name}, torch {torch.__version__}, precision {config.precision}; fold 1: {len(tr)} training videos "
          f"(×4 augmented), {len(va)} validation")
    loader_rate, _ = epoch_videos_per_s(store, ids[tr], labels[tr], config, device, resident=False)
    resident_rate, copy_s = epoch_videos_per_s(store, ids[tr], labels[tr], config, device, resident=True)
    print(f"{'one training epoch':<28} {'videos/s':>10}")
    for label, rate in ((f"loader ({config.num_workers} workers)", loader_rate), (f"resident (copy {copy_s:.1f} s)", resident_rate)):
        print(f"{label:<28} {rate:>10.1f}")
    config = replace(config, resident=resident_rate >= loader_rate)
    t0 = time.perf_counter()
    member = train_member(store, ids[tr], labels[tr], ids[va], labels[va], seed=0, config=config, device=device,
                          progress=not a.tiny)
    member_s = time.perf_counter() - t0
    print(f"one paper-preset member ({'resident' if config.resident else 'loader'}): {len(member.history)} epochs, "
          f"{member_s:.1f} s, best validation accuracy {member.val_accuracy:.3f}; paper preset ≈ {PAPER_MEMBERS} members")
    print(f"loader_videos_per_s={loader_rate:.1f} resident_videos_per_s={resident_rate:.1f} member_s={member_s:.1f} "
          f"paper_preset_min={member_s * PAPER_MEMBERS / 60:.1f}")


if __name__ == "__main__":
    main()
