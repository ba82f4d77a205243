"""Shared fixtures. Under CI=true a missing tool is an error, never a silent skip."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "example_project"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, what: str) -> None:
    """Skip locally when a tool is missing; fail in CI, where .ci/run must have installed it."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI (.ci/run installs it)")
    pytest.skip(f"{what} not available")


def require_executable(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    require(found is not None, f"`{name}`")
    assert found is not None
    return found


def require_module(name: str) -> None:
    import importlib.util

    require(importlib.util.find_spec(name) is not None, f"Python module `{name}`")


def run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None, check: bool = True,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{cmd} exited {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    return result


ProjectFactory = Callable[..., Path]


@pytest.fixture
def make_project(tmp_path: Path) -> ProjectFactory:
    """Write a project: ``files`` maps relative paths to text (or bytes); ``detmodel`` is the TOML body
    of ``[tool.detmodel]`` (or the whole tool table text when it starts with '[')."""

    def factory(
        files: dict[str, str | bytes] | None = None,
        detmodel: str = 'entrypoint = "model_def:MyTrial"',
        name: str = "demo-project",
        version: str = "1.2.3",
        where: Path | None = None,
    ) -> Path:
        root = where or tmp_path / "project"
        root.mkdir(parents=True, exist_ok=True)
        table = detmodel if detmodel.lstrip().startswith("[") else "[tool.detmodel]\n" + detmodel
        (root / "pyproject.toml").write_text(
            textwrap.dedent(
                f"""\
                [build-system]
                requires = ["hatchling"]
                build-backend = "hatchling.build"

                [project]
                name = "{name}"
                version = "{version}"

                """
            )
            + textwrap.dedent(table)
            + "\n"
        )
        default_files: dict[str, str | bytes] = {
            "model_def.py": "from determined import pytorch\n\n\nclass MyTrial(pytorch.PyTorchTrial):\n    pass\n"
        }
        for rel, content in (default_files if files is None else files).items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        return root

    return factory
