"""The classical detector a solar physicist would use instead of the CNN: a per-tile flux-rise trigger.

As SMART/BARD-style detections do, it works on the unsigned flux of the
tile above a noise-aware level, corrected for projection: a pixel counts
when |B_los| exceeds ``n_sigma`` times the noise, and contributes
|B_los| / μ × its area on the sphere, so a region rotating across the disk
keeps its flux while a new one grows. Pixels near the limb (μ < ``mu_min``)
are left out; a tile is only judged once it has been wholly inside μ ≥
``mu_min`` for the whole history window, so a region rotating in over the
east limb enters the window at full flux and never looks like a rise.

The trigger: the flux rose by more than ``k`` standard deviations of its own
recent frame-to-frame changes (a robust σ from the median absolute
deviation over ``history`` frames) summed over ``span`` frames, and by at
least ``min_rise_Mx``. ``k`` is the knob tuned to a false-alarm rate.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

#: MAD → σ for a normal distribution.
_MAD_SIGMA = 1.4826


@dataclass(frozen=True)
class FluxRiseDetector:
    """Per-tile flux-rise trigger (see the module docstring); field strengths in G, flux in Mx."""

    knob: ClassVar[str] = "k"
    trigger_fields: ClassVar[tuple[str, ...]] = ("k", "span", "history", "min_rise_Mx")

    k: float = 5.0
    span: int = 3
    history: int = 15
    noise_G: float = 20.0
    n_sigma: float = 3.0
    mu_min: float = 0.5
    min_rise_Mx: float = 5e20

    def flux(self, video: np.ndarray, mu: np.ndarray, pixel_area_cm2: np.ndarray) -> np.ndarray:
        """Projection-corrected unsigned flux (Mx) per frame, nan where any pixel is beyond ``mu_min``.

        Parameters
        ----------
        video : (T, P, P) line-of-sight field, G.
        mu : (T, P, P) cosine of the heliocentric angle of each pixel at each frame (≤ 0 off the disk).
        pixel_area_cm2 : (P, P) area of each pixel on the solar surface, cm².
        """
        strong = np.abs(video) > self.n_sigma * self.noise_G
        radial = np.where(strong & (mu >= self.mu_min), np.abs(video) / np.maximum(mu, self.mu_min), 0.0)
        flux = (radial * pixel_area_cm2).sum(axis=(1, 2))
        flux[(mu < self.mu_min).any(axis=(1, 2))] = np.nan
        return flux

    def series(self, video: np.ndarray, mu: np.ndarray, pixel_area_cm2: np.ndarray,
               observed: np.ndarray | None = None) -> np.ndarray:
        """:meth:`flux`: the detector's figure per frame (every frame judged, as the trigger's history needs)."""
        return self.flux(video, mu, pixel_area_cm2)

    def triggers(self, flux: np.ndarray) -> list[tuple[int, int]]:
        """Every (trigger frame, onset frame) of the flux series: the onset is the start of the rise."""
        return [(t, t - self.span) for t in self.trigger_frames(flux)]

    def trigger_frames(self, flux: np.ndarray) -> list[int]:
        """Every frame at which the flux series (Mx, nan where not judged) triggers; after a trigger the
        detector re-arms once a whole new history has passed."""
        rise = flux[self.span :] - flux[: -self.span]
        steps = np.diff(flux)
        out: list[int] = []
        for t in range(self.history + self.span, len(flux)):
            if out and t - out[-1] <= self.history + self.span:
                continue
            recent = steps[t - self.span - self.history : t - self.span]
            window = flux[t - self.span - self.history : t + 1]
            if np.isnan(window).any():
                continue
            sigma = _MAD_SIGMA * np.median(np.abs(recent - np.median(recent))) * np.sqrt(self.span)
            r = rise[t - self.span]
            if r >= self.min_rise_Mx and r > self.k * sigma:
                out.append(t)
        return out

    def trigger_frame(self, flux: np.ndarray) -> int | None:
        """The first frame at which the flux series triggers, or None."""
        frames = self.trigger_frames(flux)
        return frames[0] if frames else None
