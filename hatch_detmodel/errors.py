"""The one exception type every stage raises for bad input; front ends turn it into a clean message."""

from __future__ import annotations

__all__ = [
    "ArchiveError",
    "ConfigError",
    "DetmodelError",
    "EntrypointError",
    "SelectionError",
    "SizeLimitError",
]


class DetmodelError(Exception):
    """A problem the user can fix; ``str(error)`` is the whole message (file, field or line, and fix)."""


class ConfigError(DetmodelError, ValueError):
    """``[tool.detmodel]`` is malformed."""


class SelectionError(DetmodelError):
    """The model-definition tree holds something that cannot be packed safely.

    ``problems`` maps each refused path to its message (path first, then what to do)."""

    def __init__(self, message: str, problems: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.problems: dict[str, str] = dict(problems or {})


class EntrypointError(DetmodelError):
    """The entrypoint does not name a trial class (or script) among the packed files."""


class SizeLimitError(DetmodelError):
    """The packed files exceed ``max-size``."""


class ArchiveError(DetmodelError):
    """Writing or reading an artifact failed."""
