"""Training one ensemble member, predicting with it, and its checkpoint.

The paper's recipe: SGD (lr 1e-4, momentum 0.9; Nesterov in the authors'
code), batch 10, binary cross-entropy on the sigmoid output, ×4 augmented
training and validation sets, train until validation accuracy peaks. Here
"peaks" means: keep the state of the epoch with the best validation accuracy
(``monitor``: plain, as the authors' Keras checkpoint, or balanced; ties: lower
validation loss) and stop after ``patience`` epochs without a higher one, or
at ``max_epochs`` (the authors: patience 5, at most 20 epochs). A member is deterministic given its seed: the seed fixes the
initial weights, the batch order and the dropout masks.
"""
from __future__ import annotations

import copy
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ingest.dataset import DatasetStore
from training.data import ResidentLoader, VideoDataset, make_loader
from training.model import ARCHITECTURES, EmergenceCausal, EmergenceCNN, EmergenceCNN2D, model_from_hparams

CHECKPOINT_FORMAT = "fluxwatch.member/1"


@dataclass(frozen=True)
class TrainConfig:
    """How a member is trained (optimiser, stopping, augmentation) and shaped (architecture).

    Attributes
    ----------
    lr : SGD learning rate (1e-4, the paper's; slow on CPU, small presets raise it).
    momentum : SGD momentum (0.9).
    batch_size : videos per step (10).
    max_epochs : hard limit on epochs (passes over the augmented training set).
    patience : stop after this many epochs without a higher balanced validation accuracy.
    augment : NS/polarity augmentation (:data:`training.data.AUGMENT_MODES`): "x4", the paper's, of
        training and validation sets; "cycle", one variant per video per epoch, validation unaugmented.
    balance : weight the positive class by n_negative / n_positive of the training labels, so a
        small, imbalanced training set does not collapse onto the majority class.
    truncate : share of training items shown masked at a random frame n (frames after n repeat frame n),
        labelled "has emerged by frame n" from the catalog's crude onset (:class:`training.data.VideoDataset`):
        the service scores such partial videos. 0 trains on complete videos only, as the paper does.
    select : which epoch's weights the member keeps: "best", the validation peak (the paper's); "last", the
        weights after ``max_epochs`` epochs (no early stop), for a model that audits the very labels it would
        otherwise be selected on (the relabel loop's models validate on the block they audit).
    nesterov : Nesterov momentum (the authors' Keras SGD).
    monitor : the validation accuracy that picks the best epoch and stops training: "balanced" (the mean of the
        classes' accuracies) or "accuracy" (plain, the authors' ``val_accuracy``).
    architecture : "3d" (:class:`~training.model.EmergenceCNN`), "2d" (:class:`~training.model.EmergenceCNN2D`,
        the authors' frames-as-channels network, which takes ``channels``, ``fc`` and ``dropout`` and ignores
        ``time_stride``, ``batch_norm`` and ``input_pool``: it always normalises and never pools its input) or
        "causal" (:class:`~training.model.EmergenceCausal`, of its own default shape, trained on dense per-frame
        targets, :func:`training.data.dense_targets`; ``truncate`` must be 0).
    channels, fc, time_stride, dropout, batch_norm, input_pool : the architecture's shape.
    num_workers : DataLoader worker processes (0 reads videos in the training process).
    optimizer : "sgd" (the paper's, with ``momentum`` and ``nesterov``) or "adam" (``lr`` its step size).
    precision : "fp32", or "bf16": the forward pass under bfloat16 autocast (the loss and the weights stay
        float32; on a GPU the 2-D net also runs channels-last).
    onsets : the catalog column of the onsets behind truncated and dense targets: "crude_onset_frame" (the
        catalog's, what a real archive has) or "true_onset_frame" (the synthetic truth: upper bounds only).
    resident : hold the training and validation videos on the device (:class:`training.data.ResidentLoader`)
        instead of reading them from the store each epoch (:func:`training.data.make_loader`, ``num_workers``
        processes, pinned memory on a GPU).
    """

    lr: float = 1e-4
    momentum: float = 0.9
    batch_size: int = 10
    max_epochs: int = 50
    patience: int = 5
    augment: str = "x4"
    balance: bool = False
    truncate: float = 0.0
    select: str = "best"
    channels: tuple[int, ...] = (8, 16, 32, 64)
    fc: tuple[int, int] = (112, 32)
    time_stride: int = 3
    dropout: float = 0.5
    batch_norm: bool = False
    input_pool: bool = False
    nesterov: bool = False
    monitor: str = "balanced"
    architecture: str = "3d"
    num_workers: int = 0
    optimizer: str = "sgd"
    precision: str = "fp32"
    resident: bool = False
    onsets: str = "crude_onset_frame"

    def __post_init__(self):
        if self.lr <= 0 or not 0 <= self.momentum < 1 or self.batch_size < 1:
            raise ValueError("need lr > 0, 0 <= momentum < 1, batch_size >= 1")
        if self.max_epochs < 1 or self.patience < 1:
            raise ValueError("max_epochs and patience must be >= 1")
        if self.select not in ("best", "last"):
            raise ValueError(f"select is 'best' or 'last', got {self.select!r}")
        if not 0.0 <= self.truncate <= 1.0:
            raise ValueError(f"truncate is a share in [0, 1], got {self.truncate}")
        if self.monitor not in ("balanced", "accuracy"):
            raise ValueError(f"monitor is 'balanced' or 'accuracy', got {self.monitor!r}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture is one of {sorted(ARCHITECTURES)}, got {self.architecture!r}")
        if self.onsets not in ("crude_onset_frame", "true_onset_frame"):
            raise ValueError(f"onsets is 'crude_onset_frame' or 'true_onset_frame', got {self.onsets!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision is 'fp32' or 'bf16', got {self.precision!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer is 'sgd' or 'adam', got {self.optimizer!r}")
        if self.dense and self.truncate:
            raise ValueError("a causal member is trained on every frame: truncate must be 0")
        object.__setattr__(self, "channels", tuple(self.channels))
        object.__setattr__(self, "fc", tuple(self.fc))

    @property
    def dense(self) -> bool:
        """Whether members train on a target at every frame (the causal detector)."""
        return self.architecture == "causal"

    def build_model(self, n_frames: int, pixels: int) -> nn.Module:
        """A freshly initialised model of this architecture (uses torch's global RNG)."""
        if self.architecture == "causal":
            return EmergenceCausal(n_frames, pixels)
        if self.architecture == "2d":
            return EmergenceCNN2D(n_frames, pixels, self.channels, fc=self.fc, dropout=self.dropout)
        return EmergenceCNN(n_frames, pixels, self.channels, self.fc, self.time_stride, self.dropout, self.batch_norm,
                            self.input_pool)


@dataclass
class TrainedMember:
    """A trained member: the model at its best epoch (eval mode, on CPU after loading) and its provenance.

    ``history`` has one dict per epoch: epoch, train_loss, train_accuracy,
    val_loss, val_accuracy, val_balanced_accuracy (on the ×4 augmented sets when
    ``config.augment == "x4"``), seconds. The best epoch has the highest validation
    accuracy of ``config.monitor``: balanced (the mean of the two classes'
    accuracies: crude labels are mostly "emergence", and plain accuracy would
    favour calling everything one) or plain; ``val_accuracy`` is the plain
    accuracy at that epoch. ``train_labels`` and ``val_labels`` are the 0/1
    labels it was trained and validated on (int8; ``None`` when read from a
    checkpoint written before they were stored).
    """

    model: nn.Module
    seed: int
    config: TrainConfig
    history: list[dict]
    best_epoch: int
    val_accuracy: float
    dataset_fingerprint: str
    train_idx: np.ndarray = field(repr=False)
    val_idx: np.ndarray = field(repr=False)
    train_labels: np.ndarray | None = field(default=None, repr=False)
    val_labels: np.ndarray | None = field(default=None, repr=False)


@contextmanager
def _deterministic():
    """Deterministic kernels where torch has them (warn otherwise); previous settings restored."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.benchmark)
    # cuBLAS needs this before its first use to be deterministic; a no-op on CPU.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark = previous[2]


def _run_epoch(model, loader, device, optimizer=None, desc="", progress=True,
               pos_weight=None, bf16: bool = False) -> tuple[float, float, float]:
    """One pass over ``loader``; trains when ``optimizer`` is given.

    Returns (mean BCE loss, accuracy at 0.5, balanced accuracy: the mean over the classes present of their accuracy).

    ``pos_weight`` (a scalar tensor) weights the positive class in the loss; ``bf16`` runs the forward pass
    under bfloat16 autocast. Dense targets (batch, 2, T)
    (:func:`training.data.dense_targets`) train the per-frame logits on the weighted mean BCE over
    frames; accuracies are then the video's (its largest logit against its largest target).
    """
    training = optimizer is not None
    device = torch.device(device)
    model.train(training)
    loss_sum, correct, seen = 0.0, 0, 0
    class_correct, class_seen = np.zeros(2), np.zeros(2)
    with torch.set_grad_enabled(training), tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch") as bar:
        for x, y in bar:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model.frame_logits(x) if y.ndim == 3 else model(x)
            logits = logits.float()
            if y.ndim == 3:
                frame_logits = logits
                # a batch of emergences whose onsets are unknown has no weight at all: its loss is 0, not 0/0
                loss = (nn.functional.binary_cross_entropy_with_logits(frame_logits, y[:, 0], weight=y[:, 1], pos_weight=pos_weight,
                                                                       reduction="sum") / y[:, 1].sum().clamp(min=1.0))
                logits, y = frame_logits.amax(dim=1), y[:, 0].amax(dim=1)
            else:
                loss = nn.functional.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight)
            if training and not torch.isfinite(loss):
                raise FloatingPointError(f"{desc}: the training loss is {loss.item()} (diverged)")
            if training:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            loss_sum += loss.item() * len(y)
            right = ((logits > 0).float() == y).cpu().numpy()
            label = y.cpu().numpy().astype(int)
            correct += int(right.sum())
            seen += len(y)
            np.add.at(class_correct, label, right)
            np.add.at(class_seen, label, 1)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}")
    present = class_seen > 0
    return loss_sum / seen, correct / seen, float(np.mean(class_correct[present] / class_seen[present]))


def batches(dataset: VideoDataset, config: TrainConfig, shuffle: bool, seed: int, device: torch.device) -> DataLoader | ResidentLoader:
    """The batches of ``dataset`` as ``config`` reads them: held on ``device`` (``config.resident``), or by a loader with
    ``config.num_workers`` processes (pinned memory on a GPU)."""
    if config.resident:
        return ResidentLoader(dataset, config.batch_size, shuffle, seed, device)
    return make_loader(dataset, config.batch_size, shuffle, seed, config.num_workers, device.type == "cuda")


def new_model(config: TrainConfig, n_frames: int, pixels: int, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A freshly initialised model of ``config`` on ``device`` (the 2-D net channels-last on a GPU) and its optimiser
    (uses torch's global RNG)."""
    model = config.build_model(n_frames, pixels).to(device)
    if config.architecture == "2d" and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = (torch.optim.Adam(model.parameters(), lr=config.lr) if config.optimizer == "adam" else
                 torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=config.nesterov))
    return model, optimizer


def train_member(store: DatasetStore, train_idx, train_labels, val_idx, val_labels, seed: int,
                 config: TrainConfig = TrainConfig(), device: str | torch.device = "cpu", progress: bool = True,
                 checkpoint: str | Path | None = None) -> TrainedMember:
    """Train one member on ``store[train_idx]`` (labels 0/1), stopping at peak balanced accuracy on ``store[val_idx]``.

    Parameters
    ----------
    store : the dataset store; videos (T, pixels, pixels) in G, scaled here.
    train_idx, train_labels, val_idx, val_labels : 1-D arrays of store rows and their 0/1 labels.
    seed : fixes initial weights, batch order and dropout (torch's global RNG is restored afterwards).
    config : optimiser, stopping and architecture.
    device : torch device to train on.
    progress : show tqdm bars (epochs, and batches within an epoch).
    checkpoint : if given, the trained member is saved there (see :func:`save_member`).

    Returns the member with the best-epoch weights, in eval mode, on ``device``.
    """
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ValueError("train_member needs non-empty training and validation sets")
    device = torch.device(device)
    n_frames, pixels, _ = store.video_shape
    train_set = VideoDataset(store, train_idx, train_labels, augment=config.augment, truncate=config.truncate, seed=seed,
                             dense=config.dense, onsets=config.onsets)
    val_set = VideoDataset(store, val_idx, val_labels, augment="x4" if config.augment == "x4" else "none", dense=config.dense,
                           onsets=config.onsets)
    train_loader, val_loader = batches(train_set, config, True, seed, device), batches(val_set, config, False, seed, device)
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices), _deterministic():
        torch.manual_seed(int(seed))
        model, optimizer = new_model(config, n_frames, pixels, device)
        labels = np.asarray(train_labels)
        pos_weight = (torch.tensor(max((labels == 0).sum(), 1) / max((labels == 1).sum(), 1), dtype=torch.float32,
                                   device=device) if config.balance else None)
        history: list[dict] = []
        best = (-1.0, float("inf"))
        best_state, best_epoch, last_gain = None, 0, 0
        epochs = tqdm(range(1, config.max_epochs + 1), desc=f"member seed {seed}", disable=not progress, unit="epoch")
        for epoch in epochs:
            t0 = time.perf_counter()
            train_set.set_epoch(epoch)
            bf16 = config.precision == "bf16"
            train_loss, train_acc, _ = _run_epoch(model, train_loader, device, optimizer, f"epoch {epoch} train",
                                                  progress, pos_weight, bf16)
            val_loss, val_acc, val_bal = _run_epoch(model, val_loader, device, None, f"epoch {epoch} val", progress, bf16=bf16)
            history.append({"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_acc, "val_loss": val_loss,
                            "val_accuracy": val_acc, "val_balanced_accuracy": val_bal,
                            "seconds": time.perf_counter() - t0})
            score = val_bal if config.monitor == "balanced" else val_acc
            if score > best[0]:
                last_gain = epoch
            if config.select == "last" or (score, -val_loss) > (best[0], -best[1]):
                best, best_epoch = (score, val_loss), epoch
                best_state = copy.deepcopy(model.state_dict())
            epochs.set_postfix(val=f"{score:.3f}", best=f"{best[0]:.3f}@{best_epoch}")
            if config.select == "best" and epoch - last_gain >= config.patience:
                break
        epochs.close()
    model.load_state_dict(best_state)
    model.eval()
    member = TrainedMember(model, int(seed), config, history, best_epoch, history[best_epoch - 1]["val_accuracy"],
                           store.fingerprint(),
                           np.asarray(train_idx, np.int64), np.asarray(val_idx, np.int64),
                           np.asarray(train_labels, np.int8), np.asarray(val_labels, np.int8))
    if checkpoint is not None:
        save_member(member, checkpoint)
    return member


def save_member(member: TrainedMember, path: str | Path) -> Path:
    """Write ``member`` (state_dict, architecture, config, history, provenance) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in member.model.state_dict().items()},
        "model_hparams": dict(member.model.hparams),
        "config": asdict(member.config),
        "seed": member.seed,
        "history": member.history,
        "best_epoch": member.best_epoch,
        "val_accuracy": member.val_accuracy,
        "dataset_fingerprint": member.dataset_fingerprint,
        "train_idx": member.train_idx.tolist(),
        "val_idx": member.val_idx.tolist(),
    }
    if member.train_labels is not None and member.val_labels is not None:
        payload |= {"train_labels": member.train_labels.tolist(), "val_labels": member.val_labels.tolist()}
    tmp = path.with_name(path.name + ".partial")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_member(path: str | Path, device: str | torch.device = "cpu") -> TrainedMember:
    """Read a member written by :func:`save_member`; its model is in eval mode on ``device``."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a fluxwatch member checkpoint (format={payload.get('format')!r})")
    model = model_from_hparams(payload["model_hparams"])
    model.load_state_dict(payload["state_dict"])
    model.to(device).eval()
    labels = [np.asarray(payload[k], np.int8) if k in payload else None for k in ("train_labels", "val_labels")]
    return TrainedMember(model, payload["seed"], TrainConfig(**payload["config"]), payload["history"],
                         payload["best_epoch"], payload["val_accuracy"], payload["dataset_fingerprint"],
                         np.asarray(payload["train_idx"], np.int64), np.asarray(payload["val_idx"], np.int64), *labels)


def as_module(model_or_member: nn.Module | TrainedMember) -> nn.Module:
    """The torch module of a model or a :class:`TrainedMember`."""
    return model_or_member.model if isinstance(model_or_member, TrainedMember) else model_or_member


@torch.no_grad()
def predict(model_or_member: nn.Module | TrainedMember, store: DatasetStore, indices,
            device: str | torch.device = "cpu", batch_size: int = 10, progress: bool = False) -> np.ndarray:
    """Emergence probabilities (sigmoid outputs), float32 (len(indices),), of the unaugmented ``store[indices]``.

    The model is put in eval mode (no dropout).
    """
    model = as_module(model_or_member).to(device).eval()
    loader = make_loader(VideoDataset(store, indices), batch_size, shuffle=False, seed=0)
    out = [torch.sigmoid(model(x.to(device))).cpu() for x, _ in tqdm(loader, desc="predict", disable=not progress, leave=False)]
    return torch.cat(out).numpy().astype(np.float32) if out else np.zeros(0, np.float32)
