"""Replay a stretch of the synthetic Sun through the service's own code path, and score it event by event.

Full-disk FITS frames of the synthetic Sun go through the same pipeline as
``fluxwatch-serve`` (:class:`serving.service.Service`: inbox → read →
frame step → store → sinks). The service's score histories then give the
alerts of any other alert policy exactly, because scores do not depend on the
policy: :func:`policy_alerts` re-runs :func:`serving.alerts.step` over them
(a test checks it reproduces the service's own alerts). The classical
baseline runs on the same stored patch videos.

Numbers from the synthetic Sun are upper bounds for the real Sun unless shown
otherwise: the simulator is not the Sun.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import ClassVar, Literal, Protocol

import numpy as np

from common.clock import days_since_epoch, slot_days, slot_of_time, slot_time
from common.observer import central_meridian_distance
from common.patches import carrington_pixel_area_cm2
from contract.events import EventKind, Score
from evaluation.matching import Emergence, OpenedAlert
from serving.alerts import AlertPolicy, AlertState, emergence_events, is_new_onset, passage_label, step
from serving.bundle import ModelBundle
from serving.region import emerged
from serving.results import filled_frames
from serving.service import Service
from serving.step import ensemble_score
from sim import SyntheticSun, ephemeris, write_fits_series
from sim.catalog import heliocentric_z


def truth(sun: SyntheticSun, start_slot: int, end_slot: int, min_flux_Mx: float = 0.0) -> list[Emergence]:
    """Every region of ``sun`` that starts emerging in [start_slot, end_slot) with a final flux of at least
    ``min_flux_Mx``: its truth onset (its first bipole's flux reaching a detectable level,
    :attr:`sim.bmr.BMRTable.t_onset`) and CMD then, its total flux, and a footprint holding all its bipoles
    (a multi-bipole region is one emergence)."""
    table = sun.bmrs(slot_time(start_slot), slot_time(end_slot))
    regions: dict[str, list[int]] = {}
    for i, r in enumerate(table.region):
        regions.setdefault(str(r), []).append(i)
    out = []
    for region, members in regions.items():
        k = np.asarray(members)
        flux = table.flux_Mx[k]
        if flux.sum() < min_flux_Mx:
            continue
        first = k[np.argmin(table.t_onset_days[k])]
        dlon = central_meridian_distance(table.lon[k], table.lon[first])
        lon = (table.lon[first] + (dlon * flux).sum() / flux.sum()) % 360.0
        lat = (table.lat[k] * flux).sum() / flux.sum()
        reach = np.maximum(np.abs(central_meridian_distance(table.lon[k], lon)), np.abs(table.lat[k] - lat))
        onset = float(table.t_onset_days[first])
        cmd = central_meridian_distance(lon, ephemeris(np.array([int(slot_of_time(table.t_onset[first]))]))[0][0])
        out.append(Emergence(region, onset, float(lon), float(lat), float(flux.sum()), float(cmd),
                             float((reach + table.separation_deg[k] / 2).max())))
    return out


def replay(service: Service, sun: SyntheticSun, slots: range, shape: tuple[int, int], staging: Path) -> int:
    """Render each observed slot as a full-disk FITS file and ingest it through ``service``; returns frames ingested."""
    done = 0
    for slot in slots:
        for path in write_fits_series(sun, [slot], staging, shape=shape):
            os.replace(path, service.inbox.incoming / path.name)
        done += service.run_cycle()
    shutil.rmtree(staging, ignore_errors=True)
    return done


@dataclass(frozen=True)
class Passage:
    """One patch passage the service scored: its key and score history (oldest first)."""

    patch_id: str
    start_slot: int
    scores: list[Score]


def passages(service: Service) -> list[Passage]:
    """Every passage in the service's store, with its scores."""
    reader = service.store.reader()
    return [Passage(pid, start, reader.scores(pid, start)) for pid, start in reader.passages()]


def stored_emergence(service: Service) -> Callable[[Passage, Score, int], bool]:
    """Whether a replayed passage's patch shows a region that emerged about a frame, at a score's frame
    (:func:`serving.region.emerged` of its stored video, gaps filled as the frame step fills them), for
    :func:`policy_alerts`; each answer is kept, so a sweep of thresholds reads a video once per frame asked."""
    found: dict[tuple[str, int, int, int], bool] = {}
    grid = service.grid

    def emergence(p: Passage, score: Score, since: int) -> bool:
        key = (p.patch_id, p.start_slot, score.frame, since)
        if key not in found:
            video = service.store.read_video(p.patch_id, p.start_slot)
            if video is None:
                raise ValueError(f"a scored passage without its video: {p.patch_id} {p.start_slot}")
            observed = service.store.observed_slots(p.start_slot, p.start_slot + score.frame + 1)
            lon, lat = grid.pixel_axes([grid.index(p.patch_id)])
            found[key] = emerged(filled_frames(video, p.start_slot, 0, score.frame + 1, observed), p.start_slot, since,
                                 (lon[0], lat[0]))
        return found[key]

    return emergence


def rescore(service: Service, history: list[Passage], bundle: ModelBundle) -> list[Passage]:
    """The score histories ``bundle`` gives the stored passages of a replay, without replaying it: each passage's
    stored video is streamed through the bundle's scorer at the frames the service scored, as the frame step
    streams it (the frames since the last scored one, gaps filled), and each score is the stored one with the
    bundle's probability, onset and threshold. The research loop's fast path: for the bundle the service replayed
    with, it gives the service's own scores (a test checks it)."""
    streams = bundle.streaming(service.grid)
    out = []
    for p in history:
        key, scores = (p.patch_id, p.start_slot), []
        video = service.store.read_video(p.patch_id, p.start_slot)
        if video is None:  # nothing scored
            out.append(p)
            continue
        observed = service.store.observed_slots(p.start_slot, p.start_slot + service.bundle.n_frames)
        curves, frames, last = np.zeros((bundle.scorers, 0), np.float32), np.zeros(0, np.int64), None
        for score in p.scores:
            k = score.frame
            lo = 0 if last is None else last
            chunk = filled_frames(video, p.start_slot, lo, k + 1, observed)
            probs = streams.score([(key, k, chunk if last is None else chunk[1:])])[:, 0]
            curves, frames, last = np.c_[curves, probs], np.r_[frames, k], k
            probability, onset = ensemble_score(bundle, probs, curves, frames, p.start_slot, k)
            scores.append(score.model_copy(update={"probability": probability, "onset": onset,
                                                   "threshold": bundle.alert_threshold}))
        streams.forget(key)
        out.append(Passage(p.patch_id, p.start_slot, scores))
    return out


def _alert(alert_id: str, patch_id: str, score: Score, kind: Literal["opened", "new_onset"]) -> OpenedAlert:
    return OpenedAlert(alert_id, patch_id, float(days_since_epoch(score.frame_time)), float(days_since_epoch(score.onset.time_utc)),
                       kind)


def opened(events, onset_frames: int = AlertPolicy.onset_frames) -> list[OpenedAlert]:
    """The alerts among a service's alert events as the matcher takes them: the ``opened`` events (by alert id)
    and the new onsets (by event id): ``updated`` events whose onset moved later by the service policy's
    ``onset_frames`` or more since the event they supersede."""
    return [_alert(e.alert_id, e.patch_id, e, "opened") if e.event is EventKind.opened
            else _alert(e.event_id, e.patch_id, e, "new_onset") for e in emergence_events(list(events), onset_frames)]


def policy_alerts(history: list[Passage], policy: AlertPolicy,
                  emergence: Callable[[Passage, Score, int], bool] | None = None) -> tuple[list[OpenedAlert], list[str]]:
    """The alerts (openings and new onsets, as :func:`opened` takes them from the events) and the ids of the
    alerts withdrawn that ``policy`` gives on the score histories; ``emergence`` says whether a passage's patch shows
    a region that emerged about a frame, at a score's frame (:func:`stored_emergence`: an alert whose probability
    falls is closed, not withdrawn, when one did), as the frame step does.

    Exact for tiles that do not overlap (the default grid, the one the evaluation streams use): with the
    overlapping-tiles option, alert merging couples neighbouring tiles and only the service's own alerts count.
    """
    alerts: list[OpenedAlert] = []
    withdrawn: list[str] = []
    for p in history:
        state = AlertState(p.patch_id, passage_label(p.start_slot))
        for score in p.scores:
            previous_onset = state.last_onset
            where = None if emergence is None else partial(emergence, p, score)
            for t in step(state, policy, score, emerged_since=where):
                if t.kind is EventKind.opened:
                    alerts.append(_alert(t.alert_id, t.patch_id, score, "opened"))
                elif is_new_onset(t.kind, previous_onset, score.onset.frame, policy.onset_frames):
                    alerts.append(_alert(t.event_id, t.patch_id, score, "new_onset"))
                if t.kind is EventKind.withdrawn:
                    withdrawn.append(t.alert_id)
    return alerts, withdrawn


@dataclass(frozen=True)
class DetectorSeries:
    """A detector's figure (e.g. the baseline's flux, the new-flux detector's bipolar new flux, Mx) of one passage,
    frame by frame (nan where not judged), and the frames' slots."""

    patch_id: str
    start_slot: int
    slots: np.ndarray
    values: np.ndarray


class VideoDetector(Protocol):
    """A detector of stored passage videos: its figure per frame (:meth:`series`) and its alerts from it
    (:meth:`triggers`: (alert frame, onset frame) pairs). ``knob`` names the field tuned to a false-alarm rate;
    the series depends on neither it nor the other ``trigger_fields``."""

    knob: ClassVar[str]
    trigger_fields: ClassVar[tuple[str, ...]]

    def series(self, video: np.ndarray, mu: np.ndarray, pixel_area_cm2: np.ndarray,
               observed: np.ndarray | None = None) -> np.ndarray: ...

    def triggers(self, series: np.ndarray) -> list[tuple[int, int]]: ...


def detector_series(service: Service, history: list[Passage], detectors: dict[str, VideoDetector],
                    cache: Path | None = None) -> dict[str, list[DetectorSeries]]:
    """Each detector's series of every stored passage video up to its last scored frame (gaps filled; the
    frames the instrument did not deliver marked), reading each video once.

    With ``cache`` (a folder), a detector's series are kept in a file named for the settings its series
    depends on (and its ``identity``, when it has one: a trained model's digest) and the stored frames, and read
    from there when nothing changed: a sweep of settings costs minutes.
    """
    grid = service.grid
    area_deg = float(grid.config.pixel_size.to_value("deg"))
    frames = service.store.db.execute("SELECT COUNT(*), MAX(slot) FROM frames").fetchone()
    files = {name: None if cache is None else cache / f"{name}-{_settings_key(d, frames)}.npz" for name, d in detectors.items()}
    out = {name: _load_series(f) for name, f in files.items() if f is not None and f.exists()}
    todo = {name: d for name, d in detectors.items() if name not in out}
    for name in todo:
        out[name] = []
    for p in history if todo else []:
        if not p.scores:
            continue
        last = p.scores[-1].frame
        video = service.store.filled_video(p.patch_id, p.start_slot, last + 1).astype(np.float64)
        slots = p.start_slot + np.arange(last + 1)
        observed = np.isin(slots, service.store.observed_slots(p.start_slot, p.start_slot + last + 1))
        l0, b0, _ = ephemeris(slots)
        lon, lat = grid.pixel_axes([grid.index(p.patch_id)])
        lat2, lon2 = np.meshgrid(lat[0], lon[0], indexing="ij")
        mu = heliocentric_z(lon2[None], lat2[None], l0[:, None, None], b0[:, None, None])
        area = carrington_pixel_area_cm2(lat2, area_deg)
        for name, d in todo.items():
            out[name].append(DetectorSeries(p.patch_id, p.start_slot, slots, d.series(video, mu, area, observed)))
    for name in todo:
        path = files[name]
        if path is not None:
            _save_series(path, out[name])
    return out


def _settings_key(detector: VideoDetector, frames: tuple) -> str:
    settings = {k: v for k, v in asdict(detector).items() if k not in detector.trigger_fields}  # type: ignore[call-overload]
    identity = getattr(detector, "identity", "")  # what its settings do not say, e.g. a trained model's digest
    return hashlib.sha256(repr((type(detector).__name__, sorted(settings.items()), identity, frames)).encode()).hexdigest()[:12]


def _save_series(path: Path, series: list[DetectorSeries]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, ids=np.array([s.patch_id for s in series]), starts=np.array([s.start_slot for s in series], np.int64),
             lengths=np.array([len(s.slots) for s in series], np.int64),
             values=np.concatenate([s.values for s in series] + [np.zeros(0)]))
    tmp.replace(path)


def _load_series(path: Path) -> list[DetectorSeries]:
    z = np.load(path)
    ends = np.cumsum(z["lengths"])
    return [DetectorSeries(str(pid), int(start), int(start) + np.arange(n), z["values"][e - n : e])
            for pid, start, n, e in zip(z["ids"], z["starts"], z["lengths"], ends)]


def detector_alerts(series: list[DetectorSeries], detector: VideoDetector, name: str) -> list[OpenedAlert]:
    """A detector's alerts: one at each trigger of each passage's series, with the trigger's onset frame.

    The series do not depend on the detector's knob: compute them once (:func:`detector_series`) for a sweep of it.
    """
    out = []
    for f in series:
        for k, onset in detector.triggers(f.values):
            out.append(OpenedAlert(f"{name}/{f.patch_id}/{f.start_slot}/{k}", f.patch_id, float(slot_days(f.slots[k])),
                                   float(slot_days(f.slots[onset]))))
    return out
