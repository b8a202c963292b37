"""The dataset store: patch videos and their catalog, as training reads them.

Layout of a store directory::

    store/                     a zarr v3 group
      zarr.json                attributes: kind, video and grid config, preset, seed, sun config
      videos/                  float16 (n_videos, n_frames, pixels, pixels), LoS field in G, one chunk per video
      written/                 bool (n_videos,): video i is complete (what makes a build resumable)
      digest/                  uint8 (n_videos, 32): SHA-256 of each video's bytes, set when written
      catalog.csv              one row per video (columns: CATALOG_COLUMNS)

Videos are stored in gauss (float16 keeps ±3500 G to 2 G or better);
the model's scaling (:func:`common.video.scale_for_model`) is applied by the
reader of the store, not baked into it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

KIND = "fluxwatch.dataset"

#: Catalog columns and what they hold.
CATALOG_COLUMNS = {
    "video_id": "row index into videos/",
    "setting": "index of the synthetic Sun the video was drawn from (the store's attrs 'suns'; 0 the default Sun)",
    "kind": "'region': centred on a catalog BMR (the paper's videos); 'tile': a tile of the service's grid on a random passage",
    "bmr_id": "id of the BMR the video is centred on (synthetic Sun); for a tile, of the BMR its label is about, else ''",
    "start_time": "UTC time of frame 0 (ISO)",
    "start_slot": "global 96-min slot of frame 0",
    "year": "year of the BMR's first catalog observation",
    "month": "month (1-12) of the first catalog observation: the paper's split key",
    "lon": "Carrington longitude of the patch centre, deg",
    "lat": "Carrington latitude of the patch centre, deg",
    "first_obs_time": "UTC time of the first catalog observation (ISO); a tile: of the first catalog BMR seen in it, else ''",
    "first_obs_cmd": "longitude from the central meridian at first observation, deg (negative = east)",
    "first_obs_flux_Mx": "LoS-projected unsigned flux measured at first observation, Mx",
    "flux_Mx": "true total unsigned flux of the BMR at maturity, Mx",
    "crude_label": "1 = emergence if first observed west of -60 deg, else 0 (the paper's rule; a tile without a catalog BMR: 0)",
    "crude_onset_frame": "frame by which the catalog implies the BMR had emerged: first observation minus one day (the catalog is daily), -1 if none",
    "true_class": "1 = the BMR emerged while on the visible disk (synthetic truth); a tile: one of at least the catalog's flux limit emerged in it",
    "true_onset_frame": "frame of true emergence onset, -1 if none in the video",
    "verified": "label checked by a reviewer (False until the relabel loop)",
}


class DatasetError(ValueError):
    """A dataset store that is missing, incomplete or malformed; names the path."""

    def __init__(self, path, problem):
        self.path = Path(path)
        super().__init__(f"{self.path}: {problem}")


class DatasetStore:
    """Read access to a dataset store (see module docstring)."""

    def __init__(self, path: str | Path, require_complete: bool = True):
        self.path = Path(path)
        if not self.path.is_dir():
            raise DatasetError(self.path, "no dataset store here (run build-dataset first)")
        try:
            self._root = zarr.open_group(self.path, mode="r")
            self.attrs = dict(self._root.attrs)
        except Exception as exc:
            raise DatasetError(self.path, f"not a zarr store ({exc})") from None
        if self.attrs.get("kind") != KIND:
            raise DatasetError(self.path, f"not a fluxwatch dataset (kind={self.attrs.get('kind')!r})")
        for name in ("videos", "written", "digest"):
            if name not in self._root:
                raise DatasetError(self.path, f"array {name!r} is missing")
        catalog_path = self.path / "catalog.csv"
        if not catalog_path.is_file():
            raise DatasetError(self.path, "catalog.csv is missing")
        try:
            self.catalog = pd.read_csv(catalog_path)
        except Exception as exc:
            raise DatasetError(self.path, f"catalog.csv unreadable ({exc})") from None
        missing = [c for c in CATALOG_COLUMNS if c not in self.catalog.columns]
        if missing:
            raise DatasetError(self.path, f"catalog.csv lacks columns {missing}")
        self.videos = self._root["videos"]
        if len(self.catalog) != self.videos.shape[0]:
            raise DatasetError(self.path, f"catalog has {len(self.catalog)} rows for {self.videos.shape[0]} videos")
        if require_complete and not self.complete:
            n = int(np.count_nonzero(self._root["written"][:]))
            raise DatasetError(self.path, f"incomplete: {n} of {len(self)} videos written (rerun build-dataset to resume)")

    def __len__(self) -> int:
        return self.videos.shape[0]

    @property
    def complete(self) -> bool:
        return bool(self._root["written"][:].all())

    @property
    def video_shape(self) -> tuple[int, int, int]:
        """(n_frames, pixels, pixels) of every video."""
        return tuple(self.videos.shape[1:])

    def video(self, i: int) -> np.ndarray:
        """Video ``i``: float32 (n_frames, pixels, pixels), G."""
        return self.videos[int(i)].astype(np.float32)

    def fingerprint(self) -> str:
        """SHA-256 over the attributes, the catalog and every video's digest: what a model was trained on."""
        h = hashlib.sha256()
        h.update(json.dumps(self.attrs, sort_keys=True, default=str).encode())
        h.update((self.path / "catalog.csv").read_bytes())
        h.update(self._root["digest"][:].tobytes())
        return h.hexdigest()


def video_digest(video: np.ndarray) -> np.ndarray:
    """SHA-256 of a stored video's bytes as uint8 (32,)."""
    return np.frombuffer(hashlib.sha256(np.ascontiguousarray(video).tobytes()).digest(), dtype=np.uint8)


def create_store(path: str | Path, catalog: pd.DataFrame, attrs: dict, n_frames: int, pixels: int,
                 videos: np.ndarray | None = None) -> zarr.Group:
    """Create the dataset store at ``path`` (which must not exist) and return its group, open for writing.

    The store (``videos`` float16 (n, n_frames, pixels, pixels) in G, chunked per video; ``written`` and
    ``digest`` per video; ``attrs`` with ``kind`` set; ``catalog.csv``) is made beside ``path`` and renamed into
    place, so it appears whole or not at all. With ``videos`` (n, n_frames, pixels, pixels) in G every video is
    written and marked so; without, they are left for the caller to write and mark (a resumable build).
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".creating")
    shutil.rmtree(tmp, ignore_errors=True)
    root = zarr.open_group(tmp, mode="w")
    shape = (len(catalog), n_frames, pixels, pixels)
    root.create_array("videos", shape=shape, chunks=(1, *shape[1:]), dtype="float16", fill_value=0)
    root.create_array("written", shape=(len(catalog),), dtype="bool", fill_value=False)
    root.create_array("digest", shape=(len(catalog), 32), dtype="uint8", fill_value=0)
    if videos is not None:
        stored = videos.astype(np.float16)
        root["videos"][:] = stored
        root["digest"][:] = np.stack([video_digest(v) for v in stored])
        root["written"][:] = True
    root.attrs.update({**attrs, "kind": KIND})
    catalog.to_csv(tmp / "catalog.csv", index=False)
    os.replace(tmp, path)
    return zarr.open_group(path, mode="r+")


def write_dataset(path: str | Path, videos: np.ndarray, catalog: pd.DataFrame, attrs: dict) -> DatasetStore:
    """Write a complete dataset store at ``path`` (which must not exist) in one go and return it opened.

    ``videos``: (n_videos, n_frames, pixels, pixels) in G (stored as float16); ``catalog``: one row per video with
    at least :data:`CATALOG_COLUMNS` (extra columns are kept); ``attrs``: the group attributes (``kind`` is set).
    The store appears complete or not at all (:func:`create_store`).
    """
    path = Path(path)
    if path.exists():
        raise DatasetError(path, "exists; remove it or choose another path")
    missing = [c for c in CATALOG_COLUMNS if c not in catalog.columns]
    if missing:
        raise DatasetError(path, f"catalog lacks columns {missing}")
    if videos.ndim != 4 or len(videos) != len(catalog):
        raise DatasetError(path, f"videos of shape {videos.shape} for {len(catalog)} catalog rows")
    columns = list(CATALOG_COLUMNS) + [c for c in catalog.columns if c not in CATALOG_COLUMNS]
    create_store(path, catalog[columns], attrs, videos.shape[1], videos.shape[2], videos)
    return DatasetStore(path)
