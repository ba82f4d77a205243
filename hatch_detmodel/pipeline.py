"""The one build pipeline every front end calls: configuration → selection → entrypoint check →
size check → archive and manifest → atomic publication."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import sys
import threading
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple, Sequence

from . import __version__
from .archive import GzipWriter, MemberWriter, Writable, write_end, write_member_pieces
from .config import ModelConfig, ProjectConfig, ProjectIdentity, load_project, normalize_name
from .entrypoint import EntrypointCheck, check_entrypoint, may_generate_files
from .errors import SelectionError, SizeLimitError
from .manifest import ArchiveRecord, FileRecord, Manifest
from .output import Staging
from .reproducible import source_date_epoch
from .secret_guard import SecretGuard
from .selection import MANIFEST_NAME, SelectedFile, Selection, select_files
from .shim import GeneratedFile, package_name_for

__all__ = [
    "ArchiveWriter",
    "BuiltArtifact",
    "HashingWriter",
    "ModelPlan",
    "Reporter",
    "build",
    "build_models",
    "collector_paused",
    "determined_size",
    "plan_model",
    "remove_artifacts",
    "write_archive",
]

BUILDER_NAME = "hatch-detmodel"
#: Bytes of small files a build reads while selecting them, all models together (see select_files).
READ_AHEAD = 8 << 20
#: A manifest of at least this many bytes (one compression job, about 4,000 files) is compressed at
#: MANIFEST_LEVEL when the configured level is higher: it is mostly SHA-256 hex digits, which level 5
#: shrinks only 4 % more than level 1 at twice the time (20,000 files: 2.7 MB, 78 ms against 37 ms), and
#: it is compressed last, while the build waits. A smaller one costs little at any level.
LARGE_MANIFEST = 1 << 19
MANIFEST_LEVEL = 1
ARCHIVE_SUFFIX = ".detmodel.tgz"
SIDECAR_SUFFIX = ".detmodel.json"


_pause_lock = threading.Lock()
_pauses = 0  # builds running in this process that hold the collector paused
_resume_collector = False  # whether it was running before the first of them


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a build runs: the build makes tens of thousands
    of small objects and no reference cycles, and the collector's passes over them (repeated as the
    objects survive) were a third of a 20,000-file selection. Builds running at once in threads of
    one process share the pause: the collector resumes, if it ran before, when the last one ends."""
    global _pauses, _resume_collector
    with _pause_lock:
        if _pauses == 0:
            _resume_collector = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _resume_collector:
                gc.enable()


class Reporter:
    """Where the pipeline's messages go; front ends subclass it (hatch's ``app.display_*``, the CLI)."""

    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        print(f"warning: {message}", file=sys.stderr)


class BuiltArtifact(NamedTuple):
    model: str
    archive: Path
    sidecar: Path
    manifest: Manifest
    archive_record: ArchiveRecord


class ModelPlan(NamedTuple):
    """Everything known before any byte is written: the files, the trial and the manifest skeleton."""

    model: ModelConfig
    selection: Selection
    check: EntrypointCheck
    files: tuple[SelectedFile | GeneratedFile, ...]  # the selection plus generated files, sorted
    skeleton: Manifest  # every field but the files, whose hashes are known once the archive is written


def determined_size(size: int) -> int:
    """Determined's accounting for one file: its base64 payload rounded as ``3 * ceil(n / 3)``."""
    return 3 * -(-size // 3)


def root_package_name(project: ProjectConfig, model: ModelConfig) -> str:
    """The import name of the root package for the ``:Class`` form: the model-definition directory's
    name, or the project's normalized name when the model definition is the project root (a clone's
    folder name must not change the artifact)."""
    if model.root == project.root:
        return package_name_for(normalize_name(project.identity.name))
    return package_name_for(model.root.name)


def plan_model(
    project: ProjectConfig,
    model: ModelConfig,
    output_dir: Path | None,
    epoch: int,
    extra_output_dirs: Sequence[Path] = (),
    started: ArchiveWriter | None = None,
    read_ahead: int = 0,
) -> ModelPlan:
    """Select, check and size one model definition: selection reads up to ``read_ahead`` bytes of small
    files as it goes (see :func:`select_files`), and ``started`` is handed the files as they are selected."""
    selection = select_files(model, output_dir, extra_output_dirs, read_ahead, started.take if started else None)
    check = check_entrypoint(model.entrypoint, selection, root_package_name(project, model))
    if check.generated:
        # a generated module sorts among the selected files: never with a started archive (see may_generate_files)
        if started is not None and started.written:
            raise AssertionError(f"{model.field}: an archive was started for an entrypoint that adds a module")
        everything: list[SelectedFile | GeneratedFile] = [*selection.files, *check.generated]
        files: tuple[SelectedFile | GeneratedFile, ...] = tuple(sorted(everything, key=lambda f: f.path.encode("utf-8")))
    else:
        files = selection.files  # already in byte order
    skeleton = Manifest(
        project_name=project.identity.name,
        project_version=project.identity.version,
        model=model.name,
        entrypoint=model.entrypoint if isinstance(model.entrypoint, str) else list(model.entrypoint),
        trial=check.trial.to_json() if check.trial is not None else None,
        files=(),
        source_date_epoch=epoch,
        builder_name=BUILDER_NAME,
        builder_version=__version__,
        determined_entrypoint=check.determined_entrypoint,
        command=check.command,
    )
    if model.max_size is not None:
        # Checked before anything is written: hashes have a fixed width, so the manifest's length is
        # known now. Its exact length (placeholder hashes) is only needed when an upper bound would not fit.
        files_size = _determined_total(files)
        if files_size + determined_size(_manifest_bound(skeleton, files)) > model.max_size:
            _check_size(model, selection, files_size + determined_size(_manifest_size(skeleton, files)))
    return ModelPlan(model=model, selection=selection, check=check, files=files, skeleton=skeleton)


def _manifest_size(skeleton: Manifest, files: Sequence[SelectedFile | GeneratedFile]) -> int:
    """The manifest's exact length: the same records with placeholder hashes of the same width."""
    placeholder = "0" * 64
    records = tuple(
        FileRecord(f.path, len(f.data), "644", placeholder, generated=True) if isinstance(f, GeneratedFile)
        else FileRecord(f.path, f.size, f.mode, placeholder)
        for f in files
    )
    return skeleton.with_files(records).to_pieces()[0]  # the length the manifest member is written with


def _manifest_bound(skeleton: Manifest, files: Sequence[SelectedFile | GeneratedFile]) -> int:
    """At least the manifest's length: each file's record is at most 150 bytes of keys, mode, hash,
    size and separators around its path, and a path at most doubles when JSON-escaped (names with
    control characters or backslashes are refused)."""
    paths = "".join([f.path for f in files]).encode("utf-8")
    return len(skeleton.to_bytes()) + 150 * len(files) + 2 * len(paths)


def _determined_total(files: Sequence[SelectedFile | GeneratedFile]) -> int:
    """The sum of :func:`determined_size` over ``files``: the sizes, plus what rounds each up to a
    multiple of 3 (two list passes take half the time of a call per file: 20,000 files, 8 → 4 ms)."""
    sizes = [len(f.data) if isinstance(f, GeneratedFile) else f.size for f in files]
    return sum(sizes) + sum([-size % 3 for size in sizes])


def _check_size(model: ModelConfig, selection: Selection, total: int) -> None:
    """Refuse a model definition over Determined's limit (``total`` as Determined counts it), listing
    the largest files with the ignore lines that would leave them out."""
    if model.max_size is None or total <= model.max_size:
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


class HashingWriter:
    """Counts and hashes the archive bytes on their way out (to a file, or nowhere), so the archive is
    never re-read to learn its sha256."""

    def __init__(self, handle: Writable | None = None) -> None:
        self.handle = handle
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        self.sha256.update(data)
        self.size += len(data)
        if self.handle is not None:
            self.handle.write(data)
        return len(data)


class _HeldOutput:
    """Where an archive's compressed bytes go: held in memory until :meth:`release` names the output
    (``None``: they are only hashed), then straight to it."""

    def __init__(self) -> None:
        self._held: list[bytes] | None = []
        self._out: Writable | None = None

    def write(self, data: bytes | memoryview) -> int:
        if self._held is not None:
            self._held.append(bytes(data))
        elif self._out is not None:
            self._out.write(data)
        return len(data)

    def release(self, out: Writable | None) -> None:
        held, self._held, self._out = self._held or [], None, out
        for part in held:
            self.write(part)


class ArchiveWriter:
    """One archive on its way out: the hash of its bytes, its gzip stream and the members written so far.

    A build starts one while selection runs, for the files selection has already read (so compression
    runs beside the walk); its bytes wait in memory, so nothing reaches the output folder before the
    whole plan is known good. :meth:`finish` then sends them to the file and writes the rest."""

    def __init__(self, model: ModelConfig, epoch: int, guard: SecretGuard) -> None:
        # Held apart from the writer, not by it: no reference cycle, so the writer and its tens of
        # thousands of records are freed as soon as the build drops them, without a collector pass.
        self._output = _HeldOutput()
        self.sink = HashingWriter(self._output)
        self.gzip = GzipWriter(self.sink, model.compression_level)
        self.scanner = guard.scanner()
        self.members = MemberWriter(self.gzip, epoch, self.scanner)
        self.written = 0  # how many of the plan's files are written (always the first ones)
        self._taking = True  # still writing files as selection hands them over

    def take(self, files: list[SelectedFile], read_ahead: dict[str, bytes]) -> None:
        """Selection's next files, in archive order, and the bytes it read: written up to the first it
        did not read (that one and all after it wait for the plan, to keep the order)."""
        if self._taking:
            count = self.members.write(files, read_ahead, read=False)
            self.written += count
            self._taking = count == len(files)

    def finish(self, plan: ModelPlan, out: Writable | None, name: str) -> tuple[Manifest, ArchiveRecord]:
        """Write the rest of ``plan``'s archive to ``out`` (``None``: only hash it); return its manifest and record."""
        try:
            self._taking = False
            self._output.release(out)
            self.members.write(plan.files[self.written :], plan.selection.read_ahead)
            found = self.scanner.found
            if found:
                listing = "\n  ".join(found[path] for path in sorted(found))
                raise SelectionError(f"{plan.model.root}: cannot pack the model definition:\n  {listing}", found)
            manifest = plan.skeleton.with_files(tuple(self.members.records))
            epoch = plan.skeleton.source_date_epoch
            size, pieces = manifest.to_pieces()
            if size >= LARGE_MANIFEST:
                self.gzip.set_level(min(self.gzip.level, MANIFEST_LEVEL))
            write_member_pieces(self.gzip, MANIFEST_NAME, size, pieces, epoch)
            write_end(self.gzip)
            self.gzip.close()
        except BaseException:
            self.abort()  # the caller discards the partial output
            raise
        return manifest, ArchiveRecord(name=name, size=self.sink.size, sha256=self.sink.sha256.hexdigest())

    def abort(self) -> None:
        """Stop the compression workers (after an error, or a plan that failed)."""
        self.gzip.abort()


def write_archive(
    plan: ModelPlan, out: Writable | None, name: str, started: ArchiveWriter | None = None
) -> tuple[Manifest, ArchiveRecord]:
    """Stream a plan's archive to ``out`` (``None``: only hash it), continuing ``started`` if the build
    began it during selection; return its manifest and record."""
    writer = started or ArchiveWriter(plan.model, plan.skeleton.source_date_epoch, plan.selection.guard)
    return writer.finish(plan, out, name)


def _write_model(
    plan: ModelPlan, staging: Staging, output_dir: Path, stem: str, started: ArchiveWriter | None
) -> BuiltArtifact:
    archive_path = output_dir / f"{stem}{ARCHIVE_SUFFIX}"
    sidecar_path = output_dir / f"{stem}{SIDECAR_SUFFIX}"
    manifest, archive_record = write_archive(plan, staging.create(archive_path).handle, archive_path.name, started)
    sidecar = staging.create(sidecar_path).handle
    for piece in manifest.sidecar_pieces(archive_record):
        sidecar.write(piece)
    return BuiltArtifact(plan.model.name, archive_path, sidecar_path, manifest, archive_record)


def build_models(
    project: ProjectConfig,
    output_dir: Path,
    models: Sequence[ModelConfig],
    reporter: Reporter | None = None,
    extra_output_dirs: Sequence[Path] = (),
) -> list[BuiltArtifact]:
    """Plan every model first (so a bad one fails before anything is written), then write them all
    to temporary files and publish them together. ``extra_output_dirs`` are other folders the caller
    copies the artifacts into: like ``output_dir``, they are never packed."""
    with collector_paused():
        return _build_models(project, Path(output_dir).resolve(), models, reporter or Reporter(), extra_output_dirs)


def _build_models(
    project: ProjectConfig, output_dir: Path, models: Sequence[ModelConfig], reporter: Reporter,
    extra_output_dirs: Sequence[Path],
) -> list[BuiltArtifact]:
    epoch = source_date_epoch()
    # A single model's archive starts while its files are selected (several would each hold their
    # compressed bytes and workers until all are planned), unless checking the entrypoint may add a
    # generated module somewhere among them. The read-ahead budget is shared by all models.
    started: list[ArchiveWriter | None] = []
    try:
        plans: list[ModelPlan] = []
        for model in models:
            early = len(models) == 1 and not may_generate_files(model.entrypoint)
            started.append(ArchiveWriter(model, epoch, SecretGuard(model.allow_secrets, model.detignore)) if early else None)
            plans.append(plan_model(
                project, model, output_dir, epoch, extra_output_dirs, started[-1], READ_AHEAD // len(models)
            ))
        for plan in plans:
            for warning in plan.check.warnings:
                reporter.warning(f"{plan.model.field}.entrypoint: {warning}")
            for unused in plan.selection.guard.unused_allowances(f.path for f in plan.selection.files):
                reporter.warning(f"{plan.model.field}.{unused}; check the path or remove the entry")
        os.makedirs(output_dir, exist_ok=True)
        built: list[BuiltArtifact] = []
        with Staging() as staging:
            for plan, writer in zip(plans, started):
                reporter.info(f"Packing `{plan.model.name}`: {len(plan.selection.files)} files from {plan.model.root}")
                built.append(_write_model(plan, staging, output_dir, project.artifact_stem(plan.model), writer))
        return built
    except BaseException:
        for writer in started:
            if writer is not None:
                writer.abort()
        raise


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
    # Paused until the artifacts, with their tens of thousands of file records, are freed (they are
    # never bound to a name here): the collector resuming has nothing of the build to look at.
    with collector_paused():
        return [
            path
            for artifact in build_models(project, Path(output_dir), project.select(model), reporter)
            for path in (artifact.archive, artifact.sidecar)
        ]


def remove_artifacts(folder: Path, stems: Iterable[str]) -> list[Path]:
    """Remove the archives and sidecars named after ``stems`` (and temporary files a killed build left)."""
    if not folder.is_dir():
        return []
    ours = {f"{stem}{suffix}" for stem in stems for suffix in (ARCHIVE_SUFFIX, SIDECAR_SUFFIX)}
    removed: list[Path] = []
    for path in sorted(folder.iterdir()):
        # Staging's temporary names are `.<final name>.<random>.tmp`
        leftover = path.name.endswith(".tmp") and any(path.name.startswith(f".{name}.") for name in ours)
        if (path.name in ours or leftover) and path.is_file():
            path.unlink()
            removed.append(path)
    return removed
