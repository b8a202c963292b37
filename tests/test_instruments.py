"""Instrument adapters: chosen from the header, HMI files as JSOC writes them, and HMI brought to MDI."""
import astropy.units as u
import numpy as np
import pytest
import sunpy.map
from astropy.io import fits
from astropy.time import Time

from common.clock import slot_of_time, slot_time
from common.observer import Observer
from common.patches import PatchGrid
from ingest.errors import ImageSizeError, InstrumentError
from ingest.instruments import HMI, MDI, MDI_SPEC, bin_geometry, harmonise, instrument_for
from ingest.instruments.hmi import hmi_geometry, hmi_header
from ingest.magnetogram import origin_from_name, read_magnetogram, to_instrument
from ingest.projection import ImageGeometry, project_patches
from sim import SunConfig, SyntheticSun, ephemeris, write_fits_series, write_hmi_series
from sim.observe import hmi_observer_at


def test_the_instrument_is_chosen_from_the_header(real_mdi_file, real_hmi_file, tmp_path):
    assert read_magnetogram(real_mdi_file).instrument == "SOHO/MDI"  # sunpy's real MDI header
    assert instrument_for(real_hmi_file, fits.getheader(real_hmi_file)) is HMI  # sunpy's real HMI map
    header = fits.getheader(real_mdi_file)
    header["TELESCOP"], header["INSTRUME"] = "NSO-GONG", "GONG"
    for key in ("CAMERA", "ORIGIN"):
        header.remove(key, ignore_missing=True)
    with pytest.raises(InstrumentError, match="unknown instrument.*GONG") as info:
        instrument_for(tmp_path / "gong.fits", header)
    assert "gong.fits" in str(info.value)


def test_synthetic_hmi_files_are_what_jsoc_exports(tmp_path):
    sun = SyntheticSun(SunConfig(), seed=0)
    t = Time("2000-06-01T00:12:00")
    path = write_hmi_series(sun, t, tmp_path, shape=(256, 256))[0]
    with fits.open(path) as hdul:
        assert isinstance(hdul[1], fits.CompImageHDU) and hdul[1].compression_type == "RICE_1"
        header = hdul[1].header
        assert header["T_REC"] == "2000.06.01_00:12:00_TAI" and header["QUALITY"] == 0 and header["CROTA2"] == 180.0
    mag = read_magnetogram(path)
    assert (mag.instrument, mag.quality) == ("SDO/HMI", 0)
    truth = hmi_observer_at(t)
    assert abs(mag.time - t).sec < 1e-3
    assert mag.observer.lon.to_value("deg") == pytest.approx(truth.lon.to_value("deg"), abs=1e-9)
    # the geometry the synthetic renderer uses is the one sunpy reads from the header (CROTA2 = 180°: north down)
    smap = sunpy.map.Map(np.zeros((256, 256)), hmi_header(truth, (256, 256)))
    ours, sunpys = hmi_geometry((256, 256)), ImageGeometry.from_wcs(smap.wcs, (256, 256))
    np.testing.assert_allclose(ours.crpix, sunpys.crpix)
    np.testing.assert_allclose(ours.pixel_from_plane, sunpys.pixel_from_plane, rtol=1e-12, atol=1e-6)
    north = mag.image.pixels_from_heliocentric(0.0, 0.9, 0.0, mag.observer.distance_rsun)[1]
    assert north < 128  # solar north is toward row 0


def test_binning_keeps_every_point_where_it_was():
    image = hmi_geometry((4096, 4096))
    binned = bin_geometry(image, 4)
    assert binned.shape == (1024, 1024)
    x, y, z = np.array([0.1, -0.5, 0.7]), np.array([0.3, 0.2, -0.6]), np.array([0.95, 0.84, 0.39])
    col, row = image.pixels_from_heliocentric(x, y, z, 215.0)
    bcol, brow = binned.pixels_from_heliocentric(x, y, z, 215.0)
    np.testing.assert_allclose(bcol, (col + 0.5) / 4 - 0.5, atol=1e-9)  # block (i..i+3) → binned pixel i/4
    np.testing.assert_allclose(brow, (row + 0.5) / 4 - 0.5, atol=1e-9)


def test_harmonise_matches_calibration_and_noise_to_mdi():
    """A flat 100 G HMI field reads 100/0.701 = 143 G as MDI; HMI's quiet per-pixel noise becomes MDI's 20 G."""
    n = 2048  # 1.008″ pixels: 2×2 of them make an MDI pixel
    image = hmi_geometry((n, n))
    disk = np.ones((n, n), dtype=bool)
    rng = np.random.default_rng(0)
    data = (100.0 + HMI.spec.noise_G * rng.standard_normal((n, n))).astype(np.float32)
    out = harmonise("f.fits", data, image, disk, HMI, MDI_SPEC, seed=1)
    assert out.data.shape == (n // 2, n // 2)
    inner = out.data[8:-8, 8:-8]
    assert inner.mean() == pytest.approx(100.0 / 0.701, rel=0.01)
    assert inner.std() == pytest.approx(MDI.spec.noise_G, rel=0.05)
    again = harmonise("f.fits", data, image, disk, HMI, MDI_SPEC, seed=1)
    np.testing.assert_array_equal(out.data, again.data)  # reproducible
    assert harmonise("f.fits", data, image, disk, MDI, MDI_SPEC, seed=1).data is data  # MDI passes unchanged


def test_a_frame_coarser_than_the_model_is_refused(real_hmi_file):
    mag = read_magnetogram(real_hmi_file)  # sunpy's HMI map resampled to 20.7″ pixels
    with pytest.raises(InstrumentError, match="coarser than the model's SOHO/MDI") as info:
        to_instrument(mag, MDI_SPEC)
    assert str(real_hmi_file) in str(info.value)


@pytest.mark.system
def test_hmi_and_mdi_frames_of_the_same_sun_agree_within_the_noise(tmp_path):
    """One synthetic Sun observed at one time by MDI (1024², 1.98″) and by HMI (4096², 0.504″, Rice-compressed,
    CROTA2 = 180°, HMI's PSF, noise and calibration). Brought to MDI and projected onto every patch within 60° of
    disk centre, the two agree to the noise: measured rms difference 20.3 G where the two frames' independent
    noise alone gives 18.8 G, and a slope of 0.98 over pixels above 200 G."""
    sun = SyntheticSun(SunConfig(), seed=0)
    slot = int(slot_of_time(Time("2000-06-03")))
    while not sun.observed(np.array([slot]))[0]:
        slot += 1
    mdi = read_magnetogram(write_fits_series(sun, [slot], tmp_path / "mdi")[0])
    raw = read_magnetogram(write_hmi_series(sun, slot_time(slot), tmp_path / "hmi")[0])
    assert raw.data.shape == (4096, 4096) and raw.instrument == "SDO/HMI"
    hmi = to_instrument(raw, MDI_SPEC)
    assert hmi.data.shape == (1024, 1024) and hmi.instrument == "SOHO/MDI"
    grid = PatchGrid()
    l0 = ephemeris(np.array([slot]))[0][0]
    central = np.flatnonzero(np.hypot((grid.lon - l0 + 180) % 360 - 180, grid.lat) < 60)
    a = project_patches(mdi.data, mdi.observer, mdi.image, grid, central)
    b = project_patches(hmi.data, hmi.observer, hmi.image, grid, central)
    noise_only = np.sqrt(2) * 13.3  # two frames' patch noise (20 G per pixel, 2/3 after resampling)
    assert (a - b).std() < 1.15 * noise_only
    strong = np.abs(a) > 200
    assert strong.sum() > 100
    slope = np.polyfit(a[strong], b[strong], 1)[0]
    assert slope == pytest.approx(1.0, abs=0.05)
    # without the cross-calibration HMI would read 30% low
    assert np.polyfit(a[strong], b[strong] * 0.701, 1)[0] < 0.75


def test_observer_of_hmi_is_at_the_earths_distance():
    t = Time("2000-06-01")
    soho, sdo = ephemeris(t), hmi_observer_at(t)
    assert isinstance(sdo, Observer)
    assert sdo.distance.to_value("m") == pytest.approx(float(soho[2]) / 0.99)


def test_the_service_brings_hmi_to_its_model_and_refuses_flagged_or_unknown_frames(tmp_path, tiny_bundle):
    from common.config import ConfigError
    from serving.bundle import ModelBundle
    from serving.compose import open_service
    from tests.test_serving import config

    assert ModelBundle(tiny_bundle).instrument == MDI_SPEC  # recorded from the training store
    service = open_service(config(tmp_path, tiny_bundle))
    sun = SyntheticSun(SunConfig(), seed=0)
    t = slot_time(int(slot_of_time(Time("2000-06-01"))))
    incoming = service.inbox.incoming
    hmi = write_hmi_series(sun, t, tmp_path / "used", shape=(2048, 2048))[0]  # 1.008″ pixels, 2×2 binned to MDI's
    with fits.open(hmi, mode="update") as hdul:  # as a real frame of 2011-12-17: made in sub-optimal conditions
        hdul[1].header["QUALITY"] = 0x00010400
    hmi = hmi.rename(incoming / hmi.name)
    flagged = write_hmi_series(sun, t + 12 * u.min, tmp_path / "flagged", shape=(2048, 2048))[0]
    with fits.open(flagged, mode="update") as hdul:
        hdul[1].header["QUALITY"] = 0x00000100  # taken during an eclipse
    flagged.rename(incoming / "flagged.fits")
    gong = incoming / "gong.fits"
    with fits.open(hmi) as hdul:
        header = hdul[1].header.copy()
        header["TELESCOP"], header["INSTRUME"] = "NSO-GONG", "GONG"
        fits.PrimaryHDU(np.zeros((64, 64), dtype=np.float32), header=header).writeto(gong)
    assert service.run_cycle() == 1
    metric = service.metrics.registry.get_sample_value
    assert metric("fluxwatch_frames_rejected_total", {"reason": "bad_quality"}) == 1
    assert metric("fluxwatch_frames_rejected_total", {"reason": "instrument"}) == 1
    reasons = {p.name: p.read_text() for p in (service.dir / "rejected").glob("*.error.txt")}
    assert any("QUALITY is 0x00000100: QUAL_ECLIPSE" in r for r in reasons.values())
    assert any("unknown instrument" in r and "GONG" in r for r in reasons.values())
    assert service.store.has_frame(int(slot_of_time(t)))
    bits = "fluxwatch_frame_quality_bits_total"
    assert metric(bits, {"instrument": "SDO/HMI", "bit": "QUAL_ECLIPSE", "action": "refused"}) == 1
    for bit in ("QUAL_LOWINTERPNUM", "QUAL_NOCOSMICRAY"):
        assert metric(bits, {"instrument": "SDO/HMI", "bit": bit, "action": "recorded"}) == 1
    reader = service.store.reader()
    assert {s[-1].provenance.quality for key in reader.passages() if (s := reader.scores(*key))} == {0x00010400}
    with pytest.raises(ConfigError, match="no instrument has a QUALITY bit QUAL_TYPO"):
        open_service(config(tmp_path / "typo", tiny_bundle, refused_quality_bits=["QUAL_ECLIPSE", "QUAL_TYPO"]))
    with pytest.raises(ConfigError, match="no instrument has a QUALITY bit 0x3;.*by its mask as 0x%08X"):
        open_service(config(tmp_path / "mask", tiny_bundle, refused_quality_bits=["0x3"]))
    masked = open_service(config(tmp_path / "masked", tiny_bundle, refused_quality_bits=["QUAL_ECLIPSE", "0x00000001"]))
    assert HMI.refusing(0x00000101, masked.config.refused_quality_bits) == ["QUAL_ECLIPSE", "0x00000001"]


@pytest.mark.parametrize("name", sorted(HMI.quality_bits))
def test_each_hmi_quality_bit_refuses_or_is_recorded_as_its_documentation_reads(name):
    mask, meaning = HMI.quality_bits[name]
    assert HMI.flags(mask) == [name] and meaning
    no_observable = mask >= 0x00020000  # JSOC's first group: no usable line-of-sight observable was made
    refused = no_observable or name in ("QUAL_ECLIPSE", "QUAL_NOCOEFFKEYWORD", "QUAL_NOCOEFFPRECORD")
    assert HMI.refusing(mask) == ([name] if refused else [])
    assert HMI.refusing(mask, refused=[name]) == [name] and HMI.refusing(mask, refused=[]) == []


def test_the_real_feeds_flags_are_recorded_and_the_refused_set_is_a_setting(tmp_path):
    from ingest.errors import QualityError
    from ingest.instruments.hmi import write_hmi
    from ingest.magnetogram import read_frame

    # the two HMI frames of 2011-12-17 and 2019-06-21 that any set bit refused before
    assert HMI.flags(0x00010400) == ["QUAL_LOWINTERPNUM", "QUAL_NOCOSMICRAY"] and HMI.refusing(0x00010400) == []
    assert HMI.refusing(0x00010000) == [] and HMI.refusing(0x80000000) == ["QUAL_NODATA"]
    assert HMI.flags(0x00000001) == ["0x00000001"]  # an undocumented bit is named by its mask, and recorded
    assert MDI.refusing(0xFFFFFFFF) == []  # MDI's level-1.8 word describes, it never refuses
    rng = np.random.default_rng(0)
    path = write_hmi(tmp_path / "hmi.fits", rng.normal(0, 6, (1024, 1024)), hmi_observer_at(Time("2019-06-21")),
                     quality=0x00010000)
    assert read_frame(path, MDI_SPEC).origin.quality == 0x00010000
    with pytest.raises(QualityError, match="QUAL_LOWINTERPNUM") as refused:
        read_frame(path, MDI_SPEC, refused_quality=["QUAL_LOWINTERPNUM"])
    assert refused.value.bits == ["QUAL_LOWINTERPNUM"] and refused.value.instrument == "SDO/HMI"


def test_a_compressed_file_claiming_a_huge_image_is_refused_before_decompression(tmp_path):
    path = tmp_path / "bomb.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(np.zeros((64, 64), dtype=np.int32), compression_type="RICE_1")]
                 ).writeto(path)
    with fits.open(path, mode="update", disable_image_compression=True) as hdul:
        hdul[1].header["ZNAXIS1"] = hdul[1].header["ZNAXIS2"] = 200_000  # 4e10 pixels: 160 GB once decompressed
    with pytest.raises(ImageSizeError, match="claims a 200000×200000 image") as info:
        read_magnetogram(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name, instrument, series", [
    ("hmi.m_720s_nrt.20261127_000000_TAI.3.magnetogram.fits", "SDO/HMI", "hmi.m_720s_nrt"),
    ("HMI.M_45s.20261127_000000_TAI.2.magnetogram.fits", "SDO/HMI", "HMI.M_45s"),
    ("mdi.fd_M_96m_lev182.20000702_000000_TAI.data.fits", "SOHO/MDI", "mdi.fd_M_96m_lev182"),
    ("aia.lev1_euv_12s.2026-11-27T000000Z.171.image_lev1.fits", "unknown", None),  # no magnetograph's series
    ("fw_000123.fits", "unknown", None),
])
def test_a_jsoc_file_name_names_its_instrument_by_the_series_prefix_it_declares(name, instrument, series):
    origin = origin_from_name(name)
    assert (origin.instrument, origin.series) == (instrument, series)
    assert {HMI.series_prefix, MDI.series_prefix} == {"hmi", "mdi"}


@pytest.mark.parametrize("k", [1, 2, 3, 4, 8])
def test_the_binned_disk_is_where_every_pixel_of_the_block_is_on_the_disk(k):
    from ingest.instruments.base import _all_in_blocks

    mask = np.random.default_rng(k).random((k * 40, k * 30)) > 0.02
    part = mask[: k * 37, : k * 23]  # not contiguous, as a frame cut to a multiple of k is
    np.testing.assert_array_equal(_all_in_blocks(part, k), part.reshape(37, k, 23, k).all(axis=(1, 3)))
