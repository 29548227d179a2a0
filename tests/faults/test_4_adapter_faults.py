"""Scenario 4: every adapter operation (ERP, WMS, POS stubs) fails 20% of the time, after 0-500 ms of added
latency (RETAILFLOW_FAULTS {"*": ...} in the worker's environment). Temporal's retry policy rides them out."""
import pytest

from config.settings import FaultSpec
from tests.faults.driver import assert_nothing_lost, log_since, log_size, run_scenario

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]
FAULTS = {"*": FaultSpec(failure_rate=0.2, latency_ms=500, random_latency=True)}


async def test_adapter_faults_lose_and_double_nothing(stack):
    stack.settings = stack.settings.model_copy(update={"faults": FAULTS})
    await stack.restart("worker")  # the worker reads RETAILFLOW_FAULTS at start
    offset = log_size(stack, "worker")
    try:
        result = await run_scenario(stack, "4 adapter faults 20%, 0-500 ms latency, every adapter", seed=4)
    finally:
        stack.settings = stack.settings.model_copy(update={"faults": {}})
        await stack.restart("worker")
    injected = log_since(stack, "worker", offset).count("injected fault")
    result.fault_log.append(f"{injected} injected faults in the worker log")
    print(f"{injected} injected faults in the worker log")
    assert injected > 0, "no fault was injected: the worker did not get RETAILFLOW_FAULTS"
    assert_nothing_lost(result)
