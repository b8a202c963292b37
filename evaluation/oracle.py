"""The oracle: a detector that reads the simulator's noise-free truth, the ceiling for any detector under the matcher.

Per tile of the service's patch grid and per 96-min slot, the oracle sums the
**new flux** in the tile: the total unsigned flux (Mx, both footpoints) that
:func:`sim.bmr.footpoints` gives each bipole at that time (its growth and
decay law; no noise, no instrument, no projection) over every bipole of the
Sun's table, whatever its population (active regions, companions, small
bipoles and ephemeral regions), that

* began emerging (``t_emerge``) within the last ``memory_days`` (3 days),
* was on the Earth-facing hemisphere (|CMD| < 90°) at its truth onset
  (``t_onset``): flux that emerged behind the limb and rotated in is not new
  (the matcher's false-alert rule says the same),
* has its centre at emergence start in the tile (:meth:`common.patches.PatchGrid.overlapping`
  of that point; a centre on a shared edge counts in both tiles). That is the
  position the truth's footprints are built from (:func:`evaluation.replay.truth`),
  so an alert lands on a tile of the region it comes from.

A tile alerts when that sum first reaches ``flux_Mx`` (F, 10²¹ Mx by default)
while its centre faces the observer, and re-arms once the sum has dropped
below F (its bipoles decayed or aged out) or the tile has left the disk; while
above F it reports a new onset when a later bipole takes over, as an open
alert's update does in the service. The
alert's onset estimate is the truth onset of the bipole that contributes the
most new flux to the tile then, or the alert's time if that is earlier (not the
earliest contributor's: a small bipole that emerged in the tile days before
would set it early). The oracle sees every slot, the gaps of
the observing schedule included. Its alerts go through the same matcher
(:func:`evaluation.matching.match`) as the CNN's and the baseline's.

The **visible oracle** (:func:`visible_tile_flux`) is the ceiling for any
detector of magnetograms: the same bipoles, but their flux as the instrument
renders it without noise. Their B_r is summed on the tile's patch grid (1/6°
pixels, the tile and a margin of :data:`VISIBLE_MARGIN_DEG` for footpoints
that reach past its edge), each footpoint widened by the point-spread
function and the instrument's pixel at disk centre, and the visible new flux
is Σ|B_r| × pixel area: where the young footpoints of a bipole still overlap,
their opposite polarities cancel as they do in a magnetogram (at onset a
region shows about a quarter of its true flux). It never exceeds the true new
flux, so the visible oracle never alerts before the truth oracle. Projection
is taken as corrected (B_r, not B_los): a detector divides by μ.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from common.clock import CADENCE_DAYS, SLOTS_PER_DAY, slot_days, slot_time
from common.observer import central_meridian_distance
from common.patches import PatchGrid, carrington_pixel_area_cm2
from evaluation.matching import OpenedAlert
from sim import SyntheticSun, ephemeris
from sim.bmr import BMRTable, footpoint_blobs, footpoints
from sim.catalog import heliocentric_z
from sim.config import SunConfig
from sim.gauss import patch_field
from sim.physics import Blobs, wrap180

#: The oracle's default level F: new flux in a tile that makes it alert, Mx.
ORACLE_FLUX_MX = 1e21
#: How long a bipole's flux counts as new after its emergence started, days.
MEMORY_DAYS = 3.0


@dataclass(frozen=True)
class TileFlux:
    """The oracle's view of a stretch of slots: new flux per tile and what it needs to alert.

    slots : (S,) slot numbers.
    patch_ids : (N,) ids of the grid's tiles.
    flux : (S, N) new flux in each tile at each slot, Mx.
    onset_days : (S, N) truth onset of the bipole contributing the most to it, days since EPOCH (no later than
        the slot; the slot's time where none contributes).
    on_disk : (S, N) the tile's centre faces the observer.
    """

    slots: np.ndarray
    patch_ids: list[str]
    flux: np.ndarray
    onset_days: np.ndarray
    on_disk: np.ndarray


def new_bipoles(table: BMRTable, grid: PatchGrid) -> tuple[np.ndarray, np.ndarray]:
    """Which bipoles of ``table`` can add new flux, and where: (seen (n,) bool, member (n, N) bool).

    ``seen``: on the Earth-facing hemisphere (|CMD| < 90°) at its truth onset; ``member[i, j]``: bipole i is
    seen and its centre at emergence start lies in tile j.
    """
    onset_slots = np.rint(np.asarray(table.t_onset_days) / CADENCE_DAYS).astype(np.int64)
    seen = np.abs(central_meridian_distance(table.lon, ephemeris(onset_slots)[0])) < 90.0
    member = np.zeros((len(table), len(grid)), bool)
    for i in np.flatnonzero(seen):
        member[i, grid.overlapping(float(table.lon[i]), float(table.lat[i]))] = True
    return seen, member


#: The visible oracle sums the field this far (deg) beyond a tile's edges: footpoints of its bipoles reach past them.
VISIBLE_MARGIN_DEG = 3.0
#: Arcseconds per heliographic degree at disk centre seen from 1 AU.
_ARCSEC_PER_DEG = 959.6 * np.pi / 180.0


def instrument_sigma_deg(config: SunConfig, plate_scale_arcsec: float) -> float:
    """The width (Gaussian σ, heliographic deg at disk centre) the instrument adds to a footpoint: its
    point-spread function and its pixel (a box of side ``plate_scale_arcsec``, variance side²/12)."""
    psf = config.psf_fwhm_arcsec / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    return float(np.hypot(psf, plate_scale_arcsec / np.sqrt(12.0)) / _ARCSEC_PER_DEG)


def _visible(config: SunConfig, rows: BMRTable, where: np.ndarray, t: np.ndarray, grid: PatchGrid,
             new: np.ndarray, widen_deg: float) -> np.ndarray:
    """(m, N) visible new flux (Mx) of the bipoles ``rows`` (those with ``new`` (n, m) > 0 at the times ``t``)
    in the tiles they belong to (``where`` (n, N))."""
    out = np.zeros((len(t), where.shape[1]))
    blobs = footpoint_blobs(config, rows, t)  # (n, m, 2), amp in G
    sigma = np.sqrt(blobs.sigma**2 + widen_deg**2)
    amp = blobs.amp * (blobs.sigma / sigma) ** 2 * (new > 0)[:, :, None]  # the same flux, wider
    step = float(grid.config.pixel_size.to_value("deg"))
    half = 0.5 * float(grid.config.patch_size.to_value("deg")) + VISIBLE_MARGIN_DEG
    offsets = np.arange(-half, half + 0.5 * step, step)
    for j in np.flatnonzero(where.any(axis=0)):
        k = np.flatnonzero(where[:, j])
        lon_c, lat_c = float(grid.lon[j]), float(grid.lat[j])
        b = Blobs(*(a[k].transpose(1, 0, 2).reshape(len(t), -1) for a in (wrap180(blobs.lon - lon_c), blobs.lat, sigma, amp)))
        field = patch_field(b, lat_c, offsets)  # (m, n, n) G
        area = carrington_pixel_area_cm2(lat_c + offsets, step)[None, :, None]
        out[:, j] = (np.abs(field) * area).sum(axis=(1, 2))
    return out


def tile_flux(config: SunConfig, table: BMRTable, grid: PatchGrid, slots, memory_days: float = MEMORY_DAYS,
              visible_sigma_deg: float | None = None) -> TileFlux:
    """The new flux (Mx) in every tile of ``grid`` at ``slots`` (int, shape (S,)) from the bipoles of ``table``
    (every one that can have begun emerging within ``memory_days`` before a slot), as the module docstring says.

    With ``visible_sigma_deg`` (the instrument's width, :func:`instrument_sigma_deg`), the visible new flux:
    the bipoles' field rendered without noise, no more than the true new flux.
    """
    slots = np.asarray(slots, dtype=np.int64)
    t = slot_days(slots)
    l0, b0, _ = ephemeris(slots)
    on_disk = heliocentric_z(grid.lon[None, :], grid.lat[None, :], l0[:, None], b0[:, None]) > 0
    seen, member = new_bipoles(table, grid)
    flux = np.zeros((len(t), len(grid)))
    onset = np.full((len(t), len(grid)), np.inf)
    for day in range(0, len(t), SLOTS_PER_DAY):  # a day of slots at a time: the bipoles of a few days
        sl = slice(day, day + SLOTS_PER_DAY)
        near = seen & (table.t_days <= t[sl].max()) & (table.t_days > t[sl].min() - memory_days)
        rows, where = table[near], member[near]
        age = t[sl][None, :] - rows.t_days[:, None]  # (n, m) days
        new = np.abs(footpoints(config, rows, t[sl]).amp).sum(axis=-1) * ((age >= 0) & (age < memory_days))  # (n, m) Mx
        flux[sl] = new.T @ where
        if visible_sigma_deg is not None and len(rows):
            flux[sl] = np.minimum(flux[sl], _visible(config, rows, where, t[sl], grid, new, visible_sigma_deg))
        share = new[:, :, None] * where[:, None, :]  # (n, m, N) Mx
        if len(rows):
            onset[sl] = np.where(share.max(axis=0) > 0, rows.t_onset_days[share.argmax(axis=0)], np.inf)
    return TileFlux(slots, list(grid.ids), flux, np.minimum(onset, t[:, None]), on_disk)


def stream_tile_flux(sun: SyntheticSun, grid: PatchGrid, first: int, end: int, memory_days: float = MEMORY_DAYS,
                     visible_sigma_deg: float | None = None) -> TileFlux:
    """:func:`tile_flux` of ``sun`` over the slots [first, end), from its bipoles that began emerging since
    ``memory_days`` before ``first`` (visible new flux with ``visible_sigma_deg``)."""
    table = sun.bmrs(slot_time(first - int(np.ceil(memory_days * SLOTS_PER_DAY))), slot_time(end))
    return tile_flux(sun.config, table, grid, np.arange(first, end), memory_days, visible_sigma_deg)


def oracle_alerts(tiles: TileFlux, flux_Mx: float = ORACLE_FLUX_MX, onset_frames: int = 3) -> list[OpenedAlert]:
    """The oracle's alerts at level ``flux_Mx`` (F, Mx): an opening at each slot where a tile on the disk reaches F
    after being below it (or off the disk, or at the first slot); while it stays above F, a new onset
    (``kind`` "new_onset") when the onset of its largest contributor moves later by ``onset_frames`` slots or
    more since the last one, as the service's alert lifecycle updates an open alert."""
    above = (tiles.flux >= flux_Mx) & tiles.on_disk
    t = slot_days(tiles.slots)
    out = []
    for j in np.flatnonzero(above.any(axis=0)):
        last = -np.inf
        for i in np.flatnonzero(above[:, j]):
            onset = float(tiles.onset_days[i, j])
            kind: Literal["opened", "new_onset"]
            if i == 0 or not above[i - 1, j]:
                kind = "opened"
            elif onset - last >= onset_frames * CADENCE_DAYS - 1e-9:
                kind = "new_onset"
            else:
                continue
            last = onset
            out.append(OpenedAlert(f"oracle/{tiles.patch_ids[j]}/{tiles.slots[i]}", tiles.patch_ids[j], float(t[i]), onset,
                                   kind=kind))
    return sorted(out, key=lambda a: a.opened_days)
