"""The masking onset rule, shared by training (offline curves) and serving (live histories).

A masking curve holds a model's emergence probability for the video masked
after frame n (frames 0..n kept, frame n repeated to the end), for a
sequence of n. The onset is where the curve rises most. In the live service
the probability history of a patch is exactly this curve, one n per cadence.

The authors' code holds the first 30 frames fixed (frames before 30 are
replaced by frame 30) and so never finds an onset before frame 31: their
first rise is over the east limb, where the crude label calls an emergence
"non-emergence" anyway. A ``hold`` restricts the search in the same way.
"""
from __future__ import annotations

import numpy as np


def onset_frame(curve: np.ndarray, frames: np.ndarray | None = None) -> int:
    """The onset frame of one masking curve: ``frames[argmax(diff(curve)) + 1]``.

    ``diff(curve)[k]`` is the change of probability when the frames up to
    ``frames[k+1]`` are let in, so the returned frame is the one whose
    inclusion raises the probability the most (``frames`` defaults to 0..T−1).
    """
    curve = np.asarray(curve, dtype=np.float64)
    if curve.ndim != 1 or curve.size < 2:
        raise ValueError(f"a masking curve is 1-D with at least 2 frames, got shape {curve.shape}")
    k = int(np.argmax(np.diff(curve))) + 1
    return k if frames is None else int(np.asarray(frames)[k])


def member_onset_frames(curves: np.ndarray, frames: np.ndarray | None = None, hold: int = 0) -> np.ndarray:
    """:func:`onset_frame` of each model's curve in ``curves`` (n_models, len(frames)): int64 (n_models,).

    With ``hold`` > 0 only the points at frames ≥ ``hold`` count, once there are at least two of them (a live
    history that has not yet reached frame ``hold`` + 1 is searched whole): the onset is then after ``hold``.
    """
    curves = np.atleast_2d(np.asarray(curves))
    frames = np.arange(curves.shape[1]) if frames is None else np.asarray(frames)
    if hold > 0 and np.count_nonzero(frames >= hold) >= 2:
        curves, frames = curves[:, frames >= hold], frames[frames >= hold]
    return np.array([onset_frame(c, frames) for c in curves], dtype=np.int64)


def ensemble_onset_frame(curves: np.ndarray, frames: np.ndarray | None = None) -> float:
    """The ensemble's onset: the median over models of :func:`onset_frame` of ``curves`` (n_models, len(frames)), frames."""
    return float(np.median(member_onset_frames(curves, frames)))
