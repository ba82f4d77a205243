"""Differential test against Determined 0.38.1's own upload code (``read_v1_context``).

Our selection equals git's (``test_ignore_git``); where Determined's differs, each differing file
must be explained by one of the documented departures (README, "Compatibility with Determined"),
so a new kind of difference fails this test.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import tarfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings

from hatch_detmodel import build
from hatch_detmodel.config import ProjectIdentity
from hatch_detmodel.errors import SizeLimitError
from hatch_detmodel.ignore import RuleSet, parse_ignore_lines, parse_pattern_list
from hatch_detmodel.selection import BUILTIN_DEFAULTS

from .conftest import IN_CI, ProjectFactory, require_module
from .test_ignore_git import ours_kept
from .trees import ignore_files, materialize, trees

IDENTITY = ProjectIdentity("sized", "1.0")
EXAMPLES = int(os.environ.get("DETMODEL_DET_EXAMPLES", "1500" if IN_CI else "300"))

#: The documented departures (README "Compatibility with Determined"), by the name the classifier gives.
DOCUMENTED = {
    # `/*` + `!/keep/`: Determined prunes `keep` because `/*` matches "keep" tested as a file path.
    "directory tested as a file path",
    # `!a/` or `!a` re-include files inside `a` (pathspec matches descendants); git only the folder.
    "pattern matching a folder applies to the files inside",
    # `x<TAB>`: git keeps trailing tabs (only spaces are trimmed); pathspec strips all whitespace.
    "pattern syntax: trailing whitespace",
    # `[[:digit:]]` is a POSIX class in git, a literal bracket set in pathspec.
    "pattern syntax: POSIX character class",
    # `?` and `[é]`: git matches one byte, pathspec one Unicode character.
    "pattern syntax: non-ASCII with ? or [ ]",
    # `a/**/`: git matches folders inside `a` only; pathspec reads it as `a/`, files directly inside too.
    "pattern syntax: trailing /**/",
}

#: Determined's pathspec raises on some patterns git accepts (e.g. `!a/\\ `): the upload fails.
REJECTED = "pattern Determined rejects"
DEPARTURES: Counter[str] = Counter()
TREES_COMPARED = 0


def determined_kept(root: Path) -> set[str] | None:
    """Determined's kept regular files, or ``None`` when Determined refuses the ignore file outright."""
    from determined.common.context import read_v1_context
    from pathspec.patterns.gitignore.base import GitIgnorePatternError

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints progress lines
            files = read_v1_context(root)
    except GitIgnorePatternError:
        return None
    return {f.path for f in files if f.type == ord(tarfile.REGTYPE)}


class Classifier:
    """Why does Determined's decision for a file differ from git's?"""

    def __init__(self, root: Path, ignore_text: str) -> None:
        import pathspec
        from pathspec.patterns import GitWildMatchPattern

        lines = list(BUILTIN_DEFAULTS) + ignore_text.splitlines(keepends=True)
        self.det_patterns = [GitWildMatchPattern(line) for line in lines]
        self.spec = pathspec.PathSpec(self.det_patterns)
        self.git = RuleSet(
            parse_pattern_list(BUILTIN_DEFAULTS, "built-in default")
            + parse_ignore_lines(ignore_text.encode(), ".detignore")
        )
        self.ignore_text = ignore_text

    def git_ignored(self, rel: str, is_dir: bool) -> bool:
        return self.git.is_ignored(rel.encode(), is_dir)

    def det_pruned(self, rel: str) -> bool:
        return self.spec.match_file(rel) or self.spec.match_file(rel + "/")

    def classify(self, path: str) -> str:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            directory = "/".join(parts[:depth])
            git_ignored, det_ignored = self.git_ignored(directory, True), self.det_pruned(directory)
            if git_ignored == det_ignored:
                continue
            feature = self.syntax_feature(directory, is_dir=True)
            if feature:
                return feature
            if det_ignored and self.spec.match_file(directory) and self.git_ignored(directory, False):
                return "directory tested as a file path"
            if det_ignored and self.spec.match_file(directory + "/"):
                return "directory tested with a trailing slash"
            return f"unexplained directory difference at {directory}/"
        return self.syntax_feature(path, is_dir=False) or f"unexplained file difference at {path}"

    def syntax_feature(self, rel: str, is_dir: bool) -> str | None:
        """A pattern matching ``rel`` differently in git and pathspec, named by its syntax feature."""
        from pathspec.patterns import GitWildMatchPattern

        for line in self.ignore_text.splitlines():
            ours = RuleSet(parse_ignore_lines(line.encode() + b"\n", ".detignore"))
            theirs = GitWildMatchPattern(line)
            path = rel.encode()
            git_match = ours.match(path, is_dir) is not None
            det_match = theirs.match_file(rel) is not None or (is_dir and theirs.match_file(rel + "/") is not None)
            if git_match != det_match:
                parents = rel.split("/")[:-1]
                matches_a_parent = any(
                    ours.match("/".join(parents[: i + 1]).encode(), True) is not None for i in range(len(parents))
                )
                if det_match and matches_a_parent:
                    return "pattern matching a folder applies to the files inside"
                return _feature_of(line, rel)
        return None


def _feature_of(pattern: str, rel: str) -> str:
    body = pattern.lstrip("!")
    if body != body.rstrip(" \t") or body.endswith("\\ "):
        return "pattern syntax: trailing whitespace"
    if "[[:" in body:
        return "pattern syntax: POSIX character class"
    if not rel.isascii() and ("?" in body or "[" in body):
        return "pattern syntax: non-ASCII with ? or [ ]"
    if "\\" in body:
        return "pattern syntax: escape"
    if "[" in body:
        return "pattern syntax: bracket expression"
    if body.endswith("/**/"):
        return "pattern syntax: trailing /**/"
    stripped = body.strip("/")
    if "**" in stripped and any(len(seg) > 2 and "**" in seg for seg in stripped.split("/")):
        return "pattern syntax: ** inside a name"
    return f"pattern syntax: unknown ({pattern!r})"


def compare_with_determined(base: Path, files: list[str], ignore_text: str) -> None:
    global TREES_COMPARED
    root = base / "tree"
    materialize(root, files, ignore_text)
    ours = ours_kept(root)
    theirs = determined_kept(root)
    TREES_COMPARED += 1
    if theirs is None:
        DEPARTURES[REJECTED] += 1
        return
    if ours == theirs:
        return
    classifier = Classifier(root, ignore_text)
    for path in sorted(ours ^ theirs):
        kind = classifier.classify(path)
        DEPARTURES[kind] += 1
        assert kind in DOCUMENTED, (
            f"undocumented departure from Determined: {kind}\nignore file:\n{ignore_text!r}\ntree: {files}\n"
            f"only ours: {sorted(ours - theirs)}\nonly Determined: {sorted(theirs - ours)}"
        )


@pytest.fixture(scope="module", autouse=True)
def _determined() -> None:
    require_module("determined")


_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


@pytest.mark.parametrize(
    ("files", "ignore_text", "kind"),
    [
        (["keep/a", "other/b", "c"], "/*\n!/keep/\n", "directory tested as a file path"),
        (["top.py", "sub/c.py", "sub/d.txt"], "*\n!*.py\n!*/\n", "directory tested as a file path"),
        (["a/terraform", "b"], "!a/\n", "pattern matching a folder applies to the files inside"),
        (["a/terraform", "b"], "!a\n", "pattern matching a folder applies to the files inside"),
        (["x", "y"], "x\t\n", "pattern syntax: trailing whitespace"),
        (["ab", "a1"], "a[[:digit:]]\n", "pattern syntax: POSIX character class"),
        (["é", "e"], "?\n", "pattern syntax: non-ASCII with ? or [ ]"),
        (["a/a", "a/b/c", "d"], "a/**/\n", "pattern syntax: trailing /**/"),
        (["x y", "x"], "x\\ \n", REJECTED),
        (["a/b/c.py", "a/x.py"], "a/\n!a/x.py\n", None),  # both keep git's rule here
    ],
)
def test_documented_examples(tmp_path: Path, files: list[str], ignore_text: str, kind: str | None) -> None:
    """The README's examples: each shows the departure it documents (or none)."""
    root = tmp_path / "tree"
    materialize(root, files, ignore_text)
    ours, theirs = ours_kept(root), determined_kept(root)
    if kind == REJECTED:
        assert theirs is None
        return
    assert theirs is not None
    if kind is None:
        assert ours == theirs
        return
    assert ours != theirs
    classifier = Classifier(root, ignore_text)
    assert {classifier.classify(p) for p in ours ^ theirs} == {kind}


@seed(20261128)
@_settings
@given(files=trees(), ignore_text=ignore_files)
def test_matches_determined_fixed_seed(tmp_path: Path, files: list[str], ignore_text: str) -> None:
    compare_with_determined(tmp_path, files, ignore_text)


RANDOM_SEED = random.SystemRandom().randrange(2**32)


@seed(RANDOM_SEED)
@_settings
@given(files=trees(), ignore_text=ignore_files)
def test_matches_determined_random_seed(tmp_path: Path, files: list[str], ignore_text: str) -> None:
    print(f"hypothesis seed {RANDOM_SEED}")
    compare_with_determined(tmp_path, files, ignore_text)


def test_report_departures(capsys: pytest.CaptureFixture[str]) -> None:
    """Prints the counts for the closing note; runs after the property tests (file order)."""
    with capsys.disabled():
        print(f"\nDetermined differential: {TREES_COMPARED} trees, departures by kind: {dict(DEPARTURES)}")



def test_size_limit_is_determined_own_check_on_the_unpacked_artifact(make_project: ProjectFactory, tmp_path: Path) -> None:
    """max-size = T (Determined's total for the unpacked artifact, manifest and generated module
    included) passes both our build and read_v1_context(limit=T); T - 1 fails both."""
    from determined.common import v1file_utils
    from determined.common.context import read_v1_context

    files: dict[str, str | bytes] = {"model/__init__.py": "class T: pass\n", "model/w.bin": b"\0" * 1001, "model/a.txt": "ab"}
    root = make_project(files=files, detmodel='entrypoint = ":T"\npath = "model"\nmax-size = false')
    archive, _ = build(root, tmp_path / "measure", identity=IDENTITY)
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    with tarfile.open(archive) as tar:
        assert "_detmodel_entrypoint.py" in tar.getnames()
        tar.extractall(unpacked, filter="data")
    with contextlib.redirect_stdout(io.StringIO()):
        total = sum(v1file_utils.v1File_size(f) for f in read_v1_context(unpacked))
    pyproject = root / "pyproject.toml"  # outside the model definition, so editing it changes nothing packed
    pyproject.write_text(pyproject.read_text().replace("max-size = false", f"max-size = {total}"))
    again, _ = build(root, tmp_path / "at-limit", identity=IDENTITY)
    assert again.read_bytes() == archive.read_bytes()
    with contextlib.redirect_stdout(io.StringIO()):
        read_v1_context(unpacked, limit=total)
    pyproject.write_text(pyproject.read_text().replace(f"max-size = {total}", f"max-size = {total - 1}"))
    with pytest.raises(SizeLimitError):
        build(root, tmp_path / "over", identity=IDENTITY)
    with pytest.raises(ValueError, match="exceeds"), contextlib.redirect_stdout(io.StringIO()):
        read_v1_context(unpacked, limit=total - 1)
