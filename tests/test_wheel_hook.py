"""The `detmodel` wheel hook through hatchling's own builder API (in process, fast), and `extract_from_wheel`.

The real front ends (hatch, pip, build, uv) are exercised in test_frontends.py.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hatchling.builders.sdist import SdistBuilder
from hatchling.builders.wheel import WheelBuilder

from hatch_detmodel import build
from hatch_detmodel.errors import DetmodelError
from hatch_detmodel.wheel import extract_from_wheel
from hatch_detmodel.wheel_hook import OUTPUT_DIR_VARIABLE, DetmodelBuildHook

from .conftest import ProjectFactory

STEM = "demo_project-1.2.3"
EMBEDDED = f"{STEM}.dist-info/extra_metadata/detmodel"

HOOKED = """\
[tool.detmodel]
entrypoint = "model_def:MyTrial"

[tool.hatch.build.targets.wheel]
only-include = ["model_def.py"]

[tool.hatch.build.targets.wheel.hooks.detmodel]
"""


def hooked(*options: str, detmodel: str = 'entrypoint = "model_def:MyTrial"') -> str:
    """A tool table with the hook switched on and ``options`` in its table."""
    return (
        f"[tool.detmodel]\n{detmodel}\n\n[tool.hatch.build.targets.wheel]\nonly-include = [\"model_def.py\"]\n\n"
        "[tool.hatch.build.targets.wheel.hooks.detmodel]\n" + "\n".join(options) + "\n"
    )


def build_wheel(root: Path, out: Path, version: str = "standard") -> Path:
    builder = WheelBuilder(str(root))
    (artifact,) = builder.build(directory=str(out), versions=[version])
    return Path(artifact)


def reference(root: Path, out: Path) -> dict[str, bytes]:
    """What the `detmodel` target's pipeline writes for the same project into ``out``: file name → bytes."""
    return {path.name: path.read_bytes() for path in map(Path, build(root, out))}


def artifacts_in(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.detmodel.*"))}


def shown(capsys: pytest.CaptureFixture[str]) -> str:
    """What hatchling's Application displayed (messages go to stderr, `display` to stdout)."""
    captured = capsys.readouterr()
    return captured.out + captured.err


def record_rows(wheel: Path) -> dict[str, tuple[str, str]]:
    with zipfile.ZipFile(wheel) as archive:
        record_name = next(n for n in archive.namelist() if n.endswith(".dist-info/RECORD"))
        rows = csv.reader(io.StringIO(archive.read(record_name).decode()))
        return {row[0]: (row[1], row[2]) for row in rows}


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def test_the_hook_is_registered_as_detmodel() -> None:
    from hatchling.plugin.manager import PluginManager

    assert PluginManager().build_hook.get("detmodel") is DetmodelBuildHook


def test_standard_wheel_gets_the_artifact_beside_it_and_inside_it(
    make_project: ProjectFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(detmodel=HOOKED)
    out = tmp_path / "dist"
    wheel = build_wheel(root, out)
    expected = reference(root, tmp_path / "reference")
    assert set(expected) == {f"{STEM}.detmodel.tgz", f"{STEM}.detmodel.json"}

    assert artifacts_in(out) == expected  # (1) beside the wheel, the same bytes as the builder
    rows = record_rows(wheel)
    with zipfile.ZipFile(wheel) as archive:
        for name, data in expected.items():
            member = f"{EMBEDDED}/{name}"
            assert archive.read(member) == data  # (2) embedded, byte-identical
            assert rows[member] == (record_hash(data), str(len(data)))  # and listed in RECORD

    said = shown(capsys)
    assert f"hatch-detmodel: wrote {out / STEM}.detmodel.tgz and {STEM}.detmodel.json (model `default`" in said
    assert f"embedded {STEM}.detmodel.tgz" in said and f"{EMBEDDED}/" in said

    extracted = extract_from_wheel(wheel, tmp_path / "extracted")
    assert [p.name for p in extracted] == [f"{STEM}.detmodel.tgz", f"{STEM}.detmodel.json"]
    assert artifacts_in(tmp_path / "extracted") == expected


def test_embed_false_writes_beside_the_wheel_only(make_project: ProjectFactory, tmp_path: Path) -> None:
    root = make_project(detmodel=hooked("embed = false"))
    wheel = build_wheel(root, tmp_path / "dist")
    assert artifacts_in(tmp_path / "dist") == reference(root, tmp_path / "reference")
    with zipfile.ZipFile(wheel) as archive:
        assert not [n for n in archive.namelist() if "extra_metadata" in n]
    with pytest.raises(DetmodelError, match="carries no model-definition artifacts"):
        extract_from_wheel(wheel, tmp_path / "extracted")
    assert not (tmp_path / "extracted").exists()


def test_editable_wheel_gets_no_artifact(
    make_project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # explicit dev-mode folders: an editable wheel without the `editables` package
    root = make_project(detmodel=HOOKED.replace('only-include = ["model_def.py"]', 'dev-mode-dirs = ["."]'))
    monkeypatch.setenv(OUTPUT_DIR_VARIABLE, str(tmp_path / "extra"))
    wheel = build_wheel(root, tmp_path / "dist", version="editable")
    assert not artifacts_in(tmp_path / "dist")
    assert not (tmp_path / "extra").exists()
    with zipfile.ZipFile(wheel) as archive:
        assert not [n for n in archive.namelist() if "extra_metadata" in n]


def test_output_dir_variable_gets_identical_copies(
    make_project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(detmodel=HOOKED)
    extra = tmp_path / "extra" / "nested"
    monkeypatch.setenv(OUTPUT_DIR_VARIABLE, str(extra))
    build_wheel(root, tmp_path / "dist")
    expected = reference(root, tmp_path / "reference")
    assert artifacts_in(extra) == expected == artifacts_in(tmp_path / "dist")
    assert f"copied them to {extra}" in shown(capsys)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("relative/dir", f"{OUTPUT_DIR_VARIABLE}='relative/dir' must be an absolute path"),
        ("FILE", "names a file; point it at a folder"),
        ("FILE/sub", "cannot be created: Not a directory"),
    ],
)
def test_bad_output_dir_variable_stops_the_build(
    make_project: ProjectFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    value: str,
    message: str,
) -> None:
    root = make_project(detmodel=HOOKED)
    if value.startswith("FILE"):
        (tmp_path / "a-file").write_text("x")
        value = value.replace("FILE", str(tmp_path / "a-file"))
    monkeypatch.setenv(OUTPUT_DIR_VARIABLE, value)
    with pytest.raises(SystemExit):
        build_wheel(root, tmp_path / "dist")
    said = shown(capsys)
    assert message in said and "Traceback" not in said
    assert not artifacts_in(tmp_path / "dist")


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ('embed = "no"', "Field `tool.hatch.build.targets.wheel.hooks.detmodel.embed` must be a boolean"),
        ("embedd = false", "Field `tool.hatch.build.targets.wheel.hooks.detmodel.embedd` is not a known option"),
    ],
)
def test_bad_hook_options_stop_the_build(
    make_project: ProjectFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, message: str
) -> None:
    root = make_project(detmodel=hooked(option))
    with pytest.raises(SystemExit):
        build_wheel(root, tmp_path / "dist")
    assert message in shown(capsys)


@pytest.mark.slow
def test_bad_config_is_one_message_not_a_traceback(make_project: ProjectFactory, tmp_path: Path) -> None:
    root = make_project(detmodel=hooked(detmodel="entrypoint = 3"))
    result = subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path / "dist")],
        cwd=root, capture_output=True, text=True, timeout=120,
    )
    said = result.stdout + result.stderr
    assert result.returncode != 0
    assert "hatch-detmodel: pyproject.toml: Field `tool.detmodel.entrypoint` must be a string" in said
    assert "Traceback" not in said


def test_every_named_model_is_embedded(make_project: ProjectFactory, tmp_path: Path) -> None:
    table = """\
        [tool.detmodel]
        entrypoint = "model_def:MyTrial"
        [tool.detmodel.models.alpha]
        [tool.detmodel.models.beta]
        exclude = ["notes.txt"]
        [tool.hatch.build.targets.wheel]
        only-include = ["model_def.py"]
        [tool.hatch.build.targets.wheel.hooks.detmodel]
        """
    root = make_project(detmodel=table)
    (root / "notes.txt").write_text("only alpha packs this\n")
    wheel = build_wheel(root, tmp_path / "dist")
    expected = reference(root, tmp_path / "reference")
    assert sorted(expected) == [f"{STEM}-{m}.detmodel.{s}" for m in ("alpha", "beta") for s in ("json", "tgz")]
    assert artifacts_in(tmp_path / "dist") == expected
    extract_from_wheel(wheel, tmp_path / "x")
    assert artifacts_in(tmp_path / "x") == expected


def test_hook_clean_removes_only_its_own_files(make_project: ProjectFactory, tmp_path: Path) -> None:
    root = make_project(detmodel=HOOKED)
    out = tmp_path / "dist"
    build_wheel(root, out)
    others = {
        "notes.txt": b"user file",
        f"{STEM}.tar.gz": b"the sdist",
        "other_project-1.0.detmodel.tgz": b"someone else's artifact",
        f"{STEM}-unknown.detmodel.tgz": b"not a model of this project",
    }
    for name, data in others.items():
        (out / name).write_bytes(data)
    (out / f".{STEM}.detmodel.tgz.k2j3h4.tmp").write_bytes(b"left by a killed build")
    list(WheelBuilder(str(root)).build(directory=str(out), clean_only=True))
    remaining = {p.name: p.read_bytes() for p in out.iterdir()}
    assert remaining == others  # the wheel's clean took the .whl, the hook's its artifacts and temporary file


def test_clean_hooks_after_keeps_the_delivered_artifacts(make_project: ProjectFactory, tmp_path: Path) -> None:
    root = make_project(detmodel=HOOKED)
    out = tmp_path / "dist"
    list(WheelBuilder(str(root)).build(directory=str(out), versions=["standard"], clean_hooks_after=True))
    assert artifacts_in(out) == reference(root, tmp_path / "reference")


def test_hook_on_another_target_only_warns(
    make_project: ProjectFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(detmodel='entrypoint = "model_def:MyTrial"\n[tool.hatch.build.targets.sdist.hooks.detmodel]')
    (artifact,) = SdistBuilder(str(root)).build(directory=str(tmp_path / "dist"))
    assert artifact.endswith(".tar.gz")
    assert not artifacts_in(tmp_path / "dist")
    assert "only acts on the wheel target, not `sdist`" in shown(capsys)


def test_wheel_from_the_sdist_carries_the_same_artifact(make_project: ProjectFactory, tmp_path: Path) -> None:
    """What `python -m build` and `uv build` do: sdist first, then the wheel from the unpacked sdist."""
    files: dict[str, str | bytes] = {
        "model_def.py": "from determined import pytorch\n\n\nclass MyTrial(pytorch.PyTorchTrial):\n    pass\n",
        "helpers/util.py": "X = 1\n",
        ".detignore": "notebooks/\n",
        "notebooks/a.ipynb": "{}\n",
        "dist/old-0.1.whl": "a stale build in the checkout\n",
    }
    root = make_project(files=files, detmodel=HOOKED)
    (sdist,) = SdistBuilder(str(root)).build(directory=str(tmp_path / "sdist"))
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    assert (unpacked / "PKG-INFO").is_file() and (unpacked / ".detignore").is_file()

    build_wheel(unpacked, tmp_path / "from-sdist")
    build_wheel(root, tmp_path / "pip-style")  # output folder outside the project, as with `pip wheel .`
    expected = reference(root, root / "dist")  # where `hatch build -t detmodel` writes, pruned from the walk
    assert artifacts_in(tmp_path / "from-sdist") == expected
    assert artifacts_in(tmp_path / "pip-style") == expected
    manifest = json.loads(expected[f"{STEM}.detmodel.json"])
    assert [f["path"] for f in manifest["files"]] == ["helpers/util.py", "model_def.py", "pyproject.toml"]


def test_warns_when_the_sdist_would_lack_packed_files(
    make_project: ProjectFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files: dict[str, str | bytes] = {
        "model_def.py": "from determined import pytorch\n\n\nclass MyTrial(pytorch.PyTorchTrial):\n    pass\n",
        ".gitignore": "weights.bin\n",
        "weights.bin": b"\x00" * 10,
    }
    root = make_project(files=files, detmodel=HOOKED)
    build_wheel(root, tmp_path / "dist")
    said = shown(capsys)
    assert "the sdist leaves out files this artifact packs: weights.bin." in said


def test_warns_when_the_sdist_would_add_a_parent_gitignore(
    make_project: ProjectFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """hatchling copies a .gitignore found in a parent folder (a monorepo's) into the sdist's root."""
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / ".gitignore").write_text("*.log\n")
    root = make_project(detmodel=HOOKED, where=tmp_path / "repo" / "project")
    build_wheel(root, tmp_path / "dist")
    said = shown(capsys)
    assert f"the sdist adds .gitignore (hatchling copies {tmp_path / 'repo' / '.gitignore'} into its root)" in said
    assert "add `/.gitignore` to the ignore file" in said

    fixed = make_project(detmodel=HOOKED.replace('"model_def:MyTrial"', '"model_def:MyTrial"\nexclude = ["/.gitignore"]'),
                         where=tmp_path / "repo" / "fixed")
    build_wheel(fixed, tmp_path / "dist-fixed")
    assert "sdist adds" not in shown(capsys)


def test_output_dir_variable_inside_the_project_is_never_packed(
    make_project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(detmodel=HOOKED)
    monkeypatch.setenv(OUTPUT_DIR_VARIABLE, str(root / "artifacts"))
    build_wheel(root, tmp_path / "first")
    build_wheel(root, tmp_path / "second")  # `artifacts/` now holds the first build's files
    assert artifacts_in(tmp_path / "second") == artifacts_in(tmp_path / "first") == artifacts_in(root / "artifacts")


def test_no_sdist_warning_when_it_carries_everything(
    make_project: ProjectFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(detmodel=HOOKED)
    build_wheel(root, tmp_path / "dist")
    assert "sdist leaves out" not in shown(capsys)


# --- extract_from_wheel on wheels it must refuse ---------------------------------------------------


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.fixture
def embedded(make_project: ProjectFactory, tmp_path: Path) -> dict[str, bytes]:
    """The archive and sidecar a real hook run embeds, by file name."""
    root = make_project(detmodel=HOOKED)
    return reference(root, tmp_path / "reference")


@pytest.mark.parametrize(
    "bad_name",
    [
        f"{EMBEDDED}/../../evil.detmodel.tgz",
        f"{EMBEDDED}/sub/{STEM}.detmodel.tgz",
        f"{EMBEDDED}/..\\evil.detmodel.tgz",
        f"{EMBEDDED}/README.txt",
        f"{EMBEDDED}/.hidden.detmodel.tgz",
    ],
)
def test_extract_refuses_names_that_are_not_plain(
    embedded: dict[str, bytes], tmp_path: Path, bad_name: str
) -> None:
    members = {f"{EMBEDDED}/{name}": data for name, data in embedded.items()}
    members[bad_name] = b"x"
    wheel = write_zip(tmp_path / "bad-1.0-py3-none-any.whl", members)
    with pytest.raises(DetmodelError, match="refusing the embedded model-definition artifacts") as caught:
        extract_from_wheel(wheel, tmp_path / "out")
    assert bad_name in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_extract_refuses_an_altered_archive_and_writes_nothing(embedded: dict[str, bytes], tmp_path: Path) -> None:
    members = {f"{EMBEDDED}/{name}": data for name, data in embedded.items()}
    members[f"{EMBEDDED}/{STEM}.detmodel.tgz"] += b"tampered"
    wheel = write_zip(tmp_path / "w-1.0-py3-none-any.whl", members)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DetmodelError, match="the wheel was altered"):
        extract_from_wheel(wheel, out)
    assert list(out.iterdir()) == []


def test_extract_refuses_an_archive_without_its_sidecar(embedded: dict[str, bytes], tmp_path: Path) -> None:
    wheel = write_zip(
        tmp_path / "w-1.0-py3-none-any.whl", {f"{EMBEDDED}/{STEM}.detmodel.tgz": embedded[f"{STEM}.detmodel.tgz"]}
    )
    with pytest.raises(DetmodelError, match=f"has no sidecar `{STEM}.detmodel.json`"):
        extract_from_wheel(wheel, tmp_path / "out")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "not found"),
        (lambda p: p.write_bytes(b"not a zip") and p, "not a wheel"),
        (lambda p: p.mkdir() or p, "is a folder"),
        (lambda p: write_zip(p, {"pkg/__init__.py": b""}), "carries no model-definition artifacts"),
    ],
)
def test_extract_explains_unusable_wheels(tmp_path: Path, make: Any, message: str) -> None:
    wheel = make(tmp_path / "w-1.0-py3-none-any.whl")
    with pytest.raises(DetmodelError, match=message):
        extract_from_wheel(wheel, tmp_path / "out")


def test_extract_explains_an_output_folder_it_cannot_create(embedded: dict[str, bytes], tmp_path: Path) -> None:
    wheel = write_zip(tmp_path / "w-1.0-py3-none-any.whl", {f"{EMBEDDED}/{n}": d for n, d in embedded.items()})
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(DetmodelError, match="cannot be written"):
        extract_from_wheel(wheel, tmp_path / "a-file" / "sub")
    with pytest.raises(DetmodelError, match="is a file"):
        extract_from_wheel(wheel, tmp_path / "a-file")


def test_extract_refuses_a_damaged_member(embedded: dict[str, bytes], tmp_path: Path) -> None:
    wheel = write_zip(tmp_path / "w-1.0-py3-none-any.whl", {f"{EMBEDDED}/{n}": d for n, d in embedded.items()})
    data = bytearray(wheel.read_bytes())
    archive_bytes = embedded[f"{STEM}.detmodel.tgz"]
    at = bytes(data).index(archive_bytes[:64])
    data[at + 40] ^= 0xFF  # stored uncompressed: flip a byte of the archive, the CRC no longer matches
    wheel.write_bytes(bytes(data))
    with pytest.raises(DetmodelError, match=r"damaged|altered"):
        extract_from_wheel(wheel, tmp_path / "out")
