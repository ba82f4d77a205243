"""The `detmodel` build target through hatchling's own command line (what `hatch build -t detmodel`
runs inside hatch's build environment; the real `hatch` is driven in test_frontends)."""

from __future__ import annotations

import sys
from pathlib import Path

from hatch_detmodel import build
from hatch_detmodel.config import ProjectIdentity

from .conftest import ProjectFactory, run

IDENTITY = ProjectIdentity("demo-project", "1.2.3")
MODELS = """\
[tool.detmodel]
entrypoint = "model_def:MyTrial"
[tool.detmodel.models.cifar]
path = "cifar"
[tool.detmodel.models.mnist]
path = "mnist"
"""
TRIAL = "class MyTrial: pass\n"


def hatchling(project: Path, *args: str, check: bool = True):  # type: ignore[no-untyped-def]
    return run([sys.executable, "-m", "hatchling", "build", *args], cwd=project, check=check)


def test_builds_prints_and_matches_the_library(make_project: ProjectFactory, tmp_path: Path) -> None:
    root = make_project()
    result = hatchling(root, "-t", "detmodel")
    output = result.stdout + result.stderr
    assert "dist/demo_project-1.2.3.detmodel.tgz" in output and "dist/demo_project-1.2.3.detmodel.json" in output
    built = {p.name: p.read_bytes() for p in (root / "dist").iterdir()}
    assert sorted(built) == ["demo_project-1.2.3.detmodel.json", "demo_project-1.2.3.detmodel.tgz"]
    expected = {p.name: p.read_bytes() for p in build(root, tmp_path / "lib")}
    assert built == expected


def test_each_model_is_a_version(make_project: ProjectFactory) -> None:
    root = make_project(files={"cifar/model_def.py": TRIAL, "mnist/model_def.py": TRIAL}, detmodel=MODELS)
    result = hatchling(root, "-t", "detmodel")
    output = result.stdout + result.stderr
    assert "demo_project-1.2.3-cifar.detmodel.tgz" in output and "demo_project-1.2.3-mnist.detmodel.tgz" in output
    one = hatchling(root, "-t", "detmodel:mnist", "-d", "only")
    assert sorted(p.name for p in (root / "only").iterdir()) == [
        "demo_project-1.2.3-mnist.detmodel.json", "demo_project-1.2.3-mnist.detmodel.tgz",
    ]
    assert "cifar" not in one.stdout + one.stderr


def test_clean_removes_only_this_targets_files(make_project: ProjectFactory) -> None:
    root = make_project()
    dist = root / "dist"
    dist.mkdir()
    keep = {"demo_project-1.2.3-py3-none-any.whl": b"w", "demo_project-1.2.3.tar.gz": b"s",
            "other-9.detmodel.tgz": b"another project's"}
    for name, data in keep.items():
        (dist / name).write_bytes(data)
    (dist / "demo_project-1.2.3.detmodel.tgz").write_bytes(b"stale")
    (dist / ".demo_project-1.2.3.detmodel.tgz.abc123.tmp").write_bytes(b"left by a killed build")
    hatchling(root, "-c", "-t", "detmodel")
    assert not (dist / ".demo_project-1.2.3.detmodel.tgz.abc123.tmp").exists()
    assert (dist / "demo_project-1.2.3.detmodel.tgz").read_bytes() != b"stale"
    for name, data in keep.items():
        assert (dist / name).read_bytes() == data


def test_bad_config_is_a_clean_error(make_project: ProjectFactory) -> None:
    root = make_project(detmodel='entrypoint = "model_def:MyTrial"\npath = 3')
    result = hatchling(root, "-t", "detmodel", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "hatch-detmodel: pyproject.toml: Field `tool.detmodel.path` must be a string" in output
    assert "Traceback" not in output
    assert not (root / "dist").exists() or not any((root / "dist").glob("*.detmodel.*"))


def test_entrypoint_error_is_a_clean_error(make_project: ProjectFactory) -> None:
    root = make_project(detmodel='entrypoint = "model_def.py:MyTrial"')
    result = hatchling(root, "-t", "detmodel", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "use `model_def:MyTrial`" in output and "Traceback" not in output
