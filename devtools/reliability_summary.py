"""Print the reliability suite's summary: the counts each part wrote to ``build/reliability/*.json``.

Each file is a flat JSON object of counts (e.g. ``fits.json``: ``{"fits_cases": 2600, "fits_crashes": 0, ...}``);
the summary line lists every file's ``*_cases`` and ``*_crashes`` totals, file by file, in name order. Exits 1 if
any part counted a crash, or none wrote a file.
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
        for key, value in json.loads(path.read_text()).items():
            if key.count("_") == 1 and key.endswith(("_cases", "_crashes")):  # the part's totals
                counts[key] = int(value)
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
