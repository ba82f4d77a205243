"""``check``: the static entrypoint check on a project or an artifact, and optionally a real import
of the trial class the way Determined's container loads it.

The import runs in a child process whose working directory is a temporary copy of exactly the
files that are (or would be) packed, with ``sys.path[0] == ""`` — Determined unpacks the model
definition into the working directory, which is first on ``sys.path``. The child uses Determined's
own loader (``determined.load.trial_class_from_entrypoint``) when Determined is installed, and a
plain ``importlib`` walk of the reference otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, List, Mapping, Sequence, Union

from .config import DEFAULT_COMPRESSION_LEVEL, ModelConfig, load_project
from .entrypoint import EntrypointCheck, check_entrypoint
from .errors import EntrypointError, SelectionError, SizeLimitError
from .manifest import Manifest
from .pipeline import plan_model
from .reader import DEFAULT_LIMITS, Limits, Problem, ProgressCallback, read_artifact
from .reproducible import source_date_epoch
from .secret_guard import SecretGuard
from .selection import SelectedFile, Selection, Selector
from .shim import GeneratedFile
from .unpack import unpack_artifact

__all__ = ["CheckResult", "Entrypoint", "ImportResult", "ModelCheck", "check_artifact", "check_project", "import_trial"]

DEFAULT_TIMEOUT = 600.0

# Runs in the child: cwd is the model definition, sys.path[0] is "" (as in Determined's container).
_CHILD = r"""
import importlib, json, os, sys, traceback
if not sys.path or sys.path[0] != "":
    sys.path.insert(0, "")
entrypoint, out = sys.argv[1], sys.argv[2]
result = {"ok": False, "loader": None}


def resolve():
    name, _, qualname = entrypoint.partition(":")
    obj = importlib.import_module(name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


cls = None
try:
    try:
        from determined import load as det_load
    except ImportError:
        det_load = None
    if det_load is not None:
        result["loader"] = "determined.load.trial_class_from_entrypoint"
        cls = det_load.trial_class_from_entrypoint(entrypoint)
    else:
        result["loader"] = "importlib (determined is not installed)"
        cls = resolve()
        if not isinstance(cls, type):
            raise TypeError(f"entrypoint ({entrypoint}) is not a class")
    result["ok"] = True
except BaseException as error:
    result["error"] = "".join(traceback.format_exception_only(type(error), error)).strip()
    result["traceback"] = traceback.format_exc()
    if isinstance(error, AssertionError):  # imported, but Determined refused it: still say what it is
        try:
            found = resolve()
            cls = found if isinstance(found, type) else None
        except Exception:
            cls = None
if cls is not None:
    result["class"] = f"{cls.__module__}.{cls.__qualname__}"
    result["mro"] = [f"{c.__module__}.{c.__qualname__}" for c in cls.__mro__]
    module_file = getattr(sys.modules.get(cls.__module__), "__file__", None)
    if module_file:
        rel = os.path.relpath(os.path.realpath(module_file), os.path.realpath(os.getcwd()))
        result["file"] = None if rel.startswith("..") else rel.replace(os.sep, "/")
with open(out, "w", encoding="utf-8") as handle:
    json.dump(result, handle)
"""


@dataclass(frozen=True)
class ImportResult:
    ok: bool
    entrypoint: str
    loader: str | None
    class_name: str | None
    mro_names: tuple[str, ...]  # the class and its __mro__, as module.qualname (not `mro`: that is type.mro)
    file: str | None  # the class's module, relative to the model definition (None: from elsewhere)
    error: str | None
    detail: str  # the traceback or the child's stderr, for the human report

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entrypoint": self.entrypoint,
            "loader": self.loader,
            "class": self.class_name,
            "mro": list(self.mro_names),
            "file": self.file,
            "error": self.error,
        }


#: An entrypoint as the manifest records it: ``module:Class`` or a command (a string or an argv list).
Entrypoint = Union[str, List[str]]


def _declared(entrypoint: str | Sequence[str]) -> Entrypoint:
    return entrypoint if isinstance(entrypoint, str) else list(entrypoint)


@dataclass(frozen=True)
class ModelCheck:
    model: str
    entrypoint: Entrypoint  # as declared
    determined_entrypoint: Entrypoint | None  # what Determined runs; None when the static check failed
    trial: Mapping[str, Any] | None  # the manifest's ``trial`` object; None for a command or a failure
    command: tuple[str, ...] | None
    defined_at: str | None
    warnings: tuple[str, ...]
    error: str | None
    imported: ImportResult | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and (self.imported is None or self.imported.ok)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "ok": self.ok,
            "entrypoint": self.entrypoint,
            "determined_entrypoint": self.determined_entrypoint,
            "trial": dict(self.trial) if self.trial is not None else None,
            "command": list(self.command) if self.command is not None else None,
            "defined_at": self.defined_at,
            "warnings": list(self.warnings),
            "error": self.error,
            "import": self.imported.to_json() if self.imported is not None else None,
        }


@dataclass(frozen=True)
class CheckResult:
    target: str
    kind: str  # "project" or "artifact"
    models: tuple[ModelCheck, ...]
    problems: tuple[Problem, ...] = ()  # an artifact's verification problems

    @property
    def ok(self) -> bool:
        return not self.problems and all(m.ok for m in self.models)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "kind": self.kind,
            "ok": self.ok,
            "models": [m.to_json() for m in self.models],
            "problems": [p.to_json() for p in self.problems],
        }


def import_trial(folder: Path, entrypoint: str, *, python: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> ImportResult:
    """Import the trial class in a child process with ``folder`` as working directory and ``""`` first
    on ``sys.path``; report the class and its method resolution order."""
    with tempfile.TemporaryDirectory(prefix="hatch-detmodel-import-") as scratch:
        out = Path(scratch) / "result.json"
        env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave the copy as it was unpacked
        command = [python or sys.executable, "-c", _CHILD, entrypoint, str(out)]
        try:
            child = subprocess.run(command, cwd=folder, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                   text=True, errors="replace", timeout=timeout)
        except subprocess.TimeoutExpired:
            return ImportResult(False, entrypoint, None, None, (), None,
                                f"importing did not finish within {timeout:g} s (pass a larger --timeout)", "")
        except OSError as error:
            return ImportResult(False, entrypoint, None, None, (), None,
                                f"cannot run {command[0]} ({error.strerror}); pass an interpreter with --python", "")
        try:
            data = json.loads(out.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            tail = "\n".join(child.stderr.strip().splitlines()[-20:])
            return ImportResult(False, entrypoint, None, None, (), None,
                                f"the child Python exited {child.returncode} without a result", tail)
    return ImportResult(
        ok=bool(data.get("ok")),
        entrypoint=entrypoint,
        loader=data.get("loader"),
        class_name=data.get("class"),
        mro_names=tuple(data.get("mro") or ()),
        file=data.get("file"),
        error=data.get("error"),
        detail=str(data.get("traceback") or ""),
    )


def _model_check(model: str, entrypoint: str | Sequence[str], check: EntrypointCheck) -> ModelCheck:
    trial = check.trial.to_json() if check.trial is not None else None
    return ModelCheck(model, _declared(entrypoint), check.determined_entrypoint, trial, check.command,
                      check.defined_at, check.warnings, None)


def _failed(model: str, entrypoint: str | Sequence[str], error: Exception) -> ModelCheck:
    return ModelCheck(model, _declared(entrypoint), None, None, None, None, (), str(error))


def _with_import(result: ModelCheck, folder: Path, python: str | None, timeout: float,
                 on_import: Callable[[str], None] | None) -> ModelCheck:
    """Import what Determined will load: the ``determined_entrypoint`` (the generated module for the
    ``:Class`` and nested forms). A command entrypoint has no class to import."""
    target = result.determined_entrypoint
    if result.trial is None or not isinstance(target, str):
        note = "--import: the entrypoint is a command, which Determined runs as is; there is no trial class to import"
        return replace(result, warnings=(*result.warnings, note))
    if on_import is not None:
        on_import(target)
    return replace(result, imported=import_trial(folder, target, python=python, timeout=timeout))


def _copy_files(files: Sequence[SelectedFile | GeneratedFile], folder: Path) -> None:
    """The files a build would pack (generated ones included), as they would be unpacked."""
    for item in files:
        target = folder / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(item, GeneratedFile):
            target.write_bytes(item.data)
            target.chmod(0o644)
        else:
            shutil.copyfile(item.source, target)
            target.chmod(0o755 if item.executable else 0o644)


def check_project(
    project_dir: str | os.PathLike[str],
    model: str | None = None,
    *,
    do_import: bool = False,
    python: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    output_dir: Path | None = None,
    on_import: Callable[[str], None] | None = None,
) -> CheckResult:
    """The build's own planning (selection, entrypoint, size) for each model; with ``do_import``,
    import each trial from a temporary copy of the files that would be packed."""
    project = load_project(project_dir)
    output = (output_dir or project.root / "dist").resolve()
    epoch = source_date_epoch()
    results: list[ModelCheck] = []
    for config in project.select(model):
        try:
            plan = plan_model(project, config, output, epoch)
        except (EntrypointError, SelectionError, SizeLimitError) as error:
            results.append(_failed(config.name, config.entrypoint, error))
            continue
        result = _model_check(config.name, config.entrypoint, plan.check)
        if do_import:
            with tempfile.TemporaryDirectory(prefix="hatch-detmodel-check-") as scratch:
                _copy_files(plan.files, Path(scratch))
                result = _with_import(result, Path(scratch), python, timeout, on_import)
        results.append(result)
    return CheckResult(os.fspath(project_dir), "project", tuple(results))


def _artifact_selection(manifest: Manifest, root: Path) -> Selection:
    """The unpacked files as a :class:`Selection`, so the build's entrypoint check runs on them as is."""
    entrypoint = manifest.entrypoint if isinstance(manifest.entrypoint, str) else tuple(manifest.entrypoint)
    config = ModelConfig(
        name=manifest.model, field="tool.detmodel", entrypoint=entrypoint, root=root, path=".",
        detignore=".detignore", exclude=(), max_size=None, compression_level=DEFAULT_COMPRESSION_LEVEL,
    )
    files = tuple(SelectedFile(f.path, root / f.path, f.size, f.mode == "755") for f in manifest.files)
    guard = SecretGuard((), config.detignore)
    return Selection(root=root, files=files, selector=Selector(config), guard=guard, read_ahead={})


def check_artifact(
    artifact: str | os.PathLike[str],
    *,
    do_import: bool = False,
    python: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    limits: Limits = DEFAULT_LIMITS,
    on_progress: ProgressCallback | None = None,
    on_import: Callable[[str], None] | None = None,
) -> CheckResult:
    """Verify the artifact, unpack it to a temporary folder, run the static check there (and compare
    with the trial the manifest records); with ``do_import``, import the trial from that folder."""
    report = read_artifact(artifact, limits, on_progress=on_progress)
    if not report.ok:
        return CheckResult(os.fspath(artifact), "artifact", (), report.problems)
    manifest = report.require_manifest()
    with tempfile.TemporaryDirectory(prefix="hatch-detmodel-check-") as scratch:
        root = Path(scratch) / "model"
        unpack_artifact(artifact, root, limits=limits, report=report)
        try:
            check = check_entrypoint(manifest.entrypoint, _artifact_selection(manifest, root))
        except EntrypointError as error:
            result = _failed(manifest.model, manifest.entrypoint, error)
        else:
            result = _model_check(manifest.model, manifest.entrypoint, check)
            recorded = dict(manifest.trial) if manifest.trial is not None else None
            if result.trial != recorded:
                note = f"the manifest records trial {recorded}, the files define {result.trial}"
                result = replace(result, warnings=(*result.warnings, note))
            if manifest.determined_entrypoint and result.determined_entrypoint != manifest.determined_entrypoint:
                note = (f"the manifest records determined_entrypoint {manifest.determined_entrypoint!r}, the files give "
                        f"{result.determined_entrypoint!r}")
                result = replace(result, warnings=(*result.warnings, note))
        if do_import and result.error is None:
            result = _with_import(result, root, python, timeout, on_import)
    return CheckResult(os.fspath(artifact), "artifact", (result,))
