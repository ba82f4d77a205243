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
import struct
import zlib
from typing import Iterable, Protocol, Tuple

from .compress import ParallelGzip
from .errors import ArchiveError
from .manifest import FileRecord
from .secret_guard import KEY_MARKER, ContentScanner
from .selection import SelectedFile
from .shim import GeneratedFile

__all__ = [
    "BLOCK",
    "GzipWriter",
    "MemberWriter",
    "Writable",
    "pax_path_header",
    "tar_header",
    "write_end",
    "write_member_pieces",
]

BLOCK = 512
RECORD = 20 * BLOCK
_CHUNK = 1 << 20
_BATCH = 1 << 17  # bytes of small members handed to the compressor at once
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
_ZEROS = b"\x00" * BLOCK
_MAX_OCTAL_SIZE = 8**11  # ustar's 12-byte size field


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\x00" % (width - 1, value)


_Template = Tuple[bytes, bytes, bytes, int]
#: A ustar header block: name, then mode/uid/gid, size, mtime, checksum, and the rest (typeflag on);
#: ``struct`` pads the name with NULs.
_USTAR = struct.Struct("100s24s12s12s8s356s")


def _header_block(name: bytes, size: int, mode: int, mtime: int, typeflag: bytes) -> bytes:
    """One ustar header block: the fixed fields come from a cached template."""
    return _block(name, size, _template(mode, mtime, typeflag))


def _block(name: bytes, size: int, template: _Template) -> bytes:
    """The header block of ``template`` for ``name`` (at most 100 bytes) and ``size``. The checksum is
    the template's byte sum plus the variable fields': adler32's first half is 1 + the byte sum modulo
    65,521, exact here (100 name bytes and 12 size bytes sum to at most 26,105), and one C call."""
    head, before_checksum, after_checksum, constant_sum = template
    size_field = b"%011o\x00" % size
    checksum = constant_sum + (zlib.adler32(size_field, zlib.adler32(name)) & 0xFFFF) - 1
    return _USTAR.pack(name, head, size_field, before_checksum, b"%06o\x00 " % checksum, after_checksum)


@functools.lru_cache(maxsize=64)
def _template(mode: int, mtime: int, typeflag: bytes) -> _Template:
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
    return head, before_checksum, after_checksum, constant_sum


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


def _unreadable(selected: SelectedFile, error: OSError) -> ArchiveError:
    return ArchiveError(f"{selected.path}: cannot be read ({error.strerror}); fix its permissions or ignore it")


def _open(selected: SelectedFile) -> int:
    try:
        return os.open(selected.source, _OPEN_FLAGS)
    except OSError as error:
        raise _unreadable(selected, error) from None


def _changed(selected: SelectedFile, fd: int) -> ArchiveError:
    """The error for a file that no longer matches what selection saw (asked only once it differs)."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        return ArchiveError(f"{selected.path}: is no longer a regular file; rebuild")
    if info.st_size != selected.size:
        return ArchiveError(
            f"{selected.path}: changed size while the build ran ({selected.size} → {info.st_size} bytes); rebuild"
        )
    return ArchiveError(f"{selected.path}: changed size while the build ran; rebuild")


def _read_small(selected: SelectedFile) -> bytes:
    """A file below :data:`_CHUNK`, in one read that asks for a byte more than expected: a short or
    long answer means it changed since selection, so the common case needs no ``fstat``. An empty
    answer is the one a FIFO or device put in the file's place could also give: that one is checked."""
    fd = _open(selected)
    try:
        try:
            data = os.read(fd, selected.size + 1)
        except (IsADirectoryError, BlockingIOError):  # replaced by a directory, or by a FIFO with a writer
            raise _changed(selected, fd) from None
        except OSError as error:  # a disk error: said as such, naming the file
            raise _unreadable(selected, error) from None
        if len(data) != selected.size or (not data and not stat.S_ISREG(os.fstat(fd).st_mode)):
            raise _changed(selected, fd)
        return data
    finally:
        os.close(fd)


def _stream_large(selected: SelectedFile, out: GzipWriter, scanner: ContentScanner | None) -> str:
    """Stream a large file into ``out`` chunk by chunk; return its sha256 (of exactly the bytes written)."""
    fd = _open(selected)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size != selected.size:
            raise _changed(selected, fd)
        digest = hashlib.sha256()
        remaining = selected.size
        tail = b""
        while remaining:
            try:
                chunk = os.read(fd, min(_CHUNK, remaining))
            except OSError as error:
                raise _unreadable(selected, error) from None
            if not chunk:
                break
            digest.update(chunk)
            out.write(chunk)
            if scanner is not None:
                tail = scanner.scan_chunk(selected.path, tail, chunk)
            remaining -= len(chunk)
        if remaining or os.read(fd, 1):
            raise _changed(selected, fd)
    finally:
        os.close(fd)
    return digest.hexdigest()


class MemberWriter:
    """Writes files as tar members into ``out`` in the order they come; :attr:`records` lists them as
    the manifest does (each hash of exactly the bytes written). ``scanner`` sees every source file's
    bytes, for the secrets guard's content check."""

    def __init__(self, out: GzipWriter, mtime: int, scanner: ContentScanner | None = None) -> None:
        self.out = out
        self.scanner = scanner
        self.records: list[FileRecord] = []
        self.mtime = mtime
        # the two header templates of plain members (644, 755), looked up once
        self._templates = (_template(0o644, mtime, b"0"), _template(0o755, mtime, b"0"))

    def write(
        self, files: Iterable[SelectedFile | GeneratedFile], read_ahead: dict[str, bytes], read: bool = True
    ) -> int:
        """Write ``files`` after those written before; return how many were written. A file's bytes are
        taken out of ``read_ahead`` (what selection read already) or else read here; with ``read=False``
        only files that selection read are written, up to the first it did not read.

        This loop is most of a build of many small files: per file, the bytes (most often read already
        by selection), a hash and a header from a template; members are gathered into one batch before
        they reach ``out``. The secrets scan's first test (the key marker) runs once on the batch's
        files joined, and only a batch whose files hold the marker is scanned file by file: on wide,
        5 ms against 12 ms for a search per file (each paying the call) and 10 ms for one per batch
        (four fifths of a batch of small files are headers and padding)."""
        out, templates, block = self.out, self._templates, _block
        records = self.records
        append = records.append
        record = tuple.__new__  # FileRecord's own __new__ is a Python function: a few times the cost
        sha256 = hashlib.sha256
        take = read_ahead.pop
        batch = bytearray()
        batched: list[bytes] = []  # the bytes of the batch's files, for the secrets scan
        first = len(records)  # the record of the batch's first file
        flush = self._flush
        written = 0
        for item in files:
            path = item.path
            if isinstance(item, GeneratedFile):
                data = item.data
                size, mode, executable, generated = len(data), "644", False, True
            else:
                _, _, size, executable = item
                mode, generated = ("755" if executable else "644"), False
                ahead = take(path, None)
                if ahead is not None:  # read while it was selected
                    data = ahead
                elif not read:
                    break
                else:
                    if size >= _CHUNK:
                        flush(batch, batched, first)
                        out.write(tar_header(path.encode("utf-8"), size, 0o755 if executable else 0o644, self.mtime))
                        sha = _stream_large(item, out, self.scanner)  # scanned chunk by chunk
                        out.write(_ZEROS[: -size % BLOCK])
                        append(FileRecord(path, size, mode, sha))
                        batch, batched, first = bytearray(), [], len(records)
                        written += 1
                        continue
                    data = _read_small(item)
            batched.append(data)
            name = path.encode("utf-8")
            if len(name) <= 100 and size < _MAX_OCTAL_SIZE and name.isascii():  # a plain ustar header
                batch += block(name, size, templates[executable])
            else:
                batch += tar_header(name, size, 0o755 if executable else 0o644, self.mtime)
            batch += data
            batch += _ZEROS[: -size % BLOCK]
            append(record(FileRecord, (path, size, mode, sha256(data).hexdigest(), generated)))
            written += 1
            if len(batch) >= _BATCH:
                flush(batch, batched, first)
                batch, batched, first = bytearray(), [], len(records)
        flush(batch, batched, first)
        return written

    def _flush(self, batch: bytearray, batched: list[bytes], first: int) -> None:
        """Hand a batch to ``out``, after scanning its files (``batched``, whose records start at
        ``first``) for secrets when their bytes joined hold the key marker (across two files, it is
        a false alarm that the file-by-file scan dismisses)."""
        scanner = self.scanner
        if scanner is not None and KEY_MARKER in b"".join(batched):
            for record, data in zip(self.records[first:], batched):
                if not record.generated:  # our own modules
                    scanner.scan(record.path, data)
        self.out.write(batch)


def write_member_pieces(out: GzipWriter, path: str, size: int, pieces: Iterable[bytes], mtime: int) -> None:
    """A member of ``size`` bytes that come in ``pieces`` (compressed as they come)."""
    out.write(tar_header(path.encode("utf-8"), size, 0o644, mtime))
    written = 0
    for piece in pieces:
        out.write(piece)
        written += len(piece)
    if written != size:  # a bug: the header already promised `size`; the archive is discarded
        raise ArchiveError(f"{path}: {written:,} bytes written for a member of {size:,}")
    out.write(_ZEROS[: -size % BLOCK])


def write_end(out: GzipWriter) -> None:
    """Two zero blocks, then padding to a full 10 KiB record as GNU tar and ``tarfile`` write."""
    out.write(b"\x00" * (2 * BLOCK))
    written = out.size
    out.write(b"\x00" * (-written % RECORD))
