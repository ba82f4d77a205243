"""Unpacking: verify an artifact, then write exactly its manifest's regular files inside a folder.

Nothing is written until the whole artifact has verified. Writing streams the archive a second time
and re-hashes every file (the archive could change between the two passes). Each file goes to a
temporary name in its folder and is renamed into place, so an existing symlink or hard link at the
destination is replaced, never written through; every parent is opened with ``O_NOFOLLOW`` relative
to its own parent, so a link planted among the parents is refused rather than followed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ArchiveError, DetmodelError
from .manifest import FileRecord
from .output import NEW_FILE_FLAGS, temporary_name
from .reader import (
    DEFAULT_LIMITS,
    ArchiveStream,
    ArtifactReport,
    Limits,
    ProgressCallback,
    VerificationFailed,
    read_artifact,
)

__all__ = ["DestinationError", "UnpackResult", "unpack_artifact"]

_DIR_FD = os.open in os.supports_dir_fd and hasattr(os, "O_NOFOLLOW") and hasattr(os, "O_DIRECTORY")


class DestinationError(DetmodelError):
    """The destination folder cannot be used as asked (not empty, a link in the way, not a folder)."""


@dataclass(frozen=True)
class UnpackResult:
    artifact: Path
    destination: Path
    files: tuple[FileRecord, ...]
    content_digest: str

    def to_json(self) -> dict[str, Any]:
        return {
            "artifact": str(self.artifact),
            "destination": str(self.destination),
            "content_digest": self.content_digest,
            "files": [f.to_json() for f in self.files],
        }


class _Folder:
    """Creates folders and files strictly inside ``root`` without following links below it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._fds: dict[tuple[str, ...], int] = {}
        if _DIR_FD:
            self._fds[()] = os.open(root, os.O_RDONLY | os.O_DIRECTORY)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def _refuse(self, parts: tuple[str, ...], what: str) -> DestinationError:
        shown = self.root.joinpath(*parts)
        return DestinationError(
            f"{shown}: {what}; unpack never writes through links or over folders. Remove it, or unpack into an empty folder"
        )

    def _forget_except(self, folder: tuple[str, ...]) -> None:
        """Keep descriptors only for ``folder`` and its parents: files come in path order, so each
        folder's files are contiguous and the open descriptors stay bounded by the depth."""
        for key in [k for k in self._fds if k and k != folder[: len(k)]]:
            os.close(self._fds.pop(key))

    def _parent_fd(self, parts: tuple[str, ...]) -> int:
        if parts in self._fds:
            return self._fds[parts]
        parent = self._parent_fd(parts[:-1])
        name = parts[-1]
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o755, dir_fd=parent)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                raise self._refuse(parts, "exists and is not a real folder (a symbolic link or a file)") from None
            raise DestinationError(f"{self.root.joinpath(*parts)}: cannot be created ({error.strerror})") from None
        self._fds[parts] = fd
        return fd

    def _parent_path(self, parts: tuple[str, ...]) -> Path:
        """The same walk by path, for systems without ``dir_fd`` (checked with ``lstat`` per step)."""
        current = self.root
        for depth, name in enumerate(parts, start=1):
            current = current / name
            try:
                info = os.lstat(current)
            except FileNotFoundError:
                os.mkdir(current, 0o755)
                continue
            if not stat.S_ISDIR(info.st_mode):
                raise self._refuse(parts[:depth], "exists and is not a real folder (a symbolic link or a file)")
        return current

    def write(self, path: str, mode: int, chunks: Any) -> tuple[str, int]:
        """Write ``chunks`` to ``path`` (POSIX, already checked safe); return (sha256, size)."""
        parts = tuple(path.split("/"))
        name = parts[-1]
        temporary = temporary_name(name)
        digest = hashlib.sha256()
        size = 0
        if _DIR_FD:
            self._forget_except(parts[:-1])
            parent = self._parent_fd(parts[:-1])
            fd = os.open(temporary, NEW_FILE_FLAGS, 0o600, dir_fd=parent)
        else:
            folder = self._parent_path(parts[:-1])
            fd = os.open(folder / temporary, NEW_FILE_FLAGS, 0o600)
        try:
            try:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                if hasattr(os, "fchmod"):
                    os.fchmod(fd, mode)
            finally:
                os.close(fd)
            if _DIR_FD:
                if _is_dir_at(parent, name):
                    raise self._refuse(parts, "is a folder where the artifact has a file")
                os.replace(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)
            else:
                target = folder / name
                if target.is_dir() and not target.is_symlink():
                    raise self._refuse(parts, "is a folder where the artifact has a file")
                os.chmod(folder / temporary, mode)
                os.replace(folder / temporary, target)
        except BaseException:
            try:
                if _DIR_FD:
                    os.unlink(temporary, dir_fd=parent)
                else:
                    os.unlink(folder / temporary)
            except FileNotFoundError:
                pass
            raise
        return digest.hexdigest(), size


def _is_dir_at(parent: int, name: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _prepare_destination(destination: Path, force: bool) -> None:
    if destination.is_symlink() and not destination.exists():
        raise DestinationError(f"{destination}: is a dangling symbolic link; pass a folder")
    if destination.exists():
        if not destination.is_dir():
            raise DestinationError(f"{destination}: exists and is not a folder; pass a new or empty folder")
        if not force and any(destination.iterdir()):
            raise DestinationError(
                f"{destination}: is not empty; pass an empty or new folder, or --force to write the artifact's files "
                "into it (other files there are left alone)"
            )
        return
    try:
        destination.mkdir(parents=True)
    except OSError as error:
        raise DestinationError(f"{destination}: cannot be created ({error.strerror})") from None


def _preflight(destination: Path, paths: list[str]) -> None:
    """Refuse before writing anything when a link or a file stands where a folder goes, or a folder
    where a file goes (the descriptor-relative walk still guards against changes made meanwhile)."""
    checked: set[str] = set()
    for path in paths:
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            rel = "/".join(parts[:depth])
            if rel in checked:
                continue
            checked.add(rel)
            try:
                mode = os.lstat(destination / rel).st_mode
            except FileNotFoundError:
                break
            is_file = depth == len(parts)
            if not is_file and not stat.S_ISDIR(mode):
                raise DestinationError(
                    f"{destination / rel}: exists and is not a real folder (a symbolic link or a file); unpack never "
                    "writes through links. Remove it, or unpack into an empty folder"
                )
            if is_file and stat.S_ISDIR(mode):
                raise DestinationError(
                    f"{destination / rel}: is a folder where the artifact has a file. Remove it, or unpack into an "
                    "empty folder"
                )


def unpack_artifact(
    artifact: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    force: bool = False,
    limits: Limits = DEFAULT_LIMITS,
    report: ArtifactReport | None = None,
    on_progress: ProgressCallback | None = None,
) -> UnpackResult:
    """Verify ``artifact`` (or use ``report`` of an earlier :func:`read_artifact`), then write its
    manifest's files inside ``destination``. Raises :class:`VerificationFailed` before writing
    anything when the artifact has a problem, :class:`DestinationError` for an unusable folder."""
    artifact = Path(artifact)
    destination = Path(destination)
    if report is None:
        report = read_artifact(artifact, limits, on_progress=on_progress)
    if not report.ok:
        raise VerificationFailed(report, "; nothing was written")
    manifest = report.require_manifest()
    _prepare_destination(destination, force)
    _preflight(destination, [record.path for record in manifest.files])
    expected = {record.path: record for record in manifest.files}
    written: dict[str, FileRecord] = {}
    folder = _Folder(destination)
    try:
        with ArchiveStream(artifact, limits) as stream:
            for member in stream:
                record = expected.get(member.name)
                if record is None or member.name in written:
                    continue  # the manifest itself (verification guarantees nothing else)
                sha, size = folder.write(record.path, int(record.mode, 8), member.chunks())
                if (sha, size) != (record.sha256, record.size):
                    raise ArchiveError(
                        f"{artifact}: {record.path} changed since it was verified (it is being rewritten?); "
                        f"{destination} holds a partial copy — unpack again"
                    )
                written[record.path] = record
    finally:
        folder.close()
    missing = [path for path in expected if path not in written]
    if missing:
        raise ArchiveError(f"{artifact}: changed since it was verified ({missing[0]} is gone); unpack again")
    return UnpackResult(artifact, destination, manifest.files, manifest.content_digest)
