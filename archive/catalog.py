"""The emergence catalog: one row per emergence the backfill alerted, as researchers study it.

A row is an event that reports an emergence (:func:`serving.alerts.emergence_events`): an alert's opening, or
an update that moved its onset later (a new region in a tile whose alert was open). Its columns:

=======================  ==========================================================================================
region_id                the alert id (an opening) or the event id (a new onset): the ids the live service gives
patch_id                 the tile, ``L<lon>N<lat>`` of its Carrington centre
kind                     ``opened`` or ``new_onset``
onset_time               the onset estimate (UTC)
onset_uncertainty_h      half the members' onset interquartile range, hours
first_alert_time         the time of the frame the event was decided on (UTC)
carrington_lon, _lat     the tile's centre, Carrington deg
stonyhurst_lon, _lat     the tile's centre at the first alert, Stonyhurst deg
flux_at_onset_Mx         unsigned flux of the tile's strong-field pixels at the onset frame, Mx
flux_at_alert_Mx         the same at the alert's frame, Mx
peak_probability         the ensemble median's highest value from the alert until it was withdrawn or closed
instrument               the instrument of the frame it was decided on
bundle_digest            the model bundle's identity (SHA-256 of its manifest)
=======================  ==========================================================================================

Fluxes are line-of-sight, through pixels of \\|B\\| ≥ :data:`serving.region.FIELD_FLOOR_G` (no projection
correction): :class:`contract.events.Region`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from common.clock import slot_of_time
from common.figures import pyplot
from contract.events import AlertEvent, EventKind
from serving.alerts import AlertPolicy, emergence_events

COLUMNS = ["region_id", "patch_id", "kind", "onset_time", "onset_uncertainty_h", "first_alert_time", "carrington_lon",
           "carrington_lat", "stonyhurst_lon", "stonyhurst_lat", "flux_at_onset_Mx", "flux_at_alert_Mx",
           "peak_probability", "instrument", "bundle_digest"]


def _utc(times) -> pd.Series:
    return pd.to_datetime(pd.Series(times, dtype="object"), utc=True, format="ISO8601")


def emergence_catalog(events: list[AlertEvent], scores: pd.DataFrame,
                      onset_frames: int = AlertPolicy.onset_frames) -> pd.DataFrame:
    """The catalog (:data:`COLUMNS`) of ``events`` (a backfill's, in publication order) with the score series
    ``scores`` (``scores.parquet``: patch_id, passage_start_slot, frame, median) for the peak probabilities."""
    ends: dict[str, int] = {}  # alert id → the frame of its withdrawal or closing
    for e in events:
        if e.event in (EventKind.withdrawn, EventKind.closed):
            ends[e.alert_id] = e.frame
    series = {key: g.sort_values("frame") for key, g in scores.groupby(["patch_id", "passage_start_slot"])}
    rows = []
    for e in emergence_events(events, onset_frames):
        r = e.region
        at_alert = r.flux_positive_Mx + r.flux_negative_Mx
        at_onset = at_alert - r.flux_positive_change_Mx - r.flux_negative_change_Mx
        passage = series.get((e.patch_id, _passage_slot(e)))
        peak = e.probability.median
        if passage is not None:
            during = passage[(passage.frame >= e.frame) & (passage.frame <= ends.get(e.alert_id, np.iinfo(int).max))]
            peak = float(max(peak, during["median"].max())) if len(during) else peak
        rows.append({
            "region_id": e.alert_id if e.event is EventKind.opened else e.event_id, "patch_id": e.patch_id,
            "kind": "opened" if e.event is EventKind.opened else "new_onset", "onset_time": e.onset.time_utc,
            "onset_uncertainty_h": e.onset.uncertainty_hours, "first_alert_time": e.frame_time,
            "carrington_lon": e.patch.carrington.lon, "carrington_lat": e.patch.carrington.lat,
            "stonyhurst_lon": e.patch.stonyhurst.lon, "stonyhurst_lat": e.patch.stonyhurst.lat,
            "flux_at_onset_Mx": at_onset, "flux_at_alert_Mx": at_alert, "peak_probability": peak,
            "instrument": e.provenance.instrument, "bundle_digest": e.provenance.bundle_digest})
    catalog = pd.DataFrame(rows, columns=COLUMNS)
    for column in ("onset_time", "first_alert_time"):
        catalog[column] = _utc(catalog[column])
    return catalog


def _passage_slot(e: AlertEvent) -> int:
    """The passage start slot of an event (its video's frame 0)."""
    return int(slot_of_time(e.passage_start))


def plot_butterfly(catalog: pd.DataFrame, path: Path, truth: pd.DataFrame | None = None) -> Path:
    """The catalog's butterfly diagram: Carrington latitude of each emergence against its onset time, marker area
    by the flux at the alert, colour by peak probability; the true emergences (``truth``: onset_time, lat,
    flux_Mx), when given, as open circles."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.5))
    if truth is not None and len(truth):
        ax.scatter(truth.onset_time, truth.lat, s=np.clip(truth.flux_Mx / 1e20, 4, 300), facecolors="none",
                   edgecolors="0.6", linewidths=0.8, label="true emergences on the near side (simulator)")
    points = ax.scatter(catalog.onset_time, catalog.carrington_lat, s=np.clip(catalog.flux_at_alert_Mx / 1e20, 4, 300),
                        c=catalog.peak_probability, cmap="viridis", vmin=0, vmax=1, label="catalog (onset estimate)")
    fig.colorbar(points, ax=ax, label="peak probability")
    ax.set(xlabel="onset (UTC)", ylabel="Carrington latitude (deg)", ylim=(-60, 60),
           title=f"Emergence catalog: {len(catalog)} emergences (marker area ∝ flux at alert)")
    ax.axhline(0, color="0.85", lw=0.8, zorder=0)
    ax.legend(loc="upper right", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
