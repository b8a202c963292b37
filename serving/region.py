"""What an alert tells a forecaster about the region itself: where its strong field lies and how much flux it holds.

Read from the patch passage's video (float32 ``(n_frames, pixels, pixels)``, G, indexed ``[frame, lat, lon]``,
row 0 southernmost, column 0 easternmost: :mod:`common.patches`), at the event's frame and at the onset frame.
A patch's pixels are given by its axes (:meth:`common.patches.PatchGrid.pixel_axes`): the Carrington longitude of
each pixel column and latitude of each pixel row, deg, each (pixels,).
"""
from __future__ import annotations

from urllib.parse import urlencode

import numpy as np

from common.clock import slot_isot
from common.figures import sprite
from common.newflux import NewFluxDetector
from common.observer import mu_at
from common.patches import carrington_pixel_area_cm2, polarity_flux_Mx
from contract.events import Box, Region

#: Pixels weaker than this count neither in the box nor in the fluxes (G): 2.5 × MDI's 96-min noise (20 G), so noise
#: adds little; a new bipole's field reaches hundreds of G.
FIELD_FLOOR_G = 50.0


Axes = tuple[np.ndarray, np.ndarray]  # (lon of each pixel column, lat of each pixel row), Carrington deg

#: An alert whose probability falls is closed as over, not withdrawn, when its patch shows at least this bipolar
#: new flux (Mx, :mod:`common.newflux`) about the alert's onset (:func:`emerged`): about what the smallest counted
#: region shows in its first day, and below the level at which ephemeral regions and the network alert the
#: detector several times a disk-day, so that a region is recognised whether or not the detector would alert.
EMERGED_MX = 5e20

_EMERGENCE = NewFluxDetector()


def fluxes(frame: np.ndarray, axes: Axes, floor_G: float = FIELD_FLOOR_G) -> tuple[float, float]:
    """(positive, |negative|) line-of-sight flux (Mx) of a patch frame (pixels, pixels; G) through its pixels of
    |B| ≥ ``floor_G``, each weighed by its area on the solar surface."""
    lat = axes[1]
    positive, negative = polarity_flux_Mx(frame, lat, float(lat[1] - lat[0]), floor_G)
    return float(positive), float(negative)


def emerged(frames: np.ndarray, start_slot: int, since: int, axes: Axes) -> bool:
    """Whether a patch shows a region that emerged about frame ``since``: its bipolar new flux
    (:meth:`common.newflux.NewFluxDetector.series`, default settings) reached :data:`EMERGED_MX` at a frame from the
    detector's background window before ``since`` to the last of ``frames``.

    Parameters
    ----------
    frames : (k + 1, pixels, pixels) frames 0 … k of the passage's video, gaps filled, G.
    start_slot : the passage's first slot (μ of each frame is the Earth's view at its slot).
    since : the frame the alert last reported as its onset.
    axes : the patch's pixel axes.
    """
    detector = _EMERGENCE
    lo = max(min(since, len(frames) - 1) - 2 * detector.background_frames, 0)  # one background window before the first judged frame
    lon, lat = axes
    area = carrington_pixel_area_cm2(lat, float(lat[1] - lat[0]))
    series = detector.series(frames[lo:], mu_at(lon, lat, start_slot + np.arange(lo, len(frames))),
                             np.broadcast_to(area[:, None], (len(lat), len(lon))))
    return detector.reached(series, since - lo, EMERGED_MX)


def bounding_box(frame: np.ndarray, axes: Axes, floor_G: float = FIELD_FLOOR_G) -> Box:
    """The Carrington box (pixel edges) of a patch frame's pixels of |B| ≥ ``floor_G``; the patch's when none."""
    rows, cols = np.nonzero(np.abs(np.nan_to_num(frame)) >= floor_G)
    if rows.size == 0:
        rows, cols = np.array([0, frame.shape[0] - 1]), np.array([0, frame.shape[1] - 1])
    lon, lat = axes
    half = float(lat[1] - lat[0]) / 2
    return Box(lon_min=float((lon[cols.min()] - half) % 360), lon_max=float((lon[cols.max()] + half) % 360),
               lat_min=float(lat[rows.min()] - half), lat_max=float(lat[rows.max()] + half))


def cutout_path(patch_id: str, start_slot: int, frame: int, onset: int) -> str:
    """The API path of :func:`cutout_png` for a passage's frame and its onset frame."""
    query = urlencode({"passage_start": slot_isot(start_slot), "frame": frame, "onset": onset})
    return f"/patches/{patch_id}/cutout.png?{query}"


def region(video: np.ndarray, frame: int, onset: int, patch_id: str, axes: Axes, start_slot: int,
           now: np.ndarray | None = None) -> Region:
    """The :class:`~contract.events.Region` of a passage's ``video`` at ``frame`` (``now``: that frame, when it is
    not stored yet), with the flux changes since frame ``onset``."""
    current = video[frame] if now is None else now
    at_onset = current if onset >= frame else video[onset]
    pos, neg = fluxes(current, axes)
    pos0, neg0 = fluxes(at_onset, axes)
    return Region(bbox=bounding_box(current, axes), field_floor_G=FIELD_FLOOR_G, flux_positive_Mx=pos,
                  flux_negative_Mx=neg, flux_positive_change_Mx=pos - pos0, flux_negative_change_Mx=neg - neg0,
                  cutout=cutout_path(patch_id, start_slot, frame, onset))


def cutout_png(video: np.ndarray, frame: int, onset: int) -> bytes:
    """A grey PNG of a passage's frame ``onset`` (left) and ``frame`` (right), north up, saturating at ±300 G."""
    return sprite(video[[onset, frame]]).png
