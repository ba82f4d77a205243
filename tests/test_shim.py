"""Every documented entrypoint form loads with Determined's own launcher check and loader, from the
unpacked artifact, in a child process set up as Determined's container is (cwd = the unpacked folder,
``sys.path[0] == ""``)."""

from __future__ import annotations

import json
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from hatch_detmodel import build
from hatch_detmodel.config import ProjectIdentity
from hatch_detmodel.errors import EntrypointError

from .conftest import ProjectFactory, require_module, run

IDENTITY = ProjectIdentity("mnist-project", "0.1.0")
LEGACY = "import determined as det\n\n\n"

# A child process that loads `determined_entrypoint` the way Determined does, resolves the declared
# entrypoint independently, and reports whether both are the very same class.
CHILD = textwrap.dedent(
    """
    import importlib, json, sys
    import determined.load, determined.util
    assert sys.path[0] == "", sys.path[:2]
    det_ep, module, qualname, package, parent = sys.argv[1:6]
    result = {"launcher_accepts": determined.util.match_legacy_trial_class(det_ep)}
    def resolve_declared():
        if package:  # the seed rule for `:Class`: the root package under the directory's name
            sys.path.append(parent)
            obj = importlib.import_module(package)
        else:
            obj = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return obj
    # Determined's loader drops `<module>` from sys.modules before importing it, so the declared
    # class is resolved after it (module forms) or before it (the root package, which it keeps).
    if package:
        declared = resolve_declared()
        loaded = determined.load.trial_class_from_entrypoint(det_ep)
    else:
        loaded = determined.load.trial_class_from_entrypoint(det_ep)
        declared = resolve_declared()
    result.update(same=loaded is declared, module=loaded.__module__, name=loaded.__qualname__)
    print(json.dumps(result))
    """
)

# The same without pre-importing anything: the generated module alone must make the class importable.
CHILD_ALONE = textwrap.dedent(
    """
    import json, sys
    import determined.load
    loaded = determined.load.trial_class_from_entrypoint(sys.argv[1])
    print(json.dumps({"module": loaded.__module__, "name": loaded.__qualname__,
                      "bases": [b.__name__ for b in loaded.__mro__[1:]]}))
    """
)


@pytest.fixture(autouse=True)
def _determined() -> None:
    require_module("determined")


def unpack(archive: Path, target: Path) -> None:
    target.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")


def build_and_load(
    make_project: ProjectFactory, tmp_path: Path, entrypoint: str, files: dict[str, str | bytes], path: str = "."
) -> tuple[dict[str, object], dict[str, object], dict[str, object]]:
    detmodel = f"entrypoint = {entrypoint!r}\npath = {path!r}"
    root = make_project(files=files, detmodel=detmodel, name=IDENTITY.name, version=IDENTITY.version)
    archive, _ = build(root, tmp_path / "dist", identity=IDENTITY)
    with tarfile.open(archive) as tar:
        member = tar.extractfile(".detmodel.json")
        assert member is not None
        manifest = json.loads(member.read())
    module, _, qualname = entrypoint.partition(":")
    package = "" if module else (Path(path).name if path != "." else "mnist_project")
    # Unpacked under the package's own name, so the seed rule can be checked independently.
    unpacked = tmp_path / "unpacked" / (package or "model")
    unpack(archive, unpacked)
    det_ep = str(manifest["determined_entrypoint"])
    args = [det_ep, module, qualname, package, str(unpacked.parent)]
    together = json.loads(run([sys.executable, "-c", CHILD, *args], cwd=unpacked).stdout)
    alone = json.loads(run([sys.executable, "-c", CHILD_ALONE, det_ep], cwd=unpacked).stdout)
    return manifest, together, alone


def test_module_file_form_is_used_as_is(make_project: ProjectFactory, tmp_path: Path) -> None:
    manifest, together, _ = build_and_load(
        make_project, tmp_path, "model_def:CIFAR10Trial", {"model_def.py": LEGACY + "class CIFAR10Trial(det.LegacyTrial): pass\n"}
    )
    assert manifest["determined_entrypoint"] == "model_def:CIFAR10Trial"
    assert not any(f.get("generated") for f in manifest["files"])  # type: ignore[union-attr]
    assert together == {"launcher_accepts": True, "same": True, "module": "model_def", "name": "CIFAR10Trial"}


def test_empty_module_form_imports_the_root_package_by_directory_name(make_project: ProjectFactory, tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        "mnist/__init__.py": "from .model import MNistTrial\n",
        "mnist/model.py": "from .base import Base\n\n\nclass MNistTrial(Base): pass\n",
        "mnist/base.py": LEGACY + "class Base(det.LegacyTrial): pass\n",
    }
    manifest, together, alone = build_and_load(make_project, tmp_path, ":MNistTrial", files, path="mnist")
    assert manifest["determined_entrypoint"] == "_detmodel_entrypoint:MNistTrial"
    generated = [f for f in manifest["files"] if f.get("generated")]  # type: ignore[union-attr]
    assert [f["path"] for f in generated] == ["_detmodel_entrypoint.py"]
    assert together == {"launcher_accepts": True, "same": True, "module": "mnist.model", "name": "MNistTrial"}
    assert alone["module"] == "mnist.model" and "LegacyTrial" in alone["bases"]  # type: ignore[operator]


def test_empty_module_form_at_project_root_uses_the_project_name(make_project: ProjectFactory, tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        "__init__.py": "from .model import MNistTrial\n",
        "model.py": LEGACY + "class MNistTrial(det.LegacyTrial): pass\n",
    }
    _, together, alone = build_and_load(make_project, tmp_path, ":MNistTrial", files)
    assert together["same"] is True and together["module"] == "mnist_project.model"
    assert alone["module"] == "mnist_project.model"


def test_nested_reference_form(make_project: ProjectFactory, tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        "determined_lib/__init__.py": "",
        "determined_lib/trial.py": "from . import trial_classes\n",
        "determined_lib/trial_classes.py": LEGACY + "class NestedTrial(det.LegacyTrial): pass\n",
    }
    manifest, together, alone = build_and_load(
        make_project, tmp_path, "determined_lib.trial:trial_classes.NestedTrial", files
    )
    assert manifest["determined_entrypoint"] == "_detmodel_entrypoint:NestedTrial"
    assert together == {"launcher_accepts": True, "same": True, "module": "determined_lib.trial_classes", "name": "NestedTrial"}
    assert alone["name"] == "NestedTrial"


def test_class_imported_from_a_sibling_module(make_project: ProjectFactory, tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        "model_def.py": "from trial_impl import Trial\n",
        "trial_impl.py": LEGACY + "class Trial(det.LegacyTrial): pass\n",
    }
    manifest, together, _ = build_and_load(make_project, tmp_path, "model_def:Trial", files)
    assert manifest["determined_entrypoint"] == "model_def:Trial"
    assert together == {"launcher_accepts": True, "same": True, "module": "trial_impl", "name": "Trial"}


def test_package_with_relative_imports(make_project: ProjectFactory, tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        "pkg/__init__.py": "",
        "pkg/trial.py": "from .base import Trial\n",
        "pkg/base.py": LEGACY + "class Trial(det.LegacyTrial): pass\n",
    }
    manifest, together, _ = build_and_load(make_project, tmp_path, "pkg.trial:Trial", files)
    assert manifest["determined_entrypoint"] == "pkg.trial:Trial"
    assert together == {"launcher_accepts": True, "same": True, "module": "pkg.base", "name": "Trial"}


def test_generated_module_is_reproducible_and_in_the_digest(make_project: ProjectFactory, tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {"__init__.py": "class T: pass\n"}
    root = make_project(files=files, detmodel='entrypoint = ":T"', name=IDENTITY.name)
    first, _ = build(root, tmp_path / "a", identity=IDENTITY)
    second, _ = build(root, tmp_path / "b", identity=IDENTITY)
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        names = tar.getnames()
    assert "_detmodel_entrypoint.py" in names


def test_reserved_shim_name_and_clashing_package_are_refused(make_project: ProjectFactory, tmp_path: Path) -> None:
    root = make_project(files={"__init__.py": "class T: pass\n", "_detmodel_entrypoint.py": ""}, detmodel='entrypoint = ":T"')
    with pytest.raises(EntrypointError, match="reserved for the module hatch-detmodel generates"):
        build(root, tmp_path / "a", identity=IDENTITY)
    clash = make_project(
        files={"__init__.py": "class T: pass\n", "mnist_project.py": ""},
        detmodel='entrypoint = ":T"',
        where=tmp_path / "clash",
    )
    with pytest.raises(EntrypointError, match="also has a top-level module of that name"):
        build(clash, tmp_path / "b", identity=IDENTITY)


# Script entrypoints (Determined >= 0.38)

@pytest.mark.parametrize(
    "entrypoint",
    [
        "python3 train.py --epochs 1",
        "python3 -m determined.launch.torch_distributed python3 train.py",
        ["python3", "train.py"],
        ["python3", "-m", "tools.run"],
    ],
)
def test_command_entrypoints_are_recorded(make_project: ProjectFactory, tmp_path: Path, entrypoint: object) -> None:
    root = make_project(
        files={"train.py": "print('hi')\n", "tools/__init__.py": "", "tools/run.py": ""},
        detmodel=f"entrypoint = {json.dumps(entrypoint)}",
    )
    _, sidecar = build(root, tmp_path, identity=IDENTITY)
    manifest = json.loads(sidecar.read_text())
    assert manifest["entrypoint"] == entrypoint
    assert manifest["determined_entrypoint"] == entrypoint
    assert manifest["trial"] is None
    expected = entrypoint.split() if isinstance(entrypoint, str) else entrypoint
    assert manifest["command"] == expected


@pytest.mark.parametrize(
    ("entrypoint", "message"),
    [
        ("python3 train.py", r"script train\.py: train\.py is not packed: excluded by \.detignore:1: train\.py"),
        ("python3 other.py", r"script other\.py: other\.py does not exist"),
        ("python3 -m tools.run", r"module tools\.run \(-m\): tools/run\.py is not packed: excluded by \.detignore:2"),
    ],
)
def test_command_entrypoint_errors_name_the_file_and_rule(
    make_project: ProjectFactory, tmp_path: Path, entrypoint: str, message: str
) -> None:
    root = make_project(
        files={"train.py": "", "tools/__init__.py": "", "tools/run.py": "", ".detignore": "train.py\ntools/run.py\n"},
        detmodel=f"entrypoint = {entrypoint!r}",
    )
    with pytest.raises(EntrypointError, match=message):
        build(root, tmp_path, identity=IDENTITY)


def test_command_script_outside_the_model_definition_is_refused(make_project: ProjectFactory, tmp_path: Path) -> None:
    root = make_project(files={"train.py": ""}, detmodel='entrypoint = ["python3", "../train.py"]')
    with pytest.raises(EntrypointError, match=r"script \.\./train\.py: lies outside the model definition"):
        build(root, tmp_path, identity=IDENTITY)
