"""Live alert vetting: the service's alerts as desk items (confirm / reject / unsure), and vetted alerts exported
as labelled videos in the dataset store format.

:class:`AlertSource` reads the service over its HTTP API only (``GET /alerts``, ``GET /patches/{id}`` for the
masking curve, ``GET /patches/{id}/video`` for the passage video), so the desk may run anywhere the API is
reachable. One desk item per alert id (``alert:<alert id>``), in the order the alerts opened. Until an alert is
decided, every sync refreshes its snapshot: the passage video so far (``<folder>/alerts/<item seq>.npy``,
float32 (n_frames, pixels, pixels), G, frames not yet observed 0 G) and the alert's latest event.

:func:`export_vetted` writes the decided alerts as a dataset store (:mod:`ingest.dataset`) whose catalog mirrors
``build-dataset``'s columns for a tile of the service's grid, with the vetted answer as the label:

- ``crude_label`` = the vetted answer (1 confirmed emergence, 0 rejected) and ``verified`` = True, so a
  retraining starts from it as from a reviewed label;
- ``true_class`` = -1 and ``true_onset_frame`` = -1: the truth of a live patch is unknown (leave these rows out of
  any accuracy-against-truth figure);
- ``crude_onset_frame`` = the service's onset frame for a confirmed alert, else -1;
- ``setting`` = -1 (no synthetic Sun), ``kind`` = ``tile``, ``bmr_id`` and ``first_obs_*`` empty/NaN,
  ``flux_Mx`` NaN; ``year`` and ``month`` of the video's middle frame, as for tiles;
- extra columns: ``alert_id``, ``vetted_by`` (reviewers whose decisive answers made the decision, ``;``-joined),
  ``vetted_at`` (UTC ISO of the last of them), ``model_version``.
"""
from __future__ import annotations

import io
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import astropy.units as u
import numpy as np
import pandas as pd
from astropy.time import Time

from common.clock import CADENCE_DAYS, slot_of_time
from common.config import PatchGridConfig, VideoConfig
from contract.events import AlertEvent, AlertPage, PatchDetail
from ingest.dataset import DatasetStore, write_dataset
from review.decisions import Answer, Decisions, utc_now

#: The desk's queue of live alerts.
ALERTS_QUEUE = "alerts"


class ServiceError(RuntimeError):
    """The fluxwatch service could not be read; names the URL and the problem."""


def alert_key(alert_id: str) -> str:
    return f"alert:{alert_id}"


class AlertSource:
    """The alerts of the service at ``url`` as items of ``decisions``' ``alerts`` queue; snapshots under ``folder``.
    :meth:`maybe_sync` syncs at most once every ``min_interval_s`` seconds (the desk calls it on page loads)."""

    def __init__(self, url: str, decisions: Decisions, folder: str | Path, min_interval_s: float = 10.0, timeout_s: float = 20.0):
        self.url = url.rstrip("/")
        self.decisions = decisions
        self.folder = Path(folder)
        self.min_interval_s, self.timeout_s = min_interval_s, timeout_s
        self._last_sync = -np.inf
        decisions.set_meta("service", self.url)

    def _get(self, path: str, query: dict | None = None) -> tuple[bytes, dict]:
        url = self.url + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                return response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            raise ServiceError(f"{url}: HTTP {exc.code} {exc.read().decode(errors='replace')[:200]}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ServiceError(f"{url}: service unreachable ({exc})") from None

    def maybe_sync(self) -> int | None:
        """:meth:`sync` unless one ran in the last ``min_interval_s`` seconds; None when skipped."""
        if time.monotonic() - self._last_sync < self.min_interval_s:
            return None
        return self.sync()

    def sync(self) -> int:
        """Bring every alert of the service into the queue and refresh the snapshots of undecided ones; returns
        the number of alerts the queue holds."""
        self._last_sync = time.monotonic()
        latest: dict[str, AlertEvent] = {}
        query: dict = {"limit": 1000}
        while True:  # every page of GET /alerts
            page = AlertPage.model_validate_json(self._get("/alerts", query)[0])
            for event in page.items:  # oldest first: the dict keeps first-opened order, the values the latest event
                latest[event.alert_id] = event
            if not page.has_more:
                break
            query["cursor"] = page.next_cursor
        keys = [alert_key(a) for a in latest]
        queued = {i.key: i for i in self.decisions.items(ALERTS_QUEUE)}
        finals = self.decisions.finals([k for k in keys if k in queued])
        entries: list[tuple[str, dict, int | None, float | None]] = []
        for key, event in zip(keys, latest.values()):
            if finals.get(key) is not None:
                continue  # decided: keep what the reviewers saw
            masking = self._masking(event)
            # what the snapshot shows: the alert's latest event and the frames scored so far
            stamp = [event.event_id, len(masking) if masking is not None else None]
            entries.append((key, {"alert": event.model_dump(mode="json"), "masking": masking, "stamp": stamp}, None,
                            event.probability.median))
        seqs = self.decisions.enqueue(ALERTS_QUEUE, entries)
        (self.folder / "alerts").mkdir(parents=True, exist_ok=True)
        for seq, (key, info, _, _) in zip(seqs, entries):
            if key in queued and queued[key].info.get("stamp") == info["stamp"] and self.snapshot_path(seq).exists():
                continue  # nothing new since the last snapshot
            event = AlertEvent.model_validate(info["alert"])
            data, _ = self._get(f"/patches/{urllib.parse.quote(event.patch_id)}/video", {"passage_start": event.passage_start})
            video = np.load(io.BytesIO(data), allow_pickle=False)
            tmp = self.folder / "alerts" / f"{seq}.tmp.npy"
            np.save(tmp, video.astype(np.float32))
            tmp.replace(self.snapshot_path(seq))
        return len(keys)

    def _masking(self, event: AlertEvent) -> list[float | None] | None:
        """The alert passage's masking curve so far (ensemble median per frame, None where not scored), if the
        service still has that passage as the patch's latest."""
        detail = PatchDetail.model_validate_json(self._get(f"/patches/{urllib.parse.quote(event.patch_id)}")[0])
        if detail.passage_start != event.passage_start:
            return None
        curve: list[float | None] = [None] * (max((h.frame for h in detail.history), default=-1) + 1)
        for h in detail.history:
            curve[h.frame] = h.median
        return curve

    def snapshot_path(self, seq: int) -> Path:
        return self.folder / "alerts" / f"{seq}.npy"


def snapshot(folder: str | Path, seq: int) -> np.ndarray:
    """The saved passage video of alert item ``seq`` under the desk ``folder``."""
    path = Path(folder) / "alerts" / f"{seq}.npy"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no video snapshot of alert item {seq} (sync the desk with the service first)")
    return np.load(path, allow_pickle=False)


def export_vetted(decisions: Decisions, folder: str | Path, out: str | Path) -> DatasetStore:
    """Write every decided alert of the desk (database ``decisions``, snapshots under ``folder``) as a dataset store
    at ``out`` (see the module docstring for the catalog); raises ValueError if no alert is decided yet."""
    rows: list[dict] = []
    videos: list[np.ndarray] = []
    history = decisions.history(ALERTS_QUEUE)
    for item in decisions.items(ALERTS_QUEUE):
        answer = decisions.final(item.seq)
        if answer is None:
            continue
        event = AlertEvent.model_validate(item.info["alert"])
        video = snapshot(folder, item.seq)
        active = [d for d, state in history if d.item == item.seq and state == "active" and d.answer != Answer.UNSURE]
        deciders = [d for d in active if d.answer == answer]
        start_slot = int(slot_of_time(Time(event.passage_start)))
        middle = Time(event.passage_start) + (len(video) // 2) * CADENCE_DAYS * u.day
        rows.append({
            "video_id": len(rows), "setting": -1, "kind": "tile", "bmr_id": "",
            "start_time": event.passage_start, "start_slot": start_slot,
            "year": int(middle.strftime("%Y")), "month": int(middle.strftime("%m")),
            "lon": event.patch.carrington.lon, "lat": event.patch.carrington.lat,
            "first_obs_time": "", "first_obs_cmd": np.nan, "first_obs_flux_Mx": np.nan, "flux_Mx": np.nan,
            "crude_label": answer, "crude_onset_frame": event.onset.frame if answer == 1 else -1,
            "true_class": -1, "true_onset_frame": -1, "verified": True,
            "alert_id": event.alert_id, "vetted_by": ";".join(sorted({d.reviewer for d in deciders})),
            "vetted_at": max(d.at for d in deciders), "model_version": event.provenance.model_version,
        })
        videos.append(video)
    if not rows:
        raise ValueError(f"{decisions.path}: no vetted alert to export yet")
    n_frames, pixels = videos[0].shape[:2]
    attrs = {
        "content": "vetted live alerts",
        "source": {"service": decisions.meta("service"), "exported": utc_now(),
                   "exported_from": str(Path(decisions.path).resolve())},
        "video": {"n_frames": int(n_frames), "cadence_min": CADENCE_DAYS * 1440.0, "clip_G": VideoConfig().clip.to_value(u.G)},
        "grid": {"patch_size_deg": PatchGridConfig().pixel_size.to_value(u.deg) * pixels,
                 "pixel_size_deg": PatchGridConfig().pixel_size.to_value(u.deg)},
        "units": "G",
        "labels": "crude_label is the vetted answer; true_class -1 = unknown (live data)",
    }
    return write_dataset(out, np.stack(videos), pd.DataFrame(rows), attrs)

