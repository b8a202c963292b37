"""The model bundle's manifest (``bundle/manifest.json``): one typed model that training writes, the evaluation
updates (its operating point) and the service reads.

A bundle is a directory of ONNX files and this manifest, written last and
atomically: a directory with a manifest is a complete bundle. Each file entry
of a member carries its SHA-256; the SHA-256 of the manifest itself is the
bundle's identity (its digest, in every alert's provenance).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

#: The schema of the manifests written and read (2: members carry streaming graphs).
SCHEMA_VERSION = 2
#: The members' input layout: (batch, channel, time, rows, columns).
LAYOUT = "NCTHW"
FILE = "manifest.json"


class ManifestError(ValueError):
    """A manifest that cannot be read or written; names the file and the problem."""

    def __init__(self, path, problem):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = path, problem


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")  # what a later schema adds is kept when the manifest is rewritten


class InputSpec(_Open):
    """What every member takes: videos of ``n_frames`` × ``pixels``² at ``cadence_min``, clipped at ±``clip_G`` G and
    scaled by ``scaling``, taken (or simulated) with ``instrument``."""

    name: str = "video"
    dtype: str = "float32"
    layout: Literal["NCTHW"]
    n_frames: int = Field(gt=0)
    pixels: int = Field(gt=0)
    cadence_min: float = Field(gt=0)
    clip_G: float = Field(gt=0)
    scaling: str
    instrument: dict | None = None


class OperatingPoint(_Open):
    """The alert threshold chosen on a validation stream for a target false-alarm rate (:mod:`evaluation.operating`)."""

    threshold: float = Field(gt=0, lt=1)
    target_false_per_disk_day: float | None = None
    baseline_flux_rise_k: float | None = None
    newflux_level_Mx: float | None = None


class DetectorSpec(_Open):
    """A classical detector a bundle names instead of network members: ``kind`` ``newflux`` (the new-flux detector of
    :mod:`common.newflux`, with ``settings`` over its defaults), scored F / (F + ``reference_Mx``) of its bipolar
    new flux F (Mx)."""

    kind: Literal["newflux"]
    settings: dict = Field(default_factory=dict)
    reference_Mx: float = Field(gt=0)


class Manifest(_Open):
    """``manifest.json``: the schema version, the model's version, input spec, threshold on the median ensemble
    probability, onset settings, members (fold, seed, file, SHA-256, streaming graphs) and how they were made, or
    instead of members the classical detector it names."""

    schema_version: Literal[2]
    model_version: str = "unknown"
    input: InputSpec
    threshold: float = Field(gt=0, lt=1)
    onset: dict = Field(default_factory=lambda: {"hold_frames": 0})
    members: list[dict] = Field(default_factory=list)
    detector: DetectorSpec | None = None
    operating_point: OperatingPoint | None = None

    @model_validator(mode="after")
    def _one_scorer(self) -> Manifest:
        if bool(self.members) == (self.detector is not None):
            raise ValueError("a bundle has either members (networks) or a detector, and one of them")
        return self

    @property
    def alert_threshold(self) -> float:
        """Alerts open above this: the operating point's threshold, else the training threshold."""
        return self.operating_point.threshold if self.operating_point else self.threshold

    @classmethod
    def read(cls, bundle: str | Path) -> Manifest:
        """The manifest of the bundle directory ``bundle``; :class:`ManifestError` naming the file and the problem."""
        path = Path(bundle) / FILE
        if not path.is_file():
            raise ManifestError(Path(bundle), f"no {FILE} (run train-ensemble, or point --bundle at its bundle/)")
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ManifestError(path, f"not valid JSON ({exc})") from None
        if not isinstance(raw, dict) or raw.get("schema_version") != SCHEMA_VERSION:
            version = raw.get("schema_version") if isinstance(raw, dict) else None
            raise ManifestError(path, f"schema version {version} is not {SCHEMA_VERSION} (re-export it with "
                                      "train-ensemble)")
        return cls.validated(raw, path)

    @classmethod
    def validated(cls, raw: dict, path: Path) -> Manifest:
        """``raw`` checked as a manifest; :class:`ManifestError` naming ``path`` and every problem."""
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ManifestError(path, "; ".join(
                f"{'.'.join(map(str, e['loc']))} = {e['input']!r}: {e['msg']}" if e["type"] != "missing"
                else f"{'.'.join(map(str, e['loc']))} is missing" for e in exc.errors())) from None

    def with_operating_point(self, point: dict, bundle: str | Path) -> Manifest:
        """This manifest with ``point`` as its operating point (checked)."""
        return self.validated({**self.model_dump(mode="json", exclude_unset=True), "operating_point": point},
                               Path(bundle) / FILE)

    def write(self, bundle: str | Path) -> Path:
        """Write it into the bundle directory ``bundle`` atomically; returns its path."""
        path = Path(bundle) / FILE
        tmp = path.with_name(FILE + ".partial")
        tmp.write_text(json.dumps(self.model_dump(mode="json", exclude_unset=True), indent=2) + "\n")
        os.replace(tmp, path)
        return path
