"""Deterministic parallel gzip: one gzip member, compressed pigz-style on every core.

The uncompressed stream is cut at fixed offsets into jobs of :data:`JOB` bytes, whatever the number
of cores. Each job is deflated on its own (on worker threads: zlib releases the GIL) with the
:data:`WINDOW` bytes before it as preset dictionary, so back-references across a job boundary
are not lost; every job but the last ends with a sync flush, which byte-aligns the raw deflate
stream so the jobs' outputs concatenate into one valid deflate stream (the last ends it). The CRC
of each full job is computed by its worker and chained in order (CRC-32 is linear in its start).

Inside a job, each :data:`PIECE` is sampled: when its sample looks random (not ASCII, and nearly
every byte value present), the piece is taken as incompressible (random data, already compressed
files) and written as stored deflate blocks — a copy instead of a futile search. Runs of compressible pieces are deflated
at the configured level, again with the preceding :data:`WINDOW` bytes as dictionary.

The level may change part-way (:meth:`ParallelGzip.set_level`): the bytes before end a job there.
Every decision depends only on the bytes, the levels, where they change and these constants, never on
the number of workers or thread timing, so the output is byte-identical for the same input and the same zlib.
A stream of at most one job whose pieces all compress is byte-identical to a plain single
``zlib.compressobj`` member.
"""

from __future__ import annotations

import os
import struct
import threading
import weakref
import zlib
from collections import deque
from queue import SimpleQueue
from typing import Protocol, Tuple

__all__ = ["JOB", "PIECE", "WINDOW", "ParallelGzip", "crc_past_job", "default_workers", "deflate_job"]

#: Bytes of uncompressed stream per job (the unit of parallelism). Fixed: the output depends on it.
JOB = 1 << 19
#: The unit of the compressible/incompressible decision inside a job.
PIECE = 1 << 14
#: Deflate's window: the history handed to the next run as preset dictionary.
WINDOW = 1 << 15
_SAMPLE = 512  # bytes sampled from the middle of each piece
_DISTINCT = 192  # distinct byte values in a sample above which a piece is taken as incompressible
_STORED_MAX = 0xFFFF  # a stored block holds at most 65,535 bytes
_FINAL_EMPTY_STORED = b"\x01\x00\x00\xff\xff"  # BFINAL=1, stored, length 0
#: CRC-32 is linear in its starting value: ``crc32(job, c) == crc32(job) ^ L(c)``, where ``L`` moves a
#: CRC past :data:`JOB` zero bytes. ``L`` of bit ``i`` is ``crc32(bytes(JOB), 1 << i) ^ crc32(bytes(JOB))``
#: (a test recomputes these); with them a worker computes its job's CRC and the writer only chains them.
_PAST_JOB = (
    0x6F76172E, 0xDEEC2E5C, 0x66A95AF9, 0xCD52B5F2, 0x41D46DA5, 0x83A8DB4A, 0xDC20B0D5, 0x633067EB,
    0xC660CFD6, 0x57B099ED, 0xAF6133DA, 0x85B361F5, 0xD017C5AB, 0x7B5E8D17, 0xF6BD1A2E, 0x360B321D,
    0x6C16643A, 0xD82CC874, 0x6B2896A9, 0xD6512D52, 0x77D35CE5, 0xEFA6B9CA, 0x043C75D5, 0x0878EBAA,
    0x10F1D754, 0x21E3AEA8, 0x43C75D50, 0x878EBAA0, 0xD46C7301, 0x73A9E043, 0xE753C086, 0x15D6874D,
)


_JobArgs = Tuple[memoryview, bytes, int, bool, bool]  # a job buffer's filled part, history, level, final, full


class _Sink(Protocol):
    def write(self, data: bytes | memoryview, /) -> object: ...


def default_workers() -> int:
    """The cores this process may run on (the output never depends on it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _incompressible(piece: memoryview) -> bool:
    """Random-looking: a sample from the middle of the piece is not ASCII and holds more than
    :data:`_DISTINCT` different byte values (random bytes give about 221 of 512, text under 100)."""
    start = max(0, (len(piece) - _SAMPLE) // 2)
    sample = bytes(piece[start : start + _SAMPLE])
    return len(sample) == _SAMPLE and not sample.isascii() and len(set(sample)) > _DISTINCT


def _stored(data: memoryview, out: list[bytes | memoryview]) -> None:
    for start in range(0, len(data), _STORED_MAX):
        block = data[start : start + _STORED_MAX]
        out.append(struct.pack("<BHH", 0, len(block), len(block) ^ 0xFFFF))
        out.append(block)


def crc_past_job(crc: int) -> int:
    """``L(crc)`` above: what ``crc`` becomes after :data:`JOB` zero bytes, less what zeros alone give."""
    moved = 0
    for column in _PAST_JOB:
        if crc & 1:
            moved ^= column
        crc >>= 1
    return moved


def _deflate_and_crc(data: memoryview, history: bytes, level: int, final: bool, full: bool) -> tuple[bytes, int]:
    """A worker's share of a job: its deflate, and for a ``full`` job its own CRC-32 (from zero; a shorter
    job's, the last or one ended by :meth:`ParallelGzip.set_level`, is chained from its bytes)."""
    return deflate_job(data, history, level, final), zlib.crc32(data) if full else 0


class _Job:
    """One job handed to the workers; :meth:`result` waits for it."""

    __slots__ = ("args", "cancelled", "done", "error", "output")

    def __init__(self, args: _JobArgs) -> None:
        self.args: _JobArgs | None = args
        self.cancelled = False
        self.done = threading.Lock()
        self.done.acquire()  # released by the worker that ran (or skipped) it
        self.output: tuple[bytes, int] | None = None
        self.error: BaseException | None = None

    def result(self) -> tuple[bytes, int]:
        with self.done:
            if self.error is not None:
                raise self.error
            assert self.output is not None, "a cancelled job has no result"
            return self.output


def _work(jobs: SimpleQueue[_Job | None]) -> None:
    """A worker thread: runs jobs until it meets ``None``, which it puts back for the next thread."""
    while (job := jobs.get()) is not None:
        try:
            if not job.cancelled and job.args is not None:
                job.output = _deflate_and_crc(*job.args)
        except BaseException as error:  # handed to the thread that waits for the job
            job.error = error
        finally:
            job.args = None  # its input is not kept while the output waits its turn
            job.done.release()
    jobs.put(None)


class _Workers:
    """Threads that deflate jobs in the order they are submitted. ``concurrent.futures`` would do, but
    its import (``logging``, ``traceback``) costs the command line more at start than this class.
    One ``None`` in the queue stops every thread, so no count can go wrong (an interrupt between two
    steps of :meth:`submit` included); a pool dropped without :meth:`shutdown` stops its threads too."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._jobs: SimpleQueue[_Job | None] = SimpleQueue()
        self._threads: list[threading.Thread] = []
        weakref.finalize(self, self._jobs.put, None)

    def submit(self, args: _JobArgs) -> _Job:
        job = _Job(args)
        self._jobs.put(job)
        if len(self._threads) < self.count:  # started as jobs come, as many as ``count``
            thread = threading.Thread(
                target=_work, args=(self._jobs,), name=f"detmodel-gzip_{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)  # before it runs: shutdown joins every thread that may run
            try:
                thread.start()
            except BaseException:
                if not thread.is_alive():
                    self._threads.remove(thread)
                raise
        return job

    def shutdown(self) -> None:
        """Stop the threads once the jobs before are done (or skipped: see :attr:`_Job.cancelled`)."""
        self._jobs.put(None)
        for thread in self._threads:
            thread.join()
        self._threads.clear()


def deflate_job(data: bytes | memoryview, history: bytes, level: int, final: bool) -> bytes:
    """Raw deflate of one job: ends byte-aligned with a sync flush, or with the final block."""
    view = memoryview(data)
    n = len(data)
    # Classify pieces; consecutive pieces of one kind form a run.
    runs: list[tuple[int, int, bool]] = []  # (start, end, compress)
    if level > 0 and n:
        for start in range(0, n, PIECE):
            end = min(n, start + PIECE)
            compress = not _incompressible(view[start:end])
            if runs and runs[-1][2] == compress:
                runs[-1] = (runs[-1][0], end, compress)
            else:
                runs.append((start, end, compress))
    elif n:
        runs.append((0, n, True))
    out: list[bytes | memoryview] = []
    ended = False
    for index, (start, end, compress) in enumerate(runs):
        if not compress:
            _stored(view[start:end], out)
            continue
        if start >= WINDOW:
            window = data[start - WINDOW : start]
        else:
            window = history[max(0, len(history) - (WINDOW - start)) :] + data[:start]
        if window:
            deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, 8, zlib.Z_DEFAULT_STRATEGY, zdict=window)
        else:
            deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, 8, zlib.Z_DEFAULT_STRATEGY)
        out.append(deflate.compress(view[start:end]))
        last = final and index == len(runs) - 1
        out.append(deflate.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH))
        ended = last
    if final and not ended:
        out.append(_FINAL_EMPTY_STORED)
    return b"".join(out)


def _checked_level(level: int) -> int:
    if not 0 <= level <= 9:
        raise ValueError(f"compression level must be 0-9, not {level}")
    return level


class ParallelGzip:
    """A writable gzip stream: ``write`` the uncompressed bytes, then ``close``.

    At most ``workers + 1`` jobs are in flight, so memory stays a few MiB whatever the input.
    ``workers=1`` compresses in the calling thread; the bytes are the same for any ``workers``.

    Writes are copied into a job buffer of :data:`JOB` bytes, which is handed to a worker as it is
    and taken back for the next job once its output is written: at most ``workers + 2`` buffers serve
    the whole stream. A growing buffer cut into a fresh ``bytes`` per job cost a copy more and met
    new pages (a page fault is ≈ 5 µs here): the command line's faults fell from ≈ 12,500 to 8,500 on
    20,000 small files and from ≈ 24,000 to 8,500 on 90 MB, which it now packs in 8 % less time.
    """

    def __init__(self, out: _Sink, level: int, workers: int | None = None) -> None:
        self.out = out
        self.level = _checked_level(level)
        self.crc = 0
        self.size = 0
        self.workers = default_workers() if workers is None else max(1, workers)
        # The job being filled, up to _filled, written through a view: assigning to a bytearray's
        # slice would first copy anything but a bytearray.
        self._job = memoryview(bytearray(JOB))
        self._filled = 0
        self._spare: list[memoryview] = []  # job buffers whose output is written, for the next jobs
        self._history = b""
        # jobs in flight, each with its buffer, and with its length when it is shorter than JOB (the
        # last, or one that set_level ended): its CRC is chained from the bytes, not from the worker's
        self._pending: deque[tuple[_Job, memoryview, int]] = deque()
        self._pool = _Workers(self.workers) if self.workers > 1 else None
        self._closed = False
        xfl = 2 if level == 9 else 4 if level == 1 else 0
        out.write(b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + bytes([xfl, 255]))

    def write(self, data: bytes | bytearray | memoryview) -> None:
        size = len(data)
        self.size += size
        filled = self._filled
        if filled + size < JOB:
            self._job[filled : filled + size] = data
            self._filled = filled + size
            return
        with memoryview(data) as view:
            taken = JOB - filled
            self._job[filled:] = view[:taken]
            self._filled = JOB
            self._dispatch(final=False)
            while size - taken >= JOB:
                self._job[:] = view[taken : taken + JOB]
                self._filled = JOB
                self._dispatch(final=False)
                taken += JOB
            self._job[: size - taken] = view[taken:]
            self._filled = size - taken

    def _dispatch(self, final: bool) -> None:
        """Hand the job buffer's filled bytes to be compressed and, unless they are the last, start another."""
        buffer, length = self._job, self._filled
        job = buffer[:length] if length < JOB else buffer
        history = self._history
        self._history = bytes(job[-WINDOW:]) if length >= WINDOW else (history + job)[-WINDOW:]
        if self._pool is None:
            self.crc = zlib.crc32(job, self.crc)
            self.out.write(deflate_job(job, history, self.level, final))
            self._filled = 0
            return
        full = not final and length == JOB  # its CRC comes from the worker and chains through the table
        self._pending.append((self._pool.submit((job, history, self.level, final, full)), buffer, length))
        if not final:  # the last job needs no buffer after it (a small build has one buffer in all)
            self._job = self._spare.pop() if self._spare else memoryview(bytearray(JOB))
        self._filled = 0
        while len(self._pending) > self.workers:
            self._write_oldest()

    def _write_oldest(self) -> None:
        """Write the oldest job's output and chain its CRC (jobs finish in any order, but leave in
        order); its buffer is then free for a later job."""
        pending, buffer, length = self._pending.popleft()
        deflated, job_crc = pending.result()
        if length == JOB:
            self.crc = crc_past_job(self.crc) ^ job_crc
        else:
            self.crc = zlib.crc32(buffer[:length], self.crc)
        self.out.write(deflated)
        self._spare.append(buffer)

    def set_level(self, level: int) -> None:
        """Compress what is written from now on at ``level``. The bytes written so far end a job here
        (a short one), so the output still depends only on the bytes and where the level changed."""
        if _checked_level(level) != self.level:
            if self._filled:
                self._dispatch(final=False)
            self.level = level

    def drain(self) -> None:
        """Wait for the jobs in flight and write them out (frees their memory; the bytes are unchanged)."""
        while self._pending:
            self._write_oldest()

    def close(self) -> None:
        """Compress what is left, write the trailer, and stop the workers."""
        if self._closed:
            return
        self._closed = True
        try:
            self._dispatch(final=True)
            self.drain()
            self.out.write(struct.pack("<II", self.crc & 0xFFFFFFFF, self.size & 0xFFFFFFFF))
        finally:
            self.abort()

    def abort(self) -> None:
        """Stop the workers without writing more (after an error)."""
        self._closed = True
        for pending, _, _ in self._pending:
            pending.cancelled = True  # not started yet: skipped
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> ParallelGzip:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.abort()
