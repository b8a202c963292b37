"""ONNX export of members and the model bundle that serving loads.

A bundle is a directory::

    bundle/
      member_<fold>_<seed>.onnx   one per member: input "video" float32 (batch, 1, T, pixels, pixels),
                                  scaled to [0, 1]; output "probability" float32 (batch,), sigmoid of the logit
      member_<fold>_<seed>_conv<i>.onnx, member_<fold>_<seed>_head.onnx
                                  a 3-D member cut into time windows for streaming (see below)
      member_<fold>_<seed>_first.npz, member_<fold>_<seed>_head.onnx
                                  a 2-D (frames-as-channels) member's first convolution and the rest of it
      member_<fold>_<seed>_encoder.onnx, member_<fold>_<seed>_head.onnx
                                  a causal member's frame encoder and temporal head
      manifest.json               schema_version, model_version, input spec, members (fold, seed, file,
                                  sha256, metadata), threshold, aggregation, dataset fingerprint, metrics,
                                  versions, created_utc

The manifest is written last: a directory with a manifest is a complete
bundle. Serving reads it with onnxruntime only (no torch).

The streaming graphs let serving score the masked video at every new frame
without re-running all T frames (:mod:`serving.streaming`). Block ``i`` of the
CNN is a time convolution (kernel ``time_kernel``, stride ``time_stride``,
zero padding ``time_padding``), [batch norm,] swish and a max-pool
(``time_pool`` along time, 2×2 in space). ``conv<i>`` computes one output
time step of the block but its time pooling from one window (``conv0``
includes the model's input pooling, if any): input
``window`` (batch, C, time_kernel, H, W) → output ``features``
(batch, C', H', W'); the time pooling is a plain maximum. ``head`` maps the
last block's features (batch, C, T', H', W') to the probability. The input
of ``conv0`` is the recentred video ``2·scaled − 1`` (0 G = 0, as the zero
padding assumes).

A 2-D member (:class:`training.model.EmergenceCNN2D`, manifest ``stream.kind``
"frame-sum"; a 3-D member's is "time-windows") streams differently: its first
convolution is linear in the frames, so ``first.npz`` holds its ``weight``
(C, T, kh, kw) float32 and ``bias`` (C,) (zero ``padding`` in the manifest,
pixels) for serving to sum one frame's contribution at a time, and ``head``
maps that convolution's output (batch, C, H, W), before its swish, to the
probability.

A causal member (:class:`training.model.EmergenceCausal`, ``stream.kind``
"causal") has a second output in its full graph, ``frame_probability``
(batch, T): the probability at every frame, frame n's from frames ≤ n only
(``probability`` is their maximum, the video's). It streams as two graphs: ``encoder``,
input ``pairs`` (batch, 2, pixels, pixels), recentred frame n and frame
n − ``lag`` (frame 0 before the video starts) → ``features`` (batch, F); and
``head``, the encodings of the last ``receptive`` frames (batch, F,
receptive), zeros before frame 0 → the probability at the last of them.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
from datetime import UTC, datetime
from pathlib import Path

import astropy.units as u
import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from common.config import VideoConfig
from common.manifest import LAYOUT, SCHEMA_VERSION, Manifest
from common.video import SCALING, STREAM_INPUT
from ingest.dataset import DatasetStore
from ingest.instruments import MDI_SPEC, InstrumentSpec
from training.data import store_clip
from training.train import TrainedMember, as_module

OPSET = 18
INPUT_NAME, OUTPUT_NAME, FRAMES_OUTPUT_NAME = "video", "probability", "frame_probability"
#: Largest |ONNX Runtime − torch| probability accepted when exporting.
EXPORT_TOLERANCE = 1e-4


class _Probability(nn.Module):
    """model → sigmoid(logit): what the ONNX graph computes."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(video))


class _CausalProbability(nn.Module):
    """A causal model → (sigmoid of its video logit, the largest over the frames; sigmoid of every frame's logit)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames = torch.sigmoid(self.model.frame_logits(video))
        return frames.amax(dim=1), frames


class _CausalHead(nn.Module):
    """A causal model's temporal head on one window of encodings, then the sigmoid: (N, F, receptive) → (N,)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.head = model.head

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(features))[:, -1]


def _export_causal(model: nn.Module, stem: Path) -> dict:
    """The streaming parts of a causal member: its frame encoder and its temporal head."""
    pixels, features = model.hparams["pixels"], model.hparams["features"]
    encoder = _export(model.encoder.eval(), torch.zeros(2, 2, pixels, pixels), stem.with_name(f"{stem.name}_encoder.onnx"),
                      "pairs", "features")
    head = _export(_CausalHead(model).eval(), torch.zeros(2, features, model.receptive), stem.with_name(f"{stem.name}_head.onnx"),
                   "features", OUTPUT_NAME)
    return {"input": STREAM_INPUT, "kind": "causal", "lag": model.lag, "receptive": model.receptive, "features": features,
            "encoder": {"file": encoder.name, "sha256": _sha256(encoder)}, "head": {"file": head.name, "sha256": _sha256(head)}}


class _StreamConv(nn.Module):
    """One time step of a block: a ``(C, k, H, W)`` window → [input pooling], convolution, [batch norm],
    swish, 2×2 spatial max-pool.

    The window's time axis is folded into the channels, so the 3-D convolution over the whole window
    runs as a 2-D one (which ONNX Runtime's CPU kernels do several times faster), with the batch norm
    folded into its weights.
    """

    def __init__(self, pre: list[nn.Module], conv: nn.Conv3d, norm: nn.BatchNorm3d | None):
        super().__init__()
        self.pre = nn.Sequential(*pre)
        c_out, c_in, k, kh, kw = conv.weight.shape
        weight, bias = conv.weight.detach(), conv.bias.detach()
        if norm is not None:
            scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
            weight = weight * scale[:, None, None, None, None]
            bias = (bias - norm.running_mean) * scale + norm.bias.detach()
        self.conv = nn.Conv2d(c_in * k, c_out, (kh, kw), padding=tuple(conv.padding[1:]))
        self.conv.weight.data = weight.reshape(c_out, c_in * k, kh, kw).clone()
        self.conv.bias.data = bias.clone()

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        x = self.pre(window).flatten(1, 2)  # (N, C·k, H, W), channel-major as the 3-D weights
        return nn.functional.max_pool2d(nn.functional.silu(self.conv(x)), 2)


class _StreamHead(nn.Module):
    """The classifier on the last block's features, then the sigmoid."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.classifier(features)).squeeze(-1)


class _FrameSumHead(nn.Module):
    """A 2-D member after its first convolution: body, classifier, sigmoid."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.body, self.classifier = model.body, model.classifier

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.classifier(self.body(features))).squeeze(-1)


def _export_frame_sum(model: nn.Module, stem: Path) -> dict:
    """The streaming parts of a 2-D member: its first convolution's weights (``<stem>_first.npz``) and the head graph."""
    first = model.first
    weights = stem.with_name(f"{stem.name}_first.npz")
    with open(weights, "wb") as f:
        np.savez(f, weight=first.weight.detach().cpu().numpy().astype(np.float32),
                 bias=first.bias.detach().cpu().numpy().astype(np.float32))
    pixels = model.hparams["pixels"]
    head = _export(_FrameSumHead(model).eval(), torch.zeros(2, first.out_channels, pixels, pixels),
                   stem.with_name(f"{stem.name}_head.onnx"), "features", OUTPUT_NAME)
    return {"input": STREAM_INPUT, "kind": "frame-sum",
            "first": {"file": weights.name, "sha256": _sha256(weights), "padding": list(first.padding)},
            "head": {"file": head.name, "sha256": _sha256(head)}}


def _stream_parts(model: nn.Module) -> tuple[list[tuple[nn.Module, nn.Module, nn.Conv3d, nn.MaxPool3d]], nn.Module]:
    """The member cut for streaming: ([(window module, full block, conv, time pool) per block], head module).

    ``model.features`` is [spatial average pool], then per block conv → [batch norm] → swish → max-pool;
    the input pool (time kernel 1) goes into the first block's window module.
    """
    layers = list(model.features)
    pre = []
    while layers and isinstance(layers[0], nn.AvgPool3d) and layers[0].kernel_size[0] == 1:
        pre.append(layers.pop(0))
    blocks = []
    while layers:
        n = 4 if len(layers) > 1 and isinstance(layers[1], nn.BatchNorm3d) else 3
        block, layers = layers[:n], layers[n:]
        conv, pool, norm = block[0], block[-1], block[1] if n == 4 else None
        if not (isinstance(conv, nn.Conv3d) and isinstance(block[-2], nn.SiLU) and isinstance(pool, nn.MaxPool3d)):
            raise TypeError(f"unexpected feature layers {block}: not conv → [batch norm] → swish → max-pool")
        blocks.append((_StreamConv(pre, conv, norm).eval(), nn.Sequential(*pre, *block), conv, pool))
        pre = []
    return blocks, _StreamHead(model.classifier).eval()


def _export(module: nn.Module, example: torch.Tensor, path: Path, input_name: str, output_name: str | list[str]) -> Path:
    """Export ``module`` (one input, dynamic batch axis) to ONNX at ``path`` and check the file."""
    output_names = [output_name] if isinstance(output_name, str) else output_name
    torch.onnx.export(module, (example,), str(path), input_names=[input_name], output_names=output_names,
                      opset_version=OPSET, dynamo=True, external_data=False,
                      dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    onnx.checker.check_model(str(path), full_check=True)
    return path


def export_stream(model: nn.Module | TrainedMember, stem: Path) -> dict:
    """Export the streaming graphs of ``model`` next to ``stem`` (``<stem>_conv<i>.onnx``, ``<stem>_head.onnx``).

    Returns the manifest's ``stream`` entry: per block the file, SHA-256 and
    time geometry (kernel, stride, padding, pool), and the head's file and SHA-256.
    A 2-D member's entry is :func:`_export_frame_sum`'s instead.
    """
    model = as_module(model).to("cpu").eval()
    hp = model.hparams
    if hp.get("architecture") == "2d":
        return _export_frame_sum(model, stem)
    if hp.get("architecture") == "causal":
        return _export_causal(model, stem)
    shape = (1, hp["n_frames"], hp["pixels"], hp["pixels"])  # (C, T, H, W) entering the block
    blocks, head = _stream_parts(model)
    entries = []
    with torch.no_grad():
        x = torch.zeros(1, *shape)
        for i, (window, block, conv, pool) in enumerate(blocks):
            k, s, p = conv.kernel_size[0], conv.stride[0], conv.padding[0]
            path = _export(window, torch.zeros(2, x.shape[1], k, *x.shape[3:]), stem.with_name(f"{stem.name}_conv{i}.onnx"),
                           "window", "features")
            entries.append({"file": path.name, "sha256": _sha256(path), "time_kernel": k, "time_stride": s,
                            "time_padding": p, "time_pool": pool.kernel_size[0]})
            x = block(x)
        path = _export(head, torch.zeros(2, *x.shape[1:]), stem.with_name(f"{stem.name}_head.onnx"), "features",
                       OUTPUT_NAME)
    return {"input": STREAM_INPUT, "kind": "time-windows", "blocks": entries,
            "head": {"file": path.name, "sha256": _sha256(path)}}


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@torch.no_grad()
def _torch_probability(model: nn.Module, videos: np.ndarray) -> np.ndarray:
    wrapped = _Probability(model).to("cpu").eval()
    return wrapped(torch.from_numpy(videos)).numpy()


def export_member(model: nn.Module | TrainedMember, path: str | Path, seed: int = 0) -> Path:
    """Export ``model`` (on CPU, eval mode) to ONNX at ``path`` with a dynamic batch axis; verify with onnxruntime.

    The check runs a batch of 2 random videos (from ``seed``) through both
    and raises ``RuntimeError`` if they differ by more than ``EXPORT_TOLERANCE``.
    """
    model = as_module(model).to("cpu").eval()
    hp = model.hparams
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.rand(2, 1, hp["n_frames"], hp["pixels"], hp["pixels"], generator=torch.Generator().manual_seed(seed))
    if hp.get("architecture") == "causal":
        _export(_CausalProbability(model).eval(), example, path, INPUT_NAME, [OUTPUT_NAME, FRAMES_OUTPUT_NAME])
    else:
        _export(_Probability(model).eval(), example, path, INPUT_NAME, OUTPUT_NAME)
    diff = float(np.abs(_session(path).run([OUTPUT_NAME], {INPUT_NAME: example.numpy()})[0]
                        - _torch_probability(model, example.numpy())).max())
    if diff > EXPORT_TOLERANCE:
        raise RuntimeError(f"{path}: onnxruntime differs from torch by {diff:.2e} (> {EXPORT_TOLERANCE})")
    return path


def make_input_spec(n_frames: int, pixels: int, cadence: u.Quantity = VideoConfig().cadence,
                    clip: u.Quantity = VideoConfig().clip, instrument: InstrumentSpec = MDI_SPEC) -> dict:
    """The manifest's input spec: frames, pixels, cadence (min), clip (G), scaling, layout, name, dtype, and the
    instrument the videos were taken (or simulated) with."""
    return {"name": INPUT_NAME, "dtype": "float32", "layout": LAYOUT, "n_frames": int(n_frames), "pixels": int(pixels),
            "cadence_min": float(cadence.to_value(u.min)), "clip_G": float(clip.to_value(u.G)), "scaling": SCALING,
            "instrument": instrument.as_dict()}


def input_spec_for(store: DatasetStore) -> dict:
    """:func:`make_input_spec` of the videos in ``store`` (its frames, pixels, cadence and clip)."""
    n_frames, pixels, _ = store.video_shape
    cadence = store.attrs.get("video", {}).get("cadence_min", VideoConfig().cadence.to_value(u.min)) * u.min
    instrument = InstrumentSpec.from_dict(store.attrs.get("instrument", MDI_SPEC.as_dict()))
    return make_input_spec(n_frames, pixels, cadence, store_clip(store), instrument)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable in a manifest: {type(obj).__name__}")


def _versions() -> dict:
    def version(name):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None
    return {"python": platform.python_version(), "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": ort.__version__, "fluxwatch": version("fluxwatch")}


def write_bundle(out_dir: str | Path, members: list[tuple], threshold: float, dataset_fingerprint: str,
                 metrics: dict, input_spec: dict, model_version: str | None = None, onset_hold: int = 0) -> Path:
    """Export every member and write the bundle's ``manifest.json``; returns the bundle directory.

    Parameters
    ----------
    out_dir : bundle directory (created; existing member files and manifest are overwritten).
    members : ``(model_or_member, fold, seed, metadata)`` per member; metadata a JSON-able dict.
    threshold : decision threshold on the aggregated (median) ensemble probability.
    dataset_fingerprint : :meth:`DatasetStore.fingerprint` of the training data.
    metrics : JSON-able evaluation results.
    input_spec : from :func:`make_input_spec` / :func:`input_spec_for`; must match every member's frames and pixels.
    model_version : defaults to ``fw-`` + 12 hex digits of a hash of the member files and threshold.
    onset_hold : frames held fixed when the onset was estimated (manifest ``onset.hold_frames``; the paper's
        code 30): the service looks for the onset only from that frame on (:func:`common.onset.member_onset_frames`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not members:
        raise ValueError("a bundle needs at least one member")
    (out_dir / "manifest.json").unlink(missing_ok=True)
    entries = []
    for model, fold, seed, metadata in members:
        hp = as_module(model).hparams
        if (hp["n_frames"], hp["pixels"]) != (input_spec["n_frames"], input_spec["pixels"]):
            raise ValueError(f"member fold {fold} seed {seed} takes {hp['n_frames']}×{hp['pixels']}² videos, "
                             f"input_spec says {input_spec['n_frames']}×{input_spec['pixels']}²")
        path = export_member(model, out_dir / f"member_{fold}_{seed}.onnx", seed=int(seed))
        entries.append({"fold": fold, "seed": int(seed), "file": path.name, "sha256": _sha256(path),
                        "stream": export_stream(model, path.with_suffix("")),
                        "architecture": dict(hp), "metadata": dict(metadata or {})})
    content = hashlib.sha256(json.dumps([e["sha256"] for e in entries] + [float(threshold)]).encode()).hexdigest()
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "model_version": model_version or f"fw-{content[:12]}",
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "input": dict(input_spec),
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": ["batch"],
                   "meaning": "sigmoid probability that the video shows a BMR emergence"},
        "opset": OPSET,
        "aggregation": "median",
        "threshold": float(threshold),
        "onset": {"hold_frames": int(onset_hold)},
        "members": entries,
        "dataset_fingerprint": dataset_fingerprint,
        "metrics": metrics,
        "versions": _versions(),
    }
    # through JSON first: numpy scalars and paths in the metrics become plain values
    Manifest.validated(json.loads(json.dumps(manifest, default=_json_default)), out_dir / "manifest.json").write(out_dir)
    return out_dir


def check_bundle(path: str | Path, videos: np.ndarray, models: list) -> float:
    """Largest |ONNX Runtime − torch| probability over the bundle's members on ``videos``.

    ``videos`` are scaled videos (N, T, pixels, pixels) in [0, 1]; ``models``
    are the torch models (or members) in the manifest's member order. Also
    checks each member file's SHA-256 against the manifest (``ValueError`` if not).
    """
    path = Path(path)
    manifest = Manifest.read(path).model_dump()
    if len(models) != len(manifest["members"]):
        raise ValueError(f"{len(models)} torch models for {len(manifest['members'])} bundle members")
    x = np.ascontiguousarray(np.asarray(videos, dtype=np.float32)[:, None])
    worst = 0.0
    for entry, model in zip(manifest["members"], models):
        onnx_path = path / entry["file"]
        if _sha256(onnx_path) != entry["sha256"]:
            raise ValueError(f"{onnx_path}: SHA-256 does not match the manifest")
        got = _session(onnx_path).run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        worst = max(worst, float(np.abs(got - _torch_probability(as_module(model), x)).max()))
    return worst
