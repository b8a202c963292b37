"""Each alert event as a VOEvent 2.0 document for the HEK, as an Emerging Flux (EF) event.

The Heliophysics Event Knowledgebase (HEK, https://www.lmsal.com/hek/VOEvent_Spec.html) takes solar features
and events as VOEvents whose ``<What>`` carries flat ``<Param name=... value=...>`` attributes: the feature
recognition method (``FRM_*``), the observation (``OBS_*``), the event's times, position and bounding box
(``Event_*``, ``BoundBox_*``) and, for the event type ``EF: EmergingFlux``, the flux of the emerging region
(``EF_*``). The names, their meanings and units are those of the HEK event specification as published in
SolarSoft's ``VOEvent_Spec.txt`` and mirrored by ``sunpy.net.hek.attrs`` (``EF_SumPosSignedFlux``,
``EF_PosPeakFluxOnsetRate``, ...); the document's layout follows SolarSoft's ``export_event.pro`` (the HEK's own
VOEvent writer): the HEK's required attributes as Params of ``<What>``, optional ones in a Group
``EmergingFlux_optional``, ``<Who>`` with AuthorIVORN, Date and the FRM contact, the start time in
``<WhereWhen>``, and ``<Citations>`` for followups, supersessions and retractions.

What an alert says, in those terms (all coordinates Carrington, ``Event_CoordSys`` = ``UTC-HGC-TOPO``, deg):

* the event starts at the ensemble's onset estimate and ends, so far, at the event's frame (``Event_EndTime``);
* its position (``Event_Coord1/2``) is the centre of the box of the strong field (|B| ≥ the region's field
  floor) at the event's frame, the errors half the box's sides, the box itself ``BoundBox_*`` (``C1LL`` >
  ``C1UR`` for a box across 0°);
* ``Event_Probability`` is the ensemble median;
* ``EF_SumPosSignedFlux`` and ``EF_SumNegSignedFlux`` (a negative number) are the region's line-of-sight flux,
  Mx, and ``EF_PosPeakFluxOnsetRate`` / ``EF_NegPeakFluxOnsetRate`` their change from the onset frame to the
  event's frame divided by the time between them, Mx/s (signed the same way; left out while the event's frame
  is the onset frame).

VOEvent 2.0 (IVOA Recommendation, 2011; ``deploy/schemas/VOEvent-v2.0.xsd``) allows only celestial coordinate
systems in ``<WhereWhen>`` (its ``AstroCoordSystem`` ids: ICRS or FK5, topocentric, geocentric or
barycentric), not the heliographic ones of the HEK's VOEvent 1.1: the region's centre there is its geocentric
direction, ``UTC-ICRS-GEO`` (GCRS right ascension and declination, deg, as seen from the Earth's centre at the
event's frame time), with the radius of the box's corners around it as its error; the heliographic position is
in the HEK Params. The event's name is a Solar Object Locator (Leibacher et al. 2010, Solar Phys. 263, 1,
the IAU solar event naming convention): ``SOL<onset UTC, to the second>L<Carrington longitude>C<colatitude>``,
each angle rounded to whole degrees, three digits. ``role`` is ``test`` for an alert scored from the synthetic
Sun (``Event_TestFlag`` T as well), so it is never taken for an observation.
"""
from __future__ import annotations

import math
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import astropy.units as u
from astropy.coordinates import GCRS, SkyCoord
from astropy.time import Time
from sunpy.coordinates import HeliographicCarrington
from sunpy.sun.constants import radius as SUN_RADIUS

from common.config import ServiceConfig
from contract.events import AlertEvent, Box, EventKind
from ingest.instruments import instrument_named
from serving.results import FrameResult

NAMESPACE = "http://www.ivoa.net/xml/VOEvent/v2.0"
AUTHOR_IVORN = "ivo://fluxwatch/alerts"
EVENT_TYPE = "EF: EmergingFlux"
COORD_SYSTEM = "UTC-HGC-TOPO"  # the HEK's Carrington heliographic system (Event_CoordSys)
SKY_SYSTEM = "UTC-ICRS-GEO"  # VOEvent 2.0's geocentric ICRS-aligned system, for <WhereWhen>

ET.register_namespace("voe", NAMESPACE)


def _wavelength(instrument: str) -> float | None:
    """The line the instrument's magnetograms are measured in, Å (None for one with no adapter)."""
    try:
        return instrument_named(instrument).wavelength_A
    except ValueError:
        return None


def ivorn(event_id: str) -> str:
    """The IVORN of the VOEvent of an alert event: its event_id, URL-quoted, as the fragment of :data:`AUTHOR_IVORN`."""
    return f"{AUTHOR_IVORN}#{quote(event_id, safe='')}"


def _time(text: str) -> datetime:
    """A UTC time of the alert contract (ISO 8601, with or without zone) as a naive UTC datetime."""
    t = datetime.fromisoformat(text)
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def _iso(text: str) -> str:
    """An ISO time to the second, as the HEK writes its times (``2004-02-14T02:00:01``)."""
    return _time(text).strftime("%Y-%m-%dT%H:%M:%S")


def box_centre(box: Box) -> tuple[float, float, float, float]:
    """(lon, lat, half width in lon, half height in lat) of a Carrington box, deg; across 0° when lon_min > lon_max."""
    width = (box.lon_max - box.lon_min) % 360.0
    return (box.lon_min + width / 2) % 360.0, (box.lat_min + box.lat_max) / 2, width / 2, (box.lat_max - box.lat_min) / 2


def sol_name(time_utc: str, lon: float, lat: float) -> str:
    """The Solar Object Locator of an event starting at ``time_utc`` at Carrington (``lon``, ``lat``), deg:
    ``SOL2000-06-01T04:48:00L123C081`` (longitude 000-359, colatitude 90° − latitude, 000-180, whole degrees)."""
    return (f"SOL{_iso(time_utc)}L{math.floor(lon + 0.5) % 360:03d}"
            f"C{min(max(math.floor(90.0 - lat + 0.5), 0), 180):03d}")


def sky_position(event: AlertEvent) -> tuple[float, float, float]:
    """(right ascension, declination, error radius) of the region's centre seen from the Earth's centre at the
    event's frame time, GCRS, deg; the error radius reaches the box's farthest corner."""
    box = event.region.bbox
    lon, lat, _, _ = box_centre(box)
    t = Time(event.frame_time, scale="utc")
    points = SkyCoord([lon, box.lon_min, box.lon_min, box.lon_max, box.lon_max] * u.deg,
                      [lat, box.lat_min, box.lat_max, box.lat_min, box.lat_max] * u.deg, radius=SUN_RADIUS,
                      frame=HeliographicCarrington(obstime=t, observer="earth")).transform_to(GCRS(obstime=t))
    centre = points[0]
    return float(centre.ra.deg), float(centre.dec.deg), float(centre.separation(points[1:]).deg.max())


@dataclass(frozen=True)
class Author:
    """Who runs the detection, as the HEK names it (``FRM_Institute``, ``FRM_Contact``, ``FRM_URL``): the
    deployment's settings ``hek_institute``, ``hek_contact`` and ``hek_url`` (:func:`author_of`)."""

    institute: str = "fluxwatch"
    contact: str = "fluxwatch operators"
    url: str = "https://fluxwatch.invalid/"


def author_of(config: ServiceConfig) -> Author:
    """The :class:`Author` a service's settings name."""
    return Author(config.hek_institute, config.hek_contact, config.hek_url)


def hek_params(event: AlertEvent, author: Author = Author()) -> tuple[dict[str, str], dict[str, str]]:
    """(required, optional) HEK attributes of an alert event, by HEK name, as the strings the VOEvent carries."""
    p, region, box = event.provenance, event.region, event.region.bbox
    observatory, _, instrument = p.instrument.rpartition("/")
    lon, lat, dlon, dlat = box_centre(box)
    required = {
        "Event_Type": EVENT_TYPE,
        "FRM_Name": "fluxwatch",
        "FRM_Identifier": "fluxwatch",
        "FRM_Institute": author.institute,
        "FRM_HumanFlag": "F",
        "FRM_ParamSet": (f"threshold={event.threshold:g} field_floor_G={region.field_floor_G:g} "
                         f"model_version={p.model_version} bundle_digest={p.bundle_digest}"),
        "FRM_DateRun": _iso(event.published),
        "FRM_Contact": author.contact,
        "FRM_URL": author.url,
        "OBS_Observatory": observatory or instrument,
        "OBS_Instrument": instrument,
        "OBS_ChannelID": p.series or "line-of-sight magnetogram",
        **({"OBS_MeanWavel": f"{_wavelength(p.instrument):g}"} if _wavelength(p.instrument) else {}),
        "OBS_WavelUnit": "Angstroms",
        "Event_StartTime": _iso(event.onset.time_utc),
        "Event_EndTime": _iso(event.frame_time),
        "Event_CoordSys": COORD_SYSTEM,
        "Event_CoordUnit": "degrees",
        "Event_Coord1": f"{lon:.4f}",
        "Event_Coord2": f"{lat:.4f}",
        "Event_C1Error": f"{dlon:.4f}",
        "Event_C2Error": f"{dlat:.4f}",
        "BoundBox_C1LL": f"{box.lon_min:.4f}",
        "BoundBox_C2LL": f"{box.lat_min:.4f}",
        "BoundBox_C1UR": f"{box.lon_max:.4f}",
        "BoundBox_C2UR": f"{box.lat_max:.4f}",
        "Event_Probability": f"{event.probability.median:.4f}",
        "EF_SumPosSignedFlux": f"{region.flux_positive_Mx:.6e}",
        "EF_SumNegSignedFlux": f"{-region.flux_negative_Mx:.6e}",
        "EF_FluxUnit": "Mx",
    }
    seconds = (_time(event.frame_time) - _time(event.onset.time_utc)).total_seconds()
    if seconds > 0:
        required |= {"EF_PosPeakFluxOnsetRate": f"{region.flux_positive_change_Mx / seconds:.6e}",
                     "EF_NegPeakFluxOnsetRate": f"{-region.flux_negative_change_Mx / seconds:.6e}",
                     "EF_OnsetRateUnit": "Mx/s"}
    optional = {
        "FRM_SpecificID": event.alert_id,
        "Event_TestFlag": "T" if event.simulated else "F",
        "Event_Description": description(event),
        "OBS_Title": p.file,
    }
    return required, optional


def description(event: AlertEvent) -> str:
    """One sentence on what happened to the alert."""
    reason = f" ({event.reason.value.replace('_', ' ')})" if event.reason else ""
    return (f"fluxwatch emergence alert {event.alert_id} {event.event.value}{reason} at {_iso(event.frame_time)}: "
            f"ensemble median probability {event.probability.median:.3f} (threshold {event.threshold:.3f}), onset "
            f"{_iso(event.onset.time_utc)} ± {event.onset.uncertainty_hours:g} h, patch {event.patch_id}"
            + (", scored from the synthetic Sun: a test, not an observation" if event.simulated else ""))


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrib)
    element.text = text
    return element


def to_voevent(event: AlertEvent, author: Author = Author()) -> bytes:
    """The VOEvent 2.0 document (UTF-8 XML) of an alert event by ``author``; the same bytes for the same event."""
    required, optional = hek_params(event, author)
    name = sol_name(event.onset.time_utc, *box_centre(event.region.bbox)[:2])
    root = ET.Element(f"{{{NAMESPACE}}}VOEvent", {"version": "2.0", "ivorn": ivorn(event.event_id),
                                                  "role": "test" if event.simulated else "observation"})

    who = _sub(root, "Who")
    _sub(who, "AuthorIVORN", AUTHOR_IVORN)
    _sub(who, "Date", _iso(event.published))
    _sub(_sub(who, "Author"), "contactName", required["FRM_Contact"])

    what = _sub(root, "What")
    for key, value in required.items():
        _sub(what, "Param", name=key, value=value)
    group = _sub(what, "Group", name="EmergingFlux_optional")
    for key, value in optional.items():
        _sub(group, "Param", name=key, value=value)

    ra, dec, error = sky_position(event)
    where = _sub(root, "WhereWhen")
    location = _sub(where, "ObsDataLocation")
    _sub(location, "ObservatoryLocation", id=required["OBS_Observatory"])
    observation = _sub(location, "ObservationLocation")
    _sub(observation, "AstroCoordSystem", id=SKY_SYSTEM)
    coords = _sub(observation, "AstroCoords", coord_system_id=SKY_SYSTEM)
    _sub(_sub(_sub(coords, "Time", unit="s"), "TimeInstant"), "ISOTime", required["Event_StartTime"])
    position = _sub(coords, "Position2D", unit="deg")
    _sub(position, "Name1", "RA")
    _sub(position, "Name2", "Dec")
    pair = _sub(position, "Value2")
    _sub(pair, "C1", f"{ra:.6f}")
    _sub(pair, "C2", f"{dec:.6f}")
    _sub(position, "Error2Radius", f"{error:.6f}")
    _sub(where, "Description", f"The event's start (onset) time; the region's centre as seen from the Earth's centre "
                               f"at {required['Event_EndTime']}. Heliographic position: the What section's Event_Coord1/2 "
                               f"and BoundBox_* ({COORD_SYSTEM}, deg).")

    how = _sub(root, "How")
    _sub(how, "Description", f"fluxwatch: an ensemble ({len(event.probability.members)} members, model "
                             f"{event.provenance.model_version}) scoring {event.provenance.instrument} line-of-sight "
                             f"magnetograms ({event.provenance.series or 'series unknown'}), file {event.provenance.file}")

    why = _sub(root, "Why")
    _sub(why, "Name", name)
    _sub(why, "Concept", EVENT_TYPE)
    inference = _sub(why, "Inference", probability=f"{event.probability.median:.4f}")
    _sub(inference, "Name", name)
    _sub(inference, "Concept", EVENT_TYPE)

    if event.supersedes is not None:
        citations = _sub(root, "Citations")
        cite = "retraction" if event.event is EventKind.withdrawn else "supersedes"
        _sub(citations, "EventIVORN", ivorn(event.supersedes), cite=cite)
    _sub(root, "Description", description(event))
    ET.indent(root)
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True) + b"\n"


def file_name(event_id: str) -> str:
    """A file name for an event's VOEvent: the event_id with every run of characters other than letters, digits,
    ``.`` and ``-`` as ``_`` (``L123.45N12.34/20000601T0000/1#3`` → ``L123.45N12.34_20000601T0000_1_3.xml``)."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", event_id) + ".xml"


class VOEventSink:
    """Writes each alert event of a committed frame result as ``<dir>/<file_name(event_id)>``, atomically (a temporary
    file in the same folder, renamed into place), so a reader never sees part of one."""

    def __init__(self, directory: Path, author: Author = Author()):
        self.dir, self.author = Path(directory), author
        self.dir.mkdir(parents=True, exist_ok=True)

    def consume(self, result: FrameResult) -> None:
        for event in result.events:
            self._write(event)

    def catch_up(self, events: Iterable[AlertEvent]) -> int:
        """Write the stored ``events`` that have no file (the service stopped between a frame's commit and this
        sink); returns how many."""
        missing = [e for e in events if not (self.dir / file_name(e.event_id)).exists()]
        for event in missing:
            self._write(event)
        return len(missing)

    def _write(self, event: AlertEvent) -> None:
        with tempfile.NamedTemporaryFile(dir=self.dir, suffix=".tmp", delete=False) as tmp:
            tmp.write(to_voevent(event, self.author))
        os.replace(tmp.name, self.dir / file_name(event.event_id))
