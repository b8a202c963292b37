"""``fluxwatch-backup``: a consistent backup of a running service's state, and its restore into a fresh folder.

A backup holds what the service cannot derive again without the raw files: ``state.sqlite`` (frames, passages,
scores, alert states, every published event and the outbox), copied with SQLite's online backup while the service
writes, then the passages' videos, and ``backup.json`` saying what it holds. It is written beside its destination
and renamed into place, so a backup folder is whole or absent. The videos are copied after the database: every
frame the database records was written to its video before its transaction committed (:meth:`Store.commit`), so
the copy holds it; a frame written meanwhile is one the copied database does not record, and is ingested again.

A restore copies a backup into a data dir that holds no state, then, with ``--kafka``, reads the event ids already
on the service's topics and marks them delivered in the outbox (:meth:`~serving.store.Outbox.acknowledge`): the
messages the old service published after the backup, and the events the restored service decides again when the
frames after the backup are fed to it, are not published a second time. Feed those frames within
``retain_delivered`` of the restore (the outbox forgets acknowledged ids after it).

Exits 0 on success, 2 with a message when the backup or the restore cannot be made.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sqlite3
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from common.config import ConfigError, ServiceConfig
from serving.store import STATE_FILE, STATE_VERSION, VIDEOS_DIR, Outbox, video_file

log = logging.getLogger(__name__)

INFO = "backup.json"


@dataclass(frozen=True)
class BackupInfo:
    """What a backup holds (``backup.json``)."""

    created_utc: str
    source: str  # the data dir it was taken from
    state_version: int
    frames: int
    newest_frame: str | None  # observation time (UTC) of the newest frame it holds
    events: int
    outbox_pending: int
    videos: int
    bytes: int


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def backup(data_dir: str | Path, dest: str | Path) -> BackupInfo:
    """Back up the state under ``data_dir`` into the new folder ``dest`` (see the module's description)."""
    data, dest = Path(data_dir), Path(dest)
    state = data / STATE_FILE
    if not state.is_file():
        raise FileNotFoundError(f"{state}: no service state to back up")
    if dest.exists():
        raise FileExistsError(f"{dest} exists: a backup goes into a new folder")
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / VIDEOS_DIR).mkdir(parents=True)
    source = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=30)
    copy = sqlite3.connect(partial / STATE_FILE)
    try:
        source.backup(copy)  # one consistent snapshot, taken while the service goes on writing
        version = copy.execute("PRAGMA user_version").fetchone()[0]
        frames, newest = copy.execute("SELECT COUNT(*), MAX(time) FROM frames").fetchone()
        events = copy.execute("SELECT COUNT(*) FROM alerts").fetchone()[0]
        pending = Outbox(copy).depth()
        passages = copy.execute("SELECT patch_id, start_slot FROM passages").fetchall()
    finally:
        source.close()
        copy.close()
    videos = 0
    for pid, start in passages:
        video = video_file(data, pid, start)
        if video.is_file():  # absent: not observed yet, or removed by the retention policy
            shutil.copyfile(video, partial / VIDEOS_DIR / video.name)
            videos += 1
    size = sum(p.stat().st_size for p in partial.rglob("*") if p.is_file())
    info = BackupInfo(_utc_now(), str(data.resolve()), version, frames, newest and newest + "Z", events, pending,
                      videos, size)
    (partial / INFO).write_text(json.dumps(asdict(info), indent=1) + "\n")
    partial.rename(dest)
    log.info("backed up %s into %s: %d frames (newest %s), %d events, %d videos, %.1f MB", data, dest, frames,
             info.newest_frame, events, videos, size / 1e6)
    return info


def restore(src: str | Path, config: ServiceConfig) -> tuple[BackupInfo, int]:
    """Restore the backup ``src`` into ``config.data_dir``, which must hold no state; with ``config.kafka_bootstrap``,
    mark delivered the event ids already on its topics. Returns (what the backup holds, ids marked delivered)."""
    from serving.publisher import event_ids_on

    src, data = Path(src), Path(config.data_dir)
    info_path = src / INFO
    if not info_path.is_file():
        raise FileNotFoundError(f"{src} is not a fluxwatch backup (no {INFO})")
    info = BackupInfo(**json.loads(info_path.read_text()))
    if info.state_version > STATE_VERSION:
        raise ConfigError(f"{src} holds state version {info.state_version}, written by a newer fluxwatch (this one "
                          f"reads up to {STATE_VERSION})")
    if (data / STATE_FILE).exists() or (data / VIDEOS_DIR).exists():
        raise FileExistsError(f"{data} holds a state already: restore into a fresh data dir (move this one aside)")
    data.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src / VIDEOS_DIR, data / (VIDEOS_DIR + ".partial"))
    shutil.copyfile(src / STATE_FILE, data / (STATE_FILE + ".partial"))
    acknowledged = 0
    if config.kafka_bootstrap:
        topics = {t for pair in config.topics.values() for t in pair}
        on_kafka = event_ids_on(config.kafka_bootstrap, topics, config.kafka_options)
        db = sqlite3.connect(data / (STATE_FILE + ".partial"))
        try:
            acknowledged = Outbox(db).acknowledge(on_kafka)
        finally:
            db.close()
    (data / (VIDEOS_DIR + ".partial")).rename(data / VIDEOS_DIR)
    (data / (STATE_FILE + ".partial")).rename(data / STATE_FILE)  # last: a data dir with a state is a whole restore
    log.info("restored %s into %s: %d frames (newest %s), %d events; %d event ids already on Kafka marked delivered",
             src, data, info.frames, info.newest_frame, info.events, acknowledged)
    return info, acknowledged


def main(argv=None) -> int:
    from serving.cli import configured

    p = argparse.ArgumentParser(prog="fluxwatch-backup", description=__doc__.splitlines()[0],
                                epilog="Any other option is fluxwatch-serve's (the data dir, Kafka and its topics): give "
                                       "the ones the service runs with.")
    p.add_argument("action", choices=["create", "restore"], help="create: back up the data dir into FOLDER; restore: "
                                                                 "restore the backup FOLDER into the (fresh) data dir")
    p.add_argument("folder", type=Path)
    args, rest = p.parse_known_args(argv)
    config = configured("fluxwatch-backup", rest)
    if config is None:
        return 2
    try:
        if args.action == "create":
            backup(config.data_dir, args.folder)
        else:
            restore(args.folder, config)
    except (OSError, ConfigError, sqlite3.Error) as exc:
        print(f"fluxwatch-backup: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
