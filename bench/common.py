"""What every bench part shares: repetitions and their min/median/max, fixed-concurrency runs, the machine."""
from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Spread:
    """min / median / max of the repetitions of one figure."""

    values: list[float]

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def max(self) -> float:
        return max(self.values)

    def text(self, fmt: str = "{:.2f}") -> str:
        if not self.values:
            return "n/a"
        return f"{fmt.format(self.min)} / **{fmt.format(self.median)}** / {fmt.format(self.max)}"

    def as_dict(self) -> dict:
        return {"values": self.values, "min": self.min, "median": self.median, "max": self.max} if self.values \
            else {"values": []}


def paired(numerators: list[float], denominators: list[float]) -> Spread:
    """The ratio of each repetition to the one it was paired with (run next to it, under the same load): the
    spread of these says how sure the ratio is, which a ratio of medians hides."""
    return Spread([a / b for a, b in zip(numerators, denominators, strict=True) if b])


async def at_concurrency(total: int, concurrency: int, one: Callable[[int], Awaitable[object]],
                         *, offset: int = 0) -> float:
    """Run `one(n)` for n in range(total), `concurrency` at a time; returns completions per second."""
    semaphore = asyncio.Semaphore(concurrency)

    async def slot(n: int) -> None:
        async with semaphore:
            await one(offset + n)

    begun = time.perf_counter()
    await asyncio.gather(*(slot(n) for n in range(total)))
    return total / (time.perf_counter() - begun)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def rss_mib(pid: int | None) -> float:
    """Resident memory of a process and its children, MiB."""
    import psutil

    if pid is None:
        return float("nan")
    try:
        proc = psutil.Process(pid)
        total = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
    except psutil.Error:
        return float("nan")
    return total / 2**20


def cpu_seconds(pids: dict[str, int | None]) -> dict[str, float]:
    """CPU seconds (user + system) each part has used so far, its live children (PostgreSQL's backends, the
    Temporal CLI's server) included, but not a child that is itself a listed part (the bench is every part's
    parent); the difference over a repetition is what the repetition cost each part."""
    import psutil

    trees: dict[str, list] = {}
    for name, pid in pids.items():
        if pid is None:
            continue
        try:
            root = psutil.Process(pid)
            trees[name] = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
    members = {name: {proc.pid: proc for proc in tree} for name, tree in trees.items()}
    out: dict[str, float] = {}
    for name, mine in members.items():
        nested: set[int] = set()  # the trees of the parts started under this one
        for other, theirs in members.items():
            if other != name and trees[other][0].pid in mine:
                nested |= set(theirs)
        total = 0.0
        for pid, proc in mine.items():
            if pid in nested:
                continue
            with contextlib.suppress(psutil.Error):  # a child that ended meanwhile
                times = proc.cpu_times()
                total += times.user + times.system
        out[name] = total
    return out


def load() -> tuple[float, float, float]:
    return os.getloadavg()


def _version(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
    except Exception:  # noqa: BLE001
        return "unknown"


@dataclass
class Machine:
    cpu: str
    cores: int
    memory_gib: float
    os: str
    python: str
    temporalio: str
    temporal_cli: str

    def as_dict(self) -> dict:
        return asdict(self)


def machine() -> Machine:
    import psutil
    import temporalio

    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):  # noqa: SIM115
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from devtools.stack import temporal_cli

    return Machine(cpu=cpu, cores=os.cpu_count() or 0, memory_gib=round(psutil.virtual_memory().total / 2**30, 1),
                   os=f"{platform.system()} {platform.release()}", python=sys.version.split()[0],
                   temporalio=temporalio.__version__ if hasattr(temporalio, "__version__") else _pkg("temporalio"),
                   temporal_cli=_version([temporal_cli(), "--version"]))


def _pkg(name: str) -> str:
    from importlib.metadata import version

    try:
        return version(name)
    except Exception:  # noqa: BLE001
        return "unknown"


# What the worker imports (the layers from `worker` down, pyproject.toml's import-linter contract)
WORKER_PACKAGES = ("worker", "workflows", "activities", "client", "adapters", "persistence", "config", "domain")


def bytecode(packages: tuple[str, ...] = WORKER_PACKAGES) -> dict:
    """How many of the worker's modules have an up-to-date `.pyc`, read once the worker has run (it imports them
    from the .pyc instead of compiling; the sandbox imports a workflow's modules afresh for each new run)."""
    sources = [p for pkg in packages for p in (ROOT / pkg).rglob("*.py")]
    fresh = sum(_fresh_pyc(p) for p in sources)
    return {"modules": len(sources), "fresh": fresh, "share": fresh / len(sources) if sources else 0.0}


def _fresh_pyc(source: Path) -> bool:
    """The cached bytecode records this source's mtime and size (a timestamp-based .pyc, as compileall writes)."""
    try:
        header = Path(importlib.util.cache_from_source(str(source))).read_bytes()[:16]
        stat = source.stat()
    except OSError:
        return False
    return (len(header) == 16 and int.from_bytes(header[4:8], "little") == 0
            and int.from_bytes(header[8:12], "little") == int(stat.st_mtime) & 0xFFFFFFFF
            and int.from_bytes(header[12:16], "little") == stat.st_size & 0xFFFFFFFF)
