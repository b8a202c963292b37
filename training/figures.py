"""Report figures in the style of the paper's Figs. 3–6."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.figures import pyplot


def relabel_passes(records, n_videos: int, path: Path) -> Path:
    """Fig. 3 top: per pass, disagreements split into already reviewed, new relabels and new model mistakes."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(1, len(records) + 1)
    seen = np.array([r.fp + r.fn - r.new_fp - r.new_fn for r in records])
    relabel = np.array([r.relabelled for r in records])
    mistakes = np.array([r.model_mistakes for r in records])
    ax.bar(x, seen / n_videos, color="tab:red", label="disagreements reviewed in earlier passes")
    ax.bar(x, relabel / n_videos, bottom=seen / n_videos, color="gold", label="new: real mislabels (relabelled)")
    ax.bar(x, mistakes / n_videos, bottom=(seen + relabel) / n_videos, color="tab:blue", label="new: CNN mistakes")
    ax.plot(x, [r.reviewed_total / n_videos for r in records], "k--", marker="o", label="fraction reviewed so far")
    ax.set_xticks(x, [f"Pass {k}" for k in x])
    ax.set_ylabel(f"fraction of {n_videos} videos")
    for k, r in zip(x, records):
        ax.text(k, 0.005, f"R={r.ratio:.2f}", ha="center", va="bottom", fontsize=7, color="white")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title("Iterative relabelling")
    return _save(fig, path)


def ensemble_histogram(probabilities: np.ndarray, threshold: float, path: Path, title: str) -> Path:
    """Fig. 4: members' outputs per video (sorted by median) as a 2D histogram, median and 25–75th band."""
    plt = pyplot()
    order = np.argsort(np.median(probabilities, axis=0))
    p = probabilities[:, order]
    bins = np.linspace(0, 1, 21)
    counts = np.stack([np.histogram(p[:, j], bins)[0] for j in range(p.shape[1])], axis=1)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.imshow(counts, origin="lower", aspect="auto", cmap="Greys", extent=(0, p.shape[1], 0, 1))
    x = np.arange(p.shape[1]) + 0.5
    ax.fill_between(x, np.percentile(p, 25, axis=0), np.percentile(p, 75, axis=0), color="tab:orange", alpha=0.25,
                    label="25th–75th percentile")
    ax.plot(x, np.median(p, axis=0), ".", color="tab:orange", ms=3, label="ensemble median")
    ax.axhline(threshold, ls="--", color="k", label=f"threshold {threshold:.2f}")
    ax.set_xlabel("video (sorted by median)")
    ax.set_ylabel("sigmoid output")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def masking_curves(curves: list[np.ndarray], frames: np.ndarray, true_onsets, estimated, path: Path) -> Path:
    """Fig. 5: probability vs last unmasked frame for a few videos (members thin, truth dashed, estimate star).

    ``curves`` are (n_members, len(frames)) arrays, evaluated at the masking frames ``frames``.
    """
    plt = pyplot()
    n = len(curves)
    fig, axes = plt.subplots(1, max(n, 1), figsize=(3.2 * max(n, 1), 2.8), squeeze=False)
    for ax, c, t, e in zip(axes[0], curves, true_onsets, estimated):
        for member in c:
            ax.plot(frames, member, lw=0.8, alpha=0.6)
        ax.plot(frames, np.median(c, axis=0), "k", lw=1.5)
        ax.axvline(t, ls="--", color="k")
        ax.plot([e], [np.interp(e, frames, np.median(c, axis=0))], "r*", ms=12)
        ax.set_xlabel("last unmasked frame")
        ax.set_ylim(0, 1)
    axes[0, 0].set_ylabel("emergence probability")
    return _save(fig, path)


def onset_errors(errors_days: np.ndarray, path: Path) -> Path:
    """Fig. 6 bottom: estimated − true onset (days), with the median and 25–75 / 5–95 ranges."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    if errors_days.size:
        ax.hist(errors_days, bins=np.arange(np.floor(errors_days.min()) - 0.25, np.ceil(errors_days.max()) + 0.5, 0.5),
                color="tab:orange")
        p5, p25, p50, p75, p95 = np.percentile(errors_days, [5, 25, 50, 75, 95])
        ax.axvspan(p5, p95, color="lightblue", alpha=0.4, label=f"5–95th [{p5:+.1f}, {p95:+.1f}] d")
        ax.axvspan(p25, p75, color="purple", alpha=0.25, label=f"25–75th [{p25:+.1f}, {p75:+.1f}] d")
        ax.axvline(p50, ls="--", color="tab:orange", label=f"median {p50:+.1f} d")
        ax.legend(fontsize=7)
    ax.axvline(0, color="k")
    ax.set_xlabel("estimated − true onset (days)")
    ax.set_ylabel("videos")
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    pyplot().close(fig)
    return path
