"""What every instrument shares: its spec, the adapter base class and its registry, the harmonisation to a model's
instrument, and the FITS writers' common parts.

As sunpy's map sources do, each adapter (one module per instrument in this
package) says from the header whether a file is its instrument
(``TELESCOP``/``INSTRUME``/``CAMERA``), reads its quality flag, knows its
pixel scale, resolution, noise and line, and writes its files for the
synthetic Sun. :func:`harmonise` brings a
cleaned magnetogram to a target :class:`InstrumentSpec` (the model's; every
bundle so far: SoHO/MDI) in four documented steps:

1. **resolution**: k×k pixels are averaged (area averaging, k the integer
   nearest the ratio of the plate scales: 4 for HMI → MDI, 0.504″ → 2.02″),
   then a Gaussian point-spread function makes up the rest of the resolution
   difference (the target's FWHM in quadrature minus the source's and the
   binning's);
2. **cross-calibration**: the field is multiplied by the source's factor to
   the target (HMI → MDI: 1/0.701 = 1.43; Liu et al. 2025, Sol. Phys. 300, 8,
   full-disk LoS scaling MDI → HMI 0.701 ± 0.001, and Liu et al. 2012, Sol.
   Phys. 279, 295, MDI ≈ 1.40 × HMI; one factor for all field strengths and
   disk positions, although both papers find it varies with them);
3. **noise**: white Gaussian noise brings the per-pixel noise up to the
   target's (HMI's few gauss, further averaged down, are far quieter than
   MDI's 20 G); the draws are a pure function of the frame's time;
4. the geometry follows: the binned image's WCS is the original's with
   k-times-larger pixels.

A frame from an instrument with no adapter, or one coarser than the target in
a way these steps cannot undo, is refused with an error naming the file.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.time import Time
from scipy.ndimage import gaussian_filter

from common.observer import Observer
from ingest.errors import InstrumentError
from ingest.projection import ImageGeometry

_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
#: FWHM of the blur of averaging over a square of side w, per w (a box of width w has σ = w/√12).
_BOX_FWHM_PER_WIDTH = _FWHM_PER_SIGMA / np.sqrt(12.0)


def mask_name(bit: int) -> str:
    """The name of an undocumented QUALITY bit: its mask, ``0x%08X``."""
    return f"0x{1 << bit:08X}"


#: Every name :func:`mask_name` gives (the 32 bits of a QUALITY word).
MASK_NAMES = frozenset(mask_name(b) for b in range(32))

#: The ORIGIN card of the files the synthetic Sun writes, as each instrument's writer sets it.
SYNTHETIC_ORIGIN = "fluxwatch synthetic Sun"


@dataclass(frozen=True)
class InstrumentSpec:
    """What a model expects of its frames: the instrument, pixel scale (″), resolution (PSF FWHM, ″), noise (G)."""

    name: str
    plate_scale_arcsec: float
    psf_fwhm_arcsec: float
    noise_G: float

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> InstrumentSpec:
        return cls(str(d["name"]), float(d["plate_scale_arcsec"]), float(d["psf_fwhm_arcsec"]), float(d["noise_G"]))


#: Every instrument, in the order they are tried on a header (registered by defining a subclass).
INSTRUMENTS: list[type[Instrument]] = []


class Instrument(ABC):
    """A magnetograph: how to recognise its files and what its frames are like. Defining a subclass registers it."""

    spec: ClassVar[InstrumentSpec]
    #: The first part of its JSOC series' names (``hmi`` of ``hmi.M_720s``), lower case.
    series_prefix: ClassVar[str]
    #: The line its magnetograms are measured in, Å (the HEK's ``OBS_MeanWavel``).
    wavelength_A: ClassVar[float]
    #: Factor taking this instrument's LoS field to SoHO/MDI's (MDI = factor × this).
    to_mdi_factor: ClassVar[float]
    #: The documented bits of its quality word: name → (mask, meaning).
    quality_bits: ClassVar[dict[str, tuple[int, str]]] = {}
    #: The bits that refuse a frame unless the operator sets others (``refused_quality_bits``); the rest are recorded.
    refused_by_default: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        INSTRUMENTS.append(cls)

    @classmethod
    @abstractmethod
    def is_source_for(cls, header: fits.Header) -> bool:
        """True if ``header`` is this instrument's."""

    @classmethod
    def series(cls, header: fits.Header) -> str | None:
        """The DRMS series the frame is a record of, as its header says: ``DSNAME`` when it has one (None without);
        an instrument whose headers say it otherwise reads that."""
        named = header.get("DSNAME")
        return named.strip() if isinstance(named, str) and named.strip() else None

    @classmethod
    def quality(cls, header: fits.Header) -> int:
        """The frame's quality word (0 = good), as the instrument's pipeline sets it; 0 when it has none."""
        value = header.get("QUALITY", 0)
        try:
            return int(value)
        except (TypeError, ValueError):
            return int(str(value), 16) if str(value).lower().startswith("0x") else -1

    @classmethod
    def flags(cls, quality: int) -> list[str]:
        """The names of the bits set in ``quality`` (an undocumented bit by its mask, ``0x…``), highest first."""
        word = quality & 0xFFFFFFFF
        named = [name for name, (mask, _) in cls.quality_bits.items() if word & mask]
        known = sum(mask for mask, _ in cls.quality_bits.values())
        return named + [mask_name(b) for b in range(31, -1, -1) if word & ~known & (1 << b)]

    @classmethod
    def refusing(cls, quality: int, refused: Collection[str] | None = None) -> list[str]:
        """The bits set in ``quality`` that refuse the frame: those in ``refused`` (names, or ``0x…`` masks of
        undocumented bits), the instrument's :attr:`refused_by_default` when None."""
        chosen = cls.refused_by_default if refused is None else set(refused)
        return [name for name in cls.flags(quality) if name in chosen]



def header_words(header: fits.Header, *keys: str) -> str:
    """The values of ``keys`` in ``header``, upper case, joined by spaces (for :meth:`Instrument.is_source_for`)."""
    return " ".join(str(header.get(k, "")) for k in keys).upper()


def rsun_obs_arcsec(observer: Observer) -> float:
    """The Sun's apparent radius seen by ``observer``, ″ (``RSUN_OBS``)."""
    return float(np.rad2deg(np.arcsin((observer.rsun / observer.distance).decompose().value)) * 3600)


def record_time(t: Time, step_s: float) -> Time:
    """The series' record time (``T_REC``) of an observation at ``t``: the nearest multiple of ``step_s`` in TAI."""
    return Time(round(t.tai.unix_tai / step_s) * step_s, format="unix_tai").tai


def centred_geometry(shape: tuple[int, int], scale: u.Quantity, crota2_deg: float = 0.0) -> ImageGeometry:
    """A Sun-centred image's geometry: pixels of ``scale`` (angle), solar north at ``crota2_deg``."""
    ny, nx = shape
    c, s = np.cos(np.deg2rad(crota2_deg)), np.sin(np.deg2rad(crota2_deg))
    plane_from_pixel = scale.to_value(u.rad) * np.array([[c, -s], [s, c]])  # CDELT · PC, PC from CROTA2
    return ImageGeometry(shape=(ny, nx), crpix=np.array([(nx - 1) / 2, (ny - 1) / 2]), crval=np.zeros(2),
                         pixel_from_plane=np.linalg.inv(plane_from_pixel))


def write_atomically(hdus: fits.HDUList, path: str | Path) -> Path:
    """Write ``hdus`` to ``path`` through a temporary file renamed into place: a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    hdus.writeto(tmp, overwrite=True, output_verify="silentfix")
    os.replace(tmp, path)
    return path


def instrument_for(path: str | Path, header: fits.Header) -> type[Instrument]:
    """The adapter of the instrument that wrote ``header``."""
    for instrument in INSTRUMENTS:
        if instrument.is_source_for(header):
            return instrument
    raise InstrumentError(path, f"unknown instrument (TELESCOP={header.get('TELESCOP')!r}, "
                                f"INSTRUME={header.get('INSTRUME')!r}); known: {', '.join(i.spec.name for i in INSTRUMENTS)}")


def instrument_named(name: str) -> type[Instrument]:
    """The adapter of the instrument ``name`` (an :attr:`InstrumentSpec.name`)."""
    for instrument in INSTRUMENTS:
        if instrument.spec.name == name:
            return instrument
    raise ValueError(f"no adapter for instrument {name!r}; known: {', '.join(i.spec.name for i in INSTRUMENTS)}")


@dataclass(frozen=True)
class Harmonised:
    """A frame brought to a target instrument: its data (G, float32 (ny, nx), 0 off the disk), geometry and disk
    mask (bool (ny, nx))."""

    data: np.ndarray
    image: ImageGeometry
    on_disk: np.ndarray


def bin_geometry(image: ImageGeometry, k: int) -> ImageGeometry:
    """The geometry of ``image`` averaged over k×k pixel blocks (pixels k times larger, the image cropped to a
    multiple of k)."""
    ny, nx = image.shape
    return ImageGeometry(shape=(ny // k, nx // k), crpix=(image.crpix + 0.5) / k - 0.5, crval=image.crval,
                         pixel_from_plane=image.pixel_from_plane / k)


def plate_scale_arcsec(image: ImageGeometry) -> float:
    """Mean pixel side of ``image`` in arcseconds."""
    return float(np.sqrt(abs(np.linalg.det(np.linalg.inv(image.pixel_from_plane)))) * 180.0 / np.pi * 3600.0)


def _all_in_blocks(mask: np.ndarray, k: int) -> np.ndarray:
    """Boolean (ny/k, nx/k): whether every pixel of each k×k block of ``mask`` (ny, nx) is set. For k of 2, 4 or 8,
    each row's k pixels are read as one k-byte integer (30 times faster on a 4096² mask than numpy's ``all``)."""
    ny, nx = mask.shape
    if k in (2, 4, 8):
        rows = np.ascontiguousarray(mask).view(f"u{k}") == np.frombuffer(b"\x01" * k, dtype=f"u{k}")[0]
        return rows.reshape(ny // k, k, nx // k).all(axis=1)
    return np.asarray(mask.reshape(ny // k, k, nx // k, k).all(axis=(1, 3)))


def harmonise(path: str | Path, data: np.ndarray, image: ImageGeometry, on_disk: np.ndarray, source: type[Instrument],
              target: InstrumentSpec, seed: int) -> Harmonised:
    """Bring a cleaned frame of ``source`` (``data`` in G, 0 off the disk; ``on_disk`` its disk mask) to ``target``.

    ``seed`` (e.g. the frame's time) makes the added noise reproducible. See
    the module docstring for the steps and their sources.
    """
    if source.spec.name == target.name:
        return Harmonised(data, image, on_disk)
    scale = plate_scale_arcsec(image)
    if scale > 1.5 * target.plate_scale_arcsec:
        raise InstrumentError(path, f"{source.spec.name} pixels of {scale:.2f}″ are coarser than the model's "
                                    f"{target.name} {target.plate_scale_arcsec}″ pixels; they cannot be brought to it")
    try:
        factor = source.to_mdi_factor / instrument_named(target.name).to_mdi_factor
    except ValueError as exc:
        raise InstrumentError(path, str(exc)) from None
    k = max(int(round(target.plate_scale_arcsec / scale)), 1) if scale > 0 else 0
    if not 0 < k <= min(data.shape):
        raise InstrumentError(path, f"{source.spec.name} pixels of {scale:.3g}″ cannot be brought to the model's "
                                    f"{target.plate_scale_arcsec}″ ones: they would need {k}×{k} binning of a "
                                    f"{data.shape[1]}×{data.shape[0]} image")
    ny, nx = (n - n % k for n in data.shape)
    binned = data[:ny, :nx].reshape(ny // k, k, nx // k, k).mean(axis=(1, 3), dtype=np.float64)
    disk = _all_in_blocks(on_disk[:ny, :nx], k)
    geometry = bin_geometry(image, k) if k > 1 else image
    # Resolution: the target's PSF in quadrature minus the source's and the binning's.
    have = np.hypot(source.spec.psf_fwhm_arcsec, _BOX_FWHM_PER_WIDTH * k * scale)
    extra_fwhm = np.sqrt(max(target.psf_fwhm_arcsec**2 - have**2, 0.0))
    sigma_px = extra_fwhm / _FWHM_PER_SIGMA / (k * scale)
    noise = source.spec.noise_G / k
    if sigma_px > 0:
        binned = gaussian_filter(binned, sigma_px, mode="constant", truncate=4.0)
        kernel = np.zeros((33, 33))
        kernel[16, 16] = 1.0
        noise *= float(np.sqrt((gaussian_filter(kernel, sigma_px, mode="constant", truncate=4.0) ** 2).sum()))
    binned *= factor
    noise *= factor
    add = np.sqrt(max(target.noise_G**2 - noise**2, 0.0))
    if add > 0:
        binned += np.random.default_rng([0xC411, int(seed) & 0xFFFFFFFF]).standard_normal(binned.shape) * add
    binned[~disk] = 0.0
    return Harmonised(binned.astype(np.float32), geometry, disk)


