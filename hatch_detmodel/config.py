"""Configuration: ``[tool.detmodel]`` of ``pyproject.toml`` → typed :class:`ProjectConfig`."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib

__all__ = [
    "DEFAULT_MAX_SIZE",
    "DEFAULT_MODEL",
    "ModelConfig",
    "ProjectConfig",
    "ProjectIdentity",
    "load_project",
    "normalize_name",
]

#: Determined 0.38.1's limit on the (base64-accounted) size of a model definition.
DEFAULT_MAX_SIZE = 99_614_720
#: gzip level 5, not gzip's 6: about 30 % less compression CPU for about 1-3 % more bytes on source
#: trees (the benchmark's heavy tree: 0.8 %); ``compression-level = 6`` (or 9) trades the time back.
DEFAULT_COMPRESSION_LEVEL = 5
#: The model name used when ``[tool.detmodel]`` has no ``models`` table.
DEFAULT_MODEL = "default"

_MODEL_KEYS = frozenset(
    {"entrypoint", "path", "detignore", "exclude", "max-size", "compression-level", "allow-secrets"}
)
_TOP_KEYS = _MODEL_KEYS | {"models"}
_MODEL_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")


class ProjectIdentity(NamedTuple):
    """The project's name and version as the artifact records them."""

    name: str
    version: str

    @property
    def file_stem(self) -> str:
        return f"{normalize_name(self.name)}-{self.version}"


class ModelConfig(NamedTuple):
    """One model definition to pack, with every default resolved."""

    name: str
    field: str  # "tool.detmodel" or "tool.detmodel.models.<name>", for messages
    entrypoint: str | tuple[str, ...]  # "<module>:<ref>", or a command (string with spaces, or argv)
    root: Path  # absolute model-definition directory
    path: str  # as configured, relative to the project root
    detignore: str
    exclude: tuple[str, ...]
    max_size: int | None
    compression_level: int
    project_root: Path | None = None  # set when loaded from a project; None for an unpacked artifact
    allow_secrets: tuple[str, ...] = ()  # patterns of secret-looking files packed on purpose

    @property
    def is_project_root(self) -> bool:
        """The model definition is the whole project (``path = "."``)."""
        return self.project_root is not None and self.root == self.project_root

    @property
    def ignore_file(self) -> Path:
        return self.root / self.detignore


class ProjectConfig(NamedTuple):
    """Everything the pipeline needs about a project: who it is and which models it packs."""

    root: Path
    identity: ProjectIdentity
    models: tuple[ModelConfig, ...]

    def select(self, model: str | None) -> tuple[ModelConfig, ...]:
        if model is None:
            return self.models
        for candidate in self.models:
            if candidate.name == model:
                return (candidate,)
        known = ", ".join(m.name for m in self.models)
        raise ConfigError(f"No model named `{model}` in [tool.detmodel] of {self.root / 'pyproject.toml'}; known: {known}")

    def artifact_stem(self, model: ModelConfig) -> str:
        stem = self.identity.file_stem
        if model.field != "tool.detmodel":  # a named model from [tool.detmodel.models.<name>]
            stem = f"{stem}-{model.name}"
        return stem


def normalize_name(name: str) -> str:
    """The file-name form of a project name (as wheels and sdists spell it)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _fail(field: str, problem: str) -> ConfigError:
    return ConfigError(f"pyproject.toml: Field `{field}` {problem}")


def _string(table: Mapping[str, Any], key: str, field: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(f"{field}.{key}", "must be a string")
    return value


def _check_keys(table: Mapping[str, Any], allowed: frozenset[str], field: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise _fail(
            f"{field}.{unknown[0]}",
            f"is not a known option; use one of: {', '.join(sorted(allowed))}",
        )


def _parse_model(
    project_root: Path, name: str, field: str, table: Mapping[str, Any], defaults: Mapping[str, Any]
) -> ModelConfig:
    merged = {**defaults, **table}

    def origin(key: str) -> str:
        # Name the table the value really came from.
        return field if key in table else "tool.detmodel"

    entrypoint: str | tuple[str, ...]
    raw_entrypoint = merged.get("entrypoint")
    entrypoint_field = f"{origin('entrypoint')}.entrypoint"
    if raw_entrypoint is None:
        raise _fail(f"{field}.entrypoint", "is required: set it to `<module>:<TrialClass>`, e.g. `model_def:MyTrial`")
    if isinstance(raw_entrypoint, list):
        if not raw_entrypoint or not all(isinstance(a, str) and a for a in raw_entrypoint):
            raise _fail(entrypoint_field, "must be a string or a non-empty array of non-empty strings (a command)")
        entrypoint = tuple(raw_entrypoint)
    elif isinstance(raw_entrypoint, str):
        if not raw_entrypoint.strip():
            raise _fail(entrypoint_field, "must not be empty")
        entrypoint = raw_entrypoint
    else:
        raise _fail(entrypoint_field, "must be a string (`module:Class` or a command) or an array of strings")

    path = _string(merged, "path", origin("path"))
    path = "." if path is None else path
    path_field = f"{origin('path')}.path"
    if not path or "\x00" in path:
        raise _fail(path_field, "must be a non-empty relative path")
    if os.path.isabs(path) or path.startswith(("/", "\\")):
        raise _fail(path_field, f"must be relative to the project root, not absolute: {path!r}")
    root = (project_root / path).resolve()
    if root != project_root and project_root not in root.parents:
        raise _fail(path_field, f"points outside the project root: {path!r}")
    if not root.exists():
        raise _fail(path_field, f"names a directory that does not exist: {path!r}")
    if not root.is_dir():
        raise _fail(path_field, f"must name a directory, but {path!r} is a file")

    detignore = _string(merged, "detignore", origin("detignore"))
    detignore = ".detignore" if detignore is None else detignore
    ignore_field = f"{origin('detignore')}.detignore"
    if not detignore or os.path.isabs(detignore) or "\x00" in detignore:
        raise _fail(ignore_field, "must be a relative file path such as `.detignore`")
    ignore_path = root / detignore
    if ignore_path.resolve() != root and root not in ignore_path.resolve().parents:
        raise _fail(ignore_field, f"must name a file inside the model definition, not {detignore!r}")
    if ignore_path.exists() and not ignore_path.is_file():
        raise _fail(ignore_field, f"must name a file, but {detignore!r} is a directory")

    exclude_value = merged.get("exclude", [])
    if not isinstance(exclude_value, list) or not all(isinstance(p, str) for p in exclude_value):
        raise _fail(f"{origin('exclude')}.exclude", "must be an array of strings (gitignore patterns)")
    allow_value = merged.get("allow-secrets", [])
    if not isinstance(allow_value, list) or not all(isinstance(p, str) and p.strip() for p in allow_value):
        raise _fail(
            f"{origin('allow-secrets')}.allow-secrets",
            "must be an array of paths or patterns of secret-looking files to pack on purpose",
        )

    max_size_value = merged.get("max-size", DEFAULT_MAX_SIZE)
    max_size: int | None
    if max_size_value is False:
        max_size = None
    elif isinstance(max_size_value, bool) or not isinstance(max_size_value, int) or max_size_value <= 0:
        raise _fail(
            f"{origin('max-size')}.max-size",
            "must be a positive integer (bytes) or `false` to turn the limit off",
        )
    else:
        max_size = max_size_value

    level = merged.get("compression-level", DEFAULT_COMPRESSION_LEVEL)
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9:
        raise _fail(f"{origin('compression-level')}.compression-level", "must be an integer from 0 to 9")

    return ModelConfig(
        name=name,
        field=field,
        entrypoint=entrypoint,
        root=root,
        path=path,
        detignore=detignore,
        exclude=tuple(exclude_value),
        max_size=max_size,
        compression_level=level,
        project_root=project_root,
        allow_secrets=tuple(allow_value),
    )


def parse_models(project_root: Path, pyproject: Mapping[str, Any]) -> tuple[ModelConfig, ...]:
    """Validate ``[tool.detmodel]`` and resolve every model definition it declares."""
    tool = pyproject.get("tool", {})
    table = tool.get("detmodel") if isinstance(tool, dict) else None
    if table is None:
        raise ConfigError(
            "pyproject.toml: no [tool.detmodel] table; add one with at least "
            '`entrypoint = "<module>:<TrialClass>"`'
        )
    if not isinstance(table, dict):
        raise _fail("tool.detmodel", "must be a table")
    _check_keys(table, _TOP_KEYS, "tool.detmodel")
    defaults = {k: v for k, v in table.items() if k != "models"}
    models_table = table.get("models")
    if models_table is None:
        return (_parse_model(project_root, DEFAULT_MODEL, "tool.detmodel", {}, defaults),)
    if not isinstance(models_table, dict) or not models_table:
        raise _fail("tool.detmodel.models", "must be a table of named model tables, e.g. [tool.detmodel.models.cifar]")
    models = []
    for name in sorted(models_table):
        field = f"tool.detmodel.models.{name}"
        sub = models_table[name]
        if not isinstance(sub, dict):
            raise _fail(field, "must be a table")
        if not _MODEL_NAME.match(name):
            raise _fail(field, "has a name that cannot be used in a file name; use letters, digits, `.`, `_`, `-`")
        _check_keys(sub, _MODEL_KEYS, field)
        models.append(_parse_model(project_root, name, field, sub, defaults))
    return tuple(models)


def read_pyproject(project_root: Path) -> dict[str, Any]:
    pyproject_path = project_root / "pyproject.toml"
    try:
        with pyproject_path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{pyproject_path}: not found; point at a project folder that has a pyproject.toml") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{pyproject_path}: not valid TOML: {error}") from None


# What hatchling accepts as `project.name`, and PEP 440's canonical form of a public version without
# epoch or local part: a version already in that form is its own normal form (`str(Version(v)) == v`).
_PROJECT_NAME = re.compile(r"[A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9]", re.IGNORECASE)
_CANONICAL_VERSION = re.compile(
    r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*((a|b|rc)(0|[1-9][0-9]*))?(\.post(0|[1-9][0-9]*))?(\.dev(0|[1-9][0-9]*))?"
)


def _static_identity(project_root: Path, pyproject: Mapping[str, Any]) -> ProjectIdentity | None:
    """Name and version when ``[project]`` states both plainly, resolved as hatchling would without
    importing it (≈ 15 ms of a command-line build's start); ``None`` wherever hatchling has more
    to say: dynamic fields, metadata hooks, a ``hatch.toml``, a name it refuses, a version it rewrites."""
    project, tool = pyproject.get("project"), pyproject.get("tool")
    if not isinstance(project, dict) or project.get("dynamic", []) != [] or not isinstance(tool, dict):
        return None
    hatch = tool.get("hatch", {})
    if not isinstance(hatch, dict) or "metadata" in hatch or (project_root / "hatch.toml").exists():
        return None
    name, version = project.get("name"), project.get("version")
    if not isinstance(name, str) or not isinstance(version, str):
        return None
    if not _PROJECT_NAME.fullmatch(name) or not _CANONICAL_VERSION.fullmatch(version):
        return None
    return ProjectIdentity(name=re.sub(r"[-_.]+", "-", name).lower(), version=version)


def _identity_from_hatchling(project_root: Path) -> ProjectIdentity:
    """Resolve name and (possibly dynamic) version exactly as hatchling would."""
    from hatchling.metadata.core import ProjectMetadata
    from hatchling.plugin.manager import PluginManager

    metadata = ProjectMetadata(str(project_root), PluginManager())
    try:
        return ProjectIdentity(name=metadata.core.name, version=metadata.version)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{project_root / 'pyproject.toml'}: [project] metadata: {error}") from None


def load_project(project_dir: str | os.PathLike[str], identity: ProjectIdentity | None = None) -> ProjectConfig:
    """Read and validate a project's ``pyproject.toml``; ``identity`` overrides name/version resolution."""
    project_root = Path(project_dir).resolve()
    if not project_root.is_dir():
        raise ConfigError(f"{project_dir}: not a directory; point at the project folder holding pyproject.toml")
    pyproject = read_pyproject(project_root)
    models = parse_models(project_root, pyproject)
    if identity is None:
        identity = _static_identity(project_root, pyproject) or _identity_from_hatchling(project_root)
    return ProjectConfig(root=project_root, identity=identity, models=models)
