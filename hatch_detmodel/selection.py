"""File selection: which files of a model definition are packed, and which rule decided each path.

One decision function (:meth:`Selector.decide`) serves the build, ``explain`` and the entrypoint
check. The walk prunes ignored directories (cost grows with kept files, not ignored ones), reads
every directory in sorted order, and refuses anything it cannot pack faithfully instead of dropping it.
"""

from __future__ import annotations

import functools
import operator
import os
import re
import stat
import unicodedata
from pathlib import Path
from stat import S_ISREG, S_IXUSR
from typing import Callable, Iterator, KeysView, NamedTuple, Sequence

from .config import ModelConfig
from .errors import SelectionError
from .ignore import Rule, RuleSet, parse_ignore_lines, parse_pattern_list
from .secret_guard import SecretGuard

__all__ = [
    "ALWAYS_IGNORED",
    "BUILTIN_DEFAULTS",
    "MANIFEST_NAME",
    "SelectedFile",
    "Selection",
    "Selector",
    "Verdict",
    "select_files",
]

#: The manifest's place in the archive; a source file with this name at the root is refused.
MANIFEST_NAME = ".detmodel.json"

#: Determined 0.38.1's built-in defaults, then ours; a user's ``!pattern`` can re-include these.
BUILTIN_DEFAULTS: tuple[str, ...] = (
    "__pycache__/",
    "*.py[co]",
    "*$py.class",
    "terraform",
    "terraform_data",
    "terraform.tfstate*",
    "terraform.tfvars*",
    ".terraform*",
    ".git/",
    ".vscode/",
    ".idea/",
    ".mypy_cache/",
    "/shared_fs",
    ".venv/",
    ".tox/",
    ".nox/",
    ".pytest_cache/",
    ".ruff_cache/",
)

#: Byte code is never packed, whatever the patterns say (Determined's documented rule).
ALWAYS_IGNORED = "always-ignored byte code"
#: When the model definition is the whole project: what differs between a checkout and an unpacked
#: sdist (``python -m build``/``uv build`` build the wheel from the sdist), so every way builds the same.
_PROJECT_ROOT_OUTPUTS = {
    b"dist": "build output directory (dist/ at the project root)",
    b"PKG-INFO": "sdist metadata (PKG-INFO at the project root)",
}
_ARTIFACT_SUFFIXES = (b".detmodel.tgz", b".detmodel.json")


class Verdict(NamedTuple):
    """Whether a path is packed, and the rule (or built-in guard) that decided it."""

    path: str
    packed: bool
    reason: str  # human-readable deciding rule; "no rule matched" when packed by default
    rule: Rule | None = None


class SelectedFile(NamedTuple):  # a tuple: the build makes one per file, and it is cheap to create
    """A regular file to pack: its archive path and where its bytes are read from."""

    path: str  # POSIX, relative to the model-definition root, NFC
    # where to read it (a symlink inside the root is read through); selection gives the listing's own
    # bytes, which every call that opens a file takes, instead of decoding a path per file
    source: str | bytes | os.PathLike[str]
    size: int
    executable: bool

    @property
    def mode(self) -> str:
        return "755" if self.executable else "644"


class Selection:
    """The sorted files of one model definition (a plain class, not a record: it holds the rules
    that chose them, and bytes the writer takes out as it goes)."""

    def __init__(
        self, root: Path, files: tuple[SelectedFile, ...], selector: Selector, guard: SecretGuard,
        read_ahead: dict[str, bytes],
    ) -> None:
        self.root = root
        self.files = files
        self.selector = selector
        self.guard = guard  # also checks contents as they are packed
        # the bytes of files read while they were selected, by path; the writer takes each out as it
        # writes it, so they are held only until then
        self.read_ahead = read_ahead

    def __repr__(self) -> str:
        return f"Selection(root={self.root!r}, files=<{len(self.files)} files>)"

    def paths(self) -> KeysView[str]:
        """The selected paths, as a set (a view of :meth:`get`'s table: no second copy of 20,000 paths)."""
        return self._by_path.keys()

    def get(self, path: str) -> SelectedFile | None:
        return self._by_path.get(path)

    def read_bytes(self, selected: SelectedFile) -> bytes:
        """A selected file's bytes: those read while it was selected, while the writer has not taken
        them yet, or else read from its source (an empty file read ahead is ``b""``)."""
        data = self.read_ahead.get(selected.path)
        if data is None:
            with open(selected.source, "rb") as handle:
                data = handle.read()
        return data

    @functools.cached_property
    def _by_path(self) -> dict[str, SelectedFile]:
        # built once: the entrypoint check looks files up many times (a scan each was O(files))
        return {f.path: f for f in self.files}


_BYTECODE_SUFFIXES = (b".pyc", b".pyo", b"$py.class")
#: Reading ahead: only files up to this size (larger ones stream in pieces), never through a symlink
#: (a kept symlink is checked first), never blocking on a FIFO that took a file's place.
_READ_AHEAD_LARGEST = (1 << 20) - 1
_READ_AHEAD_LEAST = 64 << 10  # below this much budget, reading ahead stops
_READ_AHEAD_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
_HAND_ON = 256  # files selected between two calls of on_selected, or:
_HAND_ON_BYTES = 1 << 19  # bytes read ahead between two calls (a compression job: the workers start sooner)
_NAME_CACHE = 4096  # verdicts kept per kind: names recur (`__init__.py`), and memory stays bounded


@functools.cache
def _builtin_rules() -> tuple[Rule, ...]:
    return tuple(parse_pattern_list(BUILTIN_DEFAULTS, "built-in default"))


class Selector:
    """The ordered rules for one model definition, and the walk that applies them."""

    def __init__(self, model: ModelConfig, output_dir: Path | None = None, extra_output_dirs: Sequence[Path] = ()) -> None:
        self.model = model
        self.root = model.root
        rules: list[Rule] = list(_builtin_rules())
        ignore_file = model.ignore_file
        self.ignore_rel = _relative_bytes(self.root, ignore_file)
        if ignore_file.is_file():
            try:
                data = ignore_file.read_bytes()
            except OSError as error:
                raise SelectionError(f"{ignore_file}: cannot be read ({error.strerror}); fix its permissions") from None
            rules += parse_ignore_lines(data, model.detignore)
        rules += parse_pattern_list(model.exclude, "exclude")
        self.rules = RuleSet(rules)
        # Where the build writes: pruned whole when inside the root; in the root itself, only our artifacts.
        outputs = [d for d in (output_dir, *extra_output_dirs) if d is not None]
        self.output_rels = {rel for rel in (_relative_bytes(self.root, d) for d in outputs) if rel is not None}
        self._root_is_output = b"" in self.output_rels
        self._project_root = model.is_project_root
        # Below the root, the verdict of a path that starts with none of these depends on its name
        # alone (the guards' paths, the rules that are not basename rules): the walk remembers it.
        prefixes = self.rules.path_prefixes
        self._path_dependent = None if prefixes is None else (
            *prefixes, *(rel for rel in self.output_rels if rel), *((self.ignore_rel,) if self.ignore_rel is not None else ())
        )

    def guard(self, rel: bytes, name: bytes, is_dir: bool) -> str | None:
        """The built-in guard that leaves ``rel`` out whatever the patterns say, or ``None``."""
        if is_dir:
            if name == b"__pycache__":
                return ALWAYS_IGNORED
            if rel in self.output_rels:
                return "build output directory"
        else:
            if name.endswith(_BYTECODE_SUFFIXES):
                return ALWAYS_IGNORED
            if name == b".detignore" or rel == self.ignore_rel:
                return "ignore file (never packed)"
            if self._root_is_output and rel == name and _is_our_output(name):
                return "build output (an artifact of this tool)"
        if self._project_root and rel in _PROJECT_ROOT_OUTPUTS and is_dir == (rel == b"dist"):
            return _PROJECT_ROOT_OUTPUTS[rel]
        return None

    def packs(self, rel: bytes, name: bytes, is_dir: bool) -> bool:
        """Whether the walk keeps ``rel`` (its parents all kept): :meth:`decide` without the why."""
        if self.guard(rel, name, is_dir) is not None:
            return False
        rule = self.rules.match_entry(rel, name, is_dir)
        return rule is None or rule.negated

    def decide(self, rel: bytes, is_dir: bool) -> Verdict:
        """The verdict for one path (POSIX bytes relative to the root) whose parents are all kept."""
        text = rel.decode("utf-8", "surrogateescape")
        guard = self.guard(rel, rel.rsplit(b"/", 1)[-1], is_dir)
        if guard is not None:
            return Verdict(text, False, guard)
        rule = self.rules.match(rel, is_dir)
        if rule is None:
            return Verdict(text, True, "no rule matched")
        return Verdict(text, rule.negated, rule.describe(), rule)

    def explain(self, rel_path: str) -> Verdict:
        """Decide a path the way the walk would, parents first (a pruned parent decides its children)."""
        parts = [p for p in rel_path.replace(os.sep, "/").split("/") if p not in ("", ".")]
        if not parts:
            return Verdict(".", True, "the model-definition root")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            verdict = self.decide(parent.encode("utf-8", "surrogateescape"), True)
            if not verdict.packed:
                reason = f"parent directory {parent}/ excluded by {verdict.reason}"
                return Verdict(rel_path, False, reason, verdict.rule)
        full = "/".join(parts)
        is_dir = (self.root / full).is_dir()
        return self.decide(full.encode("utf-8", "surrogateescape"), is_dir)

    def suggest_line(self, rel: str | bytes, is_dir: bool = False) -> str:
        """The line to add to the ignore file that would exclude ``rel`` (raw bytes for names that are
        not UTF-8: such bytes and control characters become ``?``, which matches one byte as in git)."""
        text = rel.decode("utf-8", "surrogateescape") if isinstance(rel, bytes) else rel
        escaped = "".join(
            "?" if _unprintable(c) else "\\" + c if c in "*?[]\\!#" else c for c in text
        )
        if escaped.endswith(" "):
            escaped = escaped[:-1] + "\\ "
        return f"/{escaped}/" if is_dir else f"/{escaped}"

    def walk(self) -> Iterator[tuple[bytes, os.DirEntry[bytes], bool, bool, int | None, bool]]:
        """Yield ``(rel, entry, is_dir, packed, folder, plain)`` for every entry under kept directories, in UTF-8
        byte order of the whole path: siblings sort by name, a directory's as ``name/``, and a kept
        directory's contents come right after it, so the build needs no sort afterwards. ``folder`` is
        a descriptor of the entry's directory, open while its entries are yielded, for opening the entry
        by name (``os.open(entry.name, ..., dir_fd=folder)``: the kernel resolves one name instead of
        the whole path, ≈ 8 % of the system time of reading 20,000 small files), or ``None`` (no
        ``dir_fd`` on this system, or a folder deeper than :data:`_FOLDERS_HELD`): then open it by path.
        ``plain`` says ``rel`` is ASCII without a control character or backslash (:func:`_plain`), the
        names selection need not look at further: asked once of a folder's names joined, and name by
        name only in a folder where they are not all plain."""
        root_real = os.path.realpath(self.root)
        problems: dict[str, str] = {}
        packs = self.packs
        by_name: tuple[dict[bytes, bool], dict[bytes, bool]] = ({}, {})  # verdicts in name-only folders
        # one frame per open directory: its rel with a trailing "/", the real paths above it, whether its
        # verdicts depend on names alone (asked once per folder, not each time the walk comes back to it),
        # its descriptor, its entries left, and whether its rel and all its names are plain
        stack: list[tuple[bytes, tuple[str, ...], bool, int | None, Iterator[tuple[bytes, bool, os.DirEntry[bytes]]], bool]] = []
        try:
            root = os.fsencode(self.root)
            listing, all_plain = self._listing(root, b"", problems)  # listed first: nothing can fail between open and push
            stack.append((b"", (root_real,), self._name_only(b""), _open_folder(root), listing, all_plain))
            while stack:
                rel_dir, ancestors, name_only, folder, entries, all_plain = stack[-1]
                for _key, is_dir, entry in entries:
                    name = entry.name
                    rel = rel_dir + name
                    if name_only:
                        cache = by_name[is_dir]
                        packed = cache.get(name)
                        if packed is None:
                            packed = packs(rel, name, is_dir)
                            if len(cache) < _NAME_CACHE:
                                cache[name] = packed
                    else:
                        packed = packs(rel, name, is_dir)
                    plain = all_plain or _plain(rel)
                    yield rel, entry, is_dir, packed, folder, plain
                    if is_dir and packed:
                        if entry.is_symlink():
                            real = os.path.realpath(os.fsdecode(entry.path))
                            if real in ancestors or not _inside(real, root_real):
                                continue  # reported by select_files
                        else:
                            real = os.path.join(ancestors[-1], os.fsdecode(entry.name))
                        child = rel + b"/"
                        listing, names_plain = self._listing(entry.path, rel, problems)
                        held = _open_folder(entry.path) if len(stack) < _FOLDERS_HELD else None
                        stack.append((child, (*ancestors, real), self._name_only(child), held, listing, plain and names_plain))
                        break
                else:
                    stack.pop()
                    if folder is not None:
                        os.close(folder)
        finally:
            for frame in stack:  # the walk was left early (an error, or the caller stopped)
                if frame[3] is not None:
                    os.close(frame[3])
        if problems:
            raise SelectionError("\n".join(problems.values()), problems)

    def _name_only(self, rel_dir: bytes) -> bool:
        """Whether every verdict in the folder ``rel_dir`` (with its trailing ``/``) depends on the
        entry's name alone: below the root, and no path there can start with a path-dependent prefix."""
        special = self._path_dependent
        if not rel_dir or special is None:
            return False
        return not any(rel_dir.startswith(prefix) or prefix.startswith(rel_dir) for prefix in special)

    def _listing(
        self, path: bytes, rel: bytes, problems: dict[str, str]
    ) -> tuple[Iterator[tuple[bytes, bool, os.DirEntry[bytes]]], bool]:
        """A directory's entries as ``(sort key, is_dir, entry)``, sorted, and whether all their names are
        plain; a directory that cannot be listed is recorded in ``problems`` and yields nothing."""
        try:
            with os.scandir(path) as iterator:
                entries = list(iterator)
        except OSError as error:
            shown = display_path(rel) or "."
            problems[shown] = (
                f"{shown}/: cannot list directory ({error.strerror}); fix its permissions or add "
                f"`{self.suggest_line(rel or b'.', True)}` to {self.model.detignore}"
            )
            return iter(()), True
        try:  # known from the listing, except for a symlink: its target may fail to stat
            kinds = [entry.is_dir() for entry in entries]
        except OSError:
            kinds = [_is_dir(entry) for entry in entries]
        keyed = [(entry.name + b"/" if is_dir else entry.name, is_dir, entry) for entry, is_dir in zip(entries, kinds)]
        keyed.sort(key=_sort_key)  # by the key alone (keys are unique): a third less than comparing tuples
        # "/" is in no name, and plain: the names joined by it are plain exactly when each one is
        return iter(keyed), _plain(b"/".join([entry.name for entry in entries]))


_sort_key = operator.itemgetter(0)
_FOLDER_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
#: Folder descriptors the walk holds at most (one per level): deeper folders' files are opened by path,
#: so a tree hundreds of folders deep never runs the process out of descriptors (1,024 by default).
_FOLDERS_HELD = 64


def _open_folder(path: bytes) -> int | None:
    """A descriptor of the directory ``path`` to open its entries by name, or ``None`` where that is
    not possible (no ``dir_fd`` support, as on Windows, or the folder cannot be opened): by path then."""
    if os.open not in os.supports_dir_fd:
        return None
    try:
        return os.open(path, _FOLDER_FLAGS)
    except OSError:
        return None


def _unprintable(char: str) -> bool:
    """A control character, or a byte that was not UTF-8 (decoded with ``surrogateescape``)."""
    return ord(char) < 32 or ord(char) == 127 or 0xDC80 <= ord(char) <= 0xDCFF


def display_path(rel: bytes) -> str:
    """A path as messages show it: undecodable bytes and control characters escaped as ``\\xNN``."""
    text = rel.decode("utf-8", "surrogateescape")
    return "".join(f"\\x{(ord(c) & 0xFF):02x}" if _unprintable(c) else c for c in text)


def _is_dir(entry: os.DirEntry[bytes]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def _inside(real: str, root_real: str) -> bool:
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


def _is_our_output(name: bytes) -> bool:
    if name.endswith(_ARTIFACT_SUFFIXES):
        return True
    return name.startswith(b".") and name.endswith(b".tmp") and b".detmodel." in name


def _relative_bytes(root: Path, target: Path) -> bytes | None:
    """``target`` relative to ``root`` as POSIX bytes, or ``None`` when it is not inside."""
    root_real = os.path.realpath(root)
    target_real = os.path.realpath(target)
    if target_real == root_real:
        return b""
    if not _inside(target_real, root_real):
        return None
    return os.fsencode(os.path.relpath(target_real, root_real)).replace(os.sep.encode(), b"/")


_PLAIN_NAME_BAD_BYTES = re.compile(rb"[\x00-\x1f\x7f\\]")


def _plain(rel: bytes) -> bool:
    """ASCII, without a control character or a backslash: a name that needs no closer look."""
    return rel.isascii() and _PLAIN_NAME_BAD_BYTES.search(rel) is None


def _name_problem(rel: bytes) -> str | None:
    """Why a kept path's name cannot be packed (asked only of names that are not ASCII, or hold a
    control character or a backslash)."""
    try:
        text = rel.decode("utf-8")
    except UnicodeDecodeError:
        return "its name is not valid UTF-8; rename it"
    if unicodedata.normalize("NFC", text) != text:
        return "its name is not in Unicode NFC form (macOS-style decomposed accents); rename it"
    if "\\" in text:
        return "its name contains a backslash, which Windows and Determined's upload treat as a separator; rename it"
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return "its name contains a control character; rename it"
    return None


def select_files(
    model: ModelConfig,
    output_dir: Path | None = None,
    extra_output_dirs: Sequence[Path] = (),
    read_ahead: int = 0,
    on_selected: Callable[[list[SelectedFile], dict[str, bytes]], object] | None = None,
) -> Selection:
    """Walk the model definition and return the files to pack, sorted by UTF-8 path bytes.

    With ``read_ahead`` (bytes), a build's selection also reads small files while it visits them, up
    to that many bytes in all: opening a file and asking its descriptor for size and mode costs less
    than asking the path and opening it later, and each file is still read once. Whatever goes wrong
    while reading ahead is left for the writer to meet and report, as it would without.
    The bytes read are the selection's :attr:`Selection.read_ahead`. ``on_selected`` is handed the
    files selected so far, a few hundred at a time and in order, with those bytes, while the walk goes
    on (a build starts compressing them before the plan is complete, taking out the bytes it wrote).

    Raises :class:`SelectionError` listing every kept path that cannot be packed faithfully.
    """
    selector = Selector(model, output_dir, extra_output_dirs)
    root_real = os.path.realpath(model.root)
    files: list[SelectedFile] = []
    problems: dict[str, str] = {}
    ignore_name = model.detignore
    guard = SecretGuard(model.allow_secrets, ignore_name)

    def refuse(rel: bytes, is_dir: bool, problem: str) -> None:
        # Messages are built only for refused paths: the common path stays cheap.
        shown = display_path(rel)
        how = f"add `{selector.suggest_line(rel, is_dir)}` to {ignore_name} to leave it out"
        problems[shown] = f"{shown}: {problem}{how}"

    manifest_name = MANIFEST_NAME.encode()
    secrets: dict[str, str] = {}
    secret_rule = guard.secrets.match_entry  # bound once: this loop runs per kept file
    # The guard's verdict for a path that starts with none of its path rules' prefixes depends on the
    # name alone: kept here by name, a dict lookup instead of a call per file (≈ 0.8 µs, 16 ms on wide).
    secret_prefixes = guard.secrets.path_prefixes
    secret_by_name: dict[bytes, Rule | None] = {}
    append = files.append
    selected = tuple.__new__  # SelectedFile's own __new__ is a Python function: a few times the cost
    ahead: dict[str, bytes] = {}
    os_open, os_fstat, os_read, os_close = os.open, os.fstat, os.read, os.close
    read_limit = min(read_ahead, _READ_AHEAD_LARGEST)  # the largest file still read ahead
    handed = 0  # how many files on_selected has had
    hand_on = _HAND_ON if on_selected is not None else -1
    hand_on_below = read_ahead - _HAND_ON_BYTES if on_selected is not None else -1  # or at this budget left
    for rel, entry, is_dir, packed, folder, plain in selector.walk():
        if not packed:
            continue
        if rel == manifest_name and not is_dir:
            refuse(rel, is_dir, "this name is reserved for the artifact's manifest; rename it or ")
            continue
        if not plain:
            name_problem = _name_problem(rel)
            if name_problem:
                refuse(rel, is_dir, f"{name_problem}, or ")
                continue
        data = None
        if entry.is_symlink():
            st = _symlink_target(rel, entry, is_dir, root_real, refuse)
            if st is None:
                continue
        elif is_dir:
            continue
        else:
            st = None
            # never opens a device (the listing says); not a symlink here, so is_file() need not be told
            # not to follow one (a keyword argument costs the call twice as much)
            if read_ahead > 0 and entry.is_file():
                try:
                    fd = os_open(entry.path if folder is None else entry.name, _READ_AHEAD_FLAGS, dir_fd=folder)
                except OSError:
                    fd = -1
                if fd >= 0:
                    try:
                        st = os_fstat(fd)
                        if S_ISREG(st.st_mode) and st.st_size <= read_limit:
                            data = os_read(fd, st.st_size + 1)
                            if len(data) == st.st_size:
                                read_ahead -= len(data)
                                if read_ahead < _READ_AHEAD_LEAST:
                                    read_ahead = 0  # the rest costs a stat, as without reading ahead
                                elif read_ahead < read_limit:
                                    read_limit = read_ahead
                            else:
                                data = None  # changing while it is read: the writer says so
                    except OSError:
                        st = data = None
                    finally:
                        os_close(fd)
            if st is None:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError as error:
                    refuse(rel, is_dir, f"cannot be read ({error.strerror}); ")
                    continue
        if not S_ISREG(st.st_mode):
            refuse(rel, is_dir, f"is a {_special_kind(st.st_mode)}, not a regular file; Determined can only receive files; ")
            continue
        path = rel.decode()  # UTF-8: checked above
        name = entry.name
        if secret_prefixes is None or rel.startswith(secret_prefixes):
            rule = secret_rule(rel, name, False)
        elif name in secret_by_name:
            rule = secret_by_name[name]
        else:
            rule = secret_rule(rel, name, False)
            if len(secret_by_name) < _NAME_CACHE:
                secret_by_name[name] = rule
        if rule is not None and not rule.negated:
            secret = guard.name_problem(rel, name)
            if secret is not None:
                secrets[path] = secret
        append(selected(SelectedFile, (path, entry.path, st.st_size, (st.st_mode & S_IXUSR) != 0)))
        if data is not None:
            ahead[path] = data
        if len(files) == hand_on or read_ahead <= hand_on_below:
            assert on_selected is not None
            on_selected(files[handed:], ahead)
            handed, hand_on, hand_on_below = len(files), len(files) + _HAND_ON, read_ahead - _HAND_ON_BYTES
    if on_selected is not None and handed < len(files):
        on_selected(files[handed:], ahead)

    problems.update(_case_collisions(files))
    problems.update(secrets)
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        listing = "\n  ".join(problems[path] for path in sorted(problems))
        raise SelectionError(f"{model.root}: cannot pack the model definition ({count}):\n  {listing}", problems)
    return Selection(root=model.root, files=tuple(files), selector=selector, guard=guard, read_ahead=ahead)


def _symlink_target(
    rel: bytes, entry: os.DirEntry[bytes], is_dir: bool, root_real: str, refuse: Callable[[bytes, bool, str], None]
) -> os.stat_result | None:
    """The stat of a kept symlink's target when it is a file inside the root; otherwise refuse it
    (dangling, looping, leaving the root) or, for a directory the walk follows, return ``None``."""
    try:
        target_stat = os.stat(entry.path)
    except OSError as error:
        kind = "loops" if error.errno == 40 else "dangles (its target does not exist)"
        refuse(rel, is_dir, f"symbolic link {kind}; fix it or ")
        return None
    real = os.path.realpath(os.fsdecode(entry.path))
    if not _inside(real, root_real):
        refuse(rel, is_dir, f"symbolic link points outside the model definition (to {real}); copy the file in or ")
        return None
    if is_dir:
        if any(real == a for a in _ancestors_of(entry.path, root_real)):
            refuse(rel, is_dir, "symbolic link to a directory loops back to its own parent; ")
        return None
    return target_stat


def _ancestors_of(path: bytes, root_real: str) -> Iterator[str]:
    parent = os.path.dirname(os.fsdecode(path))
    while True:
        real = os.path.realpath(parent)
        yield real
        if real == root_real or not _inside(real, root_real):
            return
        parent = os.path.dirname(parent)


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def _case_collisions(files: list[SelectedFile]) -> dict[str, str]:
    """Paths (or their directories) that differ only in case collide on macOS and Windows checkouts."""
    joined = "\n".join([selected.path for selected in files])
    if joined.casefold() == joined:
        return {}  # the common case, in one pass over one string: no name has a letter case to differ in
    names = {selected.path for selected in files}
    folders = {path.rpartition("/")[0] for path in names}
    pending = list(folders)
    while pending:  # each directory above a file's own, once
        parent = pending.pop().rpartition("/")[0]
        if parent not in folders:
            folders.add(parent)
            pending.append(parent)
    folders.discard("")
    names |= folders
    if len({name.casefold() for name in names}) == len(names):
        return {}
    by_folded: dict[str, list[str]] = {}
    for name in names:
        by_folded.setdefault(name.casefold(), []).append(name)
    problems: dict[str, str] = {}
    for group in by_folded.values():
        if len(group) > 1:
            first, *others = sorted(group, key=lambda n: n.encode("utf-8"))
            for other in others:
                problems[other] = (
                    f"{other}: differs from {first} only in letter case, which collide on macOS and Windows; rename one"
                )
    return problems
