"""Scenario 6: the HTTP service SIGKILLed mid-request, five times, while deliveries continue. Senders retry what
was not acknowledged, with the same webhook-id; the delivery register and the idempotent dispatch make a retry
of a delivery that did get through harmless."""
import asyncio

import pytest

from tests.faults.driver import Clock, assert_nothing_lost, full_only, rng, run_scenario

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900), full_only("scenario 6 (HTTP service killed)")]
KILLS = 5


async def kill_the_api(stack, traffic, log: list[str]) -> None:
    r, clock = rng(6), Clock()
    for i in range(1, KILLS + 1):
        await asyncio.sleep(r.uniform(2.0, 6.0))
        await stack.kill("api")
        log.append(f"{clock} HTTP service SIGKILLed ({i}/{KILLS}), traffic {'done' if traffic.done() else 'running'}")
        await asyncio.sleep(r.uniform(0.2, 1.5))
        await stack.restart("api")
        log.append(f"{clock} HTTP service up again")


async def test_api_killed_mid_request_loses_and_doubles_nothing(stack):
    result = await run_scenario(stack, "6 HTTP service SIGKILLed 5x mid-request", kill_the_api, seed=6)
    assert any(k.startswith("retried_") for k in result.sender_stats), result.sender_stats
    assert result.deliveries_recorded == result.sender_stats["events"]
    assert_nothing_lost(result)
