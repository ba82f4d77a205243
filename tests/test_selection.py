from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from hatch_detmodel.config import ProjectIdentity, load_project
from hatch_detmodel.errors import SelectionError
from hatch_detmodel.selection import Selector, select_files

from .conftest import ProjectFactory

IDENTITY = ProjectIdentity("demo-project", "1.2.3")
TRIAL = "class MyTrial: pass\n"


def kept(root: Path, output_dir: Path | None = None) -> list[str]:
    (model,) = load_project(root, IDENTITY).models
    return [f.path for f in select_files(model, output_dir).files]


def selector(root: Path) -> Selector:
    (model,) = load_project(root, IDENTITY).models
    return Selector(model)


def test_sorted_by_utf8_bytes_and_defaults(make_project: ProjectFactory) -> None:
    root = make_project(
        files={
            "model_def.py": TRIAL,
            "a-b/x.py": "",
            "a/b/x.py": "",
            "Z.py": "",
            "é.py": "",
            ".git/config": "",
            ".venv/lib/x.py": "",
            ".vscode/settings.json": "",
            "terraform.tfstate": "",
            "pkg/__pycache__/m.cpython-311.pyc": "",
            "pkg/m.pyc": "",
            "pkg/m.py": "",
            "pkg/.detignore": "nested ignore files are never packed\n",
        }
    )
    assert kept(root) == ["Z.py", "a-b/x.py", "a/b/x.py", "model_def.py", "pkg/m.py", "pyproject.toml", "é.py"]


def test_builtin_defaults_can_be_reincluded_but_bytecode_never(make_project: ProjectFactory) -> None:
    root = make_project(
        files={
            "model_def.py": TRIAL,
            ".vscode/settings.json": "{}",
            "m.pyc": "",
            "__pycache__/x.py": "",
            ".detignore": "!.vscode/\n!*.pyc\n!__pycache__/\n!*.py[co]\n",
        }
    )
    assert kept(root) == [".vscode/settings.json", "model_def.py", "pyproject.toml"]
    verdict = selector(root).explain("m.pyc")
    assert (verdict.packed, verdict.reason) == (False, "always-ignored byte code")


def test_exclude_applies_after_the_ignore_file(make_project: ProjectFactory) -> None:
    root = make_project(
        files={"model_def.py": TRIAL, "a.csv": "", "b.csv": "", ".detignore": "*.csv\n!b.csv\n"},
        detmodel='entrypoint = "model_def:MyTrial"\nexclude = ["b.csv"]',
    )
    assert kept(root) == ["model_def.py", "pyproject.toml"]
    assert selector(root).explain("b.csv").reason == "exclude[0]: b.csv"
    assert selector(root).explain("a.csv").reason == ".detignore:1: *.csv"


def test_custom_ignore_file_is_read_and_not_packed(make_project: ProjectFactory) -> None:
    root = make_project(
        files={"model_def.py": TRIAL, "ignore.txt": "*.log\n", "x.log": ""},
        detmodel='entrypoint = "model_def:MyTrial"\ndetignore = "ignore.txt"',
    )
    assert kept(root) == ["model_def.py", "pyproject.toml"]


def test_output_directory_inside_root_is_never_packed(make_project: ProjectFactory) -> None:
    root = make_project(
        files={"model_def.py": TRIAL, "dist/old.whl": "", "PKG-INFO": "", "out/x.detmodel.tgz": "", ".detignore": "!dist/\n"}
    )
    # The whole project is the model definition: dist/ and an sdist's PKG-INFO never count, whatever the output.
    assert kept(root) == ["model_def.py", "out/x.detmodel.tgz", "pyproject.toml"]
    assert selector(root).explain("dist/old.whl").reason.endswith("build output directory (dist/ at the project root)")
    assert kept(root, root / "out") == ["model_def.py", "pyproject.toml"]
    # Writing into the root itself: only this tool's artifacts there are left out.
    (root / "demo-1.detmodel.tgz").write_bytes(b"")
    (root / ".demo-1.detmodel.tgz.abc.tmp").write_bytes(b"")
    assert kept(root, root) == ["model_def.py", "out/x.detmodel.tgz", "pyproject.toml"]


def test_output_directory_rules_in_a_model_subfolder(make_project: ProjectFactory) -> None:
    root = make_project(
        files={"model/m.py": TRIAL, "model/dist/keep.txt": "", "model/out/a.whl": ""},
        detmodel='entrypoint = "m:MyTrial"\npath = "model"',
    )
    (model,) = load_project(root, IDENTITY).models
    assert [f.path for f in select_files(model).files] == ["dist/keep.txt", "m.py", "out/a.whl"]
    copies = root / "model" / "out"
    assert [f.path for f in select_files(model, root / "dist", [copies]).files] == ["dist/keep.txt", "m.py"]


def test_a_verdict_remembered_by_name_is_not_reused_where_the_path_matters(make_project: ProjectFactory) -> None:
    # The walk remembers verdicts by name in folders where only names can matter; every rule or guard
    # that looks at the whole path (anchored patterns, a nested output folder or ignore file, the
    # secrets guard's `.aws/credentials`) must still decide there, whichever folder is walked first.
    same = {f"{folder}/{name}": "" for folder in ("a", "b", "c", "d/e", "d/f") for name in ("x.py", "out", "credentials")}
    same = {k: v for k, v in same.items() if not k.endswith("/out")}
    root = make_project(
        files={"model_def.py": TRIAL, **same, "b/out/y.py": "", "c/out/y.py": "", "d/f/.ignore-here": "z.py\n",
               "d/e/.ignore-here": "", "d/f/z.py": "", "d/e/z.py": ""},
        detmodel='entrypoint = "model_def:MyTrial"\nexclude = ["/b/x.py", "/d/e/credentials"]\ndetignore = "d/f/.ignore-here"',
    )
    assert kept(root, root / "c" / "out") == [
        "a/credentials", "a/x.py", "b/credentials", "b/out/y.py", "c/credentials", "c/x.py",
        "d/e/.ignore-here", "d/e/x.py", "d/f/credentials", "d/f/x.py", "model_def.py",
        "pyproject.toml",
    ]
    (root / ".aws").mkdir()
    (root / ".aws" / "credentials").write_text("")
    with pytest.raises(SelectionError, match=r"\.aws/credentials: looks like a secret") as caught:
        kept(root)
    assert list(caught.value.problems) == [".aws/credentials"]


def test_ignored_directories_are_pruned_not_walked(make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    files: dict[str, str | bytes] = {"model_def.py": TRIAL, ".detignore": "data/\n"}
    files.update({f"data/{i}/x.bin": "" for i in range(20)})
    root = make_project(files=files)
    scanned: list[str] = []
    real_scandir = os.scandir

    def recording_scandir(path):  # type: ignore[no-untyped-def]
        scanned.append(os.fsdecode(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", recording_scandir)
    assert kept(root) == ["model_def.py", "pyproject.toml"]
    assert scanned == [str(root)]


def test_file_symlink_inside_root_is_packed_as_a_regular_file(make_project: ProjectFactory) -> None:
    root = make_project(files={"model_def.py": TRIAL, "lib/real.py": "X = 1\n"})
    os.symlink("lib/real.py", root / "alias.py")
    os.symlink("lib", root / "linked_lib")
    (model,) = load_project(root, IDENTITY).models
    selection = select_files(model)
    expected = ["alias.py", "lib/real.py", "linked_lib/real.py", "model_def.py", "pyproject.toml"]
    assert [f.path for f in selection.files] == expected
    alias = selection.get("alias.py")
    assert alias is not None and alias.size == len("X = 1\n")


@pytest.mark.parametrize("kind", ["outside", "absolute", "dangling", "loop", "parent-dir"])
def test_bad_symlinks_stop_the_build_naming_the_line(make_project: ProjectFactory, tmp_path: Path, kind: str) -> None:
    root = make_project(files={"model_def.py": TRIAL, "sub/x.py": ""})
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    link = root / "sub" / "link"
    if kind == "outside":
        os.symlink("../../secret.txt", link)
    elif kind == "absolute":
        os.symlink(str(outside), link)
    elif kind == "dangling":
        os.symlink("missing.py", link)
    elif kind == "loop":
        os.symlink("link2", link)
        os.symlink("link", root / "sub" / "link2")
    else:
        os.symlink("..", link)
    with pytest.raises(SelectionError) as caught:
        kept(root)
    message = str(caught.value)
    assert "sub/link:" in message and "add `/sub/link" in message and "to .detignore" in message
    # Ignoring it is the way out, and then nothing is read through the link.
    (root / ".detignore").write_text("/sub/link\n/sub/link2\n")
    assert kept(root) == ["model_def.py", "pyproject.toml", "sub/x.py"]


def test_fifo_and_socket_stop_the_build_without_blocking(make_project: ProjectFactory) -> None:
    root = make_project(files={"model_def.py": TRIAL})
    os.mkfifo(root / "pipe")
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(root / "sock"))
        result: list[BaseException] = []
        thread = threading.Thread(target=lambda: _capture(lambda: kept(root), result), daemon=True)
        thread.start()
        thread.join(timeout=20)
        assert not thread.is_alive(), "selection blocked on a FIFO"
        assert isinstance(result[0], SelectionError)
        message = str(result[0])
        assert "pipe: is a FIFO" in message and "sock: is a socket" in message and "2 problems" in message
    finally:
        server.close()


def _capture(call, into: list[BaseException]) -> None:  # type: ignore[no-untyped-def]
    try:
        call()
    except BaseException as error:
        into.append(error)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        (b"bad\xff.py", "not valid UTF-8"),
        ("cafe\u0301.py".encode(), "not in Unicode NFC form"),
        (b"back\\slash.py", "backslash"),
        (b".detmodel.json", "reserved for the artifact's manifest"),
    ],
)
def test_bad_names_are_refused_with_the_fix(make_project: ProjectFactory, name: bytes, problem: str) -> None:
    root = make_project(files={"model_def.py": TRIAL})
    with open(os.path.join(os.fsencode(root), name), "wb") as handle:
        handle.write(b"x")
    with pytest.raises(SelectionError, match=problem):
        kept(root)


def test_the_walk_says_which_paths_are_plain_and_selection_refuses_the_others(make_project: ProjectFactory) -> None:
    """The walk checks a folder's names joined once; its ``plain`` must still be exactly "ASCII, no
    control character, no backslash" for every path: in a plain folder, in one where a single name is
    not plain, and below a folder whose own name is not (its plain-named files are refused too)."""
    root = make_project(files={"model_def.py": TRIAL, "pkg/a.py": "", "pkg/b.py": ""})
    weird = [b"pkg/t\x7fab.py", b"pkg/caf\xc3\xa9.py", b"ctl\x01dir/inner.py", b"ctl\x01dir/sub/deep.py", b"back\\dir/x.py"]
    for rel in weird:
        path = os.path.join(os.fsencode(root), rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(b"x")
    (model,) = load_project(root, IDENTITY).models
    seen = {rel: plain for rel, _entry, _is_dir, _packed, _folder, plain in Selector(model).walk()}
    assert seen == {rel: rel.isascii() and re.search(rb"[\x00-\x1f\x7f\\]", rel) is None for rel in seen}
    assert {rel for rel, plain in seen.items() if not plain} == {
        *weird, b"ctl\x01dir", b"ctl\x01dir/sub", b"back\\dir"
    }
    assert seen[b"pkg/a.py"] and seen[b"model_def.py"]
    with pytest.raises(SelectionError) as caught:
        kept(root)
    assert set(caught.value.problems) == {  # each refused path, parents and children alike
        "pkg/t\\x7fab.py", "ctl\\x01dir", "ctl\\x01dir/inner.py", "ctl\\x01dir/sub", "ctl\\x01dir/sub/deep.py",
        "back\\dir", "back\\dir/x.py",
    }


def test_case_collisions_are_refused(make_project: ProjectFactory) -> None:
    root = make_project(files={"model_def.py": TRIAL, "Data/a.py": "", "data/b.py": ""})
    with pytest.raises(SelectionError, match=r"data: differs from Data only in letter case"):
        kept(root)


def test_executable_bit_gives_mode_755(make_project: ProjectFactory) -> None:
    root = make_project(files={"model_def.py": TRIAL, "run.sh": "#!/bin/sh\n"})
    os.chmod(root / "run.sh", 0o700)
    (model,) = load_project(root, IDENTITY).models
    modes = {f.path: f.mode for f in select_files(model).files}
    assert modes == {"model_def.py": "644", "pyproject.toml": "644", "run.sh": "755"}


def test_explain_reports_parent_exclusion_and_negation(make_project: ProjectFactory) -> None:
    root = make_project(files={"model_def.py": TRIAL, "data/keep.txt": "", ".detignore": "# comment\ndata/\n!data/keep.txt\n"})
    verdict = selector(root).explain("data/keep.txt")
    assert not verdict.packed
    assert verdict.reason == "parent directory data/ excluded by .detignore:2: data/"
    assert selector(root).explain("model_def.py").reason == "no rule matched"


def test_suggested_lines_work_for_names_that_are_not_utf8_or_have_control_characters(make_project: ProjectFactory) -> None:
    root = make_project(files={"model_def.py": TRIAL})
    for name in (b"bad\xff.py", b"ctl\x01name.py"):
        with open(os.path.join(os.fsencode(root), name), "wb") as handle:
            handle.write(b"x")
    with pytest.raises(SelectionError) as caught:
        kept(root)
    message = str(caught.value)
    assert "bad\\xff.py: its name is not valid UTF-8" in message and "add `/bad?.py` to .detignore" in message
    assert "ctl\\x01name.py: its name contains a control character" in message and "`/ctl?name.py`" in message
    (root / ".detignore").write_text("/bad?.py\n/ctl?name.py\n")  # exactly the suggested lines
    assert kept(root) == ["model_def.py", "pyproject.toml"]


def test_non_ascii_names_pack_under_a_non_utf8_locale(make_project: ProjectFactory, tmp_path: Path) -> None:
    """Source paths are decoded as the file system encoding says: under an ASCII C locale (no UTF-8
    mode, no locale coercion), a file named café.txt is still found, read and packed as café.txt."""
    root = make_project({"model_def.py": "class MyTrial: pass\n", "café.txt": "au lait\n"})
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    script = (
        "import sys; from hatch_detmodel import build\n"
        "assert sys.getfilesystemencoding() == 'ascii', sys.getfilesystemencoding()\n"
        "print(build(sys.argv[1], sys.argv[2])[0])\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(root), str(tmp_path / "out")], env=env,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    archive = Path(os.fsdecode(done.stdout.strip()))
    with tarfile.open(archive) as tar:
        member = tar.extractfile("café.txt")
        assert member is not None and member.read() == b"au lait\n"


def test_files_read_ahead_are_handed_on_every_256_or_every_half_mebibyte(make_project: ProjectFactory) -> None:
    """What a build compresses while the walk goes on: 300 small files come in slices of 256 and the
    rest; 200 KiB files come three at a time (600 KiB, past the 512 KiB of a compression job)."""
    small = {f"s/{i:03d}.txt": "x" for i in range(300)}
    large = {f"l/{i}.bin": bytes(200 << 10) for i in range(7)}
    root = make_project(files={**small, **large})
    model = load_project(root, IDENTITY).models[0]
    slices: list[list[str]] = []
    selection = select_files(model, read_ahead=8 << 20, on_selected=lambda files, ahead: slices.append([f.path for f in files]))
    assert len(selection.files) == 7 + 1 + 300  # with pyproject.toml
    assert [len(s) for s in slices] == [3, 3, 256, 46]  # l/0-2 | l/3-5 | l/6, pyproject.toml, s/000-253 | the rest
    assert [path for s in slices for path in s] == [f.path for f in selection.files]
    assert slices[2][:2] == ["l/6.bin", "pyproject.toml"]


@pytest.mark.parametrize("budget", [0, 100 << 10, 600 << 10, 8 << 20])
def test_handing_on_never_skips_repeats_or_sends_an_empty_slice(make_project: ProjectFactory, budget: int) -> None:
    """Whatever the read-ahead budget (none, below a job, running out part-way, ample), the slices are
    non-empty and together are the selection, in order."""
    files: dict[str, str | bytes] = {f"l/{i}.bin": bytes(150 << 10) for i in range(9)}
    files.update({f"s/{i:03d}.txt": "x" for i in range(600)})
    model = load_project(make_project(files=files), IDENTITY).models[0]
    slices: list[list[str]] = []
    selection = select_files(model, read_ahead=budget, on_selected=lambda fs, ahead: slices.append([f.path for f in fs]))
    assert all(slices) and [p for s in slices for p in s] == [f.path for f in selection.files]
    assert len(selection.files) == 9 + 600 + 1


def _open_descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors through Linux's /proc")
def test_the_walk_closes_every_folder_it_opens(make_project: ProjectFactory) -> None:
    """Files are opened by name in their folder's descriptor; no descriptor outlives a selection that
    succeeds, one that refuses a file, one its caller stops by raising, or a walk left part-way."""
    files: dict[str, str | bytes] = {"model_def.py": TRIAL, "z/last.py": ""}
    files.update({f"a/b/c/{i}.py": "" for i in range(300)})
    root = make_project(files=files)
    (model,) = load_project(root, IDENTITY).models
    before = _open_descriptors()
    assert len(select_files(model, read_ahead=1 << 20).files) == 303
    assert _open_descriptors() == before

    def stop(files: list[object], ahead: object) -> None:
        raise KeyboardInterrupt  # handed on at 256 files, deep inside a/b/c/

    with pytest.raises(KeyboardInterrupt):
        select_files(model, read_ahead=1 << 20, on_selected=stop)
    assert _open_descriptors() == before
    walk = Selector(model).walk()
    assert [next(walk)[0] for _ in range(5)] == [b"a", b"a/b", b"a/b/c", b"a/b/c/0.py", b"a/b/c/1.py"]
    assert len(_open_descriptors() - before) == 4  # the root, a/, a/b/, a/b/c/
    walk.close()
    assert _open_descriptors() == before
    os.mkfifo(root / "a" / "b" / "pipe")
    with pytest.raises(SelectionError, match="a/b/pipe: is a FIFO"):
        select_files(model, read_ahead=1 << 20)
    assert _open_descriptors() == before


def test_without_folder_descriptors_files_are_opened_by_path_alike(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where ``os.open`` takes no ``dir_fd`` (Windows), the walk hands out no folder and selection
    reads the same files, with the same sizes, modes and bytes."""
    files: dict[str, str | bytes] = {"model_def.py": TRIAL, "pkg/a.py": "A = 1\n", "pkg/sub/b.bin": bytes(range(256))}
    root = make_project(files=files)
    (root / "pkg" / "run.sh").write_text("#!/bin/sh\n")
    (root / "pkg" / "run.sh").chmod(0o755)
    (model,) = load_project(root, IDENTITY).models
    real_open = os.open
    opened: list[tuple[str, bool]] = []  # (name, whether in a folder's descriptor) of each file opened

    def recording_open(path, flags, mode=0o777, *, dir_fd=None):  # type: ignore[no-untyped-def]
        if not flags & os.O_DIRECTORY:
            opened.append((os.fsdecode(path), dir_fd is not None))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", recording_open)
    monkeypatch.setattr(os, "supports_dir_fd", {*os.supports_dir_fd, recording_open})
    with_folders = select_files(model, read_ahead=1 << 20)
    assert sorted(opened) == [(n, True) for n in ("a.py", "b.bin", "model_def.py", "pyproject.toml", "run.sh")]
    monkeypatch.setattr(os, "supports_dir_fd", set())
    assert {entry[4] for entry in Selector(model).walk()} == {None}
    opened.clear()
    by_path = select_files(model, read_ahead=1 << 20)
    assert sorted(opened) == [(str(root / f.path), False) for f in by_path.files]
    assert by_path.files == with_folders.files and by_path.read_ahead == with_folders.read_ahead
    assert len(by_path.read_ahead) == len(by_path.files) == 5
    run_sh = by_path.get("pkg/run.sh")
    assert run_sh is not None and run_sh.mode == "755"


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors through Linux's /proc")
def test_a_deep_tree_holds_a_bounded_number_of_folder_descriptors(make_project: ProjectFactory) -> None:
    """One descriptor per level would run a tree hundreds of folders deep out of descriptors: below
    64 levels the walk hands out no folder, and those files are opened by path."""
    deep = "/".join(f"d{i}" for i in range(100))
    root = make_project(files={"model_def.py": TRIAL, f"{deep}/leaf.py": "LEAF = 1\n", "d0/top.py": ""})
    (model,) = load_project(root, IDENTITY).models
    before = _open_descriptors()
    walk = Selector(model).walk()
    entry = next(item for item in walk if item[0].endswith(b"leaf.py"))
    assert entry[4] is None and len(_open_descriptors() - before) == 64
    walk.close()
    selection = select_files(model, read_ahead=1 << 20)
    assert selection.read_ahead[f"{deep}/leaf.py"] == b"LEAF = 1\n"
    assert [f.path for f in selection.files] == [f"{deep}/leaf.py", "d0/top.py", "model_def.py", "pyproject.toml"]
    assert _open_descriptors() == before


def test_a_selected_files_bytes_come_from_the_read_ahead_while_it_holds_them(make_project: ProjectFactory) -> None:
    """The entrypoint check asks ``read_bytes``: bytes read while selecting are not read again (the file
    changed on disk since does not show), and once the writer has taken them they come from disk."""
    root = make_project(files={"model_def.py": TRIAL, "pkg/mod.py": "A = 1\n"})
    (model,) = load_project(root, IDENTITY).models
    selection = select_files(model, read_ahead=1 << 20)
    module = selection.get("pkg/mod.py")
    assert module is not None
    (root / "pkg" / "mod.py").write_text("B = 2\n")
    assert selection.read_bytes(module) == b"A = 1\n"
    del selection.read_ahead["pkg/mod.py"]  # as the writer takes it
    assert selection.read_bytes(module) == b"B = 2\n"
    assert select_files(model).read_bytes(module) == b"B = 2\n"  # nothing read ahead
