"""The detector a solar physicist would build: bipolar new flux above each pixel's recent background.

Per tile and frame, using only the frames up to that one:

1. smooth the line-of-sight field lightly (a Gaussian of ``smooth_px``
   pixels) and correct it for projection (B_los / μ) on the pixels that
   have been at μ ≥ ``mu_min`` for the whole background window and now;
   the others are not judged, so a region rotating in over the east limb
   is already in its pixels' background when they are first judged;
2. take each pixel's background per polarity as its minimum over the
   previous ``background_frames`` frames (a day and a half), widened to the
   largest background within ``widen_px`` pixels (the field drifts on the
   Carrington grid by differential rotation);
3. count as new the field above that background and above ``n_sigma``
   times the frame's measured noise (a robust σ of the smoothed frame,
   divided by μ; with ``noise_from="difference"``, of the difference of
   successive frames: the instrument's noise without the network's field, a
   research setting that did not win, kept to reproduce the research log),
   and above ``min_new_G`` (0: none; an absolute floor that keeps the
   network's weak elements out, a research setting that did not win either);
4. sum the new flux (Mx) of each polarity in a box of ``box_px`` pixels
   about every pixel, and take the tile's **bipolar new flux** as the
   largest 2 × min(positive, negative) over the boxes: a new bipole brings
   both polarities together, a drifting or decaying unipolar feature one.

It alerts when the bipolar new flux stays at or above ``level_Mx`` (F, the
knob tuned to a false-alarm rate) for ``persist`` observed frames in a row,
and re-arms once it has fallen below F / 2. The onset estimate extrapolates
the square root of the series (a region's flux first grows as the square
of time) back to zero over the run before the alert
(:meth:`NewFluxDetector.onset_frame`).

Frames the instrument did not deliver (filled in by interpolation for the
video) are not judged, so a frame's figure never depends on a later one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import gaussian_filter, maximum_filter, uniform_filter

#: MAD → σ for a normal distribution.
_MAD_SIGMA = 1.4826


class FieldMaps(NamedTuple):
    """Frames as the detector sees them: the projection-corrected field above 0 (``pos``) and below (``neg``,
    magnitude), G, (T, P, P); each frame's noise σ in G of B_los (T,); μ of the pixels (T, P, P)."""

    pos: np.ndarray
    neg: np.ndarray
    noise: np.ndarray
    mu: np.ndarray


def _noise_on_disk(frames: np.ndarray, on: np.ndarray) -> np.ndarray:
    """A robust σ (G) of each frame of ``frames`` (T, P, P) over its pixels ``on`` (T, P, P), 0 where none is."""
    out = np.zeros(len(frames), np.float32)
    for t, (x, m) in enumerate(zip(frames, on)):
        if m.any():
            v = x[m]
            out[t] = _MAD_SIGMA * np.median(np.abs(v - np.median(v)))
    return out


def _trailing_min(a: np.ndarray, n: int) -> np.ndarray:
    """The minimum over frames t − n + 1 … t of ``a`` (T, ...) at each frame t (the first frame repeated before it)."""
    padded = np.concatenate([np.repeat(a[:1], n - 1, axis=0), a])
    return sliding_window_view(padded, n, axis=0).min(axis=-1)


def _previous(a: np.ndarray) -> np.ndarray:
    """``a`` (T, ...) one frame later: frame t holds frame t − 1 (frame 0 its own)."""
    return np.concatenate([a[:1], a[:-1]])


@dataclass(frozen=True)
class NewFluxDetector:
    """Bipolar new flux in a box above each pixel's recent background (see the module docstring).

    Field strengths in G, flux in Mx, sizes in patch pixels (1/6°), durations in frames (96 min).
    """

    knob: ClassVar[str] = "level_Mx"
    trigger_fields: ClassVar[tuple[str, ...]] = ("level_Mx", "persist", "onset_fraction")

    level_Mx: float = 8e20
    smooth_px: float = 1.0
    background_frames: int = 22
    widen_px: int = 2
    n_sigma: float = 3.0
    mu_min: float = 0.3
    box_px: int = 30
    persist: int = 1
    onset_fraction: float = 0.3
    noise_from: str = "frame"
    min_new_G: float = 0.0

    def series(self, video: np.ndarray, mu: np.ndarray, pixel_area_cm2: np.ndarray,
               observed: np.ndarray | None = None) -> np.ndarray:
        """The tile's bipolar new flux (Mx) at each frame, nan where it is not judged.

        Parameters
        ----------
        video : (T, P, P) line-of-sight field, G (gaps filled; off-disk 0 G).
        mu : (T, P, P) cosine of the heliocentric angle of each pixel at each frame (≤ 0 off the disk).
        pixel_area_cm2 : (P, P) area of each pixel on the solar surface, cm².
        observed : (T,) bool, frames the instrument delivered (default: all).
        """
        T, W = len(video), self.background_frames
        out = np.full(T, np.nan)
        if T <= W:
            return out
        maps = self.maps(video, mu)
        background, judged = self.windows(maps)
        bipolar = self.bipolar(maps, background, judged, pixel_area_cm2)
        out[W:] = bipolar[W:]
        if observed is not None:
            out[~np.asarray(observed, bool)] = np.nan
        return out

    def maps(self, video: np.ndarray, mu: np.ndarray) -> FieldMaps:
        """Each frame's projection-corrected field by polarity and noise (:class:`FieldMaps`); frames (T, P, P) in G,
        μ of their pixels (T, P, P)."""
        los = gaussian_filter(np.asarray(video, dtype=np.float32), (0, self.smooth_px, self.smooth_px), mode="nearest")
        mu = np.asarray(mu, dtype=np.float32)
        radial = np.where(mu >= self.mu_min, los / np.maximum(mu, self.mu_min), 0.0).astype(np.float32)
        if self.noise_from == "difference" and len(los) > 1:
            noise = _noise_on_disk(np.diff(los, axis=0, prepend=los[1:2]), mu > 0) / np.sqrt(2.0)
        else:
            noise = _MAD_SIGMA * np.median(np.abs(los - np.median(los, axis=(1, 2), keepdims=True)), axis=(1, 2))
        return FieldMaps(np.clip(radial, 0, None), np.clip(-radial, 0, None), noise, mu)

    def windows(self, maps: FieldMaps) -> tuple[list[np.ndarray], np.ndarray]:
        """The background of every frame of ``maps`` (positive, negative; (T, P, P) G: the minimum over the previous
        ``background_frames`` frames) and its judged pixels (T, P, P: μ ≥ ``mu_min`` from then to now)."""
        W = self.background_frames
        background = [_previous(_trailing_min(m, W)) for m in (maps.pos, maps.neg)]
        return background, _trailing_min(maps.mu, W + 1) >= self.mu_min

    def new_field(self, maps: FieldMaps, background: list[np.ndarray], judged: np.ndarray) -> list[np.ndarray]:
        """Each polarity's new field of the frames of ``maps`` (positive, negative; (T, P, P), G): above its background
        (positive, negative; (T, P, P) G, before widening) and the noise floor, on the ``judged`` pixels (T, P, P)."""
        size = (1, 2 * self.widen_px + 1, 2 * self.widen_px + 1)
        floor = np.maximum(self.n_sigma * maps.noise[:, None, None] / np.maximum(maps.mu, self.mu_min), self.min_new_G)
        out = []
        for field_G, bg in zip((maps.pos, maps.neg), background):
            bg = maximum_filter(bg, size)
            out.append(np.where(judged & (field_G > bg + floor), field_G - bg, 0.0).astype(np.float32))
        return out

    def bipolar(self, maps: FieldMaps, background: list[np.ndarray], judged: np.ndarray,
                pixel_area_cm2: np.ndarray) -> np.ndarray:
        """The bipolar new flux (Mx, nan where no pixel is judged) of the frames of ``maps``: each polarity's
        :meth:`new_field` summed over a box about every pixel, 2 × the smaller, the largest over the boxes."""
        area = np.asarray(pixel_area_cm2, dtype=np.float32)
        box = (1, self.box_px, self.box_px)
        sums = [uniform_filter(new * area, box, mode="constant") * float(self.box_px**2)
                for new in self.new_field(maps, background, judged)]
        out = 2.0 * np.minimum(*sums).max(axis=(1, 2))
        return np.where(judged.any(axis=(1, 2)), out, np.nan)

    def reached(self, series: np.ndarray, since: int, level_Mx: float) -> bool:
        """Whether a bipolar new-flux series (Mx, nan where not judged) reached ``level_Mx`` at a judged frame from
        ``background_frames`` before frame ``since`` on (the new flux of a region that emerged about ``since``
        stays above its background that long)."""
        recent = np.asarray(series, dtype=np.float64)[max(since - self.background_frames, 0):]
        return bool(np.any(recent[np.isfinite(recent)] >= level_Mx))

    def triggers(self, series: np.ndarray) -> list[tuple[int, int]]:
        """Every (alert frame, onset frame) of a bipolar new-flux series (Mx, nan where not judged)."""
        s = np.asarray(series, dtype=np.float64)
        out: list[tuple[int, int]] = []
        armed, run = True, 0
        for t, v in enumerate(s):
            if np.isnan(v):
                continue
            if not armed:
                armed = v < 0.5 * self.level_Mx
                run = 0
                continue
            run = run + 1 if v >= self.level_Mx else 0
            if run >= self.persist:
                out.append((t, self.onset_frame(s, t)))
                armed, run = False, 0
        return out

    def onset_frame(self, series: np.ndarray, t: int) -> int:
        """The onset estimate of an alert at frame ``t``: early on a region's flux grows as sin² of time, so the
        square root of its new flux grows linearly; a line fitted to it over the run of judged frames ending at
        ``t`` over which the series stayed at or above ``onset_fraction`` × F is extrapolated back to zero
        (no earlier than ``background_frames`` before the run; the run's first frame when it has under three; ``t``
        when the series is below that level at ``t``)."""
        level = self.onset_fraction * self.level_Mx
        run: list[int] = []
        for k in range(t, -1, -1):
            v = series[k]
            if np.isnan(v):
                continue
            if v < level:
                break
            run.append(k)
        if not run:  # below the onset level now: nothing emerging
            return t
        start = run[-1]
        if len(run) < 3:
            return start
        frames = np.array(run[::-1], dtype=np.float64)
        slope, intercept = np.polyfit(frames, np.sqrt(series[run[::-1]]), 1)
        if slope <= 0:
            return start
        return int(np.clip(round(-intercept / slope), max(start - self.background_frames, 0), start))
