"""``fluxwatch-review``: the review desk in the browser, for a run's relabel loop and for the service's live alerts.

    fluxwatch-review --run runs/x                        the desk of a run (train-ensemble --reviewer web waits on it)
    fluxwatch-review --service http://127.0.0.1:8000     vet the live service's alerts (desk in data/vetting/)
    fluxwatch-review --export-vetted vetted.zarr         write the vetted alerts as a dataset store, and exit

Decisions are kept in ``<run>/review/desk.sqlite`` (or ``<desk-dir>/desk.sqlite``): stop and restart at will.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import uvicorn

from review.decisions import Decisions
from review.desk import create_app
from review.vetting import AlertSource, ServiceError, export_vetted

#: Where a desk without a run keeps its database and alert snapshots.
DEFAULT_DESK_DIR = Path("data/vetting")


def desk_path(run: Path | None, desk_dir: Path | None) -> Path:
    """The desk database of a run (``<run>/review/desk.sqlite``) or of a desk folder."""
    if run is not None:
        return run / "review" / "desk.sqlite"
    return (desk_dir or DEFAULT_DESK_DIR) / "desk.sqlite"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="fluxwatch-review", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, help="run folder of train-ensemble: its desk (runs/x/review/desk.sqlite)")
    p.add_argument("--desk-dir", type=Path, help=f"desk folder when there is no --run (default {DEFAULT_DESK_DIR})")
    p.add_argument("--service", help="URL of a fluxwatch service: its alerts join the desk for vetting")
    p.add_argument("--export-vetted", type=Path, metavar="OUT.zarr", help="write the vetted alerts as a dataset store and exit")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--show-model", action="store_true", help="show the current label and the model's probability by default")
    p.add_argument("--min-decisive", type=int, help="decisive answers each item needs, kept in the desk's database "
                   "(default: as set before, else 1; 2 or more asks several reviewers about every item)")
    args = p.parse_args(argv)
    path = desk_path(args.run, args.desk_dir)
    if args.run is not None and not path.exists():
        print(f"fluxwatch-review: error: {path} does not exist (start train-ensemble --reviewer web on {args.run} first)",
              file=sys.stderr)
        return 2
    decisions = Decisions(path, min_decisive=args.min_decisive)
    if args.export_vetted is not None:
        try:
            store = export_vetted(decisions, path.parent, args.export_vetted)
        except (ValueError, FileNotFoundError) as exc:  # ingest.dataset.DatasetError is a ValueError
            print(f"fluxwatch-review: error: {exc}", file=sys.stderr)
            return 2
        labels = store.catalog.crude_label
        print(f"wrote {store.path}: {len(store)} vetted alerts ({int(labels.sum())} confirmed, {int((labels == 0).sum())} rejected)")
        return 0
    alerts = None
    if args.service:
        alerts = AlertSource(args.service, decisions, path.parent)
        try:
            print(f"{alerts.sync()} alerts from {args.service}")
        except ServiceError as exc:
            print(f"fluxwatch-review: error: {exc}", file=sys.stderr)
            return 2
    app = create_app(decisions, show_model=args.show_model, alerts=alerts)
    print(f"review desk: http://{args.host}:{args.port}/ (decisions in {path})")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
