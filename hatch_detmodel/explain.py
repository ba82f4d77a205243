"""``explain``: for a path, packed or not and the rule that decided it, in the spirit of
``git check-ignore -v``. The verdicts come from the build's own :class:`~hatch_detmodel.selection.Selector`,
and a path the rules keep but a later guard refuses (a link leaving the root, a bad name, a FIFO,
a private key inside …) is reported with the guard's message, taken from the build's own selection
and content check.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Sequence

from .config import ModelConfig
from .errors import ConfigError, SelectionError
from .selection import Selector, Verdict, select_files

__all__ = ["Explanation", "explain_all", "explain_paths", "relative_to_root"]


@dataclass(frozen=True)
class Explanation:
    model: str
    path: str  # POSIX, relative to the model-definition root; a pruned folder ends with "/"
    packed: bool
    reason: str  # the deciding rule, e.g. ".detignore:3: data/", or a built-in guard
    source: str | None = None  # ".detignore", "exclude", "built-in default" when a pattern decided
    line: int | None = None
    pattern: str | None = None
    refused: str | None = None  # the guard that stops the build on this path

    @property
    def status(self) -> str:
        if self.refused is not None:
            return "refused"
        return "packed" if self.packed else "excluded"

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "path": self.path,
            "status": self.status,
            "packed": self.packed and self.refused is None,
            "reason": self.refused or self.reason,
            "rule": None if self.source is None else {"source": self.source, "line": self.line, "pattern": self.pattern},
        }


def _explanation(model: ModelConfig, verdict: Verdict, shown: str, refused: dict[str, str]) -> Explanation:
    rule = verdict.rule
    return Explanation(
        model=model.name,
        path=shown,
        packed=verdict.packed,
        reason=verdict.reason,
        source=rule.source if rule is not None else None,
        line=rule.line if rule is not None else None,
        pattern=rule.pattern if rule is not None else None,
        refused=refused.get(shown.rstrip("/")) if verdict.packed else None,
    )


def _refusals(model: ModelConfig, output_dir: Path | None, asked: Collection[str] | None = None) -> dict[str, str]:
    """Run the build's selection, then its content check on the kept files (those in ``asked``, when
    given); map each path the build refuses to the guard's message. As in the build, contents are
    looked at only once the names pass."""
    try:
        selection = select_files(model, output_dir)
    except SelectionError as error:
        return {path.rstrip("/"): message for path, message in error.problems.items()}
    scanner = selection.guard.scanner()
    for selected in selection.files:
        if asked is None or selected.path in asked:
            scanner.scan_file(selected.path, selected.source)
    return dict(scanner.found)


def relative_to_root(model: ModelConfig, path: str, cwd: Path) -> str:
    """A path as given on the command line, relative to the model root: absolute paths and paths
    that exist relative to ``cwd`` are taken as such; any other relative path is root-relative."""
    given = Path(path)
    candidate = given if given.is_absolute() else cwd / given
    if given.is_absolute() or os.path.lexists(candidate):
        for form in (Path(os.path.abspath(candidate)), candidate.resolve()):
            try:
                rel = form.relative_to(model.root)
            except ValueError:
                continue
            return rel.as_posix() if rel.parts else "."
        if given.is_absolute():
            raise ConfigError(f"{path}: is outside the model definition {model.root}; pass a path inside it")
    return given.as_posix()


def explain_paths(model: ModelConfig, paths: Sequence[str], *, output_dir: Path | None = None,
                  cwd: Path | None = None) -> list[Explanation]:
    """The verdict for each path (which need not exist, as with ``git check-ignore --no-index``)."""
    selector = Selector(model, output_dir)
    here = cwd or Path.cwd()
    rels = [relative_to_root(model, path, here) for path in paths]
    refused = _refusals(model, output_dir, {rel.rstrip("/") for rel in rels})
    return [_explanation(model, selector.explain(rel), rel, refused) for rel in rels]


def explain_all(model: ModelConfig, *, output_dir: Path | None = None) -> list[Explanation]:
    """Every file the build's walk sees, with its verdict; an excluded folder is one entry (``dir/``),
    since its contents are never walked."""
    selector = Selector(model, output_dir)
    refused = _refusals(model, output_dir)
    result = []
    try:
        for rel, _entry, is_dir, packed, _folder, _plain in selector.walk():
            text = rel.decode("utf-8", "backslashreplace")
            if is_dir and packed and text not in refused:
                continue  # its files follow
            shown = text + ("/" if is_dir else "")
            result.append(_explanation(model, selector.decide(rel, is_dir), shown, refused))
    except SelectionError:
        pass  # an unlistable folder: already among the refusals
    return sorted(result, key=lambda e: e.path.encode("utf-8", "surrogateescape"))
