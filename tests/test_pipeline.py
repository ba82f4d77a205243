"""The whole pipeline through ``hatch_detmodel.build``: artifact, manifest, size limit, atomicity."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import shutil
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

import hatch_detmodel
from hatch_detmodel import archive, build, pipeline
from hatch_detmodel.check import check_project
from hatch_detmodel.config import ProjectIdentity, load_project
from hatch_detmodel.errors import ArchiveError, SelectionError, SizeLimitError
from hatch_detmodel.pipeline import determined_size, plan_model
from hatch_detmodel.secret_guard import SecretGuard
from hatch_detmodel.shim import GeneratedFile

from .conftest import EXAMPLE, ProjectFactory

IDENTITY = ProjectIdentity("demo-project", "1.2.3")


def read_tgz(path: Path) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(path, "r:gz") as tar:
        members = {}
        for info in tar.getmembers():
            handle = tar.extractfile(info)
            members[info.name] = (info, handle.read() if handle else b"")
        return members


def independent_digest(files: list[dict[str, object]]) -> str:
    text = "".join(f"{f['sha256']} {f['mode']} {f['path']}\n" for f in files)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_example_artifact_layout_and_manifest(tmp_path: Path) -> None:
    paths = build(EXAMPLE, tmp_path)
    archive_path, sidecar_path = paths
    assert archive_path.name == "synthetic_classifier-0.1.0.detmodel.tgz"
    assert sidecar_path.name == "synthetic_classifier-0.1.0.detmodel.json"
    members = read_tgz(archive_path)
    names = list(members)
    assert names == ["const.yaml", "data.py", "model_def.py", "pyproject.toml", ".detmodel.json"]
    manifest = json.loads(members[".detmodel.json"][1])
    assert manifest["schema"] == "hatch-detmodel/manifest/v1"
    assert manifest["project"] == {"name": "synthetic-classifier", "version": "0.1.0"}
    assert manifest["model"] == "default"
    assert manifest["entrypoint"] == "model_def:SyntheticTrial"
    assert manifest["trial"] == {"module": "model_def", "qualname": "SyntheticTrial", "path": "model_def.py",
                                 "bases": ["pytorch.PyTorchTrial"]}
    assert manifest["source_date_epoch"] == 1580601600
    assert manifest["builder"] == {"name": "hatch-detmodel", "version": hatch_detmodel.__version__}
    # Every hash is of the bytes in the archive, and equals the source file's; digest recomputed here.
    for entry in manifest["files"]:
        info, data = members[entry["path"]]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert (EXAMPLE / entry["path"]).read_bytes() == data
        assert (info.size, f"{info.mode:o}") == (entry["size"], entry["mode"])
    assert [f["path"] for f in manifest["files"]] == names[:-1]
    assert manifest["content_digest"] == independent_digest(manifest["files"])
    # Canonical JSON: sorted keys, trailing newline.
    raw = members[".detmodel.json"][1]
    assert raw == (json.dumps(manifest, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
    sidecar = json.loads(sidecar_path.read_text())
    assert sidecar.pop("archive") == {
        "name": archive_path.name,
        "size": archive_path.stat().st_size,
        "sha256": hashlib.sha256(archive_path.read_bytes()).hexdigest(),
    }
    assert sidecar == manifest
    for info, _ in members.values():
        assert (info.uid, info.gid, info.uname, info.gname, info.mtime, info.type) == (0, 0, "", "", 1580601600, tarfile.REGTYPE)


def test_gnu_tar_and_tarfile_read_it(tmp_path: Path) -> None:
    archive_path, _ = build(EXAMPLE, tmp_path / "out")
    listed = subprocess.run(["tar", "tzf", str(archive_path)], capture_output=True, text=True, check=True).stdout.split()
    assert listed == ["const.yaml", "data.py", "model_def.py", "pyproject.toml", ".detmodel.json"]
    target = tmp_path / "x"
    target.mkdir()
    subprocess.run(["tar", "xzf", str(archive_path), "-C", str(target)], check=True)
    assert (target / "model_def.py").read_bytes() == (EXAMPLE / "model_def.py").read_bytes()
    raw = archive_path.read_bytes()
    assert raw[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, mtime 0, XFL 0 (neither level 1 nor 9)


def copy_shuffled(source: Path, target: Path, seed: int) -> None:
    """Copy a tree creating files in a random order with random mtimes."""
    files = sorted(p for p in source.rglob("*") if p.is_file())
    random.Random(seed).shuffle(files)
    for path in files:
        dest = target / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        stamp = random.Random(seed + len(str(path))).randrange(10**9)
        os.utime(dest, (stamp, stamp))


def test_byte_identical_across_folders_mtimes_umask_and_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    digests = set()
    for round_number, mask in enumerate([0o022, 0o077, 0o002]):
        copy = tmp_path / f"copy{round_number}" / ("deeper/" * round_number + "example")
        old = os.umask(mask)
        try:
            copy_shuffled(EXAMPLE, copy, seed=round_number)
            monkeypatch.chdir(copy.parent)
            archive_path, sidecar = build(copy, tmp_path / f"out{round_number}")
        finally:
            os.umask(old)
        digests.add((hashlib.sha256(archive_path.read_bytes()).digest(), sidecar.read_bytes()))
    assert len(digests) == 1


def test_source_date_epoch_changes_timestamps_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, first_sidecar = build(EXAMPLE, tmp_path / "a")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    second, second_sidecar = build(EXAMPLE, tmp_path / "b")
    assert first.read_bytes() != second.read_bytes()
    a, b = json.loads(first_sidecar.read_text()), json.loads(second_sidecar.read_text())
    assert a["content_digest"] == b["content_digest"]
    assert b["source_date_epoch"] == 1700000000
    assert {info.mtime for info, _ in read_tgz(second).values()} == {1700000000}


def test_dist_inside_root_is_not_packed(make_project: ProjectFactory) -> None:
    root = make_project()
    build(root, root / "dist", identity=IDENTITY)
    (root / "dist" / "demo_project-1.2.3-py3-none-any.whl").write_bytes(b"wheel")
    archive_path, _ = build(root, root / "dist", identity=IDENTITY)
    assert list(read_tgz(archive_path)) == ["model_def.py", "pyproject.toml", ".detmodel.json"]


def test_several_models(make_project: ProjectFactory, tmp_path: Path) -> None:
    root = make_project(
        files={"cifar/model_def.py": "class A: pass\n", "mnist/__init__.py": "class B: pass\n", "shared.txt": ""},
        detmodel="""\
        [tool.detmodel]
        entrypoint = "model_def:A"
        [tool.detmodel.models.cifar]
        path = "cifar"
        [tool.detmodel.models.mnist]
        path = "mnist"
        entrypoint = ":B"
        """,
    )
    paths = build(root, tmp_path, identity=IDENTITY)
    assert [p.name for p in paths] == [
        "demo_project-1.2.3-cifar.detmodel.tgz", "demo_project-1.2.3-cifar.detmodel.json",
        "demo_project-1.2.3-mnist.detmodel.tgz", "demo_project-1.2.3-mnist.detmodel.json",
    ]
    assert list(read_tgz(paths[2])) == ["__init__.py", "_detmodel_entrypoint.py", ".detmodel.json"]
    assert json.loads(paths[3].read_text())["model"] == "mnist"
    only = build(root, tmp_path / "one", model="mnist", identity=IDENTITY)
    assert [p.name for p in only] == [paths[2].name, paths[3].name]
    assert only[0].read_bytes() == paths[2].read_bytes()


def determined_total(root: Path, tmp_path: Path) -> int:
    """Determined's size accounting for the unpacked artifact (manifest included)."""
    archive_path, _ = build(root, tmp_path / "measure", identity=IDENTITY)
    return sum(determined_size(len(data)) for _, data in read_tgz(archive_path).values())


def test_size_limit_exactly_at_limit_passes_one_byte_over_fails(make_project: ProjectFactory, tmp_path: Path) -> None:
    # The limit is written into the packed pyproject.toml, so measure with a placeholder of the same width.
    root = make_project(
        files={"model_def.py": "class MyTrial: pass\n", "weights.bin": b"\0" * 1000, "a.txt": "a"},
        detmodel='entrypoint = "model_def:MyTrial"\nmax-size = 9999',
    )
    limit = determined_total(root, tmp_path)
    assert len(str(limit)) == 4
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("9999", str(limit)))
    assert determined_total(root, tmp_path) == limit
    build(root, tmp_path / "ok", identity=IDENTITY)  # exactly at the limit passes
    pyproject.write_text(pyproject.read_text().replace(str(limit), str(limit - 1)))
    with pytest.raises(SizeLimitError) as caught:
        build(root, tmp_path / "over", identity=IDENTITY)
    message = str(caught.value)
    assert f"{limit:,} bytes as Determined counts them" in message
    assert f"limit of {limit - 1:,} bytes" in message
    assert "1,000 bytes  weights.bin    (.detignore line: /weights.bin)" in message
    assert not (tmp_path / "over").exists() or not any((tmp_path / "over").iterdir())


def test_check_and_build_agree_when_only_the_manifest_crosses_the_limit(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    """The files fit and the manifest tips the total over: `check` (planning only) refuses exactly
    when the build does, before anything is read or written."""
    root = make_project(
        files={"model_def.py": "class MyTrial: pass\n", "data.bin": b"x" * 3000, 'q"uote/é.py': ""},
        detmodel='entrypoint = "model_def:MyTrial"\nmax-size = 9999',  # pyproject.toml is packed: keep 4 digits
    )
    limit = determined_total(root, tmp_path)
    pyproject = root / "pyproject.toml"
    files_only = limit - determined_size(len(read_tgz(build(root, tmp_path / "m", identity=IDENTITY)[0])[".detmodel.json"][1]))
    for max_size, fits in ((limit, True), (limit - 1, False), (files_only + 10, False)):
        assert len(str(max_size)) == 4
        pyproject.write_text(re.sub(r"max-size = \d+", f"max-size = {max_size}", pyproject.read_text()))
        assert [m.ok for m in check_project(root).models] == [fits]
        out = tmp_path / f"out-{max_size}"
        if fits:
            build(root, out, identity=IDENTITY)
        else:
            with pytest.raises(SizeLimitError):
                build(root, out, identity=IDENTITY)
            assert not out.exists()  # refused while planning: not even the folder is made


def test_manifest_bound_is_never_below_the_manifest(make_project: ProjectFactory) -> None:
    names = ["a.py", 'q"q.py', "é/ü.py", "x" * 200 + ".py", "d/" * 40 + "deep.py", "sp ace.txt"]
    files = {"__init__.py": "class MyTrial: pass\n", **{n: "" for n in names}}
    root = make_project(files=files, detmodel='entrypoint = ":MyTrial"')  # `:Class` adds a generated file
    project = load_project(root, IDENTITY)
    plan = plan_model(project, project.models[0], root / "dist", 0)
    assert any(isinstance(f, GeneratedFile) for f in plan.files)
    assert pipeline._manifest_bound(plan.skeleton, plan.files) >= pipeline._manifest_size(plan.skeleton, plan.files)


def test_failed_build_leaves_no_partial_file_and_keeps_the_old_one(
    make_project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(files={"model_def.py": "class MyTrial: pass\n", "z.txt": "z"})
    out = tmp_path / "out"
    build(root, out, identity=IDENTITY)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (root / "model_def.py").write_text("class MyTrial: pass\n# changed\n")
    real_read = os.read
    calls = []

    def failing_read(fd: int, size: int) -> bytes:
        calls.append(fd)
        if len(calls) >= 2:
            raise OSError(5, "Input/output error")  # a disk failing half-way through
        return real_read(fd, size)

    monkeypatch.setattr(os, "read", failing_read)
    with pytest.raises(ArchiveError, match=r"cannot be read \(Input/output error\)"):
        build(root, out, identity=IDENTITY)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temporary file left either


@pytest.mark.parametrize("budget", [0, 10, pipeline.READ_AHEAD])
def test_each_file_is_read_once_and_the_read_ahead_budget_never_changes_the_bytes(
    make_project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    # Selection reads small files ahead within a budget; the writer reads the rest (here: all, some
    # or none of them). Either way each file's bytes are read once and the archive is the same.
    files = {"model_def.py": "class MyTrial: pass\n", "a.txt": "0123456789", "b/c.txt": "x" * 5, "e.txt": ""}
    root = make_project(files={**files, "big.bin": "y" * (1 << 20)})
    reference, _ = build(root, tmp_path / "reference", identity=IDENTITY)
    monkeypatch.setattr(pipeline, "READ_AHEAD", budget)
    real_open, real_read = os.open, os.read
    names: dict[int, str] = {}
    read: dict[str, int] = {}

    def counting_open(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        fd = real_open(path, flags, *args, **kwargs)
        names[fd] = os.path.relpath(os.fsdecode(path), root)
        return fd

    def counting_read(fd: int, size: int) -> bytes:
        data = real_read(fd, size)
        read[names.get(fd, "?")] = read.get(names.get(fd, "?"), 0) + len(data)
        return data

    monkeypatch.setattr(os, "open", counting_open)
    monkeypatch.setattr(os, "read", counting_read)
    archive_path, _ = build(root, tmp_path / "out", identity=IDENTITY)
    monkeypatch.undo()
    sizes = {path: (root / path).stat().st_size for path in [*files, "big.bin", "pyproject.toml"]}
    assert {path: read.get(path, 0) for path in sizes} == sizes  # each file's bytes read once
    assert archive_path.read_bytes() == reference.read_bytes()


def test_bytes_read_ahead_are_held_only_until_they_are_written(make_project: ProjectFactory) -> None:
    root = make_project(files={"model_def.py": "class MyTrial: pass\n", "a.txt": "a" * 100, "big.bin": "b" * (1 << 20)})
    project = load_project(root, IDENTITY)
    (model,) = project.models
    for started in (None, pipeline.ArchiveWriter(model, 0, SecretGuard((), ".detignore"))):
        plan = plan_model(project, model, root / "dist", 0, started=started, read_ahead=1 << 20)
        # a started archive wrote a.txt, then stopped at big.bin (too large to read ahead) to keep the order
        assert set(plan.selection.read_ahead) == ({"model_def.py", "pyproject.toml"} | ({"a.txt"} if started is None else set()))
        pipeline.write_archive(plan, None, "x.detmodel.tgz", started)
        assert plan.selection.read_ahead == {}


@pytest.mark.parametrize("failing", ["size check", "selection", "several models"])
def test_a_plan_failing_after_compression_started_writes_nothing_and_stops_the_workers(
    make_project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    # 300 files of 2 KiB: compression has started (selection hands files on every 256 or 512 KiB) when the size
    # check refuses the model, or its selection refuses a file that sorts last. With several models
    # nothing starts early (each would hold its bytes and workers until all are planned).
    files: dict[str, str | bytes] = {f"data/{i:03d}.txt": os.urandom(1024).hex() for i in range(300)}
    limit = 100_000 if failing == "size check" else 10_000_000
    detmodel = f'entrypoint = "model_def:MyTrial"\nmax-size = {limit}'
    if failing == "several models":
        detmodel = (f'[tool.detmodel.models.first]\n{detmodel}\nexclude = ["/second/"]\n'
                    '[tool.detmodel.models.second]\nentrypoint = "m:MyTrial"\npath = "second"\n')
    root = make_project(files={"model_def.py": "class MyTrial: pass\n", "second/m.py": "class MyTrial: pass\n", **files},
                        detmodel=detmodel)
    if failing != "size check":
        (root / "second" / "zz\x01.py").write_text("")
    taken: list[int] = []
    real_take = pipeline.ArchiveWriter.take

    def counting_take(self, selected, read_ahead):  # type: ignore[no-untyped-def]
        taken.append(len(selected))
        return real_take(self, selected, read_ahead)

    monkeypatch.setattr(pipeline.ArchiveWriter, "take", counting_take)
    out = tmp_path / "out"
    with pytest.raises((SizeLimitError, SelectionError)):
        build(root, out, identity=IDENTITY)
    assert taken[:1] == ([] if failing == "several models" else [256])  # compressing when the build failed
    assert not out.exists()
    assert [t.name for t in threading.enumerate() if t.name.startswith("detmodel-gzip")] == []


def test_file_changing_size_during_build_stops_it(
    make_project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(files={"model_def.py": "class MyTrial: pass\n", "grow.txt": "abc"})
    monkeypatch.setattr(pipeline, "READ_AHEAD", 0)  # read by the writer, as files beyond the budget are
    real_write = archive.MemberWriter.write

    def grow_then_write(self, files, read_ahead, read=True):  # type: ignore[no-untyped-def]
        if read:  # after selection, as the writer reads
            (root / "grow.txt").write_text("abcdef")
        return real_write(self, files, read_ahead, read)

    monkeypatch.setattr(archive.MemberWriter, "write", grow_then_write)
    with pytest.raises(ArchiveError, match=r"grow\.txt: changed size while the build ran"):
        build(root, tmp_path / "out", identity=IDENTITY)
    assert not any((tmp_path / "out").iterdir())


def test_long_and_unicode_paths_use_pax_records(make_project: ProjectFactory, tmp_path: Path) -> None:
    long_path = "/".join(["d" * 60] * 3) + "/file.py"
    root = make_project(files={"model_def.py": "class MyTrial: pass\n", long_path: "x", "ünï/cödé.py": "y"})
    archive_path, _ = build(root, tmp_path, identity=IDENTITY)
    members = read_tgz(archive_path)
    assert members[long_path][1] == b"x"
    assert members["ünï/cödé.py"][1] == b"y"
    assert members[long_path][0].pax_headers == {"path": long_path}
    assert members["model_def.py"][0].pax_headers == {}


def test_headers_parse_identically_to_tarfile(tmp_path: Path) -> None:
    """Our hand-built header decodes to the same fields tarfile would write for that file."""
    for path, size in [("a.py", 5), ("x" * 100, 0), ("x" * 101, 7), ("dir/ü.py", 3)]:
        ours = archive.tar_header(path.encode(), size, 0o755, 1580601600) + b"\0" * (-size % 512 + size)
        info = tarfile.TarInfo.frombuf(ours[:512], "utf-8", "surrogateescape")
        with tarfile.open(fileobj=io.BytesIO(ours + b"\0" * 1024)) as tar:
            (member,) = tar.getmembers()
        assert (member.name, member.size, member.mode, member.mtime, member.uid, member.uname) == (
            path, size, 0o755, 1580601600, 0, "")
        assert info.chksum == tarfile.calc_chksums(ours[:512])[0]


@pytest.mark.parametrize("enabled_before", [True, False])
def test_overlapping_builds_share_the_collector_pause(enabled_before: bool) -> None:
    """Two builds in threads of one process: the first to end must not turn the collector back on
    under the other, and the last to end restores what was there before."""
    import gc

    was = gc.isenabled()
    (gc.enable if enabled_before else gc.disable)()
    try:
        first, second = pipeline.collector_paused(), pipeline.collector_paused()
        first.__enter__()
        assert not gc.isenabled()
        second.__enter__()
        first.__exit__(None, None, None)
        assert not gc.isenabled()  # the second build still runs
        second.__exit__(None, None, None)
        assert gc.isenabled() is enabled_before
        with pytest.raises(KeyError), pipeline.collector_paused():
            raise KeyError("a failing build")
        assert gc.isenabled() is enabled_before
    finally:
        (gc.enable if was else gc.disable)()


def test_a_build_leaves_no_reference_cycles(make_project: ProjectFactory, tmp_path: Path) -> None:
    """The archive writer and its per-file records are freed by reference counting as soon as the
    build drops them: none of the build's own objects is left for the cyclic collector to find (it was
    a pass over every record of the build). Python 3.9's ``Path.resolve`` leaves a few cycles of its
    own, a fixed number per build."""
    import gc

    files = 300
    root = make_project({"model_def.py": "class MyTrial: pass\n", **{f"pkg/m{i}.py": f"x = {i}\n" for i in range(files)}})
    build(root, tmp_path / "warm", identity=IDENTITY)  # first-use imports and caches are not the build's garbage
    was = gc.isenabled()
    gc.disable()
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds stays in gc.garbage, to be looked at
    try:
        build(root, tmp_path / "out", identity=IDENTITY)
        gc.collect()
        ours = [obj for obj in gc.garbage if type(obj).__module__.startswith("hatch_detmodel")]
        found = len(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was:
            gc.enable()
    assert ours == [] and found < files // 4, found


@pytest.mark.parametrize("front_end", ["library", "cli"])
def test_the_collector_resumes_with_nothing_of_the_build_to_visit(
    front_end: str, make_project: ProjectFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``build`` and the command line free the artifacts' records before the collector resumes: a
    collection that starts then finds far fewer young objects than one record per file (2,000 here;
    the command line's own parser is among them)."""
    import gc

    from hatch_detmodel import cli

    root = make_project({"model_def.py": "class MyTrial: pass\n", **{f"pkg/m{i}.py": f"x = {i}\n" for i in range(2000)}})

    def run_build(out: Path) -> None:
        if front_end == "library":
            build(root, out, identity=IDENTITY)
        else:
            assert cli.main(["build", str(root), "-o", str(out)]) == 0

    run_build(tmp_path / "warm")
    young_at_start: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 0:
            young_at_start.append(len(gc.get_objects(0)))

    was = gc.isenabled()
    gc.enable()
    gc.collect()
    gc.callbacks.append(seen)
    try:
        run_build(tmp_path / "out")
        [[] for _ in range(10)]  # allocations: where a pending collection would start
    finally:
        gc.callbacks.remove(seen)
        if not was:
            gc.disable()
    assert max(young_at_start, default=0) < 1000, young_at_start
    assert len(list((tmp_path / "out").glob("*.detmodel.tgz"))) == 1
