"""Hostile FITS files for the reliability suite: hypothesis strategies that turn a real, valid 256² frame (MDI,
scaled int32; HMI, Rice-compressed) into broken ones, and the property every reader must keep.

Each case is ``(kind, bytes)``: ``kind`` says which mutation made it (for the failure report and the counts).
Header keywords are edited in the file's bytes, card by card, so values astropy would refuse to write (NaN,
10^12-pixel axes, a string BITPIX) reach the reader as a hostile producer would write them.
"""
from __future__ import annotations

import gzip
import io
import resource
import signal
import tempfile
import time
from functools import cache
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.time import Time
from hypothesis import strategies as st

from common.clock import slot_of_time
from ingest.errors import IngestError
from ingest.magnetogram import MDI_SPEC, Magnetogram, read_frame, read_magnetogram
from sim import SunConfig, SyntheticSun, write_fits_series, write_hmi_series

SHAPE = (256, 256)
CARD = 80
#: A read that takes longer than this is a hang.
TIME_LIMIT_S = 20
#: How far one read may raise the test process's resident memory (kB); a 4096² float frame is 64 MB and the hostile
#: frames are 256². Measured from the read's own peak, so what earlier tests held does not count.
MEMORY_LIMIT_KB = 1024 * 1024

NUMERIC_KEYS = ("NAXIS", "NAXIS1", "NAXIS2", "BITPIX", "BSCALE", "BZERO", "BLANK", "CDELT1", "CDELT2", "CRPIX1",
                "CRPIX2", "CRVAL1", "CROTA2", "DSUN_OBS", "RSUN_REF", "RSUN_OBS", "CRLN_OBS", "CRLT_OBS", "QUALITY",
                "ZNAXIS", "ZNAXIS1", "ZNAXIS2", "ZBITPIX", "ZTILE1", "ZTILE2", "PCOUNT", "THEAP", "TFORM1")
STRING_KEYS = ("DATE-OBS", "T_OBS", "BUNIT", "CTYPE1", "CTYPE2", "CUNIT1", "CUNIT2", "TELESCOP", "INSTRUME",
               "ZCMPTYPE", "XTENSION", "SIMPLE")
ABSURD = ("0", "-1", "NaN", "nan", "Infinity", "-Infinity", "1E300", "-1E300", "1E-300", "999999999", "1000000",
          "2147483648", "-2147483649", "99999999999999999999", "'abc'", "T", "F", "", "1.5", "-32", "8", "64", "7")
GARBAGE_STRINGS = ("'garbage'", "'2010-13-45T99:99:99'", "''", "42", "T", "'G'", "'Mx/cm^2'", "'HPLN-CAR'",
                   "'DN/s'", "'SOHO'", "'SDO/HMI'", "'RICE_1'", "'GZIP_2'", "'HCOMPRESS_1'", "'BINTABLE'", "'IMAGE'")


@cache
def valid_frames() -> dict[str, bytes]:
    """The valid frames mutated: an MDI-format frame (scaled int32) and an HMI-format one (Rice-compressed), 256²,
    of the synthetic Sun at 2000-06-01 (the start of the service tests' ``frames``)."""
    sun = SyntheticSun(SunConfig(), seed=0)
    folder = Path(tempfile.mkdtemp(prefix="hostile-base-"))
    slot = int(slot_of_time(Time("2000-06-01T00:00:00")))
    while not sun.observed(np.array([slot]))[0]:
        slot += 1
    mdi = write_fits_series(sun, [slot], folder / "mdi", shape=SHAPE)[0]
    hmi = write_hmi_series(sun, Time("2000-06-01T00:12:00"), folder / "hmi", shape=SHAPE)[0]
    return {"mdi": mdi.read_bytes(), "hmi": hmi.read_bytes()}


def _card_offsets(raw: bytes, key: str) -> list[int]:
    """Byte offsets of the header cards of ``key`` (``KEY     =``), on card boundaries."""
    name = f"{key:<8}=".encode()
    offsets, at = [], raw.find(name)
    while at >= 0:
        if at % CARD == 0:
            offsets.append(at)
        at = raw.find(name, at + 1)
    return offsets


def set_card(raw: bytes, key: str, value: str | None, which: int = 0) -> bytes:
    """``raw`` with the ``which``-th (modulo their number) card of ``key`` set to ``value`` as written (None: the
    card blanked, as if deleted); unchanged when the file has no such card."""
    offsets = _card_offsets(raw, key)
    if not offsets:
        return raw
    at = offsets[which % len(offsets)]
    card = b" " * CARD if value is None else f"{key:<8}= {value:>20}".ljust(CARD)[:CARD].encode("ascii")
    return raw[:at] + card + raw[at + CARD:]


def _hdul_bytes(hdus: list) -> bytes:
    buffer = io.BytesIO()
    fits.HDUList(hdus).writeto(buffer, output_verify="silentfix")
    return buffer.getvalue()


@cache
def _image(base: str) -> tuple[fits.Header, np.ndarray]:
    """(header, float32 data in G) of a valid frame, the header without its scaling and compression keywords."""
    with fits.open(io.BytesIO(valid_frames()[base])) as hdul:
        hdu = hdul[-1]
        header = fits.Header([c for c in hdu.header.cards if not c.keyword.startswith(("Z", "BSCALE", "BZERO", "BLANK",
                                                                                       "XTENSION", "PCOUNT", "GCOUNT"))])
        return header, np.asarray(hdu.data, dtype=np.float32)


bases = st.sampled_from(("mdi", "hmi"))


@st.composite
def keyword_edits(draw) -> tuple[str, bytes]:
    """One to four header cards deleted or set to a wrong type or an absurd value."""
    base = draw(bases)
    raw = valid_frames()[base]
    keys = []
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.sampled_from(NUMERIC_KEYS + STRING_KEYS))
        pool = ABSURD if key in NUMERIC_KEYS else GARBAGE_STRINGS
        value = draw(st.one_of(st.none(), st.sampled_from(pool), st.integers(-10**15, 10**15).map(str),
                               st.floats(allow_nan=False, allow_infinity=False).map(repr),
                               st.text(st.characters(min_codepoint=32, max_codepoint=126, exclude_characters="'"),
                                       max_size=40).map(lambda s: f"'{s}'")))
        raw = set_card(raw, key, value, draw(st.integers(0, 1)))
        keys.append(f"{key}={'deleted' if value is None else value}")
    return f"{base} keywords {', '.join(keys)}", raw


@st.composite
def data_edits(draw) -> tuple[str, bytes]:
    """The image's values made NaN, infinite, all missing or absurd, or stored with another BITPIX."""
    base = draw(bases)
    header, data = _image(base)
    data = data.copy()
    what = draw(st.sampled_from(("nan_some", "inf_some", "all_nan", "all_inf", "all_zero", "huge", "bitpix")))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if what in ("nan_some", "inf_some"):
        mask = rng.random(data.shape) < draw(st.floats(0.0, 1.0))
        data[mask] = np.nan if what == "nan_some" else rng.choice([np.inf, -np.inf], size=int(mask.sum()))
    elif what in ("all_nan", "all_inf", "all_zero"):
        data[:] = {"all_nan": np.nan, "all_inf": np.inf, "all_zero": 0.0}[what]
    elif what == "huge":
        with np.errstate(over="ignore"):  # to ±inf where the field times 3e38 overflows: hostile too
            data *= np.float32(draw(st.sampled_from((1e30, -1e30, 3e38))))
    if what == "bitpix":
        dtype = draw(st.sampled_from(("uint8", "int16", "int32", "int64", "float64")))
        with np.errstate(invalid="ignore", over="ignore"):
            data = np.nan_to_num(data).astype(dtype)
        what = f"bitpix {dtype}"
    return f"{base} data {what}", _hdul_bytes([fits.PrimaryHDU(data, header=header)])


@st.composite
def structure_edits(draw) -> tuple[str, bytes]:
    """Files whose HDUs are wrong: empty, header only, the image in odd company, a FITS file nested in another."""
    base = draw(bases)
    header, data = _image(base)
    raw = valid_frames()[base]
    what = draw(st.sampled_from(("empty_primary", "header_only", "extra_hdus", "cube", "one_d", "zero_size",
                                 "nested_fits", "table_only", "groups")))
    if what == "empty_primary":
        return f"{base} {what}", _hdul_bytes([fits.PrimaryHDU()])
    if what == "header_only":  # the header says 256² but the file ends with it
        end = raw.find(b"END" + b" " * 77)
        return f"{base} {what}", raw[: (end // 2880 + 1) * 2880]
    if what == "extra_hdus":
        extras = [fits.ImageHDU(np.zeros((3, 4, 5), dtype=np.float32)),
                  fits.BinTableHDU.from_columns([fits.Column(name="a", format="E", array=np.zeros(3))]),
                  fits.ImageHDU(np.zeros(7, dtype=np.int16)), fits.ImageHDU(data[:16, :16], header=header)]
        chosen = draw(st.lists(st.sampled_from(range(len(extras))), min_size=1, max_size=4))
        image_first = draw(st.booleans())
        image = [fits.ImageHDU(data, header=header)]
        hdus = [fits.PrimaryHDU()] + (image if image_first else []) + [extras[i].copy() for i in chosen] + ([] if image_first else image)
        return f"{base} {what} {chosen} image_first={image_first}", _hdul_bytes(hdus)
    if what == "cube":
        return f"{base} {what}", _hdul_bytes([fits.PrimaryHDU(np.stack([data, data]))])
    if what == "one_d":
        return f"{base} {what}", _hdul_bytes([fits.PrimaryHDU(data.ravel())])
    if what == "zero_size":
        return f"{base} {what}", set_card(set_card(raw, "NAXIS1", "0"), "ZNAXIS1", "0")
    if what == "nested_fits":  # the valid file as the bytes of an extension
        return f"{base} {what}", _hdul_bytes([fits.PrimaryHDU(), fits.ImageHDU(np.frombuffer(raw, dtype=np.uint8))])
    if what == "table_only":
        return f"{base} {what}", _hdul_bytes([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
            [fits.Column(name="image", format=f"{data.size}E", dim=f"({data.shape[1]},{data.shape[0]})", array=data[None])])])
    groups = fits.GroupData(np.zeros((1, 1, 4, 4), dtype=np.float32), parnames=["abc"], pardata=[np.zeros(1)],
                            bitpix=-32)
    return f"{base} {what}", _hdul_bytes([fits.GroupsHDU(groups)])


@st.composite
def byte_edits(draw) -> tuple[str, bytes]:
    """The file truncated at any offset, bytes overwritten, or replaced by random bytes (some with a FITS start)."""
    base = draw(bases)
    raw = valid_frames()[base]
    what = draw(st.sampled_from(("truncate", "overwrite", "random", "random_after_simple")))
    if what == "truncate":
        cut = draw(st.integers(0, len(raw) - 1))
        return f"{base} truncated at {cut} of {len(raw)}", raw[:cut]
    if what == "overwrite":
        at = draw(st.integers(0, len(raw) - 1))
        junk = draw(st.binary(min_size=1, max_size=256))
        return f"{base} {len(junk)} bytes overwritten at {at}", raw[:at] + junk + raw[at + len(junk):]
    junk = draw(st.binary(max_size=6000))
    if what == "random_after_simple":
        junk = f"{'SIMPLE':<8}= {'T':>20}".ljust(CARD).encode() + junk
    return f"{what} ({len(junk)} bytes)", junk


@st.composite
def hostile_fits(draw) -> tuple[str, bytes]:
    """A hostile file: any of the mutations above, gzip-compressed at times (the CLI and fits.open take .gz)."""
    kind, raw = draw(st.one_of(keyword_edits(), data_edits(), structure_edits(), byte_edits()))
    if draw(st.integers(0, 9)) == 0:
        packed = gzip.compress(raw, compresslevel=1)
        cut = draw(st.sampled_from((len(packed), len(packed) // 2)))
        kind, raw = f"gzip({kind}){' truncated' if cut < len(packed) else ''}", packed[:cut]
    return kind, raw


class Hang(BaseException):  # not an Exception: the reader's own handlers must not turn it into an IngestError
    """A read ran past :data:`TIME_LIMIT_S`."""


def _alarm(signum, frame):
    raise Hang(f"read took longer than {TIME_LIMIT_S} s")


def check_read(path: Path) -> Magnetogram | IngestError:
    """The property: reading ``path`` (as the service does, :func:`read_frame` to MDI, and raw,
    :func:`read_magnetogram`) returns a usable frame or raises an :class:`IngestError` naming the file, within
    :data:`TIME_LIMIT_S` and :data:`MEMORY_LIMIT_KB`. Returns what :func:`read_frame` gave; anything else raises."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIME_LIMIT_S)
    t0 = time.monotonic()
    before_kb = _reset_peak_rss()
    # A read that would allocate far past the limit fails with MemoryError here instead of taking the whole test
    # run down with the machine's OOM killer; the assertion below then names it.
    limit = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (_status_kb("VmData") * 1024 + 4 * MEMORY_LIMIT_KB * 1024, limit[1]))
    try:
        outcomes = []
        for read in (read_magnetogram, lambda p: read_frame(p, MDI_SPEC)):
            try:
                mag = read(path)
            except IngestError as exc:
                assert exc.path == path and str(path) in str(exc) and exc.problem.strip(), f"unclear error: {exc!r}"
                assert "MemoryError" not in exc.problem, f"reading tried to allocate several GiB: {exc!r}"
                outcomes.append(exc)
            else:
                assert mag.data.ndim == 2 and mag.data.dtype == np.float32 and np.isfinite(mag.data).all()
                assert mag.on_disk.shape == mag.data.shape and mag.on_disk.any()
                outcomes.append(mag)
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, limit)
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - t0 < TIME_LIMIT_S
    grew_kb = _status_kb("VmHWM") - before_kb
    assert grew_kb < MEMORY_LIMIT_KB, f"reading raised resident memory by {grew_kb / 1024:.0f} MiB"
    return outcomes[-1]


def _status_kb(field: str) -> int:
    """One memory figure of this process from ``/proc/self/status`` (kB)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(f"{field}:"))


def _reset_peak_rss() -> int:
    """Reset this process's peak resident memory to its current value (Linux ``clear_refs`` 5); returns it (kB)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    return _status_kb("VmRSS")
