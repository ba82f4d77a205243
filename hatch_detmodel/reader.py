"""Reading artifacts: one streaming tar reader for every verb, and the verification built on it.

Nothing is ever extracted with ``tarfile``: headers are parsed here (ustar, PAX and GNU long names,
the formats ``tarfile`` and GNU tar write), member data is streamed in chunks and hashed, and every
decompressed byte counts against :class:`Limits`, so a decompression bomb stops at the limit instead
of filling memory or disk. The manifest is the *last* member of our archives, so verification streams
and hashes every member first and compares with the manifest at the end, collecting every difference.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Callable, Iterator, Protocol, cast

from .errors import ArchiveError
from .manifest import ArchiveRecord, FileRecord, Manifest, content_digest
from .selection import MANIFEST_NAME

__all__ = [
    "DEFAULT_LIMITS",
    "ArchiveStream",
    "ArtifactReport",
    "CorruptArchive",
    "LimitExceeded",
    "Limits",
    "Member",
    "MemberRecord",
    "Problem",
    "ProgressCallback",
    "VerificationFailed",
    "mode_string",
    "path_problem",
    "read_artifact",
    "sidecar_path_for",
]

BLOCK = 512
_CHUNK = 1 << 20
_ARCHIVE_SUFFIX = ".detmodel.tgz"
_SIDECAR_SUFFIX = ".detmodel.json"

#: ``on_progress(compressed bytes read, compressed size)``; front ends draw a progress line with it.
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Limits:
    """Bounds on what reading one artifact may cost; exceeding one stops reading with a problem."""

    #: every decompressed byte (headers, data, padding); Determined itself refuses ~95 MB of files
    max_total: int = 1 << 30
    max_members: int = 200_000
    #: one PAX extended header or GNU long name
    max_header: int = 1 << 20
    #: the manifest member and the sidecar, which are parsed in memory
    max_manifest: int = 64 << 20

    def __post_init__(self) -> None:
        for name in ("max_total", "max_members", "max_header", "max_manifest"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Limits.{name} must be positive")


DEFAULT_LIMITS = Limits()


class CorruptArchive(ArchiveError):
    """The gzip or tar stream is damaged: truncated, bad checksum, bad CRC, garbage."""


class LimitExceeded(ArchiveError):
    """Reading on would exceed :class:`Limits`."""


class VerificationFailed(ArchiveError):
    """An artifact did not verify, so a verb that needs an intact one stops; ``report`` lists why."""

    def __init__(self, report: ArtifactReport, consequence: str = "") -> None:
        count = len(report.problems)
        super().__init__(
            f"{report.path}: fails verification ({count} problem{'s' if count != 1 else ''}){consequence}. "
            f"Run `hatch-detmodel verify {report.path}` for the list, then rebuild or download it again"
        )
        self.report = report


# --- the tar stream ----------------------------------------------------------------------------

_KINDS = {
    b"0": "file", b"\x00": "file", b"7": "contiguous file", b"1": "hard link", b"2": "symbolic link",
    b"3": "character device", b"4": "block device", b"5": "directory", b"6": "FIFO", b"S": "GNU sparse file",
    b"g": "PAX global header", b"V": "GNU volume header", b"M": "GNU multi-volume continuation",
}
# tarfile's rule: data follows the header for these types and for any type it does not know.
_NO_DATA = frozenset({b"1", b"2", b"3", b"4", b"5", b"6"})


def _number(field: bytes, what: str, offset: int) -> int:
    """A numeric header field: octal text, or GNU base-256 when the high bit of the first byte is set."""
    if field and field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        return value - (1 << (8 * (len(field) - 1))) if field[0] == 0xFF else value
    text = field.split(b"\x00", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise CorruptArchive(f"tar header at byte {offset}: {what} field {field!r} is not a number") from None


def _parse_pax(data: bytes, offset: int) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        if not data[pos:].strip(b"\x00"):
            break
        space = data.find(b" ", pos)
        digits = data[pos:space]
        # at most 20 digits: a longer length cannot fit the bounded header (and int() refuses >4300 digits)
        length = int(digits) if space > pos and digits.isdigit() and len(digits) <= 20 else 0
        end = pos + length
        if length <= 0 or end > len(data) or data[end - 1 : end] != b"\n" or b"=" not in data[space + 1 : end]:
            raise CorruptArchive(f"PAX header at byte {offset}: malformed record")
        key, _, value = data[space + 1 : end - 1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos = end
    return records


def mode_string(mode: int) -> str:
    """A tar mode as the manifest spells it (``"644"``/``"755"``; anything else shown in octal)."""
    return f"{mode & 0o7777:03o}"


@dataclass(frozen=True)
class MemberRecord:
    """One member as read: header fields, and the sha256 of its data for regular files."""

    index: int
    name: str
    kind: str  # "file", "directory", "symbolic link", ...
    mode: int
    size: int
    linkname: str = ""
    sha256: str | None = None

    @property
    def is_file(self) -> bool:
        return self.kind == "file"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "kind": self.kind, "mode": mode_string(self.mode), "size": self.size}
        if self.linkname:
            data["linkname"] = self.linkname
        if self.sha256 is not None:
            data["sha256"] = self.sha256
        return data


class _HashingReader:
    """The compressed file as gzip reads it: hashed and counted on the way (for the sidecar check)."""

    def __init__(self, raw: BinaryIO, total: int, on_progress: ProgressCallback | None) -> None:
        self.raw = raw
        self.total = total
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.on_progress = on_progress

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha256.update(data)
        self.size += len(data)
        if self.on_progress is not None and data:
            self.on_progress(self.size, self.total)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


class Member:
    """A member being streamed; :meth:`chunks` reads its data, valid until the next member is read."""

    def __init__(self, record: MemberRecord, stream: _TarStream) -> None:
        self.record = record
        self._stream = stream

    @property
    def name(self) -> str:
        return self.record.name

    def chunks(self, size: int = _CHUNK) -> Iterator[bytes]:
        while True:
            chunk = self._stream.read_data(self, size)
            if not chunk:
                return
            yield chunk


class _Readable(Protocol):
    def read(self, n: int, /) -> bytes: ...


class _TarStream:
    """Sequential tar parser over a decompressed stream, with every byte counted against the limits."""

    def __init__(self, data: _Readable, limits: Limits) -> None:
        self.data = data
        self.limits = limits
        self.offset = 0  # decompressed bytes consumed
        self.count = 0
        self.current: Member | None = None
        self.remaining = 0  # data bytes of the current member not yet read
        self.padding = 0
        self.finished = False

    def _read(self, n: int) -> bytes:
        # Never ask for more than one byte past the budget: decompression stops right at the limit.
        budget = self.limits.max_total - self.offset
        try:
            data = self.data.read(min(n, budget + 1))
        except (OSError, EOFError, zlib.error) as error:
            raise CorruptArchive(f"the gzip stream is damaged at byte {self.offset} of the content ({error})") from None
        self.offset += len(data)
        if self.offset > self.limits.max_total:
            raise LimitExceeded(
                f"decompressed content exceeds the limit of {self.limits.max_total:,} bytes; "
                "refusing to read on (a decompression bomb, or pass a larger --max-bytes if you trust it)"
            )
        return data

    def _read_exact(self, n: int, what: str) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self._read(min(n - len(data), _CHUNK))
            if not chunk:
                raise CorruptArchive(f"the archive ends in the middle of {what} (truncated at byte {self.offset})")
            data += chunk
        return data

    def _skip_current(self) -> None:
        while self.remaining:
            chunk = self._read(min(self.remaining, _CHUNK))
            if not chunk:
                raise CorruptArchive(f"the archive ends inside member {self.current.name if self.current else '?'}")
            self.remaining -= len(chunk)
        if self.padding:
            self._read_exact(self.padding, "padding")
            self.padding = 0
        self.current = None

    def read_data(self, member: Member, size: int) -> bytes:
        if member is not self.current or not self.remaining:
            return b""
        chunk = self._read(min(size, self.remaining))
        if not chunk:
            raise CorruptArchive(f"the archive ends inside member {member.name} (truncated)")
        self.remaining -= len(chunk)
        return chunk

    def _special_data(self, size: int, what: str, offset: int) -> bytes:
        if size > self.limits.max_header:
            raise LimitExceeded(f"{what} at byte {offset} is {size:,} bytes, over the limit of {self.limits.max_header:,}")
        data = self._read_exact(size, what)
        self._read_exact(-size % BLOCK, "padding")
        return data

    def next(self) -> Member | None:
        if self.finished:
            return None
        self._skip_current()
        pax: dict[str, str] = {}
        long_name: bytes | None = None
        long_link: bytes | None = None
        while True:
            offset = self.offset
            block = self._read(BLOCK)
            if len(block) < BLOCK:
                if not block and offset == 0:
                    raise CorruptArchive("the archive is empty (no tar header at all)")
                raise CorruptArchive(f"the archive ends without the end-of-archive marker (truncated at byte {offset})")
            if block == b"\x00" * BLOCK:
                self._check_trailer()
                self.finished = True
                return None
            stored = _number(block[148:156], "checksum", offset)
            unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
            signed = unsigned - 256 * sum(1 for b in block[:148] + block[156:] if b > 127)
            if stored not in (unsigned, signed):
                raise CorruptArchive(f"tar header at byte {offset} has a bad checksum (damaged or not a tar archive)")
            typeflag = block[156:157]
            size = _number(block[124:136], "size", offset)
            if size < 0:
                raise CorruptArchive(f"tar header at byte {offset} has a negative size")
            if typeflag == b"x":
                pax.update(_parse_pax(self._special_data(size, "PAX header", offset), offset))
                continue
            if typeflag in (b"L", b"K"):
                value = self._special_data(size, "GNU long name", offset).split(b"\x00", 1)[0]
                if typeflag == b"L":
                    long_name = value
                else:
                    long_link = value
                continue
            return self._member(block, offset, typeflag, size, pax, long_name, long_link)

    def _member(
        self, block: bytes, offset: int, typeflag: bytes, size: int,
        pax: dict[str, str], long_name: bytes | None, long_link: bytes | None,
    ) -> Member:
        name_bytes = block[0:100].split(b"\x00", 1)[0]
        if block[257:263] == b"ustar\x00":  # POSIX: a prefix field; GNU ("ustar  ") has none
            prefix = block[345:500].split(b"\x00", 1)[0]
            if prefix:
                name_bytes = prefix + b"/" + name_bytes
        name = (long_name if long_name is not None else name_bytes).decode("utf-8", "surrogateescape")
        linkname = (long_link if long_link is not None else block[157:257].split(b"\x00", 1)[0]).decode(
            "utf-8", "surrogateescape"
        )
        name = pax.get("path", name)
        linkname = pax.get("linkpath", linkname)
        if "size" in pax:
            text = pax["size"]
            if not (text.isascii() and text.isdigit() and len(text) <= 20):
                raise CorruptArchive(f"PAX header at byte {offset}: size {text[:40]!r} is not a non-negative number")
            size = int(text)
        self.count += 1
        if self.count > self.limits.max_members:
            raise LimitExceeded(f"more than {self.limits.max_members:,} members; refusing to read on")
        has_data = typeflag not in _NO_DATA
        if has_data and self.offset + size > self.limits.max_total:
            raise LimitExceeded(
                f"member {name} declares {size:,} bytes, beyond the limit of {self.limits.max_total:,} decompressed "
                "bytes; refusing to read it (a decompression bomb, or pass a larger --max-bytes if you trust it)"
            )
        kind = _KINDS.get(typeflag, f"unknown type {typeflag!r}")
        record = MemberRecord(
            index=self.count - 1, name=name, kind=kind, mode=_number(block[100:108], "mode", offset),
            size=size, linkname=linkname,
        )
        member = Member(record, self)
        self.current = member
        self.remaining = size if has_data else 0
        self.padding = -self.remaining % BLOCK
        return member

    def _check_trailer(self) -> None:
        """After the first zero block only zeros may follow (the second block and record padding)."""
        while True:
            chunk = self._read(_CHUNK)
            if not chunk:
                return
            if chunk.count(0) != len(chunk):
                raise CorruptArchive(f"data after the end-of-archive marker (byte {self.offset - len(chunk)})")


class ArchiveStream:
    """Open an artifact and stream its members in order::

        with ArchiveStream(path) as stream:
            for member in stream:
                for chunk in member.chunks(): ...

    After iteration, :meth:`finish` drains the file and gives the sha256 and size of the ``.tgz``.
    Raises :class:`ArchiveError` when the file cannot be opened or is not gzip at all, and
    :class:`CorruptArchive` / :class:`LimitExceeded` while streaming.
    """

    def __init__(self, path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS,
                 on_progress: ProgressCallback | None = None) -> None:
        self.path = Path(path)
        self.limits = limits
        if self.path.exists() and not (self.path.is_file() or self.path.is_dir()):
            raise ArchiveError(f"{path}: is not a regular file (a FIFO or device would block); pass the .detmodel.tgz")
        try:
            self._raw: BinaryIO = open(self.path, "rb")  # noqa: SIM115 - closed by __exit__/close
        except IsADirectoryError:
            raise ArchiveError(f"{path}: is a directory; pass the .detmodel.tgz file") from None
        except OSError as error:
            raise ArchiveError(f"{path}: cannot be read ({error.strerror}); check the path and its permissions") from None
        try:
            size = os.fstat(self._raw.fileno()).st_size
            magic = self._raw.read(2)
            self._raw.seek(0)
        except OSError as error:
            self._raw.close()
            raise ArchiveError(f"{path}: cannot be read ({error.strerror})") from None
        if magic != b"\x1f\x8b":
            self._raw.close()
            raise ArchiveError(
                f"{path}: not a gzip file, so not a .detmodel.tgz; pass an artifact written by `hatch-detmodel build` "
                "or `hatch build -t detmodel`"
            )
        self._hashing = _HashingReader(self._raw, size, on_progress)
        self._gzip = gzip.GzipFile(fileobj=cast(BinaryIO, self._hashing), mode="rb")
        self._tar = _TarStream(self._gzip, limits)

    def __iter__(self) -> Iterator[Member]:
        while True:
            member = self._tar.next()
            if member is None:
                return
            yield member

    @property
    def decompressed(self) -> int:
        return self._tar.offset

    def finish(self) -> ArchiveRecord:
        """Read the rest of the compressed file (never decompressing it) and describe the ``.tgz``."""
        self._hashing.drain()
        return ArchiveRecord(name=self.path.name, size=self._hashing.size, sha256=self._hashing.sha256.hexdigest())

    def close(self) -> None:
        self._gzip.close()
        self._raw.close()

    def __enter__(self) -> ArchiveStream:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()


# --- verification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One difference between an artifact and what it claims; ``message`` is complete on its own."""

    code: str  # e.g. "sha256", "extra", "missing", "duplicate", "unsafe-name", "not-regular", "sidecar-archive"
    path: str | None
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "path": self.path, "message": self.message}


@dataclass(frozen=True)
class ArtifactReport:
    """Everything read from one artifact, and every problem found: the result of :func:`read_artifact`."""

    path: Path
    archive: ArchiveRecord  # of the .tgz as it is on disk
    members: tuple[MemberRecord, ...]
    manifest: Manifest | None
    manifest_size: int
    sidecar: Path | None  # the sidecar that was checked
    sidecar_archive: ArchiveRecord | None
    problems: tuple[Problem, ...]
    notes: tuple[str, ...] = ()
    complete: bool = True  # False when reading stopped early (damage or a limit)

    @property
    def ok(self) -> bool:
        return not self.problems

    def require_manifest(self) -> Manifest:
        """The manifest, or an :class:`ArchiveError` saying why there is none."""
        if self.manifest is not None:
            return self.manifest
        prefix = f"{self.path}: "  # each message names the artifact already; name it once
        reasons = "; ".join(p.message.removeprefix(prefix) for p in self.problems
                            if p.code in ("no-manifest", "manifest-invalid", "corrupt", "limit")) or "no readable manifest"
        raise ArchiveError(f"{self.path}: {reasons}")

    def to_json(self) -> dict[str, Any]:
        return {
            "artifact": str(self.path),
            "ok": self.ok,
            "archive": self.archive.to_json(),
            "sidecar": str(self.sidecar) if self.sidecar is not None else None,
            "members": len(self.members),
            "content_digest": self.manifest.content_digest if self.manifest is not None else None,
            "problems": [p.to_json() for p in self.problems],
            "notes": list(self.notes),
        }


def sidecar_path_for(artifact: Path) -> Path | None:
    """``x.detmodel.json`` beside ``x.detmodel.tgz``; ``None`` for other names."""
    if not artifact.name.endswith(_ARCHIVE_SUFFIX):
        return None
    return artifact.with_name(artifact.name[: -len(_ARCHIVE_SUFFIX)] + _SIDECAR_SUFFIX)


def path_problem(name: str) -> str | None:
    """Why ``name`` cannot be written safely inside a folder, or ``None`` when it can."""
    if not name:
        return "the name is empty"
    if "\x00" in name:
        return "the name contains a NUL byte"
    if any("\ud800" <= c <= "\udfff" for c in name):
        return "the name is not valid UTF-8"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "the name contains a control character"
    if "\\" in name:
        return "the name contains a backslash (a separator on Windows)"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "the name is absolute"
    parts = name.split("/")
    if ".." in parts:
        return "the name climbs out with `..`"
    if any(part in ("", ".") for part in parts):
        return "the name has an empty or `.` component"
    return None


class _Verifier:
    def __init__(self, path: Path, limits: Limits) -> None:
        self.path = path
        self.limits = limits
        self.problems: list[Problem] = []
        self.notes: list[str] = []

    def add(self, code: str, where: str | None, message: str) -> None:
        self.problems.append(Problem(code, where, message))

    def read_members(self, stream: ArchiveStream) -> tuple[list[MemberRecord], bytes | None, bool]:
        members: list[MemberRecord] = []
        manifest_bytes: bytes | None = None
        try:
            for member in stream:
                record = member.record
                if record.kind in ("file", "contiguous file"):
                    keep = record.name == MANIFEST_NAME and record.size <= self.limits.max_manifest
                    digest = hashlib.sha256()
                    kept = bytearray()
                    for chunk in member.chunks():
                        digest.update(chunk)
                        if keep:
                            kept += chunk
                    if keep:
                        manifest_bytes = bytes(kept)
                    elif record.name == MANIFEST_NAME:
                        self.add("limit", MANIFEST_NAME, f"{self.path}: the manifest member is {record.size:,} bytes, "
                                 f"over the limit of {self.limits.max_manifest:,}; not parsed")
                    record = replace(record, sha256=digest.hexdigest())
                members.append(record)
        except LimitExceeded as error:
            self.add("limit", None, f"{self.path}: {error}")
            return members, manifest_bytes, False
        except CorruptArchive as error:
            self.add("corrupt", None, f"{self.path}: {error}; the file is damaged — rebuild or download it again")
            return members, manifest_bytes, False
        return members, manifest_bytes, True

    def check_members(self, members: list[MemberRecord]) -> None:
        seen: set[str] = set()
        for member in members:
            where = f"{self.path}: member {member.name!r}"
            problem = path_problem(member.name)
            if problem:
                escapes = "absolute" in problem or "`..`" in problem
                consequence = "it would be written outside the folder" if escapes else "unpack refuses to write it"
                self.add("unsafe-name", member.name, f"{where}: {problem}; {consequence}")
            if member.kind != "file":
                link = f" → {member.linkname}" if member.linkname else ""
                self.add("not-regular", member.name, f"{where} is a {member.kind}{link}; artifacts hold regular files only")
            if member.name in seen:
                self.add("duplicate", member.name, f"{where} appears more than once (the last copy would win on unpack)")
            seen.add(member.name)

    def parse_manifest(self, members: list[MemberRecord], data: bytes | None, complete: bool) -> Manifest | None:
        positions = [i for i, m in enumerate(members) if m.name == MANIFEST_NAME]
        if not positions:
            if complete:
                self.add("no-manifest", MANIFEST_NAME, f"{self.path}: has no {MANIFEST_NAME} member, so it is not an artifact "
                         "written by hatch-detmodel (or its manifest was removed); rebuild it")
            return None
        if complete and positions[-1] != len(members) - 1:
            self.add("manifest-position", MANIFEST_NAME,
                     f"{self.path}: {MANIFEST_NAME} is not the last member, as hatch-detmodel writes it")
        if data is None:
            return None
        try:
            manifest, _ = Manifest.parse(data, f"{self.path}: {MANIFEST_NAME}")
        except ArchiveError as error:
            self.add("manifest-invalid", MANIFEST_NAME, f"{error}")
            return None
        return manifest

    def check_manifest_paths(self, manifest: Manifest) -> None:
        paths = [f.path for f in manifest.files]
        seen: set[str] = set()
        folded: dict[str, str] = {}
        for path in paths:
            where = f"{self.path}: {MANIFEST_NAME}: files entry {path!r}"
            problem = path_problem(path)
            if problem or path == MANIFEST_NAME:
                self.add("manifest-path", path, f"{where}: {problem or 'names the manifest itself'}")
            if path in seen:
                self.add("manifest-path", path, f"{where} is listed twice")
            seen.add(path)
            other = folded.setdefault(path.casefold(), path)
            if other != path:
                self.add("manifest-path", path, f"{where} differs from {other!r} only in letter case; they collide on "
                         "macOS and Windows")
        for path in paths:
            parts = path.split("/")
            for depth in range(1, len(parts)):
                if "/".join(parts[:depth]) in seen:
                    self.add("manifest-path", path, f"{self.path}: {MANIFEST_NAME}: {'/'.join(parts[:depth])!r} is both a "
                             f"file and the folder of {path!r}")
        if paths != sorted(paths, key=lambda p: p.encode("utf-8")):
            self.add("manifest-path", None, f"{self.path}: {MANIFEST_NAME}: files are not sorted by UTF-8 path")

    def compare(self, manifest: Manifest, members: list[MemberRecord], complete: bool) -> None:
        files = [m for m in members if m.name != MANIFEST_NAME]
        by_name: dict[str, MemberRecord] = {}
        for member in files:
            by_name.setdefault(member.name, member)
        recorded = {f.path: f for f in manifest.files}
        for record in manifest.files:
            found = by_name.get(record.path)
            where = f"{self.path}: {record.path}"
            if found is None:
                if complete:
                    self.add("missing", record.path, f"{where}: listed in the manifest but not in the archive")
                continue
            if found.sha256 is None:
                continue  # not a regular file: already reported
            if found.size != record.size:
                self.add("size", record.path, f"{where}: {found.size:,} bytes in the archive, {record.size:,} in the manifest")
            if mode_string(found.mode) != record.mode:
                self.add("mode", record.path,
                         f"{where}: mode {mode_string(found.mode)} in the archive, {record.mode} in the manifest")
            if found.sha256 != record.sha256:
                self.add("sha256", record.path,
                         f"{where}: content differs from the manifest (sha256 {found.sha256[:12]}…, recorded "
                         f"{record.sha256[:12]}…)")
        for member in files:
            if member.name not in recorded and member.kind == "file":
                self.add("extra", member.name, f"{self.path}: {member.name}: in the archive but not in the manifest")
        ordered = [m.name for m in files if m.name in recorded]
        if complete and not self._has("missing", "extra", "duplicate") and ordered != [f.path for f in manifest.files]:
            self.add("order", None, f"{self.path}: members are not in the manifest's order (UTF-8 path order)")
        if complete:
            actual = content_digest([
                FileRecord(m.name, m.size, mode_string(m.mode), m.sha256 or "") for m in files
            ])
            if actual != manifest.content_digest:
                self.add("content-digest", None, f"{self.path}: the members' content digest is {actual}, the manifest "
                         f"records {manifest.content_digest}")

    def _has(self, *codes: str) -> bool:
        return any(p.code in codes for p in self.problems)

    def check_sidecar(self, sidecar: Path, manifest: Manifest | None, archive: ArchiveRecord) -> ArchiveRecord | None:
        where = str(sidecar)
        try:
            with open(sidecar, "rb") as handle:
                data = handle.read(self.limits.max_manifest + 1)
        except OSError as error:
            self.add("sidecar-invalid", None, f"{where}: cannot be read ({error.strerror})")
            return None
        if len(data) > self.limits.max_manifest:
            self.add("sidecar-invalid", None, f"{where}: larger than {self.limits.max_manifest:,} bytes; not parsed")
            return None
        try:
            side_manifest, record = Manifest.parse(data, where)
        except ArchiveError as error:
            self.add("sidecar-invalid", None, f"{error}; rebuild, or delete the sidecar to verify the archive alone")
            return None
        if record is None:
            self.add("sidecar-invalid", None, f"{where}: has no `archive` field; rebuild to get a complete sidecar")
            return None
        if (record.sha256, record.size) != (archive.sha256, archive.size):
            self.add("sidecar-archive", None, (
                f"{where}: records the archive as {record.size:,} bytes with sha256 {record.sha256[:12]}…, but "
                f"{self.path} is {archive.size:,} bytes with sha256 {archive.sha256[:12]}…; one of the two was changed"
            ))
        if record.name != archive.name:
            self.notes.append(f"{where}: describes an archive named {record.name}; this one is named {archive.name}")
        if manifest is not None and side_manifest.to_json() != manifest.to_json():
            fields = sorted(k for k in set(side_manifest.to_json()) | set(manifest.to_json())
                            if side_manifest.to_json().get(k) != manifest.to_json().get(k))
            self.add("sidecar-manifest", None,
                     f"{where}: differs from the archive's manifest in {', '.join(fields)}")
        return record


def read_artifact(
    path: str | os.PathLike[str],
    limits: Limits = DEFAULT_LIMITS,
    *,
    sidecar: str | os.PathLike[str] | None = None,
    use_sidecar: bool = True,
    on_progress: ProgressCallback | None = None,
) -> ArtifactReport:
    """Stream an artifact once, hashing every member, then check everything against its manifest
    and its sidecar (``sidecar``, else the one beside it). Returns every problem found; raises
    :class:`ArchiveError` only when the file cannot be opened or is not gzip at all."""
    path = Path(path)
    verifier = _Verifier(path, limits)
    with ArchiveStream(path, limits, on_progress) as stream:
        members, manifest_bytes, complete = verifier.read_members(stream)
        archive = stream.finish()
    verifier.check_members(members)
    manifest = verifier.parse_manifest(members, manifest_bytes, complete)
    if manifest is not None:
        verifier.check_manifest_paths(manifest)
        verifier.compare(manifest, members, complete)
    sidecar_file = Path(sidecar) if sidecar is not None else sidecar_path_for(path) if use_sidecar else None
    sidecar_record = None
    if sidecar_file is not None and (sidecar is not None or sidecar_file.exists()):
        sidecar_record = verifier.check_sidecar(sidecar_file, manifest, archive)
    else:
        sidecar_file = None
        if use_sidecar:
            verifier.notes.append(f"{path}: no sidecar beside it; the archive's own hash was not checked")
    return ArtifactReport(
        path=path,
        archive=archive,
        members=tuple(members),
        manifest=manifest,
        manifest_size=next((m.size for m in members if m.name == MANIFEST_NAME), 0),
        sidecar=sidecar_file,
        sidecar_archive=sidecar_record,
        problems=tuple(verifier.problems),
        notes=tuple(verifier.notes),
        complete=complete,
    )
