"""Print the reliability suite's summary: the counts each part wrote to ``build/reliability/*.json``.

Each part writes ``<part>.json``, a flat JSON object of counts whose totals are ``<part>_cases`` and
``<part>_crashes`` (e.g. ``fits.json``: ``{"fits_cases": 2800, "fits_crashes": 0, "fits_reader_cases": ...}``);
the summary line lists every part's totals in name order. Exits 1 if any part counted a crash, or none wrote a
file.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_DIR = Path("build/reliability")


def summary(folder: Path = DEFAULT_DIR) -> tuple[str, bool]:
    """(the summary line, whether every part ran with no crash)."""
    counts: dict[str, int] = {}
    for path in sorted(folder.glob("*.json")):
        report = json.loads(path.read_text())
        for key in (f"{path.stem}_cases", f"{path.stem}_crashes"):
            counts[key] = int(report.get(key, 0))
    line = " ".join(f"{k}={v}" for k, v in counts.items())
    return line, bool(counts) and not any(v for k, v in counts.items() if k.endswith("_crashes"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", type=Path, default=DEFAULT_DIR)
    line, ok = summary(p.parse_args(argv).folder)
    print(f"reliability: {line or 'no results in ' + str(DEFAULT_DIR)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
