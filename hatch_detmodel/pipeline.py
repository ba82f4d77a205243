"""The one build pipeline every front end calls: configuration → selection → entrypoint check →
size check → archive and manifest → atomic publication."""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from . import __version__
from .archive import GzipWriter, write_bytes_member, write_end, write_members
from .config import ModelConfig, ProjectConfig, ProjectIdentity, load_project
from .entrypoint import EntrypointCheck, check_entrypoint
from .errors import SizeLimitError
from .manifest import ArchiveRecord, FileRecord, Manifest
from .output import Staging
from .reproducible import source_date_epoch
from .selection import MANIFEST_NAME, Selection, select_files

__all__ = ["BuiltArtifact", "Reporter", "build", "build_models", "determined_size", "plan_model"]

BUILDER_NAME = "hatch-detmodel"
ARCHIVE_SUFFIX = ".detmodel.tgz"
SIDECAR_SUFFIX = ".detmodel.json"


class Reporter:
    """Where the pipeline's messages go; front ends subclass it (hatch's ``app.display_*``, the CLI)."""

    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        print(f"warning: {message}", file=sys.stderr)


@dataclass(frozen=True)
class BuiltArtifact:
    model: str
    archive: Path
    sidecar: Path
    manifest: Manifest
    archive_record: ArchiveRecord


@dataclass(frozen=True)
class ModelPlan:
    """Everything known before any byte is written: the files, the trial and the manifest skeleton."""

    model: ModelConfig
    selection: Selection
    check: EntrypointCheck
    skeleton: Manifest  # files carry placeholder hashes until the archive is written


def determined_size(size: int) -> int:
    """Determined's accounting for one file: its base64 payload rounded as ``3 * ceil(n / 3)``."""
    return 3 * -(-size // 3)


def plan_model(project: ProjectConfig, model: ModelConfig, output_dir: Path | None, epoch: int) -> ModelPlan:
    selection = select_files(model, output_dir)
    check = check_entrypoint(model.entrypoint, selection)
    placeholder = "0" * 64
    skeleton = Manifest(
        project_name=project.identity.name,
        project_version=project.identity.version,
        model=model.name,
        entrypoint=model.entrypoint,
        trial=check.trial.to_json(),
        files=tuple(FileRecord(f.path, f.size, f.mode, placeholder) for f in selection.files),
        source_date_epoch=epoch,
        builder_name=BUILDER_NAME,
        builder_version=__version__,
    )
    _check_size(model, selection, len(skeleton.to_bytes()))
    return ModelPlan(model=model, selection=selection, check=check, skeleton=skeleton)


def _check_size(model: ModelConfig, selection: Selection, manifest_size: int) -> None:
    if model.max_size is None:
        return
    total = sum(determined_size(f.size) for f in selection.files) + determined_size(manifest_size)
    if total <= model.max_size:
        return
    largest = sorted(selection.files, key=lambda f: (-f.size, f.path))[:10]
    width = max(len(f"{f.size:,}") for f in largest) if largest else 0
    lines = "\n".join(
        f"  {f.size:>{width},} bytes  {f.path}    (.detignore line: {selection.selector.suggest_line(f.path)})"
        for f in largest
    )
    raise SizeLimitError(
        f"{model.root}: model definition `{model.name}` is {total:,} bytes as Determined counts them, over the "
        f"limit of {model.max_size:,} bytes (field `{model.field}.max-size`). Largest files:\n{lines}\n"
        f"Add lines like these to {model.detignore} (data and checkpoints belong in storage, not the model definition)."
    )


class _HashingWriter:
    """Counts and hashes what goes to the staged file, so the archive is never re-read."""

    def __init__(self, handle: object) -> None:
        self.handle = handle
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.handle.write(data)  # type: ignore[attr-defined, no-any-return]


def _write_model(plan: ModelPlan, staging: Staging, output_dir: Path, stem: str) -> BuiltArtifact:
    archive_path = output_dir / f"{stem}{ARCHIVE_SUFFIX}"
    sidecar_path = output_dir / f"{stem}{SIDECAR_SUFFIX}"
    staged = staging.create(archive_path)
    sink = _HashingWriter(staged.handle)
    gzip = GzipWriter(sink, plan.model.compression_level)  # type: ignore[arg-type]
    epoch = plan.skeleton.source_date_epoch
    records = write_members(plan.selection.files, gzip, epoch)
    manifest = plan.skeleton.with_files(tuple(records))
    write_bytes_member(gzip, MANIFEST_NAME, manifest.to_bytes(), epoch)
    write_end(gzip)
    gzip.close()
    archive_record = ArchiveRecord(name=archive_path.name, size=sink.size, sha256=sink.sha256.hexdigest())
    staging.create(sidecar_path).handle.write(manifest.sidecar_bytes(archive_record))
    return BuiltArtifact(plan.model.name, archive_path, sidecar_path, manifest, archive_record)


def build_models(
    project: ProjectConfig,
    output_dir: Path,
    models: Sequence[ModelConfig],
    reporter: Reporter | None = None,
    on_built: Callable[[BuiltArtifact], None] | None = None,
) -> list[BuiltArtifact]:
    """Plan every model first (so a bad one fails before anything is written), then write them all
    to temporary files and publish them together."""
    reporter = reporter or Reporter()
    output_dir = Path(output_dir).resolve()
    epoch = source_date_epoch()
    plans = [plan_model(project, model, output_dir, epoch) for model in models]
    for plan in plans:
        for warning in plan.check.warnings:
            reporter.warning(f"{plan.model.field}.entrypoint: {warning}")
    os.makedirs(output_dir, exist_ok=True)
    built: list[BuiltArtifact] = []
    with Staging() as staging:
        for plan in plans:
            reporter.info(f"Packing `{plan.model.name}`: {len(plan.selection.files)} files from {plan.model.root}")
            built.append(_write_model(plan, staging, output_dir, project.artifact_stem(plan.model)))
    for artifact in built:
        if on_built is not None:
            on_built(artifact)
    return built


def build(
    project_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    model: str | None = None,
    *,
    identity: ProjectIdentity | None = None,
    reporter: Reporter | None = None,
) -> list[Path]:
    """Build the model-definition artifact(s) of a project; return the paths written (archive, sidecar
    for each model). ``model`` picks one named model; ``identity`` overrides name/version resolution."""
    project = load_project(project_dir, identity)
    built = build_models(project, Path(output_dir), project.select(model), reporter)
    return [path for artifact in built for path in (artifact.archive, artifact.sidecar)]
