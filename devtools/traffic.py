"""A retail day through the signed webhooks: the one traffic driver the demo, the fault tests and the bench share.

Each scenario is one business story told the way channels tell it (order placed, picked, dispatched, delivered,
settled; a transfer; a return) and says how its processes must end. The driver behaves like a well-made sender:
it signs every delivery (Standard Webhooks), keeps the `webhook-id` across retries and retries what was not
acknowledged (connection refused or reset, timeouts, 503 with Retry-After, any 5xx), so a fault in the stack
delays events and never loses them. It can also deliver every webhook several times at once and shuffle a
process's follow-up events, as at-least-once channels do.

`verify` then asks Temporal how every expected process ended.
"""
import asyncio
import json
import random
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import stamina
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from client.names import SLA_BREACHED
from devtools.catalog import DISTRIBUTION_CENTERS, ITEMS, ITEMS_BY_SKU, STORES
from domain import ids
from domain.items import Item
from starters.guard import KEEP_ALIVE_S
from starters.signatures import sign_headers

ORDER_SOURCES = ("web", "marketplace")


class NotAcknowledged(Exception):
    """The service answered a delivery with a 5xx: send it again (after its Retry-After, if it gave one)."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"answered {status}")
        self.status = status
        self.retry_after = retry_after


def _backoff(error: Exception) -> bool | float:
    """stamina's backoff hook: retry what was not acknowledged; honour Retry-After (capped at 5 s, plus jitter so
    a crowd of senders does not come back at the same instant); a transport error takes the jittered backoff."""
    if isinstance(error, NotAcknowledged):
        if error.retry_after is None:
            return True
        return min(error.retry_after, 5.0) + random.uniform(0.0, 0.2)  # noqa: S311 - jitter, not crypto
    return isinstance(error, (httpx.TransportError, ValueError))


@dataclass
class Expectation:
    """How one process must end: a final stage among `stages`, or still open in one of `open_stages`."""

    workflow_id: str
    stages: frozenset[str]
    open_stages: frozenset[str] = frozenset()
    scenario: str = ""
    breached: bool = False  # an SLA of the process must have breached (its event never comes)


@dataclass
class Sender:
    """Signs and posts webhooks; retries what was not acknowledged with the same webhook-id."""

    base_url: str
    secrets: Mapping[str, str | list[str]]
    api_token: str | None = None
    copies: int = 1  # deliver every webhook this many times, concurrently
    duplicate_share: float = 0.0  # deliver this share of webhooks once more (an at-least-once channel)
    seed: int = 0
    max_wait: float = 600.0  # give up on one delivery after this long
    read_within: float = 120.0  # how long `read` polls by default (longer in fault tests: processes stall)
    stats: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        # every connection kept alive, up to the door's per-client limit (http_max_connections_per_client): past
        # httpx's default of 20 kept alive, a sender with more in flight opened and closed a connection per webhook.
        # An idle connection is dropped before the door's keep-alive timeout (starters.guard.KEEP_ALIVE_S): at httpx's default
        # of the same 5 s a post could go out on a connection the door was closing, and come back as a ReadError.
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=httpx.Timeout(30.0, connect=5.0),
                                      limits=httpx.Limits(max_connections=100, max_keepalive_connections=100,
                                                          keepalive_expiry=KEEP_ALIVE_S - 1.0))

    async def close(self) -> None:
        await self.http.aclose()

    async def send(self, source: str, type: str, data: dict, *, webhook_id: str | None = None) -> httpx.Response:
        webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
        body = json.dumps({"type": type, "timestamp": datetime.now(UTC).isoformat(), "data": data}).encode()
        self.stats["events"] += 1
        copies = self.copies + (self.rng.random() < self.duplicate_share)
        self.stats["duplicate_deliveries"] += copies - 1
        answers = await asyncio.gather(*(self._deliver(source, webhook_id, body) for _ in range(copies)))
        return answers[0]

    async def _deliver(self, source: str, webhook_id: str, body: bytes) -> httpx.Response:
        secrets = self.secrets[source]
        secret = secrets if isinstance(secrets, str) else secrets[0]
        try:
            async for attempt in stamina.retry_context(on=_backoff, attempts=None, timeout=self.max_wait,
                                                       wait_initial=0.2, wait_max=5.0, wait_jitter=0.2):
                with attempt:
                    return await self._post(source, webhook_id, body, secret)
        except (NotAcknowledged, httpx.TransportError, ValueError) as last:
            raise TimeoutError(f"webhook {webhook_id} to {source} not acknowledged within {self.max_wait}s"
                               ) from last
        raise AssertionError("unreachable: stamina re-raises the last error")

    async def _post(self, source: str, webhook_id: str, body: bytes, secret: str) -> httpx.Response:
        """One attempt (signed afresh, so a retry never goes stale); raises what `_backoff` retries."""
        headers = {**sign_headers(secret, webhook_id, body), "content-type": "application/json"}
        try:
            response = await self.http.post(f"/webhooks/{source}", content=body, headers=headers)
            self.stats["deliveries"] += 1
            if response.status_code < 500:
                status = response.json().get("status")
                if status in ("duplicate", "late"):
                    self.stats[f"answered_{status}"] += 1
                return response
        except (httpx.TransportError, ValueError) as error:
            self.stats[f"retried_{type(error).__name__}"] += 1
            raise
        self.stats[f"retried_{response.status_code}"] += 1
        retry_after = response.headers.get("retry-after")
        raise NotAcknowledged(response.status_code, float(retry_after) if retry_after else None)

    async def act(self, path: str, body: dict) -> httpx.Response:
        """An ops action through the API (e.g. `POST /counts/{id}/approve`), retried while the stack is down or
        busy (503, 5xx, transport errors); answers the first non-5xx response."""
        headers = {"authorization": f"Bearer {self.api_token}"}
        give_up = asyncio.get_running_loop().time() + self.max_wait
        delay = 0.2
        while True:
            try:
                response = await self.http.post(path, json=body, headers=headers)
                if response.status_code < 500:
                    return response
                wait = float(response.headers.get("retry-after", delay))
            except httpx.TransportError:
                wait = delay
            if asyncio.get_running_loop().time() > give_up:
                raise TimeoutError(f"{path} not answered within {self.max_wait}s")
            await asyncio.sleep(min(wait, 5.0))
            delay = min(delay * 2, 5.0)

    async def read(self, path: str, *, until: Callable[[dict], bool], within: float | None = None) -> dict:
        """Poll the read API until `until(body)` holds (e.g. an order reached a stage)."""
        headers = {"authorization": f"Bearer {self.api_token}"}
        within = self.read_within if within is None else within
        give_up = asyncio.get_running_loop().time() + within
        while True:
            try:
                response = await self.http.get(path, headers=headers)
                if response.status_code == 200 and until(body := response.json()):
                    return body
            except httpx.TransportError:
                pass
            if asyncio.get_running_loop().time() > give_up:
                raise TimeoutError(f"{path} did not reach the expected state within {within}s")
            await asyncio.sleep(0.5)


# --- scenarios ------------------------------------------------------------------------------------------------

@dataclass
class Day:
    """What every scenario shares: the sender, a seeded random source, and the run's own ID prefix."""

    sender: Sender
    rng: random.Random
    run: str
    shuffle: bool = False  # send a process's follow-up events concurrently, in random order
    late_by: timedelta = timedelta(seconds=0)  # how late the "late" scenarios send their event
    expect_breaches: bool = False  # the SLAs are short enough that a missing event must show as a breach

    def id(self, kind: str, n: int) -> str:
        return f"{kind}-{self.run}-{n:04d}"

    def items(self, k: int) -> list[Item]:
        return self.rng.sample(ITEMS, k)

    async def follow_up(self, steps: list[tuple[str, str, dict]]) -> None:
        """Send steps in order, or all at once shuffled (the processes hold early events)."""
        if self.shuffle:
            self.sender.stats["shuffled_processes"] += 1
            steps = steps[:]
            self.rng.shuffle(steps)
            await asyncio.gather(*(self.sender.send(*step) for step in steps))
            return
        for step in steps:
            await self.sender.send(*step)


def _order_lines(day: Day, n_lines: int, max_units: int = 3) -> list[dict]:
    lines = []
    for i, item in enumerate(day.items(n_lines), start=1):
        uom = "EA"
        packs = [u for u in item.units if u != "EA"]
        if packs and day.rng.random() < 0.15:
            uom = packs[0]
        factor = item.units[uom]
        lines.append({"line_id": str(i), "sku": item.sku, "quantity": day.rng.randint(1, max_units if uom == "EA" else 1),
                      "uom": uom, "unit_price": str(item.price * factor)})
    return lines


def _amount(lines: list[dict], shipped_ea: Mapping[str, int]) -> Decimal:
    """What a shipment of `shipped_ea` (line -> EA) is worth at the order's prices (priced per EA exactly)."""
    by_line = {line["line_id"]: line for line in lines}
    total = Decimal(0)
    for line_id, units in shipped_ea.items():
        line = by_line[line_id]
        factor = ITEM_UNITS[line["sku"]][line["uom"]]
        total += Decimal(line["unit_price"]) / factor * units
    return total.quantize(Decimal("0.01"))


ITEM_UNITS = {item.sku: item.units for item in ITEMS}


async def order(day: Day, n: int, variant: str = "ship") -> list[Expectation]:
    """One channel order. Variants: ship, split, short_pick, cancel_before_pick, cancel_after_pick, pickup,
    pos_sale, late_pick (pick_overdue breach, then picked), unsettled (no payment.settled: settlement_overdue),
    mismatch (settled for less)."""
    pickup = variant in {"pickup", "pos_sale"}
    channel = "pos" if variant == "pos_sale" else day.rng.choice(ORDER_SOURCES)
    order_id = day.id("O", n)
    lines = _order_lines(day, day.rng.randint(1, 3) if not pickup else 1)
    store = day.rng.choice(STORES)
    total = sum((Decimal(line["unit_price"]) * line["quantity"] for line in lines), Decimal(0))
    placed = {
        "order_id": order_id, "channel": channel, "currency": "USD", "lines": lines,
        "fulfillment": {"mode": "pickup", "location_id": store} if pickup else
        {"mode": "ship", "location_id": day.rng.choice(DISTRIBUTION_CENTERS)},
        "payment": {"payment_id": f"pay-{order_id}", "authorized_amount": str(total)},
    }
    order_wf, settle_wf = ids.order_workflow_id(channel, order_id), ids.settle_workflow_id(channel, order_id)
    answer = await day.sender.send(channel, "order.placed", placed)
    decision = answer.json() if answer.status_code == 200 and "decision" in answer.json() else (
        await day.sender.read(f"/orders/{channel}/{order_id}", until=lambda s: s.get("decision") is not None)
    )["decision"]
    if decision["decision"] == "rejected":
        return [Expectation(order_wf, frozenset({"rejected"}), scenario=variant)]
    reserved: dict[str, dict[str, int]] = {}  # location -> line -> EA
    for line in decision["lines"]:
        if line["reserved_quantity"]:
            reserved.setdefault(line["location_id"], {})[line["line_id"]] = line["reserved_quantity"]
    key = {"order_id": order_id, "channel": channel}
    pick_source = "pos" if pickup else "wms"

    if variant == "cancel_before_pick":
        await day.sender.send(channel, "order.cancelled", {**key, "reason": "customer changed their mind"})
        return [Expectation(order_wf, frozenset({"cancelled"}), scenario=variant)]
    if variant == "late_pick":
        await asyncio.sleep(day.late_by.total_seconds())
    picked: dict[str, dict[str, int]] = {}
    for location, by_line in reserved.items():
        picked[location] = {ln: (q - 1 if variant == "short_pick" and q > 1 else q) for ln, q in by_line.items()}
        if variant == "short_pick" and all(q == by_line[ln] for ln, q in picked[location].items()):
            first = next(iter(picked[location]))
            picked[location][first] = 0  # a single unit that was not found
    steps = [(pick_source, "fulfillment.picked", {**key, "location_id": loc,
                                                   "lines": [{"line_id": ln, "quantity": q} for ln, q in got.items()]})
             for loc, got in picked.items()]
    if variant == "cancel_after_pick":
        for step in steps:
            await day.sender.send(*step)
        await day.sender.send(channel, "order.cancelled", {**key, "reason": "payment review failed"})
        return [Expectation(order_wf, frozenset({"cancelled"}), scenario=variant)]
    shipped_units = {ln: q for got in picked.values() for ln, q in got.items() if q}
    if not shipped_units:
        await day.follow_up(steps)
        return [Expectation(order_wf, frozenset({"cancelled", "rejected"}), scenario=variant)]
    if pickup:
        steps.append(("pos", "order.collected", {**key, "location_id": store}))
    else:
        for loc, got in picked.items():
            shipping = {ln: q for ln, q in got.items() if q}
            if not shipping:
                continue
            parts = [shipping]
            if variant == "split" and sum(shipping.values()) > 1:
                first_line, first_q = next(iter(shipping.items()))
                part_a = {first_line: 1}
                part_b = {**shipping, first_line: first_q - 1}
                parts = [part_a, {k: v for k, v in part_b.items() if v}]
            for i, part in enumerate(parts):
                shipment_id = f"S-{order_id}-{loc}-{i}"
                steps.append(("wms", "shipment.dispatched", {
                    **key, "shipment_id": shipment_id, "location_id": loc, "carrier": "UPS",
                    "tracking_number": f"1Z{uuid.uuid4().hex[:12].upper()}",
                    "lines": [{"line_id": ln, "quantity": q} for ln, q in part.items()]}))
                steps.append(("carrier", "shipment.delivered", {**key, "shipment_id": shipment_id}))
    amount = _amount(lines, shipped_units)
    settle_stage = frozenset({"settled"})
    if variant == "mismatch":
        amount -= Decimal("1.00")
        settle_stage = frozenset({"mismatch"})
    if variant != "unsettled":
        steps.append(("payments", "payment.settled", {**key, "payment_id": f"pay-{order_id}",
                                                       "amount": str(amount), "currency": "USD"}))
    await day.follow_up(steps)
    expected = [Expectation(order_wf, frozenset({"fulfilled"}), scenario=variant)]
    if variant == "unsettled":
        expected.append(Expectation(settle_wf, frozenset(), open_stages=frozenset({"awaiting_settlement"}),
                                    scenario=variant, breached=day.expect_breaches))
    else:
        expected.append(Expectation(settle_wf, settle_stage, scenario=variant))
    return expected


async def transfer(day: Day, n: int, variant: str = "plain") -> list[Expectation]:
    """A DC-to-store transfer. Variants: plain, short (one unit never arrives), split (two receipts), trucks
    (two shipment notices, the first truck's receipt counting both before the second notice, which says
    `complete`), cancel (cancelled before shipment is not an event in the contract: ops cancel; here: never
    shipped)."""
    transfer_id = day.id("T", n)
    source = day.rng.choice(DISTRIBUTION_CENTERS)
    dest = day.rng.choice(STORES)
    lines = [{"sku": item.sku, "quantity": day.rng.randint(2, 6), "uom": "EA"} for item in day.items(2)]
    await day.sender.send("wms", "transfer.requested", {"transfer_id": transfer_id, "from_location_id": source,
                                                        "to_location_id": dest, "lines": lines})
    shipped = [{"sku": line["sku"], "quantity": line["quantity"]} for line in lines]
    received = [dict(line) for line in shipped]
    if variant == "short":
        received[0]["quantity"] -= 1
    steps = [("wms", "transfer.shipped", {"transfer_id": transfer_id, "lines": shipped})]
    if variant == "trucks":
        first = [{**line, "quantity": 1} for line in shipped]
        rest = [{**line, "quantity": line["quantity"] - 1} for line in shipped]
        steps = [("wms", "transfer.shipped", {"transfer_id": transfer_id, "lines": first}),
                 ("pos", "transfer.received", {"transfer_id": transfer_id, "lines": received}),
                 ("wms", "transfer.shipped", {"transfer_id": transfer_id, "lines": rest, "complete": True})]
    elif variant == "split":
        first = [{**line, "quantity": 1} for line in received]
        rest = [{**line, "quantity": line["quantity"] - 1} for line in received]
        steps += [("pos", "transfer.received", {"transfer_id": transfer_id, "lines": first}),
                  ("pos", "transfer.received", {"transfer_id": transfer_id, "lines": rest})]
    elif variant != "trucks":
        steps.append(("pos", "transfer.received", {"transfer_id": transfer_id, "lines": received}))
    await day.follow_up(steps)
    # a short receipt is final only `receipt_grace` (24 h by default) after the last receipt: until then it waits
    open_stages = frozenset({"receiving"}) if variant == "short" else frozenset()
    return [Expectation(ids.transfer_workflow_id(transfer_id), frozenset({"received"}), open_stages=open_stages,
                        scenario=f"transfer_{variant}")]


async def order_and_return(day: Day, n: int) -> list[Expectation]:
    """A shipped order, then a return of part of it to a store, inspected with mixed dispositions, refunded."""
    expected = await order(day, n, "ship")
    order_wf = expected[0].workflow_id
    _, channel, order_id = order_wf.split(":", 2)
    state = await day.sender.read(f"/orders/{channel}/{order_id}",
                                  until=lambda s: s.get("stage") in {"fulfilled", "cancelled", "rejected"})
    shipped = [line for line in state.get("lines", []) if line.get("shipped")]
    if not shipped:
        return expected
    return_id = day.id("R", n)
    store = day.rng.choice(STORES)
    back = [{"line_id": line["line_id"], "sku": line["sku"], "quantity": line["shipped"],
             "reason": day.rng.choice(["too small", "damaged in transit", "changed mind"])} for line in shipped]
    dispositions = ["restock", "damaged", "vendor_return"]
    inspected = [{"sku": line["sku"], "quantity": line["quantity"], "disposition": dispositions[i % 3]}
                 for i, line in enumerate(back)]
    refund = sum((Decimal(str(line["unit_price"])) * line["shipped"] for line in shipped), Decimal(0))
    await day.sender.send(channel, "return.authorized", {"return_id": return_id, "order_id": order_id,
                                                         "channel": channel, "return_location_id": store,
                                                         "lines": back})
    await day.follow_up([
        ("pos", "return.received", {"return_id": return_id, "location_id": store,
                                    "lines": [{"sku": line["sku"], "quantity": line["quantity"]} for line in back]}),
        ("pos", "return.inspected", {"return_id": return_id, "lines": inspected}),
        ("payments", "refund.settled", {"refund_id": f"rf-{return_id}", "return_id": return_id,
                                        "amount": str(refund.quantize(Decimal('0.01'))), "currency": "USD"}),
    ])
    return [*expected, Expectation(ids.return_workflow_id(return_id), frozenset({"refunded"}), scenario="return")]


# --- inventory control: a purchase order, cycle counts, a return to vendor -----------------------------------------

async def purchase_order(day: Day, n: int) -> list[Expectation]:
    """A PO from the ERP to a DC, one line in cases at a little above standard cost (a price variance), received in
    two parts (a first pallet, then the rest)."""
    po_id = day.id("PO", n)
    dc = day.rng.choice(DISTRIBUTION_CENTERS)
    items = day.items(2)
    lines = []
    for i, item in enumerate(items, start=1):
        packs = [u for u in item.units if u != "EA"]
        uom = packs[0] if packs and i == 1 else "EA"
        factor = item.units[uom]
        cost = (item.unit_cost * factor * (Decimal("1.02") if i == 1 else 1)).quantize(Decimal("0.01"))
        lines.append({"line_id": str(i), "sku": item.sku, "quantity": day.rng.randint(2, 4), "uom": uom,
                      "unit_cost": str(cost)})
    expected_at = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    await day.sender.send("erp", "purchase_order.created", {
        "po_id": po_id, "supplier_id": f"SUP-{day.rng.randint(1, 9)}", "location_id": dc, "currency": "USD",
        "expected_at": expected_at, "lines": lines})
    units = {line["line_id"]: (line["sku"], line["quantity"] * ITEM_UNITS[line["sku"]][line["uom"]]) for line in lines}
    first = {lid: (sku, q // 2) for lid, (sku, q) in units.items() if q // 2}
    rest = {lid: (sku, q - first.get(lid, (sku, 0))[1]) for lid, (sku, q) in units.items()}
    receipts = [(f"GR-{po_id}-1", first), (f"GR-{po_id}-2", rest)]
    for receipt_id, part in receipts:
        await day.sender.send("wms", "purchase_order.received", {
            "po_id": po_id, "receipt_id": receipt_id, "location_id": dc,
            "lines": [{"line_id": lid, "sku": sku, "quantity": q} for lid, (sku, q) in part.items() if q]})
    return [Expectation(ids.po_workflow_id(po_id), frozenset({"received"}), scenario="purchase_order")]


def _counted_buckets(body: dict, location_id: str) -> int:
    by_location = {loc["location_id"]: loc["buckets"] for loc in body["locations"]}
    held = by_location.get(location_id, {})
    return sum(held.get(b, 0) for b in ("available", "reserved", "picked"))


async def cycle_count(day: Day, n: int, variant: str = "within") -> list[Expectation]:
    """A store counts three SKUs. `within`: one is a unit short, adjusted at once. `approval`: a costly SKU is three
    units short, beyond tolerance: ops approve it through the API (`POST /counts/{id}/approve`). (Should a sale
    between the read and the count push a `within` count beyond tolerance, ops approve that one too.)"""
    count_id = day.id("CC", n)
    counted_at = datetime.now(UTC)
    if variant == "approval":
        first = day.rng.choice(sorted(ITEMS, key=lambda item: item.unit_cost)[-6:])  # costly: 3 units > 25.00
    else:
        first = day.rng.choice([item for item in ITEMS if item.unit_cost <= 12])  # one unit stays within 25.00
    stock = await day.sender.read(f"/inventory/{first.sku}", until=lambda b: "locations" in b)
    stocked = [loc for loc in STORES if _counted_buckets(stock, loc) >= 3] or STORES
    store = day.rng.choice(stocked)
    lines = [{"sku": first.sku, "quantity": max(0, _counted_buckets(stock, store) - (3 if variant == "approval"
                                                                                      else 1))}]
    for item in day.items(2):
        if item.sku == first.sku:
            continue
        body = await day.sender.read(f"/inventory/{item.sku}", until=lambda b: "locations" in b)
        lines.append({"sku": item.sku, "quantity": _counted_buckets(body, store)})
    await day.sender.send("pos", "count.submitted", {"count_id": count_id, "location_id": store,
                                                     "counted_at": counted_at.isoformat(), "lines": lines})
    path = f"/counts/{count_id}"
    state = await day.sender.read(path, until=lambda s: s.get("stage") in {"adjusted", "awaiting_approval",
                                                                           "rejected", "refused"})
    if state["stage"] == "awaiting_approval":
        note = ("stockroom check: breakage confirmed" if variant == "approval"
                else "ops reviewed the count: a sale crossed it")
        answer = await day.sender.act(f"{path}/approve", {"note": note})
        day.sender.stats["counts_approved"] += answer.status_code == 200
    return [Expectation(ids.count_workflow_id(count_id), frozenset({"adjusted"}), scenario=f"count_{variant}")]


async def vendor_return(day: Day, n: int) -> list[Expectation]:
    """A shipped order returned damaged to a store: inspected as `vendor_return`, refunded; then the store sends the
    damaged lot back to the supplier (vendor_return.shipped) and the ERP books the vendor's credit at cost."""
    expected = await order(day, n, "ship")
    _, channel, order_id = expected[0].workflow_id.split(":", 2)
    state = await day.sender.read(f"/orders/{channel}/{order_id}",
                                  until=lambda s: s.get("stage") in {"fulfilled", "cancelled", "rejected"})
    shipped = [line for line in state.get("lines", []) if line.get("shipped")]
    if not shipped:
        return expected
    return_id, rtv_id = day.id("R", n), day.id("RTV", n)
    store = day.rng.choice(STORES)
    back = [{"line_id": line["line_id"], "sku": line["sku"], "quantity": line["shipped"], "reason": "damaged"}
            for line in shipped]
    refund = sum((Decimal(str(line["unit_price"])) * line["shipped"] for line in shipped), Decimal(0))
    await day.sender.send(channel, "return.authorized", {"return_id": return_id, "order_id": order_id,
                                                         "channel": channel, "return_location_id": store,
                                                         "lines": back})
    lot = [{"sku": line["sku"], "quantity": line["quantity"]} for line in back]
    for step in [("pos", "return.received", {"return_id": return_id, "location_id": store, "lines": lot}),
                 ("pos", "return.inspected", {"return_id": return_id, "lines": [
                     {**unit, "disposition": "vendor_return"} for unit in lot]}),
                 ("payments", "refund.settled", {"refund_id": f"rf-{return_id}", "return_id": return_id,
                                                 "amount": str(refund.quantize(Decimal("0.01"))), "currency": "USD"})]:
        await day.sender.send(*step)
    await day.sender.read(f"/returns/{return_id}", until=lambda s: s.get("stage") in {
        "awaiting_refund_settlement", "refunded"})
    await day.sender.send("wms", "vendor_return.shipped", {"rtv_id": rtv_id, "location_id": store,
                                                           "supplier_id": "SUP-RETURNS", "lines": lot})
    credit = sum((ITEMS_BY_SKU[unit["sku"]].unit_cost * unit["quantity"] for unit in lot), Decimal(0))
    await day.sender.send("erp", "vendor_credit.received", {"rtv_id": rtv_id, "amount": str(credit),
                                                           "currency": "USD"})
    return [*expected, Expectation(ids.return_workflow_id(return_id), frozenset({"refunded"}), scenario="return"),
            Expectation(ids.rtv_workflow_id(rtv_id), frozenset({"credited"}), scenario="vendor_return")]


# --- a day ----------------------------------------------------------------------------------------------------

@dataclass
class DayPlan:
    """The mix of a business day. The shares are of `orders`."""

    orders: int = 200
    pickup: float = 0.2
    pos_sale: float = 0.05
    cancel_before_pick: float = 0.04
    cancel_after_pick: float = 0.03
    short_pick: float = 0.04
    split: float = 0.08
    late_pick: int = 2
    unsettled: int = 2
    mismatch: int = 1
    transfers: int = 6
    transfer_variances: int = 1
    returns: int = 8
    purchase_orders: int = 1  # received in two parts
    counts: int = 2  # one within tolerance, one beyond (ops approve it through the API)
    vendor_returns: int = 1  # a damaged customer return sent back to the supplier and credited

    @classmethod
    def scaled(cls, orders: int) -> "DayPlan":
        """The default day's mix for `orders` orders (at least one of every story)."""
        k = orders / 200
        return cls(orders=orders, late_pick=max(1, round(2 * k)), unsettled=max(1, round(2 * k)),
                   mismatch=1, transfers=max(2, round(6 * k)), transfer_variances=1, returns=max(1, round(8 * k)))

    def scenarios(self, rng: random.Random) -> list[tuple[str, str]]:
        """(process, variant) for every story of the day, in a shuffled order."""
        stories: list[tuple[str, str]] = []
        shares = {"pickup": self.pickup, "pos_sale": self.pos_sale, "cancel_before_pick": self.cancel_before_pick,
                  "cancel_after_pick": self.cancel_after_pick, "short_pick": self.short_pick, "split": self.split}
        fixed = {"late_pick": self.late_pick, "unsettled": self.unsettled, "mismatch": self.mismatch}
        counted = {variant: round(self.orders * share) for variant, share in shares.items()}
        counted.update(fixed)
        plain = max(0, self.orders - sum(counted.values()) - self.returns)
        for variant, count in {**counted, "ship": plain}.items():
            stories += [("order", variant)] * count
        stories += [("return", "return")] * self.returns
        stories += [("transfer", "short")] * self.transfer_variances
        stories += [("transfer", rng.choice(["plain", "split"]))] * max(0, self.transfers - self.transfer_variances)
        stories += [("purchase_order", "two_parts")] * self.purchase_orders
        stories += [("count", "approval" if i == 0 else "within") for i in range(self.counts)]
        stories += [("vendor_return", "damaged")] * self.vendor_returns
        rng.shuffle(stories)
        return stories


async def run_day(sender: Sender, plan: DayPlan, *, seed: int = 7, concurrency: int = 8, shuffle_share: float = 0.1,
                  late_by: timedelta = timedelta(seconds=0), expect_breaches: bool = False,
                  progress: Callable[[str], Awaitable[None] | None] | None = None) -> list[Expectation]:
    """Drive every story of `plan` through the webhooks, `concurrency` at a time; returns what to expect."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:6]
    stories = plan.scenarios(rng)
    semaphore = asyncio.Semaphore(concurrency)
    expectations: list[Expectation] = []

    async def one(n: int, process: str, variant: str) -> None:
        day = Day(sender, random.Random(rng.random()), run, shuffle=rng.random() < shuffle_share, late_by=late_by,
                  expect_breaches=expect_breaches)
        async with semaphore:
            if process == "order":
                expectations.extend(await order(day, n, variant))
            elif process == "transfer":
                expectations.extend(await transfer(day, n, variant))
            elif process == "purchase_order":
                expectations.extend(await purchase_order(day, n))
            elif process == "count":
                expectations.extend(await cycle_count(day, n, variant))
            elif process == "vendor_return":
                expectations.extend(await vendor_return(day, n))
            else:
                expectations.extend(await order_and_return(day, n))
        if progress:
            done = progress(f"{process}:{variant}")
            if asyncio.iscoroutine(done):
                await done

    await asyncio.gather(*(one(n, process, variant) for n, (process, variant) in enumerate(stories)))
    return expectations


@dataclass
class Verdict:
    expectation: Expectation
    ok: bool
    status: str
    stage: str | None


async def verify(client: Client, expectations: list[Expectation], *, within: float = 120.0) -> list[Verdict]:
    """Wait (up to `within` seconds) until every expected process has ended as expected, and report each."""
    give_up = asyncio.get_running_loop().time() + within
    pending = list(expectations)
    verdicts: dict[str, Verdict] = {}
    while True:
        still = []
        for expectation in pending:
            verdict = await _judge(client, expectation)
            verdicts[expectation.workflow_id] = verdict
            if not verdict.ok:
                still.append(expectation)
        pending = still
        if not pending or asyncio.get_running_loop().time() > give_up:
            return [verdicts[e.workflow_id] for e in expectations]
        await asyncio.sleep(1.0)


async def _judge(client: Client, expectation: Expectation) -> Verdict:
    handle = client.get_workflow_handle(expectation.workflow_id)
    try:
        description = await handle.describe()
    except RPCError as error:
        return Verdict(expectation, False, f"unknown ({error.message})", None)
    status = description.status
    if status == WorkflowExecutionStatus.COMPLETED:
        result = await handle.result()
        stage = str(result.get("stage")) if isinstance(result, dict) else None
        return Verdict(expectation, stage in expectation.stages, "completed", stage)
    if status == WorkflowExecutionStatus.RUNNING:
        state = await handle.query("state")
        stage = str(state.get("stage")) if isinstance(state, dict) else None
        breached = description.typed_search_attributes.get(SLA_BREACHED) or not expectation.breached
        return Verdict(expectation, stage in expectation.open_stages and breached, "running", stage)
    return Verdict(expectation, False, status.name.lower() if status else "unknown", None)

