"""Atomic output: every file is written to a temporary name in its destination folder, then renamed.

A build stages all its files first and publishes them only when every one is complete, so a failure
leaves neither a partial artifact nor a damaged older one; if a rename fails part-way (a disk error),
the files already renamed are rolled back, so an archive never stands beside another build's sidecar.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Iterable, Iterator

from .errors import ArchiveError

__all__ = ["NEW_FILE_FLAGS", "StagedFile", "Staging", "temporary_name"]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UNCHANGED = (
    "; nothing was written and any older file there is unchanged. Free space or fix the folder, or choose"
    " another output folder"
)


def _cannot_write(final: Path, error: OSError) -> ArchiveError:
    """A disk error (full, I/O error, quota, file size limit, read-only) as one message naming the output."""
    return ArchiveError(f"{final}: cannot be written ({error.strerror or error}){_UNCHANGED}")


def _not_rolled_back(failure: BaseException, stuck: list[str]) -> ArchiveError:
    """Publishing failed part-way and undoing it failed too: the failure without its "nothing was
    written" promise, then which files are new and where the older versions are."""
    cause = str(failure).removesuffix(_UNCHANGED) or type(failure).__name__
    return ArchiveError(
        f"{cause}; publishing stopped part-way and could not be fully undone: " + "; ".join(stuck)
        + ". Rebuild, or put the older versions back by hand"
    )


class _Handle:
    """The staged file's handle: every write error becomes an :class:`ArchiveError` naming the output."""

    def __init__(self, final: Path, raw: BinaryIO) -> None:
        self.final = final
        self.raw = raw

    def write(self, data: bytes | memoryview, /) -> int:
        try:
            return self.raw.write(data)
        except OSError as error:
            raise _cannot_write(self.final, error) from None

    def flush(self) -> None:
        try:
            self.raw.flush()
        except OSError as error:
            raise _cannot_write(self.final, error) from None

    def fileno(self) -> int:
        return self.raw.fileno()

    @property
    def closed(self) -> bool:
        return self.raw.closed

    def close(self) -> None:
        self.raw.close()


#: How every file this package writes is created: new (never an existing file or a symlink's target).
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


def temporary_name(name: str) -> str:
    """The name a file called ``name`` is written under before it is renamed into place (hidden, random,
    ``.tmp``: what ``clean`` and a later build recognise as a leftover)."""
    return f".{name}.{os.urandom(6).hex()}.tmp"


def _create_temporary(final: Path) -> tuple[int, Path]:
    """A new, empty file ``.<final name>.<random>.tmp`` beside ``final``, open for writing and readable
    only by its owner until :meth:`StagedFile.finish`: ``tempfile.mkstemp``'s promises without its
    import (the command line starts faster). The name is random, not the process id: a killed build's
    leftovers (its ``.old.tmp`` included, which rollback must not meet) never lie in a later build's way."""
    for _ in range(100):
        name = final.with_name(temporary_name(final.name))
        try:
            return os.open(name, NEW_FILE_FLAGS, 0o600), name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary name after 100 tries", str(final.parent))


class StagedFile:
    """A temporary file beside ``final``; :meth:`publish` renames it into place."""

    def __init__(self, final: Path) -> None:
        self.final = final
        try:
            fd, self.temporary = _create_temporary(final)
        except OSError as error:
            raise _cannot_write(final, error) from None
        self.handle = _Handle(final, os.fdopen(fd, "wb"))
        # What :meth:`publish` replaced, kept (as a hard link) until the whole build is published, so
        # a later failing rename can put it back; its name is a temporary's, which `clean` removes.
        self._previous: Path | None = None
        self._created = False  # publish found no file to replace

    def finish(self) -> None:
        """Flush to disk and give the file the permissions a normal new file would have."""
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            os.chmod(self.temporary, 0o666 & ~_current_umask())
        except OSError as error:
            raise _cannot_write(self.final, error) from None

    def publish(self) -> None:
        previous = self.temporary.with_name(self.temporary.name[: -len(".tmp")] + ".old.tmp")
        created = False
        try:
            os.link(self.final, previous)
            self._previous = previous
        except FileNotFoundError:
            created = True
        except OSError:
            pass  # no hard links on this file system: this one file cannot be put back
        try:
            os.replace(self.temporary, self.final)
        except OSError as error:
            self.forget_previous()
            raise _cannot_write(self.final, error) from None
        self._created = created

    def roll_back(self) -> str | None:
        """Undo :meth:`publish` (another file of the build failed to publish): the older file comes back,
        or the new one goes when there was none. Returns what could not be undone, or ``None``."""
        if os.path.lexists(self.temporary):
            return None  # never renamed into place (interrupted before or inside publish)
        try:
            if self._previous is not None:
                os.replace(self._previous, self.final)
                self._previous = None
            elif self._created:
                self.final.unlink()
            else:
                return f"{self.final} is new and its older version could not be kept (no hard links there)"
        except OSError as error:
            kept = f", its older version is kept as {self._previous}" if self._previous is not None else ""
            self._previous = None  # now the only copy: not to be removed
            return f"{self.final} is new ({error.strerror}){kept}"
        return None

    def forget_previous(self) -> None:
        if self._previous is not None:
            with contextlib.suppress(OSError):
                self._previous.unlink()
            self._previous = None

    def discard(self) -> None:
        with contextlib.suppress(OSError):  # closing flushes, which fails again on a full disk
            self.handle.close()
        with contextlib.suppress(FileNotFoundError):
            self.temporary.unlink()


@contextlib.contextmanager
def _folders_locked(folders: Iterable[Path]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on each destination folder (no lock file is created) while a build
    renames its files into place, so two builds publishing into one folder at once never leave one's
    archive beside the other's sidecar. Where ``flock`` is missing, the renames are still atomic one by one."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    descriptors: list[int] = []
    try:
        for folder in sorted(set(folders)):  # one order for every process: no deadlock
            try:
                fd = os.open(folder, os.O_RDONLY)
            except OSError:
                continue  # publishing will report the folder's problem
            descriptors.append(fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        for fd in descriptors:
            os.close(fd)  # closing releases the lock


class Staging:
    """Collects staged files; on a clean exit publishes them all, on any exception discards them all."""

    def __init__(self) -> None:
        self.files: list[StagedFile] = []

    def create(self, final: Path) -> StagedFile:
        staged = StagedFile(final)
        self.files.append(staged)
        return staged

    def __enter__(self) -> Staging:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            try:
                for staged in self.files:
                    if not staged.handle.closed:
                        staged.finish()
                with _folders_locked(staged.final.parent for staged in self.files):
                    published: list[StagedFile] = []
                    try:
                        for staged in self.files:
                            published.append(staged)  # first: an interrupt right after the rename is undone too
                            staged.publish()
                    except BaseException as failure:
                        # all or nothing: the older files come back
                        stuck = [problem for staged in reversed(published) if (problem := staged.roll_back())]
                        if stuck:
                            raise _not_rolled_back(failure, stuck) from None
                        raise
                    finally:
                        for staged in self.files:
                            staged.forget_previous()
                return
            except BaseException:
                for staged in self.files:
                    staged.discard()
                raise
        for staged in self.files:
            staged.discard()
