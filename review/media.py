"""What the desk shows of a patch video besides its frames (:func:`common.figures.sprite`): its flux over time (the
curves of :func:`common.patches.flux_curves`, the live patch page's too), its place on the disk.

A patch video is float32 ``(n_frames, pixels, pixels)`` of line-of-sight field in G, indexed ``[frame, lat, lon]``
with row 0 the southernmost (:mod:`common.patches`); frame k is at ``start + k`` cadences. Figures are drawn with
matplotlib's object API (no pyplot state), so the desk's worker threads can draw at once.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.time import Time
from matplotlib.figure import Figure

from common.clock import CADENCE_DAYS, slot_time
from common.config import PatchGridConfig
from common.observer import heliocentric


@dataclass(frozen=True)
class Curves:
    """The curves figure (PNG bytes) and where its time axis lies in the image: frame 0 at fraction ``x0`` of the
    width, the last frame at ``x1`` (the page draws its frame cursor there)."""

    png: bytes
    x0: float
    x1: float


def curves_figure(flux: dict[str, np.ndarray], masking: np.ndarray | None = None, threshold: float | None = None) -> Curves:
    """Flux over time (10²¹ Mx against days from frame 0), and below it, when given, the model's masking curve
    (probability (n_frames,) with the video masked after each frame, NaN where not scored) and its threshold."""
    n = len(flux["unsigned"])
    days = np.arange(n) * CADENCE_DAYS
    panels = 2 if masking is not None else 1
    height = 1.7 * panels + 0.6  # inches: the panels and the time axis' labels
    fig = Figure(figsize=(5.2, height), dpi=100)
    fig.subplots_adjust(left=0.14, right=0.97, top=1 - 0.12 / height, bottom=0.48 / height, hspace=0.15)
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[0]
    for name, colour in (("unsigned", "black"), ("positive", "tab:red"), ("negative", "tab:blue")):
        ax.plot(days, flux[name] / 1e21, color=colour, lw=1.4 if name == "unsigned" else 1.0, label=name)
    ax.set_ylabel("LoS flux (10²¹ Mx)", fontsize=8)
    ax.legend(fontsize=7, loc="upper left", frameon=False, ncol=3)
    if masking is not None:
        axes[1].plot(days, masking, color="tab:purple", lw=1.2)
        if threshold is not None:
            axes[1].axhline(threshold, color="grey", ls="--", lw=0.8)
        axes[1].set_ylim(0, 1)
        axes[1].set_ylabel("model p (masked)", fontsize=8)
    axes[-1].set_xlabel("days from frame 0", fontsize=8)
    axes[-1].set_xlim(0, max(days[-1], CADENCE_DAYS))
    for a in axes:
        a.tick_params(labelsize=7)
    out = io.BytesIO()
    fig.savefig(out, format="png")
    box = axes[-1].get_position()
    x1 = box.x0 + box.width * (days[-1] / max(days[-1], CADENCE_DAYS))
    return Curves(out.getvalue(), float(box.x0), float(x1))


def frame_times(start_slot: int, n_frames: int) -> Time:
    """UTC times of the frames of a video starting at ``start_slot``."""
    return slot_time(start_slot + np.arange(n_frames))


def disk_view(lon_deg, lat_deg, times: Time) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where Carrington points appear on the disk seen from Earth at ``times`` (sunpy's L0 and B0): ``x`` (west),
    ``y`` (north) in solar radii and ``z`` (> 0 on the visible side); arrays broadcast over points and times."""
    from sunpy.coordinates import sun

    return heliocentric(lon_deg, lat_deg, sun.L0(times).to_value(u.rad), sun.B0(times).to_value(u.rad))


def disk_figure(lon_deg: float, lat_deg: float, times: Time, patch_deg: float | None = None) -> bytes:
    """A small disk map (PNG): the patch centre's track over the video (green dot: frame 0, red: the last
    frame) and the patch outline at the middle frame; times are the video's frame times."""
    patch_deg = patch_deg if patch_deg is not None else PatchGridConfig().patch_size.to_value(u.deg)
    fig = Figure(figsize=(2.6, 2.8), dpi=100)
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.86))
    ax.set_aspect("equal")
    ax.set_axis_off()
    theta = np.linspace(0, 2 * np.pi, 256)
    ax.fill(np.cos(theta), np.sin(theta), color="#f4e8c8", zorder=0)
    ax.plot(np.cos(theta), np.sin(theta), color="black", lw=0.8)
    mid = times[len(times) // 2]
    around, pole_to_pole = np.linspace(0, 360, 181), np.linspace(-90, 90, 91)
    lines = [(around, np.full_like(around, b)) for b in range(-60, 61, 30)]  # parallels and meridians every 30°
    lines += [(np.full_like(pole_to_pole, lon), pole_to_pole) for lon in range(0, 360, 30)]
    for lons, lats in lines:
        gx, gy, gz = disk_view(lons, lats, mid)
        ax.plot(np.where(gz > 0, gx, np.nan), np.where(gz > 0, gy, np.nan), color="#c9b98f", lw=0.4)
    x, y, z = disk_view(lon_deg, lat_deg, times)
    ax.plot(np.where(z > 0, x, np.nan), np.where(z > 0, y, np.nan), color="tab:orange", lw=1.5)
    for k, colour in ((0, "tab:green"), (-1, "tab:red")):
        if z[k] > 0:
            ax.plot(x[k], y[k], "o", color=colour, ms=4)
    h = patch_deg / 2
    edge = np.linspace(-h, h, 20)
    ring_lon = lon_deg + np.concatenate([edge, np.full(20, h), edge[::-1], np.full(20, -h)])
    ring_lat = lat_deg + np.concatenate([np.full(20, -h), edge, np.full(20, h), edge[::-1]])
    px, py, pz = disk_view(ring_lon, ring_lat, mid)
    ax.plot(np.where(pz > 0, px, np.nan), np.where(pz > 0, py, np.nan), color="tab:red", lw=1.0)
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(-1.05, 1.05)
    fig.suptitle(f"{times[0].strftime('%Y-%m-%d %H:%M')} → {times[-1].strftime('%m-%d %H:%M')} UTC\n"
                 f"Carrington {lon_deg:.1f}°, {lat_deg:+.1f}°", fontsize=7, y=0.99)
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
