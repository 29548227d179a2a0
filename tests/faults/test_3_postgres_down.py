"""Scenario 3: PostgreSQL stopped for 30 s during the run (fast shutdown: everything committed stays). Activities
fail and are retried by Temporal; webhooks are refused (5xx) and the senders retry them."""
import asyncio

import pytest

from tests.faults.driver import Clock, assert_nothing_lost, full_only, rng, run_scenario

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900), full_only("scenario 3 (PostgreSQL down 30 s)")]
DOWN_FOR = 30.0


async def stop_postgres(stack, traffic, log: list[str]) -> None:
    r, clock = rng(3), Clock()
    await asyncio.sleep(r.uniform(5.0, 10.0))
    await stack.stop_part("postgres")
    log.append(f"{clock} PostgreSQL stopped, traffic {'done' if traffic.done() else 'running'}")
    await asyncio.sleep(DOWN_FOR)
    await stack.start_part("postgres")
    log.append(f"{clock} PostgreSQL up again")


async def test_postgres_outage_loses_and_doubles_nothing(stack):
    result = await run_scenario(stack, "3 PostgreSQL stopped for 30 s", stop_postgres, seed=3)
    assert any(k.startswith("retried_") for k in result.sender_stats), result.sender_stats
    assert_nothing_lost(result)
