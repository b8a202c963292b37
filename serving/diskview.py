"""The disk as the live page shows it: each scored frame drawn once, at ingest, as a light picture and the outlines
of the patches on it, kept in ``views/`` for ``retain_views`` of observation time.

A view is ``views/<slot>.png`` (the frame, :data:`SIZE`² px, grey from −:data:`FIELD_G` black to +:data:`FIELD_G`
white, black off the disk, solar north up) and ``views/<slot>.json`` (:class:`DiskView`: the frame's time,
instrument, QUALITY and file, and each patch's visible outline in the picture's pixels). The page draws the scores
and alerts of that frame over it; the frame itself is never read again.
"""
from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from common.clock import slot_isot, slot_of_time
from common.patches import PatchGrid
from ingest.magnetogram import Magnetogram
from ingest.projection import carrington_to_pixel

#: Side of a view's picture, px.
SIZE = 512
#: The picture saturates at ± this line-of-sight field, G.
FIELD_G = 500.0
#: Points along each side of a patch's outline.
EDGE_POINTS = 6
VIEWS_DIR = "views"


@dataclass(frozen=True)
class DiskView:
    """What the page needs of a frame besides its picture.

    Attributes
    ----------
    slot, frame_time : the frame's slot and its time (ISO UTC).
    instrument, quality, source : the instrument whose data it is, its QUALITY word (0 without one) and its file.
    simulated : the frame is the synthetic Sun's, not observed.
    size : the picture's side, px.
    centre, radius : the solar disk's centre (x right, y down) and radius in the picture, px.
    outlines : each patch with a visible part: the visible points of its outline, [[x, y], ...] in the picture, px.
    """

    slot: int
    frame_time: str
    instrument: str
    quality: int
    source: str
    simulated: bool
    size: int
    centre: tuple[float, float]
    radius: float
    outlines: dict[str, list[list[float]]]


def _outline(grid: PatchGrid) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (deg) from a patch's centre of :data:`EDGE_POINTS` points along each side, counter-clockwise:
    (lon offsets, lat offsets), each (4 × EDGE_POINTS,)."""
    half = grid.config.patch_size.to_value("deg") / 2
    t = np.linspace(-half, half, EDGE_POINTS, endpoint=False)
    lon = np.r_[t, np.full_like(t, half), -t, np.full_like(t, -half)]
    lat = np.r_[np.full_like(t, -half), t, np.full_like(t, half), -t]
    return lon, lat


def draw(mag: Magnetogram, grid: PatchGrid, source: str) -> tuple[bytes, DiskView]:
    """A frame's picture (PNG bytes) and view. An image stored with solar north down (HMI's ``CROTA2`` ≈ 180°) is
    turned half a turn, so that north is up in every view."""
    ny, nx = mag.data.shape
    grey = np.where(mag.on_disk, np.clip((mag.data / FIELD_G + 1.0) * 127.5, 0, 255), 0).astype(np.uint8)
    picture = grey[::-1]  # FITS row 0 is the bottom row
    d = mag.observer.distance_rsun
    cx, cy = mag.image.pixels_from_heliocentric(np.array([0.0, 0.0]), np.array([0.0, 0.5]), np.zeros(2), d)
    north_down = cy[1] < cy[0]
    if north_down:
        picture = picture[::-1, ::-1]
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(picture), mode="L").resize((SIZE, SIZE), Image.Resampling.BOX).save(
        out, format="PNG", compress_level=3)  # zlib's fastest levels: a view costs ~30 ms, not ~100

    def to_view(col, row):
        """Image pixel (0-based col, row) → picture px (x right, y down)."""
        x, y = (np.asarray(col) + 0.5) * SIZE / nx, (ny - 0.5 - np.asarray(row)) * SIZE / ny
        return (SIZE - x, SIZE - y) if north_down else (x, y)

    dlon, dlat = _outline(grid)
    idx = np.flatnonzero(grid.on_disk(mag.observer))
    col, row, visible = carrington_to_pixel(mag.observer, mag.image, grid.lon[idx, None] + dlon,
                                            np.clip(grid.lat[idx, None] + dlat, -90.0, 90.0))
    x, y = to_view(col, row)
    outlines = {grid.ids[i]: [[round(float(a), 1), round(float(b), 1)] for a, b in zip(x[j][visible[j]], y[j][visible[j]])]
                for j, i in enumerate(idx) if visible[j].sum() >= 3}
    centre = to_view(cx[0], cy[0])
    radius = float(np.sqrt(mag.on_disk.sum() / np.pi)) * SIZE / nx
    slot = int(slot_of_time(mag.time))
    view = DiskView(slot=slot, frame_time=slot_isot(slot) + "Z", instrument=mag.instrument, quality=int(mag.quality),
                    source=source, simulated=mag.origin.simulated, size=SIZE, centre=(round(float(centre[0]), 1), round(float(centre[1]), 1)),
                    radius=round(radius, 1), outlines=outlines)
    return out.getvalue(), view


class DiskViews:
    """The views of ``data_dir/views``: written at ingest, read by the live page, removed by the retention."""

    def __init__(self, data_dir: str | Path, grid: PatchGrid):
        self.dir = Path(data_dir) / VIEWS_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self.grid = grid

    def write(self, mag: Magnetogram, source: str) -> DiskView:
        """Draw a scored frame and keep its view (the JSON last: a view with JSON is whole)."""
        png, view = draw(mag, self.grid, source)
        for suffix, body in ((".png", png), (".json", json.dumps(asdict(view)).encode())):
            part = self.dir / f".{view.slot}{suffix}.part"
            part.write_bytes(body)
            part.replace(self.dir / f"{view.slot}{suffix}")
        return view

    def slots(self) -> list[int]:
        """Slots with a whole view, oldest first."""
        return sorted(int(p.stem) for p in self.dir.glob("*.json") if p.stem.isdigit())

    def view(self, slot: int) -> DiskView | None:
        """The view of ``slot``; None when there is none (never drawn, or removed by the retention)."""
        path = self.dir / f"{slot}.json"
        try:
            return DiskView(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None

    def removed(self, slot: int) -> bool:
        """Whether the view of ``slot``, if it was drawn, is gone by the retention: it is older than every view kept."""
        kept = self.slots()
        return bool(kept) and slot < kept[0]

    def picture(self, slot: int) -> Path:
        return self.dir / f"{slot}.png"

    def remove_before(self, slot: int) -> int:
        """Remove the views of slots before ``slot``; returns how many."""
        old = [s for s in self.slots() if s < slot]
        for s in old:
            (self.dir / f"{s}.json").unlink(missing_ok=True)  # the JSON first: a view without it is not served
            self.picture(s).unlink(missing_ok=True)
        return len(old)
