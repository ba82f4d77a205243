"""Rebuilding in memory: the manifest and archive hash a build of a project would produce, with
nothing written anywhere.

``verify --source`` and ``diff`` on project folders use this. It runs the pipeline's own stages
(:func:`~hatch_detmodel.pipeline.plan_model`, then the archive writer) but sends the compressed
bytes to a hash instead of a file (``write_archive(plan, None, …)``), so nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .config import ModelConfig, ProjectConfig
from .manifest import ArchiveRecord, Manifest
from .pipeline import ARCHIVE_SUFFIX, READ_AHEAD, Reporter, collector_paused, plan_model, write_archive
from .reproducible import source_date_epoch

__all__ = ["Rebuilt", "rebuild"]


@dataclass(frozen=True)
class Rebuilt:
    model: str
    manifest: Manifest
    archive: ArchiveRecord  # the name the build would give it, and the sha256 of its bytes


def rebuild(
    project: ProjectConfig,
    models: Sequence[ModelConfig],
    *,
    epoch: int | None = None,
    output_dir: Path | None = None,
    reporter: Reporter | None = None,
) -> list[Rebuilt]:
    """What building ``models`` would produce. ``output_dir`` is where that build would write (it is
    pruned from the selection as a real build prunes it; default ``dist/``); ``epoch`` defaults to
    ``SOURCE_DATE_EPOCH`` as for a build — pass an artifact's own to reproduce its bytes."""
    reporter = reporter or Reporter()
    output = (output_dir or project.root / "dist").resolve()
    epoch = source_date_epoch() if epoch is None else epoch
    results: list[Rebuilt] = []
    with collector_paused():
        plans = [plan_model(project, model, output, epoch, read_ahead=READ_AHEAD // max(1, len(models))) for model in models]
        for plan in plans:
            for warning in plan.check.warnings:
                reporter.warning(f"{plan.model.field}.entrypoint: {warning}")
            manifest, record = write_archive(plan, None, f"{project.artifact_stem(plan.model)}{ARCHIVE_SUFFIX}")
            results.append(Rebuilt(plan.model.name, manifest, record))
    return results
