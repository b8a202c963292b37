"""Counter-based randomness: random numbers as pure functions of integer keys.

The quiet Sun and the missing-frame schedule must be evaluable anywhere
without simulating everything before it, so their random draws are hashes of
(global seed, stream tag, cell or slot indices, element number) rather than
draws from a sequential generator. The hash is SplitMix64's finaliser
(Steele, Lea & Flood 2014), applied elementwise on uint64 arrays, so a whole
region's draws are a handful of vectorised integer operations.
"""
from __future__ import annotations

import numpy as np
from scipy.special import ndtri

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _as_u64(value) -> np.ndarray:
    """Integers (any sign, or uint64 keys) as uint64 bit patterns, at least 1-d so arithmetic wraps silently."""
    a = np.atleast_1d(np.asarray(value))
    return a if a.dtype == np.uint64 else a.astype(np.int64).view(np.uint64)


def _mix(z: np.ndarray) -> np.ndarray:
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def keys(*parts) -> np.ndarray:
    """uint64 keys hashing integer ``parts`` (scalars or arrays, broadcast together)."""
    h = np.zeros(1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for part in parts:
            h = _mix(h ^ _as_u64(part))
    return h


def uniform(key: np.ndarray, stream: int) -> np.ndarray:
    """Uniform draws in the open interval (0, 1), float64, one per key, for draw number ``stream``."""
    with np.errstate(over="ignore"):
        bits = _mix(key ^ _mix(_as_u64(stream)))
    return ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def normal(key: np.ndarray, stream: int) -> np.ndarray:
    """Standard normal draws, float64, one per key (inverse CDF of :func:`uniform`)."""
    return ndtri(uniform(key, stream))


def lognormal(key: np.ndarray, stream: int, median, sigma_ln, lo=0.0, hi=np.inf) -> np.ndarray:
    """Lognormal draws with the given median and log-width, clipped to [lo, hi]."""
    return np.clip(median * np.exp(sigma_ln * normal(key, stream)), lo, hi)


def poisson(key: np.ndarray, stream: int, lam: np.ndarray) -> np.ndarray:
    """Poisson counts (int64) with means ``lam`` (shape of ``key``), by inverting the CDF."""
    lam = np.broadcast_to(np.asarray(lam, dtype=np.float64), key.shape)
    u = uniform(key, stream)
    k_max = int(np.ceil(lam.max(initial=0.0) + 8.0 * np.sqrt(lam.max(initial=0.0)) + 8.0))
    k = np.arange(k_max + 1)
    log_pmf = k[None, :] * np.log(np.maximum(lam, 1e-300))[:, None] - lam[:, None] - np.cumsum(np.log(np.maximum(k, 1)))[None, :]
    cdf = np.cumsum(np.exp(log_pmf), axis=1)
    return (u[:, None] > cdf).sum(axis=1)
