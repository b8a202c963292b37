"""The new-flux detector (common.newflux) on hand-built tiles: it fires on an emerging bipole, ignores a steady
region and a region rotating in over the east limb, and never looks ahead."""
from __future__ import annotations

import numpy as np

from common.newflux import NewFluxDetector
from common.patches import carrington_pixel_area_cm2

P = 90
PIXEL_DEG = 1.0 / 6.0
AREA = np.broadcast_to(carrington_pixel_area_cm2(np.zeros(P), PIXEL_DEG)[:, None], (P, P))
T = 120


def bipole(flux_Mx: np.ndarray, separation_px: np.ndarray, sigma_px: float = 3.0, centre=(45.0, 45.0)) -> np.ndarray:
    """(T, P, P) B_r (G) of a bipole of total unsigned flux ``flux_Mx`` (T,) with footpoints ``separation_px`` (T,)
    apart along the rows, Gaussian of σ ``sigma_px``."""
    y, x = np.mgrid[0:P, 0:P].astype(float)
    out = np.zeros((len(flux_Mx), P, P))
    for t, (f, s) in enumerate(zip(flux_Mx, separation_px)):
        for sign, dx in ((1.0, s / 2), (-1.0, -s / 2)):
            g = np.exp(-((x - centre[1] - dx) ** 2 + (y - centre[0]) ** 2) / (2 * sigma_px**2))
            out[t] += sign * (f / 2) * g / (g * AREA).sum()
    return out


def noise(scale_G: float = 10.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, scale_G, (T, P, P))


def emerging(start: int = 40, frames: int = 60, flux: float = 5e21) -> np.ndarray:
    tau = np.clip((np.arange(T) - start) / frames, 0, 1)
    return bipole(flux * np.sin(0.5 * np.pi * tau) ** 2, 1.8 + 28.0 * np.sin(0.5 * np.pi * np.clip(tau / 1.5, 0, 1)) ** 2)


def test_fires_on_an_emerging_bipole_soon_after_it_begins():
    detector = NewFluxDetector(level_Mx=8e20)
    video = emerging(start=40) + noise()
    series = detector.series(video, np.ones_like(video), AREA)
    triggers = detector.triggers(series)
    assert len(triggers) == 1
    alert, onset = triggers[0]
    # 8e20 Mx of a 5e21 Mx region: sin² = 0.16 at 26% of its 60-frame growth, plus persistence
    assert 40 + 10 <= alert <= 40 + 25, triggers
    assert 36 <= onset < alert
    assert np.all(np.isnan(series[: detector.background_frames]))  # no background yet: not judged
    assert np.nanmax(series[:40]) < 2e20  # noise alone


def test_ignores_a_steady_region_and_quiet_noise():
    detector = NewFluxDetector(level_Mx=8e20)
    steady = bipole(np.full(T, 1e22), np.full(T, 30.0)) + noise(seed=1)
    assert detector.triggers(detector.series(steady, np.ones_like(steady), AREA)) == []
    quiet = noise(seed=2)
    assert np.nanmax(detector.series(quiet, np.ones_like(quiet), AREA)) < 1e20


def test_ignores_a_region_rotating_in_over_the_east_limb():
    """A developed region whose pixels rotate from behind the limb (μ ≤ 0) to μ = 0.8: as the instrument sees it
    (B_los = B_r·μ, nothing off the disk) its flux appears from nothing, and the detector must not call it new."""
    detector = NewFluxDetector(level_Mx=5e20)
    mu = np.broadcast_to(np.linspace(-0.3, 0.8, T)[:, None, None], (T, P, P)).copy()
    br = bipole(np.full(T, 1e22), np.full(T, 30.0))
    video = np.where(mu > 0, br * mu, 0.0) + noise(seed=3) * (mu > 0)
    series = detector.series(video, mu, AREA)
    assert detector.triggers(series) == []
    # the same region emerging while the tile is on the disk is caught
    fresh = emerging(start=60) * mu + noise(seed=3) * (mu > 0)
    assert detector.triggers(detector.series(fresh, mu, AREA))


def test_a_frame_figure_never_depends_on_later_frames():
    detector = NewFluxDetector()
    video = emerging(start=40) + noise(seed=4)
    series = detector.series(video, np.ones_like(video), AREA)
    changed = video.copy()
    changed[70:] = noise(seed=5)[70:]
    np.testing.assert_allclose(detector.series(changed, np.ones_like(video), AREA)[:70], series[:70], rtol=1e-6)


def test_unobserved_frames_are_not_judged():
    detector = NewFluxDetector()
    video = emerging(start=40) + noise(seed=6)
    observed = np.ones(T, bool)
    observed[[50, 51, 52]] = False
    series = detector.series(video, np.ones_like(video), AREA, observed)
    assert np.isnan(series[[50, 51, 52]]).all() and not np.isnan(series[49])


def test_onset_extrapolates_the_square_root_of_the_new_flux_back_to_zero():
    detector = NewFluxDetector(level_Mx=1e21, onset_fraction=0.3, persist=1)
    k = np.arange(40, dtype=float)
    series = np.where(k >= 17.3, ((k - 17.3) * 4e9) ** 2, 0.0) + 2e19  # grows as the square of time from 17.3
    series[23] = np.nan  # a missing frame inside the run is skipped
    [(alert, onset)] = detector.triggers(series)
    assert alert == 26 and onset == 17
    # a run of fewer than three frames above the onset level: its first frame
    short = np.array([np.nan, 0.0, 0.1, 0.4, 1.2, 0.2])
    assert NewFluxDetector(level_Mx=1.0, persist=1).triggers(short) == [(4, 3)]


def test_re_arms_once_below_half_the_level():
    detector = NewFluxDetector(level_Mx=1.0, persist=2)
    series = np.array([0.0, 1.1, 1.2, 0.8, 1.3, 1.3, 0.4, 1.0, 1.1])
    assert [t for t, _ in detector.triggers(series)] == [2, 8]


def test_the_learned_tries_inputs_and_output_at_a_frame_never_depend_on_later_frames():
    """training.newflux_net reads each frame's new-flux maps: a frame's inputs, and so the net's output there, are
    the same whatever the frames after it hold."""
    import torch

    from training.newflux_net import Net, frame_inputs

    detector = NewFluxDetector()
    video = emerging(start=40) + noise(seed=7)
    changed = video.copy()
    changed[60:] = noise(seed=8)[60:]
    mu = np.ones_like(video)
    x, y = frame_inputs(detector, video, mu), frame_inputs(detector, changed, mu)
    assert x.shape == (T, 3, P // 2, P // 2) and np.abs(x[:60] - y[:60]).max() < 1e-5 and np.abs(x[60:] - y[60:]).max() > 0.1
    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():
        p, q = net(torch.from_numpy(x)), net(torch.from_numpy(y))
    assert torch.allclose(p[:60], q[:60], atol=1e-5) and not torch.allclose(p[60:], q[60:])


def test_a_falling_alert_is_recognised_as_a_region_that_emerged_about_its_onset():
    """serving.region.emerged, the lifecycle's judgement when an alert's probability falls: a region that emerged
    is recognised whether the alert reported its onset early or late; a steady, a decaying or no region is not."""
    from common.observer import earth_angles, mu_at
    from serving.region import emerged

    slot = 40_000
    offsets = (np.arange(P) - (P - 1) / 2) * PIXEL_DEG
    axes = (np.degrees(earth_angles(slot + 45)[0]) + offsets, offsets)  # at central meridian by frame 45
    mu = mu_at(*axes, slot + np.arange(T))
    seen = lambda br, seed: br * mu + noise(seed=seed)  # noqa: E731 (B_los as the instrument sees it)
    region = seen(emerging(start=40), 9)
    assert emerged(region[:91], slot, 45, axes) and emerged(region[:91], slot, 70, axes)
    assert not emerged(region[:38], slot, 30, axes), "not before it began"
    steady = seen(bipole(np.full(T, 1e22), np.full(T, 30.0)), 10)
    decaying = seen(bipole(np.linspace(1e22, 4e21, T), np.full(T, 30.0)), 11)
    for video in (steady, decaying, noise(seed=12)):
        assert not emerged(video[:91], slot, 45, axes)
