"""Shared physics: differential rotation, surface diffusion and Gaussian flux concentrations.

Every magnetic feature of the synthetic Sun is a Gaussian concentration of
radial field on the sphere,

    B_r(λ, φ) = B0 · exp(−[(Δλ cos φ_e)² + (φ − φ_e)²] / (2σ²)),

centred at Carrington (λ_e, φ_e) with angular width σ (degrees). For σ of a
few degrees its flux is ∫B_r dA = B0 · 2π (σ R)² (σ in radians), so a
feature of flux Φ (Mx) has peak field B0 = Φ / (2π σ² R²) in G (Mx/cm²).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from sim.config import SunConfig

#: µrad/s → degrees per day.
DEG_DAY_PER_URAD_S = 1e-6 * 86400.0 * 180.0 / np.pi
#: Features further than this many σ from a point add nothing to it (exp(−10) ≈ 5e-5 of their peak).
REACH_SIGMA = 4.5


class Blobs(NamedTuple):
    """Gaussian B_r concentrations, all arrays of one shape.

    lon, lat : Carrington centre, deg (``lon`` may be relative to a patch centre).
    sigma : angular width, deg.
    amp : peak field B0, G (signed; 0 for a feature absent at that time).
    """

    lon: np.ndarray
    lat: np.ndarray
    sigma: np.ndarray
    amp: np.ndarray


def sidereal_rate_deg_day(config: SunConfig, lat_deg) -> np.ndarray:
    """Sidereal rotation rate of magnetic features Ω(φ) = A + B sin²φ + C sin⁴φ, in °/day (shape of ``lat_deg``)."""
    s2 = np.sin(np.deg2rad(lat_deg)) ** 2
    return (config.rot_a_urad_s + config.rot_b_urad_s * s2 + config.rot_c_urad_s * s2 * s2) * DEG_DAY_PER_URAD_S


def carrington_drift_deg_day(config: SunConfig, lat_deg) -> np.ndarray:
    """Drift in Carrington longitude of a feature at latitude φ, Ω(φ) − Ω_Carrington, °/day (> 0 near the equator)."""
    return sidereal_rate_deg_day(config, lat_deg) - config.carrington_deg_day


def diffusion_deg2_day(config: SunConfig) -> float:
    """Surface diffusion coefficient in heliographic deg²/day."""
    km_per_deg = config.rsun_cm * 1e-5 * np.pi / 180.0
    return config.diffusion_km2_s * 86400.0 / km_per_deg**2


def peak_field_G(config: SunConfig, flux_Mx, sigma_deg) -> np.ndarray:
    """Peak field B0 (G) of a Gaussian concentration of flux Φ (Mx) and width σ (deg)."""
    sigma_cm = np.deg2rad(sigma_deg) * config.rsun_cm
    return np.asarray(flux_Mx) / (2.0 * np.pi * sigma_cm * sigma_cm)


def wrap180(deg):
    """Angles in degrees wrapped into [−180, 180)."""
    return (np.asarray(deg) + 180.0) % 360.0 - 180.0
