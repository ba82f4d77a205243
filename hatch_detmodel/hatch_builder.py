"""The ``detmodel`` Hatch build target: a thin layer over :func:`hatch_detmodel.pipeline.build_models`.

Each model definition is one of the target's *versions*, so ``hatch build -t detmodel`` builds and
prints every artifact, and ``hatch build -t detmodel:cifar`` builds one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from hatchling.builders.plugin.interface import BuilderInterface

from .config import ProjectConfig, ProjectIdentity, load_project
from .errors import DetmodelError
from .pipeline import Reporter, build_models, remove_artifacts

__all__ = ["DetmodelBuilder", "HatchReporter"]


class HatchReporter(Reporter):
    def __init__(self, app: Any) -> None:
        self.app = app

    def info(self, message: str) -> None:
        self.app.display_debug(message)

    def warning(self, message: str) -> None:
        self.app.display_warning(f"hatch-detmodel: {message}")


class DetmodelBuilder(BuilderInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "detmodel"

    def _project(self) -> ProjectConfig:
        try:
            identity = ProjectIdentity(self.metadata.core.name, self.metadata.version)
            return load_project(self.root, identity)
        except DetmodelError as error:
            self.app.abort(f"hatch-detmodel: {error}")
            raise  # abort exits; this keeps type checkers honest

    def get_version_api(self) -> dict[str, Callable[..., str]]:
        project = self._project()
        return {model.name: self._builder_for(model.name) for model in project.models}

    def _builder_for(self, name: str) -> Callable[..., str]:
        def build_one(directory: str, **_build_data: Any) -> str:
            try:
                project = self._project()
                (artifact,) = build_models(
                    project, Path(directory), project.select(name), HatchReporter(self.app)
                )
            except DetmodelError as error:
                self.app.abort(f"hatch-detmodel: {error}")
                raise
            except OSError as error:  # a disk or permission error not worded by the library: still no traceback
                where = f"{error.filename}: " if error.filename else ""
                self.app.abort(f"hatch-detmodel: {where}{error.strerror or error}")
                raise
            except KeyboardInterrupt:
                self.app.abort("hatch-detmodel: interrupted; no partial artifact was left behind", code=130)
                raise
            # hatch prints the returned archive path; the sidecar beside it is printed the same way.
            sidecar = str(artifact.sidecar)
            self.app.display_info(os.path.relpath(sidecar, self.root) if sidecar.startswith(self.root) else sidecar)
            return str(artifact.archive)

        return build_one

    def clean(self, directory: str, versions: list[str]) -> None:
        """Remove only this target's artifacts (and temporary files a killed build left)."""
        project = self._project()
        stems = [project.artifact_stem(m) for m in project.models if not versions or m.name in versions]
        remove_artifacts(Path(directory), stems)
