"""Reading artifacts: members of a gzip tar, without extracting anything."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from .errors import ArchiveError

__all__ = ["ArchiveMember", "iter_members"]


@dataclass(frozen=True)
class ArchiveMember:
    """One member as read back, with its content (members are bounded by the caller's limits)."""

    name: str
    type: bytes
    mode: int
    size: int
    data: bytes


def iter_members(handle: BinaryIO, where: str, max_total: int | None = None) -> Iterator[ArchiveMember]:
    """Read the members of a gzip tar without extracting anything; bad streams raise ``ArchiveError``."""
    import tarfile

    try:
        with tarfile.open(fileobj=handle, mode="r:gz") as tar:
            total = 0
            for info in tar:
                data = b""
                if info.isreg():
                    total += info.size
                    if max_total is not None and total > max_total:
                        raise ArchiveError(f"{where}: members add up to more than {max_total} bytes; refusing to read on")
                    extracted = tar.extractfile(info)
                    assert extracted is not None
                    data = extracted.read()
                yield ArchiveMember(name=info.name, type=info.type, mode=info.mode, size=info.size, data=data)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise ArchiveError(f"{where}: not a readable gzip tar ({error})") from None
