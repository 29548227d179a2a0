"""The WMS activities through temporalio's ActivityEnvironment, over the PostgreSQL stub."""
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import pytest_asyncio
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.faults import Faults
from activities.wms import WmsActivities
from adapters.stub_wms import PostgresWms
from adapters.wms import (
    PickTaskInput,
    ReceiptRecord,
    ShipmentRecord,
    ShippedLine,
    ShippedLinesInput,
    TaskLine,
    TransferShipmentInput,
)
from config.settings import FaultSpec
from domain.errors import ErrorType
from persistence.engine import create_engine


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def acts(database_url: str) -> AsyncIterator[WmsActivities]:
    engine = create_engine(database_url)
    yield WmsActivities(PostgresWms(engine))
    await engine.dispose()


def ids() -> str:
    return uuid.uuid4().hex[:8]


def shipped(line_id: str, sku: str, quantity: int, price: str = "19.00") -> ShippedLine:
    return ShippedLine(line_id=line_id, sku=sku, quantity=quantity, unit_price=Decimal(price), currency="USD")


async def test_pick_task_retried_is_created_once(acts: WmsActivities) -> None:
    env = ActivityEnvironment()
    order = ids()
    task = PickTaskInput(key=f"order:web:{order}:pick", channel="web", order_id=order, location_id="DC-EAST",
                         lines=[TaskLine(line_id="1", sku="A", quantity=2)])
    assert (await env.run(acts.create_pick_task, task)).applied
    assert not (await env.run(acts.create_pick_task, task)).applied
    with pytest.raises(ApplicationError) as conflict:
        await env.run(acts.create_pick_task, task.model_copy(update={"location_id": "ST-NYC"}))
    assert conflict.value.type == ErrorType.IDEMPOTENCY_CONFLICT and conflict.value.non_retryable


async def test_shipped_lines_sum_over_shipments_and_ignore_retries(acts: WmsActivities) -> None:
    env = ActivityEnvironment()
    order = ids()

    def shipment(n: int, location: str, lines: list[ShippedLine]) -> ShipmentRecord:
        return ShipmentRecord(key=f"settle:web:{order}:ship-{n}", shipment_id=f"SH-{order}-{n}", channel="web",
                              order_id=order, location_id=location, carrier="UPS", tracking_number=f"1Z{n}",
                              lines=lines)

    first = shipment(1, "DC-EAST", [shipped("1", "A", 2), shipped("2", "B", 1, "5.50")])
    assert (await env.run(acts.record_shipment, first)).applied
    assert not (await env.run(acts.record_shipment, first)).applied  # a retried activity
    await env.run(acts.record_shipment, shipment(2, "ST-NYC", [shipped("1", "A", 1), shipped("3", "C", 0)]))
    result = await env.run(acts.get_shipped_lines, ShippedLinesInput(channel="web", order_id=order))
    assert result.lines == [shipped("1", "A", 3), shipped("2", "B", 1, "5.50")]
    assert result.location_ids == ["DC-EAST", "ST-NYC"]
    nothing = await env.run(acts.get_shipped_lines, ShippedLinesInput(channel="web", order_id="never"))
    assert nothing.lines == [] and nothing.location_ids == []


async def test_transfer_shipment_and_receipts_are_recorded_once(acts: WmsActivities) -> None:
    env = ActivityEnvironment()
    transfer = ids()
    lines = [TaskLine(line_id="A", sku="A", quantity=6)]
    ship = TransferShipmentInput(key=f"transfer:{transfer}:ship", transfer_id=transfer, from_location_id="DC-EAST",
                                 to_location_id="ST-SEA", lines=lines)
    assert (await env.run(acts.create_transfer_shipment, ship)).applied
    assert not (await env.run(acts.create_transfer_shipment, ship)).applied
    receipt = ReceiptRecord(key=f"transfer:{transfer}:receive", kind="transfer", reference=transfer,
                            location_id="ST-SEA", lines=lines)
    assert (await env.run(acts.record_receipt, receipt)).applied
    assert not (await env.run(acts.record_receipt, receipt)).applied


@pytest.mark.parametrize("bad", [
    TransferShipmentInput(key="t-same", transfer_id="t", from_location_id="X", to_location_id="X",
                          lines=[TaskLine(line_id="A", sku="A", quantity=1)]),
    ReceiptRecord(key="r-kind", kind="gift", reference="r", location_id="X", lines=[TaskLine(line_id="A", sku="A",
                                                                                               quantity=1)]),
    ReceiptRecord(key="r-neg", kind="return", reference="r", location_id="X", lines=[TaskLine(line_id="A", sku="A",
                                                                                                quantity=-1)]),
])
async def test_malformed_records_are_refused(acts: WmsActivities, bad) -> None:  # noqa: ANN001
    call = acts.create_transfer_shipment if isinstance(bad, TransferShipmentInput) else acts.record_receipt
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(call, bad)
    assert refused.value.type == ErrorType.INVALID_TRANSITION and refused.value.non_retryable


async def test_wildcard_fault_hits_every_wms_operation(acts: WmsActivities) -> None:
    faulty = WmsActivities(acts.wms, Faults({"wms.*": FaultSpec(failure_rate=1.0)}))
    with pytest.raises(ApplicationError) as fault:
        await ActivityEnvironment().run(faulty.get_shipped_lines, ShippedLinesInput(channel="web", order_id="x"))
    assert fault.value.type == ErrorType.INJECTED_FAULT and not fault.value.non_retryable


async def test_cancel_fulfillment_is_answered_once_per_key(acts: WmsActivities) -> None:
    """Intercepted unless the parcel is known to have left; a retry gets the first answer even if the parcel is
    marked as left afterwards; the same key with another request is a conflict."""
    from adapters.wms import CancelFulfillmentInput, InterceptAnswer

    env = ActivityEnvironment()
    order = ids()

    def cancel(location: str) -> CancelFulfillmentInput:
        return CancelFulfillmentInput(key=f"order:web:{order}:cancel-fulfillment:{location}", channel="web",
                                      order_id=order, location_id=location, reason="customer asked")

    first = await env.run(acts.cancel_fulfillment, cancel("DC-EAST"))
    assert first.answer is InterceptAnswer.INTERCEPTED and first.applied
    await acts.wms.mark_parcel_left("web", order, "DC-EAST")  # type: ignore[attr-defined]
    await acts.wms.mark_parcel_left("web", order, "ST-NYC")  # type: ignore[attr-defined]
    await acts.wms.mark_parcel_left("web", order, "ST-NYC")  # type: ignore[attr-defined]  (idempotent)
    again = await env.run(acts.cancel_fulfillment, cancel("DC-EAST"))
    assert again.answer is InterceptAnswer.INTERCEPTED and not again.applied
    left = await env.run(acts.cancel_fulfillment, cancel("ST-NYC"))
    assert left.answer is InterceptAnswer.ALREADY_DISPATCHED and left.applied
    with pytest.raises(ApplicationError) as conflict:
        await env.run(acts.cancel_fulfillment, cancel("ST-NYC").model_copy(update={"reason": "other"}))
    assert conflict.value.type == ErrorType.IDEMPOTENCY_CONFLICT and conflict.value.non_retryable
