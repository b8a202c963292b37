"""Every physical parameter of the synthetic Sun, with its unit in its name."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SunConfig:
    """Parameters of the synthetic Sun. Units are in the names (``_deg``, ``_Mx``, ``_day`` ...).

    Rotation (Howard et al. 1990, small magnetic features, as sunpy's ``howard`` model; sidereal)
        ``rot_a/b/c_urad_s``: Ω(φ) = A + B sin²φ + C sin⁴φ in µrad/s.
        ``carrington_deg_day``: sidereal rate of the Carrington frame (14.1844 °/day).
        Features drift in Carrington longitude at Ω(φ) − Ω_Carrington: magnetic
        features near the equator rotate faster than the Carrington frame (+0.14 °/day
        at the equator), those above ~16° slower. (Until this version the synthetic Sun used
        the slower ``snodgrass`` rates, 2.851 − 0.343 sin²φ − 0.474 sin⁴φ, under which
        every feature lagged the Carrington frame.)
    Solar cycle
        Each cycle's BMR emergence rate has Hathaway's (1994) shape
        ``A (τ/b)³ / (exp((τ/b)²) − 0.71)``, normalised to peak 1, with τ the
        years since ``cycle_starts_year[i]``, b = ``cycle_width_yr`` and A =
        ``cycle_amplitudes[i]``; cycles after the last listed one follow every
        ``cycle_period_yr`` with amplitude 1. ``bmr_peak_rate_per_day`` is the
        rate at the peak of an amplitude-1 cycle. Overlapping cycles add.
        Cycle ``first_cycle_number + i`` has northern leading polarity
        ``+1`` if its number is odd (cycle 23: north leading positive; Hale's law),
        the opposite in the south; a fraction ``anti_hale_fraction`` of BMRs break it.
    Butterfly
        Mean |latitude| of a cycle's BMRs is ``butterfly_lat0_deg · exp(−τ / butterfly_decay_yr)``
        (Hathaway 2011), scattered normally with sd ``lat_sd_frac · mean + lat_sd_min_deg``.
    BMR flux, growth, geometry, decay
        Final total unsigned flux: lognormal (median ``flux_median_Mx``, log-width
        ``flux_sigma_ln``) truncated to [``flux_min_Mx``, ``flux_max_Mx``].
        Growth law ``growth_law``: ``"flux-rate"`` (the default): the mean emergence rate grows with
        the flux, R = ``emergence_rate_ref_Mx_h`` · (Φ / 1e22 Mx)^``emergence_rate_exponent``
        × lognormal(``emergence_rate_sigma_ln``), and the growth time is Φ / R,
        clipped to [``growth_min_h``, ``growth_max_h``]: large regions take days
        to emerge, small ones hours. Rates of order 1e19–1e20 Mx/h for active
        regions (Norton et al. 2017, ApJ 842, 3) and dΦ/dt ∝ Φ^0.57 (Otsuji et al.
        2011, PASJ 63, 1047) set the reference and the exponent. ``"populations"``
        (the simulator's law before, now part of the held-out setting, :mod:`sim.settings`):
        a fraction ``fast_fraction`` grows fast (growth time lognormal around
        ``fast_growth_median_h``, clipped below 13 h), the rest gradually (around
        ``gradual_growth_median_h``, clipped above 13 h), whatever their flux.
        ``BMRTable.kind`` says which side of 13 h a region's growth time falls.
        Tilt (Joy's law): ``joy_slope · |lat|`` plus normal scatter ``tilt_scatter_deg``;
        positive tilt puts the leading footpoint closer to the equator.
        Final footpoint separation (heliographic degrees):
        ``separation_ref_deg · (flux / 1e22 Mx)^separation_exponent`` × lognormal(``separation_sigma_ln``),
        growing from ``separation_start_deg`` over 1.5 growth times.
        Footpoints are Gaussian concentrations of B_r with width
        ``footpoint_sigma_ref_deg · (pole flux / 1e21 Mx)^footpoint_sigma_exponent``,
        the following footpoint ``follow_spread`` times wider than the leading one.
        After peak flux, the flux decays exponentially with e-folding time
        ``decay_days`` (lognormal around ``decay_median_day · (flux / 3e21 Mx)^decay_flux_exponent``,
        clipped to [``decay_min_day``, ``decay_max_day``]), the footpoints spread by
        surface diffusion ``diffusion_km2_s`` (σ² grows by 2Dt) and the BMR is
        removed after ``decay_efolds`` e-foldings (below 2% of its flux).
    Activity nests (Castenmiller, Zwaan & van der Zalm 1986, Sol. Phys. 105, 237; Harvey & Zwaan 1993,
    Sol. Phys. 148, 85: a large share of active regions emerge within or beside existing ones)
        Nests are born at ``nests_per_rotation`` per 27 days at the peak of an amplitude-1 cycle (in
        proportion to the BMR rate), at a butterfly latitude of that time and a random longitude, live
        uniform in ``nest_life_day`` and drift with differential rotation. A fraction ``nest_fraction``
        of BMRs emerges within ``nest_scatter_deg`` (normal sd, each axis) of a nest alive then, so they
        emerge into the decaying flux of the nest's earlier regions.
    Multi-bipole regions
        A BMR of at least ``multi_min_flux_Mx`` brings, with probability ``multi_fraction``, one or two
        companion bipoles that start emerging within ``multi_delay_day`` of it, within half its final
        separation (normal sd) of its centre, with ``multi_flux_share`` (uniform range) of its flux and its
        polarity order; together they are one region (``BMRTable.region``), counted once.
    Small bipoles and ephemeral regions (below the catalog's and the alerts' size)
        Born at ``small_rate_per_day`` over the whole Sun whatever the cycle phase, uniform in sin φ within
        ±``small_max_lat_deg``, in any orientation and polarity order, with flux lognormal (median
        ``small_flux_median_Mx``, log-width ``small_flux_sigma_ln``) in [``small_flux_min_Mx``,
        ``small_flux_max_Mx``]; they grow in hours (lognormal around ``small_growth_median_h``, whatever
        the growth law) and decay with e-folding ``small_decay_median_day``. Ephemeral
        regions emerge at hundreds a day over the Sun (Harvey 1993, PhD thesis Utrecht; Hagenaar 2001, ApJ
        555, 448); only the tail above ``small_flux_min_Mx`` stands out of MDI's noise and is kept.
    Quiet Sun (procedural, per ``cell_deg`` × ``cell_deg`` × 1 day cell)
        Network families are born at ``network_rate_per_deg2_day``: a unipolar
        element of random sign (flux lognormal, median ``network_flux_median_Mx``;
        life lognormal, median ``network_life_median_day``; width uniform in
        ``network_sigma_deg``) moving at a random velocity (rms ``network_speed_deg_day``
        per component, clipped at 2.5 rms) on top of differential rotation; with probability
        ``fragment_probability`` it fragments at the end of its life into two
        same-sign children splitting its flux and moving apart at ±``fragment_speed_deg_day``.
        Cancelling pairs are born at ``cancel_rate_per_deg2_day``: two equal and
        opposite elements ``cancel_separation_deg`` apart that converge and
        lose their flux linearly until they meet.
    Observation (SoHO/MDI-like; :mod:`sim.render` forms the images)
        A Gaussian point-spread function of FWHM ``psf_fwhm_arcsec`` (MDI full disk: 2″ pixels,
        ~4″ resolution; Scherrer et al. 1995, Sol. Phys. 162, 129), then Gaussian noise per image
        pixel, ``noise_G`` at disk centre, × (1 + ``noise_limb_increase`` (1 − μ)) toward the limb;
        saturation at ±``saturation_G``. A fraction ``missing_single_fraction`` of slots
        is missing singly; multi-day gaps (length uniform in ``gap_days``) start
        ``gaps_per_year`` times a year.
    ``rsun_cm``: solar radius turning flux (Mx) into field (G = Mx/cm²) (MDI's 696 Mm).
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
