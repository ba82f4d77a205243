"""Gitignore patterns with git's own semantics, and the rule that decided each path.

git matches ignore patterns with ``wildmatch`` on *bytes*; this module translates each pattern
into a bytes regular expression that accepts exactly what ``wildmatch`` accepts (``?`` and
character classes match one byte, ``**`` only next to slashes, unterminated classes match
nothing), and keeps git's line handling (comments, ``\\#``/``\\!`` escapes, trailing spaces unless
escaped, ``\\r\\n``). All rules are compiled into one alternation, last rule first, so a single
``fullmatch`` finds the last matching rule — git's "last match wins".
"""

from __future__ import annotations

import re
from typing import Iterable, NamedTuple, Sequence

__all__ = ["Rule", "RuleSet", "parse_ignore_lines"]


class Rule(NamedTuple):
    """One ignore pattern and where it came from (for messages and ``explain``)."""

    source: str  # ".detignore", "exclude", "built-in default", ...
    line: int  # 1-based line in the source (index + 1 for lists)
    pattern: str  # the text as written (after git's trimming)
    negated: bool
    dir_only: bool
    regex: bytes  # matches b"D\0<path>" / b"F\0<path>"

    def describe(self) -> str:
        if self.source == "exclude":
            return f"exclude[{self.line - 1}]: {self.pattern}"
        if self.source == "built-in default":
            return f"built-in default: {self.pattern}"
        return f"{self.source}:{self.line}: {self.pattern}"


_POSIX_CLASSES: dict[bytes, frozenset[int]] = {
    name.encode(): frozenset(members)
    for name, members in {
        "alnum": [*range(48, 58), *range(65, 91), *range(97, 123)],
        "alpha": [*range(65, 91), *range(97, 123)],
        "blank": [9, 32],
        "cntrl": [*range(0, 32), 127],
        "digit": range(48, 58),
        "graph": range(33, 127),
        "lower": range(97, 123),
        "print": range(32, 127),
        "punct": [c for c in range(33, 127) if not chr(c).isalnum()],
        "space": [9, 10, 13, 32],
        "upper": range(65, 91),
        "xdigit": [*range(48, 58), *range(65, 71), *range(97, 103)],
    }.items()
}
_SLASH = ord("/")
_NEVER = b"(?!)"
_ANY_DIRS = b"(?:.*/)?"
_BASENAME_CACHE = 4096  # entries: a bound on memory, whatever the tree


def _alternation(rules: list[tuple[int, bytes]]) -> re.Pattern[bytes] | None:
    """One regex trying the rules last first; the group name ``r<index>`` says which matched."""
    if not rules:
        return None
    return re.compile(b"|".join(b"(?P<r%d>%s)" % (i, regex) for i, regex in reversed(rules)), re.DOTALL)


class _Unmatchable(Exception):
    """The pattern can never match (git's wildmatch returns WM_ABORT_ALL)."""


def _byte_class(members: set[int]) -> bytes:
    members.discard(_SLASH)  # WM_PATHNAME: a class never matches '/'
    if not members:
        raise _Unmatchable
    return b"[" + b"".join(b"\\x%02x" % m for m in sorted(members)) + b"]"


def _parse_class(pat: bytes, i: int) -> tuple[bytes, int]:
    """Translate the class starting at ``pat[i] == '['``; return (regex, index after ']')."""
    i += 1
    if i < len(pat) and pat[i] in b"!^":
        negated = True
        i += 1
    else:
        negated = False
    members: set[int] = set()
    prev: int | None = None
    first = True
    while True:
        if i >= len(pat):
            raise _Unmatchable
        ch = pat[i]
        if ch == ord("]") and not first:
            i += 1
            break
        first = False
        if ch == ord("\\"):
            i += 1
            if i >= len(pat):
                raise _Unmatchable
            ch = pat[i]
            members.add(ch)
            prev = ch
        elif ch == ord("-") and prev is not None and i + 1 < len(pat) and pat[i + 1] != ord("]"):
            i += 1
            hi = pat[i]
            if hi == ord("\\"):
                i += 1
                if i >= len(pat):
                    raise _Unmatchable
                hi = pat[i]
            members.update(range(prev, hi + 1))
            prev = None
        elif ch == ord("[") and i + 1 < len(pat) and pat[i + 1] == ord(":"):
            end = pat.find(b"]", i + 2)
            if end < 0:
                raise _Unmatchable
            body = pat[i + 2 : end]
            if not body.endswith(b":") or len(body) < 1:
                # Not "[:name:]": the '[' is an ordinary member.
                members.add(ch)
                prev = ch
            else:
                name = body[:-1]
                if name not in _POSIX_CLASSES:
                    raise _Unmatchable
                members.update(_POSIX_CLASSES[name])
                prev = None
                i = end
        else:
            members.add(ch)
            prev = ch
        i += 1
    if negated:
        members = set(range(256)) - members
    return _byte_class(members), i


def _translate(pat: bytes) -> bytes:
    """Translate a wildmatch pattern (WM_PATHNAME) into a regex over the path bytes."""
    out: list[bytes] = []
    i = 0
    n = len(pat)
    while i < n:
        ch = pat[i]
        if ch == ord("*"):
            start = i
            while i < n and pat[i] == ord("*"):
                i += 1
            if i - start >= 2:
                before_ok = start == 0 or pat[start - 1] == _SLASH
                after_slash = i < n and (pat[i] == _SLASH or pat[i : i + 2] == b"\\/")
                if before_ok and after_slash:
                    # "**/": zero or more whole directories.
                    i += 1 if pat[i] == _SLASH else 2
                    out.append(b"(?:.*/)?")
                    continue
                if before_ok and i == n:
                    out.append(b".*")
                    continue
            out.append(b"[^/]*")
            continue
        if ch == ord("?"):
            out.append(b"[^/]")
        elif ch == ord("["):
            regex, i = _parse_class(pat, i)
            out.append(regex)
            continue
        elif ch == ord("\\"):
            i += 1
            if i >= n:
                raise _Unmatchable  # a trailing backslash matches nothing in git
            out.append(re.escape(pat[i : i + 1]))
        else:
            out.append(re.escape(pat[i : i + 1]))
        i += 1
    return b"".join(out)


def _trim_trailing_spaces(line: bytes) -> bytes:
    """git's trim_trailing_spaces: drop unescaped trailing spaces."""
    last_space: int | None = None
    i = 0
    while i < len(line):
        c = line[i]
        if c == ord(" "):
            if last_space is None:
                last_space = i
        elif c == ord("\\"):
            i += 1
            if i >= len(line):
                return line
            last_space = None
        else:
            last_space = None
        i += 1
    return line if last_space is None else line[:last_space]


def compile_rule(text: bytes, source: str, line: int) -> Rule | None:
    """Compile one already-trimmed pattern line; ``None`` for blanks and comments."""
    if not text or text.startswith(b"#"):
        return None
    body = text
    negated = body.startswith(b"!")
    if negated:
        body = body[1:]
    dir_only = body.endswith(b"/")
    if dir_only:
        body = body[:-1]
    kind = b"D" if dir_only else b"[DF]"
    try:
        if b"/" not in body:
            # No slash: match the basename at any depth.
            regex = kind + b"\\x00(?:.*/)?" + _translate(body)
        else:
            regex = kind + b"\\x00" + _translate(body[1:] if body.startswith(b"/") else body)
        if not body:
            regex = _NEVER
    except _Unmatchable:
        regex = _NEVER
    return Rule(
        source=source,
        line=line,
        pattern=text.decode("utf-8", "backslashreplace"),
        negated=negated,
        dir_only=dir_only,
        regex=regex,
    )


def parse_ignore_lines(data: bytes, source: str) -> list[Rule]:
    """Parse an ignore file's bytes the way git reads an exclude file."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    rules: list[Rule] = []
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for number, raw in enumerate(lines, start=1):
        if raw.startswith(b"#") or not raw:
            continue
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        rule = compile_rule(_trim_trailing_spaces(raw), source, number)
        if rule is not None:
            rules.append(rule)
    return rules


def parse_pattern_list(patterns: Sequence[str], source: str) -> list[Rule]:
    """Patterns given one per item (``exclude``, built-in defaults): no comment stripping issues."""
    rules = []
    for index, pattern in enumerate(patterns, start=1):
        rule = compile_rule(_trim_trailing_spaces(pattern.encode("utf-8")), source, index)
        if rule is not None:
            rules.append(rule)
    return rules


_REGEX_SPECIAL = frozenset(b".^$*+?{}[]\\|()")


def _literal_prefix(regex: bytes) -> bytes:
    """The bytes every match of a translated pattern starts with: its leading literal characters
    (``re.escape``'d punctuation included), up to the first wildcard, class or group."""
    prefix = bytearray()
    i = 0
    while i < len(regex):
        byte = regex[i]
        if byte == ord("\\") and i + 1 < len(regex) and not chr(regex[i + 1]).isalnum():
            prefix.append(regex[i + 1])  # an escaped literal such as `\.`
            i += 2
        elif byte in _REGEX_SPECIAL:
            break
        else:
            prefix.append(byte)
            i += 1
    return bytes(prefix)


class RuleSet:
    """An ordered list of rules; ``match`` returns the last rule matching a path, or ``None``."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        # Rules that can only match the last path component (no slash: ``*.pyc``, ``__pycache__/``,
        # ``**/x``) are tried on ``kind\0basename``, without the ``(?:.*/)?`` scan over the whole
        # path; the others on ``kind\0path``. Each alternation lists its rules last first, so each
        # finds its last matching rule, and the later of the two decides (git's "last match wins").
        basename: list[tuple[int, bytes]] = []
        whole: list[tuple[int, bytes]] = []
        for i, rule in enumerate(self.rules):
            if rule.regex == _NEVER:
                continue
            kind, _, rest = rule.regex.partition(b"\\x00")
            tail = rest[len(_ANY_DIRS) :]
            # the tail never matches a "/": no literal slash (``[^/]`` excludes one) and no ``.*``
            if rest.startswith(_ANY_DIRS) and b"/" not in tail.replace(b"[^/]", b"") and b".*" not in tail:
                basename.append((i, kind + b"\\x00" + tail))
            else:
                whole.append((i, rule.regex))
        self._basename = _alternation(basename)
        self._whole = _alternation(whole)
        # Whole-path rules are anchored: a path must start with each one's literal prefix (`shared_fs`,
        # `.aws/`, ...) to have a chance, a test far cheaper than the regex; None when one has none.
        prefixes = tuple(_literal_prefix(regex.partition(b"\\x00")[2]) for _, regex in whole)
        self._whole_prefixes = prefixes if all(prefixes) else None
        # Names recur (`__init__.py`, `utils.py`, `*.json` shards): their basename verdicts are kept,
        # one table for files and one for directories.
        self._by_basename: tuple[dict[bytes, int], dict[bytes, int]] = ({}, {})

    @property
    def path_prefixes(self) -> tuple[bytes, ...] | None:
        """What a path must start with for a rule other than a basename rule to match it (``()``: no
        such rule); ``None`` when such a rule has no literal prefix. Below these, a verdict depends on
        the basename alone."""
        return () if self._whole is None else self._whole_prefixes

    def match(self, path: bytes, is_dir: bool) -> Rule | None:
        """The deciding rule for ``path`` (POSIX, relative to the root, no trailing slash)."""
        return self.match_entry(path, path[path.rfind(b"/") + 1 :], is_dir)

    def match_entry(self, path: bytes, name: bytes, is_dir: bool) -> Rule | None:
        """:meth:`match` for a walk that already holds the last component, ``name``."""
        cache = self._by_basename[is_dir]
        best = cache.get(name)
        if best is None:
            best = -1
            if self._basename is not None:
                found = self._basename.fullmatch((b"D\x00" if is_dir else b"F\x00") + name)
                if found is not None and found.lastgroup is not None:
                    best = int(found.lastgroup[1:])
            if len(cache) < _BASENAME_CACHE:
                cache[name] = best
        if self._whole is not None and (self._whole_prefixes is None or path.startswith(self._whole_prefixes)):
            kind = b"D\x00" if is_dir else b"F\x00"
            found = self._whole.fullmatch(kind + path)
            if found is not None and found.lastgroup is not None:
                best = max(best, int(found.lastgroup[1:]))
        return self.rules[best] if best >= 0 else None

    def is_ignored(self, path: bytes, is_dir: bool) -> bool:
        rule = self.match(path, is_dir)
        return rule is not None and not rule.negated
