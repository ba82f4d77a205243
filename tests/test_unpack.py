"""Unpacking: verify first, write only the manifest's files, never through a link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hatch_detmodel.reader import VerificationFailed
from hatch_detmodel.unpack import DestinationError, unpack_artifact

from .artifacts import FILES, build_artifact, flip_last_byte, regular, rewrite
from .conftest import ProjectFactory


@pytest.fixture
def project(make_project: ProjectFactory) -> Path:
    root = make_project(FILES)
    (root / "run.sh").chmod(0o755)
    return root


@pytest.fixture
def artifact(project: Path, tmp_path: Path) -> Path:
    return build_artifact(project, tmp_path / "dist")


def tree(root: Path) -> dict[str, tuple[bytes, bool]]:
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), os.access(p, os.X_OK))
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_round_trip_equals_the_packed_source_files(project: Path, artifact: Path, tmp_path: Path) -> None:
    result = unpack_artifact(artifact, tmp_path / "out")
    source = {k: v for k, v in tree(project).items() if k != "pyproject.toml"}
    unpacked = tree(tmp_path / "out")
    assert unpacked.pop("pyproject.toml")[0] == (project / "pyproject.toml").read_bytes()
    assert unpacked == source
    assert unpacked["run.sh"][1] is True and unpacked["model_def.py"][1] is False
    assert ".detmodel.json" not in unpacked
    assert [f.path for f in result.files] == sorted(source.keys() | {"pyproject.toml"}, key=lambda p: p.encode())


def test_refuses_a_non_empty_folder_unless_forced(artifact: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(DestinationError, match=r"is not empty.*--force"):
        unpack_artifact(artifact, out)
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    unpack_artifact(artifact, out, force=True)
    assert (out / "mine.txt").read_text() == "keep me" and (out / "model_def.py").is_file()


def test_nothing_is_written_when_verification_fails(artifact: Path, tmp_path: Path) -> None:
    bad = rewrite(artifact, tmp_path / "bad.detmodel.tgz",
                  lambda items: [(i, flip_last_byte(d) if i.name == "lib/util.py" else d) for i, d in items])
    with pytest.raises(VerificationFailed, match="nothing was written") as caught:
        unpack_artifact(bad, tmp_path / "out")
    assert [p.code for p in caught.value.report.problems] == ["sha256", "content-digest"]
    assert not (tmp_path / "out").exists()


def test_an_escaping_member_is_never_written(artifact: Path, tmp_path: Path) -> None:
    bad = rewrite(artifact, tmp_path / "evil.detmodel.tgz",
                  lambda items: [*items[:-1], regular("../escaped.py", b"boom"), items[-1]])
    with pytest.raises(VerificationFailed):
        unpack_artifact(bad, tmp_path / "out" / "inner")
    assert not (tmp_path / "out" / "escaped.py").exists()


def test_never_writes_through_a_linked_folder(artifact: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "lib").symlink_to(outside, target_is_directory=True)
    with pytest.raises(DestinationError, match=r"lib: exists and is not a real folder"):
        unpack_artifact(artifact, out, force=True)
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in out.iterdir()) == ["lib"]  # refused before anything was written


def test_replaces_a_linked_file_instead_of_writing_through_it(artifact: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "model_def.py").symlink_to(victim)
    os.link(victim, out / "run.sh")  # a hard link too
    unpack_artifact(artifact, out, force=True)
    assert victim.read_text() == "precious"
    assert not (out / "model_def.py").is_symlink()
    assert (out / "model_def.py").read_text().startswith("from determined")
    assert (out / "run.sh").read_text().startswith("#!/bin/sh")


def test_a_folder_where_a_file_belongs_is_refused(artifact: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "model_def.py").mkdir(parents=True)
    with pytest.raises(DestinationError, match="is a folder where the artifact has a file"):
        unpack_artifact(artifact, out, force=True)
    assert not [p for p in (out).iterdir() if p.name.endswith(".tmp")]


def test_destination_that_is_a_file(artifact: Path, tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(DestinationError, match="exists and is not a folder"):
        unpack_artifact(artifact, target)


def test_the_descriptor_walk_itself_refuses_links(tmp_path: Path) -> None:
    """The guard behind the preflight, for a link planted after it ran."""
    from hatch_detmodel.unpack import _Folder

    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "lib").symlink_to(outside, target_is_directory=True)
    folder = _Folder(out)
    try:
        with pytest.raises(DestinationError, match="not a real folder"):
            folder.write("lib/x.py", 0o644, [b"x"])
        assert folder.write("ok/y.py", 0o755, [b"ab", b"c"])[1] == 3
    finally:
        folder.close()
    assert list(outside.iterdir()) == []
    assert (out / "ok" / "y.py").read_bytes() == b"abc" and os.access(out / "ok" / "y.py", os.X_OK)
