"""The new-flux detector (:mod:`common.newflux`) as the service streams it: a bundle that names it instead of
neural-network members.

Each patch passage keeps its last ``background_frames`` + 1 frames; a new
frame costs the detector's series over those frames only (its background
reaches no further back). The score of a frame is the bipolar new flux F
mapped into [0, 1) as F / (F + ``reference_Mx``): monotone in F, so the alert
policy's threshold t is the flux level ``reference_Mx`` · t / (1 − t), and
the operating point chosen on the validation stream is a flux level. The
onset estimate is the detector's (:meth:`common.newflux.NewFluxDetector.onset_frame`
at the alert threshold's level), from the score history.

μ of each pixel at each frame is the Earth's view at the frame's slot
(:func:`common.observer.mu_at`).
"""
from __future__ import annotations

from collections.abc import Hashable
from dataclasses import replace
from typing import cast

import numpy as np

from common.newflux import FieldMaps, NewFluxDetector
from common.observer import mu_at
from common.patches import PatchGrid, carrington_pixel_area_cm2


class NewFluxStreams:
    """Streaming scores of the new-flux detector for many patch passages, one new frame at a time (the interface of
    :class:`serving.streaming.StreamingEnsemble`: one member).

    Parameters
    ----------
    detector : the detector's settings (its level is the alert policy's threshold, not used here).
    grid : the patch grid; stream keys are (patch id, passage start slot).
    reference_Mx : F at which the score is 0.5, Mx.
    n_frames : frames of a passage's video.
    """

    def __init__(self, detector: NewFluxDetector, grid: PatchGrid, reference_Mx: float, n_frames: int):
        self.detector, self.grid, self.reference_Mx, self.n_frames = detector, grid, float(reference_Mx), n_frames
        #: per stream, the detector's maps of its last background_frames + 1 frames, and its last frame
        self._streams: dict[Hashable, tuple[FieldMaps, int]] = {}
        self._area: dict[int, np.ndarray] = {}

    def frontier(self, key: Hashable) -> int | None:
        """The last frame scored on stream ``key`` (None if the stream is unknown)."""
        stream = self._streams.get(key)
        return None if stream is None else stream[1]

    def forget(self, key: Hashable) -> None:
        self._streams.pop(key, None)

    def score(self, items: list[tuple[Hashable, int, np.ndarray]]) -> np.ndarray:
        """Score frame ``k`` of each stream: (1, len(items)); ``items`` as :meth:`StreamingEnsemble.score` takes them
        (the frames after the stream's frontier up to k, or all frames 0..k of an unknown stream, in G)."""
        out = np.empty((1, len(items)), np.float32)
        W = self.detector.background_frames
        for i, (key, k, frames) in enumerate(items):
            known = self.frontier(key)
            if len(frames) != k - (-1 if known is None else known):
                raise ValueError(f"stream {key}: {len(frames)} new frames do not reach frame {k} from "
                                 + ("the start" if known is None else f"frame {known}"))
            pid, start = cast(tuple[str, int], key)
            j = self.grid.index(pid)
            frames = np.asarray(frames, np.float32)[-(W + 1):]
            new = self.detector.maps(frames, self._mu(j, start + k - len(frames) + 1 + np.arange(len(frames))))
            old = self._streams.get(key)
            maps = new if old is None else FieldMaps(*(np.concatenate([a, b])[-(W + 1):] for a, b in zip(old[0], new)))
            self._streams[key] = (maps, k)
            flux = float("nan")
            if len(maps.pos) == W + 1:
                last = slice(W, W + 1)
                judged = maps.mu.min(axis=0, keepdims=True) >= self.detector.mu_min
                background = [m[:W].min(axis=0, keepdims=True) for m in (maps.pos, maps.neg)]
                flux = float(self.detector.bipolar(FieldMaps(*(a[last] for a in maps)), background, judged,
                                                   self._pixel_area(j))[0])
            out[0, i] = 0.0 if np.isnan(flux) else flux / (flux + self.reference_Mx)
        return out

    def _mu(self, j: int, slots: np.ndarray) -> np.ndarray:
        """μ (m, P, P) of tile ``j``'s pixels at ``slots`` (m,)."""
        lon, lat = self.grid.pixel_axes([j])
        return mu_at(lon[0], lat[0], slots)

    def _pixel_area(self, j: int) -> np.ndarray:
        if j not in self._area:
            _, lat = self.grid.pixel_axes([j])
            area = carrington_pixel_area_cm2(lat[0], float(self.grid.config.pixel_size.to_value("deg")))
            self._area[j] = np.broadcast_to(area[:, None], (len(lat[0]), len(lat[0])))
        return self._area[j]


def onset_frame(detector: NewFluxDetector, reference_Mx: float, probabilities: np.ndarray, frames: np.ndarray,
                threshold: float) -> int:
    """The detector's onset estimate at the newest of the scored ``frames`` (n,) from their scores ``probabilities``
    (n,): its bipolar new flux read back from the scores, at the flux level of the score ``threshold``."""
    p = np.asarray(probabilities, dtype=np.float64)
    series = np.full(int(frames[-1]) + 1, np.nan)
    series[np.asarray(frames, dtype=np.int64)] = reference_Mx * p / np.maximum(1.0 - p, 1e-12)
    return replace(detector, level_Mx=reference_Mx * threshold / (1.0 - threshold)).onset_frame(series, int(frames[-1]))
