"""The one clock: 96-minute cadence slots counted from a fixed epoch.

Slot ``k`` is the instant ``EPOCH + k × CADENCE`` on the UTC clock (days of
86 400 s; the few leap seconds since 1996 are ignored, so every slot falls on
a round UTC minute). Training videos, the synthetic Sun and the live service
all file frames on this grid, so they agree on frame times; a model bundle
records the cadence it was trained for and serving refuses one that differs
(:func:`check_cadence`).
"""
from __future__ import annotations

from datetime import datetime, timedelta

import astropy.units as u
import numpy as np
import numpy.typing as npt
from astropy.time import Time
from numpy.typing import ArrayLike

#: Slot 0 of the cadence grid.
EPOCH = Time("1996-01-01T00:00:00", scale="utc")
#: Time between slots: the MDI full-disk magnetogram cadence, the paper's video cadence.
CADENCE = 96 * u.min

EPOCH_MJD = float(EPOCH.mjd)
CADENCE_DAYS = float(CADENCE.to_value(u.day))
#: Slots per day (15 at 96 min).
SLOTS_PER_DAY = round(1.0 / CADENCE_DAYS)


def slot_days(slot: ArrayLike) -> np.ndarray:
    """Days since ``EPOCH`` of slot numbers (int array-like → float64 array of the same shape)."""
    return np.asarray(slot, dtype=np.float64) * CADENCE_DAYS


def slot_time(slot: ArrayLike) -> Time:
    """The UTC time of slot number(s) ``slot`` (int or int array; Time of the same shape)."""
    return Time(EPOCH_MJD + slot_days(slot), format="mjd", scale="utc")


def slot_datetime(slot: int) -> datetime:
    """The UTC time of one slot as a naive ``datetime``, without astropy's cost (every slot is a round UTC minute)."""
    return _EPOCH_DATETIME + timedelta(minutes=_CADENCE_MIN * int(slot))


def slot_isot(slot: int) -> str:
    """The UTC time of one slot as ISO text with milliseconds, as ``slot_time(slot).isot`` writes it."""
    return slot_datetime(slot).strftime("%Y-%m-%dT%H:%M:%S.000")


_EPOCH_DATETIME = datetime.fromisoformat(EPOCH.isot)
_CADENCE_MIN = round(CADENCE.to_value(u.min))


def days_since_epoch(time: Time | str | ArrayLike) -> np.ndarray:
    """Days since ``EPOCH`` (float64, shape of ``time``) of a Time or anything Time accepts."""
    return np.asarray(Time(time).utc.mjd, dtype=np.float64) - EPOCH_MJD


def slot_of_time(time: Time | str | ArrayLike) -> int | npt.NDArray[np.int64]:
    """Nearest slot number of a time: int for a scalar Time, int64 array for an array Time."""
    slot = np.rint(days_since_epoch(time) / CADENCE_DAYS).astype(np.int64)
    return int(slot) if slot.ndim == 0 else slot


def check_cadence(cadence: u.Quantity, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` unless ``cadence`` is the clock's :data:`CADENCE`."""
    if not u.isclose(cadence, CADENCE, rtol=1e-9):
        raise ValueError(f"{what}: cadence {cadence.to(u.min)} differs from the service clock's {CADENCE}")
