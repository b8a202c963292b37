"""Same frames, two checkouts: the alert events, scores, outbox messages and API answers of the live service of
another checkout (``--before``, e.g. a ``git worktree`` of an earlier commit) and of this one, compared.

A refactoring of the service must leave them identical (the events' ``published`` time, the wall clock, aside).
Renders ``--days`` of ``--size``² frames of the synthetic Sun once, runs each checkout's service over them in a
process of its own (its code on ``PYTHONPATH``), and prints one line per part.

Usage: git worktree add /tmp/before <commit>; python -m bench.behaviour --before /tmp/before [--bundle models/cnn]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from astropy.time import Time

ROOT = Path(__file__).resolve().parents[1]


def _strip(o):
    if isinstance(o, dict):
        return {k: _strip(v) for k, v in o.items() if k != "published"}
    if isinstance(o, list):
        return [_strip(v) for v in o]
    return o


def dump(frames: Path, out: Path, bundle: str) -> None:
    """Run ``frames`` through this process's service (the checkout on ``PYTHONPATH``) and write what it decided."""
    import httpx

    from common.config import ServiceConfig
    from serving.api import create_app

    config = ServiceConfig(data_dir=str(out / "svc"), bundle=bundle, source="watch", present_at_start=True)
    if (Path.cwd() / "serving" / "compose.py").exists():
        from serving.compose import open_service

        service = open_service(config)
    else:  # a checkout from before the composition root
        from serving.service import Service

        service = Service(config)  # type: ignore[call-arg]
    for f in sorted(frames.glob("*.fits")):
        shutil.copy(f, service.inbox.incoming / f.name)
        service.run_cycle()
    db = service.store.db
    scores = {f"{p}/{s}/{k}": [json.loads(pr), json.loads(su)]
              for p, s, k, pr, su in db.execute("SELECT patch_id, start_slot, frame, probs, summary FROM scores")}

    async def answers() -> dict:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(service)), base_url="http://api") as c:
            paths = ["/patches", "/alerts?limit=1000"] + [f"/patches/{p}" for p in sorted({k.split("/")[0] for k in scores})]
            return {path: (await c.get(path)).json() for path in paths}

    (out / "decided.json").write_text(json.dumps(_strip({
        "alert events": {e: json.loads(p) for e, p in db.execute("SELECT event_id, payload FROM alerts")},
        "scores": scores,
        "outbox messages": {e: [t, k, json.loads(p)] for t, k, e, p in db.execute("SELECT topic, key, event_id, payload FROM outbox")},
        "API answers": asyncio.run(answers())}), sort_keys=True))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", type=Path, required=True, help="the other checkout")
    p.add_argument("--bundle", default=str(ROOT / "models" / "cnn"))
    p.add_argument("--days", type=float, default=3.0)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--start", default="2002-05-10T00:00:00")
    p.add_argument("--dump", nargs=2, type=Path, help=argparse.SUPPRESS)  # frames, out: the child's part
    a = p.parse_args()
    if a.dump:
        frames, out = a.dump
        return dump(frames, out, a.bundle)
    from common.clock import SLOTS_PER_DAY, slot_of_time
    from sim import SunConfig, SyntheticSun, write_fits_series

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        first = int(slot_of_time(Time(a.start)))
        write_fits_series(SyntheticSun(SunConfig(), seed=3), range(first, first + int(a.days * SLOTS_PER_DAY)), tmp / "frames",
                          shape=(a.size, a.size))
        decided = {}
        for side, tree in (("before", a.before.resolve()), ("after", ROOT)):
            (tmp / side).mkdir()
            # this file's dump, run in the checkout's folder with its code, not this one's, first on the path
            argv = ["behaviour", "--before", str(a.before), "--bundle", str(Path(a.bundle).resolve()), "--dump",
                    str(tmp / "frames"), str(tmp / side)]
            code = f"import runpy, sys; sys.argv = {argv!r}; runpy.run_path({str(Path(__file__).resolve())!r}, run_name='__main__')"
            subprocess.run([sys.executable, "-c", code], cwd=tree, check=True, env={**os.environ, "PYTHONPATH": str(tree)})
            decided[side] = json.loads((tmp / side / "decided.json").read_text())
    for part, before in decided["before"].items():
        after = decided["after"][part]
        print(f"{part}: {len(before)} before, {len(after)} after: {'identical' if before == after else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
