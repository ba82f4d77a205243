"""The archive writer's compression strategy (``hatch_detmodel.compress``): every reader accepts the
stream, and the bytes depend only on the input, never on the number of workers or write sizes."""

from __future__ import annotations

import gc
import gzip
import io
import random
import shutil
import struct
import subprocess
import tarfile
import threading
import time
import zlib
from pathlib import Path

import pytest

from hatch_detmodel import build, compress, pipeline
from hatch_detmodel.archive import GzipWriter
from hatch_detmodel.compress import JOB, PIECE, ParallelGzip
from hatch_detmodel.config import ProjectIdentity
from hatch_detmodel.reader import read_artifact

from .conftest import ProjectFactory, require, run

IDENTITY = ProjectIdentity("demo-project", "1.2.3")
TEXT = Path(compress.__file__).read_bytes()


def text(rng: random.Random, size: int) -> bytes:
    start = rng.randrange(len(TEXT))
    return (TEXT[start:] + TEXT * (size // len(TEXT) + 1))[:size]


def mixed(seed: int, size: int) -> bytes:
    """Text and random runs of random lengths, crossing pieces and jobs at every alignment."""
    rng = random.Random(seed)
    parts, total = [], 0
    while total < size:
        length = rng.choice([rng.randrange(1, 600), rng.randrange(PIECE // 2, 3 * PIECE), rng.randrange(JOB // 2, JOB)])
        parts.append(rng.randbytes(length) if rng.random() < 0.45 else text(rng, length))
        total += length
    return b"".join(parts)[:size]


def single_member(data: bytes, level: int) -> bytes:
    """What one plain zlib member gives: the format we stay byte-identical with for small inputs."""
    deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, 8, zlib.Z_DEFAULT_STRATEGY)
    xfl = 2 if level == 9 else 4 if level == 1 else 0
    body = deflate.compress(data) + deflate.flush()
    return b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + bytes([xfl, 255]) + body + struct.pack("<II", zlib.crc32(data), len(data))


def compressed(data: bytes, level: int, workers: int, step: int) -> bytes:
    out = io.BytesIO()
    writer = ParallelGzip(out, level, workers)
    for start in range(0, len(data), step):
        writer.write(data[start : start + step])
    writer.close()
    return out.getvalue()


@pytest.mark.parametrize("size", [0, 1, PIECE - 1, JOB - 1, JOB, JOB + 1, 2 * JOB, 3 * JOB + 4099])
@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_same_bytes_for_any_worker_count_and_write_size(size: int, level: int) -> None:
    data = mixed(size + level, size)
    outputs = {compressed(data, level, workers, step) for workers in (1, 2, 3) for step in (1000, 65536, JOB + 3)}
    assert len(outputs) == 1
    (output,) = outputs
    assert gzip.decompress(output) == data
    assert zlib.decompress(output, 31) == data  # one member: even single-member readers take it
    decompressor = zlib.decompressobj(31)
    assert decompressor.decompress(output) == data and decompressor.eof and not decompressor.unused_data


def test_job_buffers_are_reused_and_callers_may_reuse_what_they_wrote() -> None:
    # Ten jobs through two workers: the writer copies every write into a few job buffers it takes back
    # once their output is written, so neither a buffer refilled while a worker deflates nor a caller
    # overwriting its own bytearray after the call can change the output.
    data = mixed(7, 10 * JOB + 123)
    out = io.BytesIO()
    writer = ParallelGzip(out, 6, 2)
    scratch = bytearray()
    kinds = (bytes, bytearray, memoryview)
    buffers: dict[int, object] = {}  # every job buffer seen, kept alive so that no id is reused
    for number, start in enumerate(range(0, len(data), 70_001)):
        scratch[:] = data[start : start + 70_001]
        writer.write(kinds[number % 3](scratch) if number % 2 else scratch)
        scratch[:] = b"\xff" * len(scratch)  # the caller's buffer, overwritten after each write
        for job in (writer._job, *writer._spare, *(job for _, job, _ in writer._pending)):
            buffers[id(job.obj)] = job.obj
    writer.close()
    assert out.getvalue() == compressed(data, 6, 1, JOB)
    assert len(buffers) <= writer.workers + 2  # filled, at most `workers` in flight, one taken back


def compressed_with_switch(data: bytes, switch_at: int, levels: tuple[int, int], workers: int, step: int) -> bytes:
    out = io.BytesIO()
    writer = ParallelGzip(out, levels[0], workers)
    for part, level in ((data[:switch_at], levels[0]), (data[switch_at:], levels[1])):
        writer.set_level(level)
        for start in range(0, len(part), step):
            writer.write(part[start : start + step])
    writer.close()
    return out.getvalue()


@pytest.mark.parametrize("switch_at", [0, 1, JOB - 1, JOB, JOB + 4099, 2 * JOB + 7])
@pytest.mark.parametrize("levels", [(5, 1), (0, 6), (9, 9)])
def test_a_level_change_part_way_depends_only_on_the_bytes_and_where(switch_at: int, levels: tuple[int, int]) -> None:
    # The manifest is compressed at a lower level than the files: a job ends where the level changes,
    # chained by CRC from its bytes; whatever the workers and write sizes, the same bytes come out.
    data = mixed(switch_at + levels[0], 3 * JOB + 5000)
    outputs = {compressed_with_switch(data, switch_at, levels, workers, step) for workers in (1, 2, 3)
               for step in (1000, JOB + 3)}
    assert len(outputs) == 1
    (output,) = outputs
    assert zlib.decompress(output, 31) == data and gzip.decompress(output) == data  # CRC and size checked
    if levels[0] == levels[1]:
        assert output == compressed(data, levels[0], 2, JOB)  # no change, no extra job boundary
    elif levels == (5, 1):
        assert output != compressed(data, 5, 2, JOB)  # the tail really is compressed otherwise


@pytest.mark.parametrize("level", [-1, 10])
def test_a_level_outside_0_to_9_is_refused(level: int) -> None:
    with pytest.raises(ValueError, match="0-9"):
        ParallelGzip(io.BytesIO(), level, 1)
    with pytest.raises(ValueError, match="0-9"):
        ParallelGzip(io.BytesIO(), 5, 1).set_level(level)


def test_job_crcs_chain_like_one_crc_over_the_stream() -> None:
    # The workers' CRCs (each from zero) chain through the table of what JOB zero bytes do to a CRC.
    zeros = bytes(JOB)
    assert tuple(zlib.crc32(zeros, 1 << bit) ^ zlib.crc32(zeros) for bit in range(32)) == compress._PAST_JOB
    rng = random.Random(3)
    jobs = [rng.randbytes(JOB) for _ in range(3)]
    chained = 0
    for job in jobs:
        chained = compress.crc_past_job(chained) ^ zlib.crc32(job)
    assert chained == zlib.crc32(b"".join(jobs))


@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_one_compressible_job_is_a_plain_zlib_member(level: int) -> None:
    data = text(random.Random(level), JOB - 10)
    assert compressed(data, level, 2, 4096) == single_member(data, level)


def test_random_data_is_stored_and_text_keeps_its_ratio() -> None:
    rng = random.Random(7)
    noise = rng.randbytes(3 * JOB)
    stored = compressed(noise, 6, 2, JOB)
    assert len(stored) < len(noise) * 1.001  # stored blocks: 5 bytes per 64 KiB
    prose = text(rng, 4 * JOB)
    ours, plain = len(compressed(prose, 6, 2, JOB)), len(single_member(prose, 6))
    assert ours <= plain * 1.005  # the preset dictionary keeps the ratio across jobs


def _workers_alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("detmodel-gzip")]


def _workers_end(timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while _workers_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    return not _workers_alive()


def test_writer_stops_its_workers_on_abort() -> None:
    writer = ParallelGzip(io.BytesIO(), 6, 2)
    writer.write(mixed(1, 3 * JOB))
    assert len(_workers_alive()) == 2
    writer.abort()
    assert writer._pool is None and _workers_alive() == []
    writer.abort()  # twice is harmless


def test_a_failing_job_reaches_the_writer_and_the_workers_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    real = compress._deflate_and_crc
    calls = iter(range(100))

    def second_fails(*args: object) -> tuple[bytes, int]:
        if next(calls) == 1:
            raise MemoryError("job 2")
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(compress, "_deflate_and_crc", second_fails)
    out = io.BytesIO()
    with pytest.raises(MemoryError, match="job 2"), ParallelGzip(out, 6, 2) as writer:
        writer.write(mixed(2, 6 * JOB))
    assert _workers_alive() == []


def test_a_writer_dropped_without_close_stops_its_workers() -> None:
    writer = ParallelGzip(io.BytesIO(), 6, 2)
    writer.write(mixed(3, 3 * JOB))
    writer.drain()
    del writer
    gc.collect()
    assert _workers_end()


@pytest.fixture
def mixed_project(make_project: ProjectFactory) -> Path:
    rng = random.Random(11)
    files: dict[str, str | bytes] = {"model_def.py": "class MyTrial: pass\n"}
    for i in range(40):
        files[f"pkg/mod_{i:02d}.py"] = text(rng, rng.randrange(10, 60_000))
    for i in range(6):
        files[f"assets/blob_{i}.bin"] = rng.randbytes(rng.randrange(100_000, 400_000))
    files["/".join(["deep" * 20] * 2) + "/ünïcode.py"] = "x = 1\n"
    files["empty.txt"] = ""
    return make_project(files=files)


def test_artifact_reproducible_whatever_the_worker_count(
    mixed_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digests = set()
    used: list[int] = []
    for run_index, workers in enumerate((1, 2, 4, 1)):
        def forced(workers: int = workers) -> int:
            used.append(workers)
            return workers

        monkeypatch.setattr(compress, "default_workers", forced)
        archive, sidecar = build(mixed_project, tmp_path / f"out-{run_index}", identity=IDENTITY)
        digests.add((archive.read_bytes(), sidecar.read_bytes()))
    assert used == [1, 2, 4, 1]  # the writer really ran with each worker count
    assert len(digests) == 1
    (archive_bytes, _), = digests
    assert len(gzip.decompress(archive_bytes)) > 2 * JOB  # several jobs, stored and deflated runs


@pytest.mark.parametrize("large", [True, False])
@pytest.mark.parametrize("level", [0, 1, 5, 9])
def test_a_large_manifest_alone_is_compressed_at_the_manifest_level(
    mixed_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, level: int, large: bool
) -> None:
    if large:  # this project's manifest is small: count it as large
        monkeypatch.setattr(pipeline, "LARGE_MANIFEST", 1)
    text = (mixed_project / "pyproject.toml").read_text()
    (mixed_project / "pyproject.toml").write_text(text + f"compression-level = {level}\n")
    switches: list[tuple[int, int]] = []
    real = ParallelGzip.set_level

    def recorded(self: ParallelGzip, new_level: int) -> None:
        switches.append((self.size, new_level))
        real(self, new_level)

    monkeypatch.setattr(ParallelGzip, "set_level", recorded)
    archive, _ = build(mixed_project, tmp_path / "out", identity=IDENTITY)
    with tarfile.open(archive) as tar:
        manifest_offset = tar.getmember(".detmodel.json").offset
    assert switches == ([(manifest_offset, min(level, pipeline.MANIFEST_LEVEL))] if large else [])
    assert gzip.decompress(archive.read_bytes())  # one valid stream, CRC and size included


def test_every_reader_accepts_the_artifact(mixed_project: Path, tmp_path: Path) -> None:
    archive, _ = build(mixed_project, tmp_path / "out", identity=IDENTITY)
    expected = {
        p.relative_to(mixed_project).as_posix(): p.read_bytes()
        for p in mixed_project.rglob("*")
        if p.is_file() and p.name != ".detignore"
    }
    # our strict reader: every hash, the manifest, the sidecar
    report = read_artifact(archive)
    assert report.ok, report.problems
    # Python's tarfile, streaming and random access
    with tarfile.open(archive, "r:gz") as tar:
        names = tar.getnames()
        assert names[-1] == ".detmodel.json"
        for name, data in expected.items():
            handle = tar.extractfile(name)
            assert handle is not None and handle.read() == data, name
    with tarfile.open(archive, "r|gz") as stream:
        assert [m.name for m in stream] == names
    # gzip -t and GNU tar
    require(shutil.which("gzip") is not None and shutil.which("tar") is not None, "gzip and GNU tar")
    run(["gzip", "-t", str(archive)])
    listing = run(["tar", "-tzf", str(archive)]).stdout.splitlines()
    assert listing == names
    target = tmp_path / "unpacked"
    target.mkdir()
    run(["tar", "-xzf", str(archive), "-C", str(target)])
    for name, data in expected.items():
        assert (target / name).read_bytes() == data, name
    assert subprocess.run(["gzip", "-dc", str(archive)], capture_output=True).stdout == gzip.decompress(archive.read_bytes())


def test_go_reader_accepts_the_artifact(mixed_project: Path, tmp_path: Path) -> None:
    """Determined's master reads uploads with Go's archive/tar over compress/gzip."""
    go = shutil.which("go")
    require(go is not None, "Go (`go`, Debian's golang-go; .ci/test.sh installs it)")
    assert go is not None
    archive, _ = build(mixed_project, tmp_path / "out", identity=IDENTITY)
    program = tmp_path / "main.go"
    program.write_text(GO_READER)
    result = run([go, "run", str(program), str(archive)], cwd=tmp_path, timeout=300)
    with tarfile.open(archive, "r:gz") as tar:
        expected = [f"{m.name} {m.size}" for m in tar.getmembers()]
    assert result.stdout.splitlines() == expected


def test_gzip_writer_is_the_parallel_writer() -> None:
    out = io.BytesIO()
    writer = GzipWriter(out, 6, workers=3)
    writer.write(b"abc" * 1000)
    writer.close()
    assert gzip.decompress(out.getvalue()) == b"abc" * 1000
    assert writer.size == 3000


GO_READER = """package main

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"os"
)

func main() {
	f, err := os.Open(os.Args[1])
	if err != nil {
		panic(err)
	}
	z, err := gzip.NewReader(f)
	if err != nil {
		panic(err)
	}
	t := tar.NewReader(z)
	for {
		h, err := t.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(err)
		}
		n, err := io.Copy(io.Discard, t)
		if err != nil || n != h.Size {
			panic(fmt.Sprint("short member ", h.Name))
		}
		fmt.Printf("%s %d\\n", h.Name, h.Size)
	}
}
"""
