"""Entrypoint check: find the trial class (or the scripts of a command) an entrypoint names,
statically, among the packed files.

Nothing is imported. The object reference is followed through ``class`` definitions, assignments
and ``import``/``from … import`` statements inside the model definition; whatever static analysis
cannot follow (a call, a name from outside the model definition) is a warning, not an error.
"""

from __future__ import annotations

import ast
import re
import shlex
from typing import Iterator, NamedTuple, Sequence, Union

from .errors import EntrypointError
from .selection import Selection
from .shim import SHIM_MODULE, GeneratedFile, needs_shim, plan_shim

__all__ = ["EntrypointCheck", "TrialInfo", "check_entrypoint", "is_command", "may_generate_files", "parse_entrypoint"]

_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")
_MAX_HOPS = 64  # import chains longer than this are almost certainly cycles


class TrialInfo(NamedTuple):
    """What the manifest records under ``trial``."""

    module: str  # as declared; "" for the root package
    qualname: str
    path: str  # the module's file among the packed files
    bases: tuple[str, ...]  # as written in the class statement; empty when not statically known

    def to_json(self) -> dict[str, object]:
        return {"module": self.module, "qualname": self.qualname, "path": self.path, "bases": list(self.bases)}


class EntrypointCheck(NamedTuple):
    """The outcome: a trial class (``trial``) or a command (``command``), and what Determined should run."""

    trial: TrialInfo | None
    determined_entrypoint: str | list[str]
    command: tuple[str, ...] | None = None
    generated: tuple[GeneratedFile, ...] = ()
    warnings: tuple[str, ...] = ()
    #: where the class statement is, ``path:line`` (``None`` when it could not be followed)
    defined_at: str | None = None


def is_command(entrypoint: str | Sequence[str]) -> bool:
    """A list, or a string with whitespace, is a command; ``<module>:<ref>`` stays the default reading."""
    return not isinstance(entrypoint, str) or len(entrypoint.split()) > 1


def parse_entrypoint(entrypoint: str) -> tuple[str, str]:
    """Split ``<module>:<object reference>`` and validate both parts, with a fix in every message."""
    text = entrypoint.strip()
    if ":" not in text:
        raise EntrypointError(
            f"entrypoint {entrypoint!r}: expected `<module>:<TrialClass>`, e.g. `model_def:MyTrial` "
            "(or `:MyTrial` for a class exposed by the root __init__.py)"
        )
    module, _, qualname = text.partition(":")
    if ".." in module.replace("\\", "/").split("/") or module.startswith(("/", "\\")):
        raise EntrypointError(
            f"entrypoint {entrypoint!r}: `{module}` points outside the model definition; the module must be a "
            "file or package inside it, named with dots relative to its root (e.g. `pkg.model_def:MyTrial`)"
        )
    if module.endswith(".py") or "/" in module or "\\" in module:
        suggestion = module.replace("\\", "/")
        suggestion = suggestion[:-3] if suggestion.endswith(".py") else suggestion
        suggestion = suggestion.strip("/").replace("/", ".")
        if suggestion.endswith(".__init__"):
            suggestion = suggestion[: -len(".__init__")]
        raise EntrypointError(
            f"entrypoint {entrypoint!r}: `{module}` is a file path, but the entrypoint needs a module name; "
            f"use `{suggestion}:{qualname}`"
        )
    if module and not _DOTTED.match(module):
        raise EntrypointError(
            f"entrypoint {entrypoint!r}: `{module}` is not a Python module name (letters, digits, `_`, dots between parts)"
        )
    if not qualname or not _DOTTED.match(qualname):
        raise EntrypointError(
            f"entrypoint {entrypoint!r}: `{qualname}` is not a class reference; "
            "name the trial class after the colon, e.g. `model_def:MyTrial` or `pkg.mod:Outer.Inner`"
        )
    return module, qualname


class _ModuleRef(NamedTuple):
    name: str  # dotted module name relative to the root ("" = root package)
    path: str | None  # packed file, or None when the module is not part of the model definition


_Target = Union[ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef, _ModuleRef]


class _Resolver:
    """Follows references among the selected files, parsing each module once; collects warnings."""

    def __init__(self, selection: Selection) -> None:
        self.selection = selection
        self.warnings: list[str] = []
        self._trees: dict[str, ast.Module] = {}

    def module_file(self, dotted: str) -> str | None:
        base = dotted.replace(".", "/")
        candidates = ["__init__.py"] if not dotted else [f"{base}.py", f"{base}/__init__.py"]
        paths = self.selection.paths()
        for candidate in candidates:
            if candidate in paths:
                return candidate
        return None

    def tree(self, path: str) -> ast.Module:
        if path not in self._trees:
            selected = self.selection.get(path)
            assert selected is not None
            try:
                self._trees[path] = ast.parse(self.selection.read_bytes(selected), filename=path)
            except SyntaxError as error:
                raise EntrypointError(
                    f"{path}:{error.lineno}: syntax error ({error.msg}); fix the module the entrypoint names"
                ) from None
            except (OSError, ValueError) as error:
                raise EntrypointError(f"{path}: cannot be read as Python source ({error})") from None
        return self._trees[path]

    def bindings(self, body: list[ast.stmt]) -> dict[str, ast.stmt]:
        """The last statement binding each name in a block (descending into if/try/with)."""
        found: dict[str, ast.stmt] = {}
        for statement in _flatten(body):
            if isinstance(statement, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                found[statement.name] = statement
            elif isinstance(statement, ast.Assign):
                for target in statement.targets:
                    if isinstance(target, ast.Name):
                        found[target.id] = statement
            elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                if statement.value is not None:
                    found[statement.target.id] = statement
            elif isinstance(statement, (ast.Import, ast.ImportFrom)):
                for alias in statement.names:
                    if alias.name != "*":
                        found[alias.asname or alias.name.split(".")[0]] = statement
        return found

    def absolute(self, current: str, module: str | None, level: int) -> str:
        """The dotted name a (possibly relative) import refers to, from module ``current``."""
        if level == 0:
            return module or ""
        path = self.module_file(current) or ""
        package = current if path.endswith("__init__.py") else current.rpartition(".")[0]
        parts = package.split(".") if package else []
        if level - 1 > len(parts):
            raise EntrypointError(f"{path}: relative import goes above the model-definition root")
        parts = parts[: len(parts) - (level - 1)]
        if module:
            parts.append(module)
        return ".".join(parts)

    def module_ref(self, dotted: str) -> _ModuleRef:
        return _ModuleRef(dotted, self.module_file(dotted))

    def lookup(self, module: _ModuleRef, names: list[str], hops: int) -> tuple[_Target | None, str]:
        """Follow ``names`` from ``module``; returns the target and the path:line for messages."""
        if hops > _MAX_HOPS:
            raise EntrypointError(f"{module.path}: import chain too long while resolving `{'.'.join(names)}` (a cycle?)")
        if not names:
            return module, module.path or module.name
        if module.path is None:
            self.warnings.append(
                f"`{'.'.join(names)}` comes from module `{module.name}`, which is not part of the model definition; "
                "it was not checked"
            )
            return None, module.name
        tree = self.tree(module.path)
        binding = self.bindings(tree.body).get(names[0])
        if binding is None:
            submodule = f"{module.name}.{names[0]}" if module.name else names[0]
            if self.module_file(submodule) is not None:
                return self.lookup(self.module_ref(submodule), names[1:], hops + 1)
            for star in _star_imports(tree.body):
                target = self.module_ref(self.absolute(module.name, star.module, star.level))
                if target.path is not None and names[0] in self.bindings(self.tree(target.path).body):
                    return self.lookup(target, names, hops + 1)
            return self.not_found(module.path, tree, names[0])
        return self.follow(module, binding, names, hops)

    def follow(self, module: _ModuleRef, binding: ast.stmt, names: list[str], hops: int) -> tuple[_Target | None, str]:
        assert module.path is not None
        where = f"{module.path}:{binding.lineno}"
        name, rest = names[0], names[1:]
        if isinstance(binding, ast.ClassDef):
            if not rest:
                return binding, where
            inner = self.bindings(binding.body).get(rest[0])
            if inner is None:
                return self.not_found(f"{where} (class {name})", binding, rest[0])
            return self.follow(module, inner, rest, hops + 1)
        if isinstance(binding, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return binding, where
        if isinstance(binding, ast.Import):
            for alias in binding.names:
                if alias.asname == name:
                    return self.lookup(self.module_ref(alias.name), rest, hops + 1)
                if alias.asname is None and alias.name.split(".")[0] == name:
                    return self.lookup(self.module_ref(name), rest, hops + 1)
        if isinstance(binding, ast.ImportFrom):
            for alias in binding.names:
                if (alias.asname or alias.name) != name:
                    continue
                source = self.absolute(module.name, binding.module, binding.level)
                submodule = f"{source}.{alias.name}" if source else alias.name
                if self.module_file(submodule) is not None:
                    return self.lookup(self.module_ref(submodule), rest, hops + 1)
                return self.lookup(self.module_ref(source), [alias.name, *rest], hops + 1)
        if isinstance(binding, (ast.Assign, ast.AnnAssign)):
            value = binding.value
            chain = _attribute_chain(value) if value is not None else None
            if chain is not None:
                return self.lookup(module, [*chain, *rest], hops + 1)
            self.warnings.append(
                f"{where}: `{name}` is created by an expression static analysis cannot follow; "
                "the entrypoint was not fully checked"
            )
            return None, where
        return None, where

    def not_found(self, where: str, scope: ast.Module | ast.ClassDef, name: str) -> tuple[_Target | None, str]:
        classes = sorted(n for n, b in self.bindings(scope.body).items() if isinstance(b, ast.ClassDef))
        listing = ", ".join(classes) if classes else "none"
        raise EntrypointError(f"{where}: class `{name}` not found; classes defined there: {listing}")


def _flatten(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements of a block in order, with the bodies of if/try/with blocks spliced in."""
    for statement in body:
        if isinstance(statement, ast.If):
            yield from _flatten(statement.body)
            yield from _flatten(statement.orelse)
        elif isinstance(statement, ast.Try):
            yield from _flatten(statement.body)
            for handler in statement.handlers:
                yield from _flatten(handler.body)
            yield from _flatten(statement.orelse)
            yield from _flatten(statement.finalbody)
        elif isinstance(statement, (ast.With, ast.AsyncWith)):
            yield from _flatten(statement.body)
        else:
            yield statement


def _star_imports(body: list[ast.stmt]) -> list[ast.ImportFrom]:
    return [s for s in _flatten(body) if isinstance(s, ast.ImportFrom) and any(a.name == "*" for a in s.names)]


def _attribute_chain(node: ast.expr) -> list[str] | None:
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        names.append(node.id)
        return names[::-1]
    return None


def may_generate_files(entrypoint: str | Sequence[str]) -> bool:
    """Whether checking ``entrypoint`` can add a generated module to the archive (see :mod:`.shim`);
    known from its form alone, before any file is selected."""
    if is_command(entrypoint):
        return False
    assert isinstance(entrypoint, str)
    try:
        module, _ = parse_entrypoint(entrypoint)
    except EntrypointError:
        return True  # the check reports it
    return needs_shim(entrypoint.strip(), module)


def check_entrypoint(
    entrypoint: str | Sequence[str], selection: Selection, package_name: str = "model_definition"
) -> EntrypointCheck:
    """Check that ``entrypoint`` names a class (or scripts) among the packed files; raise with a fix if not.

    ``package_name`` is the import name the root package gets for the ``:Class`` form.
    """
    if is_command(entrypoint):
        return _check_command(entrypoint, selection)
    assert isinstance(entrypoint, str)
    module, qualname = parse_entrypoint(entrypoint)
    resolver = _Resolver(selection)
    path = resolver.module_file(module)
    if path is None:
        raise EntrypointError(_missing_module_message(entrypoint, module, selection))
    target, where = resolver.lookup(_ModuleRef(module, path), qualname.split("."), 0)
    bases: tuple[str, ...] = ()
    defined_at: str | None = None
    if isinstance(target, ast.ClassDef):
        bases = tuple(ast.unparse(base) for base in target.bases)
        defined_at = where
    elif isinstance(target, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise EntrypointError(
            f"{where}: `{target.name}` is a function, but the entrypoint must name a trial class"
        )
    elif isinstance(target, _ModuleRef):
        raise EntrypointError(
            f"entrypoint {entrypoint!r}: `{qualname}` is a module ({target.path}), not a class; "
            "name the class inside it, e.g. `pkg.module:TrialClass`"
        )
    shim = selection.get(f"{SHIM_MODULE}.py")
    existing = None if shim is None else selection.read_bytes(shim)
    determined_entrypoint, generated = plan_shim(
        entrypoint.strip(), module, qualname, package_name, selection.paths(), existing
    )
    return EntrypointCheck(
        trial=TrialInfo(module=module, qualname=qualname, path=path, bases=bases),
        determined_entrypoint=determined_entrypoint,
        generated=(generated,) if generated is not None else (),
        warnings=tuple(resolver.warnings),
        defined_at=defined_at,
    )


def _check_command(entrypoint: str | Sequence[str], selection: Selection) -> EntrypointCheck:
    """Every ``*.py`` argument and every ``-m`` module that lives in the model definition must be packed."""
    if isinstance(entrypoint, str):
        try:
            argv = tuple(shlex.split(entrypoint))
        except ValueError as error:
            raise EntrypointError(f"entrypoint {entrypoint!r}: cannot be split into arguments ({error})") from None
    else:
        argv = tuple(entrypoint)
    if not argv or not all(isinstance(a, str) and a for a in argv):
        raise EntrypointError("entrypoint: a command must be a non-empty list of non-empty strings")
    packed = selection.paths()
    problems: list[str] = []
    for index, arg in enumerate(argv):
        if arg == "-m" and index + 1 < len(argv):
            problems += _check_module_argument(argv[index + 1], selection)
        elif arg.startswith("-m") and len(arg) > 2 and index > 0:
            problems += _check_module_argument(arg[2:], selection)
        elif arg.endswith(".py") and not arg.startswith("-") and not arg.startswith("/") and index > 0:
            rel = arg[2:] if arg.startswith("./") else arg
            if ".." in rel.split("/"):
                problems.append(
                    f"script {arg}: lies outside the model definition, which is all Determined receives; move it inside"
                )
                continue
            if rel in packed:
                continue
            problems.append(_missing_file(rel, selection, f"script {arg}"))
    if problems:
        raise EntrypointError(f"entrypoint {entrypoint!r}:\n  " + "\n  ".join(problems))
    declared: str | list[str] = entrypoint if isinstance(entrypoint, str) else list(argv)
    return EntrypointCheck(trial=None, determined_entrypoint=declared, command=argv)


def _check_module_argument(module: str, selection: Selection) -> list[str]:
    if not _DOTTED.match(module):
        return []
    top = module.split(".")[0]
    root = selection.root
    if not ((root / f"{top}.py").exists() or (root / top).is_dir()):
        return []  # not part of the model definition (e.g. determined.launch.torch_distributed)
    base = module.replace(".", "/")
    packed = selection.paths()
    for candidate in (f"{base}.py", f"{base}/__init__.py", f"{base}/__main__.py"):
        if candidate in packed:
            return []
    for candidate in (f"{base}.py", f"{base}/__main__.py", f"{base}/__init__.py"):
        if (root / candidate).is_file():
            return [_missing_file(candidate, selection, f"module {module} (-m)")]
    return [f"module {module} (-m): no {base}.py or {base}/__init__.py in the model definition"]


def _missing_file(rel: str, selection: Selection, what: str) -> str:
    if (selection.root / rel).is_file():
        verdict = selection.selector.explain(rel)
        return (
            f"{what}: {rel} is not packed: excluded by {verdict.reason}; "
            f"remove that rule or add `!{rel}` to {selection.selector.model.detignore}"
        )
    return f"{what}: {rel} does not exist in the model definition"


def _missing_module_message(entrypoint: str, module: str, selection: Selection) -> str:
    base = module.replace(".", "/")
    candidates = ["__init__.py"] if not module else [f"{base}.py", f"{base}/__init__.py"]
    selector = selection.selector
    for candidate in candidates:
        if (selection.root / candidate).is_file():
            verdict = selector.explain(candidate)
            return (
                f"entrypoint {entrypoint!r}: module file {candidate} exists but is not packed: excluded by "
                f"{verdict.reason}; remove that rule or add `!{candidate}` to {selector.model.detignore}"
            )
    shown = " or ".join(candidates)
    top = sorted({p.split("/")[0].removesuffix(".py") for p in selection.paths() if p.endswith(".py")})
    hint = f"; Python modules at the root: {', '.join(top)}" if top else "; no Python files are packed at all"
    what = "the root package's __init__.py (the `:Class` form)" if not module else f"module `{module}`"
    return f"entrypoint {entrypoint!r}: {what} not found: no {shown} in {selection.root}{hint}"
