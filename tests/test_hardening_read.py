"""Crafted artifacts through every reading verb (issue 6): verify, inspect and unpack each refuse every
case with its own message, and nothing is written anywhere (unpack refuses before creating its folder);
from-wheel refuses or flags wheels carrying them. The library-level checks of the same cases live in
``test_reader.py`` / ``test_unpack.py``; this file drives the command line (in process, for speed) and
adds what they lack: case collisions, non-UTF-8 and control-character names, negative PAX sizes,
manifests of the wrong shape, bombs through every verb, from-wheel and inspect on bad inputs."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any, Callable

import pytest

from hatch_detmodel.cli import main
from hatch_detmodel.reader import Limits, read_artifact
from hatch_detmodel.unpack import unpack_artifact

from .artifacts import Entry, build_artifact, entries, regular, sidecar_of, special, write_entries

FILES: dict[str, str | bytes] = {
    "model_def.py": "class MyTrial: pass\n",
    "lib/util.py": "VALUE = 1\n",
    "data.txt": "x" * 3000,
}
MAX_BYTES = 4 << 20


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    (root / "pyproject.toml").write_text('[project]\nname = "crafted"\nversion = "1.0"\n[tool.detmodel]\n'
                                         'entrypoint = "model_def:MyTrial"\n')
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text if isinstance(text, str) else text.decode())
    return build_artifact(root, tmp_path_factory.mktemp("dist"))


def forge(items: list[Entry], change: Callable[[dict[str, Any]], None]) -> list[Entry]:
    """Change the manifest (the last member) and keep its own content digest consistent."""
    info, data = items[-1]
    manifest = json.loads(data)
    change(manifest)
    manifest["files"].sort(key=lambda f: f["path"].encode("utf-8", "surrogateescape"))
    text = "".join(f"{f['sha256']} {f['mode']} {f['path']}\n" for f in manifest["files"])
    manifest["content_digest"] = "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
    return [*items[:-1], (info, json.dumps(manifest).encode())]


def with_member(entry: Entry, listed: bool = False) -> Callable[[list[Entry]], list[Entry]]:
    """Add a member before the manifest; ``listed`` also adds it to the manifest, consistently."""

    def transform(items: list[Entry]) -> list[Entry]:
        items = [*items[:-1], entry, items[-1]]
        if not listed:
            return items
        info, data = entry
        record = {"path": info.name, "size": len(data), "mode": "644", "sha256": hashlib.sha256(data).hexdigest()}
        return forge(items, lambda m: m["files"].append(record))

    return transform


def raw_tar(*blocks: bytes) -> Callable[[Path], None]:
    def write(target: Path) -> None:
        target.write_bytes(gzip.compress(b"".join(blocks) + b"\0" * 1024))

    return write


def pax_member(name: str, data: bytes, pax: dict[str, str]) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.pax_headers = pax
    return info.tobuf(tarfile.PAX_FORMAT) + data + b"\0" * (-len(data) % 512)


def non_utf8_member() -> bytes:
    info = tarfile.TarInfo("bad\udcff.py")
    info.size = 1
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape") + b"x" + b"\0" * 511


def manifest_member(data: bytes) -> Callable[[list[Entry]], list[Entry]]:
    return lambda items: [*items[:-1], (items[-1][0], data)]


def wrong_types(items: list[Entry]) -> list[Entry]:
    manifest = json.loads(items[-1][1])
    manifest["files"] = {"not": "a list"}
    return [*items[:-1], (items[-1][0], json.dumps(manifest).encode())]


def bomb(target: Path) -> None:
    info, data = regular("a.py", b"x")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.addfile(info, io.BytesIO(data))
    target.write_bytes(gzip.compress(buffer.getvalue() + b"\0" * (64 << 20), compresslevel=9))


# case id -> (how to make it from the original's members, or a writer of the whole file;
#             the problem code verify reports; a fragment of its message)
Transform = Callable[[list[Entry]], list[Entry]]
CASES: dict[str, tuple[Transform | Callable[[Path], None], bool, str, str]] = {
    "../ member": (with_member(regular("../escape.py", b"boom")), True, "unsafe-name",
                   "member '../escape.py': the name climbs out with `..`; it would be written outside the folder"),
    "absolute member": (with_member(regular("/tmp/abs.py", b"boom")), True, "unsafe-name",
                        "member '/tmp/abs.py': the name is absolute; it would be written outside the folder"),
    "symlink member": (with_member(special("link.py", tarfile.SYMTYPE, "/etc/passwd")), True, "not-regular",
                       "member 'link.py' is a symbolic link → /etc/passwd; artifacts hold regular files only"),
    "hardlink member": (with_member(special("hard.py", tarfile.LNKTYPE, "model_def.py")), True, "not-regular",
                        "member 'hard.py' is a hard link → model_def.py; artifacts hold regular files only"),
    "device member": (with_member(special("dev", tarfile.CHRTYPE)), True, "not-regular",
                      "member 'dev' is a character device; artifacts hold regular files only"),
    "FIFO member": (with_member(special("pipe", tarfile.FIFOTYPE)), True, "not-regular",
                    "member 'pipe' is a FIFO; artifacts hold regular files only"),
    "duplicate member": (lambda items: [items[0], *items], True, "duplicate",
                         "member 'data.txt' appears more than once (the last copy would win on unpack)"),
    "case collision": (with_member(regular("Model_def.py", b"shadow"), listed=True), True, "manifest-path",
                       ".detmodel.json: files entry 'model_def.py' differs from 'Model_def.py' only in letter case; "
                       "they collide on macOS and Windows"),
    "member not in the manifest": (with_member(regular("evil.py", b"import os\n")), True, "extra",
                                   "evil.py: in the archive but not in the manifest"),
    "manifest entry missing": (lambda items: [e for e in items if e[0].name != "lib/util.py"], True, "missing",
                               "lib/util.py: listed in the manifest but not in the archive"),
    "non-UTF-8 member name": (raw_tar(non_utf8_member()), False, "unsafe-name",
                              "member 'bad\\udcff.py': the name is not valid UTF-8; unpack refuses to write it"),
    "control character in a member name": (with_member(regular("new\nline.py", b"x")), True, "unsafe-name",
                                           "member 'new\\nline.py': the name contains a control character; "
                                           "unpack refuses to write it"),
    "negative PAX size": (raw_tar(pax_member("a.py", b"abc", {"size": "-600"})), False, "corrupt",
                          "PAX header at byte 1024: size '-600' is not a non-negative number; the file is damaged"),
    "manifest not JSON": (manifest_member(b"{not json"), True, "manifest-invalid", ".detmodel.json: not a JSON manifest"),
    "manifest of wrong types": (wrong_types, True, "manifest-invalid", ".detmodel.json: `files` must be a list"),
    "manifest nested too deeply": (manifest_member(b"[" * 100_000 + b"]" * 100_000), True, "manifest-invalid",
                                   "not a manifest (JSON nested too deeply to read)"),
    "decompression bomb": (bomb, False, "limit", f"decompressed content exceeds the limit of {MAX_BYTES:,} bytes"),
}


def make_case(original: Path, folder: Path, case: str) -> Path:
    make, from_members, _, _ = CASES[case]
    target = folder / "crafted-1.0.detmodel.tgz"
    folder.mkdir(parents=True, exist_ok=True)
    if from_members:
        write_entries(make(entries(original)), target)  # type: ignore[arg-type]
    else:
        make(target)  # type: ignore[arg-type]
    return target


def truncated(original: Path, folder: Path) -> Path:
    target = folder / "truncated.detmodel.tgz"
    data = original.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def corrupt_deflate(original: Path, folder: Path) -> Path:
    target = folder / "corrupt.detmodel.tgz"
    data = bytearray(original.read_bytes())
    data[len(data) // 3] ^= 0xFF
    target.write_bytes(bytes(data))
    return target


def listing(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([*map(str, args)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


@pytest.mark.parametrize("case", list(CASES))
def test_every_reading_verb_refuses_a_crafted_artifact(original: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       case: str) -> None:
    _, _, code, fragment = CASES[case]
    artifact = make_case(original, tmp_path / "in", case)
    before = listing(tmp_path)

    report = read_artifact(artifact, use_sidecar=False, limits=Limits(MAX_BYTES))
    assert code in [p.code for p in report.problems]
    assert any(fragment in p.message for p in report.problems if p.code == code), [p.message for p in report.problems]

    status, out, err = cli(capsys, "verify", artifact, "--max-bytes", MAX_BYTES)
    assert status == 1 and f"{artifact}: FAILED" in out and fragment in out.replace("\n", " ")
    data = json.loads(cli(capsys, "verify", artifact, "--max-bytes", MAX_BYTES, "--json")[1])
    assert data["ok"] is False and code in [p["code"] for p in data["problems"]]

    status, out, err = cli(capsys, "inspect", artifact, "--max-bytes", MAX_BYTES)
    # 1: shown, but it fails verification; 2: there is no manifest to show at all
    assert (status, "verified         NO" in out) == (1, True) or (status == 2 and err.startswith("hatch-detmodel: error:"))

    destination = tmp_path / "unpacked" / "inner"
    status, out, err = cli(capsys, "unpack", artifact, destination, "--max-bytes", MAX_BYTES)
    assert status == 1 and "nothing was written" in err and fragment in err.replace("\n", " ")
    assert listing(tmp_path) == before  # not even the destination folder was created
    assert not (tmp_path / "escape.py").exists() and not Path("/tmp/abs.py").exists()


@pytest.mark.parametrize("make", [truncated, corrupt_deflate], ids=["truncated gzip", "corrupt gzip"])
def test_damaged_gzip_through_every_verb(original: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         make: Callable[[Path, Path], Path]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    artifact = make(original, folder)
    before = listing(tmp_path)
    report = read_artifact(artifact)
    # Garbage inflated before the damage is detected may add findings (e.g. an unparsable manifest);
    # the damage itself must always be reported.
    corrupt = [p for p in report.problems if p.code == "corrupt"]
    assert len(corrupt) == 1, [p.code for p in report.problems]
    message = corrupt[0].message
    assert message.startswith(f"{artifact}: ") and "the file is damaged — rebuild or download it again" in message
    status, out, _ = cli(capsys, "verify", artifact)
    assert status == 1 and "corrupt" in out
    status, _, err = cli(capsys, "inspect", artifact)
    assert status == 2 and err.startswith(f"hatch-detmodel: error: {artifact}: ")  # no manifest was reached
    status, _, err = cli(capsys, "unpack", artifact, tmp_path / "dest")
    assert status == 1 and "nothing was written" in err
    assert listing(tmp_path) == before


def test_non_utf8_names_print_escaped_and_json_stays_valid(original: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    artifact = make_case(original, tmp_path, "non-UTF-8 member name")
    status, out, _ = cli(capsys, "verify", artifact, "--json")
    data = json.loads(out)
    assert status == 1 and data["problems"][0]["path"] == "bad\udcff.py"  # the escape survives the round trip
    assert "bad\\udcff.py" in data["problems"][0]["message"]


def test_unpack_refuses_case_collisions_before_writing(original: Path, tmp_path: Path) -> None:
    artifact = make_case(original, tmp_path, "case collision")
    with pytest.raises(Exception, match="fails verification") as caught:
        unpack_artifact(artifact, tmp_path / "out")
    assert "manifest-path" in [p.code for p in caught.value.report.problems]  # type: ignore[attr-defined]
    assert not (tmp_path / "out").exists()


# --- from-wheel and inspect on bad inputs -----------------------------------------------------------------

EMBEDDED = "crafted-1.0.dist-info/extra_metadata/detmodel"


def wheel_with(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("crafted/__init__.py", b"")
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_from_wheel_writes_a_consistent_but_crafted_artifact_then_fails_its_verification(
        original: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The sidecar vouches for the crafted bytes (so extraction is byte-faithful), and the verification that
    follows flags the escaping member: exit 1, the problem listed, nothing written outside the folder."""
    crafted = make_case(original, tmp_path / "craft", "../ member")
    sidecar = json.loads(sidecar_of(original).read_text())
    sidecar["archive"] = {"name": crafted.name, "size": crafted.stat().st_size,
                          "sha256": hashlib.sha256(crafted.read_bytes()).hexdigest()}
    wheel = wheel_with(tmp_path / "crafted-1.0-py3-none-any.whl", {
        f"{EMBEDDED}/{crafted.name}": crafted.read_bytes(),
        f"{EMBEDDED}/{sidecar_of(crafted).name}": json.dumps(sidecar).encode(),
    })
    out = tmp_path / "out"
    status, _, err = cli(capsys, "from-wheel", wheel, "-o", out)
    assert status == 1
    assert "FAILED verification" in err and "the name climbs out with `..`" in err
    assert sorted(p.name for p in out.iterdir()) == [sidecar_of(crafted).name, crafted.name]
    assert not (tmp_path / "escape.py").exists()


@pytest.mark.parametrize(
    ("sidecar", "message"),
    [
        (b"{not json", "not a JSON manifest"),
        (b"[" * 100_000, "not a manifest (JSON nested too deeply to read)"),
        (b'{"schema": "hatch-detmodel/manifest/v1", "project": []}', "`project` must be an object"),
    ],
    ids=["not JSON", "nested too deeply", "wrong types"],
)
def test_from_wheel_refuses_a_bad_sidecar_and_writes_nothing(original: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str], sidecar: bytes,
                                                            message: str) -> None:
    wheel = wheel_with(tmp_path / "crafted-1.0-py3-none-any.whl", {
        f"{EMBEDDED}/{original.name}": original.read_bytes(),
        f"{EMBEDDED}/{sidecar_of(original).name}": sidecar,
    })
    status, _, err = cli(capsys, "from-wheel", wheel, "-o", tmp_path / "out")
    assert status == 2 and message in err and err.startswith("hatch-detmodel: error: ")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_inspect_explains_unreadable_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.detmodel.tgz").write_bytes(b"")
    (tmp_path / "zeros.detmodel.tgz").write_bytes(gzip.compress(b"\0" * 2048))
    (tmp_path / "text.detmodel.tgz").write_bytes(gzip.compress(b"hello, this is not a tar archive" * 40))
    expected = {
        "empty.detmodel.tgz": "not a gzip file, so not a .detmodel.tgz",
        "zeros.detmodel.tgz": "has no .detmodel.json member",
        "text.detmodel.tgz": "tar header at byte 0: checksum field b' tar arc' is not a number; the file is damaged",
    }
    for name, fragment in expected.items():
        status, out, err = cli(capsys, "inspect", tmp_path / name)
        assert status == 2 and out == "" and fragment in err, (name, err)
        assert err.count(name) == 1, err  # the artifact is named once
        assert json.loads(cli(capsys, "inspect", tmp_path / name, "--json")[1])["error"].startswith(str(tmp_path / name))
