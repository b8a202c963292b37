"""The inbox: FITS files waiting in ``incoming/``, then in ``pending/`` while their slot may still get a better
frame, moved to ``processed/``, ``superseded/`` or ``rejected/`` once handled.

A file appears in ``incoming/`` complete (feeds and uploads rename it into
place). A superseded or rejected file keeps its name and gets a
``<name>.superseded.txt`` or ``<name>.error.txt`` beside it with the reason,
so nothing is lost.
"""
from __future__ import annotations

import shutil
from pathlib import Path


class Inbox:
    """``incoming/``, ``pending/``, ``processed/``, ``superseded/`` and ``rejected/`` under ``data_dir`` (created)."""

    def __init__(self, data_dir: Path):
        self.incoming, self.pending, self.processed, self.superseded, self.rejected = (
            data_dir / d for d in ("incoming", "pending", "processed", "superseded", "rejected"))
        for folder in (self.incoming, self.pending, self.processed, self.superseded, self.rejected):
            folder.mkdir(parents=True, exist_ok=True)

    def waiting(self) -> list[Path]:
        """Files waiting, oldest name first."""
        return sorted(self.incoming.glob("*.fits"))

    def done(self, path: Path) -> None:
        shutil.move(str(path), self.processed / path.name)

    def hold(self, path: Path) -> Path:
        """Move a file to ``pending/``; returns its new path."""
        target = self.pending / path.name
        shutil.move(str(path), target)
        return target

    def held(self) -> list[Path]:
        """Files in ``pending/``, oldest name first."""
        return sorted(self.pending.glob("*.fits"))

    def supersede(self, path: Path, message: str) -> None:
        target = self.superseded / path.name
        shutil.move(str(path), target)
        target.with_name(target.name + ".superseded.txt").write_text(message + "\n")

    def state(self, name: str) -> tuple[str, str | None] | None:
        """Where the file ``name`` is: ``reading`` (in ``incoming/``), ``pending``, ``scored`` (in ``processed/``),
        ``superseded`` or ``rejected``, with the reason for the last two; None when no folder holds it (never
        received, or removed by the retention)."""
        for state, folder, note in (("reading", self.incoming, None), ("pending", self.pending, None),
                                    ("scored", self.processed, None), ("superseded", self.superseded, ".superseded.txt"),
                                    ("rejected", self.rejected, ".error.txt")):
            if (folder / name).is_file():
                reason = folder / (name + note) if note else None
                return state, reason.read_text().strip() if reason and reason.is_file() else None
        return None

    def reject(self, path: Path, message: str) -> None:
        target = self.rejected / path.name
        shutil.move(str(path), target)
        target.with_name(target.name + ".error.txt").write_text(message + "\n")
