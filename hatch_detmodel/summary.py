"""``inspect``: what an artifact holds, told from its manifest, with sizes as Determined counts them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .config import DEFAULT_MAX_SIZE
from .manifest import FileRecord
from .pipeline import determined_size
from .reader import ArtifactReport

__all__ = ["Summary", "summarize"]


@dataclass(frozen=True)
class Summary:
    artifact: str
    archive_name: str
    archive_size: int
    archive_sha256: str
    project: str
    version: str
    model: str
    entrypoint: str | list[str]  # as declared
    determined_entrypoint: str | list[str]  # what the experiment configuration needs
    trial: Mapping[str, Any] | None  # None for a command entrypoint
    files: tuple[FileRecord, ...]
    content_size: int  # sum of the packed files
    determined_size: int  # Determined's accounting, the manifest member included
    limit: int
    content_digest: str
    builder: str
    source_date_epoch: int
    largest: tuple[FileRecord, ...]
    verified: bool
    problems: int

    def to_json(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact,
            "archive": {"name": self.archive_name, "size": self.archive_size, "sha256": self.archive_sha256},
            "project": {"name": self.project, "version": self.version},
            "model": self.model,
            "entrypoint": self.entrypoint,
            "determined_entrypoint": self.determined_entrypoint,
            "trial": dict(self.trial) if self.trial is not None else None,
            "file_count": len(self.files),
            "content_size": self.content_size,
            "determined_size": self.determined_size,
            "determined_limit": self.limit,
            "content_digest": self.content_digest,
            "builder": self.builder,
            "source_date_epoch": self.source_date_epoch,
            "largest": [f.to_json() for f in self.largest],
            "files": [f.to_json() for f in self.files],
            "verified": self.verified,
            "problems": self.problems,
        }


def summarize(report: ArtifactReport, top: int = 10) -> Summary:
    """Summarize a read artifact; raises :class:`ArchiveError` when it has no readable manifest."""
    manifest = report.require_manifest()
    files = manifest.files
    accounted = sum(determined_size(f.size) for f in files) + determined_size(report.manifest_size)
    return Summary(
        artifact=str(report.path),
        archive_name=report.archive.name,
        archive_size=report.archive.size,
        archive_sha256=report.archive.sha256,
        project=manifest.project_name,
        version=manifest.project_version,
        model=manifest.model,
        entrypoint=manifest.entrypoint,
        determined_entrypoint=manifest.determined_entrypoint or manifest.entrypoint,
        trial=manifest.trial,
        files=files,
        content_size=sum(f.size for f in files),
        determined_size=accounted,
        limit=DEFAULT_MAX_SIZE,
        content_digest=manifest.content_digest,
        builder=f"{manifest.builder_name} {manifest.builder_version}",
        source_date_epoch=manifest.source_date_epoch,
        largest=tuple(sorted(files, key=lambda f: (-f.size, f.path))[:top]),
        verified=report.ok,
        problems=len(report.problems),
    )
