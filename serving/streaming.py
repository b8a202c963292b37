"""Incremental masked scoring: the paper's masked score at every new frame without re-running the video.

The streaming score of a patch at frame k is the member's probability for
the *masked* video: frames 0..k, then frame k repeated to the end. From one
frame to the next only frames ≥ k change, and they all hold one value. So
every time step of every layer is one of three kinds:

* **final**: its window reads only frames ≤ k (and padding). It never
  changes again; it is computed once and kept while later windows need it.
* **constant**: its window lies inside the run of repeated frames, so all
  such steps share one value, computed once per frame.
* **explicit**: the few steps astride frame k or touching the end padding,
  computed afresh each frame.

A frame therefore costs a handful of time steps per layer instead of all of
them, and the result equals the full model on the masked video to float
rounding (checked on load, and by the tests). For the 225-frame CNN that is
about 4× less arithmetic: the deeper layers have few time steps left, and a
few of them change with every frame.

The member is given as a chain of :class:`Stage` s over time (convolution
windows from the bundle's ``conv<i>`` graphs, time max-pools in numpy) and a
head graph; see :mod:`training.export` for the graphs' contract.

A frames-as-channels member (the authors' 2-D network, :class:`FrameSumMember`)
has no time axis to cut, but its first convolution is linear in the frames:
for the video masked after frame k it is Σ_{t≤k} W_t∗x_t + (Σ_{t>k} W_t)∗x_k + b.
A stream keeps the running sum, adds one frame's term per new frame and runs
the rest of the net (a head graph) once per frame.

A causal member (:class:`CausalMember`) is not masked at all: its score at
frame k depends on frames ≤ k only, by construction. A stream keeps the last
``lag`` frames and the last ``receptive`` frame encodings; a new frame costs
one encoding and one head output, whatever k is. The new frames of every
stream scored together (all tiles of a frame, and all past frames of the
streams being rebuilt) share the encoder's runs.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import numpy as np

#: Largest number of windows sent to ONNX Runtime in one call (bounds memory when a stream is rebuilt).
CHUNK = 256


@dataclass(frozen=True)
class Stage:
    """A time-windowed step: output step ``q`` reads input steps ``[q·stride − pad, q·stride − pad + size)``.

    ``run`` maps windows ``(J, C, size, H, W)`` to outputs ``(J, C', H', W')``;
    input steps outside ``[0, n)`` are zeros.
    """

    size: int
    stride: int
    pad: int
    run: Callable[[np.ndarray], np.ndarray]

    def length(self, n: int) -> int:
        """Output steps for ``n`` input steps."""
        return (n + 2 * self.pad - self.size) // self.stride + 1

    def start(self, q: int) -> int:
        """First input step read by output step ``q``."""
        return q * self.stride - self.pad


def max_pool(size: int) -> Stage:
    """Max-pool along time over non-overlapping runs of ``size`` steps (floor: a trailing remainder is dropped)."""
    return Stage(size, size, 0, lambda windows: windows.max(axis=2))


@dataclass
class Steps:
    """One patch's time steps at one layer: final steps ``< F`` (those still needed), then this frame's provisional steps.

    Provisional steps are ``const`` on ``[C, E)`` and held in ``explicit`` elsewhere.
    """

    n: int
    zero: np.ndarray
    final: dict[int, np.ndarray] = field(default_factory=dict)
    F: int = 0
    explicit: dict[int, np.ndarray] = field(default_factory=dict)
    const: np.ndarray | None = None
    C: int = 0
    E: int = 0

    def value(self, t: int) -> np.ndarray:
        if t < 0 or t >= self.n:
            return self.zero
        if t < self.F:
            return self.final[t]
        if self.C <= t < self.E and self.const is not None:
            return self.const
        return self.explicit[t]

    def values(self) -> np.ndarray:
        """Every step, stacked along axis 1: (C, n, H, W)."""
        return np.stack([self.value(t) for t in range(self.n)], axis=1)


def _advance(stage: Stage, inputs: list[Steps], outputs: list[Steps], prune: bool) -> None:
    """Bring every patch's output steps up to date with its input after a new frame (one batched run per chunk)."""
    jobs: list[tuple[int, int | None, int]] = []  # (patch index, output step or None for the constant, first input step)
    updates = []
    for j, (a, b) in enumerate(zip(inputs, outputs)):
        F = b.F  # outputs whose last real input step is final are final
        while F < b.n and min(stage.start(F) + stage.size, a.n) - 1 < a.F:
            F += 1
        C = E = 0
        if a.const is not None:
            C = max(F, -(-(a.C + stage.pad) // stage.stride))
            E = min(b.n, (a.E + stage.pad - stage.size) // stage.stride + 1)
            if C < E:
                jobs.append((j, None, stage.start(C)))
            else:
                C = E = 0
        jobs += [(j, q, stage.start(q)) for q in range(b.F, b.n) if not (C <= q < E)]
        updates.append((F, C, E))
    results: dict[tuple[int, int | None], np.ndarray] = {}
    for i in range(0, len(jobs), CHUNK):
        chunk = jobs[i : i + CHUNK]
        zero = inputs[0].zero
        windows = np.empty((len(chunk), zero.shape[0], stage.size) + zero.shape[1:], np.float32)
        for w, (j, _, lo) in zip(windows, chunk):
            for d in range(stage.size):
                w[:, d] = inputs[j].value(lo + d)
        for (j, q, _), out in zip(chunk, stage.run(windows)):
            results[j, q] = out
    for j, (b, (F, C, E)) in enumerate(zip(outputs, updates)):
        b.final.update({q: results[j, q] for q in range(b.F, F)})
        b.explicit = {q: results[j, q] for q in range(F, b.n) if not (C <= q < E)}
        b.const = results.get((j, None))
        b.F, b.C, b.E = F, C, E
        if prune:  # input steps before the first window of the first unfinished output are never read again
            a = inputs[j]
            a.final = {t: v for t, v in a.final.items() if t >= stage.start(F)}


class StreamingMember:
    """One member as stages over time and a head, for videos of ``n_frames`` frames of ``pixels``² pixels.

    ``head`` maps the last layer's features (N, C, T', H', W') to probabilities
    (N,). The length and step shape of every layer are found on construction
    by running each stage once on zeros; layers are cut to the steps that a
    later window reads.
    """

    def __init__(self, stages: list[Stage], head: Callable[[np.ndarray], np.ndarray], n_frames: int, pixels: int):
        self.stages, self.head = stages, head
        self.n_frames, self.pixels = n_frames, pixels
        self.lengths, self.shapes = [n_frames], [(1, pixels, pixels)]
        for stage in stages:
            self.lengths.append(stage.length(self.lengths[-1]))
            probe = np.zeros((1, self.shapes[-1][0], stage.size) + self.shapes[-1][1:], np.float32)
            self.shapes.append(stage.run(probe).shape[1:])
        for i in range(len(stages) - 1, 0, -1):  # the video itself keeps its n_frames
            last = stages[i].start(self.lengths[i + 1] - 1) + stages[i].size
            self.lengths[i] = min(self.lengths[i], last)


class FrameSumMember:
    """A frames-as-channels member: its first convolution summed one frame at a time, then a head.

    Parameters
    ----------
    weight : the first convolution's kernels (C, n_frames, kh, kw): W_t = ``weight[:, t]`` acts on frame t.
    bias : its bias (C,).
    padding : its zero padding (rows, columns), pixels.
    head : the rest of the member, from the first convolution's output (N, C, H', W') to probabilities (N,).

    A stream's state is the running sum S_k = Σ_{t≤k} W_t∗x_t (C, H'·W') float64, x_t the recentred frames;
    the video masked after k enters the head as S_k + R_k∗x_k + b with R_k = Σ_{t>k} W_t.
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray, padding: tuple[int, int],
                 head: Callable[[np.ndarray], np.ndarray], n_frames: int, pixels: int):
        c, t, kh, kw = weight.shape
        if t != n_frames or bias.shape != (c,):
            raise ValueError(f"first convolution {weight.shape} (bias {bias.shape}) does not take {n_frames} frames")
        self.n_frames, self.pixels, self.head = n_frames, pixels, head
        self.size, self.padding = (kh, kw), (int(padding[0]), int(padding[1]))
        self.out = (pixels + 2 * self.padding[0] - kh + 1, pixels + 2 * self.padding[1] - kw + 1)
        #: (T, C, kh·kw): frame t's kernels, and R_k, the sum of the kernels of the frames after k
        self.kernels = weight.astype(np.float64).transpose(1, 0, 2, 3).reshape(t, c, kh * kw)
        after = np.cumsum(self.kernels[::-1], axis=0)[::-1]
        self.tails = np.concatenate([after[1:], np.zeros_like(after[:1])])
        self.bias = bias.astype(np.float64)[:, None]

    def state(self) -> np.ndarray:
        """A new stream's running sum: zeros (C, H'·W') float64."""
        return np.zeros((len(self.bias), self.out[0] * self.out[1]))

    def _taps(self, frames: np.ndarray) -> np.ndarray:
        """(m, P, P) → (m, kh·kw, H'·W'): each output pixel's input pixels under the kernel, zero padded."""
        (kh, kw), (ph, pw), (oh, ow) = self.size, self.padding, self.out
        x = np.pad(frames.astype(np.float64), ((0, 0), (ph, ph), (pw, pw)))
        return np.stack([x[:, i : i + oh, j : j + ow] for i in range(kh) for j in range(kw)], axis=1).reshape(
            len(frames), kh * kw, oh * ow)

    def advance(self, state: np.ndarray, first: int, frames: np.ndarray) -> np.ndarray:
        """Add recentred frames ``first``.. (m, P, P) to ``state`` in place; the head's input for the video masked
        after the last of them: float32 (C, H', W')."""
        k = first + len(frames) - 1
        c = len(self.bias)
        for i in range(0, len(frames), 32):  # bounds the taps' memory when a stream is rebuilt
            taps = self._taps(frames[i : i + 32])
            kernels = self.kernels[first + i : first + i + len(taps)]
            state += kernels.transpose(1, 0, 2).reshape(c, -1) @ taps.reshape(-1, taps.shape[-1])
        masked = state + self.tails[k] @ self._taps(frames[-1:])[0] + self.bias
        return masked.astype(np.float32).reshape(c, *self.out)


@dataclass
class CausalState:
    """One stream of a causal member: frame 0, the last ``lag`` frames (oldest first) and the last ``receptive``
    encodings (F, receptive), zeros before frame 0."""

    codes: np.ndarray
    first: np.ndarray | None = None
    recent: list[np.ndarray] = field(default_factory=list)


class CausalMember:
    """A causal member: a frame encoder and a temporal head over the last ``receptive`` encodings.

    Parameters
    ----------
    encoder : (N, 2, P, P) recentred frame n and frame n − ``lag`` (frame 0 before the video starts) → (N, F).
    head : encodings (N, F, receptive) → the probability at the last of them (N,).
    lag : frames between a frame and the one it is compared with.
    receptive : encodings the head reads.
    features : F, the length of one encoding.
    """

    def __init__(self, encoder: Callable[[np.ndarray], np.ndarray], head: Callable[[np.ndarray], np.ndarray], lag: int,
                 receptive: int, features: int, n_frames: int, pixels: int):
        self.encoder, self.head = encoder, head
        self.lag, self.receptive, self.features = int(lag), int(receptive), int(features)
        self.n_frames, self.pixels = n_frames, pixels

    def state(self) -> CausalState:
        return CausalState(np.zeros((self.features, self.receptive), np.float32))

    def advance(self, streams: list[tuple[CausalState, int, np.ndarray]]) -> np.ndarray:
        """Encode the new frames of many streams into their states; the head's inputs at their last frames.

        ``streams`` are ``(state, first, frames)``: recentred frames ``first``.. (m, P, P). The frames of all streams
        go to the encoder together, :data:`CHUNK` to a run. Returns (len(streams), F, receptive).
        """
        pairs = [self._pairs(state, first, frames) for state, first, frames in streams]
        flat = [pair for stream in pairs for pair in stream]
        codes = np.concatenate([self.encoder(np.array(flat[i : i + CHUNK], np.float32))
                                for i in range(0, len(flat), CHUNK)])
        out = []
        for (state, _, _), new in zip(streams, np.split(codes, np.cumsum([len(p) for p in pairs])[:-1])):
            state.codes = np.concatenate([state.codes, new.T.astype(np.float32)], axis=1)[:, -self.receptive :]
            out.append(state.codes)
        return np.stack(out)

    def _pairs(self, state: CausalState, first: int, frames: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each new frame with the frame ``lag`` before it (frame 0 before the video starts); ``state``'s recent
        frames advanced past them."""
        pairs = []
        for i, x in enumerate(frames):
            if first + i == 0:
                state.first = x
            before = state.recent[-self.lag] if len(state.recent) >= self.lag else state.first
            if before is None:
                raise RuntimeError(f"a causal stream got frame {first + i} before its frame 0")
            pairs.append((x, before))
            state.recent = (state.recent + [x])[-self.lag :]
        return pairs


class StreamingEnsemble:
    """Masked streaming scores of every member for many patch streams, one new frame at a time.

    Parameters
    ----------
    members : the members (time-windowed, frames-as-channels or causal), all for the same video shape.
    scale : frames in G → model input (the recentred scaling ``2·scaled − 1``), same shape.
    """

    def __init__(self, members: list[StreamingMember | FrameSumMember | CausalMember], scale: Callable[[np.ndarray], np.ndarray]):
        self.members, self.scale = members, scale
        self.n_frames, self.video_shape = members[0].n_frames, (1, members[0].pixels, members[0].pixels)
        #: the last time-windowed member, after which a stream's old frames are pruned (None: frames are not kept)
        self._last_windowed = max((m for m, member in enumerate(members) if isinstance(member, StreamingMember)),
                                  default=None)
        self._streams: dict[Hashable, tuple[Steps, list]] = {}

    def frontier(self, key: Hashable) -> int | None:
        """The last frame scored on stream ``key`` (None if the stream is unknown)."""
        stream = self._streams.get(key)
        return None if stream is None else stream[0].F - 1

    def forget(self, key: Hashable) -> None:
        """Drop a stream (a closed passage, or one whose past frames changed: it is rebuilt on its next score)."""
        self._streams.pop(key, None)

    def _new_stream(self) -> tuple[Steps, list]:
        """The video's steps, and per member its layers' steps (time-windowed) or its own state (frame-sum, causal)."""
        return (Steps(self.n_frames, np.zeros(self.video_shape, np.float32)),
                [[Steps(n, np.zeros(shape, np.float32)) for n, shape in zip(m.lengths[1:], m.shapes[1:])]
                 if isinstance(m, StreamingMember) else m.state() for m in self.members])

    def score(self, items: list[tuple[Hashable, int, np.ndarray]]) -> np.ndarray:
        """Score frame ``k`` of each stream; returns probabilities (n_members, len(items)).

        ``items`` are ``(key, k, frames)`` with ``frames`` (m, P, P) in G: the
        frames after the stream's frontier up to k (``m = k − frontier``), or,
        for an unknown stream, all frames 0..k (``m = k + 1``), gaps filled.
        """
        for key, k, frames in items:  # check every item before any stream changes
            known = self.frontier(key)
            if not 0 <= k < self.n_frames:
                raise ValueError(f"stream {key}: frame {k} is outside the video's {self.n_frames} frames")
            if len(frames) != k - (-1 if known is None else known):
                raise ValueError(f"stream {key}: {len(frames)} new frames do not reach frame {k} from "
                                 + ("the start" if known is None else f"frame {known}"))
        try:
            return self._score(items)
        except BaseException:  # a half-updated stream would score wrongly: drop them, they are rebuilt next time
            for key, _, _ in items:
                self.forget(key)
            raise

    def _score(self, items: list[tuple[Hashable, int, np.ndarray]]) -> np.ndarray:
        videos, firsts, news = [], [], []
        for key, k, frames in items:
            if key not in self._streams:
                self._streams[key] = self._new_stream()
            video = self._streams[key][0]
            x = self.scale(np.asarray(frames, np.float32))[:, None]
            if self._last_windowed is not None:
                video.final.update({video.F + i: f for i, f in enumerate(x)})
            firsts.append(video.F)
            news.append(x[:, 0])
            video.F = k + 1
            video.const, video.C, video.E = (x[-1], k + 1, video.n) if k + 1 < video.n else (None, 0, 0)
            videos.append(video)
        out = np.empty((len(self.members), len(items)), np.float32)
        for m, member in enumerate(self.members):
            if isinstance(member, CausalMember):  # every stream's new frames encoded together
                features = member.advance([(self._streams[key][1][m], first, x)
                                           for (key, _, _), first, x in zip(items, firsts, news)])
            elif isinstance(member, FrameSumMember):
                features = np.stack([member.advance(self._streams[key][1][m], first, x)
                                     for (key, _, _), first, x in zip(items, firsts, news)])
            else:
                seqs = [videos] + [list(level) for level in zip(*(self._streams[key][1][m] for key, _, _ in items))]
                for i, stage in enumerate(member.stages):
                    # the video's old frames are pruned once, after the last time-windowed member has read them
                    _advance(stage, seqs[i], seqs[i + 1], prune=i > 0 or m == self._last_windowed)
                features = np.stack([s.values() for s in seqs[-1]])
            for i in range(0, len(items), CHUNK):
                out[m, i : i + CHUNK] = member.head(features[i : i + CHUNK])
        return out
