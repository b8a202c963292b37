"""Figures people look at: patch-video montages in the style of the paper's Figure 1, and grey frame sheets (the
review desk's player, the service's cutouts)."""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

#: Grey scale of the frames: black at -CLIP_G, white at +CLIP_G (a region near the limb, foreshortened, still shows).
CLIP_G = 300.0


@dataclass(frozen=True)
class Sprite:
    """All frames of a video tiled row by row, ``columns`` to a row, each ``pixels`` square, north up (PNG bytes)."""

    png: bytes
    columns: int
    frames: int
    pixels: int


def sprite_columns(n_frames: int) -> int:
    """Columns of the sheet :func:`sprite` lays ``n_frames`` frames on (row by row)."""
    return math.ceil(math.sqrt(n_frames))


def sprite(video: np.ndarray, clip_G: float = CLIP_G) -> Sprite:
    """The frames of ``video`` (n_frames, pixels, pixels; G) as one grey PNG, saturating at ±``clip_G``."""
    n, px, _ = video.shape
    columns = sprite_columns(n)
    rows = math.ceil(n / columns)
    grey = np.clip((np.nan_to_num(video) / clip_G + 1.0) * 127.5, 0, 255).astype(np.uint8)[:, ::-1, :]  # north up
    sheet = np.full((rows * px, columns * px), 127, np.uint8)
    for k in range(n):
        r, c = divmod(k, columns)
        sheet[r * px:(r + 1) * px, c * px:(c + 1) * px] = grey[k]
    out = io.BytesIO()
    Image.fromarray(sheet, mode="L").save(out, format="PNG")
    return Sprite(out.getvalue(), columns, n, px)



def pyplot():
    """matplotlib.pyplot on the headless Agg backend (imported on first use: most callers never plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def video_montage(videos, titles, path: str | Path, every: int = 5, columns: int = 15, clip_gauss: float = 500.0) -> Path:
    """Save a PNG montage: one block of rows per video, every ``every``-th frame.

    Parameters
    ----------
    videos : sequence of arrays (n_frames, ny, nx) in G.
    titles : one label per video.
    every : frame stride (the paper's Figure 1 shows every 5th frame).
    columns : frames per row.
    clip_gauss : colour scale saturates at ±clip_gauss (polarity colour map: white positive, black negative).
    """
    plt = pyplot()

    picks = [np.arange(0, len(v), every) for v in videos]
    columns = min(columns, max(len(p) for p in picks))
    rows_per = [int(np.ceil(len(p) / columns)) for p in picks]
    fig, axes = plt.subplots(sum(rows_per), columns, figsize=(columns * 0.9, sum(rows_per) * 1.0 + 0.4 * len(videos)),
                             squeeze=False, gridspec_kw={"wspace": 0.04, "hspace": 0.25})
    row = 0
    for video, pick, nrows, title in zip(videos, picks, rows_per, titles):
        for k in range(nrows * columns):
            ax = axes[row + k // columns, k % columns]
            ax.set_axis_off()
            if k < len(pick):
                ax.imshow(video[pick[k]], origin="lower", cmap="gray", vmin=-clip_gauss, vmax=clip_gauss)
                ax.set_title(f"{pick[k]}", fontsize=6, pad=1)
        axes[row, 0].text(0, 1.35, title, transform=axes[row, 0].transAxes, fontsize=8, va="bottom", ha="left")
        row += nrows
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
