"""Shared set-up of the service benchmarks: a model bundle and rendered 1024² frames."""
from __future__ import annotations

import argparse
import tempfile
from contextlib import contextmanager
from pathlib import Path

from astropy.time import Time

from common.clock import slot_of_time
from common.config import CNN_BUNDLE
from sim import SunConfig, SyntheticSun, write_fits_series

START = Time("2000-06-20T00:00:00")


def bundle_or_untrained(path: Path, scratch: Path) -> tuple[Path, str]:
    """``path`` if it holds a bundle, else a bundle of 8 untrained members of the small preset's
    architecture (timings do not depend on the weights). Returns (bundle, description)."""
    if (path / "manifest.json").exists():
        return path, f"trained bundle {path}"
    import torch

    from training.ensemble import PRESETS
    from training.export import make_input_spec, write_bundle

    config = PRESETS["small"].train
    members: list[tuple] = []
    for k in range(8):
        torch.manual_seed(k)
        members.append((config.build_model(225, 90).eval(), f"model{6 + k // 2}", k % 2, {}))
    out = write_bundle(scratch / "untrained_bundle", members, 0.6, "untrained", {}, make_input_spec(225, 90))
    return out, f"8 untrained members (no trained bundle at {CNN_BUNDLE})"


def render_frames(folder: Path, n: int, size: int = 1024) -> list[Path]:
    """``n`` observed 96-min frames of the synthetic Sun from START, size² pixels."""
    sun = SyntheticSun(SunConfig(), seed=0)
    slot0 = int(slot_of_time(START))
    return write_fits_series(sun, range(slot0, slot0 + n + n // 10 + 2), folder, shape=(size, size))[:n]


def metric(service, name: str) -> float:
    """A sample of the service's metrics registry (``fluxwatch_`` + name)."""
    return service.metrics.registry.get_sample_value(f"fluxwatch_{name}")


@contextmanager
def bench_setup(doc: str, frames: int):
    """Parse ``--frames`` (default ``frames``) and ``--bundle``; in a scratch folder, yield
    (scratch, bundle, rendered frames: one more than asked, the first being the cold start)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=frames)
    p.add_argument("--bundle", type=Path, default=Path(CNN_BUNDLE))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        bundle, what = bundle_or_untrained(args.bundle, tmp)
        print(f"model: {what}")
        yield tmp, bundle, render_frames(tmp / "frames", args.frames + 1)
