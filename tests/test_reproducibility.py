"""Reproducibility variations (issue 6): the example project and a tree with hardlinks, executables, deep
paths and unicode names, each built by ``hatch-detmodel build`` in a child process under one changed
condition at a time — umask, creation order and mtimes, absolute path and working directory, ``TZ``,
``LC_ALL``, ``HOME``, hardlinks or copies. Every archive and sidecar must be byte-identical to the baseline;
``SOURCE_DATE_EPOCH`` may change only the timestamps. A difference is shown member by member (and with
diffoscope when it is installed)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from .conftest import EXAMPLE, require_executable

TREE_FILES: dict[str, tuple[bytes, bool]] = {
    "model_def.py": (b"from determined import pytorch\n\n\nclass MyTrial(pytorch.PyTorchTrial):\n    pass\n", False),
    "scripts/train.sh": (b"#!/bin/sh\npython3 -m model_def\n", True),
    "scripts/prepare.py": (b"#!/usr/bin/env python3\nprint('prepare')\n", True),
    "/".join(f"level{i:02d}-{'x' * 12}" for i in range(12)) + "/deep.py": (b"DEEP = True\n", False),
    "données/ünïcode-ß.py": ("VALEUR = 'é'\n".encode(), False),
    "日本語/モデル.txt": ("モデル\n".encode(), False),
    "emoji-🚀.txt": (b"launch\n", False),
    "weights/base.bin": (bytes(range(256)) * 64, False),
}
#: name -> the file it is a hard link of (or a copy of, in the "copies" variation)
TREE_LINKS = {"weights/alias.bin": "weights/base.bin", "données/lien.py": "données/ünïcode-ß.py"}
TREE_PYPROJECT = b'[project]\nname = "tree-project"\nversion = "0.3.0"\n\n[tool.detmodel]\nentrypoint = "model_def:MyTrial"\n'


def example_files() -> dict[str, tuple[bytes, bool]]:
    skip = {"dist", "__pycache__", ".venv"}
    found = {}
    for path in sorted(EXAMPLE.rglob("*")):
        rel = path.relative_to(EXAMPLE)
        if skip & set(rel.parts) or not path.is_file() or path.is_symlink():
            continue
        found[rel.as_posix()] = (path.read_bytes(), bool(path.stat().st_mode & 0o100))
    return found


@dataclass
class Variation:
    name: str
    umask: int = 0o022
    env: dict[str, str] = field(default_factory=dict)
    seed: int | None = None  # shuffle creation order and set random mtimes
    where: str = "base"  # folder (under tmp_path) the sources are written to
    cwd: str = "/"  # "project-parent": run from the project's parent, naming the project relatively
    hardlinks: bool = True


VARIATIONS = [
    Variation("baseline"),
    Variation("umask 077", umask=0o077),
    Variation("umask 002", umask=0o002),
    Variation("shuffled creation order, touched mtimes", seed=7),
    Variation("another absolute path and cwd", where="else/where/much/deeper", cwd="project-parent"),
    Variation("TZ", env={"TZ": "Pacific/Kiritimati"}),
    Variation("LC_ALL", env={"LC_ALL": "C", "LANG": "C"}),
    Variation("LC_ALL non-UTF-8 locale name", env={"LC_ALL": "tr_TR.ISO-8859-9"}),
    Variation("HOME", env={"HOME": "/nonexistent/home"}),
    Variation("copies instead of hardlinks", hardlinks=False),
]


def materialize(files: dict[str, tuple[bytes, bool]], links: dict[str, str], pyproject: bytes | None, dest: Path,
                variation: Variation) -> Path:
    """Write a tree as a checkout would under ``variation.umask``: fresh files, exec bits from the umask."""
    order = list(files)
    rng = random.Random(variation.seed)
    if variation.seed is not None:
        rng.shuffle(order)
    old = os.umask(variation.umask)
    try:
        dest.mkdir(parents=True)
        if pyproject is not None:
            (dest / "pyproject.toml").write_bytes(pyproject)
        for rel in order:
            data, executable = files[rel]
            path = dest / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            if executable:
                path.chmod(0o777 & ~variation.umask)
        for rel, target in links.items():
            if variation.hardlinks:
                os.link(dest / target, dest / rel)
            else:
                shutil.copyfile(dest / target, dest / rel)
    finally:
        os.umask(old)
    if variation.seed is not None:
        for path in dest.rglob("*"):
            stamp = rng.randrange(10**9)
            os.utime(path, (stamp, stamp), follow_symlinks=False)
    return dest


def build_in_child(project: Path, out: Path, variation: Variation, extra_env: dict[str, str] | None = None) -> Path:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
           "PYTHONDONTWRITEBYTECODE": "1", **variation.env, **(extra_env or {})}
    if variation.cwd == "project-parent":
        cwd, target = project.parent, project.name
    else:
        cwd, target = Path(variation.cwd), str(project)
    mask = variation.umask
    result = subprocess.run([require_executable("hatch-detmodel"), "build", target, "-o", str(out)], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=120, preexec_fn=lambda: os.umask(mask) and None)
    assert result.returncode == 0, f"{variation.name}: {result.stderr}"
    (archive,) = out.glob("*.detmodel.tgz")
    return archive


# --- showing a difference -------------------------------------------------------------------------------


def member_table(archive: Path) -> list[dict[str, object]]:
    with tarfile.open(archive) as tar:
        rows = []
        for info in tar.getmembers():
            handle = tar.extractfile(info) if info.isreg() else None
            data = handle.read() if handle is not None else b""
            rows.append({"name": info.name, "type": info.type.decode(), "mode": oct(info.mode), "size": info.size,
                         "mtime": info.mtime, "uid": info.uid, "gid": info.gid, "uname": info.uname,
                         "gname": info.gname, "pax": dict(info.pax_headers),
                         "sha256": hashlib.sha256(data).hexdigest()[:16]})
        return rows


def member_differences(a: Path, b: Path) -> list[str]:
    """Every member field that differs, member by member (by position, then names only in one)."""
    left, right = member_table(a), member_table(b)
    lines = []
    for index in range(max(len(left), len(right))):
        x = left[index] if index < len(left) else None
        y = right[index] if index < len(right) else None
        if x is None or y is None:
            lines.append(f"  member {index}: only in {'A' if y is None else 'B'}: {(x or y)['name']}")  # type: ignore[index]
            continue
        changed = [f"{key} {x[key]!r} → {y[key]!r}" for key in x if x[key] != y[key]]
        if changed:
            lines.append(f"  member {index} {x['name']}: " + "; ".join(changed))
    raw_a, raw_b = a.read_bytes(), b.read_bytes()
    if not lines and raw_a != raw_b:
        first = next((i for i, (p, q) in enumerate(zip(raw_a, raw_b)) if p != q), min(len(raw_a), len(raw_b)))
        lines.append(f"  members identical; compressed bytes differ from offset {first} (gzip header or zlib)")
    return lines


def explain_difference(a: Path, b: Path, what: str) -> str:
    report = [f"{what}: {a} and {b} differ", *member_differences(a, b)]
    diffoscope = shutil.which("diffoscope")
    if diffoscope is not None:
        result = subprocess.run([diffoscope, "--text", "-", str(a), str(b)], capture_output=True, text=True, timeout=300)
        report += ["--- diffoscope", result.stdout[-20000:]]
    return "\n".join(report)


# --- the suite --------------------------------------------------------------------------------------------


PROJECTS: dict[str, Callable[[Path, Variation], Path]] = {
    "example": lambda dest, v: materialize(example_files(), {}, None, dest, v),
    "tree": lambda dest, v: materialize(TREE_FILES, TREE_LINKS, TREE_PYPROJECT, dest, v),
}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, bytes, bytes]]:
    base = tmp_path_factory.mktemp("baseline")
    variation = VARIATIONS[0]
    built = {}
    for name, make in PROJECTS.items():
        project = make(base / "src" / name, variation)
        archive = build_in_child(project, base / "out" / name, variation)
        built[name] = (archive, archive.read_bytes(), archive.with_name(archive.name.replace(".tgz", ".json")).read_bytes())
    return built


@pytest.mark.parametrize("variation", VARIATIONS[1:], ids=[v.name for v in VARIATIONS[1:]])
@pytest.mark.parametrize("project", list(PROJECTS))
def test_byte_identical_under(baseline: dict[str, tuple[Path, bytes, bytes]], tmp_path: Path, project: str,
                              variation: Variation) -> None:
    source = PROJECTS[project](tmp_path / variation.where / project, variation)
    archive = build_in_child(source, tmp_path / "out", variation)
    expected_archive, expected_bytes, expected_sidecar = baseline[project]
    assert archive.name == expected_archive.name
    if archive.read_bytes() != expected_bytes:
        pytest.fail(explain_difference(expected_archive, archive, f"{project} under {variation.name}"))
    assert archive.with_name(archive.name.replace(".tgz", ".json")).read_bytes() == expected_sidecar


def test_the_tree_really_has_hardlinks_executables_deep_and_unicode_paths(
        baseline: dict[str, tuple[Path, bytes, bytes]]) -> None:
    """The baseline tree is what the suite claims to vary (and its hardlinks are two full files)."""
    rows = {row["name"]: row for row in member_table(baseline["tree"][0])}
    assert rows["weights/alias.bin"]["sha256"] == rows["weights/base.bin"]["sha256"]
    assert rows["weights/alias.bin"]["type"] == "0" and rows["weights/alias.bin"]["size"] == 256 * 64
    assert rows["scripts/train.sh"]["mode"] == "0o755" and rows["model_def.py"]["mode"] == "0o644"
    assert any(len(str(name)) > 200 for name in rows)
    assert {"données/ünïcode-ß.py", "日本語/モデル.txt", "emoji-🚀.txt"} <= set(rows)


@pytest.mark.parametrize("project", list(PROJECTS))
def test_source_date_epoch_changes_only_timestamps(baseline: dict[str, tuple[Path, bytes, bytes]], tmp_path: Path,
                                                   project: str) -> None:
    variation = VARIATIONS[0]
    source = PROJECTS[project](tmp_path / "src", variation)
    archive = build_in_child(source, tmp_path / "out", variation, {"SOURCE_DATE_EPOCH": "1700000000"})
    expected_archive, expected_bytes, expected_sidecar = baseline[project]
    assert archive.read_bytes() != expected_bytes
    differences = member_differences(expected_archive, archive)
    manifest_row = len(differences) - 1
    for index, line in enumerate(differences):
        changed = line.split(": ", 1)[1]
        if index == manifest_row:  # the manifest records the epoch: its bytes differ too, nothing else
            assert line.startswith(f"  member {len(member_table(archive)) - 1} .detmodel.json: mtime 1580601600 → 1700000000")
        else:
            assert changed == "mtime 1580601600 → 1700000000", line
    old, new = json.loads(expected_sidecar), json.loads(archive.with_name(archive.name.replace(".tgz", ".json")).read_text())
    assert new["content_digest"] == old["content_digest"]
    assert new["source_date_epoch"] == 1700000000
    assert {k for k in old if old[k] != new[k]} == {"source_date_epoch", "archive"}


def test_a_difference_is_shown_member_by_member(baseline: dict[str, tuple[Path, bytes, bytes]], tmp_path: Path) -> None:
    """The failure message itself: a changed file and a changed mode are named, field by field."""
    variation = VARIATIONS[0]
    source = PROJECTS["tree"](tmp_path / "src", variation)
    (source / "model_def.py").write_bytes(TREE_FILES["model_def.py"][0] + b"# changed\n")
    (source / "scripts" / "prepare.py").chmod(0o644)
    archive = build_in_child(source, tmp_path / "out", variation)
    text = explain_difference(baseline["tree"][0], archive, "tree")
    size = len(TREE_FILES["model_def.py"][0])
    assert f"model_def.py: size {size} → {size + 10}; sha256" in text.replace("'", "")
    assert "scripts/prepare.py: mode 0o755 → 0o644" in text.replace("'", "")
