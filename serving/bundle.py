"""The model bundle as serving sees it: a validated manifest and one ONNX Runtime session per member."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
import onnxruntime as ort

from common.video import scale_for_model

REQUIRED_INPUT = ("n_frames", "pixels", "cadence_min", "clip_G", "layout")


class BundleError(ValueError):
    """A model bundle that cannot be served; names the path and the problem."""

    def __init__(self, path, problem):
        super().__init__(f"{path}: {problem}")


@dataclass(frozen=True)
class Member:
    fold: str
    seed: int
    session: ort.InferenceSession


class ModelBundle:
    """Load and validate ``bundle/manifest.json`` and its members.

    Checks: the manifest parses and has the input spec (frames, pixels,
    cadence, clip, layout NCTHW), a threshold in (0, 1) and members; each
    member file exists, matches its SHA-256 and takes input ``video`` of
    shape (batch, 1, n_frames, pixels, pixels). CUDA is used when ONNX
    Runtime offers it, the CPU otherwise.
    """

    def __init__(self, path: str | Path, providers: list[str] | None = None):
        self.path = Path(path)
        manifest_path = self.path / "manifest.json"
        if not manifest_path.is_file():
            raise BundleError(self.path, "no manifest.json (run train-ensemble, or point --bundle at its bundle/)")
        try:
            self.manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise BundleError(manifest_path, f"not valid JSON ({exc})") from None
        spec = self.manifest.get("input", {})
        missing = [k for k in REQUIRED_INPUT if k not in spec]
        if missing:
            raise BundleError(manifest_path, f"input spec lacks {missing}")
        if spec["layout"] != "NCTHW":
            raise BundleError(manifest_path, f"input layout {spec['layout']!r} is not NCTHW")
        self.n_frames, self.pixels = int(spec["n_frames"]), int(spec["pixels"])
        self.cadence = spec["cadence_min"] * u.min
        self.clip = spec["clip_G"] * u.G
        self.threshold = float(self.manifest.get("threshold", -1))
        if not 0 < self.threshold < 1:
            raise BundleError(manifest_path, f"threshold {self.threshold} is not in (0, 1)")
        self.model_version = str(self.manifest.get("model_version", "unknown"))
        available = ort.get_available_providers()
        self.providers = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.members = []
        for entry in self.manifest.get("members", []):
            f = self.path / entry["file"]
            if not f.is_file():
                raise BundleError(f, "member file is missing")
            if hashlib.sha256(f.read_bytes()).hexdigest() != entry["sha256"]:
                raise BundleError(f, "SHA-256 does not match the manifest")
            session = ort.InferenceSession(str(f), providers=self.providers)
            shape = session.get_inputs()[0].shape
            if session.get_inputs()[0].name != "video" or list(shape[1:]) != [1, self.n_frames, self.pixels, self.pixels]:
                raise BundleError(f, f"input {session.get_inputs()[0].name} {shape} does not match the manifest")
            self.members.append(Member(str(entry["fold"]), int(entry["seed"]), session))
        if not self.members:
            raise BundleError(manifest_path, "no members")

    def probabilities(self, videos_gauss: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """Every member's emergence probability for videos (N, n_frames, pixels, pixels) in G: (n_members, N)."""
        out = np.empty((len(self.members), len(videos_gauss)), np.float32)
        for i in range(0, len(videos_gauss), batch_size):
            # scale one batch at a time: it stays in cache for all members
            x = scale_for_model(videos_gauss[i : i + batch_size], self.clip)[:, None]
            for m, member in enumerate(self.members):
                out[m, i : i + batch_size] = member.session.run(None, {"video": x})[0]
        return out
