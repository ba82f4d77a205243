"""What a build cannot go below on this machine, measured part by part on the benchmark trees.

    python benchmarks/floors.py            # typical, heavy, wide (trees from benchmarks/run.py's cache)

For each tree it measures, in fresh child processes where start-up matters:

- ``deflate``: CPU seconds, on one core, of compressing the tree's uncompressed tar stream at our default
  level (5) with random-looking pieces stored rather than searched (random data costs a copy, not a
  futile search); the stream comes from our own archive writer, so it is exactly what
  gets compressed. Half of it is the least two cores can spend; ``deflate wall`` is what our two
  workers take for it, with nothing else running (how far this machine's two cores are from 2×);
- ``file I/O``: one process that only lists the kept files' directories, ``lstat``s each file and
  opens, reads, hashes and closes it — the work any packer of these files does, in Python with no
  rules, headers or manifest;
- ``python``: an interpreter that starts and exits, and one that imports our command line;
- ``two cores``: the same pure-Python loop alone and in two processes at once — how much a second
  core adds here (on this VM a busy second core slows the first: about 1.2-1.5x of one, not 2x);
- ``lean packer``: an in-process call that packs the same kept files with nothing but the unavoidable
  (list and sort the folders, ``lstat``, one read and hash per file, our tar header, our two-core
  gzip at the default level into a file) and no rules, checks, manifest or publication: what a Python packer of
  these files costs before any of our per-file bookkeeping; ``lean + manifest`` adds the manifest
  member every artifact must hold (a record and hash per file, compressed like the rest);
- the baselines from ``run.py``: ``tar | gzip -6`` as a process, ``read_v1_context`` in-process.

It prints the floors next to the targets of issue #7: ``serial`` is what runs before compression can
start plus what one core must do itself (start-up + file I/O); ``2-core`` adds the half of deflate
that two cores cannot avoid. A floor above a target's limit means the target is out of reach for
any Python packer on this machine; below it, the difference is our own overhead.
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
for folder in folders:
    with os.scandir(folder) as entries:
        sorted(entry.name for entry in entries)
for path in paths:
    size = os.lstat(path).st_size
    fd = os.open(path, os.O_RDONLY)
    data = os.read(fd, size + 1)
    os.close(fd)
    hashlib.sha256(data).hexdigest()
print(time.perf_counter() - start)
"""


# A packer with nothing but the unavoidable: the same kept files, folders listed and sorted, each file
# lstat-ed, read once and hashed, our tar header, our two-core gzip at the default level into a file. No rules, no
# checks, no manifest, no publication. Timed in-process like our library call (warm-up, median of 3).
_LEAN = r"""
import hashlib, os, statistics, sys, tempfile, time
from hatch_detmodel.archive import tar_header, write_end, write_member_pieces
from hatch_detmodel.compress import ParallelGzip
from hatch_detmodel.config import DEFAULT_COMPRESSION_LEVEL
from hatch_detmodel.manifest import FileRecord, Manifest
paths = sys.stdin.buffer.read().split(b"\0")[:-1]
folders = sorted({os.path.dirname(p) or b"." for p in paths})
with_manifest = sys.argv[1] == "manifest"

def pack(out):
    for folder in folders:
        with os.scandir(folder) as entries:
            sorted(entry.name for entry in entries)
    with open(out, "wb") as handle:
        gzip = ParallelGzip(handle, DEFAULT_COMPRESSION_LEVEL)
        records = []
        for path in paths:
            info = os.lstat(path)
            fd = os.open(path, os.O_RDONLY)
            data = os.read(fd, info.st_size + 1)
            os.close(fd)
            records.append(FileRecord(path.decode(), len(data), "644", hashlib.sha256(data).hexdigest()))
            gzip.write(tar_header(path, len(data), 0o644, 0) + data + bytes(-len(data) % 512))
        if with_manifest:  # what the artifact must also hold: the manifest, with every file's hash
            manifest = Manifest("p", "1", "default", "m:T", None, tuple(records), 0, "lean", "0")
            write_member_pieces(gzip, ".detmodel.json", *manifest.to_pieces(), 0)
        write_end(gzip)
        gzip.close()

with tempfile.TemporaryDirectory() as scratch:
    walls = []
    for _ in range(4):
        start = time.perf_counter()
        pack(os.path.join(scratch, "lean.tgz"))
        walls.append(time.perf_counter() - start)
print(statistics.median(walls[1:]))
"""


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
    print("| workload | deflate CPU s (1 core) | deflate wall s (2 workers) | file I/O s | tar\\|gzip s | read_v1_context s "
          "| CLI floor s (serial / 2-core) | CLI floor ÷ tar\\|gzip | library floor ÷ read_v1_context "
          "| lean packer s | lean ÷ read_v1_context | lean + manifest s | lean + manifest ÷ read_v1_context |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    tools = {t.name: t for t in run.TOOLS}
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
        lean, lean_manifest = (
            float(subprocess.run([python, "-c", _LEAN, variant], input=listing, cwd=tree, check=True,
                                 capture_output=True).stdout)
            for variant in ("plain", "manifest")
        )
        with tempfile.TemporaryDirectory(dir=cache) as scratch:
            tar = statistics.median(run._measure(tools["tar|gzip"], tree, Path(scratch) / "o", kept, True)["wall"]
                                    for _ in range(5))
            determined = statistics.median(
                run._measure(tools["read_v1_context"], tree, Path(scratch) / "o", kept, True)["wall"] for _ in range(3)
            )
        serial = cli_import + file_io
        two_core = max(serial, cli_import + (file_io + deflate) / 2)
        library = max(file_io, (file_io + deflate) / 2)
        print(f"| {name} | {deflate:.3f} | {deflate_wall:.3f} | {file_io:.3f} | {tar:.3f} | {determined:.3f} | "
              f"{serial:.3f} / {two_core:.3f} | {two_core / tar:.2f} | {library / determined:.2f} | "
              f"{lean:.3f} | {lean / determined:.2f} | {lean_manifest:.3f} | {lean_manifest / determined:.2f} |")
        sys.stdout.flush()
    print(json.dumps({"python_start": python_start, "cli_import": cli_import, "spin_alone": alone,
                      "spin_side_by_side": side_by_side}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
