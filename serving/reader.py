"""Untrusted FITS read in worker processes, under a memory and a time limit.

The feed's files and the uploads are read (:func:`ingest.magnetogram.read_frame`) by a worker process whose
address space is capped (``read_memory_bytes``) and which is stopped when a read takes longer than
``read_timeout``. A file that would make the reader allocate without bound (a small compressed file that
decompresses to gigabytes) or stall it (a header of a million cards) becomes a rejected frame naming the limit
it hit, and the service goes on with a fresh worker. Reads start as soon as the files are seen
(:meth:`FrameReader.start`), so the next frame is read while the current one is scored.

The workers fork from a server process that has imported the reading code once (``forkserver``), so a worker
replaced after a limit is ready in a fraction of a second.
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import resource
import signal
import threading
import time
import weakref
from collections.abc import Collection, Iterable
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from astropy.time import Time
from pebble import ProcessExpired, ProcessFuture, ProcessPool

from ingest.errors import MemoryLimitError, ReaderDiedError, TimeLimitError
from ingest.instruments import InstrumentSpec
from ingest.magnetogram import Magnetogram, observation_time, read_frame, read_header

#: What the workers fork from: a server that imported the reader's code once (not this process, which runs threads).
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["ingest.magnetogram", "sunpy.map"])


#: In a worker: its address-space limit, bytes.
_limit = 0


def _limit_memory(limit_bytes: int) -> None:
    global _limit
    _limit = limit_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))


def _bounded(function, path: str, *args) -> bytes:
    """``function(path, *args)`` in a worker, pickled here (a result too large to pickle under the limit is a memory
    error too); a memory error at the limit made a :class:`MemoryLimitError` once the arrays it held are let go
    (raised within the ``except``, its traceback would keep them, and the worker could not even report it)."""
    try:
        return pickle.dumps(function(path, *args), protocol=pickle.HIGHEST_PROTOCOL)
    except MemoryError:
        pass
    raise MemoryLimitError(path, f"reading it needs more memory than the reader's limit of {_limit / 2**30:.1f} GiB "
                                 "(read_memory_bytes)")


def _stop(pool: ProcessPool) -> None:
    pool.stop()
    pool.join()


def _header_time(path: str) -> Time:
    return observation_time(path, read_header(path))


def _timed_read(path: str, instrument: InstrumentSpec, refused_quality: list[str] | None) -> tuple[Magnetogram, float]:
    """The frame and the seconds its read took."""
    t0 = time.perf_counter()
    return read_frame(path, instrument, refused_quality), time.perf_counter() - t0


class FrameReader:
    """Reads frames in ``workers`` processes of at most ``memory_limit`` bytes of address space each, ``timeout_s``
    seconds a file; brings them to ``instrument``, refusing the QUALITY bits ``refused_quality`` (names; each
    instrument's default when None)."""

    def __init__(self, instrument: InstrumentSpec, refused_quality: Collection[str] | None, memory_limit: int,
                 timeout_s: float, workers: int = 1):
        self.instrument, self.memory_limit, self.timeout_s = instrument, int(memory_limit), float(timeout_s)
        self.refused_quality = None if refused_quality is None else list(refused_quality)
        self.workers = workers
        self._reads: dict[Path, ProcessFuture] = {}
        self._lock = threading.Lock()
        # Started now, and waited for: the first file (an upload waits for its header's check) finds a worker ready.
        self._pool: ProcessPool | None = self._new_pool()
        self._pool.schedule(os.getpid).result()

    def _new_pool(self) -> ProcessPool:
        pool = ProcessPool(self.workers, initializer=_limit_memory, initargs=(self.memory_limit,), context=_CONTEXT)
        self._finalizer = weakref.finalize(self, _stop, pool)  # a reader dropped without close() stops its workers
        return pool

    def _pool_now(self) -> ProcessPool:
        if self._pool is None:  # closed, then used again
            self._pool = self._new_pool()
        return self._pool

    def start(self, paths: Iterable[Path]) -> None:
        """Start reading ``paths`` (those not being read already)."""
        with self._lock:
            for path in paths:
                if path not in self._reads:
                    self._reads[path] = self._pool_now().schedule(
                        _bounded, (_timed_read, str(path), self.instrument, self.refused_quality),
                        timeout=self.timeout_s)

    def read(self, path: Path) -> tuple[Magnetogram, float]:
        """The frame at ``path`` and the seconds its read took in the worker. Raises the file's
        :class:`~ingest.errors.IngestError`, or :class:`~ingest.errors.TimeLimitError` or
        :class:`~ingest.errors.ReaderDiedError` when its worker was stopped or died."""
        self.start([path])
        with self._lock:
            future = self._reads.pop(path)
        return self._result(path, future)

    def header_time(self, path: Path) -> Time:
        """The observation time in the validated header of the file at ``path``
        (:func:`ingest.magnetogram.read_header`), read under the same limits; raises as :meth:`read`."""
        with self._lock:
            future = self._pool_now().schedule(_bounded, (_header_time, str(path)), timeout=self.timeout_s)
        return self._result(path, future)

    def _result(self, path: Path, future: ProcessFuture):
        try:
            return pickle.loads(future.result())
        except FutureTimeout:
            raise TimeLimitError(path, f"reading it took longer than the reader's limit of {self.timeout_s:g} s "
                                       "(read_timeout): stopped") from None
        except ProcessExpired as exc:
            code = exc.exitcode
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            raise ReaderDiedError(path, f"the process reading it died ({how})") from None

    def forget(self, keep: Collection[Path]) -> None:
        """Drop the reads of files no longer waiting (all but ``keep``); one under way ends by itself."""
        with self._lock:
            for path in [p for p in self._reads if p not in keep]:
                del self._reads[path]

    def close(self) -> None:
        """Stop the workers."""
        with self._lock:
            if self._pool is not None:
                self._finalizer()
                self._pool = None
            self._reads.clear()
