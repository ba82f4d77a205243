"""Bounded fuzzing (issue 6), part of every CI run: the manifest parser (``Manifest.parse``) and the archive
reader (``reader.py``) get arbitrary bytes, structurally valid JSON of the wrong shape, hand-built tar
headers with hostile fields, and byte-level mutations of a real artifact's tar stream. The only exception
either may raise is our own (:class:`~hatch_detmodel.errors.DetmodelError`); verification must not pass a
mutated manifest; unpack of whatever does verify writes only inside its folder.

Derandomized (a fixed seed, so CI is repeatable); ``test_reader.py`` already fuzzes single compressed
bytes of an artifact. Examples per run: see ``EXAMPLES``."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hatch_detmodel.errors import DetmodelError
from hatch_detmodel.manifest import Manifest
from hatch_detmodel.reader import ArchiveStream, Limits, read_artifact
from hatch_detmodel.summary import summarize
from hatch_detmodel.unpack import unpack_artifact

from .artifacts import FILES, build_artifact

EXAMPLES = {"manifest bytes": 300, "manifest JSON": 400, "tar headers": 400, "tar mutations": 300}
LIMITS = Limits(max_total=1 << 20, max_members=64, max_header=1 << 14, max_manifest=1 << 16)


def fuzz_settings(name: str) -> Any:
    return settings(max_examples=EXAMPLES[name], deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="detmodel-fuzz-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def genuine(workdir: Path) -> tuple[Path, dict[str, Any], bytes]:
    """A real artifact (PAX, non-ASCII, executable), its manifest, and its decompressed tar stream."""
    project = workdir / "project"
    for rel, content in {**FILES, "pyproject.toml": '[project]\nname = "fuzz"\nversion = "1"\n[tool.detmodel]\n'
                                                    'entrypoint = "model_def:MyTrial"\n'}.items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_bytes(content if isinstance(content, bytes) else content.encode())
    artifact = build_artifact(project, workdir / "dist")
    tar = gzip.decompress(artifact.read_bytes())
    manifest = json.loads(Manifest.parse(_member(tar, ".detmodel.json"), "x")[0].to_bytes())
    return artifact, manifest, tar


def _member(tar: bytes, name: str) -> bytes:
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        handle = archive.extractfile(name)
        assert handle is not None
        return handle.read()


# --- the manifest parser ----------------------------------------------------------------------------------


def parse_or_refuse(data: bytes) -> None:
    with contextlib.suppress(DetmodelError):
        Manifest.parse(data, "fuzz")


@fuzz_settings("manifest bytes")
@given(data=st.binary(max_size=2000) | st.text(max_size=500).map(str.encode)
       | st.sampled_from([b"[" * 50_000, b"1" * 5000, b'"\\ud800"', b"NaN", b"-Infinity", b"{}", b"null"]))
def test_manifest_parser_on_arbitrary_bytes(data: bytes) -> None:
    parse_or_refuse(data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=True)
    | st.text(max_size=20) | st.sampled_from(["644", "755", "0" * 64, "a" * 64, "../x", "/abs", "a\udcffb", "\ud800"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


@fuzz_settings("manifest JSON")
@given(data=st.data())
def test_manifest_parser_on_valid_json_of_the_wrong_shape(genuine: tuple[Path, dict[str, Any], bytes],
                                                          data: st.DataObject) -> None:
    """Replace, delete or add one field anywhere in a real manifest (each in a copy): parsed or refused."""
    manifest = json.loads(json.dumps(genuine[1]))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        where = data.draw(st.sampled_from(_paths(manifest)))
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if not where:
            manifest = data.draw(JSON_VALUES) if action == "replace" else manifest
            continue
        parent = manifest
        for step in where[:-1]:
            parent = parent[step]
        if action == "replace":
            parent[where[-1]] = data.draw(JSON_VALUES)
        elif action == "delete":
            del parent[where[-1]]
        elif isinstance(parent, dict):
            parent[data.draw(st.text(max_size=10))] = data.draw(JSON_VALUES)
    text = json.dumps(manifest, ensure_ascii=data.draw(st.booleans()))
    parse_or_refuse(text.encode("utf-8", "surrogatepass"))


# --- the archive reader --------------------------------------------------------------------------------------


def _octal(value: int, width: int) -> bytes:
    return (b"%0*o" % (width - 1, value))[-(width - 1):] + b"\0"


@st.composite
def header(draw: st.DrawFn) -> bytes:
    """One tar header block (and maybe data) with hostile fields and usually a correct checksum."""
    name = draw(st.sampled_from(["a.py", "../x", "/abs", ".detmodel.json", "dir/", "a" * 100, "é", "a\\b", ""])
                | st.text(max_size=30))
    raw_name = name.encode("utf-8", "surrogateescape")[:100].ljust(100, b"\0")
    size = draw(st.integers(min_value=0, max_value=3000))
    size_field = draw(st.sampled_from(["octal", "base256", "negative256", "garbage", "spaces"]))
    size_bytes = {
        "octal": _octal(size, 12),
        "base256": b"\x80" + size.to_bytes(11, "big"),
        "negative256": b"\xff" * 12,
        "garbage": draw(st.binary(min_size=12, max_size=12)),
        "spaces": b" " * 11 + b"\0",
    }[size_field]
    mode = draw(st.sampled_from([_octal(0o644, 8), _octal(0o7777, 8), b"\xff" * 8, b"zzzzzzz\0"]))
    typeflag = draw(st.sampled_from([b"0", b"\0", b"1", b"2", b"3", b"5", b"6", b"7", b"g", b"x", b"L", b"K", b"S", b"Z"]))
    magic = draw(st.sampled_from([b"ustar\x0000", b"ustar  \0", b"\0" * 8]))
    prefix = draw(st.sampled_from([b"", b"pre", b"../..", b"\xff"])).ljust(155, b"\0")
    block = (raw_name + mode + _octal(0, 8) * 2 + size_bytes + _octal(0, 12) + b" " * 8 + typeflag
             + draw(st.binary(max_size=100)).ljust(100, b"\0")[:100] + magic + b"\0" * 80 + prefix).ljust(512, b"\0")
    checksum = b"%06o\0 " % sum(block)  # usually right, so parsing goes past the checksum test
    block = block[:148] + (checksum if draw(st.integers(0, 9)) else draw(st.binary(min_size=8, max_size=8))) + block[156:]
    if typeflag == b"x":
        records = draw(st.lists(st.tuples(st.sampled_from(["path", "size", "linkpath", "mtime", "x"]),
                                          st.sampled_from(["-600", "99999999999999999999999", "1e3", "a.py", "../up",
                                                           "", " 5", "\udcff"]) | st.text(max_size=12)),
                                max_size=3))
        body = b""
        for key, value in records:
            record = f" {key}={value}\n".encode("utf-8", "surrogateescape")
            length = len(record) + len(str(len(record))) + draw(st.sampled_from([0, 0, 0, 1, -1, 50]))
            body += str(length).encode() + record
        data = body
    else:
        data = draw(st.binary(max_size=size))
    return block + data + b"\0" * (-len(data) % 512)


def _read_everything(path: Path, destination: Path) -> None:
    """Every reading entry point on one file; whatever verifies is unpacked and must stay inside."""
    try:
        report = read_artifact(path, LIMITS, use_sidecar=False)
    except DetmodelError:
        return
    if report.manifest is not None:
        summarize(report)
    try:
        with ArchiveStream(path, LIMITS) as stream:
            for member in stream:
                for _ in member.chunks():
                    pass
    except DetmodelError:
        pass
    if report.ok:
        shutil.rmtree(destination, ignore_errors=True)
        unpack_artifact(path, destination, limits=LIMITS, report=report)
        root = destination.resolve()
        for written in destination.rglob("*"):
            assert written.resolve().is_relative_to(root)


@fuzz_settings("tar headers")
@given(blocks=st.lists(header(), min_size=1, max_size=4), tail=st.sampled_from([b"\0" * 1024, b"", b"\0" * 512, b"junk"]),
       manifest=st.booleans())
def test_reader_on_hand_built_headers(genuine: tuple[Path, dict[str, Any], bytes], workdir: Path, blocks: list[bytes],
                                      tail: bytes, manifest: bool) -> None:
    stream = b"".join(blocks)
    if manifest:  # the real manifest member (and end marker) last, so the comparison code runs too
        tar = genuine[2]
        stream += tar[tar.rindex(b".detmodel.json\0"):]
    target = workdir / "headers.detmodel.tgz"
    target.write_bytes(gzip.compress(stream + tail, compresslevel=1))
    _read_everything(target, workdir / "unpacked-headers")


@fuzz_settings("tar mutations")
@given(data=st.data())
def test_reader_on_mutated_tar_streams(genuine: tuple[Path, dict[str, Any], bytes], workdir: Path,
                                       data: st.DataObject) -> None:
    """Flip, insert, delete or overwrite bytes anywhere in a real artifact's tar stream (headers, sizes,
    PAX records, data, the manifest), then compress it properly so gzip's own CRC does not hide it."""
    tar = bytearray(genuine[2])
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        at = data.draw(st.integers(min_value=0, max_value=len(tar) - 1))
        action = data.draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "digits"]))
        if action == "flip":
            tar[at] ^= data.draw(st.integers(min_value=1, max_value=255))
        elif action == "set":
            tar[at] = data.draw(st.sampled_from([0, 0x20, 0x30, 0x37, 0x2F, 0x2E, 0x80, 0xFF]))
        elif action == "insert":
            tar[at:at] = data.draw(st.binary(min_size=1, max_size=600))
        elif action == "delete":
            del tar[at: at + data.draw(st.integers(min_value=1, max_value=600))]
        elif action == "truncate":
            del tar[at:]
        else:  # rewrite a run as octal digits: a plausible but wrong size, mode or checksum
            run = data.draw(st.text(alphabet="01234567 ", min_size=1, max_size=12)).encode()
            tar[at: at + len(run)] = run
        if not tar:
            tar = bytearray(b"\0")
    mutated = bytes(tar)
    target = workdir / "mutated.detmodel.tgz"
    target.write_bytes(gzip.compress(mutated, compresslevel=1))
    _read_everything(target, workdir / "unpacked-mutations")
    # A change to a manifest or a member's bytes can never verify as the original.
    try:
        report = read_artifact(target, LIMITS, use_sidecar=False)
    except DetmodelError:
        return
    if report.ok and report.manifest is not None:
        for record in report.manifest.files:
            member = next(m for m in report.members if m.name == record.path)
            assert member.sha256 == record.sha256
        assert hashlib.sha256(mutated).digest()  # the stream itself may differ only in padding or trailer
