"""Scenario 2: the Temporal dev server stopped and restarted during the run (its SQLite file keeps every
execution). Meanwhile the HTTP service answers 503 + Retry-After, the senders retry, and the worker reconnects."""
import asyncio

import pytest

from tests.faults.driver import Clock, assert_nothing_lost, full_only, rng, run_scenario

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900), full_only("scenario 2 (Temporal restarted)")]
DOWN_FOR = 15.0


async def restart_temporal(stack, traffic, log: list[str]) -> None:
    r, clock = rng(2), Clock()
    await asyncio.sleep(r.uniform(5.0, 10.0))
    await stack.stop_part("temporal")
    log.append(f"{clock} Temporal dev server stopped, traffic {'done' if traffic.done() else 'running'}")
    await asyncio.sleep(DOWN_FOR)
    await stack.start_part("temporal")
    log.append(f"{clock} Temporal dev server up again")


async def test_temporal_restart_loses_and_doubles_nothing(stack):
    result = await run_scenario(stack, "2 Temporal dev server stopped 15 s and restarted", restart_temporal, seed=2)
    assert any(k.startswith("retried_") for k in result.sender_stats), result.sender_stats  # it was noticed
    assert_nothing_lost(result)
