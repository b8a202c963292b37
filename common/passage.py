"""A patch's disk passage: the rule that both the training catalog and the live service use.

A patch is fixed in the Carrington frame and rotates across the disk. Its
passage starts at the first slot at which its centre is on the visible
hemisphere (central-meridian distance, CMD, ≥ −90°: it came over the east
limb), and frame 0 of its video is that slot. The passage ends when the
centre passes the west limb (CMD ≥ 90°) or the video is full.

The observer's Carrington longitude over past slots comes from an ephemeris
passed in (the synthetic Sun's for SoHO, sunpy's for a live instrument), so
the rule itself does not depend on where the observer is.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from common.clock import SLOTS_PER_DAY
from common.observer import central_meridian_distance

#: How far back a passage start is searched: a centre reaches the west limb ~13.6 days after the east limb.
SEARCH_DAYS = 16


def on_disk(cmd_deg) -> np.ndarray:
    """True where a centre at central-meridian distance ``cmd_deg`` (deg, in [-180, 180)) is on the visible disk."""
    cmd = np.asarray(cmd_deg)
    return (cmd >= -90.0) & (cmd < 90.0)


def passage_start_slot(lon_deg, slot, l0_deg: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """The first slot of the passage that each patch centre is on at ``slot``.

    Parameters
    ----------
    lon_deg : Carrington longitudes of patch centres, deg, shape (n,).
    slot : slot(s) at which each centre is on the disk, int or shape (n,).
    l0_deg : the observer's Carrington longitude (deg) at an int array of slots, any shape.

    Returns int64 (n,): the slot after the last one, in the ``SEARCH_DAYS`` before
    ``slot``, at which the centre was east of the east limb.
    """
    lon = np.atleast_1d(np.asarray(lon_deg, dtype=np.float64))
    back = np.arange(-SEARCH_DAYS * SLOTS_PER_DAY, 1)
    slots = np.broadcast_to(np.asarray(slot, dtype=np.int64), lon.shape)[:, None] + back[None, :]
    l0 = np.asarray(l0_deg(slots.ravel()), dtype=np.float64).reshape(slots.shape)
    hidden = central_meridian_distance(lon[:, None], l0) < -90.0
    last_hidden = np.where(hidden.any(axis=1), hidden.shape[1] - 1 - np.argmax(hidden[:, ::-1], axis=1), -1)
    return slots[np.arange(len(slots)), last_hidden + 1]


def passage_over(start_slot, slot, centre_on_disk, n_frames: int) -> np.ndarray:
    """True where a passage that started at ``start_slot`` is over at ``slot``: its centre left the disk or its
    video of ``n_frames`` is full."""
    return ~np.asarray(centre_on_disk) | (np.asarray(slot) >= np.asarray(start_slot) + n_frames)
