"""Every physical parameter of the synthetic Sun, with its unit in its name."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SunConfig:
    """Parameters of the synthetic Sun. Units are in the names (``_deg``, ``_Mx``, ``_day`` ...).

    Rotation, the solar cycle, the butterfly, BMR flux, growth, geometry and decay, activity nests, multi-bipole
    regions, small bipoles, the quiet Sun and the observation: what each parameter sets, with its sources, is in
    the synthetic Sun's guide (``docs/guides/synthetic-sun.md``, "The model, parameter by parameter").
    """

    rot_a_urad_s: float = 2.894
    rot_b_urad_s: float = -0.428
    rot_c_urad_s: float = -0.370
    carrington_deg_day: float = 14.1844

    cycle_starts_year: tuple[float, ...] = (1986.4, 1996.3, 2008.5, 2019.5)
    cycle_amplitudes: tuple[float, ...] = (1.3, 1.0, 0.65, 0.9)
    first_cycle_number: int = 22
    cycle_period_yr: float = 11.0
    cycle_width_yr: float = 4.0
    bmr_peak_rate_per_day: float = 4.5
    anti_hale_fraction: float = 0.03

    butterfly_lat0_deg: float = 28.0
    butterfly_decay_yr: float = 7.5
    lat_sd_frac: float = 0.15
    lat_sd_min_deg: float = 3.0

    flux_median_Mx: float = 3.0e21
    flux_sigma_ln: float = 1.0
    flux_min_Mx: float = 1.0e21
    flux_max_Mx: float = 3.0e22
    fast_fraction: float = 0.35
    fast_growth_median_h: float = 8.0
    fast_growth_sigma_ln: float = 0.35
    gradual_growth_median_h: float = 30.0
    gradual_growth_sigma_ln: float = 0.5
    growth_min_h: float = 2.0
    growth_max_h: float = 120.0
    growth_law: str = "flux-rate"
    emergence_rate_ref_Mx_h: float = 1.0e20
    emergence_rate_exponent: float = 0.57
    emergence_rate_sigma_ln: float = 0.5
    joy_slope: float = 0.5
    tilt_scatter_deg: float = 12.0
    separation_ref_deg: float = 5.0
    separation_exponent: float = 0.35
    separation_sigma_ln: float = 0.15
    separation_start_deg: float = 0.3
    footpoint_sigma_ref_deg: float = 0.5
    footpoint_sigma_exponent: float = 0.25
    follow_spread: float = 1.3
    decay_median_day: float = 6.0
    decay_flux_exponent: float = 0.3
    decay_sigma_ln: float = 0.4
    decay_min_day: float = 3.0
    decay_max_day: float = 20.0
    decay_efolds: float = 4.0
    diffusion_km2_s: float = 250.0

    nests_per_rotation: float = 6.0
    nest_life_day: tuple[float, float] = (80.0, 160.0)
    nest_fraction: float = 0.4
    nest_scatter_deg: float = 2.0

    multi_min_flux_Mx: float = 5.0e21
    multi_fraction: float = 0.25
    multi_delay_day: float = 1.0
    multi_flux_share: tuple[float, float] = (0.2, 0.6)

    small_rate_per_day: float = 60.0
    small_max_lat_deg: float = 60.0
    small_flux_median_Mx: float = 2.0e20
    small_flux_sigma_ln: float = 0.7
    small_flux_min_Mx: float = 5.0e19
    small_flux_max_Mx: float = 1.0e21
    small_growth_median_h: float = 4.0
    small_decay_median_day: float = 1.0

    cell_deg: float = 5.0
    network_rate_per_deg2_day: float = 0.3
    network_flux_median_Mx: float = 6.0e19
    network_flux_sigma_ln: float = 0.6
    network_flux_max_Mx: float = 4.0e20
    network_life_median_day: float = 0.8
    network_life_sigma_ln: float = 0.5
    network_life_range_day: tuple[float, float] = (0.2, 2.0)
    network_sigma_deg: tuple[float, float] = (0.3, 0.5)
    network_speed_deg_day: float = 0.3
    fragment_probability: float = 0.3
    fragment_speed_deg_day: float = 0.3
    cancel_rate_per_deg2_day: float = 0.03
    cancel_flux_median_Mx: float = 4.0e19
    cancel_separation_deg: tuple[float, float] = (0.6, 1.5)

    psf_fwhm_arcsec: float = 4.0
    noise_G: float = 20.0
    noise_limb_increase: float = 0.5
    saturation_G: float = 3500.0
    missing_single_fraction: float = 0.03
    gaps_per_year: float = 1.5
    gap_days: tuple[float, float] = (1.0, 6.0)

    rsun_cm: float = 6.96e10

    def __post_init__(self):
        if len(self.cycle_starts_year) != len(self.cycle_amplitudes) or not self.cycle_starts_year:
            raise ValueError("cycle_starts_year and cycle_amplitudes must be non-empty and of equal length")
        if not 0 < self.flux_min_Mx < self.flux_max_Mx:
            raise ValueError("need 0 < flux_min_Mx < flux_max_Mx")
        if self.growth_law not in ("populations", "flux-rate"):
            raise ValueError(f"growth_law must be 'populations' or 'flux-rate', got {self.growth_law!r}")
        if not self.growth_min_h < 13.0 < self.growth_max_h:
            raise ValueError("growth_min_h < 13 h < growth_max_h is needed to have both fast and gradual BMRs")
        for name in ("fast_fraction", "anti_hale_fraction", "fragment_probability", "missing_single_fraction",
                     "nest_fraction", "multi_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        if not 0 < self.small_flux_min_Mx < self.small_flux_max_Mx:
            raise ValueError("need 0 < small_flux_min_Mx < small_flux_max_Mx")
        if min(self.network_rate_per_deg2_day, self.cancel_rate_per_deg2_day, self.bmr_peak_rate_per_day,
               self.small_rate_per_day, self.nests_per_rotation) < 0:
            raise ValueError("rates must be non-negative")
