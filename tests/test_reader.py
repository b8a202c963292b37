"""Bounded reads (issue 30): a file that makes the reader exceed its memory or its time limit is rejected with the
limit it hit, and the service goes on to score the next frame."""
import pickle

import numpy as np
import pytest
from astropy.io import fits

from ingest.errors import MemoryLimitError, QualityError, TimeLimitError
from serving.compose import open_service
from tests.test_serving import config, drop


def decompression_bomb(like, path):
    """An 8192² Rice-compressed frame of zeros (the largest image the reader takes): 1.4 MB on disk, 256 MB
    decompressed and as much again as physical values."""
    header = fits.getheader(like)
    scale = 8192 / header["NAXIS1"]
    image = fits.CompImageHDU(np.zeros((8192, 8192), dtype=np.int32), header=header, compression_type="RICE_1")
    for key in ("CRPIX1", "CRPIX2"):
        image.header[key] = (header[key] - 0.5) * scale + 0.5
    for key in ("CDELT1", "CDELT2"):
        image.header[key] = header[key] / scale
    fits.HDUList([fits.PrimaryHDU(), image]).writeto(path)
    return path


def header_of_many_cards(like, path, cards=300_000):
    """A valid frame whose header holds ``cards`` COMMENT cards (24 MB): astropy parses it in about 5 s."""
    raw = like.read_bytes()
    end = next(i for i in range(0, len(raw), 80) if raw[i:i + 8] == b"END     ")
    data = (end // 2880 + 1) * 2880
    header = raw[:end] + b"".join(f"COMMENT {i:<72d}".encode() for i in range(cards)) + raw[end:end + 80]
    path.write_bytes(header + b" " * (-len(header) % 2880) + raw[data:])
    return path


@pytest.mark.parametrize("reason, limit, hostile, words", [
    # A reader process starts at about 0.7 GB of address space (the libraries it has loaded, on this 2-core machine)
    ("memory_limit", {"read_memory_bytes": 2**30}, decompression_bomb, "more memory than the reader's limit of 1.0 GiB"),
    ("time_limit", {"read_timeout": "1.5 s"}, header_of_many_cards, "took longer than the reader's limit of 1.5 s"),
])
def test_a_file_exceeding_a_readers_limit_is_rejected_and_the_next_frame_scored(tmp_path, tiny_bundle, frames, reason,
                                                                                 limit, hostile, words):
    path = hostile(frames[5], tmp_path / "hostile.fits")
    service = open_service(config(tmp_path, tiny_bundle, **limit))
    try:
        drop([path], service.dir)
        assert service.run_cycle() == 0
        said = (service.inbox.rejected / "hostile.fits.error.txt").read_text()
        assert "hostile.fits" in said and words in said, said
        assert service.metrics.frames_rejected.labels(reason=reason)._value.get() == 1
        drop(frames[:1], service.dir)
        assert service.run_cycle() == 1 and service.store.has_frame(service.store.newest_frame()[0])
    finally:
        service.close()


@pytest.mark.parametrize("error", [MemoryLimitError("a.fits", "too much"), TimeLimitError("a.fits", "too long"),
                                   QualityError("a.fits", "QUALITY", bits=["QUAL_ECLIPSE"], instrument="SDO/HMI")])
def test_an_ingest_error_crosses_from_the_reader_process_whole(error):
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error) and str(back) == str(error) and back.__dict__ == error.__dict__
