"""The ``detmodel`` build hook of the wheel target: every standard wheel build also yields the artifacts.

Switched on by ``[tool.hatch.build.targets.wheel.hooks.detmodel]``. One run of
:func:`~hatch_detmodel.pipeline.build_models` (the packer of the ``detmodel`` target), and the same
bytes go to three places, because each front end keeps a different part of a build:

1. beside the wheel, in the build's output folder (kept by ``hatch build``, ``python -m build``,
   ``uv build``);
2. into the wheel, under ``<dist>-<version>.dist-info/extra_metadata/detmodel/`` (the only place
   ``pip wheel`` keeps, since it moves nothing but the ``.whl``; pypa/pip#11751). Option
   ``embed = false`` turns this off;
3. into ``$HATCH_DETMODEL_OUTPUT_DIR`` when set (hatchling ignores PEP 517 config settings, so an
   environment variable is the only switch a pip user has).

Editable wheels get nothing: they are for development, not for shipping a model definition.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

from .config import ProjectConfig, ProjectIdentity, load_project
from .errors import DetmodelError
from .hatch_builder import HatchReporter
from .output import Staging
from .pipeline import BuiltArtifact, build_models, remove_artifacts
from .selection import Selector

__all__ = [
    "EMBED_FOLDER",
    "OUTPUT_DIR_VARIABLE",
    "DetmodelBuildHook",
    "SdistComparison",
    "compare_with_sdist",
    "copy_artifacts",
]

#: The environment variable naming an extra folder for the artifacts.
OUTPUT_DIR_VARIABLE = "HATCH_DETMODEL_OUTPUT_DIR"
#: Where the artifacts go inside the wheel, relative to ``.dist-info/extra_metadata/``.
EMBED_FOLDER = "detmodel"

_OPTIONS_FIELD = "tool.hatch.build.targets.wheel.hooks.detmodel"
#: Options every hatch build hook accepts; hatch itself reads them.
_HATCH_HOOK_OPTIONS = frozenset({"dependencies", "require-runtime-dependencies", "require-runtime-features", "enable-by-default"})
_OUR_OPTIONS = frozenset({"embed"})


def copy_artifacts(built: Iterable[BuiltArtifact], folder: Path) -> list[Path]:
    """Copy each archive and sidecar into ``folder`` byte for byte, all published together or none."""
    os.makedirs(folder, exist_ok=True)
    written: list[Path] = []
    with Staging() as staging:
        for artifact in built:
            for source in (artifact.archive, artifact.sidecar):
                target = folder / source.name
                staged = staging.create(target)
                with source.open("rb") as handle:
                    shutil.copyfileobj(handle, staged.handle)
                written.append(target)
    return written


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the current folder when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class DetmodelBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "detmodel"

    _embedded: tuple[str, ...] = ()  # archive names this build put into the wheel
    _delivered = False  # set once this build's wheel exists: a later clean is --clean-hooks-after

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if not self._applies_to(version):
            return
        embed = self._embed_option()
        extra_folder = self._extra_output_folder()
        try:
            project = self._project()
            extra = [extra_folder] if extra_folder is not None else []
            built = build_models(project, Path(self.directory), project.models, HatchReporter(self.app), extra)
            copies = copy_artifacts(built, extra_folder) if extra_folder is not None else []
        except DetmodelError as error:
            self.app.abort(f"hatch-detmodel: {error}")
            raise  # abort exits; this keeps type checkers honest
        except OSError as error:  # an output folder that cannot be written: the folder and the reason, no traceback
            self.app.abort(f"hatch-detmodel: cannot write {error.filename or 'the artifacts'}: {error.strerror or error}")
            raise
        for artifact in built:
            self.app.display_info(
                f"hatch-detmodel: wrote {_shown(artifact.archive)} and {artifact.sidecar.name} "
                f"(model `{artifact.model}`, {artifact.manifest.content_digest})"
            )
        if copies:
            self.app.display_info(f"hatch-detmodel: copied them to {extra_folder} (${OUTPUT_DIR_VARIABLE})")
        if embed:
            extra_metadata = build_data.setdefault("extra_metadata", {})
            for artifact in built:
                for path in (artifact.archive, artifact.sidecar):
                    extra_metadata[str(path)] = f"{EMBED_FOLDER}/{path.name}"
        self._embedded = tuple(a.archive.name for a in built) if embed else ()
        self._warn_about_sdist(project, built)

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        self._delivered = version == "standard"
        if not self._embedded:
            return
        wheel = Path(artifact_path)
        dist_info = "-".join(wheel.name.split("-")[:2]) + ".dist-info"
        self.app.display_info(
            f"hatch-detmodel: embedded {', '.join(self._embedded)} and sidecar(s) in {wheel.name} under "
            f"{dist_info}/extra_metadata/{EMBED_FOLDER}/ (write them out with `hatch-detmodel from-wheel`)"
        )

    def clean(self, versions: list[str]) -> None:
        """Remove only this hook's own files from the output folder: the archives and sidecars of this project.

        Not after a build (``--clean-hooks-after``): the artifacts beside the wheel are deliverables like the
        wheel itself, not intermediate files."""
        if self.target_name != "wheel" or (versions and "standard" not in versions) or self._delivered:
            return
        try:
            project = self._project()
        except DetmodelError as error:
            self.app.abort(f"hatch-detmodel: {error}")
            raise
        for path in remove_artifacts(Path(self.directory), [project.artifact_stem(m) for m in project.models]):
            self.app.display_debug(f"hatch-detmodel: removed {_shown(path)}")

    def _applies_to(self, version: str) -> bool:
        if self.target_name != "wheel":
            self.app.display_warning(
                f"hatch-detmodel: the `detmodel` build hook only acts on the wheel target, not `{self.target_name}`; "
                "configure it as [tool.hatch.build.targets.wheel.hooks.detmodel] (for the artifact alone, "
                "`hatch build -t detmodel`)"
            )
            return False
        if version != "standard":
            self.app.display_debug(f"hatch-detmodel: no model-definition artifact for a `{version}` wheel")
            return False
        return True

    def _project(self) -> ProjectConfig:
        # hatchling's metadata, so a dynamic version (or an sdist's PKG-INFO) resolves exactly as in the wheel
        identity = ProjectIdentity(self.metadata.core.name, self.metadata.version)
        return load_project(self.root, identity)

    def _embed_option(self) -> bool:
        unknown = sorted(set(self.config) - _HATCH_HOOK_OPTIONS - _OUR_OPTIONS)
        if unknown:
            self.app.abort(
                f"hatch-detmodel: Field `{_OPTIONS_FIELD}.{unknown[0]}` is not a known option; "
                f"use one of: {', '.join(sorted(_OUR_OPTIONS | _HATCH_HOOK_OPTIONS))}"
            )
        embed = self.config.get("embed", True)
        if not isinstance(embed, bool):
            self.app.abort(f"hatch-detmodel: Field `{_OPTIONS_FIELD}.embed` must be a boolean (true or false)")
        return bool(embed)

    def _extra_output_folder(self) -> Path | None:
        value = os.environ.get(OUTPUT_DIR_VARIABLE, "").strip()
        if not value:
            return None
        folder = Path(value).expanduser()
        if not folder.is_absolute():
            # python -m build and uv build run the wheel build inside a temporary unpacked sdist, where a
            # relative folder would silently vanish with it.
            self.app.abort(
                f"hatch-detmodel: {OUTPUT_DIR_VARIABLE}={value!r} must be an absolute path, because build front ends "
                f'run the build in temporary folders; e.g. {OUTPUT_DIR_VARIABLE}="$PWD/{value}"'
            )
        if folder.exists() and not folder.is_dir():
            self.app.abort(f"hatch-detmodel: {OUTPUT_DIR_VARIABLE}={value!r} names a file; point it at a folder")
        try:  # now, so that a folder that cannot be made stops the build before anything is written
            os.makedirs(folder, exist_ok=True)
        except OSError as error:
            self.app.abort(f"hatch-detmodel: {OUTPUT_DIR_VARIABLE}={value!r} cannot be created: {error.strerror or error}")
        if folder.is_dir() and folder.resolve() == Path(self.directory).resolve():
            return None  # already written there
        return folder

    def _warn_about_sdist(self, project: ProjectConfig, built: list[BuiltArtifact]) -> None:
        """In a checkout, say where hatchling's sdist would differ from the files this build packed: a wheel
        built from that sdist (``python -m build``, ``uv build``) would then carry a different artifact."""
        if (project.root / "PKG-INFO").is_file():
            return  # this is an unpacked sdist already
        try:
            report = compare_with_sdist(self.root, self.metadata, self.app, project, built)
        except (TypeError, ValueError, OSError, DetmodelError) as error:  # a broken sdist config is the sdist's to report
            self.app.display_debug(f"hatch-detmodel: could not compare with the sdist's files: {error}")
            return
        if report.missing:
            shown = ", ".join(report.missing[:10]) + (f" and {len(report.missing) - 10} more" if len(report.missing) > 10 else "")
            self.app.display_warning(
                f"hatch-detmodel: the sdist leaves out files this artifact packs: {shown}. A wheel built from the sdist "
                "(`python -m build`, `uv build`) would carry a different artifact; add them to "
                "[tool.hatch.build.targets.sdist] `include` (or `force-include`), or leave them out of the model "
                "definition in its ignore file."
            )
        for name, source in report.hoisted:
            self.app.display_warning(
                f"hatch-detmodel: the sdist adds {name} (hatchling copies {source} into its root), and the model "
                "definition would pack it, so a wheel built from the sdist (`python -m build`, `uv build`) would carry "
                f"a different artifact; add `/{name}` to the ignore file or to `exclude` in [tool.detmodel]."
            )


@dataclass(frozen=True)
class SdistComparison:
    """How hatchling's sdist of a checkout differs from what the artifacts were built from."""

    missing: list[str]  # project-relative paths packed (or an ignore file) that the sdist leaves out
    hoisted: list[tuple[str, str]]  # (name at the root, source) of VCS ignore files the sdist copies in from a parent


def compare_with_sdist(
    root: str,
    metadata: Any,
    app: Any,
    project: ProjectConfig,
    built: list[BuiltArtifact],
) -> SdistComparison:
    """Compare hatchling's own file selection for this project's sdist with the files the artifacts packed."""
    from hatchling.builders.sdist import SdistBuilder

    sdist = SdistBuilder(root, metadata=metadata, app=app)
    in_sdist = {Path(f.relative_path).as_posix() for f in sdist.recurse_included_files() if f.relative_path}
    in_sdist.add("pyproject.toml")  # the sdist writes it whatever the selection says
    needed: set[str] = set()
    by_name = {model.name: model for model in project.models}
    for artifact in built:
        model = by_name[artifact.model]
        prefix = model.root.relative_to(project.root).as_posix()
        base = "" if prefix == "." else f"{prefix}/"
        needed.update(f"{base}{record.path}" for record in artifact.manifest.files if not record.generated)
        if model.ignore_file.is_file():
            needed.add(model.ignore_file.relative_to(project.root).as_posix())
    hoisted: list[tuple[str, str]] = []
    root_models = [model for model in project.models if model.is_project_root]
    for sources in sdist.config.vcs_exclusion_files.values():
        for source in sources:
            name = os.path.basename(source)
            if Path(source).resolve().parent == project.root:
                continue  # the checkout has it too
            if any(Selector(model).explain(name).packed for model in root_models):
                hoisted.append((name, source))
    return SdistComparison(missing=sorted(needed - in_sdist), hoisted=hoisted)
