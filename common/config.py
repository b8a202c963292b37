"""Typed configuration: the one place the paper's parameters live.

Every quantity that crosses an interface carries its astropy unit; the
defaults are the paper's (Chatterjee et al. 2021, see ``shared/reference``).
"""
from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import astropy.units as u
from pydantic import BeforeValidator, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from common.clock import CADENCE

#: The shipped default bundle: the new-flux detector (:mod:`common.newflux`), the best on the validation streams
#: (``docs/guides/evaluating.md``); its alert level is chosen there, nothing is trained.
DEFAULT_BUNDLE = "models/default"
#: The shipped CNN ensemble, the learned detector (``make train`` reproduces it; the benches measure it).
CNN_BUNDLE = "models/cnn"


class ConfigError(ValueError):
    """Settings that cannot be used: the message names where they came from and what is wrong."""


def _require(value: u.Quantity, unit: u.UnitBase, name: str) -> u.Quantity:
    if not isinstance(value, u.Quantity) or not value.unit.is_equivalent(unit):
        raise TypeError(f"{name} must be an astropy Quantity in {unit}, got {value!r}")
    return value.to(unit)


@dataclass(frozen=True)
class PatchGridConfig:
    """The Carrington patch tiling.

    Attributes
    ----------
    patch_size : Quantity[deg]
        Side of a square patch in Carrington longitude and latitude (15°).
    pixel_size : Quantity[deg]
        Side of a patch pixel (1/6°, so a patch is 90×90 px).
    overlap : Quantity[deg]
        Minimum overlap between neighbouring patches (0° tiles edge to edge).
    lat_limit : Quantity[deg]
        Patches cover latitudes in [-lat_limit, +lat_limit] (90° covers the disk).
    """

    patch_size: u.Quantity = 15 * u.deg
    pixel_size: u.Quantity = (1 / 6) * u.deg
    overlap: u.Quantity = 0 * u.deg
    lat_limit: u.Quantity = 90 * u.deg

    def __post_init__(self):
        for name in ("patch_size", "pixel_size", "overlap", "lat_limit"):
            object.__setattr__(self, name, _require(getattr(self, name), u.deg, name))
        n = (self.patch_size / self.pixel_size).decompose().value
        if abs(n - round(n)) > 1e-9 or round(n) < 2:
            raise ValueError(f"patch_size {self.patch_size} is not a whole number of pixels of {self.pixel_size}")
        if not 0 * u.deg <= self.overlap < self.patch_size:
            raise ValueError(f"overlap {self.overlap} must be in [0, patch_size)")
        if not self.patch_size / 2 <= self.lat_limit <= 90 * u.deg:
            raise ValueError(f"lat_limit {self.lat_limit} must be in [patch_size/2, 90 deg]")

    @property
    def pixels(self) -> int:
        """Patch side in pixels (90 by default)."""
        return round((self.patch_size / self.pixel_size).decompose().value)


@dataclass(frozen=True)
class VideoConfig:
    """A patch video: a fixed number of frames on a fixed cadence.

    Attributes
    ----------
    n_frames : int
        Frames per video (225, ~15 days at 96 min).
    cadence : Quantity[min]
        Time between frames (the clock's cadence, :data:`common.clock.CADENCE`).
    clip : Quantity[G]
        Field strength at which model inputs saturate: the authors' code clips
        to ±1000 G and maps [-clip, +clip] linearly onto [0, 1].
    """

    n_frames: int = 225
    cadence: u.Quantity = CADENCE
    clip: u.Quantity = 1000 * u.G

    def __post_init__(self):
        object.__setattr__(self, "cadence", _require(self.cadence, u.min, "cadence"))
        object.__setattr__(self, "clip", _require(self.clip, u.G, "clip"))
        if int(self.n_frames) != self.n_frames or self.n_frames < 2:
            raise ValueError(f"n_frames must be an integer >= 2, got {self.n_frames}")
        if self.cadence <= 0 * u.min or self.clip <= 0 * u.G:
            raise ValueError("cadence and clip must be positive")

    @property
    def duration(self) -> u.Quantity:
        """Time spanned by a full video, first to last frame."""
        return ((self.n_frames - 1) * self.cadence).to(u.day)


PLACEHOLDER_UPLOAD_TOKEN = "change-me"  # the default upload token: anyone who has read the code knows it


def _in(unit: u.UnitBase):
    """A pydantic validator taking a Quantity, or a string such as ``"45 deg"`` (from the environment or a
    file), to a Quantity in ``unit``."""
    def parse(value):
        if isinstance(value, str):
            try:
                value = u.Quantity(value)
            except (TypeError, ValueError):
                raise ValueError(f"{value!r} is not a quantity such as '45 deg'") from None
        try:
            return _require(value, unit, "the value")
        except TypeError as exc:
            raise ValueError(str(exc)) from None
    return BeforeValidator(parse)


Degrees = Annotated[u.Quantity, _in(u.deg)]
Minutes = Annotated[u.Quantity, _in(u.min)]
Seconds = Annotated[u.Quantity, _in(u.s)]
Days = Annotated[u.Quantity, _in(u.day)]


class ServiceConfig(BaseSettings):
    """The online service: one typed settings object. Defaults run on one machine with no other configuration.

    Every field can be set, highest precedence first, by ``fluxwatch-serve``'s flags, by an environment variable
    ``FLUXWATCH_<FIELD>`` (e.g. ``FLUXWATCH_KAFKA_BOOTSTRAP=broker:9092``, ``FLUXWATCH_LAT_LIMIT="40 deg"``,
    ``FLUXWATCH_KAFKA_OPTIONS='{"security_protocol": "SASL_SSL"}'``) and by a TOML file (:meth:`load`); angles and
    times are astropy Quantities, given as strings with their unit outside Python.
    Each field's meaning is its description (``fluxwatch-serve --help``, the settings reference page).
    """

    model_config = SettingsConfigDict(env_prefix="FLUXWATCH_", frozen=True, extra="forbid", arbitrary_types_allowed=True)

    data_dir: str = Field("data/service", description=(
        "state (SQLite), rolling videos, incoming/processed/rejected FITS, alert log, VOEvents"))
    bundle: str = Field(DEFAULT_BUNDLE, description=(
        "the model bundle: a directory with manifest.json (train-ensemble's bundle/)"))
    speedup: float = Field(1.0, gt=0, description="clock acceleration: one cycle per cadence / speedup (1 = real time)")
    source: Literal["synthetic", "watch", "jsoc"] = Field("synthetic", description=(
        "synthetic: the synthetic Sun as a live feed (its alerts are simulated ones, on their own topics); "
        "watch: only files dropped into incoming/ or uploaded; jsoc: JSOC's near-real-time series as well "
        "(needs jsoc_email)"))
    warm_start: bool = Field(True, description=(
        "before the first live frame, fill the last video length (15 days) that the state lacks from the "
        "source's archive, so regions already on the disk can be alerted at once"))
    synthetic_start: str = Field("2000-06-01T00:00:00", description="first slot time of the synthetic feed (ISO UTC)")
    synthetic_seed: int = Field(0, description="seed of the synthetic Sun")
    jsoc_series: str = Field("hmi.M_720s_nrt", description="the DRMS series the jsoc source polls")
    jsoc_email: str | None = Field(None, description=(
        "an e-mail address registered for JSOC exports (http://jsoc.stanford.edu/ajax/register_email.html)"))
    jsoc_url: str | None = Field(None, description=(
        "base URL of another DRMS server that answers like JSOC (None: JSOC itself)"))
    jsoc_poll: Seconds = Field(2 * u.min, description="how often the jsoc source polls")
    kafka_bootstrap: str | None = Field(None, description=(
        "Kafka bootstrap servers; None publishes to the API and the local log only"))
    alerts_topic: str = Field("fluxwatch.alerts.v4", description="Kafka topic of the alert events from observations")
    status_topic: str = Field("fluxwatch.patch-status.v4", description=(
        "Kafka topic of the patch statuses from observations (compacted, keyed by patch id)"))
    simulated_alerts_topic: str = Field("fluxwatch.simulated.alerts.v4", description=(
        "the alerts topic of events from simulated frames, kept apart so that a simulated alert is never read"
        " as a real one"))
    simulated_status_topic: str = Field("fluxwatch.simulated.patch-status.v4", description=(
        "the status topic of events from simulated frames"))
    kafka_partitions: int = Field(1, ge=1, description=(
        "partitions of the topics the service creates (every message is keyed by patch id: a patch's events "
        "stay in order)"))
    kafka_replication: int = Field(1, ge=1, description="replication factor of the topics the service creates")
    kafka_options: dict[str, str | int | float | bool] = Field(default_factory=dict, description=(
        "further kafka-python client settings (security_protocol, sasl_*, ssl_*...), passed as they are to "
        "the producer, consumer and admin client"))
    http_host: str = Field("127.0.0.1", description="HTTP host of the API")
    http_port: int = Field(8000, ge=0, le=65535, description="HTTP port of the API")
    upload_token: str = Field(PLACEHOLDER_UPLOAD_TOKEN, description=(
        "bearer token of POST /upload; the default placeholder is accepted only on a loopback host"))
    upload_max_bytes: int = Field(80 * 2**20, gt=0, description="largest accepted upload, bytes")
    read_workers: int = Field(2, ge=1, description=(
        "processes reading FITS files (feed, uploads): the next frames are read while one is scored"))
    read_memory_bytes: int = Field(4 * 2**30, gt=0, description=(
        "address space each process reading a FITS file may use, bytes (a 4096² HMI frame needs about 1.5 GiB); a "
        "file needing more is rejected (reason memory_limit)"))
    read_timeout: Seconds = Field(60 * u.s, description=(
        "how long reading one FITS file may take (a 4096² HMI frame: about 1 s); a file taking longer is rejected "
        "(reason time_limit)"))
    lat_limit: Degrees = Field(45 * u.deg, description="patches cover latitudes within ± this (BMRs emerge within ±40°)")
    tile_overlap: Degrees = Field(0 * u.deg, description=(
        "overlap of neighbouring tiles (7.5 deg, half a tile, puts every region well inside some tile); "
        "overlapping alerts are merged: a tile opens none while a tile sharing area with it has one open"))
    hysteresis: float = Field(0.1, ge=0, lt=1, description=(
        "an open alert is withdrawn when the median falls this far below the threshold (serving.alerts)"))
    onset_step_frames: int = Field(3, ge=1, description=(
        "an open alert is updated when its onset estimate moves by this many frames"))
    probability_step: float = Field(0.1, gt=0, le=1, description=(
        "an open alert is updated when its median probability moves by this much"))
    present_at_start: bool = Field(True, description=(
        "mark passages seen only from mid-passage whose first frame already scores above the threshold: no "
        "alert until the score falls back (serving.alerts)"))
    refused_quality_bits: list[str] | None = Field(None, description=(
        "the QUALITY bits that refuse a frame, by name (e.g. QUAL_ECLIPSE, QUAL_NODATA; see ingest.instruments); "
        "None: each instrument's default as its documentation reads (HMI: no usable observable, and eclipses); "
        "the other bits are recorded in the provenance and fluxwatch_frame_quality_bits_total"))
    retain_superseded: Days = Field(2 * u.day, description="superseded files (and their notes) are removed after this")
    retain_rejected: Days = Field(30 * u.day, description="rejected files (and their error notes) are removed after this")
    retain_processed: Days | None = Field(30 * u.day, description=(
        "processed files are moved to archive_dir (removed when none) after this; None keeps them (a rebuild replays "
        "what is kept)"))
    archive_dir: str | None = Field(None, description="where processed files go when retain_processed lets them go")
    retain_videos: Days = Field(30 * u.day, description=(
        "a closed passage's video is removed this long after its last frame (its alerts are final); its video and "
        "cutouts then answer 410 Gone"))
    retain_scores: Days | None = Field(30 * u.day, description=(
        "a closed passage's scores are kept at every frame for this after its last frame (in observation time), then "
        "thinned to one a day, the frames its alert events came from and its last; None keeps them all"))
    retain_views: Days = Field(7 * u.day, description=(
        "the live page's picture of each frame (views/) is kept for this before the newest frame (in observation "
        "time); the page at an earlier frame answers 410 Gone"))
    retain_delivered: Days = Field(2 * u.day, description=(
        "an outbox message is removed this long after Kafka acknowledged it (the alerts table keeps every event)"))
    slot_ready_offset: Minutes = Field(6 * u.min, description=(
        "a frame observed within this of its slot's time is scored at once; one further off waits in pending/"
        " for a closer one (half of HMI's 12-min cadence)"))
    voevent_dir: str | None = Field("voevents", description=(
        "where each alert event is also written as a HEK VOEvent (under data_dir when relative); None writes "
        "none"))
    hek_institute: str = Field("fluxwatch", description=(
        "who runs the detection, as the VOEvents name it (the HEK's FRM_Institute)"))
    hek_contact: str = Field("fluxwatch operators", description="the VOEvents' FRM_Contact")
    hek_url: str = Field("https://fluxwatch.invalid/", description="the VOEvents' FRM_URL")
    log_format: Literal["text", "json"] = Field("text", description=(
        "text, or json: one JSON object per log line, for log collectors"))

    @model_validator(mode="after")
    def _jsoc_needs_email(self) -> ServiceConfig:
        if self.source == "jsoc" and not self.jsoc_email:
            raise ValueError("the jsoc source needs jsoc_email: an address registered for JSOC exports "
                             "(http://jsoc.stanford.edu/ajax/register_email.html)")
        return self

    @classmethod
    def load(cls, file: str | Path | None = None, **flags) -> ServiceConfig:
        """The settings from, highest precedence first: ``flags`` (given fields), the environment
        (``FLUXWATCH_*``), the TOML ``file`` (its top-level keys are the fields), the defaults.

        Raises :class:`ConfigError` naming the file, or the environment, and every field that is wrong.
        """
        values: dict = {}
        if file is not None:
            try:
                values = tomllib.loads(Path(file).read_text())
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"{file}: {exc}") from None
        environment = EnvSettingsSource(cls)()  # the fields the environment sets: they beat the file's
        try:
            return cls(**{**{k: v for k, v in values.items() if k not in environment}, **flags})
        except ValidationError as exc:
            where = f"{file} or the environment (FLUXWATCH_*)" if file is not None else "the environment (FLUXWATCH_*)"
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"{where}: {problems}") from None

    @property
    def topics(self) -> dict[bool, tuple[str, str]]:
        """(alerts topic, status topic) of events from simulated (True) and observed (False) frames."""
        return {False: (self.alerts_topic, self.status_topic),
                True: (self.simulated_alerts_topic, self.simulated_status_topic)}

    @property
    def patch_grid(self) -> PatchGridConfig:
        """The grid of tiles the service scores (and the training tiles are drawn from)."""
        return PatchGridConfig(lat_limit=self.lat_limit, overlap=self.tile_overlap)

    @property
    def loopback_only(self) -> bool:
        """The HTTP API listens on this machine only: ``http_host`` is localhost or a loopback address."""
        if self.http_host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.http_host).is_loopback
        except ValueError:  # a host name other than localhost may resolve anywhere
            return False

    @property
    def tick_seconds(self) -> float:
        """Wall-clock seconds between scheduler runs."""
        return CADENCE.to_value(u.s) / self.speedup
