from __future__ import annotations

import pytest

from hatch_detmodel.config import ProjectIdentity, load_project
from hatch_detmodel.entrypoint import EntrypointCheck, check_entrypoint, parse_entrypoint
from hatch_detmodel.errors import EntrypointError
from hatch_detmodel.selection import select_files

from .conftest import ProjectFactory

IDENTITY = ProjectIdentity("demo-project", "1.2.3")


def check(make_project: ProjectFactory, entrypoint: str, files: dict[str, str | bytes]) -> EntrypointCheck:
    root = make_project(files=files, detmodel=f"entrypoint = {entrypoint!r}")
    (model,) = load_project(root, IDENTITY).models
    return check_entrypoint(model.entrypoint, select_files(model))


# The three forms of Determined's documentation.
def test_module_file_form(make_project: ProjectFactory) -> None:
    result = check(make_project, "model_def:CIFAR10Trial", {
        "model_def.py": "from determined import pytorch\n\nclass CIFAR10Trial(pytorch.PyTorchTrial):\n    pass\n",
    })
    assert result.trial.to_json() == {
        "module": "model_def", "qualname": "CIFAR10Trial", "path": "model_def.py", "bases": ["pytorch.PyTorchTrial"],
    }
    assert result.defined_at == "model_def.py:3"
    assert result.warnings == ()


def test_module_package_form(make_project: ProjectFactory) -> None:
    source = "import determined as det\nclass T(det.keras.TFKerasTrial): pass\n"
    result = check(make_project, "model_def:T", {"model_def/__init__.py": source})
    assert (result.trial.path, result.trial.bases) == ("model_def/__init__.py", ("det.keras.TFKerasTrial",))


def test_empty_module_form_uses_root_init(make_project: ProjectFactory) -> None:
    result = check(make_project, ":MNistTrial", {
        "__init__.py": "from .model import MNistTrial\n",
        "model.py": "import determined as det\n\nclass MNistTrial(det.LegacyTrial, Mixin):\n    pass\n",
    })
    assert result.trial.to_json() == {"module": "", "qualname": "MNistTrial", "path": "__init__.py",
                                      "bases": ["det.LegacyTrial", "Mixin"]}
    assert result.defined_at == "model.py:3"


def test_nested_object_reference_through_a_module(make_project: ProjectFactory) -> None:
    result = check(make_project, "determined_lib.trial:trial_classes.NestedTrial", {
        "determined_lib/__init__.py": "",
        "determined_lib/trial.py": "from . import trial_classes\n",
        "determined_lib/trial_classes.py": "from determined import pytorch\nclass NestedTrial(pytorch.PyTorchTrial): pass\n",
    })
    assert result.trial.qualname == "trial_classes.NestedTrial"
    assert result.trial.bases == ("pytorch.PyTorchTrial",)
    assert result.defined_at == "determined_lib/trial_classes.py:2"


def test_nested_class_and_aliases(make_project: ProjectFactory) -> None:
    result = check(make_project, "m:Outer.Inner", {
        "m.py": "import helpers.impl as impl\nclass Outer:\n    Inner = impl.Real\n",
        "helpers/__init__.py": "",
        "helpers/impl.py": "from .base import *\nReal = Base\n",
        "helpers/base.py": "class Base(object): pass\n",
    })
    assert result.defined_at == "helpers/base.py:1" and result.trial.bases == ("object",)


def test_conditional_and_star_imports(make_project: ProjectFactory) -> None:
    result = check(make_project, "m:T", {
        "m.py": "try:\n    from impl import *\nexcept ImportError:\n    raise\n",
        "impl.py": "if True:\n    class T(Base): pass\n",
    })
    assert result.defined_at == "impl.py:2"


def test_unfollowable_names_are_warnings(make_project: ProjectFactory) -> None:
    result = check(make_project, "m:T", {"m.py": "T = make_trial()\n"})
    assert result.trial.bases == ()
    assert len(result.warnings) == 1 and "m.py:1: `T` is created by an expression" in result.warnings[0]
    external = check(make_project, "m:T", {"m.py": "from somewhere_else import T\n"})
    assert "not part of the model definition" in external.warnings[0]


@pytest.mark.parametrize(
    ("entrypoint", "message"),
    [
        ("model_def.py:MyTrial", "use `model_def:MyTrial`"),
        ("pkg/sub/trial:MyTrial", "use `pkg.sub.trial:MyTrial`"),
        ("model_def", "expected `<module>:<TrialClass>`"),
        ("model_def:", "not a class reference"),
        ("model-def:X", "not a Python module name"),
    ],
)
def test_syntax_errors_suggest_the_fix(entrypoint: str, message: str) -> None:
    with pytest.raises(EntrypointError, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_entrypoint(entrypoint)


def test_module_excluded_by_detignore_names_the_line(make_project: ProjectFactory) -> None:
    with pytest.raises(EntrypointError) as caught:
        check(make_project, "model_def:MyTrial", {"model_def.py": "class MyTrial: pass\n", ".detignore": "# x\n\n*.py\n"})
    assert "module file model_def.py exists but is not packed: excluded by .detignore:3: *.py" in str(caught.value)
    assert "add `!model_def.py`" in str(caught.value)


def test_missing_module_lists_what_exists(make_project: ProjectFactory) -> None:
    with pytest.raises(EntrypointError, match=r"module `trial` not found: no trial\.py or trial/__init__\.py.*model_def"):
        check(make_project, "trial:MyTrial", {"model_def.py": "class MyTrial: pass\n"})
    with pytest.raises(EntrypointError, match=r"root package's __init__\.py"):
        check(make_project, ":MyTrial", {"model_def.py": "class MyTrial: pass\n"})


def test_missing_class_lists_the_classes(make_project: ProjectFactory) -> None:
    with pytest.raises(EntrypointError, match=r"model_def.py: class `Trial` not found; classes defined there: A, MyTrial"):
        check(make_project, "model_def:Trial", {"model_def.py": "class MyTrial: pass\nclass A: pass\n"})


def test_function_module_and_syntax_error(make_project: ProjectFactory) -> None:
    with pytest.raises(EntrypointError, match=r"model_def.py:1: `T` is a function"):
        check(make_project, "model_def:T", {"model_def.py": "def T(): pass\n"})
    with pytest.raises(EntrypointError, match=r"is a module \(sub/__init__.py\), not a class"):
        check(make_project, "model_def:sub", {"model_def.py": "from . import sub\n", "sub/__init__.py": ""})
    with pytest.raises(EntrypointError, match=r"model_def.py:2: syntax error"):
        check(make_project, "model_def:T", {"model_def.py": "class T:\n  def (:\n"})


def test_import_cycle_is_an_error_not_a_hang(make_project: ProjectFactory) -> None:
    with pytest.raises(EntrypointError, match="cycle"):
        check(make_project, "a:T", {"a.py": "from b import T\n", "b.py": "from a import T\n"})


@pytest.mark.parametrize("entrypoint", ["../x:MyTrial", "/abs/x:MyTrial", "pkg/../x:MyTrial"])
def test_module_outside_the_model_definition_is_refused(entrypoint: str) -> None:
    with pytest.raises(EntrypointError, match="points outside the model definition"):
        parse_entrypoint(entrypoint)
