"""The real build front ends on a copy of example_project: every one hands over the same artifact.

(a) `hatch build -t detmodel`, (b) `hatch build` (wheel hook, beside the wheel), (c) `python -m build`
(sdist, then the wheel from the unpacked sdist), (d) `uv build`, (e) `pip wheel .` then extraction from
the wheel, (f) `pip wheel .` with HATCH_DETMODEL_OUTPUT_DIR: the same archive and sidecar bytes (so the
same content_digest and sha256) as the pipeline writes in process. Also: an editable install builds
nothing, `hatch build -c` ends with fresh artifacts, and the README's first command works in a clone.

Offline-safe for the plugin: this checkout's plugin wheel is built once per session into a local folder
and served to the isolated build environments through --find-links (PIP_FIND_LINKS, UV_FIND_LINKS) or
a direct file URL (hatch); no index is expected to have hatch-detmodel.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Callable

import pytest

from hatch_detmodel import build

from .conftest import EXAMPLE, REPO, require_executable, require_module, run

pytestmark = pytest.mark.slow

STEM = "synthetic_classifier-0.1.0"
ARCHIVE = f"{STEM}.detmodel.tgz"
SIDECAR = f"{STEM}.detmodel.json"
EMBEDDED = f"{STEM}.dist-info/extra_metadata/detmodel"
#: The line in the example that, inside this repository, gives hatch the plugin from the parent folder.
PARENT_PLUGIN = '"hatch-detmodel @ {root:parent:uri}"'

Frontend = Callable[[Path, "dict[str, str]", Path], Path]


@pytest.fixture(scope="module")
def plugin_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout's plugin, built once, in a folder of its own (a new path each session, so no
    installer cache can hand out an older build of the same version)."""
    folder = tmp_path_factory.mktemp("plugin-wheelhouse")
    run([sys.executable, "-m", "hatchling", "build", "--target", "wheel", "--directory", str(folder)], cwd=REPO)
    (wheel,) = folder.glob("hatch_detmodel-*.whl")
    return wheel


@pytest.fixture(scope="module")
def base_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The caller's environment with hatch's folders in a temporary place and no per-test switches."""
    env = {k: v for k, v in os.environ.items() if k not in ("HATCH_DETMODEL_OUTPUT_DIR", "VIRTUAL_ENV")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # this venv's hatch and uv
    env["HATCH_DATA_DIR"] = str(tmp_path_factory.mktemp("hatch-data"))
    env["HATCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("hatch-cache"))
    env["PIP_NO_INPUT"] = "1"
    return env


@pytest.fixture(scope="module")
def env(base_env: dict[str, str], plugin_wheel: Path) -> dict[str, str]:
    """``base_env`` plus the plugin's folder for pip (keeping the machine's own find-links) and uv."""
    served = dict(base_env)
    served["PIP_FIND_LINKS"] = " ".join(filter(None, [str(plugin_wheel.parent), base_env.get("PIP_FIND_LINKS")]))
    served["UV_FIND_LINKS"] = str(plugin_wheel.parent)
    return served


def copy_example(dest: Path, plugin_wheel: Path) -> Path:
    """A copy of example_project below a copy of the repository's .gitignore, as in a clone (hatchling's sdist
    copies that file into its root); hatch gets the plugin wheel by URL since the copy has no parent repo."""
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("dist", "__pycache__", "*.pyc"))
    shutil.copy2(REPO / ".gitignore", dest.parent / ".gitignore")
    pyproject = dest / "pyproject.toml"
    text = pyproject.read_text()
    assert PARENT_PLUGIN in text, "example_project/pyproject.toml no longer names the plugin as the tests expect"
    pyproject.write_text(text.replace(PARENT_PLUGIN, f'"hatch-detmodel @ {plugin_wheel.as_uri()}"'))
    return dest


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, plugin_wheel: Path) -> dict[str, bytes]:
    """What the pipeline writes in process for the example, as `hatch build -t detmodel` would: name → bytes."""
    project = copy_example(tmp_path_factory.mktemp("reference") / "repo" / "example_project", plugin_wheel)
    written = build(project, project / "dist")
    return {Path(p).name: Path(p).read_bytes() for p in written}


def artifacts_in(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.detmodel.*"))}


def embedded_in(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as archive:
        return {
            name.rsplit("/", 1)[1]: archive.read(name) for name in archive.namelist() if name.startswith(f"{EMBEDDED}/")
        }


def assert_same_artifact(found: dict[str, bytes], reference: dict[str, bytes], frontend: str) -> None:
    assert sorted(found) == sorted(reference), f"{frontend}: wrote {sorted(found)}"
    digest = json.loads(found[SIDECAR])["content_digest"]
    assert digest == json.loads(reference[SIDECAR])["content_digest"], f"{frontend}: content_digest differs"
    sidecar = json.loads(found[SIDECAR])
    assert sidecar["archive"]["sha256"] == json.loads(reference[SIDECAR])["archive"]["sha256"]
    assert found == reference, f"{frontend}: archive or sidecar bytes differ"


# --- the six front ends: each returns the folder holding the artifact it handed over ---------------


def hatch_detmodel_target(project: Path, env: dict[str, str], scratch: Path) -> Path:
    run([require_executable("hatch"), "build", "-t", "detmodel"], cwd=project, env=env)
    return project / "dist"


def hatch_build(project: Path, env: dict[str, str], scratch: Path) -> Path:
    result = run([require_executable("hatch"), "build"], cwd=project, env=env)
    assert f"hatch-detmodel: wrote dist/{ARCHIVE}" in result.stdout + result.stderr
    (wheel,) = (project / "dist").glob("*.whl")
    assert embedded_in(wheel) == artifacts_in(project / "dist")
    assert list((project / "dist").glob("*.tar.gz")), "hatch build makes the sdist too"
    return project / "dist"


def python_m_build(project: Path, env: dict[str, str], scratch: Path) -> Path:
    require_module("build")
    run([sys.executable, "-m", "build", "--outdir", str(project / "dist"), str(project)], cwd=project, env=env)
    (wheel,) = (project / "dist").glob("*.whl")  # built from the unpacked sdist, python -m build's default
    assert embedded_in(wheel) == artifacts_in(project / "dist")
    return project / "dist"


def uv_build(project: Path, env: dict[str, str], scratch: Path) -> Path:
    uv = require_executable("uv")
    # --python: the same interpreter (and zlib) as the reference; --refresh-package: never a cached older plugin
    run([uv, "build", "--python", sys.executable, "--refresh-package", "hatch-detmodel"], cwd=project, env=env)
    (wheel,) = (project / "dist").glob("*.whl")
    assert embedded_in(wheel) == artifacts_in(project / "dist")
    return project / "dist"


def pip_wheel_then_extract(project: Path, env: dict[str, str], scratch: Path) -> Path:
    wheelhouse, out = scratch / "wheelhouse", scratch / "extracted"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(wheelhouse), "."], cwd=project, env=env)
    assert not artifacts_in(wheelhouse), "pip keeps only the .whl (pypa/pip#11751)"
    (wheel,) = wheelhouse.glob("*.whl")
    verb = run([sys.executable, "-m", "hatch_detmodel", "from-wheel", "--help"], env=env, check=False)
    if verb.returncode == 0:  # the command-line verb, once it exists, calls the same function
        run([sys.executable, "-m", "hatch_detmodel", "from-wheel", str(wheel), "-o", str(out)], env=env)
    else:
        code = "import sys; from pathlib import Path; from hatch_detmodel.wheel import extract_from_wheel as x; "
        code += "x(Path(sys.argv[1]), Path(sys.argv[2]))"
        run([sys.executable, "-c", code, str(wheel), str(out)], env=env)
    return out


def pip_wheel_with_output_dir(project: Path, env: dict[str, str], scratch: Path) -> Path:
    out = scratch / "detmodel-out"
    env = {**env, "HATCH_DETMODEL_OUTPUT_DIR": str(out)}
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(scratch / "wheelhouse"), "."], cwd=project, env=env)
    return out


FRONTENDS: dict[str, Frontend] = {
    "a-hatch-build-t-detmodel": hatch_detmodel_target,
    "b-hatch-build": hatch_build,
    "c-python-m-build": python_m_build,
    "d-uv-build": uv_build,
    "e-pip-wheel-extract": pip_wheel_then_extract,
    "f-pip-wheel-output-dir": pip_wheel_with_output_dir,
}


@pytest.mark.parametrize("name", sorted(FRONTENDS))
def test_every_frontend_hands_over_the_same_artifact(
    name: str, tmp_path: Path, env: dict[str, str], plugin_wheel: Path, reference: dict[str, bytes]
) -> None:
    project = copy_example(tmp_path / "repo" / "example_project", plugin_wheel)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    folder = FRONTENDS[name](project, env, scratch)
    assert_same_artifact(artifacts_in(folder), reference, name)


def test_editable_install_builds_no_artifact(tmp_path: Path, env: dict[str, str], plugin_wheel: Path) -> None:
    project = copy_example(tmp_path / "repo" / "example_project", plugin_wheel)
    venv, extra = tmp_path / "venv", tmp_path / "detmodel-out"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    target = venv / "bin" / "python"
    run(
        [sys.executable, "-m", "pip", "--python", str(target), "install", "--no-deps", "-e", str(project)],
        cwd=project, env={**env, "HATCH_DETMODEL_OUTPUT_DIR": str(extra)},
    )
    assert not list(project.rglob("*.detmodel.*"))
    assert not extra.exists()
    (dist_info,) = venv.glob("lib/python*/site-packages/synthetic_classifier-0.1.0.dist-info")
    assert not (dist_info / "extra_metadata").exists()


def test_hatch_build_clean_ends_with_fresh_artifacts(
    tmp_path: Path, env: dict[str, str], plugin_wheel: Path, reference: dict[str, bytes]
) -> None:
    hatch = require_executable("hatch")
    project = copy_example(tmp_path / "repo" / "example_project", plugin_wheel)
    run([hatch, "build"], cwd=project, env=env)
    dist = project / "dist"
    leftover = dist / f".{ARCHIVE}.x1y2z3.tmp"  # what a killed build leaves; only the hook's clean removes it
    leftover.write_bytes(b"partial")
    (dist / ARCHIVE).write_bytes(b"stale")
    unrelated = {"notes.txt": b"mine", "other_project-1.0.detmodel.tgz": b"another project's artifact"}
    for file_name, data in unrelated.items():
        (dist / file_name).write_bytes(data)

    run([hatch, "build", "-c"], cwd=project, env=env)
    assert not leftover.exists()
    ours = {name: data for name, data in artifacts_in(dist).items() if name.startswith(STEM)}
    assert_same_artifact(ours, reference, "hatch build -c")
    for file_name, data in unrelated.items():
        assert (dist / file_name).read_bytes() == data
    assert len(list(dist.glob("*.whl"))) == 1 and len(list(dist.glob("*.tar.gz"))) == 1


def test_readme_first_command_works_in_a_clone(tmp_path: Path, base_env: dict[str, str]) -> None:
    """`cd example_project && hatch build -t detmodel` with no plugin on any index or find-links: hatch takes it
    from the parent folder (the clone), as the README promises."""
    git, hatch = require_executable("git"), require_executable("hatch")
    listed = run([git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO).stdout
    clone = tmp_path / "clone"
    for relative in filter(None, listed.split("\0")):
        source = REPO / relative
        if source.is_file():
            (clone / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / relative)
    example = clone / "example_project"
    # the unmodified example (its pyproject.toml, which is packed, differs from the other tests' copies)
    expected = {Path(p).name: Path(p).read_bytes() for p in build(example, tmp_path / "reference")}
    run([hatch, "build", "-t", "detmodel"], cwd=example, env=base_env)
    assert_same_artifact(artifacts_in(example / "dist"), expected, "README command")
