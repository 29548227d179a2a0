"""Scenario 5: every webhook delivered three times, concurrently, and every process's follow-up events sent at
once in random order: one process per business key, every movement once, every process at its end."""
import pytest

from tests.faults.driver import assert_nothing_lost, run_scenario

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]


async def test_triple_concurrent_out_of_order_deliveries_lose_and_double_nothing(stack):
    result = await run_scenario(stack, "5 every webhook x3, concurrent, out of order", copies=3,
                                shuffle_share=1.0, seed=5)
    assert result.sender_stats["deliveries"] >= 3 * result.sender_stats["events"]
    # the three copies of an event were one delivery: one row each in webhook_deliveries
    assert result.deliveries_recorded == result.sender_stats["events"]
    assert_nothing_lost(result)
