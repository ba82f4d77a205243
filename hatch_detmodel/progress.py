"""Progress on stderr, only when stderr is a terminal and only for work that lasts over a second:
logs and pipes (CI) get nothing, so stdout and stderr stay deterministic there."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]

_DELAY = 1.0  # seconds of work before the first progress line
_INTERVAL = 0.1


class Progress:
    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _is_terminal(self.stream)
        self.label = label
        self._start = time.monotonic()  # only to pace the display; never part of any output document
        self._last = 0.0
        self._shown = False

    def bytes(self, done: int, total: int) -> None:
        """``done`` of ``total`` bytes; drawn in place at most ten times a second."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._start < _DELAY or now - self._last < _INTERVAL:
            return
        self._last = now
        percent = f"{100 * done // total}%" if total else ""
        self._draw(f"{self.label}: {percent} of {total / 1e6:,.1f} MB")

    def note(self, message: str) -> None:
        """A step known to take a while (an import in a child process): announced at once."""
        if self.enabled:
            self._draw(message)

    def _draw(self, text: str) -> None:
        self.stream.write(f"\r\x1b[K{text}")
        self.stream.flush()
        self._shown = True

    def done(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
