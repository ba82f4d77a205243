"""Progress appears on stderr only when it is a terminal, and only after a second of work."""

from __future__ import annotations

import io

import pytest

from hatch_detmodel.progress import Progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal_after_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("hatch_detmodel.progress.time.monotonic", lambda: clock[0])
    terminal = FakeTerminal()
    progress = Progress("reading x.detmodel.tgz", terminal)
    progress.bytes(10, 4_000_000)
    assert terminal.getvalue() == ""  # under a second: nothing
    clock[0] += 1.5
    progress.bytes(2_000_000, 4_000_000)
    assert terminal.getvalue() == "\r\x1b[Kreading x.detmodel.tgz: 50% of 4.0 MB"
    progress.bytes(3_000_000, 4_000_000)  # within 0.1 s of the last line: not redrawn
    assert terminal.getvalue().count("\r") == 1
    progress.done()
    assert terminal.getvalue().endswith("\r\x1b[K")

    pipe = io.StringIO()
    quiet = Progress("x", pipe)
    clock[0] += 5
    quiet.bytes(1, 2)
    quiet.note("importing")
    quiet.done()
    assert pipe.getvalue() == ""
