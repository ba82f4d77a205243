"""The rule set's shortcuts (basename alternation, its cache, the literal-prefix filter for anchored
rules) against the plain definition: try every rule's own regex, the last one that matches decides."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from hatch_detmodel.ignore import Rule, RuleSet, _literal_prefix, compile_rule, parse_ignore_lines
from hatch_detmodel.secret_guard import SECRET_PATTERNS
from hatch_detmodel.selection import BUILTIN_DEFAULTS

from .trees import ignore_files, trees


def reference_match(rules: list[Rule], path: bytes, is_dir: bool) -> Rule | None:
    subject = (b"D\x00" if is_dir else b"F\x00") + path
    found = None
    for rule in rules:
        if re.fullmatch(rule.regex, subject, re.DOTALL):
            found = rule
    return found


def prefixes_of(tree: list[str]) -> set[str]:
    """Every file and every directory above one."""
    paths = set()
    for path in tree:
        parts = path.split("/")
        paths.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    return paths


@settings(max_examples=300, deadline=None)
@given(ignore_text=ignore_files, tree=trees(), anchored=st.lists(st.sampled_from(["/a", "sub/", "a/*.py", "/x y"])))
def test_rule_set_decides_as_the_last_matching_rule(ignore_text: str, tree: list[str], anchored: list[str]) -> None:
    text = ignore_text + "".join(f"{line}\n" for line in anchored)
    rules = parse_ignore_lines(text.encode("utf-8"), ".detignore")
    rule_set = RuleSet(rules)
    for _ in range(2):  # the second pass answers from the basename cache
        for path in sorted(prefixes_of(tree)):
            for is_dir in (False, True):
                encoded = path.encode("utf-8")
                assert rule_set.match(encoded, is_dir) == reference_match(rules, encoded, is_dir), (text, path, is_dir)


def test_literal_prefix_is_what_every_match_starts_with() -> None:
    cases = {
        b"/shared_fs": b"shared_fs",
        b".aws/credentials": b".aws/credentials",
        b"a/**/b": b"a/",
        b"foo/*.py": b"foo/",
        b"**/x/y": b"",
        b"a?b/c": b"a",
        b"a[bc]/d": b"a",
        b"x\\*y/z": b"x*y/z",
        "é/a".encode(): "é/a".encode(),
    }
    for pattern, prefix in cases.items():
        rule = compile_rule(pattern, "test", 1)
        assert rule is not None
        assert _literal_prefix(rule.regex.partition(b"\\x00")[2]) == prefix, pattern


def test_built_in_and_secret_rules_keep_the_prefix_filter_or_go_without() -> None:
    """Every anchored built-in rule has a literal prefix, so the filter applies to them."""
    for patterns in (BUILTIN_DEFAULTS, SECRET_PATTERNS):
        rule_set = RuleSet([r for i, p in enumerate(patterns) if (r := compile_rule(p.encode(), "t", i)) is not None])
        assert rule_set._whole_prefixes is not None and all(rule_set._whole_prefixes)
