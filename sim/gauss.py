"""Summing Gaussian concentrations of B_r: on a patch grid (separable, batched) and at scattered points.

On a patch the grid is the outer product of a latitude axis and a longitude
axis, and each concentration factorises:
exp(−[(Δλ cos φ_e)² + Δφ²]/2σ²) = g_φ(row) · g_λ(col). A frame with K
concentrations is therefore the product (rows × K) @ (K × cols), and a video
one batched matrix product. Concentrations further than REACH_SIGMA·σ from a
pixel are left out of it (at most exp(−10) of their peak).
"""
from __future__ import annotations

import numpy as np

from sim.physics import REACH_SIGMA, Blobs, wrap180

#: Bin size (deg) for grouping scattered points with the concentrations that reach them.
_BIN_DEG = 3.0


def compact(frame: np.ndarray, blobs: Blobs, n_frames: int) -> Blobs:
    """Concentrations given as (frame index, Blobs) pairs, 1-d, packed per frame into Blobs (n_frames, K_max).

    Padding entries have zero amplitude (and width 1°, to stay finite).
    """
    order = np.argsort(frame, kind="stable")
    frame = frame[order]
    counts = np.bincount(frame, minlength=n_frames)
    k_max = int(counts.max(initial=0))
    rank = np.arange(len(frame)) - np.repeat(np.cumsum(counts) - counts, counts)
    out = []
    for name, fill in (("lon", 0.0), ("lat", 0.0), ("sigma", 1.0), ("amp", 0.0)):
        a = np.full((n_frames, k_max), fill, dtype=np.float32)
        a[frame, rank] = getattr(blobs, name)[order]
        out.append(a)
    return Blobs(*out)


def _gaussian(x: np.ndarray) -> np.ndarray:
    """exp(−x²) in place, floored at exp(−30) ≈ 1e-13.

    The floor keeps every factor and every product of two factors far from
    float32's subnormal range, which would slow the matrix product a
    hundredfold; 1e-13 of a peak is nothing.
    """
    np.multiply(x, x, out=x)
    np.minimum(x, 30.0, out=x)
    np.negative(x, out=x)
    return np.exp(x, out=x)


def patch_field(blobs: Blobs, lat_c: float, offsets: np.ndarray) -> np.ndarray:
    """B_r on a patch grid, float32 (F, n, n) in G, indexed [frame, lat, lon].

    ``blobs`` have shape (F, K) with ``lon`` relative to the patch centre
    (deg, within ±180); the patch's pixel centres are at ``offsets`` (deg,
    shape (n,)) from its centre (``lat_c``) along both axes.
    """
    off = offsets.astype(np.float32)
    inv = (np.float32(1.0 / np.sqrt(2.0)) / blobs.sigma.astype(np.float32))[..., None]  # (F, K, 1)
    cos_lat = np.cos(np.deg2rad(blobs.lat)).astype(np.float32)[..., None]
    gx = _gaussian((off - blobs.lon.astype(np.float32)[..., None]) * (cos_lat * inv))  # (F, K, n)
    gy = _gaussian((off[:, None] - (blobs.lat - lat_c).astype(np.float32)[:, None, :]) * inv.transpose(0, 2, 1))  # (F, n, K)
    gy *= blobs.amp.astype(np.float32)[:, None, :]
    return np.matmul(gy, gx)


def point_field(lon, lat, blobs: Blobs) -> np.ndarray:
    """B_r (G, float64, shape of ``lon``) at Carrington points (deg) from concentrations ``blobs`` (1-d).

    Points and concentrations are grouped into bins of ``_BIN_DEG``; each bin
    of points sums the concentrations that reach it.
    """
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    shape = np.broadcast_shapes(lon.shape, lat.shape)
    lon, lat = (np.broadcast_to(a, shape).ravel() for a in (lon, lat))
    out = np.zeros(lon.shape)
    keep = blobs.amp != 0
    b_lon, b_lat, b_sig, b_amp = (np.asarray(a, dtype=np.float64)[keep] for a in blobs)
    if not len(b_amp) or not len(lon):
        return out.reshape(shape)
    n_lon, n_lat = round(360 / _BIN_DEG), round(180 / _BIN_DEG)

    def lat_bin(v):
        return np.clip(np.floor((v + 90.0) / _BIN_DEG).astype(np.int64), 0, n_lat - 1)

    point_bin = lat_bin(lat) * n_lon + np.floor((lon % 360.0) / _BIN_DEG).astype(np.int64) % n_lon
    reach = REACH_SIGMA * b_sig
    j0, j1 = lat_bin(b_lat - reach), lat_bin(b_lat + reach)
    cos_far = np.cos(np.deg2rad(np.minimum(np.maximum(np.abs(b_lat - reach), np.abs(b_lat + reach)), 90.0)))
    reach_lon = reach / np.maximum(cos_far, 1e-9)
    all_lon = reach_lon >= 180.0 - _BIN_DEG
    i0 = np.where(all_lon, 0, np.floor((b_lon - reach_lon) / _BIN_DEG).astype(np.int64))
    n_i = np.where(all_lon, n_lon, np.floor((b_lon + reach_lon) / _BIN_DEG).astype(np.int64) - i0 + 1)
    n_j = j1 - j0 + 1
    # Every (concentration, bin) pair it reaches: expand lat rows, then lon columns.
    per = n_i * n_j
    blob = np.repeat(np.arange(len(b_amp)), per)
    k = np.arange(len(blob)) - np.repeat(np.cumsum(per) - per, per)
    pair_bin = (j0[blob] + k // n_i[blob]) * n_lon + (i0[blob] + k % n_i[blob]) % n_lon
    order_p = np.argsort(point_bin, kind="stable")
    order_b = np.argsort(pair_bin, kind="stable")
    bins, p_start, p_count = np.unique(point_bin[order_p], return_index=True, return_counts=True)
    b_start = np.searchsorted(pair_bin[order_b], bins, side="left")
    b_stop = np.searchsorted(pair_bin[order_b], bins, side="right")
    for ps, pc, bs, be in zip(p_start, p_count, b_start, b_stop):
        if be == bs:
            continue
        pts = order_p[ps:ps + pc]
        e = blob[order_b[bs:be]]
        dx = wrap180(lon[pts, None] - b_lon[e]) * np.cos(np.deg2rad(b_lat[e]))
        dy = lat[pts, None] - b_lat[e]
        q = (dx * dx + dy * dy) / (2.0 * b_sig[e] ** 2)
        # Cut exactly at the reach, so the value does not depend on which other points were asked for.
        out[pts] = (b_amp[e] * np.where(q <= 0.5 * REACH_SIGMA**2, np.exp(-q), 0.0)).sum(axis=1)
    return out.reshape(shape)
