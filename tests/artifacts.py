"""Helpers for tests that read artifacts: build a small one, and rewrite archives with ``tarfile`` to
tamper with them the way an attacker or a broken copy would."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path
from typing import Callable

from hatch_detmodel import build

Entry = tuple[tarfile.TarInfo, bytes]
Transform = Callable[[list[Entry]], list[Entry]]

#: A small model definition: a package, an executable script, a non-ASCII and a long name (PAX).
FILES: dict[str, str | bytes] = {
    "model_def.py": "from determined import pytorch\n\n\nclass MyTrial(pytorch.PyTorchTrial):\n    pass\n",
    "lib/__init__.py": "",
    "lib/util.py": "VALUE = 1\n",
    "run.sh": "#!/bin/sh\necho hi\n",
    "naïve.txt": "accents\n",
    "deep/" + "d" * 60 + "/" + "f" * 60 + ".txt": "long path\n",
    "weights.bin": bytes(range(256)) * 8,
}


def build_artifact(project: Path, out: Path) -> Path:
    """Build ``project`` into ``out``; return the archive path (the sidecar is beside it)."""
    paths = build(project, out)
    return next(p for p in paths if p.name.endswith(".detmodel.tgz"))


def entries(archive: Path) -> list[Entry]:
    with tarfile.open(archive, "r:gz") as tar:
        result = []
        for info in tar.getmembers():
            handle = tar.extractfile(info) if info.isreg() else None
            result.append((info, handle.read() if handle is not None else b""))
        return result


def write_entries(items: list[Entry], target: Path, fmt: int = tarfile.PAX_FORMAT) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=fmt) as tar:
        for info, data in items:
            if info.isreg():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    target.write_bytes(buffer.getvalue())
    return target


def rewrite(archive: Path, target: Path, transform: Transform, *, keep_sidecar: bool = False,
            fmt: int = tarfile.PAX_FORMAT) -> Path:
    """Rewrite ``archive`` through ``transform`` into ``target`` (a ``.detmodel.tgz`` name); with
    ``keep_sidecar`` the original sidecar is copied beside it, so the archive hash no longer matches."""
    write_entries(transform(entries(archive)), target, fmt)
    if keep_sidecar:
        shutil.copyfile(sidecar_of(archive), sidecar_of(target))
    return target


def sidecar_of(archive: Path) -> Path:
    return archive.with_name(archive.name.replace(".detmodel.tgz", ".detmodel.json"))


def regular(name: str, data: bytes, mode: int = 0o644) -> Entry:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 1580601600
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> Entry:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info, b""


def flip_last_byte(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x01]) if data else b"x"
