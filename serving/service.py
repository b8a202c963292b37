"""The live service: each cadence, ingest new magnetograms, extend every patch's rolling video, score, alert.

One frame is processed at a time, in one SQLite transaction (see
:mod:`serving.state`): the frame, passage changes, every member's
probability for every patch it extends, the alert states and the outbox
events. The streaming score of a patch at frame k is the paper's masked
score at n = k (frames after k repeat frame k), so its probability history
is its masking curve and the onset estimate (each member's frame of maximum
probability gradient, ensemble median) comes out of the stream. Scores are
computed incrementally (:mod:`serving.streaming`); the incremental state is
derived data, kept in memory and rebuilt from the stored video when a
passage is first scored after a restart or when a late frame changes its past.

A patch's passage starts when its centre comes over the east limb, with
frame 0 at that slot, as training videos do, and closes when its centre
passes the west limb or the video is full. Late frames are filed in their
slot (and used by later scores); duplicates are ignored.
"""
from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.time import Time

from common.config import PatchGridConfig, ServiceConfig
from common.observer import central_meridian_distance
from common.onset import onset_frame
from common.patches import PatchGrid
from common.video import fill_gaps
from ingest.errors import IngestError
from ingest.magnetogram import Magnetogram, read_magnetogram
from ingest.projection import project_patches
from ingest.synthetic.timegrid import slot_of_time, slot_time
from serving.alerts import AlertPolicy, AlertState, step
from serving.bundle import ModelBundle
from serving.metrics import Metrics
from serving.outbox import KafkaPublisher, Outbox
from serving.state import State

log = logging.getLogger(__name__)

#: Synodic Carrington rotation: how far a fixed Carrington longitude moves across the disk per day.
SYNODIC_DEG_PER_DAY = 360.0 / 27.2753


class Service:
    """The emergence-detection service over ``config.data_dir``."""

    def __init__(self, config: ServiceConfig = ServiceConfig(), metrics: Metrics | None = None):
        self.config = config
        self.bundle = ModelBundle(config.bundle)
        self.grid = PatchGrid(PatchGridConfig(lat_limit=config.lat_limit))
        self.dir = Path(config.data_dir)
        for sub in ("incoming", "processed", "rejected"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.state = State(self.dir, self.bundle.n_frames, self.bundle.pixels)
        self.streams = self.bundle.streaming()  # in memory: rebuilt from the stored videos after a restart
        self.outbox = Outbox(self.state.db)
        self.policy = AlertPolicy(self.bundle.threshold, config.hysteresis, config.onset_step_frames,
                                  config.probability_step)
        self.metrics = metrics or Metrics()
        self.metrics.set_model(self.bundle.model_version, len(self.bundle.members))
        self.lock = threading.Lock()
        self.alert_log = self.dir / "alerts.jsonl"
        self._log_pending: list[dict] = []
        self.slots_per_day = 1440.0 / config.cadence.to_value(u.min)
        self.publisher = None
        if config.kafka_bootstrap:
            self.publisher = KafkaPublisher(self.state.db_path, config.kafka_bootstrap,
                                            on_error=lambda exc: self.metrics.kafka_errors.inc(),
                                            on_delivered=lambda n: None)
        self._refresh_gauges()

    # ---- the cycle ---------------------------------------------------------------------------

    def warm(self) -> int:
        """Rebuild the incremental scoring state of every open passage from its stored video; returns passages.

        Run at start so that the first frame after a restart is scored as fast as the others.
        """
        with self.lock:
            last = dict(((pid, start), k) for pid, start, k in self.state.db.execute(
                "SELECT s.patch_id, s.start_slot, MAX(s.frame) FROM scores s JOIN passages p "
                "ON s.patch_id = p.patch_id AND s.start_slot = p.start_slot WHERE p.status = 'open' "
                "GROUP BY s.patch_id, s.start_slot"))
            items = [self._new_frames(pid, start, k) for (pid, start), k in last.items()
                     if self.streams.frontier((pid, start)) is None]
            if items:
                self.streams.score(items)
        return len(items)

    def run_cycle(self) -> int:
        """Process every file waiting in ``incoming/``, oldest name first; returns frames ingested."""
        done = 0
        with self.lock:
            for path in sorted((self.dir / "incoming").glob("*.fits")):
                done += self.ingest_file(path)
            self._refresh_gauges()
        if self.publisher:
            self.publisher.wake()
        return done

    def ingest_file(self, path: Path) -> int:
        """Ingest one FITS file (1 if a frame was added, 0 if rejected or a duplicate)."""
        arrived = path.stat().st_mtime
        t0 = time.perf_counter()
        self._log_pending = []
        try:
            mag = read_magnetogram(path)
        except IngestError as exc:
            self._reject(path, exc, str(exc))
            return 0
        slot = int(slot_of_time(mag.time))
        if self.state.has_frame(slot):
            self._reject(path, "duplicate", f"slot {slot} ({slot_time(slot).isot}) already ingested")
            return 0
        newest = self.state.newest_frame()
        latest = newest is None or slot > newest[0]
        db = self.state.db
        with db:
            passages = self._update_passages(mag, slot, latest)
            extended = self._file_frame(mag, slot, passages, latest)
            db.execute("INSERT INTO frames VALUES (?, ?, ?, ?)", (slot, mag.time.isot, path.name, time.time()))
            self.metrics.ingest_latency.observe(time.perf_counter() - t0)
            if latest and extended:
                t1 = time.perf_counter()
                self._score(mag, slot, extended)
                self.metrics.scoring_latency.observe(time.perf_counter() - t1)
        self._append_log()
        shutil.move(str(path), self.dir / "processed" / path.name)
        self.metrics.frames_ingested.inc()
        self.metrics.frame_to_publish.observe(max(0.0, time.time() - arrived))
        return 1

    def _reject(self, path: Path, cause: Exception | str, message: str) -> None:
        """Count the rejection (by the cause's reason) and move the file to ``rejected/`` with its error."""
        log.warning("rejected %s: %s", path.name, message)
        self.metrics.reject(cause)
        target = self.dir / "rejected" / path.name
        shutil.move(str(path), target)
        target.with_name(target.name + ".error.txt").write_text(message + "\n")

    def _update_passages(self, mag: Magnetogram, slot: int, latest: bool) -> dict[str, int]:
        """Open passages for patches whose centre is on the disk, close those that left; returns open ones."""
        open_ = self.state.open_passages()
        if not latest:
            return open_
        cmd = central_meridian_distance(self.grid.lon, mag.observer.lon.to_value(u.deg))
        on_disk = (cmd >= -90) & (cmd < 90)
        deg_per_slot = SYNODIC_DEG_PER_DAY / self.slots_per_day
        for i, pid in enumerate(self.grid.ids):
            start = open_.get(pid)
            if start is not None and (not on_disk[i] or slot >= start + self.bundle.n_frames):
                self._close(pid, start, slot)
                del open_[pid]
                start = None
            if start is None and on_disk[i]:
                start = slot - int(np.floor((cmd[i] + 90.0) / deg_per_slot))
                if self.state.db.execute("SELECT 1 FROM passages WHERE patch_id = ? AND start_slot = ?",
                                         (pid, start)).fetchone() is None:
                    self.state.db.execute("INSERT INTO passages VALUES (?, ?, 'open')", (pid, start))
                    open_[pid] = start
        return open_

    def _close(self, pid: str, start: int, slot: int) -> None:
        self.streams.forget((pid, start))
        self.state.db.execute("UPDATE passages SET status = 'closed' WHERE patch_id = ? AND start_slot = ?", (pid, start))
        alert = self._alert_state(pid, start)
        last = self.state.latest_summary(pid, start)
        if last:  # a closing event carries the patch's last score, stamped with the closing frame
            self._emit(alert, start, step(alert, self.policy, {**last, "frame_time": slot_time(slot).isot},
                                          on_disk=False))

    def _file_frame(self, mag: Magnetogram, slot: int, passages: dict[str, int], latest: bool) -> dict[str, int]:
        """Project the frame onto every open passage it belongs to; returns {patch: frame index}."""
        members = [(pid, start) for pid, start in passages.items() if 0 <= slot - start < self.bundle.n_frames]
        if not members:
            return {}
        idx = [self.grid.index(pid) for pid, _ in members]
        frames = project_patches(mag.data, mag.observer, mag.image, self.grid, idx)
        extended = {}
        for (pid, start), frame in zip(members, frames):
            video = self.state.video(pid, start)
            video[slot - start] = frame
            video.flush()
            extended[pid] = slot - start
            if not latest:  # a late frame changes the past of the stream: rebuild it on its next score
                self.streams.forget((pid, start))
        return extended

    # ---- scoring and alerts --------------------------------------------------------------------

    def _score(self, mag: Magnetogram, slot: int, extended: dict[str, int]) -> None:
        open_ = self.state.open_passages()
        pids = list(extended)
        probs = self.streams.score([self._new_frames(pid, open_[pid], extended[pid]) for pid in pids])
        stony = self._stonyhurst(mag, pids)
        for j, pid in enumerate(pids):
            start, k = open_[pid], extended[pid]
            frames, history = self.state.curves(pid, start)
            frames = np.r_[frames, k]
            curves = probs[:, j : j + 1] if history.size == 0 else np.c_[history, probs[:, j]]
            summary = self._summary(pid, start, k, slot, probs[:, j], frames, curves, stony[j])
            self.state.db.execute("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?)",
                                  (pid, start, k, slot, json.dumps(probs[:, j].tolist()), json.dumps(summary)))
            alert = self._alert_state(pid, start)
            self._emit(alert, start, step(alert, self.policy, summary, on_disk=True))
            self.outbox.add(self.config.status_topic, pid, f"{pid}@{slot}", {**summary, "alert": alert.status})

    def _new_frames(self, pid: str, start: int, k: int) -> tuple[tuple[str, int], int, np.ndarray]:
        """The streaming scorer's item for frame k of a passage: the frames after its last scored one, gaps filled."""
        key = (pid, start)
        last = self.streams.frontier(key)
        lo = 0 if last is None else last  # the last scored frame was observed: it anchors the interpolation
        frames = np.array(self.state.video(pid, start)[lo : k + 1])
        observed = np.zeros(len(frames), bool)
        observed[self.state.observed_slots(start + lo, start + k + 1) - start - lo] = True
        fill_gaps(frames, observed)
        return key, k, frames if last is None else frames[1:]

    def _summary(self, pid, start, k, slot, member_probs, frames, curves, stony) -> dict:
        p25, median, p75 = (float(v) for v in np.percentile(member_probs, [25, 50, 75]))
        onsets = np.array([onset_frame(c, frames) if len(frames) > 1 else k for c in curves])
        o25, onset, o75 = np.percentile(onsets, [25, 50, 75])
        cadence_h = self.config.cadence.to_value(u.h)
        patch = self.grid[pid]
        return {
            "model_version": self.bundle.model_version,
            "patch": {"id": pid, "carrington": {"lon": patch.lon, "lat": patch.lat},
                      "stonyhurst": {"lon": stony[0], "lat": stony[1]}},
            "passage_start": slot_time(start).isot,
            "frame": int(k),
            "frame_time": slot_time(slot).isot,
            "median": median,
            "probability": {"median": median, "p25": p25, "p75": p75, "members": [float(p) for p in member_probs],
                            "stable": bool(not p25 <= self.bundle.threshold <= p75)},
            "onset_frame": int(round(onset)),
            "onset": {"frame": int(round(onset)), "time_utc": slot_time(start + int(round(onset))).isot,
                      "uncertainty_hours": float((o75 - o25) / 2 * cadence_h)},
            "threshold": self.bundle.threshold,
        }

    def _stonyhurst(self, mag: Magnetogram, pids) -> list[tuple[float, float]]:
        from sunpy.coordinates import HeliographicCarrington, HeliographicStonyhurst

        obs = mag.observer
        observer = SkyCoord(obs.lon, obs.lat, obs.distance, frame=HeliographicCarrington(observer="self", obstime=obs.time))
        idx = [self.grid.index(p) for p in pids]
        car = SkyCoord(self.grid.lon[idx] * u.deg, self.grid.lat[idx] * u.deg,
                       frame=HeliographicCarrington(observer=observer, obstime=obs.time))
        hgs = car.transform_to(HeliographicStonyhurst(obstime=obs.time))
        return [(float(lo), float(la)) for lo, la in zip(hgs.lon.wrap_at(180 * u.deg).deg, hgs.lat.deg)]

    def _alert_state(self, pid: str, start: int) -> AlertState:
        saved = self.state.alert_state(pid, start)
        return AlertState(**saved) if saved else AlertState(pid, slot_time(start).strftime("%Y%m%dT%H%M"))

    def _emit(self, alert: AlertState, start: int, events: list[dict]) -> None:
        """Persist the alert state and queue its events (outbox, API table, JSON-lines log)."""
        self.state.db.execute("INSERT OR REPLACE INTO alert_states VALUES (?, ?, ?)",
                              (alert.patch_id, start, json.dumps(alert.to_dict())))
        for event in events:
            self.outbox.add(self.config.alerts_topic, alert.patch_id, event["event_id"], event)
            self.state.db.execute("INSERT OR IGNORE INTO alerts VALUES (?, ?, ?, ?, ?)",
                                  (event["event_id"], event["alert_id"], alert.patch_id, event["frame_time"],
                                   json.dumps(event)))
            self._log_pending.append(event)

    def _append_log(self) -> None:
        """After the frame's transaction committed: the events go to the JSON-lines log and the metrics."""
        if self._log_pending:
            with self.alert_log.open("a") as f:
                for event in self._log_pending:
                    f.write(json.dumps(event, sort_keys=True) + "\n")
                    self.metrics.alerts_published.labels(event=event["event"]).inc()
        self._log_pending = []

    def _refresh_gauges(self) -> None:
        self.metrics.active_patches.set(len(self.state.open_passages()))
        self.metrics.open_alerts.set(self.state.db.execute(
            "SELECT COUNT(*) FROM alert_states WHERE json_extract(state, '$.status') = 'open'").fetchone()[0])
        self.metrics.outbox_depth.set(self.outbox.depth())
        newest = self.state.newest_frame()
        if newest:
            self.metrics.set_newest_frame_time(newest[2])

    # ---- queries (the HTTP API) ----------------------------------------------------------------

    def patches(self) -> list[dict]:
        """Current status of every patch with an open passage."""
        out = []
        for pid, start in sorted(self.state.open_passages().items()):
            alert = self._alert_state(pid, start)
            out.append({"patch_id": pid, "passage_start": slot_time(start).isot, "alert": alert.status,
                        "alert_id": alert.alert_id, "latest": self.state.latest_summary(pid, start)})
        return out

    def patch(self, pid: str) -> dict | None:
        """One patch: its latest passage's probability history and onset estimate."""
        row = self.state.db.execute("SELECT start_slot, status FROM passages WHERE patch_id = ? ORDER BY start_slot DESC LIMIT 1",
                                    (pid,)).fetchone()
        if row is None:
            return None
        start, status = row
        summaries = self.state.history(pid, start)
        return {"patch_id": pid, "passage_start": slot_time(start).isot, "passage_status": status,
                "history": [{"frame": s["frame"], "frame_time": s["frame_time"], "median": s["median"],
                             "p25": s["probability"]["p25"], "p75": s["probability"]["p75"]} for s in summaries],
                "onset": summaries[-1]["onset"] if summaries else None,
                "alert": self._alert_state(pid, start).to_dict()}

    def alerts(self, since: Time | None = None) -> list[dict]:
        """Alert events whose frame time is at or after ``since`` (all when None), oldest first."""
        rows = self.state.db.execute("SELECT payload FROM alerts WHERE frame_time >= ? ORDER BY frame_time, event_id",
                                     (since.isot if since is not None else "",)).fetchall()
        return [json.loads(r[0]) for r in rows]
