"""Speed and memory benchmark: hatch-detmodel against `tar | gzip`, Determined's `read_v1_context`
and hatchling's sdist builder, on generated model-definition trees.

    python benchmarks/run.py                      # every workload, 5 alternating repetitions, a table
    python benchmarks/run.py --json               # the same, as one JSON document on stdout
    python benchmarks/run.py -w heavy -w wide -r 9

The trees are generated once, deterministically (seeded), into a cache folder outside the
repository (``--cache``, default ``$XDG_CACHE_HOME/hatch-detmodel-bench`` or
``~/.cache/hatch-detmodel-bench``); each has a ``.detignore``. Every measurement runs in a fresh
child process, so its peak RSS is its own (in-process calls: ``VmHWM``; whole processes:
``ru_maxrss`` of the launcher's children, which cannot read below the small launcher's own
size, about 11 MiB): whole processes for the command lines (our CLI, ``python -m hatchling build -t detmodel``, the `tar | gzip`
pipeline, ``python -m hatchling build -t sdist``), and the call alone, timed after the imports, for
the in-process comparisons (``hatch_detmodel.build`` against Determined's ``read_v1_context``).
Tools alternate within each repetition; the table shows medians. This is a tool, not a timed test.
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
WARM_CALLS = 3  # timed in-process calls per child, at least, after one warm-up call (the median is kept)
WARM_SECONDS = 1.0  # and more calls until the timed ones add up to this
MAX_CALLS = 25
SCHEMA = 1  # bump when the generated trees change
EPOCH = 1580601600
MIB = 1 << 20
TAR_GZIP = (
    "tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@{epoch} -cf - --null -T {kept} | gzip -6 -n > {out}"
)

# ---------------------------------------------------------------------------------------------
# Deterministic content


class Content:
    """Seeded generators: Python-like source text (compresses about 3:1, like real code) and random bytes."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self._pool = self._source_pool(4 * MIB)

    def _source_pool(self, size: int) -> bytes:
        r = self.random
        letters = "abcdefghijklmnopqrstuvwxyz"
        names = ["".join(r.choice(letters) for _ in range(r.randint(3, 10))) for _ in range(4000)]
        cumulative: list[float] = []
        total_weight = 0.0
        for i in range(len(names)):
            total_weight += 1.0 / (i + 1)
            cumulative.append(total_weight)
        kws = ["self", "return", "None", "torch", "np", "x", "batch", "config", "model", "data", "loss", "True", "0", "1"]
        templates = [
            "{i}{a} = {b}({c}, {d})\n", "{i}{a}.{b} = {c}\n", "{i}if {a} is not None and {b}:\n",
            "{i}return {a}.{b}({c})\n", "{i}for {a} in {b}:\n", "{i}def {a}(self, {b}, {c}={d}):\n",
            '{i}"""{A} the {b} of {c}."""\n', "{i}# {a} {b} {c} {d}\n", "{i}{a} += {b} * {c}\n", "\n",
            '{i}raise ValueError(f"{a} {{{b}}} must be {c}")\n', "{i}import {a}\n",
            "{i}{a} = self.{b}.{c}({d}, {e}={f})\n", "{i}assert {a} == {b}, {c}\n", "{i}{a}: {B} = {c}\n",
        ]
        indents = ("", "    ", "    ", "        ", "        ", "        ", "            ")
        out: list[str] = []
        length = 0
        while length < size:
            pick = r.choices(names, cum_weights=cumulative, k=6)
            kw = r.choice(kws)
            line = r.choice(templates).format(
                a=pick[0], b=pick[1], c=pick[2] if r.random() < 0.7 else kw, d=pick[3], e=pick[4], f=kw,
                A=pick[0].capitalize(), B=pick[5].capitalize(), i=r.choice(indents),
            )
            out.append(line)
            length += len(line)
        return "".join(out).encode()[:size]

    def source(self, size: int) -> bytes:
        start = self.random.randrange(0, len(self._pool) - size) if size < len(self._pool) else 0
        start = self._pool.find(b"\n", start) + 1
        text = self._pool[start : start + size]
        while len(text) < size:
            text += self._pool[: size - len(text)]
        return text

    def noise(self, size: int) -> bytes:
        return self.random.randbytes(size)


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    detignore: tuple[str, ...]
    build: Callable[[Path, Content], None]
    max_size: bool = True
    repeat_cap: int | None = None  # the huge tree: fewer repetitions
    seed_name: str = ""  # trees sharing a seed share their kept files (typical10 is typical plus ignored data)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _packages(root: Path, content: Content, packages: int, files: int, low: int, high: int, prefix: str = "pkg") -> None:
    r = content.random
    for p in range(packages):
        package = root / prefix / f"{prefix}_{p:03d}"
        _write(package / "__init__.py", content.source(r.randint(50, 400)))
        for f in range(files - 1):
            _write(package / f"module_{f:03d}.py", content.source(r.randint(low, high)))


def _typical(scale: int) -> Callable[[Path, Content], None]:
    def build(root: Path, content: Content) -> None:
        _packages(root, content, 16, 20, 2_000, 10_500)  # 320 kept source files, ~2 MB
        r = content.random
        for shard in range(100 * scale):  # 60,000 ignored small files (x scale)
            folder = root / "data" / f"shard_{shard:04d}"
            folder.mkdir(parents=True)
            for i in range(600):
                (folder / f"sample_{i:04d}.json").write_bytes(b'{"x": %d, "label": %d}\n' % (r.randrange(1 << 30), i % 10))
        for i in range(30 * scale):  # 300 MB of ignored random checkpoints (x scale)
            _write(root / "checkpoints" / f"epoch_{i:04d}.ckpt", content.noise(10 * 10**6))
        _write(root / "notebooks" / "explore.ipynb", content.source(50_000))

    return build


def _heavy(root: Path, content: Content) -> None:
    _packages(root, content, 40, 98, 4_000, 21_000)  # 3,920 source files, ~49 MB
    for i in range(80):  # 40 MB of incompressible "embeddings" that are kept
        _write(root / "assets" / f"embedding_{i:03d}.bin", content.noise(500_000))
    _write(root / "train.log", content.source(1_000_000))


def _wide(root: Path, content: Content) -> None:
    _packages(root, content, 400, 50, 40, 400)  # 20,000 small files in 400 packages


def _huge(root: Path, content: Content) -> None:
    # 1 GiB in 4 MiB stripes, 4 of every 9 random: the same mix as `heavy`.
    with open(root / "weights.bin", "wb") as handle:
        for stripe in range(256):
            handle.write(content.noise(4 * MIB) if stripe % 9 in (1, 3, 5, 7) else content.source(4 * MIB))


WORKLOADS = {
    w.name: w
    for w in (
        Workload("typical", "~320 kept source files (~2 MB); 60,000 ignored files in data/, 300 MB ignored checkpoints",
                 ("data/", "*.ckpt", "notebooks/"), _typical(1)),
        Workload("typical10", "typical with 10x the ignored data (600,000 files, 3 GB), the same kept files",
                 ("data/", "*.ckpt", "notebooks/"), _typical(10), seed_name="typical"),
        Workload("heavy", "~4,000 kept files, ~90 MB kept, 40 MB of it random", ("*.log",), _heavy),
        Workload("wide", "20,000 small kept files in 400 packages", ("*.log",), _wide),
        Workload("huge", "one 1 GiB file (4/9 random), size limit off", ("*.log",), _huge, max_size=False, repeat_cap=1),
    )
}

MODEL_DEF = b'''"""Benchmark trial."""
from determined import pytorch


class BenchTrial(pytorch.PyTorchTrial):
    def __init__(self, context):
        self.context = context
'''


def generate(cache: Path, workload: Workload) -> Path:
    """The workload's tree, generated once into the cache (a marker file says it is complete)."""
    root = cache / f"{workload.name}-v{SCHEMA}"
    marker = cache / f"{workload.name}-v{SCHEMA}.complete"
    if marker.exists() and root.is_dir():
        return root
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    print(f"generating {workload.name} in {root} ...", file=sys.stderr, flush=True)
    seed = int.from_bytes(hashlib.sha256((workload.seed_name or workload.name).encode()).digest()[:8], "big")
    workload.build(root, Content(seed))
    _write(root / "model_def.py", MODEL_DEF)
    _write(root / ".detignore", "".join(f"{line}\n" for line in workload.detignore).encode())
    excludes = ", ".join(json.dumps(p) for p in (*workload.detignore, ".detignore"))
    limit = "" if workload.max_size else "max-size = false\n"
    _write(root / "pyproject.toml", textwrap.dedent(f"""\
        [build-system]
        requires = ["hatchling", "hatch-detmodel"]
        build-backend = "hatchling.build"

        [project]
        name = "bench-{workload.seed_name or workload.name}"
        version = "1.0.0"

        [tool.detmodel]
        entrypoint = "model_def:BenchTrial"
        {limit}
        # hatchling's sdist on the same selection (for the comparison only)
        [tool.hatch.build.targets.sdist]
        exclude = [{excludes}]
        """).encode())
    marker.write_text("ok\n")
    return root


# ---------------------------------------------------------------------------------------------
# Measurement: each run in a fresh child process, which reports its wall time and peak RSS

_RUN_COMMAND = r"""
import json, os, resource, subprocess, sys, time
spec = json.loads(sys.argv[1])
start = time.perf_counter()
result = subprocess.run(spec["cmd"], cwd=spec["cwd"], shell=spec["shell"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
wall = time.perf_counter() - start
if result.returncode:
    sys.exit(f"{spec['cmd']} exited {result.returncode}: {result.stderr.decode()[-2000:]}")
print(json.dumps({"wall": wall, "rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))
"""

_RUN_LIBRARY = r"""
import json, resource, sys, time
spec = json.loads(sys.argv[1])
if spec["call"] == "ours":
    from hatch_detmodel import build

    def call():
        return build(spec["tree"], spec["out"])[0].stat().st_size
else:
    import contextlib, io, pathlib
    from determined.common.context import read_v1_context

    def call():
        with contextlib.redirect_stdout(io.StringIO()):  # it prints progress lines
            files = read_v1_context(pathlib.Path(spec["tree"]))
        return sum(len(f.content or "") for f in files)  # its base64 payload
walls = []
# The first call also pays lazy imports; with --warm, at least `warm` more are timed, and more until
# they add up to `warm_seconds` (a call of tens of milliseconds is at the mercy of one scheduling
# hiccup), and their median kept.
warm, seconds, most = spec["warm"], spec["warm_seconds"], spec["max_calls"]
while len(walls) < 1 + warm or (warm and sum(walls[1:]) < seconds and len(walls) <= most):
    start = time.perf_counter()
    size = call()
    walls.append(time.perf_counter() - start)
timed = sorted(walls[1:]) or walls

def peak_rss():
    # VmHWM is this process's own peak. ru_maxrss is not: Linux carries the peak of the process that
    # spawned us across exec, so it would report the benchmark driver's size (about 63 MiB) instead.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"wall": timed[len(timed) // 2], "first": walls[0], "size": size, "rss": peak_rss()}))
"""


@dataclass(frozen=True)
class Tool:
    name: str
    kind: str  # "process" (whole process timed) or "call" (in-process call timed)
    describe: str


TOOLS = (
    Tool("cli", "process", "hatch-detmodel build (CLI, whole process)"),
    Tool("tar|gzip", "process", "tar --sort=name ... | gzip -6 -n (whole pipeline)"),
    Tool("hatch", "process", "python -m hatchling build -t detmodel (whole process)"),
    Tool("sdist", "process", "python -m hatchling build -t sdist (whole process)"),
    Tool("library", "call", "hatch_detmodel.build() (call only)"),
    Tool("read_v1_context", "call", "determined.common.context.read_v1_context() (call only)"),
)


def _determined_available() -> bool:
    probe = subprocess.run([sys.executable, "-c", "import determined.common.context"], capture_output=True)
    return probe.returncode == 0


def _measure(tool: Tool, tree: Path, out: Path, kept_list: Path, warm: bool) -> dict[str, float]:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    python = sys.executable
    if tool.kind == "call":
        spec = {"call": "ours" if tool.name == "library" else "determined", "tree": str(tree), "out": str(out),
                "warm": WARM_CALLS if warm and tree.name.split("-")[0] != "huge" else 0,
                "warm_seconds": WARM_SECONDS, "max_calls": MAX_CALLS}
        script = _RUN_LIBRARY
    else:
        shell = False
        if tool.name == "cli":
            cmd: Any = [python, "-m", "hatch_detmodel", "build", str(tree), "-o", str(out)]
        elif tool.name == "hatch":
            cmd = [python, "-m", "hatchling", "build", "-t", "detmodel", "-d", str(out)]
        elif tool.name == "sdist":
            cmd = [python, "-m", "hatchling", "build", "-t", "sdist", "-d", str(out)]
        else:
            shell = True
            cmd = TAR_GZIP.format(epoch=EPOCH, kept=kept_list, out=out / "tar.tgz")
        spec = {"cmd": cmd, "cwd": str(tree), "shell": shell}
        script = _RUN_COMMAND
    done = subprocess.run([python, "-c", script, json.dumps(spec)], capture_output=True, text=True, cwd=tree)
    if done.returncode:
        raise SystemExit(f"{tool.name} on {tree.name} failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    if "size" not in result:
        outputs = [p for p in out.iterdir() if p.name.endswith((".tgz", ".tar.gz"))]
        result["size"] = sum(p.stat().st_size for p in outputs)
    shutil.rmtree(out)
    return result


def _kept_list(tree: Path, cache: Path) -> tuple[Path, int, int]:
    """Our selection (for `tar -T`): the same files every tool packs."""
    sys.path.insert(0, str(REPO))
    from hatch_detmodel.config import load_project
    from hatch_detmodel.selection import select_files

    project = load_project(tree)
    selection = select_files(project.models[0], tree / "dist")
    kept = cache / f"{tree.name}.kept"
    kept.write_bytes(b"".join(f.path.encode() + b"\0" for f in selection.files))
    return kept, len(selection.files), sum(f.size for f in selection.files)


def run_workload(workload: Workload, cache: Path, repeat: int, tools: list[Tool], warm: bool) -> dict[str, Any]:
    tree = generate(cache, workload)
    kept, count, size = _kept_list(tree, cache)
    reps = min(repeat, workload.repeat_cap) if workload.repeat_cap else repeat
    runs: dict[str, list[dict[str, float]]] = {t.name: [] for t in tools}
    with tempfile.TemporaryDirectory(prefix="detmodel-bench-", dir=cache) as scratch:
        for rep in range(reps):
            order = tools if rep % 2 == 0 else tools[::-1]  # alternate, and alternate the order too
            for tool in order:
                if tool.name == "read_v1_context" and not workload.max_size:
                    continue  # over Determined's limit by design
                print(f"  {workload.name} rep {rep + 1}/{reps}: {tool.name}", file=sys.stderr, flush=True)
                runs[tool.name].append(_measure(tool, tree, Path(scratch) / "out", kept, warm))
    results: dict[str, Any] = {}
    for name, samples in runs.items():
        if not samples:
            continue
        results[name] = {
            "wall": statistics.median(s["wall"] for s in samples),
            "walls": [round(s["wall"], 4) for s in samples],
            **({"first_call": statistics.median(s["first"] for s in samples)} if "first" in samples[0] else {}),
            "rss": max(s["rss"] for s in samples),
            "size": int(statistics.median(s["size"] for s in samples)),
        }
    return {"description": workload.description, "kept_files": count, "kept_bytes": size, "repetitions": reps,
            "tools": results}


def _ratio(report: dict[str, Any], workload: str, a: str, b: str, key: str = "wall") -> float | None:
    tools = report["workloads"].get(workload, {}).get("tools", {})
    if a in tools and b in tools and tools[b][key]:
        return float(tools[a][key] / tools[b][key])
    return None


def evaluate(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value (``None`` when its workloads were not run)."""
    checks: list[tuple[str, float | None, float]] = [
        ("heavy: CLI / tar|gzip wall", _ratio(report, "heavy", "cli", "tar|gzip"), 0.5),
        ("heavy: CLI / tar|gzip size", _ratio(report, "heavy", "cli", "tar|gzip", "size"), 1.02),
        ("wide: CLI / tar|gzip wall", _ratio(report, "wide", "cli", "tar|gzip"), 2.0),
        ("wide: library / read_v1_context", _ratio(report, "wide", "library", "read_v1_context"), 0.35),
        ("typical: library / read_v1_context", _ratio(report, "typical", "library", "read_v1_context"), 1.5),
    ]
    workloads = report["workloads"]
    if "typical" in workloads and "typical10" in workloads:
        base = workloads["typical"]["tools"].get("library", {}).get("wall")
        grown = workloads["typical10"]["tools"].get("library", {}).get("wall")
        checks.append(("typical10 / typical library wall", grown / base if base and grown else None, 1.10))
    rss = [t["rss"] for w in workloads.values() for n, t in w["tools"].items() if n in ("cli", "hatch", "library")]
    checks.append(("peak RSS of our builds, MiB", max(rss) / MIB if rss else None, 64.0))
    if "huge" in workloads and "heavy" in workloads:
        per_byte = [workloads[w]["tools"]["cli"]["wall"] / workloads[w]["kept_bytes"] for w in ("heavy", "huge")
                    if "cli" in workloads[w]["tools"]]
        if len(per_byte) == 2:
            checks.append(("huge / heavy CLI seconds per kept byte", per_byte[1] / per_byte[0], 1.25))
    return [{"target": name, "measured": value, "limit": limit, "met": None if value is None else value <= limit}
            for name, value, limit in checks]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a Markdown table cell


def table(report: dict[str, Any]) -> str:
    lines = ["| workload | tool | median wall s | peak RSS MiB | output bytes | ours vs it (wall, size) |",
             "|---|---|--:|--:|--:|---|"]
    pairs = {"tar|gzip": "cli", "hatch": "hatch", "sdist": "hatch", "read_v1_context": "library"}
    for name, workload in report["workloads"].items():
        tools = workload["tools"]
        kept = f"{workload['kept_files']:,} files, {workload['kept_bytes'] / 1e6:,.1f} MB kept"
        label = f"{name} ({kept}, ×{workload['repetitions']})"
        for tool, m in tools.items():
            ratio = ""
            ours = pairs.get(tool)
            if ours and ours != tool and ours in tools:
                ratio = f"{ours}: {tools[ours]['wall'] / m['wall']:.2f}× wall"
                if tool != "read_v1_context":
                    ratio += f", {tools[ours]['size'] / m['size']:.3f}× size"
            lines.append(f"| {label} | {_cell(tool)} | {m['wall']:.3f} | {m['rss'] / MIB:.0f} | {m['size']:,} | {ratio} |")
            label = ""
    lines += ["", "| target | measured | limit | met |", "|---|--:|--:|---|"]
    for check in report["targets"]:
        value = "n/a" if check["measured"] is None else f"{check['measured']:.3f}"
        met = "n/a" if check["met"] is None else "yes" if check["met"] else "NO"
        lines.append(f"| {_cell(check['target'])} | {value} | ≤ {check['limit']:g} | {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-w", "--workload", action="append", choices=list(WORKLOADS), help="default: all")
    parser.add_argument("-t", "--tool", action="append", choices=[t.name for t in TOOLS], help="default: all")
    parser.add_argument("-r", "--repeat", type=int, default=5,
                        help="repetitions per tool (huge: 1); a VM's speed wanders, so more than 3")
    default_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hatch-detmodel-bench"
    parser.add_argument("--cache", type=Path, default=default_cache, help=f"where trees are generated ({default_cache})")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--warm", action=argparse.BooleanOptionalAction, default=True,
                        help=f"in-process calls: time {WARM_CALLS} calls or more (until {WARM_SECONDS:g} s) after one "
                        "that pays the lazy imports, keep the median (default)")
    args = parser.parse_args(argv)
    cache = args.cache.resolve()
    if cache == REPO or REPO in cache.parents:
        parser.error("--cache must be outside the repository")
    cache.mkdir(parents=True, exist_ok=True)
    # Byte-compiled, as `pip install` leaves a package: with PYTHONDONTWRITEBYTECODE set (as on some CI
    # machines) every CLI run would otherwise recompile our modules, a cost no installed copy pays.
    compileall.compile_dir(REPO / "hatch_detmodel", quiet=1)
    tools = [t for t in TOOLS if not args.tool or t.name in args.tool]
    if not _determined_available():
        print("Determined is not installed: read_v1_context is skipped", file=sys.stderr)
        tools = [t for t in tools if t.name != "read_v1_context"]
    report: dict[str, Any] = {
        "command": "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "load_before": os.getloadavg(), "python": sys.version.split()[0]},
        "workloads": {},
    }
    for name in args.workload or list(WORKLOADS):
        report["workloads"][name] = run_workload(WORKLOADS[name], cache, args.repeat, tools, args.warm)
    report["machine"]["load_after"] = os.getloadavg()
    report["targets"] = evaluate(report)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
