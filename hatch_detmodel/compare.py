"""Comparing model definitions: ``diff A B`` and ``verify --source``.

Either side of a comparison is an artifact (read and verified) or a project folder (rebuilt in
memory, see :mod:`hatch_detmodel.rebuild`); both come down to a :class:`Manifest`, so one function
compares them: files added, removed and changed, then every other manifest field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .config import load_project
from .errors import ConfigError
from .manifest import ArchiveRecord, FileRecord, Manifest
from .pipeline import Reporter
from .reader import DEFAULT_LIMITS, ArtifactReport, Limits, Problem, ProgressCallback, VerificationFailed, read_artifact
from .rebuild import rebuild

__all__ = [
    "Comparison",
    "DiffResult",
    "FieldChange",
    "FileChange",
    "Side",
    "SourceCheck",
    "check_source",
    "compare_manifests",
    "diff",
    "load_sides",
]

#: Fields a rebuild from the same commit may legitimately change: not failures of ``verify --source``.
_INCIDENTAL = ("builder.", "source_date_epoch")


@dataclass(frozen=True)
class FileChange:
    path: str
    status: str  # "added", "removed", "changed"
    a: FileRecord | None
    b: FileRecord | None

    def to_json(self) -> dict[str, Any]:
        def side(record: FileRecord | None) -> dict[str, Any] | None:
            return None if record is None else {"size": record.size, "mode": record.mode, "sha256": record.sha256}

        return {"path": self.path, "status": self.status, "a": side(self.a), "b": side(self.b)}


@dataclass(frozen=True)
class FieldChange:
    field: str  # dotted, e.g. "project.version", "trial.bases"
    a: Any
    b: Any

    def to_json(self) -> dict[str, Any]:
        return {"field": self.field, "a": self.a, "b": self.b}


@dataclass(frozen=True)
class Comparison:
    """One model definition on each side."""

    model: str
    files: tuple[FileChange, ...]
    fields: tuple[FieldChange, ...]

    @property
    def same(self) -> bool:
        return not self.files and not self.fields

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "same": self.same,
            "added": [c.to_json() for c in self.files if c.status == "added"],
            "removed": [c.to_json() for c in self.files if c.status == "removed"],
            "changed": [c.to_json() for c in self.files if c.status == "changed"],
            "fields": [c.to_json() for c in self.fields],
        }


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key in sorted(value):
            _flatten(value[key], f"{prefix}.{key}" if prefix else key, out)
    else:
        out[prefix] = value


def _fields(manifest: Manifest) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in manifest.to_json().items():
        if key != "files":
            _flatten(value, key, out)
    return out


def compare_manifests(a: Manifest, b: Manifest) -> Comparison:
    """Files added (only in B), removed (only in A), changed (hash or mode), then other fields."""
    old = {f.path: f for f in a.files}
    new = {f.path: f for f in b.files}
    changes: list[FileChange] = []
    for path in sorted(old.keys() | new.keys(), key=lambda p: p.encode("utf-8")):
        before, after = old.get(path), new.get(path)
        if before is None:
            changes.append(FileChange(path, "added", None, after))
        elif after is None:
            changes.append(FileChange(path, "removed", before, None))
        elif (before.sha256, before.mode, before.size) != (after.sha256, after.mode, after.size):
            changes.append(FileChange(path, "changed", before, after))
    fa, fb = _fields(a), _fields(b)
    fields = tuple(
        FieldChange(name, fa.get(name), fb.get(name)) for name in sorted(fa.keys() | fb.keys()) if fa.get(name) != fb.get(name)
    )
    model = a.model if a.model == b.model else f"{a.model} → {b.model}"
    return Comparison(model, tuple(changes), fields)


@dataclass(frozen=True)
class Side:
    """One model definition to compare, from an artifact or a project folder."""

    label: str  # the path as given
    kind: str  # "artifact" or "project"
    model: str
    manifest: Manifest
    archive: ArchiveRecord | None  # the artifact's (or, for a project, what the build would write)


def load_sides(
    path: str | os.PathLike[str],
    *,
    model: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    reporter: Reporter | None = None,
    on_progress: ProgressCallback | None = None,
) -> list[Side]:
    """A folder is a project (each model rebuilt in memory); anything else is an artifact, which
    must verify — comparing a manifest that does not describe its archive would mislead."""
    label = os.fspath(path)
    if Path(path).is_dir():
        project = load_project(path)
        return [
            Side(label, "project", built.model, built.manifest, built.archive)
            for built in rebuild(project, project.select(model), reporter=reporter)
        ]
    report = read_artifact(path, limits, on_progress=on_progress)
    if not report.ok:
        raise VerificationFailed(report, "; it cannot be compared")
    manifest = report.require_manifest()
    if model is not None and manifest.model != model:
        raise ConfigError(f"{label}: holds model `{manifest.model}`, not `{model}`; drop --model or pass another artifact")
    return [Side(label, "artifact", manifest.model, manifest, report.archive)]


@dataclass(frozen=True)
class DiffResult:
    a: str
    b: str
    comparisons: tuple[Comparison, ...]
    only_in_a: tuple[str, ...]  # model names
    only_in_b: tuple[str, ...]

    @property
    def same(self) -> bool:
        return not self.only_in_a and not self.only_in_b and all(c.same for c in self.comparisons)

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "same": self.same,
            "models": [c.to_json() for c in self.comparisons],
            "only_in_a": list(self.only_in_a),
            "only_in_b": list(self.only_in_b),
        }


def diff(a: Sequence[Side], b: Sequence[Side], label_a: str, label_b: str) -> DiffResult:
    """Pair the sides' models (one each: with each other, whatever their names; else by name)."""
    if len(a) == 1 and len(b) == 1:
        return DiffResult(label_a, label_b, (compare_manifests(a[0].manifest, b[0].manifest),), (), ())
    by_a = {side.model: side for side in a}
    by_b = {side.model: side for side in b}
    if len(a) == 1 and a[0].model in by_b:
        by_b = {a[0].model: by_b[a[0].model]}
    elif len(b) == 1 and b[0].model in by_a:
        by_a = {b[0].model: by_a[b[0].model]}
    shared = sorted(by_a.keys() & by_b.keys())
    return DiffResult(
        label_a,
        label_b,
        tuple(compare_manifests(by_a[name].manifest, by_b[name].manifest) for name in shared),
        tuple(sorted(by_a.keys() - by_b.keys())),
        tuple(sorted(by_b.keys() - by_a.keys())),
    )


@dataclass(frozen=True)
class SourceCheck:
    """``verify --source``: the artifact against a rebuild of the project it claims to come from."""

    project: str
    model: str
    content_digest: str  # of the rebuild
    same_content: bool
    byte_identical: bool
    comparison: Comparison
    problems: tuple[Problem, ...]
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "model": self.model,
            "content_digest": self.content_digest,
            "same_content": self.same_content,
            "byte_identical": self.byte_identical,
            "differences": self.comparison.to_json(),
            "problems": [p.to_json() for p in self.problems],
            "notes": list(self.notes),
        }


def check_source(
    report: ArtifactReport, project_dir: str | os.PathLike[str], reporter: Reporter | None = None
) -> SourceCheck:
    """Rebuild the artifact's model from ``project_dir`` (with the artifact's own timestamp, so the
    bytes can match too) and compare: the content digest must match, and so must project, model,
    entrypoint and trial. A different builder version is only a note."""
    manifest = report.require_manifest()
    project = load_project(project_dir)
    try:
        models = project.select(manifest.model)
    except ConfigError:
        if len(project.models) != 1:
            raise
        models = project.models  # a project with one model: its name may have changed
    (built,) = rebuild(project, models, epoch=manifest.source_date_epoch, reporter=reporter)
    comparison = compare_manifests(manifest, built.manifest)
    label = os.fspath(project_dir)
    problems: list[Problem] = []
    notes: list[str] = []
    for change in comparison.files:
        record = change.a or change.b
        assert record is not None
        what = {
            "added": f"is in {label} but not in the artifact",
            "removed": f"is in the artifact but no longer in {label}",
            "changed": f"differs: {_size(change.a)} in the artifact, {_size(change.b)} in {label}",
        }[change.status]
        problems.append(Problem(f"source-{change.status}", change.path, f"{report.path}: {change.path}: {what}"))
    for field_change in comparison.fields:
        text = f"{report.path}: `{field_change.field}` is {field_change.a!r} in the artifact, {field_change.b!r} from {label}"
        if field_change.field.startswith(_INCIDENTAL):
            notes.append(text)
        elif field_change.field != "content_digest":  # reported below, once
            problems.append(Problem("source-field", None, text))
    same_content = manifest.content_digest == built.manifest.content_digest
    if not same_content:
        problems.append(Problem("source-content", None, (
            f"{report.path}: content digest {manifest.content_digest} does not match a rebuild from {label} "
            f"({built.manifest.content_digest}); the artifact is not what this source builds"
        )))
    return SourceCheck(
        project=label,
        model=built.model,
        content_digest=built.manifest.content_digest,
        same_content=same_content,
        byte_identical=built.archive.sha256 == report.archive.sha256,
        comparison=comparison,
        problems=tuple(problems),
        notes=tuple(notes),
    )


def _size(record: FileRecord | None) -> str:
    return "absent" if record is None else f"{record.size:,} bytes"
