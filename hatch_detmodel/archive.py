"""Archive: a reproducible gzip-compressed tar written in one pass, and a strict reader.

Layout: every packed file as a regular-file member in UTF-8 byte order of its path, then the
manifest ``.detmodel.json`` as the last member — the manifest holds the hashes of the very bytes
just written, so each source file is read exactly once. Headers are built here (not by
``tarfile``) so the bytes do not depend on the Python version: ustar fields, a PAX record only for
long or non-ASCII paths and huge sizes, uid/gid 0, empty owner names, one fixed integer mtime, and
a gzip header with no name, mtime 0 and a fixed compression level.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
from typing import Callable, Iterable, Protocol

from .compress import ParallelGzip
from .errors import ArchiveError
from .manifest import FileRecord
from .secret_guard import ContentScanner
from .selection import SelectedFile
from .shim import GeneratedFile

__all__ = [
    "BLOCK",
    "GzipWriter",
    "Writable",
    "pax_path_header",
    "tar_header",
    "write_bytes_member",
    "write_end",
    "write_members",
]

BLOCK = 512
RECORD = 20 * BLOCK
_CHUNK = 1 << 20
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
_ZEROS = b"\x00" * BLOCK
_MAX_OCTAL_SIZE = 8**11  # ustar's 12-byte size field


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\x00" % (width - 1, value)


def _header_block(name: bytes, size: int, mode: int, mtime: int, typeflag: bytes) -> bytes:
    """One ustar header block: the fixed fields come from a cached template, the checksum is summed
    from the template's and the variable fields' bytes."""
    head, tail, constant_sum = _template(mode, mtime, typeflag)
    size_field = b"%011o\x00" % size
    checksum = constant_sum + sum(name) + sum(size_field)
    return b"".join((name.ljust(100, b"\x00"), head, size_field, tail[0], b"%06o\x00 " % checksum, tail[1]))


@functools.lru_cache(maxsize=64)
def _template(mode: int, mtime: int, typeflag: bytes) -> tuple[bytes, tuple[bytes, bytes], int]:
    """For one (mode, mtime, typeflag): the fields between name and size, after size up to the
    checksum, after the checksum; and the byte sum of all fixed fields (checksum counted as spaces)."""
    head = _octal(mode, 8) + _octal(0, 8) + _octal(0, 8)  # mode, uid, gid
    before_checksum = _octal(mtime, 12)
    after_checksum = b"".join((
        typeflag,
        b"\x00" * 100,  # linkname
        b"ustar\x0000",
        b"\x00" * 32,  # uname
        b"\x00" * 32,  # gname
        b"\x00" * 8,  # devmajor
        b"\x00" * 8,  # devminor
        b"\x00" * 155,  # prefix
    )).ljust(BLOCK - 156, b"\x00")
    constant_sum = sum(head) + sum(before_checksum) + 8 * ord(" ") + sum(after_checksum)
    return head, (before_checksum, after_checksum), constant_sum


def _pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length).encode()) + len(body) != length:
        length += 1
    return str(length).encode() + body


def pax_path_header(path: bytes, size: int) -> bytes:
    """The PAX extended header needed for ``path``/``size``, or ``b""`` when ustar suffices."""
    records = b""
    if len(path) > 100 or not path.isascii():
        records += _pax_record(b"path", path)
    if size >= _MAX_OCTAL_SIZE:
        records += _pax_record(b"size", str(size).encode())
    if not records:
        return b""
    header = _header_block(b"././@PaxHeader", len(records), 0o644, 0, b"x")
    return header + records + b"\x00" * (-len(records) % BLOCK)


def tar_header(path: bytes, size: int, mode: int, mtime: int) -> bytes:
    """The header block(s) for one regular file, PAX extension first when needed."""
    name = path if len(path) <= 100 and path.isascii() else path[:100]
    ustar_size = size if size < _MAX_OCTAL_SIZE else 0
    return pax_path_header(path, size) + _header_block(name, ustar_size, mode, mtime, b"0")


class Writable(Protocol):
    def write(self, data: bytes | memoryview, /) -> object: ...


class GzipWriter(ParallelGzip):
    """The archive's gzip stream: one member with no file name, mtime 0 and a fixed level (so a fixed
    XFL byte), compressed on every core in fixed-size jobs (see :mod:`hatch_detmodel.compress`); the
    bytes do not depend on ``workers``."""

    def __init__(self, out: Writable, level: int, workers: int | None = None) -> None:
        super().__init__(out, level, workers)


def _read_once(selected: SelectedFile, sink: Callable[[bytes], None]) -> str:
    """Stream one file into ``sink``; return its sha256. The bytes hashed are the bytes written."""
    try:
        fd = os.open(selected.source, _OPEN_FLAGS)
    except OSError as error:
        raise ArchiveError(f"{selected.path}: cannot be read ({error.strerror}); fix its permissions or ignore it") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ArchiveError(f"{selected.path}: is no longer a regular file; rebuild")
        if info.st_size != selected.size:
            raise ArchiveError(
                f"{selected.path}: changed size while the build ran ({selected.size} → {info.st_size} bytes); rebuild"
            )
        if selected.size < _CHUNK:
            # One read asks for a byte more than expected: a short or long answer means it changed.
            data = os.read(fd, selected.size + 1)
            if len(data) != selected.size:
                raise ArchiveError(f"{selected.path}: changed size while the build ran; rebuild")
            sink(data)
            return hashlib.sha256(data).hexdigest()
        digest = hashlib.sha256()
        remaining = selected.size
        while remaining:
            chunk = os.read(fd, min(_CHUNK, remaining))
            if not chunk:
                break
            digest.update(chunk)
            sink(chunk)
            remaining -= len(chunk)
        if remaining or os.read(fd, 1):
            raise ArchiveError(f"{selected.path}: changed size while the build ran; rebuild")
    finally:
        os.close(fd)
    return digest.hexdigest()


def write_members(
    files: Iterable[SelectedFile | GeneratedFile],
    out: GzipWriter,
    mtime: int,
    scanner: ContentScanner | None = None,
) -> list[FileRecord]:
    """Write each file as a tar member; return its records (hash of exactly the bytes written).
    ``scanner`` sees every chunk of every source file, for the secrets guard's content check."""
    records: list[FileRecord] = []
    for item in files:
        path = item.path.encode("utf-8")
        if isinstance(item, GeneratedFile):
            size, mode = len(item.data), "644"
            out.write(tar_header(path, size, 0o644, mtime))
            out.write(item.data)
            sha = hashlib.sha256(item.data).hexdigest()
        else:
            size, mode = item.size, item.mode
            out.write(tar_header(path, size, 0o755 if item.executable else 0o644, mtime))
            if scanner is None:
                sha = _read_once(item, out.write)
            else:
                scanner.start(item.path)
                sha = _read_once(item, _tee(scanner.feed, out.write))
        padding = -size % BLOCK
        if padding:
            out.write(_ZEROS[:padding])
        records.append(
            FileRecord(path=item.path, size=size, mode=mode, sha256=sha, generated=isinstance(item, GeneratedFile))
        )
    return records


def _tee(first: Callable[[bytes], None], second: Callable[[bytes], object]) -> Callable[[bytes], None]:
    def both(chunk: bytes) -> None:
        first(chunk)
        second(chunk)

    return both


def write_bytes_member(out: GzipWriter, path: str, data: bytes, mtime: int) -> None:
    out.write(tar_header(path.encode("utf-8"), len(data), 0o644, mtime))
    out.write(data + b"\x00" * (-len(data) % BLOCK))


def write_end(out: GzipWriter) -> None:
    """Two zero blocks, then padding to a full 10 KiB record as GNU tar and ``tarfile`` write."""
    out.write(b"\x00" * (2 * BLOCK))
    written = out.size
    out.write(b"\x00" * (-written % RECORD))
