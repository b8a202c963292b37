"""The synthetic Sun as a live feed: one full-disk MDI-format FITS file per cadence slot into ``incoming/``.

The feed's position (the next slot) is kept in ``data_dir/feed.json`` so a
restarted service continues where it stopped. Slots the synthetic Sun
marks missing produce no file, as MDI's gaps do. The Sun's past is the
feed's archive: :meth:`SyntheticFeed.history` delivers the frames before the
next slot, for the service's warm start.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from multiprocessing import get_context
from pathlib import Path

from astropy.time import Time

from common.clock import slot_of_time
from serving.store import StateError
from sim import SunConfig, SyntheticSun, write_fits_series


def _render(job: tuple[int, int, str]) -> list[Path]:
    seed, slot, folder = job
    return write_fits_series(SyntheticSun(SunConfig(), seed=seed), [slot], folder)


class SyntheticFeed:
    def __init__(self, data_dir: str | Path, start: str, seed: int = 0):
        self.dir = Path(data_dir)
        self.state_path = self.dir / "feed.json"
        self.seed = seed
        self.sun = SyntheticSun(SunConfig(), seed=seed)
        if self.state_path.exists():
            try:
                self.next_slot = int(json.loads(self.state_path.read_text())["next_slot"])
            except (ValueError, KeyError, TypeError) as exc:
                raise StateError(f"{self.state_path} is damaged ({exc!r}): delete it and the feed starts again at "
                                 f"{start} (frames of slots already scored are set aside in superseded/)") from exc
        else:
            self.next_slot = int(slot_of_time(Time(start)))

    def history(self, first: int, end: int, workers: int | None = None) -> Iterator[Path]:
        """Deliver the frames of slots [first, end) into ``incoming/``, in slot order, as they are rendered
        (on ``workers`` processes, every core when None)."""
        with get_context("spawn").Pool(workers or os.cpu_count()) as pool:
            for written in pool.imap(_render, [(self.seed, s, str(self.dir / "feed-staging")) for s in range(first, end)]):
                for path in written:
                    target = self.dir / "incoming" / path.name
                    os.replace(path, target)
                    yield target

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
