"""Scenario 1: the worker SIGKILLed at random moments, five times during the run, and restarted each time.
Workflow tasks and activities in flight are lost with the process; Temporal hands them to the new worker (after
the task timeouts), and every activity is idempotent by its transaction key, so nothing is lost or doubled."""
import asyncio

import pytest

from tests.faults.driver import Clock, assert_nothing_lost, rng, run_scenario

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]
KILLS = 5


async def kill_the_worker(stack, traffic, log: list[str]) -> None:
    r, clock = rng(1), Clock()
    for i in range(1, KILLS + 1):
        await asyncio.sleep(r.uniform(1.0, 4.0))
        pid = stack.parts["worker"].pid
        await stack.kill("worker")  # SIGKILL to its process group
        log.append(f"{clock} worker pid {pid} SIGKILLed ({i}/{KILLS}), traffic {'done' if traffic.done() else 'running'}")
        await asyncio.sleep(r.uniform(0.2, 2.0))
        await stack.restart("worker")
        log.append(f"{clock} worker restarted as pid {stack.parts['worker'].pid}")


async def test_worker_killed_five_times_loses_and_doubles_nothing(stack):
    restarts = stack.parts["worker"].restarts
    result = await run_scenario(stack, "1 worker SIGKILLed 5x and restarted", kill_the_worker, seed=1)
    assert stack.parts["worker"].restarts - restarts == KILLS
    assert sum("SIGKILLed" in line for line in result.fault_log) == KILLS
    assert_nothing_lost(result)
