"""``explain``: the deciding rule for a path, from the build's own selector and guards."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import hatch_detmodel
from hatch_detmodel.config import load_project
from hatch_detmodel.errors import SelectionError
from hatch_detmodel.explain import explain_all, explain_paths, relative_to_root

from .conftest import ProjectFactory

DETIGNORE = "# comment\n*.csv\n!keep.csv\ndata/\n"


def test_explain_paths_names_the_rule(make_project: ProjectFactory) -> None:
    root = make_project({"model_def.py": "class MyTrial: pass\n", ".detignore": DETIGNORE, "a.csv": "", "keep.csv": "",
                         "data/x.py": "", "__pycache__/m.pyc": ""})
    (model,) = load_project(root).models
    found = {e.path: e for e in explain_paths(model, ["a.csv", "keep.csv", "data/x.py", "model_def.py",
                                                      "__pycache__/m.pyc", "dist/x.detmodel.tgz", "not/there.csv"],
                                              output_dir=root / "dist", cwd=root.parent)}
    assert (found["a.csv"].status, found["a.csv"].reason) == ("excluded", ".detignore:2: *.csv")
    assert (found["keep.csv"].status, found["keep.csv"].reason) == ("packed", ".detignore:3: !keep.csv")
    assert (found["keep.csv"].source, found["keep.csv"].line, found["keep.csv"].pattern) == (".detignore", 3, "!keep.csv")
    assert found["data/x.py"].reason == "parent directory data/ excluded by .detignore:4: data/"
    assert found["data/x.py"].line == 4
    assert found["model_def.py"].reason == "no rule matched" and found["model_def.py"].source is None
    assert found["__pycache__/m.pyc"].reason.endswith("always-ignored byte code")
    assert "build output directory" in found["dist/x.detmodel.tgz"].reason
    assert found["not/there.csv"].reason == ".detignore:2: *.csv"


def test_paths_relative_to_the_current_folder_or_absolute(make_project: ProjectFactory, tmp_path: Path) -> None:
    root = make_project({"model_def.py": "class MyTrial: pass\n", "sub/a.py": ""})
    (model,) = load_project(root).models
    assert relative_to_root(model, "sub/a.py", root / "sub") == "sub/a.py"  # not there from sub/: root-relative
    assert relative_to_root(model, "a.py", root / "sub") == "sub/a.py"  # exists from the current folder
    assert relative_to_root(model, str(root / "sub" / "a.py"), tmp_path) == "sub/a.py"
    assert relative_to_root(model, str(root), tmp_path) == "."


def test_a_refused_path_reports_the_guard(make_project: ProjectFactory, tmp_path: Path) -> None:
    root = make_project({"model_def.py": "class MyTrial: pass\n"})
    outside = tmp_path / "secret.txt"
    outside.write_text("x")
    os.symlink(outside, root / "leak.txt")
    (model,) = load_project(root).models
    (found,) = explain_paths(model, ["leak.txt"], cwd=tmp_path)
    assert found.status == "refused"
    assert found.refused is not None and "points outside the model definition" in found.refused


def test_explain_all_lists_files_and_pruned_folders(make_project: ProjectFactory) -> None:
    root = make_project({"model_def.py": "class MyTrial: pass\n", ".detignore": DETIGNORE, "a.csv": "",
                         "keep.csv": "", "data/x.py": "", "data/deep/y.py": "", "lib/z.py": ""})
    (model,) = load_project(root).models
    rows = [(e.status, e.path, e.reason) for e in explain_all(model, output_dir=root / "dist")]
    assert rows == [
        ("excluded", ".detignore", "ignore file (never packed)"),
        ("excluded", "a.csv", ".detignore:2: *.csv"),
        ("excluded", "data/", ".detignore:4: data/"),
        ("packed", "keep.csv", ".detignore:3: !keep.csv"),
        ("packed", "lib/z.py", "no rule matched"),
        ("packed", "model_def.py", "no rule matched"),
        ("packed", "pyproject.toml", "no rule matched"),
    ]


def test_a_private_key_inside_a_kept_file_is_refused_as_the_build_refuses_it(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
    root = make_project({"model_def.py": "class MyTrial: pass\n", "notes.txt": key, "clean.txt": "nothing here"})
    (model,) = load_project(root).models
    notes, clean = explain_paths(model, ["notes.txt", "clean.txt"], cwd=tmp_path)
    assert (notes.status, clean.status) == ("refused", "packed")
    assert notes.refused is not None and "notes.txt: contains a private key" in notes.refused
    rows = {e.path: e.status for e in explain_all(model)}
    assert rows["notes.txt"] == "refused" and rows["clean.txt"] == "packed"
    with pytest.raises(SelectionError) as built:
        hatch_detmodel.build(root, tmp_path / "dist")
    assert built.value.problems["notes.txt"] == notes.refused  # the very message the build stops with
