"""Atomic output: every file is written to a temporary name in its destination folder, then renamed.

A build stages all its files first and publishes them only when every one is complete, so a failure
leaves neither a partial artifact nor a damaged older one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

__all__ = ["StagedFile", "Staging"]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class StagedFile:
    """A temporary file beside ``final``; :meth:`publish` renames it into place."""

    def __init__(self, final: Path) -> None:
        self.final = final
        fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
        self.temporary = Path(name)
        self.handle: BinaryIO = os.fdopen(fd, "wb")

    def finish(self) -> None:
        """Flush to disk and give the file the permissions a normal new file would have."""
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.chmod(self.temporary, 0o666 & ~_current_umask())

    def publish(self) -> None:
        os.replace(self.temporary, self.final)

    def discard(self) -> None:
        if not self.handle.closed:
            self.handle.close()
        with contextlib.suppress(FileNotFoundError):
            self.temporary.unlink()


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
                for staged in self.files:
                    staged.publish()
                return
            except BaseException:
                for staged in self.files:
                    staged.discard()
                raise
        for staged in self.files:
            staged.discard()
