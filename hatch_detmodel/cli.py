"""Command line ``hatch-detmodel`` (also ``python -m hatch_detmodel``).

Exit codes: 0 ok, 1 a check failed or a difference was found, 2 bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from . import __version__
from .config import load_project
from .errors import DetmodelError
from .pipeline import Reporter, build_models

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _StderrReporter(Reporter):
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def info(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr)


def _cmd_build(args: argparse.Namespace) -> int:
    project = load_project(args.project)
    output = Path(args.output) if args.output else project.root / "dist"
    built = build_models(project, output, project.select(args.model), _StderrReporter(args.json))
    if args.json:
        print(json.dumps(
            [
                {
                    "model": a.model,
                    "archive": str(a.archive),
                    "sidecar": str(a.sidecar),
                    "sha256": a.archive_record.sha256,
                    "content_digest": a.manifest.content_digest,
                }
                for a in built
            ],
            indent=2,
        ))
    else:
        for artifact in built:
            print(artifact.archive)
            print(artifact.sidecar)
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hatch-detmodel",
        description="Build and check Determined AI model-definition artifacts.",
        epilog="Exit codes: 0 ok, 1 a check failed or a difference was found, 2 bad usage or unreadable input.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    build = verbs.add_parser("build", help="build the artifact(s) of a project, same bytes as `hatch build -t detmodel`")
    build.add_argument("project", nargs="?", default=".", help="project folder holding pyproject.toml (default: .)")
    build.add_argument("-o", "--output", help="output folder (default: PROJECT/dist)")
    build.add_argument("--model", help="build only this named model")
    build.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    build.set_defaults(handler=_cmd_build)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except DetmodelError as error:
        print(f"hatch-detmodel: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("hatch-detmodel: interrupted", file=sys.stderr)
        return 130
