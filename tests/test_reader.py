"""The one archive reader: streaming, verification against the manifest and sidecar, limits."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hatch_detmodel.errors import ArchiveError
from hatch_detmodel.reader import ArchiveStream, Limits, path_problem, read_artifact

from .artifacts import (
    FILES,
    Entry,
    build_artifact,
    flip_last_byte,
    regular,
    rewrite,
    sidecar_of,
    special,
    write_entries,
)
from .conftest import ProjectFactory


@pytest.fixture
def artifact(make_project: ProjectFactory, tmp_path: Path) -> Path:
    project = make_project(FILES)
    (project / "run.sh").chmod(0o755)
    return build_artifact(project, tmp_path / "dist")


def codes(path: Path, **kwargs: object) -> list[str]:
    return [p.code for p in read_artifact(path, **kwargs).problems]  # type: ignore[arg-type]


def test_clean_artifact_verifies_with_its_sidecar(artifact: Path) -> None:
    report = read_artifact(artifact)
    assert report.ok, report.problems
    assert report.sidecar == sidecar_of(artifact)
    assert report.sidecar_archive == report.archive
    assert report.archive.sha256 == hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert report.archive.size == artifact.stat().st_size
    assert [m.name for m in report.members][-1] == ".detmodel.json"
    assert report.manifest is not None
    assert [m.name for m in report.members][:-1] == [f.path for f in report.manifest.files]
    by_name = {m.name: m for m in report.members}
    assert by_name["run.sh"].mode == 0o755
    assert by_name["weights.bin"].sha256 == hashlib.sha256(bytes(range(256)) * 8).hexdigest()
    assert report.notes == ()


def test_tarfile_rewrite_of_the_same_members_still_verifies(artifact: Path, tmp_path: Path) -> None:
    """Positive control for every tampering test: rewriting alone is not a problem (the sidecar is
    left out, as the archive bytes change)."""
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT):
        if fmt == tarfile.USTAR_FORMAT:
            continue  # ustar cannot hold the non-ASCII name
        target = rewrite(artifact, tmp_path / f"same{fmt}.detmodel.tgz", lambda items: items, fmt=fmt)
        assert codes(target) == [], fmt


def member_names(artifact: Path) -> list[str]:
    with tarfile.open(artifact) as tar:
        return tar.getnames()


@pytest.mark.parametrize("index", range(len(FILES) + 1))
def test_one_byte_change_in_any_member_is_caught(artifact: Path, tmp_path: Path, index: int) -> None:
    name = member_names(artifact)[index]

    def change(items: list[Entry]) -> list[Entry]:
        return [(info, flip_last_byte(data) if info.name == name else data) for info, data in items]

    found = codes(rewrite(artifact, tmp_path / "t.detmodel.tgz", change))
    if name == ".detmodel.json":
        assert found == ["manifest-invalid"]
    elif name == "lib/__init__.py":  # empty: the "changed byte" is an added one
        assert found == ["size", "sha256", "content-digest"]
    else:
        assert found == ["sha256", "content-digest"]


def test_extra_missing_renamed_and_duplicate_members(artifact: Path, tmp_path: Path) -> None:
    extra = rewrite(artifact, tmp_path / "extra.detmodel.tgz",
                    lambda items: [*items[:-1], regular("evil.py", b"import os\n"), items[-1]])
    assert codes(extra) == ["extra", "content-digest"]

    missing = rewrite(artifact, tmp_path / "missing.detmodel.tgz",
                      lambda items: [e for e in items if e[0].name != "lib/util.py"])
    assert codes(missing) == ["missing", "content-digest"]

    def rename(items: list[Entry]) -> list[Entry]:
        for info, _ in items:
            if info.name == "lib/util.py":
                info.name = "lib/utils.py"
        return items

    problems = read_artifact(rewrite(artifact, tmp_path / "renamed.detmodel.tgz", rename)).problems
    assert [(p.code, p.path) for p in problems] == [
        ("missing", "lib/util.py"), ("extra", "lib/utils.py"), ("content-digest", None)
    ]

    duplicate = rewrite(artifact, tmp_path / "dup.detmodel.tgz",
                        lambda items: [items[0], *items[:-1], items[-1]])
    found = codes(duplicate)
    assert "duplicate" in found and "content-digest" in found


def test_every_difference_is_listed_not_just_the_first(artifact: Path, tmp_path: Path) -> None:
    def many(items: list[Entry]) -> list[Entry]:
        changed = [(info, flip_last_byte(data) if info.name.endswith(".py") else data) for info, data in items]
        return [*changed[:-1], regular("x.py", b""), changed[-1]]

    report = read_artifact(rewrite(artifact, tmp_path / "m.detmodel.tgz", many))
    assert sorted(p.path for p in report.problems if p.code == "sha256") == ["lib/__init__.py", "lib/util.py", "model_def.py"]
    assert {p.code for p in report.problems} == {"size", "sha256", "extra", "content-digest"}


@pytest.mark.parametrize(
    ("entry", "code"),
    [
        (regular("../escape.py", b"x"), "unsafe-name"),
        (regular("/etc/cron.d/x", b"x"), "unsafe-name"),
        (regular("a/./b", b"x"), "unsafe-name"),
        (special("link.py", tarfile.SYMTYPE, "/etc/passwd"), "not-regular"),
        (special("hard.py", tarfile.LNKTYPE, "model_def.py"), "not-regular"),
        (special("lib", tarfile.DIRTYPE), "not-regular"),
        (special("dev", tarfile.CHRTYPE), "not-regular"),
        (special("pipe", tarfile.FIFOTYPE), "not-regular"),
    ],
)
def test_unsafe_and_special_members_are_problems(artifact: Path, tmp_path: Path, entry: Entry, code: str) -> None:
    target = rewrite(artifact, tmp_path / "s.detmodel.tgz", lambda items: [*items[:-1], entry, items[-1]])
    assert code in codes(target)


def test_manifest_must_be_present_and_last(artifact: Path, tmp_path: Path) -> None:
    gone = rewrite(artifact, tmp_path / "gone.detmodel.tgz", lambda items: items[:-1])
    report = read_artifact(gone)
    assert [p.code for p in report.problems] == ["no-manifest"]
    with pytest.raises(ArchiveError, match=r"no \.detmodel\.json member"):
        report.require_manifest()

    first = rewrite(artifact, tmp_path / "first.detmodel.tgz", lambda items: [items[-1], *items[:-1]])
    assert codes(first) == ["manifest-position"]


def test_manifest_lying_consistently_is_caught_by_member_hashes(artifact: Path, tmp_path: Path) -> None:
    """A rewritten manifest whose own digest is consistent still does not match the members."""

    def forge(items: list[Entry]) -> list[Entry]:
        info, data = items[-1]
        manifest = json.loads(data)
        manifest["files"][0]["sha256"] = "0" * 64
        text = "".join(f"{f['sha256']} {f['mode']} {f['path']}\n" for f in manifest["files"])
        manifest["content_digest"] = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
        return [*items[:-1], (info, json.dumps(manifest).encode())]

    found = codes(rewrite(artifact, tmp_path / "forged.detmodel.tgz", forge))
    assert found == ["sha256", "content-digest"]


def test_manifest_paths_that_escape_are_problems(artifact: Path, tmp_path: Path) -> None:
    def forge(items: list[Entry]) -> list[Entry]:
        info, data = items[-1]
        manifest = json.loads(data)
        manifest["files"].append({"path": "../x", "size": 0, "mode": "644", "sha256": "0" * 64})
        text = "".join(f"{f['sha256']} {f['mode']} {f['path']}\n" for f in manifest["files"])
        manifest["content_digest"] = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
        return [*items[:-1], (info, json.dumps(manifest).encode())]

    found = codes(rewrite(artifact, tmp_path / "escape.detmodel.tgz", forge))
    assert "manifest-path" in found and "missing" in found


def test_sidecar_checks(artifact: Path, tmp_path: Path) -> None:
    sidecar = sidecar_of(artifact)
    original = sidecar.read_bytes()

    # The archive rewritten (same members) but the old sidecar beside it: the hash no longer matches.
    copy = rewrite(artifact, tmp_path / "copy.detmodel.tgz", lambda items: items, keep_sidecar=True)
    assert codes(copy) == ["sidecar-archive"]

    data = json.loads(original)
    data["archive"]["sha256"] = "f" * 64
    sidecar.write_text(json.dumps(data))
    assert codes(artifact) == ["sidecar-archive"]

    data = json.loads(original)
    data["entrypoint"] = "other:Trial"
    sidecar.write_text(json.dumps(data))
    assert codes(artifact) == ["sidecar-manifest"]

    sidecar.write_bytes(original[:-20])
    assert codes(artifact) == ["sidecar-invalid"]

    sidecar.write_bytes(original)
    assert codes(artifact) == []
    assert codes(artifact, use_sidecar=False) == []
    sidecar.unlink()
    report = read_artifact(artifact)
    assert report.ok and report.sidecar is None and "no sidecar" in report.notes[0]


def test_damaged_files(artifact: Path, tmp_path: Path) -> None:
    data = artifact.read_bytes()
    truncated = tmp_path / "truncated.detmodel.tgz"
    truncated.write_bytes(data[: len(data) // 2])
    assert "corrupt" in codes(truncated)

    flipped = tmp_path / "flipped.detmodel.tgz"
    flipped.write_bytes(data[:200] + bytes([data[200] ^ 0xFF]) + data[201:])
    report = read_artifact(flipped, use_sidecar=False)
    assert not report.ok

    not_gzip = tmp_path / "plain.detmodel.tgz"
    not_gzip.write_bytes(b"hello")
    with pytest.raises(ArchiveError, match="not a gzip file"):
        read_artifact(not_gzip)
    with pytest.raises(ArchiveError, match="cannot be read"):
        read_artifact(tmp_path / "absent.detmodel.tgz")
    with pytest.raises(ArchiveError, match="is a directory"):
        read_artifact(tmp_path)

    trailing = tmp_path / "trailing.detmodel.tgz"
    raw = gzip.decompress(data)
    trailing.write_bytes(gzip.compress(raw + b"garbage" + b"\0" * 505))
    assert "corrupt" in codes(trailing, use_sidecar=False)


@given(position=st.integers(min_value=0), value=st.integers(min_value=1, max_value=255))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_damaged_byte_is_reported_or_refused_never_crashes(artifact: Path, position: int, value: int) -> None:
    data = bytearray(artifact.read_bytes())
    position %= len(data)
    data[position] ^= value
    damaged = artifact.with_name("damaged.detmodel.tgz")
    damaged.write_bytes(bytes(data))
    try:
        report = read_artifact(damaged, sidecar=sidecar_of(artifact))
    except ArchiveError:
        return  # the gzip header itself is gone: unreadable input
    assert not report.ok  # the sidecar's archive hash catches even a change gzip ignores


def test_decompression_bomb_stops_at_the_limit(tmp_path: Path) -> None:
    """64 MiB of zeros after the end-of-archive marker compress to ~64 KiB; reading stops at the limit."""
    bomb = tmp_path / "bomb.detmodel.tgz"
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as writer:
        info, data = regular("a.py", b"x")
        writer.addfile(info, io.BytesIO(data))
    bomb.write_bytes(gzip.compress(tar.getvalue() + b"\0" * (64 << 20), compresslevel=1))
    assert bomb.stat().st_size < 500_000
    start = time.monotonic()
    report = read_artifact(bomb, Limits(max_total=1 << 20))
    assert time.monotonic() - start < 5
    assert [p.code for p in report.problems] == ["limit"]
    assert "exceeds the limit of 1,048,576 bytes" in report.problems[0].message
    assert not report.complete


def test_declared_size_beyond_the_limit_is_refused_before_reading(tmp_path: Path) -> None:
    """A header claiming a huge member is refused at once, without decompressing anything."""
    info = tarfile.TarInfo("huge.bin")
    info.size = 10 << 30
    header = info.tobuf(tarfile.PAX_FORMAT)
    bomb = tmp_path / "huge.detmodel.tgz"
    bomb.write_bytes(gzip.compress(header + b"\0" * 1024))
    report = read_artifact(bomb)
    assert [p.code for p in report.problems] == ["limit"]
    assert "declares 10,737,418,240 bytes" in report.problems[0].message


def test_the_limit_is_exact(artifact: Path) -> None:
    size = len(gzip.decompress(artifact.read_bytes()))
    assert codes(artifact, limits=Limits(max_total=size)) == []
    assert codes(artifact, limits=Limits(max_total=size - 1)) == ["limit"]


def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "x.detmodel.tgz"
    os.mkfifo(fifo)
    with pytest.raises(ArchiveError, match="not a regular file"):
        read_artifact(fifo)


def test_member_count_and_header_limits(tmp_path: Path) -> None:
    many = write_entries([regular(f"f{i}", b"") for i in range(20)], tmp_path / "many.detmodel.tgz")
    assert codes(many, limits=Limits(max_members=10)) == ["limit"]
    long_name = write_entries([regular("x" * 5000, b"")], tmp_path / "long.detmodel.tgz")
    assert codes(long_name, limits=Limits(max_header=1000)) == ["limit"]


def test_stream_gives_member_data_in_chunks(artifact: Path) -> None:
    with ArchiveStream(artifact) as stream:
        seen = {member.name: b"".join(member.chunks(100)) for member in stream}
        record = stream.finish()
    assert seen["weights.bin"] == bytes(range(256)) * 8
    assert seen["naïve.txt"] == b"accents\n"
    assert record.sha256 == hashlib.sha256(artifact.read_bytes()).hexdigest()


def test_stream_bounds_what_it_decompresses(artifact: Path, tmp_path: Path) -> None:
    with ArchiveStream(artifact) as stream:
        names = [member.name for member in stream]
    assert names[-1] == ".detmodel.json"
    with pytest.raises(ArchiveError, match="exceeds the limit"), ArchiveStream(artifact, Limits(max_total=1000)) as stream:
        for member in stream:
            for _ in member.chunks():
                pass
    garbage = tmp_path / "garbage.tgz"
    garbage.write_bytes(b"nope")
    with pytest.raises(ArchiveError, match="not a gzip file"):
        ArchiveStream(garbage)


@pytest.mark.parametrize(
    ("name", "ok"),
    [("a/b.py", True), ("", False), ("/abs", False), ("C:/x", False), ("a/../b", False), ("..", False),
     ("a//b", False), ("./a", False), ("a\\b", False), ("a\0b", False)],
)
def test_path_problem(name: str, ok: bool) -> None:
    assert (path_problem(name) is None) is ok
