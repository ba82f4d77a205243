"""Hypothesis strategies for file trees and ignore files, shared by the git and Determined differentials."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hypothesis import strategies as st

# Names that exercise dots, spaces, unicode, glob metacharacters and escapes. None collides with
# the always-ignored byte-code rules or the ignore file's own name.
NAMES = [
    "a", "b", "ab", "abc", "A", "c.py", "d.txt", "e.py", "data", "sub", "lib", "build", "x y", "tr ail",
    ".hidden", ".env.example", "a.b.c", "é", "naïve.py", "日本", "#hash", "!bang", "[br]", "q?", "star*",
    "keep", "keep.py", "logs", "log.txt", "Makefile", "-dash", "under_score", "a-b", "terraform", "t.tfvars",
]

SEGMENTS = [
    "a", "b", "ab", "abc", "*", "**", "?", "*.py", "*.txt", "a*", "*b", "[a-c]", "[!a]", "[^ab]*", "[[:alpha:]]*",
    "[[:digit:]]", "data", "sub", "lib", "keep", "keep.py", "\\#hash", "\\!bang", "\\[br]", "q\\?", "star\\*",
    "x y", "é", "naïve.py", "日本", ".hidden", ".*", "log*", "a?", "[]a]", "[a-]", "l?b", "*.*", "build",
    "tr ail", "[é]",
]


@st.composite
def trees(draw: st.DrawFn) -> list[str]:
    """A set of file paths (POSIX, relative), no file also used as a directory."""
    paths = draw(
        st.lists(
            st.lists(st.sampled_from(NAMES), min_size=1, max_size=4).map("/".join),
            min_size=1,
            max_size=14,
            unique=True,
        )
    )
    files: list[str] = []
    dirs: set[str] = set()
    for path in sorted(paths, key=lambda p: (-p.count("/"), p)):
        parts = path.split("/")
        prefixes = {"/".join(parts[:i]) for i in range(1, len(parts))}
        if path in dirs or any(p in files for p in prefixes):
            continue
        files.append(path)
        dirs |= prefixes
    return sorted(files)


_TAILS = [""] * 30 + ["  ", " ", "\t", "\t", "  ", " ", "", "\\ ", "", " \\ "]


@st.composite
def pattern_lines(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 19))
    if kind == 0:
        return ""
    if kind == 1:
        return "# " + draw(st.sampled_from(SEGMENTS))
    body = "/".join(draw(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=3)))
    if draw(st.booleans()):
        body = "/" + body
    if draw(st.integers(0, 3)) == 0:
        body += "/"
    if draw(st.integers(0, 4)) == 0:
        body = "!" + body
    # Escaped trailing spaces are rare (1 in 40): Determined's pathspec rejects the whole file on one.
    tail = draw(st.sampled_from(_TAILS))
    return body + tail


ignore_files = st.lists(pattern_lines(), min_size=1, max_size=8).map(lambda lines: "\n".join(lines) + "\n")


def materialize(root: Path, files: list[str], ignore_text: str | None) -> None:
    """Write ``files`` under a fresh ``root`` (each file's content is its own path)."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for rel in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel + "\n", encoding="utf-8")
    if ignore_text is not None:
        (root / ".detignore").write_text(ignore_text, encoding="utf-8")


def listing(root: Path) -> set[str]:
    """Every regular file under ``root`` (relative, POSIX), ``.git`` excluded."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            found.add(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    return found
