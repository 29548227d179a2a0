"""Returnable and refundable quantities across returns, in PostgreSQL (the stub WMS, revision 0005): concurrent
returns of one order line can never both be authorized, released units are returnable again, and refunds are
priced cumulatively per order line at what was charged."""
import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.pos import CaptureInput, PaymentLookupInput
from adapters.stub_pos import PostgresPos
from adapters.stub_wms import PostgresWms
from adapters.wms import (
    AuthorizeReturnInput,
    AuthorizeReturnResult,
    CloseReturnInput,
    ReturnLineRequest,
    ShipmentRecord,
    ShippedLine,
)
from persistence.engine import create_engine

D = Decimal


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=20, max_overflow=10)
    yield engine
    await engine.dispose()


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def _ship(wms: PostgresWms, order_id: str, quantity: int, *, amount: Decimal | None, unit_price: Decimal,
                payment_id: str | None = "pay-1", shipment_id: str | None = None) -> str:
    shipment_id = shipment_id or _id("s")
    await wms.record_shipment(ShipmentRecord(
        key=f"order:web:{order_id}:shipment:{shipment_id}", shipment_id=shipment_id, channel="web",
        order_id=order_id, location_id="DC", payment_id=payment_id,
        lines=[ShippedLine(line_id="l1", sku="A", quantity=quantity, unit_price=unit_price, currency="USD",
                           amount=amount)]))
    return shipment_id


def _ask(order_id: str, return_id: str, quantity: int) -> AuthorizeReturnInput:
    return AuthorizeReturnInput(key=f"return:{return_id}:authorization", return_id=return_id, channel="web",
                                order_id=order_id, lines=[ReturnLineRequest(line_id="l1", sku="A", quantity=quantity)])


async def test_twenty_concurrent_returns_of_a_three_unit_line_authorize_three_units(pool: AsyncEngine) -> None:
    wms, order_id = PostgresWms(pool), _id("o")
    await _ship(wms, order_id, 3, amount=D("10.00"), unit_price=D("3.3333"))
    results: list[AuthorizeReturnResult] = await asyncio.gather(*(
        wms.authorize_return(_ask(order_id, f"{order_id}-r{n}", 1)) for n in range(20)))
    authorized = [r for r in results if r.lines[0].authorized]
    refused = [r for r in results if not r.lines[0].authorized]
    assert len(authorized) == 3 and len(refused) == 17
    assert {r.lines[0].refusal for r in refused} == {"over_return"}
    assert all("only 0 of 3 EA" in (r.lines[0].refused_reason or "") for r in refused)
    assert {r.payment_id for r in results} == {"pay-1"} and authorized[0].lines[0].sale_location_id == "DC"
    # a retry of a decided return answers the first decision, whatever happened since
    again = await wms.authorize_return(_ask(order_id, refused[0].key.split(":")[1], 1))
    assert again.applied is False and again.lines[0].authorized == 0


async def test_a_released_authorization_is_returnable_again(pool: AsyncEngine) -> None:
    wms, order_id = PostgresWms(pool), _id("o")
    await _ship(wms, order_id, 2, amount=D("20.00"), unit_price=D("10.00"))
    first = await wms.authorize_return(_ask(order_id, f"{order_id}-a", 2))
    assert first.lines[0].authorized == 2
    assert (await wms.authorize_return(_ask(order_id, f"{order_id}-b", 1))).lines[0].authorized == 0
    # the first return expires: nothing accepted, its two units are released
    closed = await wms.close_return(CloseReturnInput(key=first.key))
    assert (closed.total, closed.lines[0].released, closed.lines[0].refunded_units) == (D("0.00"), 2, 0)
    assert (await wms.close_return(CloseReturnInput(key=first.key))).applied is False
    assert (await wms.authorize_return(_ask(order_id, f"{order_id}-c", 2))).lines[0].authorized == 2


async def test_unit_by_unit_refunds_of_a_ten_euro_line_of_three_add_up_to_ten(pool: AsyncEngine) -> None:
    wms, order_id = PostgresWms(pool), _id("o")
    await _ship(wms, order_id, 3, amount=D("10.00"), unit_price=D("3.3333"))
    refunds = []
    for n in range(3):
        decided = await wms.authorize_return(_ask(order_id, f"{order_id}-r{n}", 1))
        assert decided.lines[0].authorized == 1 and decided.lines[0].charged == D("10.00")
        closed = await wms.close_return(CloseReturnInput(key=decided.key, accepted={0: 1}))
        refunds.append(closed.total)
    assert refunds == [D("3.33"), D("3.34"), D("3.33")] and sum(refunds) == D("10.00")
    # a line returned in full is returnable no more
    assert (await wms.authorize_return(_ask(order_id, f"{order_id}-r9", 1))).lines[0].refusal == "over_return"


async def test_authorized_but_never_received_is_released_at_close(pool: AsyncEngine) -> None:
    wms, order_id = PostgresWms(pool), _id("o")
    await _ship(wms, order_id, 3, amount=D("30.00"), unit_price=D("10.00"))
    decided = await wms.authorize_return(_ask(order_id, f"{order_id}-a", 3))
    closed = await wms.close_return(CloseReturnInput(key=decided.key, accepted={0: 1}))
    assert (closed.total, closed.lines[0].released) == (D("10.00"), 2)
    assert (await wms.authorize_return(_ask(order_id, f"{order_id}-b", 3))).lines[0].authorized == 0
    assert (await wms.authorize_return(_ask(order_id, f"{order_id}-c", 2))).lines[0].authorized == 2


async def test_a_release_1_shipment_is_priced_at_its_unit_price_and_its_payment_found_by_capture(
        pool: AsyncEngine) -> None:
    wms, pos, order_id = PostgresWms(pool), PostgresPos(pool), _id("o")
    payment = _id("pay")
    shipment_id = await _ship(wms, order_id, 2, amount=None, unit_price=D("4.99"), payment_id=None)
    await pos.capture(CaptureInput(key=_id("cap"), payment_id=payment, authorized_amount=D("9.98"),
                                   amount=D("9.98"), currency="USD", reference=shipment_id))
    decided = await wms.authorize_return(_ask(order_id, f"{order_id}-a", 2))
    assert decided.payment_id is None and decided.shipment_ids == [shipment_id]
    assert decided.lines[0].charged == D("9.98")
    assert (await pos.payment_for(PaymentLookupInput(references=decided.shipment_ids))).payment_id == payment
    closed = await wms.close_return(CloseReturnInput(key=decided.key, accepted={0: 2}))
    assert closed.total == D("9.98")
    assert (await pos.payment_for(PaymentLookupInput(references=[_id("s")]))).payment_id is None
