"""The manifest record (``hatch_detmodel.manifest``): written in pieces, it is the same bytes."""

from __future__ import annotations

import hashlib
import json

import pytest

from hatch_detmodel import manifest as manifest_module
from hatch_detmodel.manifest import ArchiveRecord, FileRecord, Manifest


def _manifest(files: tuple[FileRecord, ...]) -> Manifest:
    return Manifest("demo", "1.0", "default", "model_def:MyTrial", {"module": "model_def"}, files, 1580601600,
                    "hatch-detmodel", "0.1", command=None)


def _record(path: str, size: int, generated: bool = False) -> FileRecord:
    return FileRecord(path, size, "755" if size % 2 else "644", hashlib.sha256(path.encode()).hexdigest(), generated)


CASES = {
    "no files": (),
    "one file": (_record("model_def.py", 0),),
    "generated, non-ASCII, quotes, sizes of every width": tuple(
        _record(path, size, generated=path.startswith("_"))
        for path, size in [("_detmodel_entrypoint.py", 7), ("café/ünï.py", 10**9), ('a"b.txt', 12345), ("z/ü" * 40, 1)]
    ),
    "many pieces": tuple(_record(f"pkg/m{i:05d}.py", i * 37) for i in range(10)),
    # ASCII, but escaped: each alone among plain paths (the length is then counted path by path)
    **{f"ASCII with {name}": (_record("a.py", 1), _record(f"b{char}c.py", 2), _record("d.py", 3))
       for name, char in [("a backslash", "\\"), ("a quote", '"'), ("a tab", "\t"), ("a NUL", "\0"), ("US", "\x1f")]},
}


@pytest.mark.parametrize("case", list(CASES))
def test_pieces_are_the_bytes_and_their_length_is_known_first(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifest_module, "RECORDS_PER_PIECE", 3)
    files = CASES[case]
    whole = _manifest(files).to_bytes()
    streamed = _manifest(files)
    size, pieces = streamed.to_pieces()
    parts = list(pieces)
    assert size == len(whole) and b"".join(parts) == whole
    assert len(parts) == 2 + max(1, -(-len(files) // 3)) - (0 if files else 1)  # head, the list in threes, tail
    record = ArchiveRecord("demo-1.0.detmodel.tgz", 123, "0" * 64)
    whole_sidecar = _manifest(files).sidecar_bytes(record)  # encoded whole, without pieces
    assert b"".join(streamed.sidecar_pieces(record)) == whole_sidecar  # reuses the pieces
    assert list(streamed.sidecar_pieces(record))[1:] == parts[1:]  # the very bytes, not a second encoding
    assert json.loads(whole_sidecar) == {**json.loads(whole), "archive": record.to_json()}
    assert streamed.to_pieces()[0] == size and b"".join(streamed.to_pieces()[1]) == whole  # asked again
    assert json.loads(whole)["files"] == [f.to_json() for f in files]


@pytest.mark.parametrize("key", ["aardvark", "zebra"])
def test_sidecar_pieces_keep_sorted_keys_with_newer_fields(key: str) -> None:
    """A field of a newer schema (kept on read) that sorts before ``archive`` still lands in order."""
    files = CASES["many pieces"]
    manifest = Manifest("demo", "1.0", "default", "model_def:MyTrial", None, files, 0, "hatch-detmodel", "0.1",
                        extra={key: [1, 2]})
    size, pieces = manifest.to_pieces()
    assert b"".join(pieces) == manifest.to_bytes() and size == len(manifest.to_bytes())
    record = ArchiveRecord("demo-1.0.detmodel.tgz", 1, "f" * 64)
    sidecar = b"".join(manifest.sidecar_pieces(record))
    assert sidecar == manifest.sidecar_bytes(record)
    assert sidecar == json.dumps({**json.loads(manifest.to_bytes()), "archive": record.to_json()}, sort_keys=True,
                                 ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
