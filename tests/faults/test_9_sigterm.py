"""Every process of the stack exits cleanly on SIGTERM: the HTTP service, the worker, the Temporal dev server and
PostgreSQL each get SIGTERM on their own (newest first, as an orchestrator stops them), exit with code 0 within
their stop timeout, write no traceback on the way out, and leave no child process behind. The stack is left
stopped: a test that runs after this one starts the parts again (`ensure_up`)."""
import signal
import time

import psutil
import pytest

from devtools.stack import STOP_TIMEOUT
from tests.faults.driver import ensure_up, log_since, log_size

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def still_running(procs: list[psutil.Process]) -> list[str]:
    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{p.pid} {' '.join(p.cmdline())[:80]}")
        except psutil.NoSuchProcess:
            pass
    return alive


async def test_every_part_exits_cleanly_on_sigterm(stack):
    await ensure_up(stack)
    outcomes = {}
    for name in ("api", "worker", "temporal", "postgres"):
        part = stack.parts[name]
        children = descendants(part.pid)
        offset = log_size(stack, name)
        begun = time.monotonic()
        await stack.kill(name, signal.SIGTERM)  # waits up to the part's stop timeout
        code = part.process.poll()
        tail = log_since(stack, name, offset)
        outcomes[name] = {"exit": code, "seconds": round(time.monotonic() - begun, 1), "children": len(children),
                          "orphans": still_running(children),
                          "traceback": "Traceback (most recent call last)" in tail or "panic:" in tail,
                          "log_tail": tail[-800:]}
        print(name, {k: v for k, v in outcomes[name].items() if k != "log_tail"})
    for name, outcome in outcomes.items():
        assert outcome["exit"] is not None, f"{name} still ran {STOP_TIMEOUT[name]}s after SIGTERM"
        assert outcome["exit"] == 0, f"{name} exited with {outcome['exit']}:\n{outcome['log_tail']}"
        assert not outcome["traceback"], f"{name} wrote a traceback on SIGTERM:\n{outcome['log_tail']}"
        assert not outcome["orphans"], f"{name} left children running: {outcome['orphans']}"
