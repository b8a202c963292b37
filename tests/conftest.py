"""Every shared fixture: sunpy's real MDI and HMI test data, a tiny real model bundle, synthetic frames, a Kafka broker,
a headless browser.

The expensive ones (the bundle, the frames, the broker) are session-scoped: built once per test run.
Helpers that are not fixtures are in :mod:`tests.support`.
"""
from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from astropy.io import fits
from astropy.time import Time
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service as ChromeDriver
from sunpy.data.test import get_test_filepath

from common.clock import slot_of_time
from devtools.kafka_broker import KafkaBroker
from sim import SunConfig, SyntheticSun, write_fits_series
from tests.make_tiny_bundle import OUT as TINY_BUNDLE
from tests.support import write_real_mdi

# A warm start renders or fetches 15 days of frames before the first live one: the services the tests start (in this
# process or as fluxwatch-serve) start cold unless a test asks for it (tests/test_warm_start.py).
os.environ.setdefault("FLUXWATCH_WARM_START", "false")

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")

#: The first slot of the ``frames`` fixture.
START = Time("2000-06-01T00:00:00")


@pytest.fixture
def real_mdi_file(tmp_path) -> Path:
    return write_real_mdi(tmp_path / "mdi_real_header.fits")


@pytest.fixture
def real_hmi_file(tmp_path) -> Path:
    """sunpy's real resampled HMI map (CROTA2 ≈ 180°), BUNIT relabelled to Gauss."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(get_test_filepath("resampled_hmi.fits")) as hdul:
            hdul[0].header["BUNIT"] = "Gauss"
            hdul.writeto(tmp_path / "hmi.fits")
    return tmp_path / "hmi.fits"


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A real two-member ONNX bundle for 16-frame videos with a low threshold (0.05) so that alerts open: the
    tests exercise the alert machinery, not the model's skill. Checked in (``tests/make_tiny_bundle.py`` rebuilds
    it, with torch), so that the serving tests need neither torch nor a training run; copied, so that a test may
    change its copy."""
    return Path(shutil.copytree(TINY_BUNDLE, tmp_path_factory.mktemp("bundle") / "bundle"))


@pytest.fixture(scope="session")
def frames(tmp_path_factory) -> list[Path]:
    """Twelve consecutive 256² MDI-format frames of the synthetic Sun from START (missing slots skipped)."""
    slot0 = int(slot_of_time(START))
    return write_fits_series(SyntheticSun(SunConfig(), seed=0), range(slot0, slot0 + 12),
                             tmp_path_factory.mktemp("frames"), shape=(256, 256))


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory) -> Iterator[KafkaBroker]:
    """A running single-node Kafka broker; ``kafka_broker.bootstrap`` is its address.

    The first use fetches the broker's jars with Maven (once per checkout). Tests that stop or
    kill it must leave it running again (``kafka_broker.restart()``).
    """
    with KafkaBroker().start(tmp_path_factory.mktemp("kafka")) as broker:
        yield broker


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium, flags for a machine without network (without them it waits on connections)."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (make test installs them)")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=ChromeDriver(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
