"""The installed ``hatch-detmodel`` console script, driven as a subprocess: every verb's text and JSON
output and every exit code (0 ok/same, 1 check failed/difference, 2 bad usage/unreadable input)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from hatch_detmodel import build

from .artifacts import FILES, Entry, build_artifact, flip_last_byte, regular, rewrite, sidecar_of
from .conftest import EXAMPLE, ProjectFactory, require_executable, require_module, run

VERBS = ["build", "inspect", "verify", "diff", "explain", "unpack", "check", "attest", "from-wheel"]
STEM = "synthetic_classifier-0.1.0"
PACKED = ["const.yaml", "data.py", "model_def.py", "pyproject.toml"]  # the example's packed files


def cli(*args: str | Path, cwd: Path | None = None, code: int | None = 0) -> subprocess.CompletedProcess[str]:
    result = run([require_executable("hatch-detmodel"), *map(str, args)], cwd=cwd, check=False, timeout=300)
    if code is not None:
        assert result.returncode == code, f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    return result


def cli_json(*args: str | Path, cwd: Path | None = None, code: int | None = 0) -> Any:
    result = cli(*args, "--json", cwd=cwd, code=code)
    return json.loads(result.stdout)  # one JSON document, nothing else on stdout


def copy_example(where: Path) -> Path:
    return Path(shutil.copytree(EXAMPLE, where, ignore=shutil.ignore_patterns("dist", "__pycache__", ".venv")))


@pytest.fixture
def example(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "example")


@pytest.fixture
def artifact(example: Path) -> Path:
    """Built in-process (the same code path; `build` through the script has its own tests)."""
    return build_artifact(example, example / "dist")


def aligned(lines: list[str]) -> bool:
    """Every line's second column starts at the same place."""
    starts = {len(line) - len(line.split("  ", 1)[1].lstrip()) for line in lines if "  " in line.strip()}
    return len(starts) == 1


# --- help, usage ------------------------------------------------------------------------------------


def test_help_lists_every_verb_and_the_exit_codes() -> None:
    text = cli("--help").stdout
    for verb in VERBS:
        assert f"    {verb}" in text
    assert "exit codes: 0 ok or same, 1 a check failed or a difference was found, 2 bad usage or unreadable input" in text
    for verb in VERBS:
        verb_help = cli(verb, "--help").stdout
        assert "exit codes: 0 " in verb_help and "--json" in verb_help, verb


def test_a_verb_alone_gets_the_parser_the_general_help_describes() -> None:
    """A command line that starts with a verb builds only that verb's parser: it must be the one
    the full parser holds (same arguments, same help)."""
    import argparse

    from hatch_detmodel import cli as cli_module

    def verbs_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return dict(action.choices)

    everything = verbs_of(cli_module._parser())
    assert list(everything) == VERBS
    for verb in VERBS:
        alone = verbs_of(cli_module._parser(verb))
        assert list(alone) == [verb]
        assert alone[verb].format_help() == everything[verb].format_help()


def test_bad_usage_exits_2() -> None:
    assert "required" in cli(code=2).stderr
    assert "invalid choice" in cli("frobnicate", code=2).stderr
    assert "the following arguments are required" in cli("verify", code=2).stderr
    assert "--max-bytes" in cli("verify", "x", "--max-bytes", "-3", code=2).stderr


@pytest.mark.parametrize("verb", ["inspect", "verify", "unpack", "check", "attest", "diff"])
def test_a_missing_artifact_is_unreadable_input(verb: str, tmp_path: Path) -> None:
    missing = tmp_path / "missing.detmodel.tgz"
    extra = {"unpack": [tmp_path / "out"], "diff": [missing]}.get(verb, [])
    result = cli(verb, missing, *extra, code=2)
    assert result.stderr.startswith(f"hatch-detmodel: error: {missing}: cannot be read (No such file or directory)")
    assert json.loads(cli(verb, missing, *extra, "--json", code=2).stdout)["error"].startswith(str(missing))


def test_python_dash_m_is_the_same_command(example: Path, tmp_path: Path) -> None:
    run([sys.executable, "-m", "hatch_detmodel", "build", str(example), "-o", str(tmp_path / "m")])
    cli("build", example, "-o", tmp_path / "c")
    name = f"{STEM}.detmodel.tgz"
    assert (tmp_path / "m" / name).read_bytes() == (tmp_path / "c" / name).read_bytes()


# --- build ------------------------------------------------------------------------------------------


def test_build_text_and_json_and_same_bytes_as_the_library(example: Path, tmp_path: Path) -> None:
    result = cli("build", example, "-o", tmp_path / "cli")
    assert result.stdout.splitlines() == [
        str(tmp_path / "cli" / f"{STEM}.detmodel.tgz"), str(tmp_path / "cli" / f"{STEM}.detmodel.json")
    ]
    build(example, tmp_path / "lib")
    name = f"{STEM}.detmodel.tgz"
    assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "lib" / name).read_bytes()
    data = cli_json("build", "example", "-o", "out", cwd=tmp_path)
    assert data == [{
        "model": "default",
        "archive": f"out/{name}",
        "sidecar": f"out/{STEM}.detmodel.json",
        "sha256": hashlib.sha256((tmp_path / "lib" / name).read_bytes()).hexdigest(),
        "content_digest": data[0]["content_digest"],
    }]


def test_build_errors_exit_2_with_the_file_and_the_fix(make_project: ProjectFactory) -> None:
    project = make_project(detmodel='entrypoint = "model_def.py:MyTrial"')
    result = cli("build", project, code=2)
    assert "use `model_def:MyTrial`" in result.stderr
    assert cli_json("build", project, code=2)["error"].startswith("entrypoint 'model_def.py:MyTrial'")


# --- inspect ----------------------------------------------------------------------------------------


def test_inspect_text_and_json(artifact: Path) -> None:
    text = cli("inspect", artifact).stdout
    head, _, rest = text.partition("\n\n")
    lines = head.splitlines()
    assert aligned(lines)
    assert lines[0].split() == ["artifact", str(artifact)]
    assert "entrypoint       model_def:SyntheticTrial" in lines
    assert "trial            SyntheticTrial(pytorch.PyTorchTrial) in model_def.py" in lines
    assert "verified         yes" in lines
    assert any(line.startswith("Determined size  ") and "of 99,614,720 bytes" in line for line in lines)
    largest = sorted(PACKED, key=lambda name: (-(EXAMPLE / name).stat().st_size, name))
    listing = rest.splitlines()
    assert listing[0] == "largest files (of 4)"
    assert [line.split() for line in listing[1:]] == [[f"{(EXAMPLE / n).stat().st_size:,}", "644", n] for n in largest]
    assert aligned(listing[1:]) or len({len(line.split("644")[0]) for line in listing[1:]}) == 1

    data = cli_json("inspect", artifact)
    assert data["project"] == {"name": "synthetic-classifier", "version": "0.1.0"}
    assert (data["model"], data["entrypoint"], data["file_count"]) == ("default", "model_def:SyntheticTrial", 4)
    assert data["trial"]["bases"] == ["pytorch.PyTorchTrial"]
    assert data["archive"]["sha256"] == hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert data["determined_limit"] == 99_614_720 and data["verified"] is True
    assert [f["path"] for f in data["largest"]] == largest


def test_inspect_exit_codes(artifact: Path, tmp_path: Path) -> None:
    bad = rewrite(artifact, tmp_path / "bad.detmodel.tgz",
                  lambda items: [(i, flip_last_byte(d) if i.name == "data.py" else d) for i, d in items])
    result = cli("inspect", bad, code=1)
    assert "verified         NO, 2 problems" in result.stdout and "sha256" in result.stdout
    (tmp_path / "text.detmodel.tgz").write_text("not an archive")
    assert "not a gzip file" in cli("inspect", tmp_path / "text.detmodel.tgz", code=2).stderr
    assert "cannot be read" in cli("inspect", tmp_path / "absent.detmodel.tgz", code=2).stderr
    nomanifest = rewrite(artifact, tmp_path / "nm.detmodel.tgz", lambda items: items[:-1])
    assert "has no .detmodel.json member" in cli("inspect", nomanifest, code=2).stderr


# --- verify -----------------------------------------------------------------------------------------


def test_verify_ok_text_and_json(artifact: Path) -> None:
    result = cli("verify", artifact)
    assert result.stdout.splitlines()[0] == f"{artifact}: OK (4 files, archive hash matches the sidecar)"
    assert result.stderr == ""  # no progress drawn when stderr is not a terminal
    data = cli_json("verify", artifact)
    assert data["ok"] is True and data["problems"] == [] and data["sidecar"] == str(sidecar_of(artifact))
    assert data["archive"]["sha256"] == hashlib.sha256(artifact.read_bytes()).hexdigest()


def member_names(artifact: Path) -> list[str]:
    with tarfile.open(artifact) as tar:
        return tar.getnames()


@pytest.mark.parametrize("index", range(5))
def test_verify_catches_a_one_byte_change_in_any_member(artifact: Path, tmp_path: Path, index: int) -> None:
    name = member_names(artifact)[index]
    bad = rewrite(artifact, tmp_path / f"{STEM}.detmodel.tgz",
                  lambda items: [(i, flip_last_byte(d) if i.name == name else d) for i, d in items], keep_sidecar=True)
    result = cli("verify", bad, code=1)
    assert result.stdout.startswith(f"{bad}: FAILED")
    codes = {p["code"] for p in cli_json("verify", bad, code=1)["problems"]}
    assert "sidecar-archive" in codes
    assert codes & {"sha256", "manifest-invalid"}
    assert (name == ".detmodel.json") == ("manifest-invalid" in codes)
    if name != ".detmodel.json":
        assert f"{bad}: {name}: content differs from the manifest" in result.stdout


@pytest.mark.parametrize(
    ("label", "transform", "expected"),
    [
        ("extra", lambda items: [*items[:-1], regular("evil.py", b"x = 1\n"), items[-1]], {"extra", "content-digest"}),
        ("missing", lambda items: [e for e in items if e[0].name != "data.py"], {"missing", "content-digest"}),
        ("renamed", None, {"missing", "extra", "content-digest"}),
    ],
)
def test_verify_catches_extra_missing_and_renamed_members(
    artifact: Path, tmp_path: Path, label: str, transform: Any, expected: set[str]
) -> None:
    def rename(items: list[Entry]) -> list[Entry]:
        for info, _ in items:
            if info.name == "data.py":
                info.name = "dataset.py"
        return items

    bad = rewrite(artifact, tmp_path / f"{label}.detmodel.tgz", transform or rename)
    data = cli_json("verify", bad, code=1)
    assert {p["code"] for p in data["problems"]} == expected
    assert all(p["message"].startswith(str(bad)) for p in data["problems"])
    if label == "renamed":
        assert [(p["code"], p["path"]) for p in data["problems"][:2]] == [("missing", "data.py"), ("extra", "dataset.py")]


def test_verify_catches_a_tampered_sidecar(artifact: Path) -> None:
    sidecar = sidecar_of(artifact)
    data = json.loads(sidecar.read_text())
    data["archive"]["sha256"] = "0" * 64
    sidecar.write_text(json.dumps(data))
    result = cli("verify", artifact, code=1)
    assert "sidecar-archive" in result.stdout and f"{sidecar}: records the archive as" in result.stdout
    assert cli("verify", artifact, "--no-sidecar").returncode == 0


def test_verify_source(artifact: Path, example: Path) -> None:
    result = cli("verify", artifact, "--source", example)
    assert f"{example}: rebuilds the same content (byte-identical archive)" in result.stdout
    data = cli_json("verify", artifact, "--source", example)
    assert data["source"]["same_content"] is True and data["source"]["byte_identical"] is True

    (example / "data.py").write_text((example / "data.py").read_text().replace("CLASSES = 4", "CLASSES = 5"))
    result = cli("verify", artifact, "--source", example, code=1)
    assert f"{example}: does NOT rebuild this artifact" in result.stdout
    size = f"{(example / 'data.py').stat().st_size:,} bytes"
    assert f"{artifact}: data.py: differs: {size} in the artifact, {size} in {example}" in result.stdout
    data = cli_json("verify", artifact, "--source", example, code=1)
    assert data["ok"] is False and data["source"]["same_content"] is False
    assert cli_json("verify", artifact, "--source", example / "nowhere", code=2)["error"].endswith(
        "point at the project folder holding pyproject.toml"
    )


def test_json_documents_are_deterministic_and_hold_only_given_paths(artifact: Path, tmp_path: Path) -> None:
    rel = artifact.relative_to(tmp_path)
    first = cli("verify", rel, "--json", cwd=tmp_path).stdout
    assert first == cli("verify", rel, "--json", cwd=tmp_path).stdout
    assert str(tmp_path) not in first
    assert str(tmp_path) not in cli("inspect", rel, "--json", cwd=tmp_path).stdout


# --- diff -------------------------------------------------------------------------------------------


def test_diff_two_builds_after_a_one_line_edit(example: Path, tmp_path: Path) -> None:
    cli("build", example, "-o", tmp_path / "a")
    model_def = example / "model_def.py"
    model_def.write_text(model_def.read_text().replace('"hidden_size", 64', '"hidden_size", 128'))
    cli("build", example, "-o", tmp_path / "b")
    a, b = (tmp_path / side / f"{STEM}.detmodel.tgz" for side in "ab")
    lines = cli("diff", a, b, code=1).stdout.splitlines()
    assert lines[:3] == [f"--- {a}", f"+++ {b}", "model default: files: 1 changed; 1 field changed"]
    size = model_def.stat().st_size
    assert lines[3].split() == ["changed", "model_def.py", f"{size - 1:,}", "→", f"{size:,}", "bytes"]
    assert lines[4].split()[:2] == ["field", "content_digest"]
    assert aligned(lines[3:5])
    data = cli_json("diff", a, b, code=1)
    (model,) = data["models"]
    assert data["same"] is False and model["added"] == [] and model["removed"] == []
    assert [(c["path"], c["a"]["size"], c["b"]["size"]) for c in model["changed"]] == [("model_def.py", size - 1, size)]
    assert [f["field"] for f in model["fields"]] == ["content_digest"]

    assert cli("diff", b, example).stdout.splitlines()[2] == "model default: same"  # artifact vs project folder
    assert cli_json("diff", a, a)["same"] is True


def test_diff_added_removed_and_fields(example: Path, tmp_path: Path) -> None:
    other = copy_example(tmp_path / "other")
    (other / "const.yaml").unlink()
    (other / "extra.py").write_text("X = 1\n")
    pyproject = other / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "0.1.0"', 'version = "0.2.0"'))
    text = cli("diff", example, other, code=1).stdout
    rows = [line.split() for line in text.splitlines()[3:]]
    assert ["removed", "const.yaml", f"{(example / 'const.yaml').stat().st_size:,}", "bytes"] in rows
    assert ["added", "extra.py", "6", "bytes"] in rows
    assert ["field", "project.version", "0.1.0", "→", "0.2.0"] in rows
    assert aligned(text.splitlines()[3:])


def test_diff_refuses_an_artifact_that_fails_verification(artifact: Path, tmp_path: Path) -> None:
    bad = rewrite(artifact, tmp_path / "bad.detmodel.tgz",
                  lambda items: [(i, flip_last_byte(d) if i.name == "data.py" else d) for i, d in items])
    result = cli("diff", artifact, bad, code=2)
    assert f"{bad}: fails verification (2 problems); it cannot be compared" in result.stderr
    assert f"hatch-detmodel verify {bad}" in result.stderr


# --- explain ----------------------------------------------------------------------------------------


def explain_project(make_project: ProjectFactory) -> Path:
    return make_project({
        "model_def.py": "class MyTrial: pass\n",
        ".detignore": "# data lives in storage\n*.csv\n!keep.csv\ndata/\n!data/wanted.py\n",
        "a.csv": "", "keep.csv": "", "data/x.py": "", "data/wanted.py": "",
    })


def test_explain_names_the_exact_detignore_line(make_project: ProjectFactory) -> None:
    project = explain_project(make_project)
    text = cli("explain", "--project", project, "a.csv", "keep.csv", "data/x.py", "data/wanted.py", "model_def.py").stdout
    lines = text.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["excluded", "a.csv"], ["packed", "keep.csv"], ["excluded", "data/x.py"], ["excluded", "data/wanted.py"],
        ["packed", "model_def.py"],
    ]
    assert aligned(lines)
    assert lines[0].endswith("  .detignore:2: *.csv")
    assert lines[1].endswith("  .detignore:3: !keep.csv")  # negated pattern
    assert lines[2].endswith("  parent directory data/ excluded by .detignore:4: data/")  # directory pattern
    # git: a file cannot be re-included when its parent directory is excluded
    assert lines[3].endswith("  parent directory data/ excluded by .detignore:4: data/")
    assert lines[4].endswith("  no rule matched")

    data = cli_json("explain", "--project", project, "keep.csv", "data/x.py")
    assert [(e["path"], e["status"], e["rule"]) for e in data["explanations"]] == [
        ("keep.csv", "packed", {"source": ".detignore", "line": 3, "pattern": "!keep.csv"}),
        ("data/x.py", "excluded", {"source": ".detignore", "line": 4, "pattern": "data/"}),
    ]


def test_explain_all_and_exit_codes(make_project: ProjectFactory, tmp_path: Path) -> None:
    project = explain_project(make_project)
    lines = cli("explain", "--all", "--project", project).stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["excluded", ".detignore"], ["excluded", "a.csv"], ["excluded", "data/"], ["packed", "keep.csv"],
        ["packed", "model_def.py"], ["packed", "pyproject.toml"],
    ]
    assert "pass PATH… or --all" in cli("explain", "--project", project, code=2).stderr
    assert "not a directory" in cli("explain", "--project", tmp_path / "nope", "x", code=2).stderr
    (tmp_path / "secret").write_text("x")
    (project / "leak.txt").symlink_to(tmp_path / "secret")
    refused = cli("explain", "--project", project, "leak.txt", code=1).stdout
    assert refused.startswith("refused  leak.txt  leak.txt: symbolic link points outside the model definition")


# --- unpack -----------------------------------------------------------------------------------------


def test_unpack_round_trip_equals_the_source(artifact: Path, example: Path, tmp_path: Path) -> None:
    out = tmp_path / "unpacked"
    text = cli("unpack", artifact, out).stdout
    total = sum((example / name).stat().st_size for name in PACKED)
    assert text.startswith(f"{out}: wrote 4 files ({total:,} bytes) from {artifact}")
    for name in PACKED:
        assert (out / name).read_bytes() == (example / name).read_bytes()
    assert sorted(p.name for p in out.iterdir()) == PACKED

    assert "is not empty" in cli("unpack", artifact, out, code=2).stderr
    data = cli_json("unpack", artifact, out, "--force")
    assert [f["path"] for f in data["files"]] == PACKED


def test_unpack_refuses_a_damaged_artifact_and_writes_nothing(artifact: Path, tmp_path: Path) -> None:
    bad = rewrite(artifact, tmp_path / "bad.detmodel.tgz",
                  lambda items: [*items[:-1], regular("../escape.py", b"boom"), items[-1]])
    result = cli("unpack", bad, tmp_path / "out" / "in", code=1)
    assert "fails verification" in result.stderr and "unsafe-name" in result.stderr
    assert not (tmp_path / "out").exists()
    assert cli_json("unpack", bad, tmp_path / "out", code=1)["report"]["ok"] is False


def test_unpack_never_writes_through_a_link(artifact: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.py"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "data.py").symlink_to(victim)
    cli("unpack", artifact, out, "--force")
    assert victim.read_text() == "precious\n" and not (out / "data.py").is_symlink()


# --- check ------------------------------------------------------------------------------------------


def test_check_static_on_project_and_artifact(example: Path, artifact: Path) -> None:
    lines = cli("check", example).stdout.splitlines()
    assert lines[0] == f"{example} (model default): OK"
    assert lines[1:] == [
        "  entrypoint  model_def:SyntheticTrial",
        "  trial       SyntheticTrial(pytorch.PyTorchTrial) in model_def.py, line 14",
    ]
    data = cli_json("check", artifact)
    assert data["ok"] is True and data["kind"] == "artifact"
    assert data["models"][0]["defined_at"] == "model_def.py:14" and data["models"][0]["import"] is None


def test_check_static_failure(make_project: ProjectFactory) -> None:
    project = make_project(detmodel='entrypoint = "model_def:Missing"')
    result = cli("check", project, code=1)
    assert "FAILED" in result.stdout and "class `Missing` not found; classes defined there: MyTrial" in result.stdout


def test_check_import_on_the_example_trial(artifact: Path) -> None:
    require_module("determined")
    require_module("torch")
    lines = cli("check", artifact, "--import").stdout.splitlines()
    assert lines[0] == f"{artifact} (model default): OK"
    assert "  import      model_def.SyntheticTrial (loaded by determined.load.trial_class_from_entrypoint)" in lines
    assert ("  bases       determined.pytorch._pytorch_trial.PyTorchTrial → determined._trial.LegacyTrial → "
            "builtins.object") in lines
    assert "  from        model_def.py" in lines


def test_check_import_on_a_broken_trial(make_project: ProjectFactory, tmp_path: Path) -> None:
    project = make_project({
        # a sibling import (needs sys.path[0] == "" and the copy as cwd), then a module that is not there
        "helper.py": "NAME = 'helper'\n",
        "model_def.py": "import helper\nimport not_installed_anywhere_xyz\n\n\nclass MyTrial:\n    pass\n",
    })
    result = cli("check", project, "--import", code=1)
    assert "FAILED" in result.stdout
    assert "import      FAILED: ModuleNotFoundError: No module named 'not_installed_anywhere_xyz'" in result.stdout
    artifact = build_artifact(project, tmp_path / "dist")
    data = cli_json("check", artifact, "--import", code=1)
    assert data["models"][0]["error"] is None  # the static check passes; the import does not
    assert data["models"][0]["import"]["error"] == "ModuleNotFoundError: No module named 'not_installed_anywhere_xyz'"


def test_check_import_runs_in_the_packed_copy(make_project: ProjectFactory) -> None:
    """The trial imports its sibling from the copy, and reads a data file relative to the working folder;
    a file excluded by .detignore is not there."""
    project = make_project({
        ".detignore": "secret.py\n",
        "secret.py": "X = 1\n",
        "helper.py": "import os\nCONFIG = open('config.txt').read()\nHAS_SECRET = os.path.exists('secret.py')\n",
        "config.txt": "ok\n",
        "model_def.py": "import helper\nassert helper.CONFIG == 'ok\\n'\nassert not helper.HAS_SECRET\n"
                        "try:\n    from determined import LegacyTrial as Base\nexcept ImportError:\n    Base = object\n\n\n"
                        "class MyTrial(Base):\n    pass\n",
    })
    data = cli_json("check", project, "--import", "--python", sys.executable)
    imported = data["models"][0]["import"]
    assert imported["ok"] is True, data
    assert (imported["class"], imported["file"]) == ("model_def.MyTrial", "model_def.py")
    assert imported["mro"][0] == "model_def.MyTrial" and imported["mro"][-1] == "builtins.object"


# --- attest -----------------------------------------------------------------------------------------


def test_attest_prints_an_in_toto_statement(artifact: Path, tmp_path: Path) -> None:
    statement = json.loads(cli("attest", artifact).stdout)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"] == [{
        "name": f"{STEM}.detmodel.tgz", "digest": {"sha256": hashlib.sha256(artifact.read_bytes()).hexdigest()}
    }]
    assert statement["predicateType"] == "https://github.com/hatch-detmodel/hatch-detmodel/manifest/v1"
    with tarfile.open(artifact) as tar:
        manifest_member = tar.extractfile(".detmodel.json")
        assert manifest_member is not None
        assert statement["predicate"] == json.loads(manifest_member.read())
    assert cli("attest", artifact, "--json").stdout == cli("attest", artifact).stdout

    out = tmp_path / "statement.json"
    assert cli("attest", artifact, "-o", out).stdout.startswith(f"{out}: in-toto Statement for {STEM}.detmodel.tgz")
    assert json.loads(out.read_text()) == statement


def test_attest_refuses_a_damaged_artifact(artifact: Path, tmp_path: Path) -> None:
    bad = rewrite(artifact, tmp_path / f"{STEM}.detmodel.tgz",
                  lambda items: [(i, flip_last_byte(d) if i.name == "data.py" else d) for i, d in items])
    result = cli("attest", bad, code=1)
    assert result.stdout == "" and "no statement was made" in result.stderr


# --- from-wheel -------------------------------------------------------------------------------------


def test_from_wheel_extracts_and_verifies(make_project: ProjectFactory, tmp_path: Path) -> None:
    project = make_project(FILES)
    artifact = build_artifact(project, tmp_path / "dist")
    wheel = tmp_path / "demo_project-1.2.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path in (artifact, sidecar_of(artifact)):
            zf.write(path, f"demo_project-1.2.3.dist-info/extra_metadata/detmodel/{path.name}")
    out = tmp_path / "out"
    result = cli("from-wheel", wheel, "-o", out)
    assert result.stdout.splitlines() == [str(out / artifact.name), str(out / sidecar_of(artifact).name)]
    assert (out / artifact.name).read_bytes() == artifact.read_bytes()
    data = cli_json("from-wheel", wheel, "-o", tmp_path / "out2")
    assert [r["ok"] for r in data["verified"]] == [True]

    (tmp_path / "plain.whl").write_text("not a zip")
    assert "not a wheel" in cli("from-wheel", tmp_path / "plain.whl", code=2).stderr


def test_artifact_helpers_build_the_fixture(make_project: ProjectFactory, tmp_path: Path) -> None:
    """The shared FILES tree builds and verifies through the command line too (PAX and non-ASCII names)."""
    project = make_project(FILES)
    artifact = build_artifact(project, tmp_path / "dist")
    assert cli_json("verify", artifact)["ok"] is True


def test_check_import_of_a_class_that_is_not_a_trial(make_project: ProjectFactory) -> None:
    require_module("determined")
    project = make_project({"model_def.py": "class Base:\n    pass\n\n\nclass MyTrial(Base):\n    pass\n"})
    result = cli("check", project, "--import", code=1)
    assert "  import      FAILED: AssertionError: entrypoint (model_def:MyTrial) is not a det.Trial subclass" in result.stdout
    assert "  class       model_def.MyTrial, bases: model_def.Base → builtins.object" in result.stdout


def test_check_import_without_determined_uses_importlib(make_project: ProjectFactory, tmp_path: Path) -> None:
    """Where Determined is not installed (shadowed here by a package that fails to import), the child
    walks the reference with importlib and still reports the class."""
    shim = tmp_path / "shim" / "determined"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('determined is shadowed for this test')\n")
    project = make_project({"model_def.py": "class Base:\n    pass\n\n\nclass MyTrial(Base):\n    pass\n"})
    env = {**os.environ, "PYTHONPATH": str(shim.parent)}
    result = run([require_executable("hatch-detmodel"), "check", str(project), "--import", "--json"], env=env)
    imported = json.loads(result.stdout)["models"][0]["import"]
    assert imported["loader"] == "importlib (determined is not installed)"
    assert imported["mro"] == ["model_def.MyTrial", "model_def.Base", "builtins.object"]


TRIAL_BASE = "try:\n    from determined import LegacyTrial as Base\nexcept ImportError:\n    Base = object\n"


def test_check_import_loads_what_determined_runs_for_the_root_package_form(make_project: ProjectFactory) -> None:
    """`:MyTrial` cannot be launched by Determined as is; the import goes through the generated module."""
    project = make_project({
        "__init__.py": "from .model_def import MyTrial\n",
        "model_def.py": TRIAL_BASE + "\n\nclass MyTrial(Base):\n    pass\n",
    }, detmodel='entrypoint = ":MyTrial"')
    text = cli("check", project, "--import").stdout
    assert "  Determined runs  _detmodel_entrypoint:MyTrial" in text
    data = cli_json("check", project, "--import")
    (model,) = data["models"]
    assert model["determined_entrypoint"] == "_detmodel_entrypoint:MyTrial"
    assert model["import"]["ok"] is True and model["import"]["entrypoint"] == "_detmodel_entrypoint:MyTrial"
    assert model["import"]["mro"][0].endswith(".model_def.MyTrial")


def test_check_a_command_entrypoint(make_project: ProjectFactory) -> None:
    project = make_project({"train.py": "print('training')\n"}, detmodel='entrypoint = "python3 train.py"')
    data = cli_json("check", project, "--import")
    (model,) = data["models"]
    assert data["ok"] is True and model["trial"] is None and model["command"] == ["python3", "train.py"]
    assert model["import"] is None and "there is no trial class to import" in model["warnings"][0]
    missing = make_project({"model_def.py": ""}, detmodel='entrypoint = "python3 train.py"', where=project.parent / "m")
    assert "script train.py: train.py does not exist" in cli("check", missing, code=1).stdout


def test_a_build_starts_without_what_only_other_verbs_use(make_project: ProjectFactory, tmp_path: Path) -> None:
    """Start-up is most of a small build's time: `build` of a project with a plain name and
    version imports neither the artifact reader, nor hatchling, nor modules the build does not use
    (``dataclasses``, with ``inspect``: the build path's records are tuples)."""
    root = make_project()
    code = (
        "import sys\nfrom hatch_detmodel.cli import main\n"
        f"assert main(['build', {str(root)!r}, '-o', {str(tmp_path / 'out')!r}]) == 0\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split())
    assert "hatch_detmodel.pipeline" in loaded and list((tmp_path / "out").glob("*.detmodel.tgz"))
    unneeded = {
        "hatch_detmodel.reader", "hatchling", "packaging", "concurrent.futures", "logging", "tempfile", "gzip", "shutil",
        "dataclasses", "inspect",
    }
    assert loaded & unneeded == set()


@pytest.mark.parametrize("columns", [None, "0", "57", "203", "wide"])
def test_help_is_as_wide_as_argparse_makes_it(columns: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Our help formatter finds the terminal width itself (argparse would import ``shutil`` for it):
    the same width argparse's own formatter gives, whatever ``COLUMNS`` says."""
    import argparse

    from hatch_detmodel import cli as cli_module

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    ours = cli_module._HelpFormatter("hatch-detmodel")
    theirs = argparse.RawDescriptionHelpFormatter("hatch-detmodel")
    assert ours._width == theirs._width
    assert ours._max_help_position == theirs._max_help_position


def test_the_help_states_the_readers_default_byte_limit() -> None:
    from hatch_detmodel.cli import DEFAULT_MAX_BYTES
    from hatch_detmodel.reader import DEFAULT_LIMITS

    assert DEFAULT_LIMITS.max_total == DEFAULT_MAX_BYTES
    assert f"{DEFAULT_LIMITS.max_total:,}" in cli("inspect", "--help").stdout


def test_the_script_flushes_everything_and_keeps_the_exit_status(make_project: ProjectFactory, tmp_path: Path) -> None:
    """The script ends with a hard exit (no interpreter teardown): output larger than a pipe's buffer
    still arrives whole, and the status is the command's."""
    files: dict[str, str | bytes] = {"model_def.py": "class MyTrial: pass\n"}
    files.update({f"pkg/module_{i:04d}.py": f"x = {i}\n" for i in range(1500)})
    archive, _ = build(make_project(files=files), tmp_path / "out")
    listing = cli("inspect", archive, "--json").stdout
    assert len(listing) > 1 << 17  # more than a pipe holds: written while the reader reads
    assert json.loads(listing)["file_count"] == 1502  # with pyproject.toml
    archive.write_bytes(flip_last_byte(archive.read_bytes()))
    assert "FAILED" in cli("verify", archive, code=1).stdout  # a failed check keeps its status


def test_the_script_runs_with_its_standard_output_closed() -> None:
    done = subprocess.run(f"{require_executable('hatch-detmodel')} --version >&-", shell=True, capture_output=True, text=True)
    assert done.returncode == 0 and "Traceback" not in done.stderr  # (argparse then prints the version to stderr)
