"""What a new workflow run costs the sandbox: executing its workflow module graph (`python -m bench.import_cost`).

The SDK sandbox re-imports a workflow's non-passthrough modules for every new run (and keeps them while the run is
cached). This times that module execution outside the sandbox, with the passthrough modules already loaded, and
measures the memory the module objects hold: a lower bound on the per-run cost inside the sandbox. The workflow
helpers and frozen releases the worker passes through (worker/factory.py) stay loaded, as in the sandbox.
"""
import importlib
import sys
import time
import tracemalloc

import pydantic  # noqa: F401
import structlog  # noqa: F401
import temporalio.workflow  # noqa: F401

import activities.erp  # noqa: F401 - passthrough modules: loaded once per worker, as in the sandbox
import activities.pos  # noqa: F401
import activities.routing  # noqa: F401
import activities.wms  # noqa: F401
import domain.cases  # noqa: F401
import domain.events  # noqa: F401
import domain.inventory  # noqa: F401
import domain.order  # noqa: F401
import domain.process  # noqa: F401
import domain.settlement  # noqa: F401
import domain.sla  # noqa: F401
from worker.factory import passed_through_workflow_modules

KEPT = frozenset(passed_through_workflow_modules())

GRAPHS = {"ReserveToFulfill": "workflows.reserve_to_fulfill", "ShipToSettle": "workflows.ship_to_settle",
          "BenchSkeleton": "bench.ceiling"}


def _drop() -> None:
    for name in list(sys.modules):
        if name.startswith(("workflows", "bench.ceiling")) and name not in KEPT:
            del sys.modules[name]


def measure(module: str, runs: int = 20) -> tuple[float, float]:
    """(median CPU ms, KiB held) of importing `module` afresh."""
    times = []
    for _ in range(runs):
        _drop()
        begun = time.process_time()
        importlib.import_module(module)
        times.append(time.process_time() - begun)
    _drop()
    tracemalloc.start()
    importlib.import_module(module)
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return sorted(times)[len(times) // 2] * 1000, held / 1024


if __name__ == "__main__":
    for label, module in GRAPHS.items():
        ms, kib = measure(module)
        print(f"{label:<18} {ms:6.1f} ms CPU  {kib:6.0f} KiB held")
