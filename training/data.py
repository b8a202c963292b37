"""Training data: videos of a :class:`~ingest.dataset.DatasetStore` subset, scaled, with the paper's ×4 augmentation.

Augmentation (the paper, "Dataset"): every video is also shown north–south
flipped (latitude axis reversed) and polarity flipped (B → −B, which after
:func:`common.video.scale_for_model` is x → 1 − x), and both: four variants
per video, so an augmented dataset is 4× the videos.
"""
from __future__ import annotations

import astropy.units as u
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from common.config import VideoConfig
from common.video import scale_for_model
from ingest.dataset import DatasetStore

#: Frames after the onset weighted more in the dense loss (a day at 96 min): where alerts are won or lost.
ONSET_WEIGHT_FRAMES = 15
#: Their weight, relative to 1 for every other frame.
ONSET_WEIGHT = 3.0
#: Frames an emergence is new from its onset (three days at 96 min): within the causal detector's view.
NEW_FRAMES = 45

#: Variants per video with augmentation: identity, NS flip, polarity flip, both.
N_AUGMENT = 4


def store_clip(store: DatasetStore) -> u.Quantity:
    """The clip (G) of a store's model scaling: its ``video.clip_G`` attribute, else the paper's 1000 G."""
    return store.attrs.get("video", {}).get("clip_G", VideoConfig().clip.to_value(u.G)) * u.G


def augment(video_scaled: np.ndarray, variant: int) -> np.ndarray:
    """Variant ``variant`` (0–3) of a scaled video (T, lat, lon) in [0, 1].

    Bit 0 of ``variant`` flips north–south (reverses the latitude axis, −2);
    bit 1 flips polarity (x → 1 − x, i.e. B → −B). Returns a new float32 array.
    """
    if not 0 <= variant < N_AUGMENT:
        raise ValueError(f"variant must be in [0, {N_AUGMENT}), got {variant}")
    out = video_scaled[..., ::-1, :] if variant & 1 else video_scaled
    out = 1.0 - out if variant & 2 else out
    return np.ascontiguousarray(out, dtype=np.float32)


#: Augmentation modes: "x4" every variant of every video each epoch (the paper: 4× the set);
#: "cycle" one variant per video per epoch, (video + epoch) mod 4, so four epochs see all four
#: at a quarter of the cost per epoch; "none" the videos as they are.
AUGMENT_MODES = ("x4", "cycle", "none")


def dense_targets(label: int, onset_frame: int, n_frames: int) -> np.ndarray:
    """Per-frame targets and loss weights of one video for a causal detector: float32 (2, n_frames).

    Row 0, the target: for an emergence (``label`` 1), 0 before ``onset_frame`` and 1 for the
    :data:`NEW_FRAMES` frames from it (the region is new: alert now); for anything else (quiet Sun,
    decaying or rotating-in regions, small bipoles), 0 throughout. Row 1, the weight: 1, and
    :data:`ONSET_WEIGHT` on the first :data:`ONSET_WEIGHT_FRAMES` frames from the onset, where alerts
    are won or lost. After its new frames an emergence is no longer new but is still there, and a
    detector that sees the last few days cannot tell it from a region that rotated in: those frames
    have target 1 (the video holds an emergence) and weight 0. So has an emergence whose onset is not
    known (``onset_frame`` < 0: a reviewer's addition to the catalog) at every frame.
    """
    out = np.zeros((2, n_frames), np.float32)
    if label != 1:
        out[1] = 1.0
    elif onset_frame < 0:
        out[0] = 1.0
    else:
        out[0, onset_frame:] = 1.0
        out[1, :onset_frame] = 1.0
        out[1, onset_frame : onset_frame + NEW_FRAMES] = 1.0
        out[1, onset_frame : onset_frame + ONSET_WEIGHT_FRAMES] = ONSET_WEIGHT
    return out


class VideoDataset(Dataset):
    """Scaled videos ``store[indices]`` with labels, optionally augmented (see :data:`AUGMENT_MODES`).

    Item ``k`` is ``(video, label)``: video a float32 tensor (1, T, pixels,
    pixels) in [0, 1], label a float32 scalar tensor (0 or 1; 0 when no
    labels are given). With ``"x4"`` item ``k`` is variant ``k % 4`` of video
    ``indices[k // 4]``; with ``"cycle"`` item ``k`` is variant
    ``(k + epoch) % 4`` of video ``indices[k]`` (:meth:`set_epoch`).

    With ``truncate`` > 0 that share of items (drawn from ``seed``, the epoch and
    the item) is the paper's masked video at a random frame n — the video the
    service scores at frame n — labelled 1 only if its label is 1 and n reaches
    the catalog's crude onset (``crude_onset_frame``; an emergence without one,
    a reviewer's addition, is never truncated).

    With ``dense`` the label is instead :func:`dense_targets` of the label and the catalog's crude onset,
    (2, T): a target and a weight for every frame, for a causal detector. ``onsets`` names the catalog
    column of the onsets: ``crude_onset_frame`` (what a real archive has) or ``true_onset_frame`` (the
    synthetic truth: for upper bounds only).
    """

    def __init__(self, store: DatasetStore, indices, labels=None, augment: str = "none", truncate: float = 0.0,
                 seed: int = 0, dense: bool = False, onsets: str = "crude_onset_frame"):
        self.store = store
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = np.zeros(len(self.indices), np.float32) if labels is None else np.asarray(labels, np.float32)
        if self.indices.ndim != 1 or self.labels.shape != self.indices.shape:
            raise ValueError(f"indices {self.indices.shape} and labels {self.labels.shape} must be matching 1-D arrays")
        if len(self.indices) and not (0 <= self.indices.min() and self.indices.max() < len(store)):
            raise IndexError(f"indices out of range for a store of {len(store)} videos")
        if not np.isin(self.labels, (0.0, 1.0)).all():
            raise ValueError("labels must be 0 or 1")
        if augment not in AUGMENT_MODES:
            raise ValueError(f"augment must be one of {AUGMENT_MODES}, got {augment!r}")
        self.augment = augment
        self.epoch = 0
        self.clip = store_clip(store)
        self.truncate, self.seed = float(truncate), int(seed)
        self.dense = bool(dense)
        if self.dense and self.truncate:
            raise ValueError("dense targets label every frame: truncation has nothing to add")
        self.onsets = (store.catalog[onsets].to_numpy()[self.indices] if self.truncate or self.dense
                       else np.full(len(self.indices), -1))

    def set_epoch(self, epoch: int) -> None:
        """Choose the variants of a ``"cycle"`` epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.indices) * (N_AUGMENT if self.augment == "x4" else 1)

    def plan(self, k: int) -> tuple[int, int, int, np.ndarray]:
        """What item ``k`` is: (position of its video in ``indices``, augmentation variant, the frame n it is masked
        after or −1, its target: a float32 scalar label, or (2, T) dense targets)."""
        k = int(k)
        if self.augment == "x4":
            i, variant = divmod(k, N_AUGMENT)
        else:
            i, variant = k, (k + self.epoch) % N_AUGMENT if self.augment == "cycle" else 0
        label = self.labels[i]
        if self.dense:
            return i, variant, -1, dense_targets(int(label), int(self.onsets[i]), self.store.video_shape[0])
        n = -1
        if self.truncate and not (label == 1 and self.onsets[i] < 0):
            rng = np.random.default_rng([self.seed, self.epoch, k])
            if rng.random() < self.truncate:
                n = int(rng.integers(self.store.video_shape[0]))
                label = np.float32(label == 1 and n >= self.onsets[i])
        return i, variant, n, np.asarray(label, np.float32)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        i, variant, n, target = self.plan(k)
        video = augment(scale_for_model(self.store.video(self.indices[i]), self.clip), variant)
        if n >= 0:
            video[n + 1 :] = video[n]
        return torch.from_numpy(video)[None], torch.from_numpy(target)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int, num_workers: int = 0,
                pin_memory: bool = False) -> DataLoader:
    """A DataLoader whose order is fixed by ``seed`` (its own generator; workers seeded from it)."""
    generator = torch.Generator().manual_seed(int(seed))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=num_workers,
                      drop_last=False, pin_memory=pin_memory, persistent_workers=num_workers > 0)


class ResidentLoader:
    """The batches of a :class:`VideoDataset`, with every one of its videos held on ``device`` at once.

    The scaled videos are copied once, as float16 (N, T, P, P): a paper-size set (2,032 videos) is 7.4 GB.
    Each batch is then gathered, augmented and masked on the device. The items and their order are those of
    :func:`make_loader` with the same ``seed`` (the same generator draws the order), up to float16 rounding.
    """

    def __init__(self, dataset: VideoDataset, batch_size: int, shuffle: bool, seed: int, device: str | torch.device):
        self.dataset, self.device = dataset, torch.device(device)
        self.order = make_loader(_Positions(len(dataset)), batch_size, shuffle, seed)
        first = torch.from_numpy(scale_for_model(dataset.store.video(int(dataset.indices[0])), dataset.clip))
        self.videos = torch.empty((len(dataset.indices), *first.shape), dtype=torch.float16, device=self.device)
        for j, index in enumerate(dataset.indices):
            self.videos[j] = torch.from_numpy(scale_for_model(dataset.store.video(int(index)), dataset.clip))

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self):
        t = torch.arange(self.videos.shape[1], device=self.device)
        for items in self.order:
            plans = [self.dataset.plan(int(k)) for k in items]
            rows = torch.tensor([p[0] for p in plans], device=self.device)
            variant = torch.tensor([p[1] for p in plans], device=self.device)
            masked_after = torch.tensor([p[2] for p in plans], device=self.device)
            x = self.videos[rows].float()
            x = torch.where((variant & 1).bool()[:, None, None, None], x.flip(-2), x)
            x = torch.where((variant & 2).bool()[:, None, None, None], 1.0 - x, x)
            frames = torch.where(masked_after[:, None] >= 0, torch.minimum(t[None], masked_after[:, None]), t[None])
            x = torch.take_along_dim(x, frames[:, :, None, None], dim=1)
            yield x[:, None], torch.from_numpy(np.stack([p[3] for p in plans])).to(self.device)


class _Positions(Dataset):
    """0..n−1: the item numbers a loader's order is drawn over."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> int:
        return k
