"""Command line ``hatch-detmodel`` (also ``python -m hatch_detmodel``).

This module only parses arguments, calls the library (:mod:`~hatch_detmodel.pipeline`,
:mod:`~hatch_detmodel.reader`, :mod:`~hatch_detmodel.compare`, :mod:`~hatch_detmodel.explain`,
:mod:`~hatch_detmodel.unpack`, :mod:`~hatch_detmodel.check`, :mod:`~hatch_detmodel.attest`) and
formats what comes back: aligned text for people, or with ``--json`` one JSON document on stdout.

Exit codes: 0 ok or same, 1 a check failed or a difference was found, 2 bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Sequence

from . import __version__
from .errors import DetmodelError
from .pipeline import BuiltArtifact, Reporter, build_models, collector_paused
from .progress import Progress

if TYPE_CHECKING:
    from .reader import ArtifactReport, Limits, Problem, VerificationFailed

# The reader is imported by the verbs that read an artifact: `build` starts without it.
#: :data:`~hatch_detmodel.reader.DEFAULT_LIMITS`'s ``max_total``, for the help text (a test compares them).
DEFAULT_MAX_BYTES = 1 << 30

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "main", "run"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_EXIT_CODES = "exit codes: 0 ok or same, 1 a check failed or a difference was found, 2 bad usage or unreadable input"


class _StderrReporter(Reporter):
    """The pipeline's messages: info lines only for people (not with --json), warnings always."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def info(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr)


# --- output helpers ------------------------------------------------------------------------------


def _emit_json(document: object) -> None:
    print(json.dumps(document, indent=2, ensure_ascii=False, sort_keys=False))


def _table(rows: Sequence[Sequence[str]], indent: str = "  ", right: Sequence[int] = ()) -> list[str]:
    """Columns padded to their widest cell (right-aligned for the ``right`` column indexes); the last
    column is never padded."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell if i == len(row) - 1 else cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append((indent + "  ".join(cells)).rstrip())
    return lines


def _problem_lines(problems: Sequence[Problem]) -> list[str]:
    return _table([(p.code, p.message) for p in problems])


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _limits(args: argparse.Namespace) -> Limits:
    from .reader import DEFAULT_LIMITS, Limits

    max_bytes = getattr(args, "max_bytes", None)
    return DEFAULT_LIMITS if max_bytes is None else Limits(max_total=max_bytes)


def _read(path: str, args: argparse.Namespace, **kwargs: Any) -> ArtifactReport:
    from .reader import read_artifact

    progress = Progress(f"reading {path}")
    try:
        return read_artifact(path, _limits(args), on_progress=progress.bytes, **kwargs)
    finally:
        progress.done()


# --- verbs -----------------------------------------------------------------------------------------


def _cmd_build(args: argparse.Namespace) -> int:
    from .config import load_project

    project = load_project(args.project)
    output = Path(args.output) if args.output else project.root / "dist"
    shown = Path(args.output) if args.output else Path(args.project) / "dist"  # as the user named it
    # Paused until the artifacts are printed and freed, as `pipeline.build` does: no collector pass
    # over their file records.
    with collector_paused():
        _print_built(build_models(project, output, project.select(args.model), _StderrReporter(args.json)), shown, args.json)
    return EXIT_OK


def _print_built(built: list[BuiltArtifact], shown: Path, as_json: bool) -> None:
    if as_json:
        _emit_json([
            {
                "model": a.model,
                "archive": str(shown / a.archive.name),
                "sidecar": str(shown / a.sidecar.name),
                "sha256": a.archive_record.sha256,
                "content_digest": a.manifest.content_digest,
            }
            for a in built
        ])
    else:
        for artifact in built:
            print(shown / artifact.archive.name)
            print(shown / artifact.sidecar.name)


def _entrypoint_text(entrypoint: str | Sequence[str] | None) -> str:
    if entrypoint is None:
        return "-"
    return entrypoint if isinstance(entrypoint, str) else shlex.join(entrypoint)


def _trial_text(trial: Any) -> str:
    if not isinstance(trial, dict):
        return "none: the entrypoint is a command"
    bases = ", ".join(trial.get("bases") or [])
    return f"{trial.get('qualname')}({bases}) in {trial.get('path')}"


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .summary import summarize

    report = _read(args.artifact, args)
    summary = summarize(report, top=args.top)
    if args.json:
        _emit_json({**summary.to_json(), "report": report.to_json()})
        return EXIT_OK if report.ok else EXIT_FAILED
    share = 100 * summary.determined_size / summary.limit
    rows = [
        ("artifact", f"{summary.artifact}"),
        ("archive", f"{summary.archive_size:,} bytes, sha256 {summary.archive_sha256}"),
        ("project", f"{summary.project} {summary.version}"),
        ("model", summary.model),
        ("entrypoint", _entrypoint_text(summary.entrypoint)),
        *([("Determined runs", _entrypoint_text(summary.determined_entrypoint))]
          if summary.determined_entrypoint != summary.entrypoint else []),
        ("trial", _trial_text(summary.trial)),
        ("files", f"{_plural(len(summary.files), 'file')}, {summary.content_size:,} bytes"),
        ("Determined size", f"{summary.determined_size:,} of {summary.limit:,} bytes ({share:.2f}% of the limit)"),
        ("content digest", summary.content_digest),
        ("built by", f"{summary.builder}, SOURCE_DATE_EPOCH={summary.source_date_epoch}"),
        ("verified", "yes" if report.ok else f"NO, {_plural(len(report.problems), 'problem')} (see below)"),
    ]
    print("\n".join(_table(rows, indent="")))
    if summary.largest:
        print(f"\nlargest files (of {len(summary.files):,})")
        print("\n".join(_table([(f"{f.size:,}", f.mode, f.path) for f in summary.largest], right=(0,))))
    if not report.ok:
        print("\nproblems")
        print("\n".join(_problem_lines(report.problems)))
    return EXIT_OK if report.ok else EXIT_FAILED


def _cmd_verify(args: argparse.Namespace) -> int:
    from .compare import check_source
    from .reader import VerificationFailed

    report = _read(args.artifact, args, sidecar=args.sidecar, use_sidecar=not args.no_sidecar)
    source = None
    if args.source is not None:
        if report.manifest is None:
            raise VerificationFailed(report, "; it has no manifest to rebuild from")
        source = check_source(report, args.source, _StderrReporter(True))
    ok = report.ok and (source is None or not source.problems)
    if args.json:
        _emit_json({**report.to_json(), "ok": ok, "source": source.to_json() if source is not None else None})
        return EXIT_OK if ok else EXIT_FAILED
    manifest = report.manifest
    if report.ok:
        files = _plural(len(manifest.files), "file") if manifest is not None else "no files"
        how = "archive hash matches the sidecar" if report.sidecar is not None else "no sidecar checked"
        print(f"{args.artifact}: OK ({files}, {how})")
        if manifest is not None:
            print(f"  content digest  {manifest.content_digest}")
    else:
        print(f"{args.artifact}: FAILED, {_plural(len(report.problems), 'problem')}")
        print("\n".join(_problem_lines(report.problems)))
        print("  fix: the artifact changed after it was built; rebuild it (or fetch it again) and do not use this copy")
    for note in report.notes:
        print(f"  note: {note}")
    if source is not None:
        if not source.problems:
            identical = "byte-identical archive" if source.byte_identical else "archive bytes differ (another zlib?)"
            print(f"{args.source}: rebuilds the same content ({identical})")
        else:
            print(f"{args.source}: does NOT rebuild this artifact, {_plural(len(source.problems), 'difference')}")
            print("\n".join(_problem_lines(source.problems)))
        for note in source.notes:
            print(f"  note: {note}")
    return EXIT_OK if ok else EXIT_FAILED


def _record_text(record: Any) -> str:
    return f"{record.size:,} bytes" if record is not None else "-"


def _value_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value


def _cmd_diff(args: argparse.Namespace) -> int:
    from .compare import diff, load_sides

    reporter = _StderrReporter(True)
    sides = []
    for path in (args.a, args.b):
        progress = Progress(f"reading {path}")
        try:
            sides.append(load_sides(path, model=args.model, limits=_limits(args), reporter=reporter,
                                    on_progress=progress.bytes))
        finally:
            progress.done()
    result = diff(sides[0], sides[1], args.a, args.b)
    if args.json:
        _emit_json(result.to_json())
        return EXIT_OK if result.same else EXIT_FAILED
    print(f"--- {args.a}\n+++ {args.b}")
    for comparison in result.comparisons:
        rows: list[tuple[str, str, str]] = []
        for change in comparison.files:
            if change.status == "changed":
                assert change.a is not None and change.b is not None
                detail = f"{change.a.size:,} → {change.b.size:,} bytes"
                if change.a.mode != change.b.mode:
                    detail += f", mode {change.a.mode} → {change.b.mode}"
            else:
                detail = _record_text(change.a or change.b)
            rows.append((change.status, change.path, detail))
        for field in comparison.fields:
            rows.append(("field", field.field, f"{_value_text(field.a)} → {_value_text(field.b)}"))
        counts = {s: sum(1 for c in comparison.files if c.status == s) for s in ("added", "removed", "changed")}
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        fields = _plural(len(comparison.fields), "field") + " changed" if comparison.fields else ""
        verdict = "same" if comparison.same else "; ".join(x for x in (summary and f"files: {summary}", fields) if x)
        print(f"model {comparison.model}: {verdict}")
        if rows:
            print("\n".join(_table(rows)))
    for name in result.only_in_a:
        print(f"model {name}: only in {args.a}")
    for name in result.only_in_b:
        print(f"model {name}: only in {args.b}")
    return EXIT_OK if result.same else EXIT_FAILED


def _cmd_explain(args: argparse.Namespace) -> int:
    from .config import load_project
    from .explain import explain_all, explain_paths

    if args.all == bool(args.paths):
        raise _UsageError("explain: pass PATH… or --all (not both)")
    project = load_project(args.project)
    output = Path(args.output).resolve() if args.output else project.root / "dist"
    models = project.select(args.model)
    found = []
    for model in models:
        if args.all:
            found += explain_all(model, output_dir=output)
        else:
            found += explain_paths(model, args.paths, output_dir=output)
    refused = any(e.refused for e in found)
    if args.json:
        _emit_json({"project": args.project, "explanations": [e.to_json() for e in found]})
        return EXIT_FAILED if refused else EXIT_OK
    several = len(models) > 1
    rows = [
        ((e.model,) if several else ()) + (e.status, e.path, e.refused or e.reason)
        for e in found
    ]
    print("\n".join(_table(rows, indent="")))
    return EXIT_FAILED if refused else EXIT_OK


def _cmd_unpack(args: argparse.Namespace) -> int:
    from .reader import VerificationFailed
    from .unpack import unpack_artifact

    report = _read(args.artifact, args)
    try:
        result = unpack_artifact(args.artifact, args.directory, force=args.force, limits=_limits(args), report=report)
    except VerificationFailed as error:
        return _verification_failed(args, error)
    if args.json:
        _emit_json(result.to_json())
    else:
        size = sum(f.size for f in result.files)
        print(f"{args.directory}: wrote {_plural(len(result.files), 'file')} ({size:,} bytes) from {args.artifact}")
        print(f"  content digest  {result.content_digest}")
    return EXIT_OK


def _verification_failed(args: argparse.Namespace, error: VerificationFailed) -> int:
    if args.json:
        _emit_json({"error": str(error), "report": error.report.to_json()})
    else:
        print(f"hatch-detmodel: {error}", file=sys.stderr)
        print("\n".join(_problem_lines(error.report.problems)), file=sys.stderr)
    return EXIT_FAILED


def _import_lines(imported: Any) -> list[tuple[str, str]]:
    if imported.ok:
        rows = [("import", f"{imported.class_name} (loaded by {imported.loader})")]
        rows.append(("bases", " → ".join(imported.mro_names[1:]) or "-"))
        if imported.file is None:
            rows.append(("warning", "the class was imported from outside the model definition"))
        else:
            rows.append(("from", imported.file))
        return rows
    rows = [("import", f"FAILED: {imported.error}")]
    if imported.loader:
        rows.append(("loader", imported.loader))
    if imported.class_name:
        rows.append(("class", f"{imported.class_name}, bases: {' → '.join(imported.mro_names[1:]) or '-'}"))
    tail = [line for line in imported.detail.strip().splitlines() if line.strip()][-6:]
    rows += [("", line) for line in tail]
    return rows


def _cmd_check(args: argparse.Namespace) -> int:
    from .check import check_artifact, check_project

    progress = Progress(f"checking {args.target}")

    def announce(entrypoint: str) -> None:
        progress.note(f"importing {entrypoint} in a child process…")

    try:
        if Path(args.target).is_dir():
            result = check_project(args.target, args.model, do_import=args.do_import, python=args.python,
                                   timeout=args.timeout, on_import=announce)
        else:
            result = check_artifact(args.target, do_import=args.do_import, python=args.python, timeout=args.timeout,
                                    limits=_limits(args), on_progress=progress.bytes, on_import=announce)
    finally:
        progress.done()
    code = EXIT_OK if result.ok else EXIT_FAILED
    if args.json:
        _emit_json(result.to_json())
        return code
    if result.problems:
        print(f"{args.target}: FAILED, the artifact does not verify ({_plural(len(result.problems), 'problem')})")
        print("\n".join(_problem_lines(result.problems)))
    for model in result.models:
        print(f"{args.target} (model {model.model}): {'OK' if model.ok else 'FAILED'}")
        rows: list[tuple[str, str]] = [("entrypoint", _entrypoint_text(model.entrypoint))]
        if model.determined_entrypoint is not None and model.determined_entrypoint != model.entrypoint:
            rows.append(("Determined runs", _entrypoint_text(model.determined_entrypoint)))
        if model.error is not None:
            lines = model.error.splitlines()
            rows += [("error", lines[0])] + [("", line) for line in lines[1:]]
        if model.trial is not None:
            rows.append(("trial", _trial_text(model.trial) + (f", line {model.defined_at.rsplit(':', 1)[-1]}"
                                                               if model.defined_at else "")))
        rows += [("warning", w) for w in model.warnings]
        if model.imported is not None:
            rows += _import_lines(model.imported)
        print("\n".join(_table(rows)))
    return code


def _cmd_attest(args: argparse.Namespace) -> int:
    from .attest import statement
    from .manifest import canonical_json
    from .reader import VerificationFailed

    report = _read(args.artifact, args)
    if not report.ok:
        return _verification_failed(args, VerificationFailed(report, "; no statement was made"))
    data = canonical_json(statement(report))
    if args.output:
        try:
            Path(args.output).write_bytes(data)
        except OSError as error:
            raise DetmodelError(f"{args.output}: cannot be written ({error.strerror})") from None
        if args.json:
            _emit_json({"statement": args.output, "subject": statement(report)["subject"]})
        else:
            print(f"{args.output}: in-toto Statement for {report.archive.name} (sha256 {report.archive.sha256})")
    else:
        sys.stdout.write(data.decode("utf-8"))
    return EXIT_OK


def _cmd_from_wheel(args: argparse.Namespace) -> int:
    try:
        from .wheel import extract_from_wheel  # written alongside; imported only when this verb runs
    except ImportError as error:
        raise DetmodelError(
            f"from-wheel: this installation of hatch-detmodel has no wheel support ({error}); upgrade hatch-detmodel"
        ) from None
    wheel = Path(args.wheel)
    output = Path(args.output) if args.output else wheel.parent
    paths = extract_from_wheel(wheel, output)
    reports = [_read(str(p), args) for p in paths if p.name.endswith(".detmodel.tgz")]
    ok = all(r.ok for r in reports)
    if args.json:
        _emit_json({"wheel": args.wheel, "written": [str(p) for p in paths], "verified": [r.to_json() for r in reports]})
    else:
        for path in paths:
            print(path)
        for report in reports:
            if not report.ok:
                print(f"{report.path}: FAILED verification, {_plural(len(report.problems), 'problem')}", file=sys.stderr)
                print("\n".join(_problem_lines(report.problems)), file=sys.stderr)
    return EXIT_OK if ok else EXIT_FAILED


# --- parser ----------------------------------------------------------------------------------------


class _UsageError(DetmodelError):
    """Arguments that parse but do not make sense together."""


def _byte_count(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of bytes") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


_VERBS: list[tuple[str, str, str]] = [
    ("build", "build the artifact(s) of a project, same bytes as `hatch build -t detmodel`",
     "0 built; 2 the project cannot be built (the message names the file, field or line and the fix)"),
    ("inspect", "show what an artifact holds: project, model, entrypoint, sizes, content digest, largest files",
     "0 shown and intact; 1 shown, but the artifact fails verification; 2 unreadable or no manifest"),
    ("verify", "check an artifact against its manifest and sidecar (and, with --source, a rebuild of the project)",
     "0 intact (and rebuilt identically); 1 a difference was found (every one is listed); 2 unreadable input"),
    ("diff", "compare two artifacts or project folders: files added, removed, changed, and manifest fields",
     "0 same; 1 different; 2 unreadable input, or an artifact that fails verification"),
    ("explain", "tell whether paths are packed, and the rule that decided (like `git check-ignore -v`)",
     "0 explained; 1 a path is kept by the rules but refused by a build guard; 2 bad project or path"),
    ("unpack", "verify an artifact, then write its files into a folder",
     "0 unpacked; 1 the artifact fails verification (nothing written); 2 unreadable input or unusable folder"),
    ("check", "check the entrypoint of a project or artifact statically, or with --import by importing it",
     "0 the entrypoint names a trial class (and imports); 1 it does not, or the artifact fails verification; "
     "2 unreadable input"),
    ("attest", "print an in-toto Statement v1 for an artifact (subject: the .tgz; predicate: its manifest)",
     "0 printed; 1 the artifact fails verification (nothing printed); 2 unreadable input"),
    ("from-wheel", "extract the model-definition artifact(s) a wheel carries, and verify them",
     "0 extracted and intact; 1 an extracted artifact fails verification; 2 no artifact in the wheel or unreadable"),
]


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``, which argparse asks for every parser it makes, without
    importing ``shutil`` (with ``bz2`` and ``lzma``: ≈ 5 ms of every start, for help rarely printed)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0 and sys.__stdout__ is not None:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_terminal_columns() - 2)  # argparse's own margin


def _build_arguments(build: argparse.ArgumentParser) -> None:
    build.add_argument("project", nargs="?", default=".", help="project folder holding pyproject.toml (default: .)")
    build.add_argument("-o", "--output", help="output folder (default: PROJECT/dist)")
    build.add_argument("--model", help="build only this named model")
    build.set_defaults(handler=_cmd_build)


def _inspect_arguments(inspect: argparse.ArgumentParser) -> None:
    inspect.add_argument("artifact", help="a .detmodel.tgz")
    inspect.add_argument("--top", type=int, default=10, metavar="N", help="how many of the largest files to list (default 10)")
    inspect.set_defaults(handler=_cmd_inspect)


def _verify_arguments(verify: argparse.ArgumentParser) -> None:
    verify.add_argument("artifact", help="a .detmodel.tgz (its .detmodel.json sidecar beside it is checked too)")
    verify.add_argument("--source", metavar="PROJECT",
                        help="also rebuild the model from this project folder and compare content digests")
    verify.add_argument("--sidecar", metavar="FILE", help="check this sidecar instead of the one beside the artifact")
    verify.add_argument("--no-sidecar", action="store_true", help="do not look for a sidecar")
    verify.set_defaults(handler=_cmd_verify)


def _diff_arguments(diff: argparse.ArgumentParser) -> None:
    diff.add_argument("a", metavar="A", help="an artifact or a project folder")
    diff.add_argument("b", metavar="B", help="an artifact or a project folder")
    diff.add_argument("--model", help="compare only this named model")
    diff.set_defaults(handler=_cmd_diff)


def _explain_arguments(explain: argparse.ArgumentParser) -> None:
    explain.add_argument("paths", nargs="*", metavar="PATH",
                         help="paths to explain: absolute, existing relative to the current folder, or else relative "
                         "to the model-definition root; they need not exist")
    explain.add_argument("--all", action="store_true", help="every file under the root (an excluded folder is one line)")
    explain.add_argument("--project", default=".", help="project folder holding pyproject.toml (default: .)")
    explain.add_argument("--model", help="only this named model (default: every model)")
    explain.add_argument("-o", "--output", help="the build's output folder, pruned when inside the root (default: PROJECT/dist)")
    explain.set_defaults(handler=_cmd_explain)


def _unpack_arguments(unpack: argparse.ArgumentParser) -> None:
    unpack.add_argument("artifact", help="a .detmodel.tgz")
    unpack.add_argument("directory", metavar="DIR", help="folder to write into (created when missing; must be empty)")
    unpack.add_argument("--force", action="store_true", help="write into a non-empty DIR (other files there stay)")
    unpack.set_defaults(handler=_cmd_unpack)


def _check_arguments(check: argparse.ArgumentParser) -> None:
    check.add_argument("target", metavar="PROJECT|ARTIFACT", help="a project folder or a .detmodel.tgz")
    check.add_argument("--import", dest="do_import", action="store_true",
                       help="also import the trial class in a child process from a temporary copy of the packed files, "
                       "with the working directory and sys.path[0] set as Determined's container does")
    check.add_argument("--model", help="only this named model of a project")
    check.add_argument("--python", metavar="PATH", help="interpreter for --import (default: the one running this)")
    check.add_argument("--timeout", type=_seconds, default=600.0, metavar="SECONDS",
                       help="give up on --import after this long (default 600)")
    check.set_defaults(handler=_cmd_check)


def _attest_arguments(attest: argparse.ArgumentParser) -> None:
    attest.add_argument("artifact", help="a .detmodel.tgz")
    attest.add_argument("-o", "--output", metavar="FILE", help="write the Statement to FILE instead of stdout")
    attest.set_defaults(handler=_cmd_attest)


def _from_wheel_arguments(from_wheel: argparse.ArgumentParser) -> None:
    from_wheel.add_argument("wheel", metavar="WHEEL", help="a .whl built with the detmodel wheel hook")
    from_wheel.add_argument("-o", "--output", metavar="DIR", help="folder to write into (default: the wheel's folder)")
    from_wheel.set_defaults(handler=_cmd_from_wheel)


_ARGUMENTS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "build": _build_arguments, "inspect": _inspect_arguments, "verify": _verify_arguments, "diff": _diff_arguments,
    "explain": _explain_arguments, "unpack": _unpack_arguments, "check": _check_arguments,
    "attest": _attest_arguments, "from-wheel": _from_wheel_arguments,
}


def _parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; with ``verb``, one that knows only that verb. Making the parsers of
    the other eight costs ≈ 3.5 ms of a start, which only the general help and a mistyped verb need."""
    parser = argparse.ArgumentParser(
        prog="hatch-detmodel",
        description="Build and check Determined AI model-definition artifacts (.detmodel.tgz).",
        epilog=f"{_EXIT_CODES}.\nEvery verb takes --json: one JSON document on stdout. `hatch-detmodel VERB --help` for more.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    common = argparse.ArgumentParser(add_help=False, formatter_class=_HelpFormatter)
    common.add_argument("--json", action="store_true", help="print one JSON document on stdout instead of text")
    reading = argparse.ArgumentParser(add_help=False, formatter_class=_HelpFormatter)
    reading.add_argument(
        "--max-bytes", type=_byte_count, metavar="N",
        help=f"stop reading an artifact after N decompressed bytes (default {DEFAULT_MAX_BYTES:,}), "
        "so a decompression bomb cannot exhaust memory or disk",
    )
    for name, summary, codes in _VERBS:
        if verb is not None and name != verb:
            continue
        parents = [common, reading] if name not in ("build", "explain") else [common]
        _ARGUMENTS[name](verbs.add_parser(
            name, help=summary, description=summary[0].upper() + summary[1:] + ".", parents=parents,
            epilog=f"exit codes: {codes}.", formatter_class=_HelpFormatter,
        ))
    return parser


def _tolerate_undecodable_names() -> None:
    """A damaged archive's member names (or a file name on disk) may not be UTF-8: they are printed
    escaped (``\\udcff``, also valid inside a JSON string) instead of crashing the output."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    # a verb first (as in every use but the general help): only its parser is needed
    args = _parser(arguments[0] if arguments and arguments[0] in _ARGUMENTS else None).parse_args(arguments)
    _tolerate_undecodable_names()
    try:
        return int(args.handler(args))
    except DetmodelError as error:
        if getattr(args, "json", False):
            _emit_json({"error": str(error)})
        print(f"hatch-detmodel: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # `hatch-detmodel inspect … | head`: the reader left; that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as error:
        # A disk or permission error the library did not word itself: still one line, never a traceback.
        where = f"{error.filename}: " if error.filename else ""
        message = f"{where}{error.strerror or error}"
        if getattr(args, "json", False):
            _emit_json({"error": message})
        print(f"hatch-detmodel: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("hatch-detmodel: interrupted; no partial output was left behind", file=sys.stderr)
        return 130


def run() -> NoReturn:
    """The ``hatch-detmodel`` script and ``python -m hatch_detmodel``: :func:`main`, then an exit that
    skips tearing the interpreter down object by object (≈ 33 ms after a 20,000-file build, 25 ms
    after none). Nothing is left to clean up by then: every output is closed and published and the
    compression threads are joined; the standard streams are flushed here, and a failure to flush is
    the exit status Python itself gives (120). mypy ends its command line the same way."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: the output did not all arrive
            code = code or 120
    os._exit(code)
