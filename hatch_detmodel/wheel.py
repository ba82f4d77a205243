"""Read back what the wheel hook embedded: ``<dist>-<version>.dist-info/extra_metadata/detmodel/``.

:func:`extract_from_wheel` writes each embedded archive and sidecar out byte for byte, after checking
that every member is a plain artifact name, that archives and sidecars come in pairs, and that each
archive's bytes match the size and sha256 its sidecar records. All files are published together or
none (a refused or damaged wheel leaves the output folder as it was).
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ArchiveError
from .manifest import ArchiveRecord, Manifest
from .output import Staging
from .pipeline import ARCHIVE_SUFFIX, SIDECAR_SUFFIX

__all__ = ["EMBEDDED_FOLDER", "EmbeddedArtifact", "embedded_artifacts", "extract_from_wheel"]

#: The embedded files' folder inside a wheel's ``.dist-info``.
EMBEDDED_FOLDER = ("extra_metadata", "detmodel")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class EmbeddedArtifact:
    """One model's archive and sidecar inside a wheel."""

    archive: zipfile.ZipInfo
    sidecar: zipfile.ZipInfo

    @property
    def name(self) -> str:
        return self.archive.filename.rsplit("/", 1)[1]


def _plain_artifact_name(name: str) -> str | None:
    """Why ``name`` is not a plain artifact file name, or ``None`` when it is."""
    if not name.endswith((ARCHIVE_SUFFIX, SIDECAR_SUFFIX)):
        return f"is not named `*{ARCHIVE_SUFFIX}` or `*{SIDECAR_SUFFIX}`"
    if name.startswith(".") or "\\" in name or ":" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "is not a plain file name"
    return None


def embedded_artifacts(wheel: zipfile.ZipFile, where: str) -> list[EmbeddedArtifact]:
    """The archive/sidecar pairs under ``*.dist-info/extra_metadata/detmodel/``, sorted by name.

    Raises :class:`ArchiveError` for a member that is not a plain artifact name (a path that could
    escape the output folder, a sub-folder, a duplicate) and for an archive without its sidecar.
    """
    found: dict[str, zipfile.ZipInfo] = {}
    dist_infos: set[str] = set()
    problems: list[str] = []
    for info in wheel.infolist():
        parts = info.filename.split("/")
        if len(parts) < 4 or not parts[0].endswith(".dist-info") or tuple(parts[1:3]) != EMBEDDED_FOLDER:
            continue
        rest = parts[3:]
        if rest == [""]:
            continue  # a directory entry
        if len(rest) != 1:
            problems.append(f"`{info.filename}`: is inside a sub-folder or not a plain file name")
            continue
        name = rest[0]
        problem = _plain_artifact_name(name)
        if problem:
            problems.append(f"`{info.filename}`: {problem}")
        elif name in found:
            problems.append(f"`{info.filename}`: appears more than once")
        else:
            found[name] = info
            dist_infos.add(parts[0])
    if len(dist_infos) > 1:
        problems.append(f"artifacts sit in more than one .dist-info folder: {', '.join(sorted(dist_infos))}")
    pairs: list[EmbeddedArtifact] = []
    for name in sorted(found):
        if name.endswith(ARCHIVE_SUFFIX):
            sidecar_name = name[: -len(ARCHIVE_SUFFIX)] + SIDECAR_SUFFIX
            if sidecar_name not in found:
                problems.append(f"`{found[name].filename}`: has no sidecar `{sidecar_name}` beside it")
                continue
            pairs.append(EmbeddedArtifact(archive=found[name], sidecar=found[sidecar_name]))
        elif name[: -len(SIDECAR_SUFFIX)] + ARCHIVE_SUFFIX not in found:
            problems.append(f"`{found[name].filename}`: is a sidecar without its archive")
    if problems:
        raise ArchiveError(f"{where}: refusing the embedded model-definition artifacts:\n  " + "\n  ".join(problems))
    return pairs


def _archive_record(wheel: zipfile.ZipFile, pair: EmbeddedArtifact, where: str) -> ArchiveRecord:
    member = f"{where}!{pair.sidecar.filename}"
    if pair.sidecar.file_size > 256 << 20:
        raise ArchiveError(f"{member}: {pair.sidecar.file_size:,} bytes is too large for a sidecar")
    _, record = Manifest.parse(wheel.read(pair.sidecar), member)
    if record is None or record.name != pair.name:
        raise ArchiveError(f"{member}: its `archive` record does not describe `{pair.name}`")
    return record


def _copy_member(wheel: zipfile.ZipFile, info: zipfile.ZipInfo, handle: object) -> tuple[int, str]:
    """Stream one member into ``handle``; return its size and sha256 (zipfile checks the CRC at the end)."""
    digest = hashlib.sha256()
    size = 0
    with wheel.open(info) as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            handle.write(chunk)  # type: ignore[attr-defined]
    return size, digest.hexdigest()


def extract_from_wheel(wheel: Path, output_dir: Path) -> list[Path]:
    """Write every artifact and sidecar the wheel hook embedded in ``wheel`` into ``output_dir``,
    byte-identical; return the paths written (archive, then sidecar, per model, sorted by name).

    Raises :class:`ArchiveError` (a :class:`~hatch_detmodel.errors.DetmodelError`) when the wheel is
    unreadable, carries no artifacts, or carries anything that is not a plain, intact artifact.
    """
    wheel, output_dir = Path(wheel), Path(output_dir)
    where = str(wheel)
    try:
        opened = zipfile.ZipFile(wheel)
    except FileNotFoundError:
        raise ArchiveError(f"{where}: not found; give the path of a .whl file") from None
    except IsADirectoryError:
        raise ArchiveError(f"{where}: is a folder; give the path of a .whl file") from None
    except zipfile.BadZipFile:
        raise ArchiveError(f"{where}: not a wheel (not a readable zip archive)") from None
    except OSError as error:
        raise ArchiveError(f"{where}: cannot be read ({error.strerror})") from None
    with opened:
        pairs = embedded_artifacts(opened, where)
        if not pairs:
            raise ArchiveError(
                f"{where}: carries no model-definition artifacts (nothing under `*.dist-info/"
                f"{'/'.join(EMBEDDED_FOLDER)}/`). Build the wheel with the hook switched on "
                "([tool.hatch.build.targets.wheel.hooks.detmodel]) and without `embed = false`."
            )
        if output_dir.exists() and not output_dir.is_dir():
            raise ArchiveError(f"{output_dir}: is a file; give a folder to write the artifacts into")
        written: list[Path] = []
        try:
            os.makedirs(output_dir, exist_ok=True)
            with Staging() as staging:
                for pair in pairs:
                    record = _archive_record(opened, pair, where)
                    archive_path = output_dir / pair.name
                    size, sha256 = _copy_member(opened, pair.archive, staging.create(archive_path).handle)
                    if (size, sha256) != (record.size, record.sha256):
                        raise ArchiveError(
                            f"{where}!{pair.archive.filename}: {size:,} bytes with sha256 {sha256}, but its sidecar "
                            f"records {record.size:,} bytes with sha256 {record.sha256}; the wheel was altered"
                        )
                    sidecar_path = output_dir / pair.sidecar.filename.rsplit("/", 1)[1]
                    _copy_member(opened, pair.sidecar, staging.create(sidecar_path).handle)
                    written += [archive_path, sidecar_path]
        # RuntimeError: zipfile's answer to an encrypted member; NotImplementedError: an unknown compression
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, RuntimeError) as error:
            raise ArchiveError(f"{where}: damaged or unsupported zip member ({error})") from None
        except OSError as error:
            raise ArchiveError(f"{where}: cannot be read, or {output_dir} cannot be written ({error})") from None
    return written
