"""Retention: how long the service keeps what it writes, so that a year beside a live feed does not fill its disk.

Once per cycle the service applies the operator's policy (settings, by age of the file):

* ``superseded/`` and ``rejected/`` files, with the note beside each, after ``retain_superseded`` and
  ``retain_rejected``;
* ``processed/`` files after ``retain_processed``: moved to ``archive_dir`` when one is set, removed otherwise
  (:mod:`serving.rebuild` then replays the period still kept);
* a closed passage's video ``retain_videos`` after its last frame: its alerts are final by then; the API's
  ``/patches/{id}/video`` and cutouts answer 410 Gone for it;
* a closed passage's scores ``retain_scores`` after their frames (observation time: slots before the newest
  frame's): thinned to one a day, the frames its alert events came from and its last, which is what
  ``/patches/{id}`` and the review desk show of a finished passage;
* the live page's views of frames (:mod:`serving.diskview`) ``retain_views`` before the newest frame (observation
  time); the page at an earlier frame answers 410 Gone;
* outbox messages ``retain_delivered`` after Kafka acknowledged them (the ``alerts`` table keeps every event).

An open passage's video is never removed, whatever its age, nor a file still waiting in ``incoming/`` or
``pending/``. Disk use by kind is in ``fluxwatch_disk_bytes{kind}``, with the file system's free space beside it.
"""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u

from common.clock import SLOTS_PER_DAY
from common.config import ServiceConfig
from serving.diskview import DiskViews
from serving.metrics import Metrics
from serving.store import ALERT_LOG, STATE_FILE, VIDEOS_DIR, Store

log = logging.getLogger(__name__)

#: The kinds of ``fluxwatch_disk_bytes``: the service's folders, its videos, its database and its alert files (the
#: alert log and the VOEvents, kept whole: about 0.05 MB a day).
KINDS = ("incoming", "pending", "processed", "superseded", "rejected", "videos", "views", "state", "alerts")
NOTES = (".superseded.txt", ".error.txt")


@dataclass
class Removed:
    """What one pass of the policy removed (or archived), by kind: files, and rows of scores and outbox."""

    files: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, n: int = 1) -> None:
        self.files[kind] = self.files.get(kind, 0) + n


def _old(folder: Path, cutoff: float, pattern: str = "*") -> list[Path]:
    """Files of ``folder`` matching ``pattern`` last modified before ``cutoff`` (Unix s)."""
    return [p for p in folder.glob(pattern) if p.is_file() and p.stat().st_mtime < cutoff]


def apply(config: ServiceConfig, store: Store, views: DiskViews, data_dir: Path, now: float) -> Removed:
    """Remove (or archive) what the policy of ``config`` lets go at Unix time ``now``."""
    removed = Removed()
    for kind, keep in (("superseded", config.retain_superseded), ("rejected", config.retain_rejected)):
        for path in _old(data_dir / kind, now - keep.to_value(u.s), "*.fits"):
            path.unlink(missing_ok=True)
            for note in NOTES:
                path.with_name(path.name + note).unlink(missing_ok=True)
            removed.add(kind)
    if config.retain_processed is not None:
        archive = Path(config.archive_dir) if config.archive_dir else None
        for path in _old(data_dir / "processed", now - config.retain_processed.to_value(u.s), "*.fits"):
            if archive is not None:
                archive.mkdir(parents=True, exist_ok=True)
                shutil.move(str(path), archive / path.name)
            else:
                path.unlink(missing_ok=True)
            removed.add("processed")
    cutoff = now - config.retain_videos.to_value(u.s)
    old_videos = {path.name: path for path in _old(data_dir / VIDEOS_DIR, cutoff, "*.f32")}
    for name, video in old_videos.items():  # asked per old video: the passages' list grows with the years
        pid, _, start = name.removesuffix(".f32").rpartition("_")  # serving.store.video_file's name
        if start.isdigit() and store.is_closed(pid, int(start)):
            video.unlink()
            removed.add("videos")
    newest = store.newest_frame()
    if config.retain_scores is not None and newest is not None:
        before = newest[0] - round(config.retain_scores.to_value(u.day) * SLOTS_PER_DAY)
        removed.add("scores", store.thin_scores(before, every=SLOTS_PER_DAY))
    if newest is not None:
        removed.add("views", views.remove_before(newest[0] - round(config.retain_views.to_value(u.day) * SLOTS_PER_DAY)))
    removed.add("outbox", store.outbox.prune(now - config.retain_delivered.to_value(u.s)))
    removed.files = {kind: n for kind, n in removed.files.items() if n}
    if removed.files:
        log.info("retention removed %s", ", ".join(f"{n} {k}" for k, n in sorted(removed.files.items())))
    return removed


def _size(folder: Path) -> int:
    return sum(e.stat().st_size for e in os.scandir(folder) if e.is_file()) if folder.is_dir() else 0


def disk_use(data_dir: Path, voevent_dir: Path | None = None) -> dict[str, int]:
    """Bytes on disk by kind (:data:`KINDS`); ``voevent_dir``: where the VOEvents go, when they are written."""
    use = {kind: _size(data_dir / kind) for kind in KINDS if kind not in ("state", "alerts")}
    use["state"] = sum(p.stat().st_size for p in data_dir.glob(STATE_FILE + "*") if p.is_file())
    log_file = data_dir / ALERT_LOG
    use["alerts"] = (log_file.stat().st_size if log_file.is_file() else 0) + (_size(voevent_dir) if voevent_dir else 0)
    return use


def measure(metrics: Metrics, data_dir: Path, voevent_dir: Path | None = None) -> None:
    """Set the disk gauges: bytes by kind, and the file system's free bytes."""
    for kind, size in disk_use(data_dir, voevent_dir).items():
        metrics.disk_bytes.labels(kind=kind).set(size)
    metrics.disk_free_bytes.set(shutil.disk_usage(data_dir).free)
