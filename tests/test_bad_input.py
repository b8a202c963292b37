"""Bad input: a typed error naming the file and the problem, and nothing half-written."""
import warnings

import numpy as np
import pytest
from astropy.io import fits
from sunpy.data.test import get_test_filepath

from ingest.cli import ingest_series, main
from ingest.errors import (
    EmptyDataError,
    MissingKeywordError,
    NoImageDataError,
    NotFITSError,
    TimeOrderError,
    TruncatedFITSError,
    UnitError,
)
from ingest.magnetogram import read_magnetogram
from tests.support import real_mdi_header, write_real_mdi


def corrupt(tmp_path, kind):
    p = tmp_path / f"{kind}.fits"
    if kind == "not_fits":
        p.write_text("SIMPLE? no, this is a text file\n")
    elif kind == "truncated":
        good = write_real_mdi(tmp_path / "good.fits").read_bytes()
        p.write_bytes(good[: len(good) - 4000])
    elif kind == "no_image":
        table = fits.BinTableHDU.from_columns([fits.Column(name="a", format="E", array=np.zeros(3))])
        fits.HDUList([fits.PrimaryHDU(header=real_mdi_header()), table]).writeto(p)
    elif kind == "wrong_unit":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits.open(get_test_filepath("resampled_hmi.fits")).writeto(p)  # real HMI continuum, BUNIT DN/s
    elif kind == "no_observer":
        write_real_mdi(p)
        with fits.open(p, mode="update") as h:
            del h[0].header["DSUN_OBS"]
    elif kind == "all_nan":
        write_real_mdi(p)
        with fits.open(p, mode="update", do_not_scale_image_data=True) as h:
            h[0].data[:] = -(2**31)
    return p


@pytest.mark.parametrize("kind, error, words", [
    ("not_fits", NotFITSError, "not a readable FITS file"),
    ("truncated", TruncatedFITSError, "truncated"),
    ("no_image", NoImageDataError, "HDUs holds a 2-D image"),
    ("wrong_unit", UnitError, "BUNIT is 'DN/s'"),
    ("no_observer", MissingKeywordError, "DSUN_OBS"),
    ("all_nan", EmptyDataError, "every pixel is missing"),
])
def test_bad_file_is_named_and_explained(tmp_path, kind, error, words):
    bad = corrupt(tmp_path, kind)
    with pytest.raises(error) as info:
        read_magnetogram(bad)
    assert info.value.path == bad and words in str(info.value) and str(bad) in str(info.value)
    # Through the series ingest: same error, and no store appears.
    good = write_real_mdi(tmp_path / "first.fits", date_obs="2010-10-15T17:36:26")
    out = tmp_path / "videos.zarr"
    with pytest.raises(error):
        ingest_series([good, bad], out, progress=False)
    assert not out.exists() and not (tmp_path / "videos.zarr.partial").exists()


def test_time_going_backwards_is_refused(tmp_path):
    early = write_real_mdi(tmp_path / "a.fits")
    late = tmp_path / "b.fits"
    write_real_mdi(late)
    with fits.open(late, mode="update") as h:
        h[0].header["DATE-OBS"] = "2010-10-15T17:36:26.000"  # 96 min before the first
    with pytest.raises(TimeOrderError, match="not after") as info:
        ingest_series([early, late], tmp_path / "v.zarr", progress=False)
    assert info.value.path == late
    assert not (tmp_path / "v.zarr").exists()


def test_cli_reports_error_and_exit_code(tmp_path, capsys):
    bad = corrupt(tmp_path, "not_fits")
    assert main([str(bad), "--out", str(tmp_path / "o.zarr")]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("fluxwatch-ingest: error: ") and str(bad) in last and "Traceback" not in err
    assert not (tmp_path / "o.zarr").exists()
