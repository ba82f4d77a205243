"""Hardening of the build side (issue 6): every name, link, special-file and permission case, and files
that change or vanish while the build runs. Cases already covered elsewhere are named, not repeated:

- symlink out of the root, absolute, dangling, loop, link to a parent:
  ``test_selection.py::test_bad_symlinks_stop_the_build_naming_the_line``
- symlinked directory inside the root is followed:
  ``test_selection.py::test_file_symlink_inside_root_is_packed_as_a_regular_file``
- FIFO and socket, without blocking: ``test_selection.py::test_fifo_and_socket_stop_the_build_without_blocking``
- non-UTF-8, non-NFC, backslash, root ``.detmodel.json``: ``test_selection.py::test_bad_names_are_refused_with_the_fix``
- case collisions: ``test_selection.py::test_case_collisions_are_refused``
- a file growing between selection and reading: ``test_pipeline.py::test_file_changing_size_during_build_stops_it``
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator

import pytest

from hatch_detmodel import archive, build, pipeline
from hatch_detmodel.config import ProjectIdentity, load_project
from hatch_detmodel.errors import ArchiveError, ConfigError, DetmodelError, EntrypointError, SelectionError
from hatch_detmodel.reader import read_artifact
from hatch_detmodel.selection import select_files

from .conftest import ProjectFactory, require, require_executable, run

IDENTITY = ProjectIdentity("demo-project", "1.2.3")
TRIAL = "class MyTrial: pass\n"


def kept(root: Path) -> list[str]:
    (model,) = load_project(root, IDENTITY).models
    return [f.path for f in select_files(model).files]


def refusal(root: Path) -> SelectionError:
    with pytest.raises(SelectionError) as caught:
        kept(root)
    return caught.value


# --- names ---------------------------------------------------------------------------------------


def test_absolute_dotdot_and_nul_cannot_be_file_names(tmp_path: Path) -> None:
    """A directory entry's name never holds `/` or NUL, and `.`/`..` are never listed: the walk cannot
    meet an absolute, climbing or NUL name. (The other places such text can come from are tested below.)"""
    with pytest.raises(ValueError, match="embedded null byte"):
        open(tmp_path / "a\0b", "w")  # noqa: SIM115 - it never opens
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f").write_text("x")
    names = {entry.name for entry in os.scandir(tmp_path)}
    assert names == {"sub"}  # never "." or ".."
    assert (tmp_path / "sub/f").exists() and not (tmp_path / "sub%2Ff").exists()  # "/" always separates


@pytest.mark.parametrize(
    ("entrypoint", "message"),
    [
        ("../outside:MyTrial", "`../outside` points outside the model definition"),
        ("/abs/model_def:MyTrial", "`/abs/model_def` points outside the model definition"),
        ("..:MyTrial", "`..` points outside the model definition"),
        ("model_def\\u0000:MyTrial", "is not a Python module name"),
        ("model_def:My\\u0000Trial", "is not a class reference"),
        ("model\\\\def:MyTrial", "`model\\def` is a file path, but the entrypoint needs a module name; use `model.def:MyTrial`"),
    ],
)
def test_entrypoints_naming_absolute_climbing_or_nul_paths_are_refused(
    make_project: ProjectFactory, tmp_path: Path, entrypoint: str, message: str
) -> None:
    root = make_project(files={"model_def.py": TRIAL}, detmodel=f'entrypoint = "{entrypoint}"')
    with pytest.raises(EntrypointError, match="entrypoint") as caught:
        build(root, tmp_path / "out", identity=IDENTITY)
    assert message in str(caught.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('path = "../elsewhere"', "Field `tool.detmodel.path` points outside the project root: '../elsewhere'"),
        ('path = "/abs"', "Field `tool.detmodel.path` must be relative to the project root, not absolute: '/abs'"),
        ('path = "a\\u0000b"', "Field `tool.detmodel.path` must be a non-empty relative path"),
        ('detignore = "/etc/passwd"', "Field `tool.detmodel.detignore` must be a relative file path"),
        ('detignore = "a\\u0000b"', "Field `tool.detmodel.detignore` must be a relative file path"),
    ],
)
def test_config_paths_that_are_absolute_climb_or_hold_nul_are_refused(
    make_project: ProjectFactory, tmp_path: Path, line: str, message: str
) -> None:
    (tmp_path / "elsewhere").mkdir()
    root = make_project(detmodel=f'entrypoint = "model_def:MyTrial"\n{line}')
    with pytest.raises(ConfigError) as caught:
        build(root, tmp_path / "out", identity=IDENTITY)
    assert message in str(caught.value)


def test_exclude_patterns_with_nul_absolute_or_dotdot_match_nothing_outside(make_project: ProjectFactory) -> None:
    """git semantics: a pattern is matched against paths inside the root only, so these are inert."""
    root = make_project(
        files={"model_def.py": TRIAL, "abs/x.py": "", "a.py": ""},
        detmodel='entrypoint = "model_def:MyTrial"\nexclude = ["a\\u0000.py", "../a.py", "/abs/*"]',
    )
    assert kept(root) == ["a.py", "model_def.py", "pyproject.toml"]


@pytest.mark.parametrize("name", [b"new\nline.py", b"tab\there.py", b"del\x7f.py", b"esc\x1b[31m.py"])
def test_control_characters_in_names_are_refused_with_the_line_to_add(make_project: ProjectFactory, name: bytes) -> None:
    root = make_project(files={"model_def.py": TRIAL})
    with open(os.path.join(os.fsencode(root), name), "wb") as handle:
        handle.write(b"x")
    error = refusal(root)
    (message,) = error.problems.values()
    assert "its name contains a control character; rename it, or add `/" in message
    assert "to .detignore to leave it out" in message


def test_every_bad_name_is_listed_at_once_each_with_its_line(make_project: ProjectFactory) -> None:
    root = make_project(files={"model_def.py": TRIAL, "Data/a.py": "", "data/b.py": ""})
    for name in (b"bad\xff.py", "cafe\u0301.py".encode(), b"back\\slash.py", b"ctl\x01.py", b".detmodel.json"):
        with open(os.path.join(os.fsencode(root), name), "wb") as handle:
            handle.write(b"x")
    error = refusal(root)
    assert len(error.problems) == 6
    assert "(6 problems)" in str(error)
    assert error.problems["bad\\xff.py"] == (
        "bad\\xff.py: its name is not valid UTF-8; rename it, or add `/bad?.py` to .detignore to leave it out"
    )
    assert error.problems["back\\slash.py"].startswith("back\\slash.py: its name contains a backslash")
    assert "add `/back\\\\slash.py` to .detignore" in error.problems["back\\slash.py"]
    assert error.problems["cafe\u0301.py"].startswith("cafe\u0301.py: its name is not in Unicode NFC form")
    assert error.problems["data"] == "data: differs from Data only in letter case, which collide on macOS and Windows; rename one"
    assert error.problems[".detmodel.json"].startswith(".detmodel.json: this name is reserved for the artifact's manifest")


def test_non_nfc_names_are_refused_not_normalised(make_project: ProjectFactory) -> None:
    """Decision (documented in the README): refuse. Normalising would pack a path that does not exist on
    disk, and an NFC and an NFD spelling of one name could both exist and collide."""
    root = make_project(files={"model_def.py": TRIAL, "caf\u00e9.py": "nfc"})
    assert kept(root) == ["caf\u00e9.py", "model_def.py", "pyproject.toml"]
    (root / "cafe\u0301.py").write_text("nfd")
    assert "cafe\u0301.py" in refusal(root).problems


def test_case_collision_between_a_file_and_a_folder(make_project: ProjectFactory) -> None:
    root = make_project(files={"model_def.py": TRIAL, "README": "", "readme/x.py": ""})
    assert refusal(root).problems == {
        "readme": "readme: differs from README only in letter case, which collide on macOS and Windows; rename one"
    }


# --- links and special files ---------------------------------------------------------------------


def test_hardlinked_duplicates_are_two_full_regular_files(make_project: ProjectFactory, tmp_path: Path) -> None:
    root = make_project(files={"model_def.py": TRIAL, "a/weights.bin": b"W" * 3000})
    os.link(root / "a" / "weights.bin", root / "copy.bin")
    archive_path, _ = build(root, tmp_path / "out", identity=IDENTITY)
    with tarfile.open(archive_path) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["a/weights.bin"].type == members["copy.bin"].type == tarfile.REGTYPE
        for name in ("a/weights.bin", "copy.bin"):
            handle = tar.extractfile(members[name])
            assert handle is not None and handle.read() == b"W" * 3000
    assert read_artifact(archive_path).ok


def test_symlinked_directory_inside_the_root_is_followed_and_its_loop_refused(make_project: ProjectFactory) -> None:
    """Decision (documented): follow a directory link that stays inside the root, pack its files under the
    link's path, and refuse a link back to one of its own parents (which would never end)."""
    root = make_project(files={"model_def.py": TRIAL, "lib/deep/x.py": "X = 1\n"})
    os.symlink("lib/deep", root / "alias")
    assert kept(root) == ["alias/x.py", "lib/deep/x.py", "model_def.py", "pyproject.toml"]
    os.symlink("../..", root / "lib" / "deep" / "up")
    problems = refusal(root).problems
    assert problems == {  # met twice: through lib/deep and through alias
        f"{where}/up": f"{where}/up: symbolic link to a directory loops back to its own parent; add `/{where}/up/` to "
        ".detignore to leave it out"
        for where in ("alias", "lib/deep")
    }


def test_a_device_is_refused(make_project: ProjectFactory) -> None:
    root = make_project(files={"model_def.py": TRIAL})
    try:
        os.mknod(root / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        require(False, "permission to create a device node (root, or CAP_MKNOD)")
    problems = refusal(root).problems
    assert problems == {
        "null": "null: is a device, not a regular file; Determined can only receive files; add `/null` to .detignore "
        "to leave it out"
    }


def test_symlink_to_a_fifo_is_refused_without_blocking(make_project: ProjectFactory) -> None:
    root = make_project(files={"model_def.py": TRIAL})
    os.mkfifo(root / "pipe")
    os.symlink("pipe", root / "to_pipe")
    done: list[BaseException] = []

    def attempt() -> None:
        try:
            kept(root)
        except BaseException as error:
            done.append(error)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "selection blocked on a FIFO behind a link"
    assert isinstance(done[0], SelectionError)
    assert set(done[0].problems) == {"pipe", "to_pipe"}
    assert done[0].problems["to_pipe"].startswith("to_pipe: is a FIFO (named pipe), not a regular file")


# --- permissions -----------------------------------------------------------------------------------

NOBODY = 65534


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder any user can enter (pytest's tmp_path is private to its owner)."""
    folder = Path(tempfile.mkdtemp(prefix="detmodel-perm-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _as_unprivileged(action: Callable[[], str]) -> str:
    """Run ``action`` in a forked child that dropped to user ``nobody`` (root ignores file permissions, so
    this is the one real way to meet EACCES as root); return what it returned or the error it raised."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                text = "ok:" + action()
            except BaseException as error:
                text = f"{type(error).__name__}:{error}"
            os.write(write_end, text.encode("utf-8", "backslashreplace"))
        except BaseException:
            status = 3
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        result = reader.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, result
    return result


def _unreadable_project(where: Path, what: str) -> Path:
    root = where / "project"
    (root / "sub").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "demo-project"\nversion = "1.2.3"\n[tool.detmodel]\n'
                                         'entrypoint = "model_def:MyTrial"\n')
    (root / "model_def.py").write_text(TRIAL)
    (root / "sub" / "secret.bin").write_bytes(b"s")
    (root / ".detignore").write_text("*.log\n")
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    target = {"file": root / "sub" / "secret.bin", "directory": root / "sub", "ignore file": root / ".detignore"}[what]
    target.chmod(0o000)
    (where / "out").mkdir(mode=0o777)
    (where / "out").chmod(0o777)
    return root


EXPECTED_UNREADABLE = {
    "file": "ArchiveError:sub/secret.bin: cannot be read (Permission denied); fix its permissions or ignore it",
    "directory": "SelectionError:sub/: cannot list directory (Permission denied); fix its permissions or add `/sub/` "
    "to .detignore",
    "ignore file": "SelectionError:{root}/.detignore: cannot be read (Permission denied); fix its permissions",
}


@pytest.mark.parametrize("what", ["file", "directory", "ignore file"])
def test_unreadable_paths_stop_the_build_naming_them(shared_tmp: Path, what: str) -> None:
    root = _unreadable_project(shared_tmp, what)
    out = shared_tmp / "out"

    def attempt() -> str:
        build(root, out, identity=IDENTITY)
        return "built"

    if os.geteuid() == 0:
        result = _as_unprivileged(attempt)
    else:
        try:
            result = "ok:" + attempt()
        except DetmodelError as error:
            result = f"{type(error).__name__}:{error}"
    assert result == EXPECTED_UNREADABLE[what].format(root=root)
    assert list(out.iterdir()) == []  # no artifact, no temporary file


@pytest.mark.parametrize("layer", ["open", "scandir"])
def test_permission_errors_injected_at_the_os_layer(make_project: ProjectFactory, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch, layer: str) -> None:
    """The same two guards without a second user: EACCES from ``os.open`` (reading a file) and from
    ``os.scandir`` (listing a folder), wherever the test runs."""
    root = make_project(files={"model_def.py": TRIAL, "sub/data.txt": "d"})
    victim = root / "sub" / ("data.txt" if layer == "open" else "")
    real = getattr(os, layer)

    def denied(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if os.fsdecode(path).rstrip("/") == str(victim).rstrip("/"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, layer, denied)
    error_type = ArchiveError if layer == "open" else SelectionError
    with pytest.raises(error_type) as caught:
        build(root, tmp_path / "out", identity=IDENTITY)
    if layer == "open":
        assert str(caught.value) == "sub/data.txt: cannot be read (Permission denied); fix its permissions or ignore it"
    else:
        assert "sub/: cannot list directory (Permission denied); fix its permissions or add `/sub/` to .detignore" in str(
            caught.value)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


# --- files that change or vanish while the build runs ----------------------------------------------


def _before_writing(monkeypatch: pytest.MonkeyPatch, change: Callable[[], None]) -> None:
    """Run ``change`` after selection, just before the archive's members are read and written (by the
    writer itself: nothing is read ahead during selection, as for files beyond the read-ahead budget)."""
    monkeypatch.setattr(pipeline, "READ_AHEAD", 0)
    real = archive.MemberWriter.write

    def changed_then_write(self, files, read_ahead, read=True):  # type: ignore[no-untyped-def]
        if read:  # after selection, as the writer reads
            change()
        return real(self, files, read_ahead, read)

    monkeypatch.setattr(archive.MemberWriter, "write", changed_then_write)


def test_a_file_that_vanishes_stops_the_build(make_project: ProjectFactory, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_project(files={"model_def.py": TRIAL, "gone.txt": "here"})
    _before_writing(monkeypatch, (root / "gone.txt").unlink)
    with pytest.raises(ArchiveError, match=r"^gone\.txt: cannot be read \(No such file or directory\)"):
        build(root, tmp_path / "out", identity=IDENTITY)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    ("content", "replace"),
    [("here", os.mkfifo), ("", os.mkfifo), ("here", os.mkdir)],  # an empty read is what a FIFO gives too
    ids=["fifo", "empty-file-fifo", "folder"],
)
def test_a_file_replaced_by_a_fifo_or_folder_stops_the_build_without_blocking(
    make_project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str,
    replace: Callable[[Path], None],
) -> None:
    root = make_project(files={"model_def.py": TRIAL, "swap.txt": content})

    def swap() -> None:
        (root / "swap.txt").unlink()
        replace(root / "swap.txt")

    _before_writing(monkeypatch, swap)
    with pytest.raises(ArchiveError, match=r"^swap\.txt: is no longer a regular file; rebuild"):
        build(root, tmp_path / "out", identity=IDENTITY)


def test_a_read_error_is_reported_as_such_not_as_a_change(make_project: ProjectFactory, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_project(files={"model_def.py": TRIAL, "data.txt": "here"})
    real_read = os.read

    def failing_read(fd: int, size: int) -> bytes:
        if os.fstat(fd).st_size == 4:  # data.txt
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_read(fd, size)

    monkeypatch.setattr(os, "read", failing_read)
    with pytest.raises(ArchiveError, match=r"^data\.txt: cannot be read \(Input/output error\)"):
        build(root, tmp_path / "out", identity=IDENTITY)


def test_same_size_change_before_reading_is_packed_consistently(make_project: ProjectFactory, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_project(files={"model_def.py": TRIAL, "data.txt": "AAAA"})
    _before_writing(monkeypatch, lambda: (root / "data.txt").write_text("BBBB"))
    archive_path, sidecar = build(root, tmp_path / "out", identity=IDENTITY)
    report = read_artifact(archive_path)
    assert report.ok, report.problems
    with tarfile.open(archive_path) as tar:
        handle = tar.extractfile("data.txt")
        assert handle is not None and handle.read() == b"BBBB"  # the bytes read are the bytes hashed
    assert json.loads(sidecar.read_text())["content_digest"] == report.manifest.content_digest  # type: ignore[union-attr]


def test_a_file_rewritten_during_builds_never_gives_a_mismatch(make_project: ProjectFactory, tmp_path: Path) -> None:
    """A real race: a thread rewrites a 3 MiB file in place (truncate, then write) while builds run. Each
    build either stops with a message or writes an artifact whose manifest matches its bytes."""
    size = 3 << 20
    root = make_project(files={"model_def.py": TRIAL, "big.bin": b"a" * size},
                        detmodel='entrypoint = "model_def:MyTrial"\ncompression-level = 1')
    stop = threading.Event()

    def rewrite() -> None:
        fill = 0
        while not stop.is_set():
            fill = (fill + 1) % 26
            with open(root / "big.bin", "wb") as handle:  # truncates: the size changes for a moment
                for _ in range(3):
                    handle.write(bytes([97 + fill]) * (1 << 20))

    thread = threading.Thread(target=rewrite, daemon=True)
    thread.start()
    outcomes: dict[str, int] = {"built": 0, "stopped": 0}
    try:
        for attempt in range(12):
            out = tmp_path / f"out{attempt}"
            try:
                archive_path, _ = build(root, out, identity=IDENTITY)
            except DetmodelError as error:
                assert "big.bin" in str(error) and "rebuild" in str(error), error
                assert list(out.iterdir()) == [] if out.exists() else True
                outcomes["stopped"] += 1
                continue
            report = read_artifact(archive_path)
            assert report.ok, [p.message for p in report.problems]
            outcomes["built"] += 1
    finally:
        stop.set()
        thread.join(10)
    assert sum(outcomes.values()) == 12


# --- front ends: a refusal is one message and exit 2 / a clean hatch error, never a traceback --------


def test_cli_build_of_a_refused_tree_exits_2_with_every_problem(make_project: ProjectFactory, tmp_path: Path) -> None:
    root = make_project(files={"model_def.py": TRIAL})
    os.mkfifo(root / "pipe")
    os.symlink("/etc/passwd", root / "passwd")
    result = run([require_executable("hatch-detmodel"), "build", str(root), "-o", str(tmp_path / "out")], check=False,
                 timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"hatch-detmodel: error: {root}: cannot pack the model definition (2 problems):")
    assert "  passwd: symbolic link points outside the model definition (to /etc/passwd); copy the file in or add " \
           "`/passwd` to .detignore to leave it out" in result.stderr
    assert "  pipe: is a FIFO (named pipe), not a regular file" in result.stderr
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
