"""A bundle that names a classical detector instead of networks: what the service runs to alert on the new-flux
detector (:mod:`common.newflux`, streamed by :mod:`serving.newflux`)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

import astropy.units as u

from common.config import PatchGridConfig, VideoConfig
from common.manifest import LAYOUT, SCHEMA_VERSION, Manifest
from common.newflux import NewFluxDetector
from common.video import SCALING
from ingest.instruments import MDI_SPEC

#: F at which a new-flux bundle's score is 0.5, Mx: the alert thresholds 0.3–0.6 are levels of 4e20–1.5e21 Mx.
REFERENCE_MX = 1e21


def write_detector_bundle(path: str | Path, detector: NewFluxDetector = NewFluxDetector(),
                          reference_Mx: float = REFERENCE_MX, note: str = "") -> Path:
    """Write a new-flux bundle (its manifest only) into the directory ``path``; returns it.

    Its settings are the detector's but its level, which the bundle's threshold sets: the operating point chosen
    on the validation stream (``python -m evaluation.research --bundle PATH --record`` from the bench's replays,
    or ``fluxwatch-evaluate --calibrate`` with a replay of its own); until then the threshold is that of the
    detector's level.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    video = VideoConfig()
    settings = {f.name: getattr(detector, f.name) for f in fields(detector) if f.name != detector.knob}
    threshold = detector.level_Mx / (detector.level_Mx + reference_Mx)
    digest = hashlib.sha256(json.dumps([settings, reference_Mx], sort_keys=True).encode()).hexdigest()[:12]
    manifest = Manifest.validated({
        "schema_version": SCHEMA_VERSION, "model_version": f"fw-newflux-{digest}",
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "input": {"name": "video", "dtype": "float32", "layout": LAYOUT, "n_frames": video.n_frames, "pixels": PatchGridConfig().pixels,
                  "cadence_min": float(video.cadence.to_value(u.min)), "clip_G": float(video.clip.to_value(u.G)),
                  "scaling": SCALING, "instrument": MDI_SPEC.as_dict()},
        "threshold": threshold, "detector": {"kind": "newflux", "settings": settings, "reference_Mx": reference_Mx},
        "note": note or "the new-flux detector (common.newflux): a classical detector, no training"},
        path / "manifest.json")
    manifest.write(path)
    return path
