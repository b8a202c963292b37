"""A physically grounded, seedable synthetic Sun with ground truth, observed like SoHO/MDI.

``sim`` sits beside ``ingest``, not inside it: the simulator, its BARD-like
catalog (:mod:`.catalog`) and the dataset builder (:mod:`.build_dataset`)
import ``ingest`` and ``common``; nothing in ``ingest``, ``common`` or
``training`` imports ``sim`` (the dependency runs one way).

The radial field B_r(Carrington lon, lat, t) (G) is the sum of Gaussian flux
concentrations (:mod:`.physics`): a procedural quiet-Sun network that drifts,
fragments and cancels (:mod:`.quiet`) and bipolar magnetic regions that
emerge, separate, rotate differentially and decay into plage (:mod:`.bmr`),
over solar cycles with butterfly drift, Joy's law and Hale's law. It is
observed from SoHO (:mod:`.ephemeris`, sunpy's ephemeris) as B_los = B_r·μ
with MDI-like noise, saturation and missing frames (:mod:`.observe`), on the
global 96-min cadence grid (:mod:`common.clock`), rendered either directly as
patch videos or as full-disk MDI FITS files.

Quick use::

    sun = SyntheticSun(SunConfig(), seed=0)
    table = sun.bmrs(Time("2000-01-01"), Time("2000-02-01"))
    video, observed = observe_patch_video(sun, lon_c, lat_c, slot0, 225)
"""
from sim.bmr import BMRState, BMRTable
from sim.config import SunConfig
from sim.ephemeris import ephemeris, observer_at
from sim.observe import observe_patch_video, write_fits_series, write_hmi_series
from sim.sun import SyntheticSun

__all__ = [
    "BMRState", "BMRTable", "SunConfig", "SyntheticSun", "ephemeris",
    "observe_patch_video", "observer_at", "write_fits_series", "write_hmi_series",
]
