"""The patch video: what both halves of fluxwatch exchange.

A video is a float array of shape ``(n_frames, pixels, pixels)`` in gauss
(line-of-sight field), frame ``k`` observed at ``start + k * cadence``. Frames
follow the paper's cleaning: missing frames are interpolated per pixel in
time, off-disk pixels are 0 G, and a video that runs out of data is padded at
the end with 0 G frames.
"""
from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.time import Time

from common.config import VideoConfig

#: What :func:`scale_for_model` does, as model bundles record it (manifest ``input.scaling``; keep byte-identical).
SCALING = "clip ±clip G then (B+clip)/(2·clip)"
#: What :func:`recentre` does to a stream's input, as model bundles record it (manifest ``stream.input``; keep
#: byte-identical).
STREAM_INPUT = "2·scaled − 1, zero padded in time"


def scale_for_model(video_gauss: np.ndarray, clip: u.Quantity = VideoConfig().clip) -> np.ndarray:
    """The authors' input scaling: clip to ±clip and map [-clip, +clip] onto [0, 1].

    Parameters
    ----------
    video_gauss : array in G, any shape.
    clip : Quantity[G], saturation of the scaling (1000 G in the paper's code).

    Returns float32 array of the same shape; 0 G maps to 0.5.
    """
    c = np.float32(clip.to_value(u.G))
    v = np.clip(np.asarray(video_gauss, dtype=np.float32), -c, c)
    return (v + c) / np.float32(2 * c)


def recentre(scaled):
    """The model's first step: [0, 1]-scaled input (:func:`scale_for_model`) → B/clip in [−1, 1], ``2·scaled − 1``.

    0 G maps to 0, so zero padding (of a convolution, or of a video in time)
    means 0 G. Pure arithmetic: works on numpy arrays and torch tensors alike
    and keeps their dtype (float32 stays float32). The constants are floats,
    as in the model's original forward, so exported ONNX graphs are unchanged.
    """
    return 2.0 * scaled - 1.0


def slot_of(times: Time, start: Time, config: VideoConfig = VideoConfig()) -> np.ndarray:
    """Nearest cadence slot (int, may be out of range) for each observation time."""
    offset = ((times - start).to(u.min) / config.cadence).decompose().value
    return np.rint(np.atleast_1d(offset)).astype(np.int64)


def fill_gaps(frames: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Fill the unobserved frames of one video, in place, and return it.

    Parameters
    ----------
    frames : array (n_frames, ny, nx), G. Values of unobserved frames are ignored.
    observed : bool array (n_frames,), True where a frame was observed.

    Frames between two observed frames are interpolated linearly per pixel in
    time; frames before the first observed frame repeat it; frames after the
    last observed frame are 0 G (the paper's end padding). A video with no
    observed frame is all 0 G.
    """
    observed = np.asarray(observed, dtype=bool)
    have = np.flatnonzero(observed)
    if have.size == 0:
        frames[:] = 0.0
        return frames
    frames[: have[0]] = frames[have[0]]
    frames[have[-1] + 1 :] = 0.0
    for a, b in zip(have[:-1], have[1:]):
        if b - a > 1:
            w = (np.arange(a + 1, b) - a)[:, None, None] / (b - a)
            frames[a + 1 : b] = (1 - w) * frames[a] + w * frames[b]
    return frames
