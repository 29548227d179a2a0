"""Fault injection: which spec applies to which operation, latency, and a seeded, repeatable failure rate."""
import pytest
from temporalio.exceptions import ApplicationError

from activities.faults import Faults
from config.settings import FaultSpec, Settings
from domain.errors import ErrorType

pytestmark = pytest.mark.unit


def test_the_most_specific_spec_wins() -> None:
    exact, adapter, anything = FaultSpec(failure_rate=0.1), FaultSpec(failure_rate=0.2), FaultSpec(latency_ms=5)
    faults = Faults({"erp.post_movement": exact, "wms.*": adapter, "*": anything})
    assert faults.spec_for("erp.post_movement") is exact
    assert faults.spec_for("wms.record_receipt") is adapter
    assert faults.spec_for("pos.capture_payment") is anything
    assert Faults({"wms.*": adapter}).spec_for("erp.post_movement") is None


async def test_latency_then_a_retryable_injected_fault() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    faults = Faults({"pos.capture_payment": FaultSpec(failure_rate=1.0, latency_ms=250)}, sleep=sleep)
    with pytest.raises(ApplicationError) as fault:
        await faults.inject("pos.capture_payment")
    assert fault.value.type == ErrorType.INJECTED_FAULT and not fault.value.non_retryable
    assert slept == [0.25] and faults.injected == {"pos.capture_payment": 1}
    await faults.inject("pos.void_payment")  # no spec: nothing happens


async def test_a_seeded_failure_rate_is_repeatable() -> None:
    async def run(seed: int) -> list[bool]:
        faults = Faults({"*": FaultSpec(failure_rate=0.3)}, seed=seed)
        out = []
        for _ in range(200):
            try:
                await faults.inject("erp.post_movement")
                out.append(False)
            except ApplicationError:
                out.append(True)
        return out

    first = await run(42)
    assert first == await run(42)
    assert 30 < sum(first) < 90  # about 30 % of 200


def test_faults_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETAILFLOW_FAULTS", '{"erp.post_movement": {"failure_rate": 0.5, "latency_ms": 20}}')
    spec = Faults.from_settings(Settings()).spec_for("erp.post_movement")
    assert spec == FaultSpec(failure_rate=0.5, latency_ms=20)
