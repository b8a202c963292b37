"""The frame step: one full-disk magnetogram and the state before it in, one :class:`FrameResult` out.

For the frame's slot on the clock the step decides the passage changes
(patches whose centre came over the east limb open a passage, those that
passed the west limb or filled their video close it, with a ``closed``
event for an open alert), projects the frame onto every open passage it
belongs to, scores the patches it extends with the streaming ensemble, and
advances their alert states. It reads a snapshot of the state taken before
it runs (:class:`~serving.results.StepState`) and writes nothing: the result
is committed by the state's keeper and handed to the sinks
(:mod:`serving.sinks`). Its only side effect is on the scorer's in-memory
streams.

The streaming score of a patch at frame k is the paper's masked score at
n = k (frames after k repeat frame k), so its probability history is its
masking curve and the onset estimate (each member's frame of maximum
probability gradient, ensemble median; searched from the bundle's held
frames on, :attr:`serving.bundle.ModelBundle.onset_hold`) comes out of the stream. The
incremental state is derived data: it is rebuilt from the stored video when a
passage is first scored after a restart (:meth:`FrameStep.warm`) or when a
late frame changes its past. A late frame (older than the newest) is filed in
its slot and used by later scores, not scored itself.
"""
from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import cache

import astropy.units as u
import numpy as np

from common.clock import slot_isot, slot_of_time, slot_time
from common.config import ServiceConfig
from common.ensemble import is_stable, percentiles
from common.observer import central_meridian_distance
from common.passage import on_disk, passage_over, passage_start_slot
from common.patches import PatchGrid
from contract.events import (
    AlertStatus,
    EnsembleProbability,
    LonLat,
    Onset,
    PatchPosition,
    PatchStatus,
    Provenance,
    Reason,
    Region,
    Score,
)
from ingest.magnetogram import Magnetogram
from ingest.projection import project_patches
from serving.alerts import AlertPolicy, step
from serving.bundle import ModelBundle
from serving.region import emerged, region
from serving.results import FrameResult, FrameStamp, Key, ScoreRecord, StepState


def frame_step(bundle: ModelBundle, config: ServiceConfig) -> FrameStep:
    """The frame step of ``bundle`` with the patch grid and alert policy that ``config`` sets."""
    return FrameStep(bundle, PatchGrid(config.patch_grid),
                     AlertPolicy(bundle.alert_threshold, config.hysteresis, config.onset_step_frames,
                                 config.probability_step, config.present_at_start))


class FrameStep:
    """Turns magnetograms into frame results for one bundle, patch grid and alert policy."""

    def __init__(self, bundle: ModelBundle, grid: PatchGrid, policy: AlertPolicy):
        self.bundle, self.grid, self.policy = bundle, grid, policy
        self.streams = bundle.streaming(grid)  # in memory: rebuilt from the stored videos

    def execute(self, mag: Magnetogram, source: str, state: StepState) -> FrameResult:
        """The result of ingesting ``mag`` (read from the file named ``source``) on top of ``state``, the snapshot
        taken before it (for the frame's slot)."""
        slot = int(slot_of_time(mag.time))
        if state.slot != slot:
            raise ValueError(f"a snapshot for slot {state.slot} given with the frame of slot {slot}")
        result = FrameResult(slot, mag.time.isot, source, latest=state.newest_slot is None or slot > state.newest_slot)
        passages = dict(state.passages)
        stamp = self._stamp(mag, source)
        if result.latest:
            self._passages(mag, state, passages, result, stamp)
        t0 = time.perf_counter()
        self._project(mag, passages, result)
        result.projection_seconds = time.perf_counter() - t0
        if result.latest and result.video_frames:
            t0 = time.perf_counter()
            self._score(mag, state, result, stamp)
            result.scoring_seconds = time.perf_counter() - t0
        return result

    def _stamp(self, mag: Magnetogram, source: str) -> FrameStamp:
        o = mag.origin
        return FrameStamp(Provenance(instrument=o.instrument, series=o.series, file=source, t_obs=mag.time.utc.isot,
                                 t_rec=o.t_rec, quality=o.quality, model_version=self.bundle.model_version,
                                 bundle_digest=self.bundle.digest),
                      o.simulated, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3])

    def forget(self, result: FrameResult) -> None:
        """Drop the streams a result advanced (its commit failed: they are rebuilt from the store)."""
        for key, _, _ in result.video_frames:
            self.streams.forget(key)

    def warm(self, state: StepState) -> int:
        """Rebuild the streams of every open passage scored so far from its stored video; returns passages rebuilt.

        Run at start so that the first frame after a restart is scored as fast as the others.
        """
        items = [self._stream_item(state, key, int(p.frames[-1])) for key, p in state.open.items()
                 if p.frames.size and self.streams.frontier(key) is None]
        if items:
            self.streams.score(items)
        return len(items)

    # ---- passages and frames ---------------------------------------------------------------------

    def _passages(self, mag: Magnetogram, state: StepState, passages: dict[str, int], result: FrameResult,
                  stamp: FrameStamp) -> None:
        """Close the passages that are over, open those of centres that came on the disk (``passages`` updated)."""
        obs = mag.observer
        visible = on_disk(central_meridian_distance(self.grid.lon, obs.lon.to_value(u.deg)))
        for pid, start in list(passages.items()):
            centre_visible = visible[self.grid.index(pid)]
            if passage_over(start, result.slot, centre_visible, self.bundle.n_frames):
                self._close(state, (pid, start), result, stamp, Reason.video_full if centre_visible else Reason.left_disk)
                del passages[pid]
        new = [i for i in np.flatnonzero(visible) if self.grid.ids[i] not in passages]
        if not new:
            return

        def l0(slots: np.ndarray) -> np.ndarray:
            unique, inverse = np.unique(slots, return_inverse=True)
            return obs.l0_at(slot_time(unique))[inverse]

        for i, start in zip(new, passage_start_slot(self.grid.lon[new], result.slot, l0)):
            pid, start = self.grid.ids[i], int(start)
            if (pid, start) not in state.recorded:  # a passage closed early (full video) is not reopened
                result.opened.append((pid, start))
                passages[pid] = start

    def _close(self, state: StepState, key: Key, result: FrameResult, stamp: FrameStamp, reason: Reason) -> None:
        """End a passage: a ``closed`` event for an open alert, and the patch's final status."""
        self.streams.forget(key)
        result.closed.append(key)
        last = state.open[key].latest
        if last is None:
            return
        # the closing event and final status carry the patch's last score, stamped with the closing frame
        pid, start = key
        closing = last.model_copy(update={"frame_time": slot_isot(result.slot), "provenance": stamp.provenance,
                                          "simulated": stamp.simulated})
        alert = state.alert(key)
        result.events += [t.event(closing, stamp.published, region(state.video(key), last.frame, last.onset.frame,
                                                                    pid, self.axes(pid), start))
                          for t in step(alert, self.policy, closing, ended=reason)]
        result.alert_states[key] = alert
        result.statuses.append(PatchStatus(**dict(closing), alert=alert.status, final=True))

    def axes(self, pid: str) -> tuple[np.ndarray, np.ndarray]:
        """A patch's pixel axes: (lon of each column, lat of each row), Carrington deg."""
        lon, lat = self.grid.pixel_axes([self.grid.index(pid)])
        return lon[0], lat[0]

    def _project(self, mag: Magnetogram, passages: dict[str, int], result: FrameResult) -> None:
        """Project the frame onto every open passage whose video holds its slot."""
        keys = [(pid, start) for pid, start in passages.items() if 0 <= result.slot - start < self.bundle.n_frames]
        if not keys:
            return
        frames = project_patches(mag.data, mag.observer, mag.image, self.grid, [self.grid.index(pid) for pid, _ in keys])
        for key, frame in zip(keys, frames):
            result.video_frames.append((key, result.slot - key[1], frame))
            if not result.latest:  # a late frame changes the past of the stream: rebuild it on its next score
                self.streams.forget(key)

    # ---- scores and alerts -----------------------------------------------------------------------

    def _stream_item(self, state: StepState, key: Key, k: int, new_frame: np.ndarray | None = None):
        """The scorer's item for frame k of a passage: the frames after its last scored one, gaps filled.

        ``new_frame`` is frame k when it is not in ``state`` yet.
        """
        last = self.streams.frontier(key)
        lo = 0 if last is None else last  # the last scored frame was observed: it anchors the interpolation
        frames = state.frames(key, lo, k + 1, now=new_frame)
        return key, k, frames if last is None else frames[1:]

    def _score(self, mag: Magnetogram, state: StepState, result: FrameResult, stamp: FrameStamp) -> None:
        extended = result.video_frames
        probs = self.streams.score([self._stream_item(state, key, k, frame) for key, k, frame in extended])
        idx = [self.grid.index(pid) for (pid, _), _, _ in extended]
        stony_lon, stony_lat = mag.observer.stonyhurst(self.grid.lon[idx], self.grid.lat[idx])
        seen = state.observed  # every slot ingested since the oldest passage began (this frame is not in it yet)
        for j, (key, k, _) in enumerate(extended):
            passage = state.open.get(key)
            history = np.zeros((0, 0)) if passage is None else passage.curves
            frames = np.zeros(0, np.int64) if passage is None else passage.frames
            curves = probs[:, j : j + 1] if history.size == 0 else np.c_[history, probs[:, j]]
            first_seen = np.searchsorted(seen, key[1])  # the passage's first ingested slot, if before this frame
            score = self._score_of(key, k, result.slot, probs[:, j], np.r_[frames, k], curves,
                                   LonLat(lon=float(stony_lon[j]), lat=float(stony_lat[j])), stamp,
                                   observed_from=int(seen[first_seen] - key[1]) if first_seen < seen.size else k)
            result.scores.append(ScoreRecord(key, [float(p) for p in probs[:, j]], score))
        # Alerts advance strongest first, so that of overlapping tiles over one region the likeliest opens.
        alerting = state.open_alert_patches()
        new_frames = {key: frame for key, _, frame in extended}
        for record in sorted(result.scores, key=lambda r: -r.score.probability.median):
            key, score = record.key, record.score
            alert = result.alert_states.get(key) or state.alert(key)
            neighbour_open = any(self.grid.ids[n] in alerting for n in self.grid.sharing_area[self.grid.index(key[0])])
            @cache
            def since(onset: int, key=key, score=score) -> Region:
                return region(state.video(key), score.frame, onset, key[0], self.axes(key[0]), key[1], now=new_frames[key])

            def emerged_since(onset: int, key=key, score=score) -> bool:
                frames = state.frames(key, 0, score.frame + 1, now=new_frames[key])
                return emerged(frames, key[1], onset, self.axes(key[0]))

            for t in step(alert, self.policy, score, neighbour_open=neighbour_open, emerged_since=emerged_since):
                result.events.append(t.event(score, stamp.published, since(score.onset.frame)))
            result.alert_states[key] = alert
            (alerting.add if alert.status is AlertStatus.open else alerting.discard)(key[0])
            result.statuses.append(PatchStatus(**dict(score), alert=alert.status))

    def _score_of(self, key: Key, k: int, slot: int, member_probs: np.ndarray, frames: np.ndarray,
                  curves: np.ndarray, stonyhurst: LonLat, stamp: FrameStamp, observed_from: int) -> Score:
        """The typed score of frame k of a passage: ensemble probability and onset from the masking curves so far."""
        pid, start = key
        probability, onset = ensemble_score(self.bundle, member_probs, curves, frames, start, k)
        patch = self.grid[pid]
        return Score(
            simulated=stamp.simulated,
            provenance=stamp.provenance,
            patch=PatchPosition(id=pid, carrington=LonLat(lon=patch.lon, lat=patch.lat), stonyhurst=stonyhurst),
            passage_start=slot_isot(start),
            frame=int(k),
            frame_time=slot_isot(slot),
            probability=probability,
            onset=onset,
            threshold=self.bundle.alert_threshold,
            observed_from=observed_from,
        )


def ensemble_score(bundle: ModelBundle, member_probs: np.ndarray, curves: np.ndarray, frames: np.ndarray, start: int,
                   k: int) -> tuple[EnsembleProbability, Onset]:
    """The ensemble's probability and onset estimate at frame ``k`` of a passage that began at slot ``start``: from
    each scorer's probability now (n_scorers,) and its score history ``curves`` (n_scorers, n) at the scored
    ``frames`` (n,), the last of them k."""
    p25, median, p75 = (float(v) for v in percentiles(member_probs))
    onsets = bundle.onset_frames(curves, frames) if len(frames) > 1 else np.full(len(curves), k)
    o25, onset, o75 = np.percentile(onsets, [25, 50, 75])
    return (EnsembleProbability(median=median, p25=p25, p75=p75, members=[float(p) for p in member_probs],
                                stable=bool(is_stable(p25, p75, bundle.alert_threshold))),
            Onset(frame=int(round(onset)), time_utc=slot_isot(start + int(round(onset))),
                  uncertainty_hours=float((o75 - o25) / 2 * bundle.cadence.to_value(u.h))))
