"""Research: a small CNN over the new-flux detector's per-pixel maps, per frame (issue 27 §4, a first try).

Each frame of a tile video becomes three 45×45 channels (the 90×90 maps
averaged 2×2 after the detector's light smoothing): the new positive and
new negative field above each pixel's day-long background
(:meth:`common.newflux.NewFluxDetector.new_field`) and the
projection-corrected field, each as asinh(B / 20 G), so that 20–200 G fields
move the input as much as kG ones. The net (three convolutions, a global max)
gives the probability that a region has begun to emerge in the tile by this
frame: causal by construction (the maps read frames up to this one only).

Targets come from what an archive holds: a video the catalog calls an
emergence (its crude label, as the relabel loop would start from) is a target
from its **observed** onset, the new-flux detector's onset estimate
(:meth:`~common.newflux.NewFluxDetector.onset_frame`) at the first frame
within a day of the catalog's onset (first observation minus a day) where its
bipolar new flux reaches 3×10²⁰ Mx (the catalog's onset when it never does),
for three days; every other frame of every video is a 0. The synthetic truth
is not read.

``python -m training.newflux_net --store data/train/causal.zarr --out runs/newflux-net`` trains it and writes
``model.pt``; :class:`NetDetector` runs it over stored passage videos for the research loop
(:mod:`evaluation.research`). Numbers from the synthetic Sun are upper bounds for the real Sun.
"""
from __future__ import annotations

import argparse
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from common.newflux import NewFluxDetector
from common.observer import mu_at
from common.patches import carrington_pixel_area_cm2
from ingest.dataset import DatasetStore

#: Field scale of the asinh inputs, G.
SCALE_G = 20.0
#: Frames a catalog emergence stays a target from its observed onset (three days).
NEW_FRAMES = 45
#: The bipolar new flux that marks an observed onset, Mx.
ONSET_FLUX_MX = 3e20


def frame_inputs(detector: NewFluxDetector, video: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """(T, 3, P/2, P/2) float32 inputs of every frame of ``video`` (T, P, P) G with μ (T, P, P); frames before the
    background's first day are all 0."""
    W = detector.background_frames
    maps = detector.maps(video, mu)
    background, judged = detector.windows(maps)
    new_pos, new_neg = detector.new_field(maps, background, judged)
    radial = (maps.pos - maps.neg) * judged
    x = np.stack([new_pos, new_neg, radial], axis=1)
    x[:W] = 0.0
    T, C, P, _ = x.shape
    x = x.reshape(T, C, P // 2, 2, P // 2, 2).mean(axis=(3, 5))
    return np.arcsinh(x / SCALE_G).astype(np.float32)


def observed_onset(detector: NewFluxDetector, series: np.ndarray, catalog_onset: int) -> int:
    """The onset an archive can give a catalog emergence: the detector's onset estimate at the first frame within a
    day of the catalog's onset where the series reaches :data:`ONSET_FLUX_MX` (else the catalog's)."""
    lo, hi = max(catalog_onset - 15, 0), min(catalog_onset + 15, len(series) - 1)
    for t in range(lo, hi + 1):
        if np.isfinite(series[t]) and series[t] >= ONSET_FLUX_MX:
            d = NewFluxDetector(**{**detector.__dict__, "level_Mx": ONSET_FLUX_MX})
            return d.onset_frame(series, t)
    return catalog_onset


class Net(nn.Module):
    """Three convolutions over a frame's inputs and a global max: (N, 3, 45, 45) → logit (N,)."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.SiLU(),
                                  nn.Conv2d(width, width, 3, padding=1, stride=2), nn.SiLU(),
                                  nn.Conv2d(width, width, 3, padding=1), nn.SiLU())
        self.head = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).amax(dim=(2, 3)))[:, 0]


def build(store: DatasetStore, detector: NewFluxDetector) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every judged frame of every video: inputs (N, 3, 45, 45), targets (N,), video index (N,)."""
    cat = store.catalog
    n_frames, pixels, _ = store.video_shape
    offsets = (np.arange(pixels) - (pixels - 1) / 2) / 6.0
    xs, ys, vs = [], [], []
    for i, row in enumerate(cat.itertuples()):
        video = store.video(i)
        slots = int(row.start_slot) + np.arange(n_frames)
        mu = mu_at(float(row.lon) + offsets, float(row.lat) + offsets, slots).astype(np.float32)
        x = frame_inputs(detector, video, mu)
        y = np.zeros(n_frames, np.float32)
        if int(row.crude_label) == 1 and int(row.crude_onset_frame) >= 0:
            area = np.broadcast_to(carrington_pixel_area_cm2(float(row.lat) + offsets, 1 / 6.0)[:, None], (pixels, pixels))
            series = detector.series(video, mu, area)
            onset = observed_onset(detector, series, int(row.crude_onset_frame))
            y[onset : onset + NEW_FRAMES] = 1.0
        keep = np.arange(n_frames) >= detector.background_frames
        xs.append(x[keep].astype(np.float16))
        ys.append(y[keep])
        vs.append(np.full(keep.sum(), i))
        if i % 100 == 0:
            print(f"  {i}/{len(cat)} videos", flush=True)
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(vs)


def train(x: np.ndarray, y: np.ndarray, epochs: int = 4, batch: int = 256, seed: int = 0, width: int = 16) -> Net:
    """Adam on class-balanced minibatches (half positives), ``epochs`` passes over as many frames as there are
    positives × 2."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = Net(width)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    pos, neg = np.flatnonzero(y > 0.5), np.flatnonzero(y <= 0.5)
    loss_fn = nn.BCEWithLogitsLoss()
    for epoch in range(epochs):
        t0, total = time.time(), 0.0
        steps = max(2 * len(pos) // batch, 1)
        for _ in range(steps):
            idx = np.concatenate([rng.choice(pos, batch // 2), rng.choice(neg, batch // 2)])
            flip = rng.random() < 0.5  # polarity flip: the channels of new positive and new negative field swap
            xb = torch.from_numpy(x[idx].astype(np.float32))
            if flip:
                xb = xb[:, [1, 0, 2]] * torch.tensor([1.0, 1.0, -1.0])[None, :, None, None]
            if rng.random() < 0.5:  # north–south flip
                xb = xb.flip(2)
            loss = loss_fn(net(xb), torch.from_numpy(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach())
        print(f"  epoch {epoch}: loss {total / steps:.4f} ({time.time() - t0:.0f} s)", flush=True)
    return net


@dataclass(frozen=True)
class NetDetector:
    """The trained net as a detector of stored passage videos (:class:`evaluation.replay.VideoDetector`): its
    series is the probability per frame; it alerts when that reaches ``threshold`` for ``persist`` frames."""

    model: str = "runs/newflux-net/model.pt"
    threshold: float = 0.5
    persist: int = 2
    detector: NewFluxDetector = field(default_factory=NewFluxDetector)
    knob: ClassVar[str] = "threshold"
    trigger_fields: ClassVar[tuple[str, ...]] = ("threshold", "persist")

    @property
    def identity(self) -> str:
        """The model file's SHA-256: the research loop's series cache tells two trainings apart by it."""
        return hashlib.sha256(Path(self.model).read_bytes()).hexdigest()

    def series(self, video, mu, pixel_area_cm2, observed=None) -> np.ndarray:
        net = _load(self.model)
        with torch.no_grad():
            p = torch.sigmoid(net(torch.from_numpy(frame_inputs(self.detector, video, mu)))).numpy().astype(np.float64)
        p[: self.detector.background_frames] = np.nan
        if observed is not None:
            p[~np.asarray(observed, bool)] = np.nan
        return p

    def triggers(self, series: np.ndarray) -> list[tuple[int, int]]:
        flux_like = np.where(np.isnan(series), np.nan, series / np.maximum(1 - series, 1e-9))
        d = NewFluxDetector(level_Mx=self.threshold / (1 - self.threshold), persist=self.persist)
        return d.triggers(flux_like)


_NETS: dict[str, Net] = {}


def _load(path: str) -> Net:
    if path not in _NETS:
        state = torch.load(path, map_location="cpu")
        net = Net(state["width"])
        net.load_state_dict(state["weights"])
        net.eval()
        _NETS[path] = net
    return _NETS[path]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", type=Path, default=Path("data/train/causal.zarr"))
    p.add_argument("--out", type=Path, default=Path("runs/newflux-net"))
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--width", type=int, default=16)
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    cache = a.out / "frames.npz"
    t0 = time.time()
    if cache.exists():
        z = np.load(cache)
        x, y = z["x"], z["y"]
    else:
        x, y, v = build(DatasetStore(a.store), NewFluxDetector())
        np.savez(cache, x=x, y=y, v=v)
    print(f"{len(y)} frames, {int(y.sum())} targets ({time.time() - t0:.0f} s)", flush=True)
    net = train(x, y, a.epochs, width=a.width)
    torch.save({"weights": net.state_dict(), "width": a.width}, a.out / "model.pt")
    print(f"trained in {time.time() - t0:.0f} s: {a.out / 'model.pt'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
