"""The inbox: FITS files waiting in ``incoming/``, moved to ``processed/`` or ``rejected/`` once handled.

A file appears in ``incoming/`` complete (feeds and uploads rename it into
place). A rejected file keeps its name and gets a ``<name>.error.txt`` beside
it with the reason, so nothing is lost.
"""
from __future__ import annotations

import shutil
from pathlib import Path


class Inbox:
    """``incoming/``, ``processed/`` and ``rejected/`` under ``data_dir`` (created)."""

    def __init__(self, data_dir: Path):
        self.incoming, self.processed, self.rejected = (data_dir / d for d in ("incoming", "processed", "rejected"))
        for folder in (self.incoming, self.processed, self.rejected):
            folder.mkdir(parents=True, exist_ok=True)

    def waiting(self) -> list[Path]:
        """Files waiting, oldest name first."""
        return sorted(self.incoming.glob("*.fits"))

    def done(self, path: Path) -> None:
        shutil.move(str(path), self.processed / path.name)

    def reject(self, path: Path, message: str) -> None:
        target = self.rejected / path.name
        shutil.move(str(path), target)
        target.with_name(target.name + ".error.txt").write_text(message + "\n")
