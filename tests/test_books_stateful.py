"""Books that cannot drift (issue 17): a hypothesis state machine drives random interleavings of the events real
channels send, per business key, through the door (signed webhooks into the FastAPI app), the real workflows
on a local dev server and PostgreSQL; after every sequence the books are checked (tests/books_model.py).

Each rule is something that happens in the world (an order placed, a pick, a truck leaving, a parcel coming
back); its event is delivered at once or held by a slow sender and delivered later (reorders), and any
delivered event can be delivered again with the same webhook-id (duplicates). Events that come after their
process ended (a dispatch after a cancel, a parcel after the refund, a second truck after the receipt) are
the late events. After each delivery the machine waits until the processes have done all they do about it,
so a sequence replays the same way and hypothesis can shrink it.

Settings (docs/books.md): RETAILFLOW_BOOKS_EXAMPLES (default 5), RETAILFLOW_BOOKS_STEPS (default 25),
RETAILFLOW_BOOKS_RANDOM=1 for a random seed instead of the fixed derandomized one, RETAILFLOW_BOOKS_SHRINK=1 to
shrink a failing sequence (minutes against a real server; off by default so CI stays within its budget).
"""
import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import text
from temporalio.client import Client

from adapters.stub_erp import PostgresErp
from client.correlation import CorrelationInterceptor
from devtools.catalog import ITEMS_BY_SKU
from domain.inventory import MovementKind, MovementLine, MovementRequest
from persistence.engine import create_engine
from starters.api import create_app
from tests.books_model import (
    SECRET,
    SOURCES,
    Delivery,
    Door,
    LineTruth,
    OrderTruth,
    RedeliveryAnsweredDifferently,
    ReturnTruth,
    TransferTruth,
    Truth,
    verify,
)
from tests.support import seeded
from tests.support import test_settings as make_settings
from worker.factory import build_worker

pytestmark = pytest.mark.books

EXAMPLES = int(os.environ.get("RETAILFLOW_BOOKS_EXAMPLES", "5"))
STEPS = int(os.environ.get("RETAILFLOW_BOOKS_STEPS", "25"))
RANDOM = os.environ.get("RETAILFLOW_BOOKS_RANDOM") == "1"
SHRINK = os.environ.get("RETAILFLOW_BOOKS_SHRINK") == "1"

DC = "DC-EAST"
STORE, FAR_STORE = "ST-NYC", "ST-SFO"  # same legal entity as the DC, and the other one
# (sku, uom, unit price per uom): a pack priced 10.00 is 1.6667 a unit, so splits and unit returns must add up
LINE_CHOICES = [("APP-TEE-WHT-M", "EA", "19.00"), ("APP-TEE-WHT-M", "PACK", "10.00"),
                ("HOM-MUG-SAND", "EA", "14.00"), ("APP-HOOD-GRY-M", "EA", "54.00")]
SKUS = sorted({sku for sku, _, _ in LINE_CHOICES})
DISPOSITIONS = ["restock", "damaged", "vendor_return"]
SEND = st.sampled_from(["now", "later", "twice"])
PAYOUT = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)  # the processor's payout batch

T = TypeVar("T")


class World:
    """What the machine drives, on the test's event loop; the machine runs in a thread of its own (hypothesis
    rules are synchronous) and hands each step to the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, door: Door, engine, database_url: str) -> None:  # noqa: ANN001
        self.loop, self.door, self.engine, self.database_url = loop, door, engine, database_url

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=300)

    async def top_up(self, tag: str) -> None:
        """Keep the DC stocked for the next sequence (a receipt outside the sequence's processes, so its
        figures are untouched): a long run must not turn every order into a rejection."""
        erp = PostgresErp(self.engine)
        stock = await erp.stock(SKUS, [DC])
        lines = [MovementLine(sku=sku, location_id=DC, quantity=100)
                 for sku in SKUS if stock.get(sku, {}).get(DC, {}).get("available", 0) < 60]
        if lines:
            await erp.post_movement(MovementRequest(key=f"books:top-up:{tag}", kind=MovementKind.RECEIPT, lines=lines,
                                                    reason="books test: stock for the next sequence",
                                                    workflow_id="books:top-up", run_id="books"))


class BooksMachine(RuleBasedStateMachine):
    world: World  # set by the test

    def __init__(self) -> None:
        super().__init__()
        self.truth = Truth(tag=uuid.uuid4().hex[:8])
        self.ids, self.numbered = "unique", {}
        self.world.run(self.world.top_up(self.truth.tag))

    @initialize(ids=st.sampled_from(["unique", "per_source"]))
    def webhook_ids(self, ids: str) -> None:
        """How the senders name their deliveries: a fresh id each, or each source numbering its own
        (msg-1, msg-2, ...), so the wms's and the payment processor's msg-1 are two events."""
        self.ids = ids

    # --- delivering -------------------------------------------------------------------------------------
    def _event(self, source: str, type_: str, data: dict, workflow_id: str, webhook_id: str | None = None,
               timestamp: datetime | None = None) -> Delivery:
        if webhook_id is None and self.ids == "per_source":
            self.numbered[source] = self.numbered.get(source, 0) + 1
            webhook_id = f"msg-{self.truth.tag}-{self.numbered[source]}"
        delivery = Delivery(source, type_, data, workflow_id, timestamp=timestamp)
        if webhook_id is not None:
            delivery.webhook_id = webhook_id
        return delivery

    def _quiet_ids(self, delivery: Delivery) -> list[str]:
        ids_ = [delivery.workflow_id]
        if delivery.workflow_id.startswith("order:"):
            ids_.append("settle:" + delivery.workflow_id.removeprefix("order:"))
        return ids_

    def _send(self, delivery: Delivery) -> tuple[int, dict]:
        answer = self.world.run(self.world.door.post(delivery, quiet_ids=self._quiet_ids(delivery)))
        if not any(d is delivery for d in self.truth.deliveries):
            self.truth.deliveries.append(delivery)
        return answer

    def _happen(self, delivery: Delivery, send: str) -> None:
        """The event happened; its sender delivers it now, later (after events that happen next: a reorder), or
        now and again later with the same webhook-id (a duplicate)."""
        if send == "later":
            self.truth.held.append(delivery)
            return
        self._send(delivery)
        if send == "twice":
            self.truth.held.append(delivery)

    # --- orders -------------------------------------------------------------------------------------------
    @precondition(lambda self: len(self.truth.orders) < 3)
    @rule(lines=st.lists(st.tuples(st.sampled_from(range(len(LINE_CHOICES))), st.integers(1, 2)),
                         min_size=1, max_size=2, unique_by=lambda t: LINE_CHOICES[t[0]][0]))
    def place_order(self, lines: list[tuple[int, int]]) -> None:
        n = len(self.truth.orders) + 1
        order_id = f"BK-{self.truth.tag}-{n}"
        body_lines, truths, total = [], [], Decimal(0)
        for i, (choice, qty) in enumerate(lines, start=1):
            sku, uom, price = LINE_CHOICES[choice]
            qty = 1 if uom == "PACK" else qty
            body_lines.append({"line_id": str(i), "sku": sku, "quantity": qty, "uom": uom, "unit_price": price})
            truths.append(LineTruth(line_id=str(i), sku=sku, ordered=qty * ITEMS_BY_SKU[sku].units[uom]))
            total += qty * Decimal(price)
        order = OrderTruth(order_id=order_id, channel="web", payment_id=f"pay-{order_id}", lines=truths)
        self.truth.orders.append(order)
        placed = self._event("web", "order.placed", {
            "order_id": order_id, "channel": "web", "currency": "USD", "lines": body_lines,
            "fulfillment": {"mode": "ship", "location_id": DC},
            "payment": {"payment_id": order.payment_id, "authorized_amount": str(total)},
        }, order.workflow_id)
        code, answer = self._send(placed)
        for _ in range(3):  # a decision slower than the door's bound: the redelivery asks again (CONTRACT.md)
            if code != 202:
                break
            code, answer = self._send(placed)
        assert code == 200, (code, answer)
        order.decision = answer["decision"]
        by_id = {ln.line_id: ln for ln in order.lines}
        for decided in answer["lines"]:
            line = by_id[decided["line_id"]]
            line.reserved, line.location_id = decided["reserved_quantity"], decided["location_id"]

    def _orders(self, test) -> list[OrderTruth]:  # noqa: ANN001
        return [o for o in self.truth.orders if test(o)]

    @precondition(lambda self: any(o.to_pick() for o in self.truth.orders))
    @rule(i=st.integers(0, 2), short=st.booleans(), send=SEND)
    def pick(self, i: int, short: bool, send: str) -> None:
        """The WMS picks a location's task (short by one unit on its first line), cancelled or not."""
        orders = self._orders(lambda o: o.to_pick())
        order = orders[i % len(orders)]
        location = order.to_pick()[0]
        order.picked_at.add(location)
        lines = []
        for n, ln in enumerate(x for x in order.lines if x.location_id == location and x.reserved):
            ln.picked = ln.reserved - (1 if short and n == 0 else 0)
            lines.append({"line_id": ln.line_id, "quantity": ln.picked})
        self._happen(self._event("wms", "fulfillment.picked", {
            "order_id": order.order_id, "channel": order.channel, "location_id": location, "lines": lines,
        }, order.workflow_id), send)

    @precondition(lambda self: any(o.to_dispatch() for o in self.truth.orders))
    @rule(i=st.integers(0, 2), split=st.booleans(), send=SEND)
    def dispatch(self, i: int, split: bool, send: str) -> None:
        """A parcel leaves: everything picked at the location, or one unit of it (a split shipment)."""
        orders = self._orders(lambda o: o.to_dispatch())
        order = orders[i % len(orders)]
        location = order.to_dispatch()[0]
        lines = []
        for ln in order.lines:
            if ln.location_id == location and ln.picked > ln.dispatched:
                qty = 1 if split else ln.picked - ln.dispatched
                ln.dispatched += qty
                lines.append({"line_id": ln.line_id, "quantity": qty})
                if split:
                    break
        shipment_id = f"SH-{order.order_id}-{len(order.shipments) + 1}"
        order.shipments.append(shipment_id)
        self._happen(self._event("wms", "shipment.dispatched", {
            "shipment_id": shipment_id, "order_id": order.order_id, "channel": order.channel, "location_id": location,
            "carrier": "ups", "tracking_number": f"1Z{shipment_id}", "lines": lines,
        }, order.workflow_id), send)

    @precondition(lambda self: any(not o.cancelled for o in self.truth.orders))
    @rule(i=st.integers(0, 2), send=SEND)
    def cancel(self, i: int, send: str) -> None:
        orders = self._orders(lambda o: not o.cancelled)
        order = orders[i % len(orders)]
        order.cancelled = True
        self._happen(self._event("web", "order.cancelled", {
            "order_id": order.order_id, "channel": order.channel, "reason": "customer changed their mind",
        }, order.workflow_id), send)

    @precondition(lambda self: any(set(o.shipments) - o.delivered for o in self.truth.orders))
    @rule(i=st.integers(0, 2), send=SEND, internal_id=st.booleans())
    def deliver(self, i: int, send: str, internal_id: bool) -> None:
        """The carrier delivers a parcel; its webhook-id may happen to read like the order process's own
        hand-over of that shipment (`order:{channel}:{order_id}:shipped:{shipment_id}`)."""
        orders = self._orders(lambda o: set(o.shipments) - o.delivered)
        order = orders[i % len(orders)]
        shipment_id = sorted(set(order.shipments) - order.delivered)[0]
        order.delivered.add(shipment_id)
        self._happen(self._event("carrier", "shipment.delivered", {
            "shipment_id": shipment_id, "order_id": order.order_id, "channel": order.channel,
        }, order.settle_workflow_id, webhook_id=f"{order.workflow_id}:shipped:{shipment_id}" if internal_id else None),
            send)

    @precondition(lambda self: any(o.shipments for o in self.truth.orders))
    @rule(i=st.integers(0, 2), whole=st.booleans(), send=SEND)
    def settle(self, i: int, whole: bool, send: str) -> None:
        """The processor pays out what was captured: the next capture alone, or all that is left at once, in
        its daily payout batch (every settlement carries the batch's time)."""
        orders = self._orders(lambda o: o.shipments)
        order = orders[i % len(orders)]
        captures = self.world.run(self._captures(order.payment_id))[order.settled_parts:]
        if not captures:
            return
        parts = captures if whole else captures[:1]
        order.settled_parts += len(parts)
        self._happen(self._event("payments", "payment.settled", {
            "payment_id": order.payment_id, "order_id": order.order_id, "channel": order.channel,
            "amount": str(sum(parts, Decimal(0))), "currency": "USD",
        }, order.settle_workflow_id, timestamp=PAYOUT), send)

    async def _captures(self, payment_id: str) -> list[Decimal]:
        async with self.world.engine.connect() as conn:
            return [Decimal(a) for a in (await conn.scalars(text(
                "SELECT amount FROM captures WHERE payment_id = :p ORDER BY created_at, key"), {"p": payment_id}))]

    # --- the transfer -------------------------------------------------------------------------------------
    @precondition(lambda self: self.truth.transfer is None)
    @rule(skus=st.lists(st.sampled_from(SKUS), min_size=1, max_size=2, unique=True),
          qty=st.integers(2, 5), far=st.booleans(), send=SEND)
    def request_transfer(self, skus: list[str], qty: int, far: bool, send: str) -> None:
        t = TransferTruth(transfer_id=f"TR-{self.truth.tag}", from_location_id=DC,
                          to_location_id=FAR_STORE if far else STORE, requested={s: qty for s in skus})
        self.truth.transfer = t
        self._happen(self._event("wms", "transfer.requested", {
            "transfer_id": t.transfer_id, "from_location_id": t.from_location_id, "to_location_id": t.to_location_id,
            "lines": [{"sku": s, "quantity": q, "uom": "EA"} for s, q in t.requested.items()],
        }, t.workflow_id), send)

    @precondition(lambda self: self.truth.transfer is not None and self.truth.transfer.to_ship())
    @rule(whole=st.booleans(), send=SEND)
    def ship_truck(self, whole: bool, send: str) -> None:
        """A truck leaves with what is left to ship, or with one unit of each SKU (more trucks follow)."""
        t = self.truth.transfer
        assert t is not None
        load = {s: (q if whole else 1) for s, q in t.to_ship().items()}
        for s, q in load.items():
            t.shipped[s] += q
        t.trucks += 1
        self._happen(self._event("wms", "transfer.shipped", {
            "transfer_id": t.transfer_id, "lines": [{"sku": s, "quantity": q} for s, q in load.items()],
        }, t.workflow_id), send)

    @precondition(lambda self: self.truth.transfer is not None and self.truth.transfer.in_transit())
    @rule(whole=st.booleans(), send=SEND)
    def receive_transfer(self, whole: bool, send: str) -> None:
        t = self.truth.transfer
        assert t is not None
        load = {s: (q if whole else 1) for s, q in t.in_transit().items()}
        for s, q in load.items():
            t.received[s] += q
        self._happen(self._event("wms", "transfer.received", {
            "transfer_id": t.transfer_id, "lines": [{"sku": s, "quantity": q} for s, q in load.items()],
        }, t.workflow_id), send)

    # --- returns ------------------------------------------------------------------------------------------
    @precondition(lambda self: any(len(o.returns) < 2 for o in self.truth.orders))
    @rule(i=st.integers(0, 2), one=st.booleans(), send=SEND)
    def authorize_return(self, i: int, one: bool, send: str) -> None:
        """The channel authorizes a return of what it knows shipped (one unit, or all of it), or of one unit
        of the first line if nothing shipped yet; it does not know what other returns already took back."""
        orders = self._orders(lambda o: len(o.returns) < 2)
        order = orders[i % len(orders)]
        shipped = [ln for ln in order.lines if ln.dispatched] or order.lines[:1]
        asked = {ln.line_id: (ln.sku, 1 if one else max(ln.dispatched, 1)) for ln in shipped}
        r = ReturnTruth(return_id=f"RT-{order.order_id}-{len(order.returns) + 1}", order=order, location_id=STORE,
                        asked=asked)
        order.returns.append(r.return_id)
        self.truth.returns.append(r)
        self._happen(self._event("web", "return.authorized", {
            "return_id": r.return_id, "order_id": order.order_id, "channel": order.channel,
            "return_location_id": r.location_id,
            "lines": [{"line_id": lid, "sku": sku, "quantity": q, "reason": "did not fit"}
                      for lid, (sku, q) in asked.items()],
        }, r.workflow_id), send)

    def _returns(self, test) -> list[ReturnTruth]:  # noqa: ANN001
        return [r for r in self.truth.returns if test(r)]

    @precondition(lambda self: any(r.to_send() for r in self.truth.returns))
    @rule(j=st.integers(0, 5), whole=st.booleans(), send=SEND)
    def receive_parcel(self, j: int, whole: bool, send: str) -> None:
        """A parcel of the return reaches the store: all that is left of it, or one unit (more parcels)."""
        returns = self._returns(lambda r: r.to_send())
        r = returns[j % len(returns)]
        load = {s: (q if whole else 1) for s, q in r.to_send().items()}
        for s, q in load.items():
            r.sent[s] += q
        self._happen(self._event("wms", "return.received", {
            "return_id": r.return_id, "location_id": r.location_id,
            "lines": [{"sku": s, "quantity": q} for s, q in load.items()],
        }, r.workflow_id), send)

    @precondition(lambda self: any(r.to_inspect() for r in self.truth.returns))
    @rule(j=st.integers(0, 5), whole=st.booleans(), disposition=st.sampled_from(DISPOSITIONS), send=SEND)
    def inspect(self, j: int, whole: bool, disposition: str, send: str) -> None:
        """An inspection pass over what arrived: all of it, or one unit (more passes follow)."""
        returns = self._returns(lambda r: r.to_inspect())
        r = returns[j % len(returns)]
        load = {s: (q if whole else 1) for s, q in r.to_inspect().items()}
        for s, q in load.items():
            r.inspected[s] += q
            if disposition == "damaged":
                r.damaged[s] += q
        self._happen(self._event("wms", "return.inspected", {
            "return_id": r.return_id,
            "lines": [{"sku": s, "quantity": q, "disposition": disposition} for s, q in load.items()],
        }, r.workflow_id), send)

    @precondition(lambda self: any(r.inspected and not r.refund_settled for r in self.truth.returns))
    @rule(j=st.integers(0, 5), send=SEND)
    def settle_refund(self, j: int, send: str) -> None:
        """The processor pays out a refund once it was issued (read from the POS stub)."""
        returns = self._returns(lambda r: r.inspected and not r.refund_settled)
        r = returns[j % len(returns)]
        amount = self.world.run(self._refund(r.return_id))
        if amount is None:
            return
        r.refund_settled = True
        self._happen(self._event("payments", "refund.settled", {
            "refund_id": f"RF-{r.return_id}", "return_id": r.return_id, "amount": str(amount), "currency": "USD",
        }, r.workflow_id), send)

    async def _refund(self, return_id: str) -> Decimal | None:
        async with self.world.engine.connect() as conn:
            amount = await conn.scalar(text("SELECT sum(amount) FROM refunds WHERE return_id = :r"), {"r": return_id})
        return Decimal(amount) if amount is not None else None

    # --- senders ------------------------------------------------------------------------------------------
    @precondition(lambda self: bool(self.truth.held))
    @rule(k=st.integers(0, 5))
    def deliver_held(self, k: int) -> None:
        """A held event arrives: late (a reorder), or again with the same webhook-id (a duplicate: the same
        answer as the first time, nothing applied twice)."""
        self._deliver_held(self.truth.held.pop(k % len(self.truth.held)))

    def _deliver_held(self, delivery: Delivery) -> None:
        again = self._send(delivery)
        first = delivery.answers[0]
        if again != first:
            raise RedeliveryAnsweredDifferently(f"{delivery.label()}: first {first}, again {again}")

    def teardown(self) -> None:
        """Every sender delivers what it still holds; then the books are checked."""
        try:
            while self.truth.held:
                self._deliver_held(self.truth.held.pop(0))
            self.world.run(verify(self.world.database_url, self.world.engine, self.world.door, self.truth))
        finally:
            super().teardown()


def machine_settings() -> hypothesis_settings:
    phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target] + ([Phase.shrink] if SHRINK else [])
    return hypothesis_settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, derandomize=not RANDOM,
        database=None if not RANDOM else hypothesis_settings.default.database, phases=phases,
        suppress_health_check=list(HealthCheck), print_blob=True,
    )


@asynccontextmanager
async def books_world(dev_env, database_url: str) -> AsyncIterator[World]:  # noqa: ANN001
    """The door (FastAPI app over ASGI), a worker built inline on the dev server, the seeded database."""
    await seeded(database_url)
    settings = make_settings(database_url=database_url, webhook_secrets={s: SECRET for s in SOURCES},
                             api_tokens=["books-token"], order_decision_timeout=timedelta(seconds=30))
    engine = create_engine(database_url, pool_size=10, max_overflow=30)
    cfg = dev_env.client.config()
    cfg["interceptors"] = [CorrelationInterceptor()]
    client = Client(**cfg)
    app = create_app(settings, engine=engine, client=client)
    try:
        async with build_worker(client, engine, settings), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://rf", timeout=60) as http:
            yield World(asyncio.get_running_loop(), Door(http, client), engine, database_url)
    finally:
        await engine.dispose()


@pytest.mark.timeout(max(300, EXAMPLES * 90 + (3600 if SHRINK else 0)))
async def test_books_cannot_drift(dev_env, database_url) -> None:
    async with books_world(dev_env, database_url) as world:
        BooksMachine.world = world
        # hypothesis rules are synchronous: the machine runs in a thread, each step on this loop
        await asyncio.to_thread(run_state_machine_as_test, BooksMachine, settings=machine_settings())


# Sequences the machine found or was shown, one per failure of release 1.0 (issue 17; /work/notes/books-stateful.md
# has what each broke): the machine's own steps, replayed as hypothesis prints them, so each fix has its test.
NOW = "now"
SOLD = [("place_order", dict(lines=[(0, 1)])), ("pick", dict(i=0, short=False, send=NOW)),
        ("dispatch", dict(i=0, split=False, send=NOW))]
SOLD_TWO = [("place_order", dict(lines=[(0, 2)])), ("pick", dict(i=0, short=False, send=NOW)),
            ("dispatch", dict(i=0, split=False, send=NOW))]
RETURNED = [("authorize_return", dict(i=0, one=False, send=NOW)), ("receive_parcel", dict(j=0, whole=True, send=NOW)),
            ("inspect", dict(j=0, whole=True, disposition="restock", send=NOW))]
KNOWN_SEQUENCES: dict[str, list[tuple[str, dict]]] = {
    # found on release 2 by a 30-sequence random run (seed 2026): a parcel held by a return that ended unauthorized
    # is handed to the late path by the process itself; its LateEvent's receipt counts (the model had missed it)
    "release 2: returns of a cancelled order's lines while its other lines ship": [
        ("webhook_ids", dict(ids='per_source')),
        ("place_order", dict(lines=[(2, 2), (1, 1)])),
        ("cancel", dict(i=1, send='later')),
        ("request_transfer", dict(far=False, qty=2, send='now', skus=['APP-TEE-WHT-M'])),
        ("ship_truck", dict(send='later', whole=True)),
        ("authorize_return", dict(i=1, one=False, send='later')),
        ("deliver_held", dict(k=1)),
        ("authorize_return", dict(i=0, one=True, send='later')),
        ("receive_parcel", dict(j=4, send='twice', whole=True)),
        ("deliver_held", dict(k=1)),
        ("inspect", dict(disposition='vendor_return', j=2, send='now', whole=True)),
        ("pick", dict(i=2, send='now', short=False)),
        ("settle_refund", dict(j=4, send='later')),
        ("settle_refund", dict(j=4, send='later')),
        ("place_order", dict(lines=[(2, 2)])),
        ("settle_refund", dict(j=4, send='now')),
        ("dispatch", dict(i=2, send='twice', split=False)),
        ("deliver", dict(i=2, internal_id=True, send='later')),
        ("cancel", dict(i=1, send='twice')),
        ("authorize_return", dict(i=1, one=True, send='now')),
        ("authorize_return", dict(i=2, one=True, send='now')),
        ("settle", dict(i=2, send='twice', whole=True)),
        ("receive_parcel", dict(j=1, send='twice', whole=True)),
        ("place_order", dict(lines=[(0, 2), (2, 2)])),
        ("pick", dict(i=0, send='later', short=False)),
    ],
    "a returned line returned and refunded again": SOLD + RETURNED + [("settle_refund", dict(j=0, send=NOW))]
    + RETURNED,
    "dispatched after a cancel": [("place_order", dict(lines=[(0, 1)])), ("pick", dict(i=0, short=False, send=NOW)),
                                  ("cancel", dict(i=0, send=NOW)), ("dispatch", dict(i=0, split=False, send=NOW))],
    "picked after a cancel": [("place_order", dict(lines=[(0, 1)])), ("cancel", dict(i=0, send=NOW)),
                              ("pick", dict(i=0, short=False, send=NOW))],
    "a transfer on two trucks": [
        ("request_transfer", dict(skus=["HOM-MUG-SAND"], qty=2, far=False, send=NOW)),
        ("ship_truck", dict(whole=False, send=NOW)), ("ship_truck", dict(whole=True, send=NOW)),
        ("receive_transfer", dict(whole=True, send=NOW))],
    "a second truck after the first was received": [
        ("request_transfer", dict(skus=["HOM-MUG-SAND"], qty=2, far=False, send=NOW)),
        ("ship_truck", dict(whole=False, send=NOW)), ("receive_transfer", dict(whole=True, send=NOW)),
        ("ship_truck", dict(whole=True, send=NOW)), ("receive_transfer", dict(whole=True, send=NOW))],
    "a return in two parcels": SOLD_TWO + [
        ("authorize_return", dict(i=0, one=False, send=NOW)), ("receive_parcel", dict(j=0, whole=False, send=NOW)),
        ("inspect", dict(j=0, whole=True, disposition="restock", send=NOW)),
        ("receive_parcel", dict(j=0, whole=True, send=NOW)), ("settle_refund", dict(j=0, send=NOW))],
    "a return inspected in two passes": SOLD_TWO[:2] + [("dispatch", dict(i=0, split=False, send=NOW)),
        ("authorize_return", dict(i=0, one=False, send=NOW)), ("receive_parcel", dict(j=0, whole=True, send=NOW)),
        ("inspect", dict(j=0, whole=False, disposition="restock", send=NOW)),
        ("inspect", dict(j=0, whole=True, disposition="restock", send=NOW)), ("settle_refund", dict(j=0, send=NOW))],
    "two settlements of the same amount": [
        ("place_order", dict(lines=[(0, 2)])), ("pick", dict(i=0, short=False, send=NOW)),
        ("dispatch", dict(i=0, split=True, send=NOW)), ("dispatch", dict(i=0, split=False, send=NOW)),
        ("settle", dict(i=0, whole=False, send=NOW)), ("settle", dict(i=0, whole=False, send=NOW))],
    "a pack price over six shipments, returned whole": [
        ("place_order", dict(lines=[(1, 1)])), ("pick", dict(i=0, short=False, send=NOW)),
        *[("dispatch", dict(i=0, split=True, send=NOW))] * 6, *RETURNED],
    "a carrier webhook-id that reads like the hand-over": [
        ("place_order", dict(lines=[(0, 1)])), ("pick", dict(i=0, short=False, send=NOW)),
        ("dispatch", dict(i=0, split=False, send="later")), ("deliver", dict(i=0, send=NOW, internal_id=True)),
        ("deliver_held", dict(k=0)), *RETURNED],
    "the same webhook-id from two sources": [("webhook_ids", dict(ids="per_source")), *SOLD],
    "a parcel for a refused return": [("place_order", dict(lines=[(0, 1)])),
                                      ("authorize_return", dict(i=0, one=True, send=NOW)),
                                      ("receive_parcel", dict(j=0, whole=True, send=NOW))],
}


# Lives the books got right on release 1.0 too: the invariants hold where nothing goes wrong.
CLEAN_SEQUENCES: dict[str, list[tuple[str, dict]]] = {
    "sold, delivered, settled, returned and refunded, every event twice": [
        ("place_order", dict(lines=[(0, 2), (2, 1)])), ("pick", dict(i=0, short=False, send="twice")),
        ("dispatch", dict(i=0, split=False, send="twice")), ("deliver", dict(i=0, send="twice", internal_id=False)),
        ("settle", dict(i=0, whole=True, send="twice")), ("authorize_return", dict(i=0, one=True, send="twice")),
        ("receive_parcel", dict(j=0, whole=True, send="twice")),
        ("inspect", dict(j=0, whole=True, disposition="damaged", send="twice")),
        ("settle_refund", dict(j=0, send="twice")), ("deliver_held", dict(k=0))],
    "a transfer on one truck, its events in reverse": [
        ("request_transfer", dict(skus=["HOM-MUG-SAND", "APP-HOOD-GRY-M"], qty=3, far=True, send="later")),
        ("ship_truck", dict(whole=True, send="later")), ("receive_transfer", dict(whole=True, send=NOW)),
        ("deliver_held", dict(k=1)), ("deliver_held", dict(k=0))],
    "a short pick, then cancelled before dispatch": [
        ("place_order", dict(lines=[(0, 2)])), ("pick", dict(i=0, short=True, send=NOW)),
        ("cancel", dict(i=0, send=NOW))],
}


def replay(steps: list[tuple[str, dict]]) -> None:
    machine = BooksMachine()
    for name, arguments in steps:
        getattr(machine, name)(**arguments)
    machine.teardown()


@pytest.mark.parametrize("name", [*KNOWN_SEQUENCES, *CLEAN_SEQUENCES])
async def test_books_known_sequence(dev_env, database_url, name: str) -> None:
    async with books_world(dev_env, database_url) as world:
        BooksMachine.world = world
        await asyncio.to_thread(replay, {**KNOWN_SEQUENCES, **CLEAN_SEQUENCES}[name])
