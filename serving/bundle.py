"""The model bundle as serving sees it: a validated manifest and one ONNX Runtime session per member."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
import onnxruntime as ort

from common.clock import check_cadence
from common.manifest import FILE, Manifest, ManifestError
from common.newflux import NewFluxDetector
from common.onset import member_onset_frames
from common.patches import PatchGrid
from common.video import SCALING, STREAM_INPUT, recentre, scale_for_model
from ingest.instruments import MDI_SPEC, InstrumentSpec, instrument_named
from serving.newflux import NewFluxStreams, onset_frame
from serving.streaming import CausalMember, FrameSumMember, Stage, StreamingEnsemble, StreamingMember, max_pool

#: Largest |streaming − full member| probability accepted on load.
STREAM_TOLERANCE = 1e-4


class BundleError(ManifestError):
    """A model bundle that cannot be served; names the path and the problem."""


@dataclass(frozen=True)
class Member:
    fold: str
    seed: int
    session: ort.InferenceSession  # the full graph: (batch, 1, T, P, P) scaled video → probability
    stream: StreamingMember | FrameSumMember | CausalMember  # the same member cut for streaming


class ModelBundle:
    """Load and validate ``bundle/manifest.json`` and its members.

    Checks: the manifest (:class:`common.manifest.Manifest`: schema version, input spec, thresholds in (0, 1),
    members), the clock's cadence, the scaling of :func:`common.video.scale_for_model`, the instrument; each
    member file (full and streaming graphs) exists and matches its SHA-256;
    the full graph takes input ``video`` of shape (batch, 1, n_frames, pixels,
    pixels); and the streaming graphs reproduce the full graph's masked score
    on a random video. CUDA is used when ONNX Runtime offers it, the CPU otherwise.
    """

    def __init__(self, path: str | Path, providers: list[str] | None = None, threads: int | None = None):
        self.path = Path(path)
        self.threads = threads  # ONNX Runtime's threads per session (its default, all cores, when None)
        manifest_path = self.path / FILE
        try:
            manifest = Manifest.read(self.path)
        except ManifestError as exc:
            raise BundleError(exc.path, exc.problem) from None
        #: The manifest as written (a dict: what the evaluation recorded, versions, metrics).
        self.manifest = manifest.model_dump(mode="json", exclude_unset=True)
        spec = manifest.input
        self.n_frames, self.pixels = spec.n_frames, spec.pixels
        self.cadence = spec.cadence_min * u.min
        try:
            check_cadence(self.cadence, "the bundle's videos")
        except ValueError as exc:
            raise BundleError(manifest_path, str(exc)) from None
        if spec.scaling != SCALING:
            raise BundleError(manifest_path, f"input scaling {spec.scaling!r} is not this service's {SCALING!r}")
        self.clip = spec.clip_G * u.G
        try:  # bundles from before the instrument was recorded were all trained on MDI-like videos
            #: The instrument the model was trained for; frames are brought to it (:func:`ingest.magnetogram.read_frame`).
            self.instrument = InstrumentSpec.from_dict(spec.instrument or MDI_SPEC.as_dict())
            instrument_named(self.instrument.name)
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(manifest_path, f"input instrument {spec.instrument!r} is not usable ({exc})") from None
        self.threshold = manifest.threshold
        #: Alerts open above this: the operating point chosen on a validation stream for a target false-alarm
        #: rate (:mod:`evaluation.operating`), else the training threshold.
        self.alert_threshold = manifest.alert_threshold
        self.model_version = manifest.model_version
        #: The bundle's identity: SHA-256 of its manifest, which holds every member file's SHA-256.
        self.digest = "sha256:" + hashlib.sha256(manifest_path.read_bytes()).hexdigest()
        #: Frames held fixed when the bundle's onsets were estimated (0 for bundles from before it was recorded):
        #: the live onset is looked for from this frame on (:func:`common.onset.member_onset_frames`).
        self.onset_hold = int(manifest.onset.get("hold_frames", 0))
        available = ort.get_available_providers()
        self.providers = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        #: The classical detector the bundle names instead of members (None for a bundle of networks).
        self.detector: NewFluxDetector | None = None
        self.reference_Mx = 0.0
        if manifest.detector is not None:
            try:
                self.detector = NewFluxDetector(**manifest.detector.settings)
            except TypeError as exc:
                raise BundleError(manifest_path, f"detector settings {manifest.detector.settings}: {exc}") from None
            self.reference_Mx = manifest.detector.reference_Mx
        self.members = []
        for entry in manifest.members:
            session = self._session(entry)
            shape = session.get_inputs()[0].shape
            if session.get_inputs()[0].name != "video" or list(shape[1:]) != [1, self.n_frames, self.pixels, self.pixels]:
                raise BundleError(self.path / entry["file"], f"input {session.get_inputs()[0].name} {shape} does not match the manifest")
            self.members.append(Member(str(entry["fold"]), int(entry["seed"]), session, self._stream(entry)))
        if self.members:
            self._check_streaming()

    @property
    def scorers(self) -> int:
        """The scores a frame gets: one per member, or one for a detector."""
        return len(self.members) or 1

    def streaming(self, grid: PatchGrid) -> StreamingEnsemble | NewFluxStreams:
        """A new, empty set of streams scoring with every member's streaming graphs, or with the bundle's detector
        (whose streams are keyed (patch id of ``grid``, passage start slot))."""
        if self.detector is not None:
            return NewFluxStreams(self.detector, grid, self.reference_Mx, self.n_frames)
        return StreamingEnsemble([m.stream for m in self.members],
                                 lambda gauss: recentre(scale_for_model(gauss, self.clip)))

    def onset_frames(self, curves: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """Each scorer's onset frame at the newest of the scored ``frames`` (n,) from its score history ``curves``
        (scorers, n): the frame of maximum probability gradient of each member's masking curve, or the detector's
        onset (:func:`serving.newflux.onset_frame`, at the alert threshold's flux level)."""
        if self.detector is not None:
            return np.array([onset_frame(self.detector, self.reference_Mx, curves[0], frames, self.alert_threshold)])
        return member_onset_frames(curves, frames, self.onset_hold)

    def _file(self, entry: dict) -> Path:
        """The file of a manifest file entry (file, sha256), checked to exist and match its SHA-256."""
        f = self.path / entry["file"]
        if not f.is_file():
            raise BundleError(f, "member file is missing")
        if hashlib.sha256(f.read_bytes()).hexdigest() != entry["sha256"]:
            raise BundleError(f, "SHA-256 does not match the manifest")
        return f

    def _session(self, entry: dict) -> ort.InferenceSession:
        """An ONNX Runtime session of a manifest file entry (file, sha256), checked."""
        f = self._file(entry)
        options = ort.SessionOptions()
        # Python prepares the next windows between runs: idle ONNX Runtime threads must not spin on the cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self.threads is not None:
            options.intra_op_num_threads = options.inter_op_num_threads = self.threads
        return ort.InferenceSession(str(f), options, providers=self.providers)

    def _stream(self, entry: dict) -> StreamingMember | FrameSumMember | CausalMember:
        """The member's streaming graphs: per block a convolution window stage and a time max-pool, then the head;
        for a frames-as-channels member (``stream.kind`` "frame-sum"), its first convolution's weights and the head;
        for a causal member ("causal"), its frame encoder and temporal head."""
        if "stream" not in entry:
            raise BundleError(self.path / "manifest.json", f"member {entry['file']} has no streaming graphs")
        if entry["stream"].get("input") != STREAM_INPUT:
            raise BundleError(self.path / "manifest.json", f"member {entry['file']}: streaming input "
                                                           f"{entry['stream'].get('input')!r} is not {STREAM_INPUT!r}")
        head = self._session(entry["stream"]["head"])
        run_head = lambda features: head.run(None, {"features": features})[0]  # noqa: E731
        kind = entry["stream"].get("kind", "time-windows")  # bundles from before the 2-D net have no kind
        if kind == "frame-sum":
            first = entry["stream"]["first"]
            with np.load(self._file(first), allow_pickle=False) as weights:
                return FrameSumMember(weights["weight"], weights["bias"], tuple(first["padding"]), run_head,
                                      self.n_frames, self.pixels)
        if kind == "causal":
            encoder = self._session(entry["stream"]["encoder"])
            return CausalMember(lambda pairs: encoder.run(None, {"pairs": pairs})[0], run_head, entry["stream"]["lag"],
                                entry["stream"]["receptive"], entry["stream"]["features"], self.n_frames, self.pixels)
        if kind != "time-windows":
            raise BundleError(self.path / "manifest.json", f"member {entry['file']}: unknown streaming kind {kind!r}")
        stages = []
        for block in entry["stream"]["blocks"]:
            session = self._session(block)
            run = lambda windows, session=session: session.run(None, {"window": windows})[0]  # noqa: E731
            stages += [Stage(block["time_kernel"], block["time_stride"], block["time_padding"], run),
                       max_pool(block["time_pool"])]
        return StreamingMember(stages, run_head, self.n_frames, self.pixels)

    def _check_streaming(self, seed: int = 0) -> None:
        """Streaming and full graphs must agree half-way through a random video (``BundleError`` if not): with the
        full graph's score of the video masked there, or a causal member's frame probability there."""
        rng = np.random.default_rng(seed)
        video = rng.normal(0.0, 300.0, (self.n_frames, self.pixels, self.pixels)).astype(np.float32)
        k = self.n_frames // 2
        masked = np.concatenate([video[: k + 1], np.repeat(video[k : k + 1], self.n_frames - k - 1, axis=0)])
        x, x_masked = (scale_for_model(v, self.clip)[None, None] for v in (video, masked))
        full = np.array([m.session.run(["frame_probability"], {"video": x})[0][0, k] if isinstance(m.stream, CausalMember)
                         else m.session.run(None, {"video": x_masked})[0][0] for m in self.members])
        streams = self.streaming(PatchGrid())
        if not isinstance(streams, StreamingEnsemble):
            raise BundleError(self.path, "its members do not stream as an ONNX ensemble")
        streamed = streams.score([("load-check", k, video[: k + 1])])[:, 0]
        worst = float(np.abs(full - streamed).max())
        if worst > STREAM_TOLERANCE:
            raise BundleError(self.path, f"streaming graphs differ from the full members by {worst:.2e}")

    def probabilities(self, videos_gauss: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """Every member's emergence probability for whole videos (N, n_frames, pixels, pixels) in G: (n_members, N).

        The full graphs: the reference that the streaming scores are checked against.
        """
        out = np.empty((len(self.members), len(videos_gauss)), np.float32)
        for i in range(0, len(videos_gauss), batch_size):
            # scale one batch at a time: it stays in cache for all members
            x = scale_for_model(videos_gauss[i : i + batch_size], self.clip)[:, None]
            for m, member in enumerate(self.members):
                out[m, i : i + batch_size] = member.session.run(None, {"video": x})[0]
        return out
