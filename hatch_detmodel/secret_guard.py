"""Secrets guard: a kept file that looks like a credential stops the build.

Names are checked during selection; file contents (private-key headers) while the archive is
written, on the same bytes that are hashed, so nothing is read twice. An ignore-file negation can
never bring such a file back: only ``[tool.detmodel] allow-secrets`` packs one on purpose.
"""

from __future__ import annotations

import functools
import os
import re
import stat
from typing import Iterable

from .ignore import RuleSet, parse_pattern_list

__all__ = ["KEY_MARKER", "OVERLAP", "SECRET_PATTERNS", "ContentScanner", "SecretGuard"]

#: gitignore-style patterns for files that hold credentials (later `!` lines carve out templates).
SECRET_PATTERNS: tuple[str, ...] = (
    ".env",
    ".env.*",
    "!.env.example",
    "!.env.sample",
    "!.env.template",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "!id_*.pub",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    ".netrc",
    "_netrc",
    ".pypirc",
    ".npmrc",
    ".git-credentials",
    ".aws/credentials",
    ".docker/config.json",
    ".kube/config",
    "kubeconfig",
    "*.kubeconfig",
    "service-account*.json",
    "application_default_credentials.json",
    "*.tfstate",
    "*.tfstate.*",
)
GUARD_RULE = "secrets guard"
# Up to three words before PRIVATE KEY (RSA, EC, OPENSSH, ENCRYPTED, PGP, ...): bounded, so a header
# is at most 84 bytes and OVERLAP below always carries a split one whole into the next chunk.
_KEY_HEADER = re.compile(rb"-----BEGIN (?:[A-Z0-9]{1,16} ){0,3}PRIVATE KEY(?: BLOCK)?-----")
#: In every private-key header: a file without it needs no regex search.
KEY_MARKER = b"PRIVATE KEY"
#: Longer than any header: a chunk is scanned with this many bytes of the stream before it.
OVERLAP = 128
_CHUNK = 1 << 20


def _fix(ignore_file: str) -> str:
    return (
        f"leave it out with a line in {ignore_file}, or pack it on purpose by naming it in "
        "[tool.detmodel] allow-secrets = [...]"
    )


@functools.cache
def _secret_rules() -> RuleSet:
    """Compiled once per process: every build's guard uses the same built-in patterns."""
    return RuleSet(parse_pattern_list(SECRET_PATTERNS, GUARD_RULE))


class SecretGuard:
    """The built-in secret patterns minus the model's ``allow-secrets`` patterns."""

    def __init__(self, allow: Iterable[str], ignore_file: str) -> None:
        self.secrets = _secret_rules()
        self.allow_patterns = tuple(allow)
        self.allowed = RuleSet(parse_pattern_list(self.allow_patterns, "allow-secrets"))
        self.ignore_file = ignore_file

    def is_allowed(self, path: str) -> bool:
        return self.allowed.is_ignored(path.encode("utf-8"), False)

    def name_problem(self, rel: bytes, name: bytes) -> str | None:
        """The refusal message for a kept file (POSIX bytes, relative; ``name`` its last component)
        whose name looks like a secret."""
        rule = self.secrets.match_entry(rel, name, False)
        if rule is None or rule.negated:
            return None
        path = rel.decode("utf-8", "surrogateescape")
        if self.is_allowed(path):
            return None
        return f"{path}: looks like a secret (matches `{rule.pattern}` of the secrets guard); {_fix(self.ignore_file)}"

    def unused_allowances(self, paths: Iterable[str]) -> list[str]:
        """``allow-secrets`` entries that match no packed file (most likely a typo)."""
        if not self.allow_patterns:
            return []
        unused = []
        path_list = list(paths)
        for index, pattern in enumerate(self.allow_patterns):
            single = RuleSet(parse_pattern_list([pattern], "allow-secrets"))
            if not any(single.is_ignored(p.encode("utf-8"), False) for p in path_list):
                unused.append(f"allow-secrets[{index}] `{pattern}` matches no packed file")
        return unused

    def scanner(self) -> ContentScanner:
        return ContentScanner(self)


class ContentScanner:
    """Looks at file contents as they stream into the archive and remembers private-key headers."""

    def __init__(self, guard: SecretGuard) -> None:
        self.guard = guard
        self.found: dict[str, str] = {}

    def scan(self, path: str, data: bytes) -> None:
        """Look at a file's bytes, or at one chunk of it prefixed with the previous chunk's last
        :data:`OVERLAP` bytes (so a header split between two chunks is still seen)."""
        if KEY_MARKER not in data or path in self.found:  # one fast substring search in the common case
            return
        match = _KEY_HEADER.search(data)
        if match and not self.guard.is_allowed(path):
            header = match.group(0).decode("ascii")
            self.found[path] = f"{path}: contains a private key (`{header}`); {_fix(self.guard.ignore_file)}"

    def scan_chunk(self, path: str, tail: bytes, chunk: bytes) -> bytes:
        """Scan the next chunk of a file read in pieces, after ``tail`` (the previous call's result,
        ``b""`` at the start); return the new tail. Whole :data:`OVERLAP` bytes are carried even
        after a short read, so a header split between chunks is still seen."""
        window = tail + chunk
        self.scan(path, window)
        return window[-OVERLAP:]

    def scan_file(self, path: str, source: str | bytes | os.PathLike[str]) -> None:
        """Scan a file on disk in :data:`_CHUNK` pieces, as the archive writer does while packing
        (``explain`` asks this without building). A file that cannot be read, or is no longer a
        regular file, is left for the build to report."""
        try:
            fd = os.open(source, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        except OSError:
            return
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return
            tail = b""
            while True:
                chunk = os.read(fd, _CHUNK)
                if not chunk:
                    return
                tail = self.scan_chunk(path, tail, chunk)
        except OSError:
            return
        finally:
            os.close(fd)
