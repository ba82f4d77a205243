"""Comparing model definitions (``diff``, ``verify --source``) and rebuilding in memory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hatch_detmodel.compare import check_source, compare_manifests, diff, load_sides
from hatch_detmodel.config import load_project
from hatch_detmodel.reader import VerificationFailed, read_artifact
from hatch_detmodel.rebuild import rebuild

from .artifacts import build_artifact, flip_last_byte, rewrite
from .conftest import EXAMPLE, ProjectFactory


@pytest.fixture
def example(tmp_path: Path) -> Path:
    return Path(shutil.copytree(EXAMPLE, tmp_path / "example", ignore=shutil.ignore_patterns("dist", "__pycache__")))


def test_rebuild_in_memory_matches_a_real_build_byte_for_byte(example: Path, tmp_path: Path) -> None:
    artifact = build_artifact(example, example / "dist")
    report = read_artifact(artifact)
    (rebuilt,) = rebuild(load_project(example), load_project(example).models)
    assert rebuilt.manifest == report.manifest
    assert rebuilt.archive == report.archive
    # dist/ (now holding the artifact) is pruned as the real build prunes it
    assert not any(f.path.startswith("dist/") for f in rebuilt.manifest.files)


def test_compare_reports_files_and_fields(example: Path, tmp_path: Path) -> None:
    before = read_artifact(build_artifact(example, tmp_path / "a")).require_manifest()
    model_def = example / "model_def.py"
    model_def.write_text(model_def.read_text().replace("hidden_size\", 64", "hidden_size\", 128"))
    (example / "extra.py").write_text("X = 1\n")
    (example / "data.py").unlink()
    (example / "pyproject.toml").write_text((example / "pyproject.toml").read_text().replace('0.1.0', '0.2.0'))
    after = read_artifact(build_artifact(example, tmp_path / "b")).require_manifest()
    result = compare_manifests(before, after)
    assert [(c.status, c.path) for c in result.files] == [
        ("removed", "data.py"), ("added", "extra.py"), ("changed", "model_def.py"), ("changed", "pyproject.toml")
    ]
    changed = result.files[2]
    assert changed.a is not None and changed.b is not None and changed.b.size == changed.a.size + 1
    assert [f.field for f in result.fields] == ["content_digest", "project.version"]
    assert not result.same
    assert compare_manifests(before, before).same


def test_diff_pairs_models_of_projects_by_name(make_project: ProjectFactory, tmp_path: Path) -> None:
    detmodel = """
        [tool.detmodel]
        entrypoint = "model_def:MyTrial"
        [tool.detmodel.models.one]
        [tool.detmodel.models.two]
    """
    a = make_project(detmodel=detmodel, where=tmp_path / "a")
    b = make_project(detmodel=detmodel.replace("[tool.detmodel.models.two]", "[tool.detmodel.models.three]"),
                     where=tmp_path / "b")
    result = diff(load_sides(a), load_sides(b), "a", "b")
    assert [c.model for c in result.comparisons] == ["one"]
    assert result.only_in_a == ("two",) and result.only_in_b == ("three",)
    assert not result.same
    one = diff(load_sides(a, model="one"), load_sides(b, model="one"), "a", "b")
    assert [c.path for c in one.comparisons[0].files] == ["pyproject.toml"]  # the only file that differs


def test_an_artifact_that_fails_verification_is_not_compared(example: Path, tmp_path: Path) -> None:
    artifact = build_artifact(example, tmp_path / "dist")
    bad = rewrite(artifact, tmp_path / "bad.detmodel.tgz",
                  lambda items: [(i, flip_last_byte(d) if i.name == "data.py" else d) for i, d in items])
    with pytest.raises(VerificationFailed, match="cannot be compared"):
        load_sides(bad)


def test_check_source(example: Path, tmp_path: Path) -> None:
    artifact = build_artifact(example, tmp_path / "dist")
    same = check_source(read_artifact(artifact), example)
    assert same.same_content and same.byte_identical and same.problems == ()

    (example / "data.py").write_text((example / "data.py").read_text() + "# edited\n")
    changed = check_source(read_artifact(artifact), example)
    assert not changed.same_content
    assert [(p.code, p.path) for p in changed.problems] == [("source-changed", "data.py"), ("source-content", None)]
