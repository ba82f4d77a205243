"""Faults while writing (issue 6): a full disk, an I/O error, an exception or an interrupt half-way leave no
file at the final path, no temporary file, and the older artifact untouched — through the library, the
command line (exit 2 / 130, one message, no traceback) and ``python -m hatchling build -t detmodel``.
Two builds writing into one folder at once both finish with complete, valid artifacts."""

from __future__ import annotations

import errno
import os
import re
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from hatch_detmodel import build, output
from hatch_detmodel.config import ProjectIdentity
from hatch_detmodel.errors import ArchiveError

from .conftest import ProjectFactory, require_executable

IDENTITY = ProjectIdentity("demo-project", "1.2.3")
TRIAL = "class MyTrial: pass\n"
TWO_MODELS = """\
[tool.detmodel]
entrypoint = "model_def:MyTrial"
[tool.detmodel.models.first]
path = "first"
[tool.detmodel.models.second]
path = "second"
"""
NOISE = os.urandom(256 << 10)  # incompressible: the archive is larger than the file size limit below


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


@pytest.fixture
def project(make_project: ProjectFactory) -> Path:
    return make_project(
        files={"first/model_def.py": TRIAL, "first/noise.bin": NOISE, "second/model_def.py": TRIAL,
               "second/noise.bin": NOISE[::-1]},
        detmodel=TWO_MODELS,
    )


@pytest.fixture
def old_build(project: Path, tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """An earlier build in ``out``; the sources then change, so a new build would write other bytes."""
    out = tmp_path / "out"
    build(project, out, identity=IDENTITY)
    before = snapshot(out)
    assert len(before) == 4
    (project / "first" / "model_def.py").write_text(TRIAL + "# changed\n")
    (project / "second" / "model_def.py").write_text(TRIAL + "# changed\n")
    return out, before


# --- the library -----------------------------------------------------------------------------------


class _FailingFile:
    """A real file whose writes fail from now on, as on a disk that just filled up."""

    def __init__(self, raw: Any, error: BaseException) -> None:
        self._raw = raw
        self._error = error

    def write(self, data: bytes | memoryview) -> int:
        raise self._error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def _fail_writes_after(monkeypatch: pytest.MonkeyPatch, limit: int, error: BaseException) -> None:
    """Every staged file's writes count together; the write that crosses ``limit`` writes half its bytes
    to the real file, then that file fails with ``error`` (below the front end's own error handling)."""
    real_write = output._Handle.write
    written = [0]

    def write(self: Any, data: bytes | memoryview, /) -> int:
        written[0] += len(data)
        if written[0] > limit and not isinstance(self.raw, _FailingFile):
            self.raw.write(bytes(data)[: len(data) // 2])  # half a chunk reached the disk
            self.raw = _FailingFile(self.raw, error)
        return real_write(self, data)

    monkeypatch.setattr(output._Handle, "write", write)


FAULTS: dict[str, tuple[Callable[[pytest.MonkeyPatch], None], type[BaseException], str]] = {
    "ENOSPC on the first archive": (
        lambda mp: _fail_writes_after(mp, 1000, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))),
        ArchiveError, "demo_project-1.2.3-first.detmodel.tgz: cannot be written (No space left on device); nothing was "
        "written and any older file there is unchanged",
    ),
    "EIO on the second model": (
        lambda mp: _fail_writes_after(mp, 300_000, OSError(errno.EIO, os.strerror(errno.EIO))),
        ArchiveError, "demo_project-1.2.3-second.detmodel.tgz: cannot be written (Input/output error)",
    ),
    "ENOSPC at fsync": (
        lambda mp: mp.setattr(os, "fsync", _raise(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))),
        ArchiveError, "demo_project-1.2.3-first.detmodel.tgz: cannot be written (No space left on device)",
    ),
    "exception half-way": (
        lambda mp: _fail_writes_after(mp, 300_000, RuntimeError("bug half-way")), RuntimeError, "bug half-way",
    ),
    "KeyboardInterrupt half-way": (
        lambda mp: _fail_writes_after(mp, 300_000, KeyboardInterrupt()), KeyboardInterrupt, "",
    ),
    "exception while reading a source": (
        lambda mp: mp.setattr(os, "read", _raise(RuntimeError("read failed"))), RuntimeError, "read failed",
    ),
    "EIO on the third rename, after the first model was published": (
        lambda mp: _fail_rename(mp, 3),
        ArchiveError, "demo_project-1.2.3-second.detmodel.tgz: cannot be written (Input/output error)",
    ),
    "KeyboardInterrupt just after the second rename": (
        lambda mp: _fail_rename(mp, 2, after=KeyboardInterrupt()), KeyboardInterrupt, "",
    ),
    "ENOSPC creating the temporary file": (
        lambda mp: mp.setattr(output, "_create_temporary", _raise(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))),
        ArchiveError, "demo_project-1.2.3-first.detmodel.tgz: cannot be written (No space left on device)",
    ),
}


def _fail_rename(monkeypatch: pytest.MonkeyPatch, *failing: int, after: BaseException | None = None) -> None:
    """The ``os.replace`` calls numbered in ``failing`` fail with EIO (the others work); with ``after``,
    those calls rename first and then raise it (an interrupt landing just after the rename)."""
    real_replace = os.replace
    calls = [0]

    def replace(source: Any, target: Any) -> None:
        calls[0] += 1
        if calls[0] not in failing:
            real_replace(source, target)
        elif after is not None:
            real_replace(source, target)
            raise after
        else:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "replace", replace)


def _raise(error: BaseException) -> Callable[..., Any]:
    def raiser(*_args: Any, **_kwargs: Any) -> Any:
        raise error

    return raiser


@pytest.mark.parametrize("fault", list(FAULTS))
def test_library_fault_leaves_the_old_artifacts_and_no_temporary_file(
    project: Path, old_build: tuple[Path, dict[str, bytes]], monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    out, before = old_build
    inject, error_type, message = FAULTS[fault]
    inject(monkeypatch)
    with pytest.raises(error_type) as caught:
        build(project, out, identity=IDENTITY)
    assert message in str(caught.value)
    monkeypatch.undo()
    assert snapshot(out) == before  # old files byte for byte, nothing new, no .tmp left
    assert build(project, out, identity=IDENTITY)  # and the next build works


def test_a_failed_rename_removes_the_files_already_published_when_there_were_none_before(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "fresh"
    _fail_rename(monkeypatch, 2)  # the first archive is in place when its sidecar's rename fails
    with pytest.raises(ArchiveError, match=r"first\.detmodel\.json: cannot be written \(Input/output error\)"):
        build(project, out, identity=IDENTITY)
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == []  # no archive without its sidecar, no temporary


def test_a_roll_back_that_fails_says_so_and_keeps_the_older_file(
    project: Path, old_build: tuple[Path, dict[str, bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, before = old_build
    _fail_rename(monkeypatch, 2, 3)  # the first sidecar's rename fails, then putting the first archive back
    with pytest.raises(ArchiveError) as caught:
        build(project, out, identity=IDENTITY)
    monkeypatch.undo()
    message = str(caught.value)
    assert "nothing was written" not in message and "could not be fully undone" in message
    archive = out / "demo_project-1.2.3-first.detmodel.tgz"
    kept = re.search(r"its older version is kept as (\S+?)\.(?: |$)", message)
    assert kept is not None and f"{archive} is new" in message, message
    assert Path(kept.group(1)).read_bytes() == before[archive.name]  # the only copy, not deleted
    assert (out / "demo_project-1.2.3-first.detmodel.json").read_bytes() == before["demo_project-1.2.3-first.detmodel.json"]


# --- the command line and hatchling, in child processes ----------------------------------------------

# Python ignores SIGXFSZ, so past RLIMIT_FSIZE a write fails with EFBIG: a real disk-level fault, no patching.
FILE_SIZE_LIMIT = 64 << 10


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}


def _cli(args: list[str], cwd: Path | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_executable("hatch-detmodel"), *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env=_env(), **kwargs)


def _clean_failure(result: subprocess.CompletedProcess[str], code: int) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr


def test_cli_file_size_limit_exits_2_with_one_message(project: Path, old_build: tuple[Path, dict[str, bytes]]) -> None:
    out, before = old_build
    result = _cli(["build", str(project), "-o", str(out)], preexec_fn=_limit_file_size)
    _clean_failure(result, 2)
    assert result.stderr.splitlines()[-1] + "\n" == (
        f"hatch-detmodel: error: {out}/demo_project-1.2.3-first.detmodel.tgz: cannot be written (File too large); "
        "nothing was written and any older file there is unchanged. Free space or fix the folder, or choose another "
        "output folder\n"
    )
    assert snapshot(out) == before


# A child that patches the staged handle's write, then runs a front end: `MODE` picks the fault.
_CHILD = textwrap.dedent(
    """\
    import errno, os, runpy, signal, sys, time
    # Ctrl-C as in a terminal, even when this test runs from a background job (which ignores SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from hatch_detmodel import output
    marker, mode, front = sys.argv[1], sys.argv[2], sys.argv[3]
    real = output._Handle.write
    class Full:  # the file below the handle: every write fails as on a full disk
        def __init__(self, raw): self.raw = raw
        def write(self, data): raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        def __getattr__(self, name): return getattr(self.raw, name)
    def write(self, data):
        if mode == "enospc":
            self.raw = Full(self.raw)
        elif mode == "bare-oserror":  # an error no layer below the front end worded
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), "/some/where")
        else:
            open(marker, "w").close()
            time.sleep(60)  # the test sends SIGINT now
        return real(self, data)
    output._Handle.write = write
    if front == "cli":
        from hatch_detmodel.cli import main
        sys.exit(main(sys.argv[4:]))
    sys.argv = ["hatchling", *sys.argv[4:]]
    runpy.run_module("hatchling", run_name="__main__", alter_sys=True)
    """
)


def _child(marker: Path, mode: str, front: str, args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(marker), mode, front, *args], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _interrupt_when_writing(child: subprocess.Popen[str], marker: Path) -> subprocess.CompletedProcess[str]:
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the child never started writing"
        time.sleep(0.02)
    child.send_signal(signal.SIGINT)  # a real Ctrl-C, mid-write
    stdout, stderr = child.communicate(timeout=60)
    return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)


def test_cli_enospc_exits_2(project: Path, old_build: tuple[Path, dict[str, bytes]], tmp_path: Path) -> None:
    out, before = old_build
    child = _child(tmp_path / "marker", "enospc", "cli", ["build", str(project), "-o", str(out)], tmp_path)
    stdout, stderr = child.communicate(timeout=120)
    result = subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)
    _clean_failure(result, 2)
    assert "demo_project-1.2.3-first.detmodel.tgz: cannot be written (No space left on device)" in stderr
    assert snapshot(out) == before


def test_cli_unworded_os_error_is_still_one_line(project: Path, old_build: tuple[Path, dict[str, bytes]],
                                                 tmp_path: Path) -> None:
    out, before = old_build
    child = _child(tmp_path / "marker", "bare-oserror", "cli", ["build", str(project), "-o", str(out)], tmp_path)
    stdout, stderr = child.communicate(timeout=120)
    _clean_failure(subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr), 2)
    assert stderr.splitlines()[-1] == "hatch-detmodel: error: /some/where: Read-only file system"
    assert snapshot(out) == before


def test_cli_ctrl_c_mid_write_exits_130(project: Path, old_build: tuple[Path, dict[str, bytes]], tmp_path: Path) -> None:
    out, before = old_build
    child = _child(tmp_path / "marker", "sleep", "cli", ["build", str(project), "-o", str(out)], tmp_path)
    result = _interrupt_when_writing(child, tmp_path / "marker")
    _clean_failure(result, 130)
    assert result.stderr.splitlines()[-1] == "hatch-detmodel: interrupted; no partial output was left behind"
    assert snapshot(out) == before


@pytest.fixture
def hatch_project(project: Path) -> tuple[Path, dict[str, bytes]]:
    """``project`` with an earlier artifact in its dist/, built by hatchling itself."""
    result = subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "detmodel"], cwd=project, env=_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    before = snapshot(project / "dist")
    assert len(before) == 4, before
    (project / "first" / "model_def.py").write_text(TRIAL + "# changed\n")
    return project, before


def test_hatchling_file_size_limit_is_a_clean_hatch_error(hatch_project: tuple[Path, dict[str, bytes]]) -> None:
    project, before = hatch_project
    result = subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "detmodel"], cwd=project, env=_env(),
                            capture_output=True, text=True, timeout=120, preexec_fn=_limit_file_size)
    _clean_failure(result, 1)
    assert "hatch-detmodel: " in result.stderr + result.stdout
    assert "demo_project-1.2.3-first.detmodel.tgz: cannot be written (File too large)" in result.stderr + result.stdout
    assert snapshot(project / "dist") == before


def test_hatchling_ctrl_c_mid_write(hatch_project: tuple[Path, dict[str, bytes]], tmp_path: Path) -> None:
    project, before = hatch_project
    child = _child(tmp_path / "marker", "sleep", "hatchling", ["build", "-t", "detmodel"], project)
    result = _interrupt_when_writing(child, tmp_path / "marker")
    _clean_failure(result, 130)
    assert "hatch-detmodel: interrupted; no partial artifact was left behind" in result.stderr + result.stdout
    assert snapshot(project / "dist") == before


def test_hatchling_enospc_is_a_clean_hatch_error(hatch_project: tuple[Path, dict[str, bytes]], tmp_path: Path) -> None:
    project, before = hatch_project
    child = _child(tmp_path / "marker", "enospc", "hatchling", ["build", "-t", "detmodel"], project)
    stdout, stderr = child.communicate(timeout=120)
    _clean_failure(subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr), 1)
    assert "cannot be written (No space left on device)" in stdout + stderr
    assert snapshot(project / "dist") == before


# --- two builds, one folder ---------------------------------------------------------------------------


def test_two_processes_building_into_one_folder_both_finish_with_valid_artifacts(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    big = os.urandom(3 << 20)  # long enough for the two builds to overlap
    root_a = make_project(files={"model_def.py": TRIAL, "w.bin": big}, where=tmp_path / "a")
    root_b = make_project(files={"model_def.py": TRIAL, "w.bin": big[::-1]}, where=tmp_path / "b")
    out = tmp_path / "shared"
    exe = require_executable("hatch-detmodel")
    for round_number in range(3):
        # Round 0: the same project twice (same final names); later rounds: the same names, different bytes.
        roots = (root_a, root_a) if round_number == 0 else (root_a, root_b)
        children = [subprocess.Popen([exe, "build", str(r), "-o", str(out)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=_env()) for r in roots]
        for child in children:
            _, stderr = child.communicate(timeout=120)
            assert child.returncode == 0, stderr
        names = sorted(p.name for p in out.iterdir())
        assert names == ["demo_project-1.2.3.detmodel.json", "demo_project-1.2.3.detmodel.tgz"]  # no temporary file
        # Complete, and archive and sidecar come from the same build: each build publishes its pair while
        # holding a lock on the folder, so the last one to publish wins with both files.
        archive_path = out / "demo_project-1.2.3.detmodel.tgz"
        verified = _cli(["verify", str(archive_path)])
        assert verified.returncode == 0 and "archive hash matches the sidecar" in verified.stdout, verified.stdout
