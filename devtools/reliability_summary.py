"""Print the reliability suite's summary: the figures each part wrote to ``build/reliability/*.json``.

Each part writes ``<part>.json``, a flat JSON object of figures: ``fits.json`` (hostile FITS: ``fits_cases``,
``fits_crashes``), ``api.json`` (schemathesis: ``api_cases``, ``api_5xx``), ``faults.json`` (``kills``,
``frames_lost``, ``alerts_lost``, ``alerts_duplicated``) and ``load.json`` (requests per second, p95 latencies).
Every figure is printed, a part per line; the last line is the verdict's figures in a fixed order
(:data:`VERDICT`). Exits 1 if a verdict figure is missing or any of its failure counts is not 0.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_DIR = Path("build/reliability")

#: The last line's figures, in order: (name, must it be 0).
VERDICT = (("fits_cases", False), ("fits_crashes", True), ("api_cases", False), ("api_5xx", True), ("kills", False),
           ("frames_lost", True), ("alerts_lost", True), ("alerts_duplicated", True))


def summary(folder: Path = DEFAULT_DIR) -> tuple[list[str], bool]:
    """(the summary's lines, the last being the verdict's figures; whether every part ran and none failed)."""
    figures: dict[str, object] = {}
    lines = []
    for path in sorted(folder.glob("*.json")):
        report = json.loads(path.read_text())
        figures.update(report)
        lines.append(f"{path.stem}: " + " ".join(f"{k}={v}" for k, v in report.items()))
    missing = [name for name, _ in VERDICT if name not in figures]
    failed = [name for name, zero in VERDICT if zero and figures.get(name, 0) != 0]
    lines.append(" ".join(f"{name}={figures.get(name, 'missing')}" for name, _ in VERDICT))
    return lines, not missing and not failed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", type=Path, default=DEFAULT_DIR)
    lines, ok = summary(p.parse_args(argv).folder)
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
