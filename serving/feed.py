"""The synthetic Sun as a live feed: one full-disk MDI-format FITS file per cadence slot into ``incoming/``.

The feed's position (the next slot) is kept in ``data_dir/feed.json`` so a
restarted service continues where it stopped. Slots the synthetic Sun
marks missing produce no file, as MDI's gaps do.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from astropy.time import Time

from common.clock import slot_of_time
from serving.store import StateError
from sim import SunConfig, SyntheticSun, write_fits_series


class SyntheticFeed:
    def __init__(self, data_dir: str | Path, start: str, seed: int = 0):
        self.dir = Path(data_dir)
        self.state_path = self.dir / "feed.json"
        self.sun = SyntheticSun(SunConfig(), seed=seed)
        if self.state_path.exists():
            try:
                self.next_slot = int(json.loads(self.state_path.read_text())["next_slot"])
            except (ValueError, KeyError, TypeError) as exc:
                raise StateError(f"{self.state_path} is damaged ({exc!r}): delete it and the feed starts again at "
                                 f"{start} (frames of slots already scored are set aside in superseded/)") from exc
        else:
            self.next_slot = int(slot_of_time(Time(start)))

    def tick(self) -> list[Path]:
        """Deliver the next slot's frame (none if that slot is missing); returns the files written."""
        slot = self.next_slot
        staging = self.dir / "feed-staging"
        written = write_fits_series(self.sun, [slot], staging)
        delivered = []
        for path in written:
            target = self.dir / "incoming" / path.name
            os.replace(path, target)  # appears in incoming/ complete, never half-written
            delivered.append(target)
        self.next_slot = slot + 1
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"next_slot": self.next_slot}))
        tmp.replace(self.state_path)
        return delivered
