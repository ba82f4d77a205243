from __future__ import annotations

from pathlib import Path

import pytest

from hatch_detmodel.config import (
    DEFAULT_COMPRESSION_LEVEL,
    DEFAULT_MAX_SIZE,
    ProjectIdentity,
    _identity_from_hatchling,
    _static_identity,
    load_project,
    read_pyproject,
)
from hatch_detmodel.errors import ConfigError

from .conftest import ProjectFactory

IDENTITY = ProjectIdentity("demo-project", "1.2.3")


def load(root: Path):  # type: ignore[no-untyped-def]
    return load_project(root, IDENTITY)


def test_defaults(make_project: ProjectFactory) -> None:
    project = load(make_project())
    (model,) = project.models
    assert model.name == "default"
    assert model.root == project.root
    assert model.detignore == ".detignore"
    assert model.exclude == ()
    assert model.max_size == DEFAULT_MAX_SIZE
    assert model.compression_level == DEFAULT_COMPRESSION_LEVEL == 5
    assert project.artifact_stem(model) == "demo_project-1.2.3"


def test_identity_resolved_by_hatchling_when_not_given(make_project: ProjectFactory) -> None:
    project = load_project(make_project(name="My.Project_name", version="2.0"))
    assert project.identity == ProjectIdentity("my-project-name", "2.0")  # as hatchling normalizes it
    assert project.artifact_stem(project.models[0]) == "my_project_name-2.0"


@pytest.mark.parametrize(
    ("name", "version"),
    [("demo", "1"), ("My.Project_name", "2.0"), ("a--b__c", "0.0.0"), ("X9", "10.20.30"), ("p", "1.0a1"),
     ("p", "1.0b2"), ("p", "2.0rc10"), ("p", "1.0.post3"), ("p", "1.0.dev0"), ("p", "1.2rc1.post2.dev3")],
)
def test_plain_name_and_version_resolve_as_hatchling_does_without_it(
    make_project: ProjectFactory, name: str, version: str
) -> None:
    root = make_project(name=name, version=version)
    static = _static_identity(root, read_pyproject(root))
    assert static is not None
    assert static == _identity_from_hatchling(root)


@pytest.mark.parametrize("version", ["v1.0", "01.0", "1.0-rc1", "1.0RC1", "1.0c1", "1.0.post", "1.0-1", "1.0 "])
def test_versions_hatchling_rewrites_are_left_to_it(make_project: ProjectFactory, version: str) -> None:
    root = make_project(version=version)
    assert _static_identity(root, read_pyproject(root)) is None
    assert load_project(root).identity == _identity_from_hatchling(root)
    assert load_project(root).identity.version != version


@pytest.mark.parametrize("version", ["1!2.0", "1.0+cpu"])
def test_rarer_forms_are_left_to_hatchling_too(make_project: ProjectFactory, version: str) -> None:
    root = make_project(version=version)
    assert _static_identity(root, read_pyproject(root)) is None
    assert load_project(root).identity == _identity_from_hatchling(root) == ProjectIdentity("demo-project", version)


def test_dynamic_metadata_and_hooks_are_left_to_hatchling(make_project: ProjectFactory) -> None:
    root = make_project()
    pyproject = read_pyproject(root)
    assert _static_identity(root, pyproject) == ProjectIdentity("demo-project", "1.2.3")
    assert _static_identity(root, {**pyproject, "project": {**pyproject["project"], "dynamic": ["readme"]}}) is None
    hooked = {**pyproject, "tool": {**pyproject["tool"], "hatch": {"metadata": {"hooks": {"custom": {}}}}}}
    assert _static_identity(root, hooked) is None
    for odd_dynamic in ("", False, 0, {}):  # hatchling refuses these (not an array): its error, not ours
        assert _static_identity(root, {**pyproject, "project": {**pyproject["project"], "dynamic": odd_dynamic}}) is None
    assert _static_identity(root, {**pyproject, "project": {**pyproject["project"], "dynamic": []}}) is not None
    assert _static_identity(root, {**pyproject, "tool": {**pyproject["tool"], "hatch": 1}}) is None
    (root / "hatch.toml").write_text("")
    assert _static_identity(root, pyproject) is None


def test_named_models_inherit_top_level_defaults(make_project: ProjectFactory) -> None:
    root = make_project(
        files={"a/m.py": "class T: pass\n", "b/m.py": "class U: pass\n"},
        detmodel="""\
        [tool.detmodel]
        entrypoint = "m:T"
        exclude = ["*.csv"]
        compression-level = 9

        [tool.detmodel.models.alpha]
        path = "a"

        [tool.detmodel.models.beta]
        path = "b"
        entrypoint = "m:U"
        max-size = false
        """,
    )
    project = load(root)
    alpha, beta = project.models
    assert (alpha.name, alpha.entrypoint, alpha.exclude, alpha.compression_level) == ("alpha", "m:T", ("*.csv",), 9)
    assert (beta.name, beta.entrypoint, beta.max_size) == ("beta", "m:U", None)
    assert project.artifact_stem(beta) == "demo_project-1.2.3-beta"
    assert project.select("beta") == (beta,)
    with pytest.raises(ConfigError, match=r"No model named `gamma`.*known: alpha, beta"):
        project.select("gamma")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("entrypoint = 3", "Field `tool.detmodel.entrypoint` must be a string"),
        ('path = "."', "Field `tool.detmodel.entrypoint` is required"),
        ('entrypoint = "m:T"\npath = 1', "Field `tool.detmodel.path` must be a string"),
        ('entrypoint = "m:T"\ndetignore = []', "Field `tool.detmodel.detignore` must be a string"),
        ('entrypoint = "m:T"\nexclude = "x"', "Field `tool.detmodel.exclude` must be an array of strings"),
        ('entrypoint = "m:T"\nexclude = [1]', "Field `tool.detmodel.exclude` must be an array of strings"),
        ('entrypoint = "m:T"\nmax-size = "big"', "Field `tool.detmodel.max-size` must be a positive integer"),
        ('entrypoint = "m:T"\nmax-size = true', "Field `tool.detmodel.max-size` must be a positive integer"),
        ('entrypoint = "m:T"\nmax-size = -1', "Field `tool.detmodel.max-size` must be a positive integer"),
        ('entrypoint = "m:T"\ncompression-level = 10', "Field `tool.detmodel.compression-level` must be an integer from 0"),
        ('entrypoint = "m:T"\ncompression-level = true', "Field `tool.detmodel.compression-level` must be an integer"),
        ('entrypoint = "m:T"\nentry-point = "x"', "Field `tool.detmodel.entry-point` is not a known option"),
        ('entrypoint = "m:T"\npath = "missing"', "Field `tool.detmodel.path` names a directory that does not exist"),
        ('entrypoint = "m:T"\npath = "model_def.py"', "Field `tool.detmodel.path` must name a directory"),
        ('entrypoint = "m:T"\npath = ".."', "Field `tool.detmodel.path` points outside the project root"),
        ('entrypoint = "m:T"\npath = "/tmp"', "Field `tool.detmodel.path` must be relative"),
        ('entrypoint = "m:T"\nmodels = 3', "Field `tool.detmodel.models` must be a table"),
        ('entrypoint = " "', "Field `tool.detmodel.entrypoint` must not be empty"),
    ],
)
def test_top_level_errors_name_the_field(make_project: ProjectFactory, body: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(make_project(detmodel=body))
    assert message in str(caught.value)
    assert str(caught.value).startswith("pyproject.toml: ")


@pytest.mark.parametrize(
    ("model_body", "message"),
    [
        ("path = 1", "Field `tool.detmodel.models.cifar.path` must be a string"),
        ('path = "."\nflavour = 1', "Field `tool.detmodel.models.cifar.flavour` is not a known option"),
        ('path = "."\nmodels = {}', "Field `tool.detmodel.models.cifar.models` is not a known option"),
        ('path = "nowhere"', "Field `tool.detmodel.models.cifar.path` names a directory that does not exist"),
        ("max-size = 0", "Field `tool.detmodel.models.cifar.max-size` must be a positive integer"),
    ],
)
def test_model_errors_name_the_model_field(make_project: ProjectFactory, model_body: str, message: str) -> None:
    root = make_project(detmodel=f'[tool.detmodel]\nentrypoint = "m:T"\n[tool.detmodel.models.cifar]\n{model_body}\n')
    with pytest.raises(ConfigError) as caught:
        load(root)
    assert message in str(caught.value)


def test_missing_entrypoint_in_named_model(make_project: ProjectFactory) -> None:
    root = make_project(detmodel='[tool.detmodel.models.cifar]\npath = "."\n')
    with pytest.raises(ConfigError, match=r"Field `tool\.detmodel\.models\.cifar\.entrypoint` is required"):
        load(root)


def test_missing_table_and_bad_toml(make_project: ProjectFactory, tmp_path: Path) -> None:
    root = make_project(detmodel="[tool.other]\nx = 1")
    with pytest.raises(ConfigError, match=r"no \[tool.detmodel\] table"):
        load(root)
    (root / "pyproject.toml").write_text("[tool.detmodel\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(root)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"pyproject\.toml: not found"):
        load_project(empty, IDENTITY)


def test_bad_model_name(make_project: ProjectFactory) -> None:
    root = make_project(detmodel='[tool.detmodel]\nentrypoint = "m:T"\n[tool.detmodel.models."a/b"]\npath = "."\n')
    with pytest.raises(ConfigError, match="cannot be used in a file name"):
        load(root)


def test_ignore_file_outside_the_model_definition_is_refused(make_project: ProjectFactory) -> None:
    root = make_project(detmodel='entrypoint = "model_def:MyTrial"\ndetignore = "../outside"')
    with pytest.raises(ConfigError, match=r"Field `tool\.detmodel\.detignore` must name a file inside the model definition"):
        load(root)
