"""What a build cannot go below on this machine, measured part by part on the benchmark trees.

    python benchmarks/floors.py            # typical, heavy, wide (trees from benchmarks/run.py's cache)

For each tree it measures, in fresh child processes where start-up matters:

- ``deflate``: CPU seconds, on one core, of compressing the tree's uncompressed tar stream at our default
  level (5) with random-looking pieces stored rather than searched (random data costs a copy, not a
  futile search); the stream comes from our own archive writer, so it is exactly what
  gets compressed. Half of it is the least two cores can spend; ``deflate wall`` is what our two
  workers take for it, with nothing else running (how far this machine's two cores are from 2×);
- ``file I/O``: one process that only lists the kept files' directories and, in each, opens every
  kept file by name, asks the descriptor for its size, reads, hashes and closes it — the work any
  packer of these files does, in Python with no rules, headers or manifest;
- ``python``: an interpreter that starts and exits, and one that imports our command line;
- ``two cores``: the same pure-Python loop alone and in two processes at once — how much a second
  core adds here (on this VM a busy second core slows the first: about 1.2-1.5x of one, not 2x);
- ``lean packer``: an in-process call that packs the same kept files with nothing but the unavoidable
  (list and sort the folders, open each file in its folder, ``fstat``, one read and hash, our tar
  header, our two-core gzip at the default level into a file) and no rules, checks, manifest or
  publication: what a Python packer of these files costs before any of our per-file bookkeeping;
  ``lean + manifest`` adds the manifest member every artifact must hold (a record and hash per file,
  compressed as our build does), and
  ``lean + manifest + publication`` what publishing every artifact must do, with our own code for it
  (the sidecar from the manifest's pieces; both files staged, ``fsync``-ed and renamed over the
  previous build's); beside them, our library call (``hatch_detmodel.build``) measured as ``run.py`` does,
  so the difference to the last lean variant is what our rules and checks cost;
- ``minimal packer process``: a whole Python process that packs the same kept list into a valid
  artifact-shaped ``.tgz`` (folders listed and sorted, each file read once and hashed, our header format,
  two deflate threads at the tree's level, the manifest of every hash) with only the imports that needs
  and none of our rules, checks, records, entrypoint check, sidecar or publication; beside it, our CLI
  measured the same way, both against ``tar | gzip``: what any Python packer of these files pays as a
  process, and what is ours; the time of its packing alone (after start-up and imports, one cold
  call) also stands in the library call's table;
- the baselines from ``run.py``: ``tar | gzip -6`` as a process, ``read_v1_context`` in-process;
- ``levels``: at each compression level from 1 to 6, our library call on typical alternating with
  ``read_v1_context`` (one child process, medians of 20 calls), and the size of heavy's archive against
  ``tar | gzip -6``'s: the levels at which the typical library target and heavy's size target each hold.

It prints three tables: the command line's side (against ``tar | gzip``) and the library call's (against
``read_v1_context``), with the floors next to the targets of issue #7: ``serial`` is what runs before compression can
start plus what one core must do itself (start-up + file I/O); ``2-core`` adds the half of deflate
that two cores cannot avoid. A floor above a target's limit means the target is out of reach for
any Python packer on this machine; below it, the difference is our own overhead. The third is the
level table above.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402  (the benchmark's trees, tools and measurements)

_FILE_IO = r"""
import hashlib, os, sys, time
paths = sys.stdin.buffer.read().split(b"\0")[:-1]
start = time.perf_counter()
folders = sorted({os.path.dirname(p) or b"." for p in paths})
descriptors = {}
for folder in folders:
    descriptors[folder] = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    with os.scandir(descriptors[folder]) as entries:
        sorted(os.fsencode(entry.name) for entry in entries)
for path in paths:
    folder, name = os.path.split(path)
    fd = os.open(name, os.O_RDONLY, dir_fd=descriptors[folder or b"."])
    data = os.read(fd, os.fstat(fd).st_size + 1)
    os.close(fd)
    hashlib.sha256(data).hexdigest()
for descriptor in descriptors.values():
    os.close(descriptor)
print(time.perf_counter() - start)
"""


# A packer with nothing but the unavoidable: the same kept files, folders listed and sorted, each file
# opened in its folder and fstat-ed, read once and hashed, our tar header, our two-core gzip at the
# default level into a file. No rules, no checks, no manifest, no publication. Timed in-process like
# our library call (warm-up, median of 3).
# Variants: "manifest" adds the manifest member every artifact must hold; "published" adds what every
# artifact's publication must do too, with our own code for it: the sidecar, written from the manifest's
# pieces, and both files staged, fsync-ed and renamed over the previous build's (`output.Staging`).
_LEAN = r"""
import hashlib, os, statistics, sys, tempfile, time
from pathlib import Path
from hatch_detmodel.archive import tar_header, write_end, write_member_pieces
from hatch_detmodel.compress import ParallelGzip
from hatch_detmodel.config import DEFAULT_COMPRESSION_LEVEL
from hatch_detmodel.manifest import ArchiveRecord, FileRecord, Manifest
from hatch_detmodel.output import Staging
from hatch_detmodel.pipeline import LARGE_MANIFEST, MANIFEST_LEVEL, HashingWriter
paths = sys.stdin.buffer.read().split(b"\0")[:-1]
folders = sorted({os.path.dirname(p) or b"." for p in paths})
with_manifest = sys.argv[1] in ("manifest", "published")

def pack(gzip):
    # Each folder listed and sorted, and held open: its files are opened by name in it, and their size
    # and mode asked of the descriptor, as our build does (a path lookup and a stat fewer than by path).
    descriptors = {}
    for folder in folders:
        descriptors[folder] = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        with os.scandir(descriptors[folder]) as entries:
            sorted(os.fsencode(entry.name) for entry in entries)
    records = []
    for path in paths:
        folder, name = os.path.split(path)
        fd = os.open(name, os.O_RDONLY, dir_fd=descriptors[folder or b"."])
        info = os.fstat(fd)
        data = os.read(fd, info.st_size + 1)
        os.close(fd)
        records.append(FileRecord(path.decode(), len(data), "644", hashlib.sha256(data).hexdigest()))
        gzip.write(tar_header(path, len(data), 0o644, 0) + data + bytes(-len(data) % 512))
    for descriptor in descriptors.values():
        os.close(descriptor)
    manifest = Manifest("p", "1", "default", "m:T", None, tuple(records), 0, "lean", "0")
    if with_manifest:  # what the artifact must also hold: the manifest, with every file's hash
        size, pieces = manifest.to_pieces()
        if size >= LARGE_MANIFEST:  # compressed as our build does: mostly hex digits, at a lower level
            gzip.set_level(min(gzip.level, MANIFEST_LEVEL))
        write_member_pieces(gzip, ".detmodel.json", size, pieces, 0)
    write_end(gzip)
    gzip.close()
    return manifest

def pack_to_file(folder):
    with open(os.path.join(folder, "lean.tgz"), "wb") as handle:
        pack(ParallelGzip(handle, DEFAULT_COMPRESSION_LEVEL))

def pack_and_publish(folder):
    with Staging() as staging:
        archive = HashingWriter(staging.create(Path(folder) / "lean.detmodel.tgz").handle)
        manifest = pack(ParallelGzip(archive, DEFAULT_COMPRESSION_LEVEL))
        record = ArchiveRecord("lean.detmodel.tgz", archive.size, archive.sha256.hexdigest())
        sidecar = staging.create(Path(folder) / "lean.detmodel.json").handle
        for piece in manifest.sidecar_pieces(record):
            sidecar.write(piece)

call = pack_and_publish if sys.argv[1] == "published" else pack_to_file
with tempfile.TemporaryDirectory() as scratch:
    walls = []
    for _ in range(4):
        start = time.perf_counter()
        call(scratch)
        walls.append(time.perf_counter() - start)
print(statistics.median(walls[1:]))
"""


# The least a whole Python process that packs these files into a valid artifact-shaped .tgz can do: the
# same kept list tar gets (stdin), folders listed and sorted, each file opened, fstat-ed, read once and
# hashed, a ustar header, two threads deflating 512 KiB jobs at our default level with the 32 KiB before
# each as dictionary, a real CRC, the manifest of every file's hash as the last member, and only the
# imports that needs. No rules, checks, record classes, entrypoint check, sidecar or atomic publication:
# compared with `tar | gzip` as a process, it tells how much of our command line's time any Python
# packer of these files would pay, and how much is ours.
_MINIMAL_PROCESS = r"""
import hashlib, os, struct, sys, threading, time, zlib
from json.encoder import encode_basestring
from queue import SimpleQueue
LEVEL, JOB = int(sys.argv[2]), 1 << 19
HEAD, MTIME = b"0000644\x000000000\x000000000\x00", b"%011o\x00" % 1580601600
TAIL = (b"0" + b"\0" * 100 + b"ustar\x0000").ljust(512 - 156, b"\0")
CONST, ZEROS, USTAR = sum(HEAD) + sum(MTIME) + 8 * 32 + sum(TAIL), bytes(512), struct.Struct("100s24s12s12s8s356s")
jobs = SimpleQueue()
def work():
    while (job := jobs.get()) is not None:
        slot, data, history, final = job
        if history:
            deflate = zlib.compressobj(LEVEL, zlib.DEFLATED, -15, 8, 0, zdict=history)
        else:
            deflate = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
        slot.append(deflate.compress(data) + deflate.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH))
        slot[0].release()
    jobs.put(None)
for _ in range(2):
    threading.Thread(target=work, daemon=True).start()
START = time.perf_counter()  # the packing alone, after start-up and imports, is printed at the end
out = open(sys.argv[1], "wb")
out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")
pending, state = [], {"history": b"", "crc": 0, "size": 0}
def submit(data, final):
    lock = threading.Lock(); lock.acquire(); slot = [lock]
    jobs.put((slot, data, state["history"], final))
    state["history"], state["crc"], state["size"] = data[-32768:], zlib.crc32(data, state["crc"]), state["size"] + len(data)
    pending.append(slot)
    while len(pending) > 2 or (final and pending):
        done = pending.pop(0)
        with done[0]:
            out.write(done[1])
def header(name, size):
    size_field = b"%011o\x00" % size
    return USTAR.pack(name, HEAD, size_field, MTIME, b"%06o\x00 " % (CONST + sum(name) + sum(size_field)), TAIL)
paths = sys.stdin.buffer.read().split(b"\0")[:-1]
for folder in sorted({os.path.dirname(p) or b"." for p in paths}):
    with os.scandir(folder) as entries:
        sorted(entry.name for entry in entries)
buffer, records, sha256 = bytearray(), [], hashlib.sha256
for path in paths:
    fd = os.open(path, os.O_RDONLY)
    info = os.fstat(fd)
    data = os.read(fd, info.st_size + 1)
    os.close(fd)
    buffer += header(path, len(data)); buffer += data; buffer += ZEROS[: -len(data) % 512]
    records.append((path.decode(), len(data), sha256(data).hexdigest()))
    if len(buffer) >= JOB:
        submit(bytes(buffer[:JOB]), False); del buffer[:JOB]
text = '{"files":[' + ",".join([
    f'{{"mode":"644","path":{encode_basestring(p)},"sha256":"{h}","size":{n}}}' for p, n, h in records
]) + "]}"
manifest = text.encode()
buffer += header(b".detmodel.json", len(manifest)) + manifest + ZEROS[: -len(manifest) % 512] + bytes(1024)
buffer += bytes(-len(buffer) % 10240)
while len(buffer) > JOB:
    submit(bytes(buffer[:JOB]), False); del buffer[:JOB]
submit(bytes(buffer), True)
out.write(struct.pack("<II", state["crc"], state["size"] & 0xFFFFFFFF))
out.close()
print(time.perf_counter() - START)
"""


def run_level(tree: Path) -> int:
    """The compression level the tree's project builds with (our default unless it sets one)."""
    from hatch_detmodel.config import load_project

    return load_project(tree).models[0].compression_level


def minimal_process(python: str, tree: Path, listing: bytes, level: int, scratch: Path) -> tuple[float, float]:
    """Wall seconds of :data:`_MINIMAL_PROCESS` as a process, and of its packing alone (after start-up
    and imports: one cold call), medians of 5, after checking its output is a valid gzip tar holding
    every kept file and the manifest."""
    out = scratch / "minimal.tgz"
    argv = [python, "-c", _MINIMAL_PROCESS, str(out), str(level)]
    subprocess.run(argv, input=listing, cwd=tree, check=True, capture_output=True)
    import tarfile

    with tarfile.open(out) as tar:
        names = tar.getnames()
    if len(names) != listing.count(b"\0") + 1 or names[-1] != ".detmodel.json":
        raise SystemExit(f"the minimal packer's output for {tree.name} is not what it should be")
    walls, packing = [], []
    for _ in range(5):
        start = time.perf_counter()
        done = subprocess.run(argv, input=listing, check=True, capture_output=True, cwd=tree)
        walls.append(time.perf_counter() - start)
        packing.append(float(done.stdout))
    return statistics.median(walls), statistics.median(packing)


class _Collect:
    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.workers = 1

    def write(self, data: bytes | memoryview) -> None:
        self.parts.append(bytes(data))
        self.size += len(data)


def deflate_cpu(tree: Path) -> tuple[float, float]:
    """CPU seconds of compressing the tree's members stream on one core, and wall seconds on two
    workers (compression alone: no reading, no writing)."""
    from hatch_detmodel.archive import MemberWriter, write_end
    from hatch_detmodel.compress import ParallelGzip
    from hatch_detmodel.config import load_project
    from hatch_detmodel.pipeline import plan_model

    project = load_project(tree)
    plan = plan_model(project, project.models[0], tree / "dist", 0)
    stream = _Collect()
    MemberWriter(stream, 0).write(plan.files, plan.selection.read_ahead)  # type: ignore[arg-type]
    write_end(stream)  # type: ignore[arg-type]
    data = b"".join(stream.parts)
    start = time.process_time()
    level = project.models[0].compression_level
    gzip = ParallelGzip(_Collect(), level, workers=1)  # one core; random pieces are stored, not searched
    gzip.write(data)
    gzip.close()
    cpu = time.process_time() - start
    start = time.perf_counter()
    gzip = ParallelGzip(_Collect(), level, workers=2)
    gzip.write(data)
    gzip.close()
    return cpu, time.perf_counter() - start


# Our library call on one tree at each compression level, alternating with read_v1_context, in one
# child process: the medians, in seconds, of the calls after each one's first. With 0 rounds, one build
# at each level and its archive's size instead.
_LEVELS = r"""
import contextlib, io, json, statistics, sys, tempfile, time
from pathlib import Path
from hatch_detmodel.config import load_project
from hatch_detmodel.pipeline import build_models
tree, levels, rounds = Path(sys.argv[1]), [int(x) for x in sys.argv[2].split(",")], int(sys.argv[3])
project = load_project(tree)

def build(level, out):
    return build_models(project, out, [project.models[0]._replace(compression_level=level)])[0].archive.stat().st_size

with tempfile.TemporaryDirectory() as scratch:
    if rounds == 0:
        print(json.dumps({level: build(level, Path(scratch)) for level in levels}))
        sys.exit()
    from determined.common.context import read_v1_context
    walls = {str(level): [] for level in levels}
    walls["read_v1_context"] = []
    for _ in range(rounds):
        for level in levels:
            start = time.perf_counter()
            build(level, Path(scratch))
            walls[str(level)].append(time.perf_counter() - start)
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            read_v1_context(tree)
        walls["read_v1_context"].append(time.perf_counter() - start)
print(json.dumps({key: statistics.median(values[1:]) for key, values in walls.items()}))
"""
LEVELS = (1, 2, 3, 4, 5, 6)


def level_table(python: str, cache: Path) -> list[str]:
    """Typical's library call against read_v1_context, and heavy's archive size against tar | gzip -6's,
    at each compression level: the level each of those two targets needs."""
    typical, heavy = (run.generate(cache, run.WORKLOADS[name]) for name in ("typical", "heavy"))
    levels = ",".join(map(str, LEVELS))
    times = json.loads(subprocess.run([python, "-c", _LEVELS, str(typical), levels, "21"], check=True,
                                      capture_output=True, text=True).stdout)
    sizes = json.loads(subprocess.run([python, "-c", _LEVELS, str(heavy), levels, "0"], check=True,
                                      capture_output=True, text=True).stdout)
    kept, _count, _size = run._kept_list(heavy, cache)
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        tar_size = run._measure(next(t for t in run.TOOLS if t.name == "tar|gzip"), heavy, Path(scratch) / "o",
                                kept, False)["size"]
    determined = times["read_v1_context"]
    rows = [f"| {level} | {times[str(level)] * 1000:.1f} | {times[str(level)] / determined:.2f} | "
            f"{sizes[str(level)]:,} | {sizes[str(level)] / tar_size:.4f} |" for level in LEVELS]
    return [
        f"| level | typical library ms (read_v1_context {determined * 1000:.1f} ms) | ÷ read_v1_context (≤ 1.5) "
        f"| heavy archive bytes (tar\\|gzip -6: {tar_size:,}) | ÷ tar\\|gzip (≤ 1.02) |",
        "|--:|--:|--:|--:|--:|",
        *rows,
    ]


# A fixed amount of pure-Python work (no I/O, no allocation to speak of), timed inside the process.
_SPIN = "import time\nstart = time.perf_counter()\nx = 0\nfor i in range(4_000_000): x += i\nprint(time.perf_counter() - start)"


def two_core_throughput(python: str) -> tuple[float, float]:
    """Seconds of the same pure-Python work alone and, as the median of two started together, side by
    side: what a second core adds on this machine (2 cores that share a physical one, or a busy host,
    give less than twice one)."""
    alone, together = [], []
    for _ in range(5):
        alone.append(float(subprocess.run([python, "-c", _SPIN], check=True, capture_output=True).stdout))
        pair = [subprocess.Popen([python, "-c", _SPIN], stdout=subprocess.PIPE) for _ in range(2)]
        together += [float(process.communicate()[0]) for process in pair]
    return statistics.median(alone), statistics.median(together)


def process_seconds(argv: list[str], stdin: bytes = b"", cwd: Path | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, input=stdin, check=True, capture_output=True, cwd=cwd)
    return time.perf_counter() - start


def median_wall(tool: run.Tool, tree: Path, kept: Path, scratch: Path, count: int) -> float:
    """The median of ``count`` of run.py's own measurements of ``tool`` (a process, or warm in-process calls)."""
    return statistics.median(run._measure(tool, tree, scratch / "o", kept, True)["wall"] for _ in range(count))


def main() -> int:
    cache = Path.home() / ".cache" / "hatch-detmodel-bench"
    python = sys.executable
    starts = [process_seconds([python, "-c", "pass"]) for _ in range(5)]
    imports = [process_seconds([python, "-c", "import hatch_detmodel.cli"]) for _ in range(5)]
    python_start, cli_import = statistics.median(starts), statistics.median(imports)
    print(f"python start {python_start:.3f} s; start + `import hatch_detmodel.cli` {cli_import:.3f} s")
    alone, side_by_side = two_core_throughput(python)
    print(f"the same Python work: {alone:.3f} s alone, {side_by_side:.3f} s each with a second copy running: "
          f"two cores give {2 * alone / side_by_side:.2f}x one")
    tools = {t.name: t for t in run.TOOLS}
    cli_rows, library_rows = [], []
    for name in ("typical", "heavy", "wide"):
        tree = run.generate(cache, run.WORKLOADS[name])
        kept, _count, _size = run._kept_list(tree, cache)
        listing = kept.read_bytes()
        deflates = [deflate_cpu(tree) for _ in range(5)]
        deflate = min(cpu for cpu, _ in deflates)
        deflate_wall = statistics.median(wall for _, wall in deflates)
        file_io = statistics.median(
            float(subprocess.run([python, "-c", _FILE_IO], input=listing, cwd=tree, check=True,
                                 capture_output=True).stdout) for _ in range(5)
        )
        level = run_level(tree)
        with tempfile.TemporaryDirectory(dir=cache) as scratch:
            tar = median_wall(tools["tar|gzip"], tree, kept, Path(scratch), 5)
            # The in-process calls compared with read_v1_context, alternating, 5 child processes each: the
            # differences between them are tens of milliseconds, less than this VM's drift over a minute.
            calls: dict[str, list[float]] = {}
            for _ in range(5):
                for variant in ("plain", "manifest", "published"):
                    calls.setdefault(variant, []).append(float(subprocess.run(
                        [python, "-c", _LEAN, variant], input=listing, cwd=tree, check=True, capture_output=True
                    ).stdout))
                for tool in ("library", "read_v1_context"):
                    calls.setdefault(tool, []).append(median_wall(tools[tool], tree, kept, Path(scratch), 1))
            lean, lean_manifest, lean_published, library, determined = (
                statistics.median(calls[key]) for key in ("plain", "manifest", "published", "library", "read_v1_context")
            )
            minimal, minimal_packing = minimal_process(python, tree, listing, level, Path(scratch))
            ours = median_wall(tools["cli"], tree, kept, Path(scratch), 5)
        serial = cli_import + file_io
        two_core = max(serial, cli_import + (file_io + deflate) / 2)
        library_floor = max(file_io, (file_io + deflate) / 2)
        cli_rows.append(
            f"| {name} | {deflate:.3f} | {deflate_wall:.3f} | {file_io:.3f} | {tar:.3f} | "
            f"{serial:.3f} / {two_core:.3f} | {two_core / tar:.2f} | {minimal:.3f} | {minimal / tar:.2f} | "
            f"{ours:.3f} | {ours / tar:.2f} |"
        )
        library_rows.append(
            f"| {name} | {determined:.3f} | {library_floor / determined:.2f} | " + " | ".join(
                f"{seconds:.3f} ({seconds / determined:.2f})"
                for seconds in (lean, lean_manifest, lean_published, minimal_packing, library)
            ) + " |"
        )
        print(f"{name}: done", file=sys.stderr)
    print("| workload | deflate CPU s (1 core) | deflate wall s (2 workers) | file I/O s | tar\\|gzip s "
          "| CLI floor s (serial / 2-core) | CLI floor ÷ tar\\|gzip | minimal packer process s | ÷ tar\\|gzip "
          "| our CLI s | ÷ tar\\|gzip |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    print("\n".join(cli_rows))
    print()
    print("| workload | read_v1_context s | library floor ÷ read_v1_context | lean packer s (÷ read_v1_context) "
          "| lean + manifest | lean + manifest + publication | minimal packer process, its packing alone "
          "| our library call |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    print("\n".join(library_rows))
    print()
    print("\n".join(level_table(python, cache)))
    print(json.dumps({"python_start": python_start, "cli_import": cli_import, "spin_alone": alone,
                      "spin_side_by_side": side_by_side}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
