from __future__ import annotations

import os
import stat
from pathlib import Path

from hatch_detmodel.output import StagedFile


def test_a_staged_file_is_private_until_finished_and_its_name_is_fresh(tmp_path: Path) -> None:
    final = tmp_path / "demo-1.detmodel.tgz"
    first, second = StagedFile(final), StagedFile(final)
    try:
        assert first.temporary != second.temporary  # two builds into one folder never share a name
        for staged in (first, second):
            name = staged.temporary.name
            assert staged.temporary.parent == tmp_path and name.startswith(".demo-1.detmodel.tgz.") and name.endswith(".tmp")
        assert stat.S_IMODE(first.temporary.stat().st_mode) == 0o600
        first.handle.write(b"archive")
        first.finish()
        mask = os.umask(0)
        os.umask(mask)
        assert stat.S_IMODE(first.temporary.stat().st_mode) == 0o666 & ~mask
        first.publish()
        assert final.read_bytes() == b"archive"
    finally:
        first.forget_previous()
        second.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo-1.detmodel.tgz"]
