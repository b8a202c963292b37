"""The HEK export: every alert event as a VOEvent 2.0 Emerging Flux event, valid against the IVOA schema.

``deploy/schemas/VOEvent-v2.0.xsd`` is the IVOA VOEvent 2.0 schema (Recommendation of 2011-07-11, published at
http://www.ivoa.net/xml/VOEvent/VOEvent-v2.0.xsd; IVOA documents may be freely redistributed), byte for byte as
the Comet VOEvent broker (PyPI ``comet`` 3.1.0, ``comet/schema/VOEvent-v2.0.xsd``) ships it. It imports no other
schema, so validation needs no network.
"""
from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from datetime import datetime

import httpx
import pytest
import xmlschema
from astropy.coordinates import GCRS, get_sun
from astropy.time import Time

from contract.events import SCHEMA_DIR, AlertEvent
from serving.api import create_app
from serving.compose import open_service
from serving.voevent import NAMESPACE, Author, VOEventSink, file_name, ivorn, sol_name, to_voevent
from tests.support import ServerThread
from tests.test_serving import config, drop

SCHEMA = xmlschema.XMLSchema(SCHEMA_DIR / "VOEvent-v2.0.xsd")
ALERT = "L123.00N10.00/20000601T0000/1"


def sample(kind: str = "opened", seq: int = 0, simulated: bool = False, **changes) -> AlertEvent:
    """A hand-built alert event: onset 2000-06-01T04:48 (frame 3), event at frame 6 (4 h 48 min later)."""
    payload = {
        "event": kind, "alert_id": ALERT, "event_id": f"{ALERT}#{seq}",
        "supersedes": None if seq == 0 else f"{ALERT}#{seq - 1}",
        "reason": {"withdrawn": "probability_fell", "closed": "left_disk"}.get(kind),
        "patch_id": "L123.00N10.00", "passage": "20000601T0000", "published": "2000-06-01T09:40:12.345",
        "simulated": simulated,
        "provenance": {"instrument": "SOHO/MDI", "series": "mdi.fd_M_96m_lev182", "file": "mdi.fd_M_96m_lev182.20000601_093600.fits",
                       "t_obs": "2000-06-01T09:36:00.000", "t_rec": "2000.06.01_09:36:00_TAI", "quality": 0,
                       "model_version": "tiny-1", "bundle_digest": "sha256:" + "ab" * 32},
        "patch": {"id": "L123.00N10.00", "carrington": {"lon": 123.0, "lat": 10.0}, "stonyhurst": {"lon": -20.0, "lat": 10.0}},
        "passage_start": "2000-06-01T00:00:00.000", "frame": 6, "frame_time": "2000-06-01T09:36:00.000",
        "probability": {"median": 0.8, "p25": 0.7, "p75": 0.9, "members": [0.7, 0.9], "stable": True},
        "onset": {"frame": 3, "time_utc": "2000-06-01T04:48:00.000", "uncertainty_hours": 1.5},
        "threshold": 0.5, "observed_from": 0,
        "region": {"bbox": {"lon_min": 120.5, "lon_max": 126.5, "lat_min": 7.0, "lat_max": 12.0}, "field_floor_G": 50.0,
                   "flux_positive_Mx": 3.0e21, "flux_negative_Mx": 2.5e21, "flux_positive_change_Mx": 1.728e21,
                   "flux_negative_change_Mx": 8.64e20, "cutout": "/patches/L123.00N10.00/cutout.png"},
    }
    for key, value in changes.items():
        payload[key] = {**payload[key], **value} if isinstance(value, dict) else value
    return AlertEvent.model_validate(payload)


def parse(document: bytes) -> ET.Element:
    SCHEMA.validate(io.BytesIO(document))  # raises on the first violation
    return ET.fromstring(document)


def params(root: ET.Element) -> dict[str, str]:
    """Every HEK Param of the document (the What section's and its Groups'), by name."""
    return {p.get("name"): p.get("value") for p in root.find("What").iter("Param")}


KINDS = [("opened", 0), ("updated", 1), ("withdrawn", 2), ("closed", 2), ("emergence_phase_over", 2)]


@pytest.mark.parametrize("simulated", [False, True], ids=["observed", "simulated"])
@pytest.mark.parametrize("kind, seq", KINDS)
def test_every_event_kind_is_a_valid_voevent_with_its_role_and_citations(kind, seq, simulated):
    """Every kind of event, and a closing because the region's emergence phase is over (a real region: it
    supersedes, it does not retract)."""
    over = kind == "emergence_phase_over"
    event = sample("closed", seq, simulated, reason="emergence_phase_over") if over else sample(kind, seq, simulated)
    root = parse(to_voevent(event))
    assert root.tag == f"{{{NAMESPACE}}}VOEvent" and root.get("version") == "2.0"
    assert root.get("ivorn") == ivorn(event.event_id) == f"ivo://fluxwatch/alerts#L123.00N10.00%2F20000601T0000%2F1%23{seq}"
    assert root.get("role") == ("test" if simulated else "observation"), "a simulated alert is never an observation"
    assert params(root)["Event_TestFlag"] == ("T" if simulated else "F")
    cited = [(e.get("cite"), e.text) for e in root.iter("EventIVORN")]
    if kind == "opened":
        assert cited == [] and root.find("Citations") is None
    else:
        assert cited == [("retraction" if kind == "withdrawn" else "supersedes", ivorn(f"{ALERT}#{seq - 1}"))]
    if over:
        assert "closed (emergence phase over)" in root.find("Description").text
    assert to_voevent(event) == to_voevent(event), "the same event, the same bytes"


def test_the_hek_parameters_carry_the_event():
    root = parse(to_voevent(sample()))
    p = params(root)
    top = {q.get("name") for q in root.find("What").findall("Param")}
    assert {"Event_Type", "FRM_Name", "FRM_Identifier", "FRM_Institute", "FRM_HumanFlag", "FRM_ParamSet", "FRM_DateRun",
            "FRM_Contact", "FRM_URL", "OBS_Observatory", "OBS_Instrument", "OBS_ChannelID", "OBS_MeanWavel",
            "OBS_WavelUnit", "Event_StartTime", "Event_EndTime", "Event_CoordSys", "Event_CoordUnit", "Event_Coord1",
            "Event_Coord2", "Event_C1Error", "Event_C2Error", "BoundBox_C1LL", "BoundBox_C2LL", "BoundBox_C1UR",
            "BoundBox_C2UR", "Event_Probability", "EF_SumPosSignedFlux", "EF_SumNegSignedFlux", "EF_FluxUnit",
            "EF_PosPeakFluxOnsetRate", "EF_NegPeakFluxOnsetRate", "EF_OnsetRateUnit"} <= top, "required: in What itself"
    assert root.find("What/Group").get("name") == "EmergingFlux_optional"
    assert p["Event_Type"] == "EF: EmergingFlux" and p["FRM_HumanFlag"] == "F" and p["FRM_SpecificID"] == ALERT
    assert (p["OBS_Observatory"], p["OBS_Instrument"], p["OBS_ChannelID"]) == ("SOHO", "MDI", "mdi.fd_M_96m_lev182")
    assert (float(p["OBS_MeanWavel"]), p["OBS_WavelUnit"]) == (6767.8, "Angstroms")
    assert "threshold=0.5" in p["FRM_ParamSet"] and "bundle_digest=sha256:abab" in p["FRM_ParamSet"]
    assert (p["Event_StartTime"], p["Event_EndTime"], p["FRM_DateRun"]) == \
        ("2000-06-01T04:48:00", "2000-06-01T09:36:00", "2000-06-01T09:40:12")
    assert root.findtext("Who/Date") == "2000-06-01T09:40:12"
    assert (p["Event_CoordSys"], p["Event_CoordUnit"]) == ("UTC-HGC-TOPO", "degrees")
    lon, lat = float(p["Event_Coord1"]), float(p["Event_Coord2"])
    assert (lon, lat, float(p["Event_C1Error"]), float(p["Event_C2Error"])) == (123.5, 9.5, 3.0, 2.5)
    box = [float(p[f"BoundBox_{k}"]) for k in ("C1LL", "C2LL", "C1UR", "C2UR")]
    assert box == [120.5, 7.0, 126.5, 12.0] and box[0] <= lon <= box[2] and box[1] <= lat <= box[3]
    assert float(p["Event_Probability"]) == 0.8
    assert root.find("Why/Inference").get("probability") == "0.8000"
    assert (float(p["EF_SumPosSignedFlux"]), float(p["EF_SumNegSignedFlux"]), p["EF_FluxUnit"]) == (3.0e21, -2.5e21, "Mx")
    seconds = 4.8 * 3600  # onset 04:48 to frame 09:36
    assert float(p["EF_PosPeakFluxOnsetRate"]) == pytest.approx(1.728e21 / seconds, rel=1e-6)  # 1.0e17 Mx/s
    assert float(p["EF_NegPeakFluxOnsetRate"]) == pytest.approx(-8.64e20 / seconds, rel=1e-6)
    assert p["EF_OnsetRateUnit"] == "Mx/s"


def test_a_box_across_0_degrees_is_centred_across_it():
    p = params(parse(to_voevent(sample(region={"bbox": {"lon_min": 358.0, "lon_max": 4.0, "lat_min": -12.0, "lat_max": -8.0}}))))
    assert (float(p["Event_Coord1"]), float(p["Event_Coord2"]), float(p["Event_C1Error"])) == (1.0, -10.0, 3.0)
    assert (float(p["BoundBox_C1LL"]), float(p["BoundBox_C1UR"])) == (358.0, 4.0)


def test_no_onset_rate_at_the_onset_frame():
    p = params(parse(to_voevent(sample(onset={"frame": 6, "time_utc": "2000-06-01T09:36:00.000"}))))
    assert not {"EF_PosPeakFluxOnsetRate", "EF_NegPeakFluxOnsetRate", "EF_OnsetRateUnit"} & p.keys()
    assert float(p["EF_SumPosSignedFlux"]) == 3.0e21


def test_the_sol_name_follows_the_iau_convention():
    """SOL<time>L<Carrington longitude>C<colatitude>, whole degrees, three digits (Leibacher et al. 2010)."""
    assert sol_name("2000-06-01T04:48:00.000", 123.4, 8.7) == "SOL2000-06-01T04:48:00L123C081"
    assert sol_name("2026-11-27T08:31:00Z", 359.7, -12.3) == "SOL2026-11-27T08:31:00L000C102"
    assert sol_name("2010-01-01T00:00:00", 5.0, 90.0) == "SOL2010-01-01T00:00:00L005C000"
    root = parse(to_voevent(sample()))  # onset 04:48, box centre (123.5, 9.5): colatitude 80.5 → 81
    assert root.findtext("Why/Name") == root.findtext("Why/Inference/Name") == "SOL2000-06-01T04:48:00L124C081"


def test_wherewhen_gives_the_start_and_the_region_on_the_sky():
    root = parse(to_voevent(sample()))
    location = root.find("WhereWhen/ObsDataLocation/ObservationLocation")
    assert location.find("AstroCoordSystem").get("id") == "UTC-ICRS-GEO"
    assert location.findtext("AstroCoords/Time/TimeInstant/ISOTime") == "2000-06-01T04:48:00"
    position = location.find("AstroCoords/Position2D")
    ra, dec = float(position.findtext("Value2/C1")), float(position.findtext("Value2/C2"))
    sun = get_sun(Time("2000-06-01T09:36:00")).transform_to(GCRS(obstime=Time("2000-06-01T09:36:00")))
    assert abs(ra - sun.ra.deg) < 0.3 and abs(dec - sun.dec.deg) < 0.3, "on the solar disk (radius 0.26°)"
    assert 0 < float(position.findtext("Error2Radius")) < 0.1, "a few degrees of the Sun: tens of arcseconds"
    assert root.find("WhereWhen/ObsDataLocation/ObservatoryLocation").get("id") == "SOHO"


def test_the_schema_is_the_strict_2_0_one():
    """VOEvent 2.0 names its coordinate systems: the HEK's heliographic ones (its VOEvent 1.1) are not among them."""
    document = to_voevent(sample())
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        SCHEMA.validate(io.BytesIO(document.replace(b'id="UTC-ICRS-GEO"', b'id="UTC-HGC-TOPO"')))


def test_file_names_are_safe():
    assert file_name(f"{ALERT}#3") == "L123.00N10.00_20000601T0000_1_3.xml"


@pytest.fixture(scope="module")
def service(tmp_path_factory, tiny_bundle, frames):
    svc = open_service(config(tmp_path_factory.mktemp("voevent"), tiny_bundle))
    drop(frames, svc.dir)
    svc.run_cycle()
    return svc


def test_the_sink_writes_one_file_per_event_and_the_endpoint_serves_the_same(service):
    events = service.store.reader().alerts()
    assert {e.event.value for e in events} >= {"opened"}, "the tiny bundle's low threshold opens alerts"
    files = sorted((service.dir / "voevents").iterdir())
    assert [f.name for f in files] == sorted(file_name(e.event_id) for e in events), "one file per event, no temp left"
    with ServerThread(create_app(service)) as server:
        for event in events:
            r = httpx.get(f"{server.url}/alerts/voevent", params={"event_id": event.event_id})
            assert r.status_code == 200 and r.headers["content-type"] == "application/xml"
            assert r.content == (service.dir / "voevents" / file_name(event.event_id)).read_bytes() == to_voevent(event)
            p = params(parse(r.content))
            assert p["FRM_SpecificID"] == event.alert_id and datetime.fromisoformat(p["Event_StartTime"])
        missing = httpx.get(f"{server.url}/alerts/voevent", params={"event_id": "nope#0"})
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
        assert missing.json()["detail"] == "no alert event 'nope#0'" and missing.json()["instance"] == "/alerts/voevent"
        assert httpx.get(f"{server.url}/alerts/voevent").status_code == 422


def test_no_sink_without_a_voevent_dir(tmp_path, tiny_bundle):
    assert not any(isinstance(s, VOEventSink) for s in open_service(config(tmp_path, tiny_bundle, voevent_dir=None)).sinks)


def test_a_restart_writes_the_files_of_events_committed_before_their_sink_ran(service):
    """The service stopped between a frame's commit and its sinks (kill -9 at the fault point ``commit``): the
    events are in the store but have no file; the next start writes them, and no other."""
    folder = service.dir / "voevents"
    lost = sorted(folder.iterdir())[:3]
    kept = {f.name: f.stat().st_mtime_ns for f in folder.iterdir() if f not in lost}
    for f in lost:
        f.unlink()
    again = open_service(service.config)
    assert {f.name for f in folder.iterdir()} == set(kept) | {f.name for f in lost}
    assert all(f.stat().st_mtime_ns == kept[f.name] for f in folder.iterdir() if f.name in kept), "the others untouched"
    assert again.store.reader().alerts() == service.store.reader().alerts()


def test_the_deployment_names_itself_in_the_documents(tmp_path, tiny_bundle):
    """FRM_Institute, FRM_Contact and FRM_URL (and the Who section's contact) are the service's settings."""
    author = Author("Observatoire de Paris", "space-weather desk <desk@example.org>", "https://example.org/fluxwatch")
    p = params(parse(to_voevent(sample(), author)))
    assert (p["FRM_Institute"], p["FRM_Contact"], p["FRM_URL"]) == (author.institute, author.contact, author.url)
    assert parse(to_voevent(sample(), author)).find("Who/Author/contactName").text == author.contact  # unqualified
    svc = open_service(config(tmp_path, tiny_bundle, hek_institute=author.institute, hek_contact=author.contact,
                         hek_url=author.url))
    assert [s.author for s in svc.sinks if isinstance(s, VOEventSink)] == [author]
