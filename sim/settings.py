"""Simulator settings: the default Sun, a held-out one, and randomised ones for training.

A model trained on one simulator learns that simulator's look. So a training set
can draw its videos from several Suns, each with its own seed and its own
settings drawn uniformly within :data:`RANGES` around the default (domain
randomisation; Tobin et al. 2017, IROS, 23): growth, flux distribution, noise
level, point-spread function, network density and flux, ephemeral regions,
rotation law, region shapes, nests and multi-bipole regions. The event-level
evaluation runs on the default Sun and on the ``held-out`` setting of
:data:`EVALUATION`, which lies outside every training range on three axes:
regions grow by the two-population law (fast or gradual whatever their flux;
every training Sun grows them at flux-dependent rates), the noise is 30 G and
the point-spread function 6″.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from sim.config import SunConfig

#: Settings the event-level evaluation streams run on (``fluxwatch-evaluate --setting``).
EVALUATION = {"default": SunConfig(),
              "held-out": SunConfig(growth_law="populations", noise_G=30.0, psf_fwhm_arcsec=6.0)}

_TAG_SETTING = 0x5E77

#: Uniform ranges of the randomised settings (units as in :class:`~sim.config.SunConfig`). The rotation ranges
#: span the published rates of magnetic features and of the photospheric plasma (Snodgrass 1983, Howard et al.
#: 1990); the rest bracket the defaults by the scatter quoted in their sources.
RANGES: dict[str, tuple[float, float]] = {
    "emergence_rate_ref_Mx_h": (5.0e19, 2.0e20),
    "emergence_rate_exponent": (0.45, 0.7),
    "emergence_rate_sigma_ln": (0.3, 0.7),
    "flux_median_Mx": (2.0e21, 4.5e21),
    "flux_sigma_ln": (0.8, 1.2),
    "noise_G": (14.0, 28.0),
    "noise_limb_increase": (0.3, 0.8),
    "psf_fwhm_arcsec": (3.0, 5.5),
    "network_rate_per_deg2_day": (0.2, 0.45),
    "network_flux_median_Mx": (4.0e19, 9.0e19),
    "small_rate_per_day": (30.0, 100.0),
    "rot_a_urad_s": (2.851, 2.894),
    "rot_b_urad_s": (-0.45, -0.34),
    "rot_c_urad_s": (-0.47, -0.37),
    "separation_ref_deg": (4.0, 6.5),
    "follow_spread": (1.1, 1.7),
    "footpoint_sigma_ref_deg": (0.4, 0.65),
    "tilt_scatter_deg": (8.0, 16.0),
    "decay_median_day": (4.0, 9.0),
    "nest_fraction": (0.2, 0.6),
    "multi_fraction": (0.1, 0.4),
}


def training_suns(n: int, seed: int, base: SunConfig = SunConfig()) -> list[tuple[SunConfig, int]]:
    """``n`` (settings, seed) pairs for a training set: the first is ``base`` with ``seed`` itself (so a one-setting
    preset is the default Sun alone); the others are drawn within :data:`RANGES`, each with its own seed."""
    suns = [(base, int(seed))]
    for k in range(1, n):
        rng = np.random.default_rng([int(seed), _TAG_SETTING, k])
        drawn: dict[str, Any] = {name: float(lo + (hi - lo) * rng.random()) for name, (lo, hi) in RANGES.items()}
        sun_seed = int(np.random.SeedSequence([int(seed), _TAG_SETTING, k]).generate_state(1, dtype=np.uint32)[0]) + 1000
        suns.append((replace(base, **drawn), sun_seed))
    return suns
