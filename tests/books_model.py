"""What tests/test_books_stateful.py needs besides the state machine: the door it posts signed webhooks to, the
physical truth the channels' events describe, and the invariants checked against PostgreSQL and Temporal.

The truth is what the outside world did (the WMS picked and dispatched, the customer sent parcels back, the
transfer's trucks left and arrived); the books must follow it whatever order, how often and how late the
events describing it reach the door. Every figure is scoped to one sequence's workflow IDs (fresh business
keys), so sequences sharing one server and one database never see each other.
"""
import json
import os
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from activities.checker import check
from bench.lifecycle import quiet
from domain import ids
from domain.inventory import Bucket, MovementKind
from domain.transfer import SHRINK_IN_TRANSIT
from starters.signatures import sign_headers
from tests.support import checker_findings

VERBOSE = os.environ.get("RETAILFLOW_BOOKS_VERBOSE") == "1"  # print every delivery and its answer
SECRET = "whsec_" + "Ym9va3Mtc3RhdGVmdWwtc2VjcmV0LTAxMjM0NTY3"
SOURCES = ("web", "marketplace", "pos", "wms", "carrier", "payments")
HELD_BUCKETS = (Bucket.RESERVED, Bucket.PICKED, Bucket.IN_TRANSIT, Bucket.PENDING_INSPECTION)
# Movements that may change the network's units: sales (out of picked), receipts, write-offs.
WRITE_OFFS = (MovementKind.WRITE_OFF, MovementKind.VENDOR_RETURN)


# --- the door ---------------------------------------------------------------------------------------------
@dataclass
class Delivery:
    """One event as a sender posts it: redelivered with the same webhook-id and body."""

    source: str
    type: str
    data: dict[str, Any]
    workflow_id: str
    webhook_id: str = field(default_factory=lambda: f"msg_{uuid.uuid4().hex}")
    raw: bytes = b""
    closed_before: bool | None = None  # its process had ended when it was first delivered
    answers: list[tuple[int, dict]] = field(default_factory=list)
    timestamp: datetime | None = None  # when it happened (default: now)

    def __post_init__(self) -> None:
        stamp = (self.timestamp or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
        self.raw = json.dumps({"type": self.type, "timestamp": stamp, "data": self.data}).encode()

    def label(self) -> str:
        return f"{self.type} {self.webhook_id} -> {self.workflow_id}"


class Door:
    """The FastAPI app through httpx's ASGI transport, with Temporal at hand to tell closed processes and to
    wait until the processes have done all they do about an event."""

    def __init__(self, http: httpx.AsyncClient, client: Client) -> None:
        self.http = http
        self.client = client

    async def status(self, workflow_id: str) -> WorkflowExecutionStatus | None:
        try:
            return (await self.client.get_workflow_handle(workflow_id).describe()).status
        except RPCError:
            return None  # not started

    async def closed(self, workflow_id: str) -> bool:
        return (await self.status(workflow_id)) not in (None, WorkflowExecutionStatus.RUNNING)

    async def post(self, delivery: Delivery, *, quiet_ids: list[str]) -> tuple[int, dict]:
        if delivery.closed_before is None:
            delivery.closed_before = await self.closed(delivery.workflow_id)
        headers = {"content-type": "application/json", **sign_headers(SECRET, delivery.webhook_id, delivery.raw)}
        response = await self.http.post(f"/webhooks/{delivery.source}", content=delivery.raw, headers=headers)
        answer = (response.status_code, response.json())
        delivery.answers.append(answer)
        if VERBOSE:
            print(f"  {delivery.label()}{' (after close)' if delivery.closed_before else ''}: {answer}")
        await self.quiet(quiet_ids)
        return answer

    async def quiet(self, workflow_ids: list[str]) -> None:
        await quiet(self.client, workflow_ids, interval=0.05)

    async def state(self, workflow_id: str) -> dict:
        """A process's `state` query (also on a closed run: the worker answers it). By name: the ID may be any
        process's, and every process answers `state`."""
        try:
            return await self.client.get_workflow_handle(workflow_id).query("state", result_type=dict)
        except Exception:  # noqa: BLE001 - not started, or no state to show: nothing to learn from it
            return {}


# --- the truth ----------------------------------------------------------------------------------------------
@dataclass
class LineTruth:
    line_id: str
    sku: str
    ordered: int  # EA
    reserved: int = 0  # EA, from the reservation decision
    location_id: str | None = None
    picked: int = 0  # what the WMS reported picked
    dispatched: int = 0  # what the WMS reported dispatched


@dataclass
class OrderTruth:
    order_id: str
    channel: str
    payment_id: str
    lines: list[LineTruth]
    decision: str = ""
    cancelled: bool = False
    picked_at: set[str] = field(default_factory=set)
    shipments: list[str] = field(default_factory=list)
    delivered: set[str] = field(default_factory=set)
    settled_parts: int = 0  # captures settled so far, in capture order
    returns: list[str] = field(default_factory=list)

    @property
    def workflow_id(self) -> str:
        return ids.order_workflow_id(self.channel, self.order_id)

    @property
    def settle_workflow_id(self) -> str:
        return ids.settle_workflow_id(self.channel, self.order_id)

    def to_pick(self) -> list[str]:
        """Locations the WMS still has a pick task at."""
        return sorted({ln.location_id for ln in self.lines if ln.location_id and ln.reserved}
                      - self.picked_at)

    def to_dispatch(self) -> list[str]:
        """Locations with picked units still in the building."""
        return sorted({ln.location_id for ln in self.lines if ln.location_id and ln.picked > ln.dispatched})


@dataclass
class TransferTruth:
    transfer_id: str
    from_location_id: str
    to_location_id: str
    requested: dict[str, int]
    shipped: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    received: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    trucks: int = 0

    @property
    def workflow_id(self) -> str:
        return ids.transfer_workflow_id(self.transfer_id)

    def to_ship(self) -> dict[str, int]:
        return {s: q - self.shipped[s] for s, q in self.requested.items() if q > self.shipped[s]}

    def in_transit(self) -> dict[str, int]:
        return {s: q - self.received[s] for s, q in self.shipped.items() if q > self.received[s]}


@dataclass
class ReturnTruth:
    return_id: str
    order: OrderTruth
    location_id: str
    asked: dict[str, tuple[str, int]]  # line_id -> (sku, EA) as the channel authorized it
    sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # sku -> EA received at the store
    inspected: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    damaged: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    refund_settled: bool = False

    @property
    def workflow_id(self) -> str:
        return ids.return_workflow_id(self.return_id)

    def to_send(self) -> dict[str, int]:
        asked: dict[str, int] = defaultdict(int)
        for sku, q in self.asked.values():
            asked[sku] += q
        return {s: q - self.sent[s] for s, q in asked.items() if q > self.sent[s]}

    def to_inspect(self) -> dict[str, int]:
        return {s: q - self.inspected[s] for s, q in self.sent.items() if q > self.inspected[s]}


@dataclass
class Truth:
    """One sequence: its orders, transfer and returns, and every delivery made or still held by a sender."""

    tag: str
    orders: list[OrderTruth] = field(default_factory=list)
    transfer: TransferTruth | None = None
    returns: list[ReturnTruth] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)  # delivered at least once
    held: list[Delivery] = field(default_factory=list)  # happened, not yet delivered (a slow or reordering sender)

    def workflow_ids(self) -> list[str]:
        out = [w for o in self.orders for w in (o.workflow_id, o.settle_workflow_id)]
        out += [r.workflow_id for r in self.returns]
        if self.transfer is not None:
            out.append(self.transfer.workflow_id)
        return out

    def late_workflow_ids(self) -> list[str]:
        """The LateEvent processes an event may have (they move stock too): one answered `late` at the door, or one
        a process still held when it ended and handed to the late path itself. IDs that never started match
        nothing."""
        return sorted({f"late:webhook:{d.source}:{d.webhook_id}" for d in self.deliveries})

    def stock_workflow_ids(self) -> list[str]:
        return self.workflow_ids() + self.late_workflow_ids()

    def sold(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for o in self.orders:
            for ln in o.lines:
                out[ln.sku] += ln.dispatched
        return out

    def returned(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for r in self.returns:
            for sku, q in r.sent.items():
                out[sku] += q
        return out

    def damaged(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for r in self.returns:
            for sku, q in r.damaged.items():
                out[sku] += q
        return out


# --- the invariants -----------------------------------------------------------------------------------------
class BooksViolation(AssertionError):
    """An invariant of the books failed; one subclass per invariant, so hypothesis tells them apart."""


class JournalDriftsFromLedger(BooksViolation):
    pass


class NetworkUnitsChanged(BooksViolation):
    pass


class RefundedBeyondCaptured(BooksViolation):
    pass


class HeldUnitsOrphaned(BooksViolation):
    pass


class SettlementNotPosted(BooksViolation):
    pass


class LateEventDropped(BooksViolation):
    pass


class RedeliveryAnsweredDifferently(BooksViolation):
    pass


async def journal_equals_ledger(database_url: str) -> list[str]:
    return checker_findings(await check(database_url))


async def network_units(engine: AsyncEngine, truth: Truth) -> list[str]:
    """Per SKU, this sequence's movements over every bucket and location = -sold + customer-return receipts -
    write-offs, where sold and returned are what the WMS and the stores reported (the truth) and the write-offs
    are the ledger's, never more than the units found damaged at inspection or lost in transit."""
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT sku, kind, reason_code, sum(delta) AS units FROM movements WHERE workflow_id = ANY(:wids) "
            "GROUP BY sku, kind, reason_code"), {"wids": truth.stock_workflow_ids()})).mappings().all()
    total: dict[str, int] = defaultdict(int)
    written_off: dict[str, int] = defaultdict(int)
    for row in rows:
        total[row["sku"]] += int(row["units"])
        if row["kind"] in WRITE_OFFS or (row["kind"] == MovementKind.ADJUST and row["reason_code"] == SHRINK_IN_TRANSIT):
            written_off[row["sku"]] -= int(row["units"])
    sold, returned, damaged = truth.sold(), truth.returned(), truth.damaged()
    lost = truth.transfer.in_transit() if truth.transfer else {}
    out = []
    for sku in sorted(set(total) | set(sold) | set(returned)):
        expected = -sold.get(sku, 0) + returned.get(sku, 0) - written_off.get(sku, 0)
        if total.get(sku, 0) != expected:
            out.append(f"{sku}: the ledger's network units changed by {total.get(sku, 0)}, the events say "
                       f"{expected} (sold {sold.get(sku, 0)}, customer returns received {returned.get(sku, 0)}, "
                       f"written off {written_off.get(sku, 0)})")
        if written_off.get(sku, 0) > damaged.get(sku, 0) + lost.get(sku, 0):
            out.append(f"{sku}: {written_off[sku]} written off, but only {damaged.get(sku, 0)} were found damaged "
                       f"and {lost.get(sku, 0)} are missing in transit")
    return out


async def refunds_within_captures(engine: AsyncEngine, truth: Truth) -> list[str]:
    """Per order: refunded (every refund of its returns, or on its payment) <= captured on its payment."""
    out = []
    async with engine.connect() as conn:
        for o in truth.orders:
            captured = Decimal(await conn.scalar(text(
                "SELECT coalesce(sum(amount), 0) FROM captures WHERE payment_id = :p"), {"p": o.payment_id}))
            refunded = Decimal(await conn.scalar(text(
                "SELECT coalesce(sum(amount), 0) FROM refunds WHERE payment_id = :p OR return_id = ANY(:r)"),
                {"p": o.payment_id, "r": o.returns}))
            if refunded > captured:
                out.append(f"order {o.channel}/{o.order_id}: refunded {refunded} > captured {captured} "
                           f"(returns {', '.join(o.returns)})")
    return out


async def open_cases(engine: AsyncEngine, workflow_ids: list[str]) -> dict[str, list[str]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT process_workflow_id, exception_id FROM exception_cases "
            "WHERE process_workflow_id = ANY(:w) AND status <> 'resolved'"), {"w": workflow_ids})).all()
    out: dict[str, list[str]] = defaultdict(list)
    for wid, case in rows:
        out[wid].append(case)
    return out


async def held_units_have_owner(engine: AsyncEngine, door: Door, truth: Truth) -> list[str]:
    """No unit a process put in a held bucket (reserved, picked, in_transit, pending_inspection) is still there
    once the process has ended, unless an exception case about that process is open."""
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT workflow_id, sku, location_id, bucket, sum(delta) AS units FROM movements "
            "WHERE workflow_id = ANY(:w) AND bucket = ANY(:b) GROUP BY 1, 2, 3, 4 HAVING sum(delta) <> 0 "
            "ORDER BY 1, 2, 3, 4"), {"w": truth.stock_workflow_ids(), "b": [str(b) for b in HELD_BUCKETS]})).all()
    cases = await open_cases(engine, truth.stock_workflow_ids())
    out = []
    for wid, sku, location, bucket, units in rows:
        if cases.get(wid) or not await door.closed(wid):
            continue
        out.append(f"{units} x {sku} left in {bucket} at {location} by {wid}, which has ended "
                   f"({getattr(await door.status(wid), 'name', None)}) with no open exception case")
    return out


async def settlements_posted(engine: AsyncEngine, door: Door, truth: Truth) -> list[str]:
    """Once an order can ship no more (its order process or its ship-to-settle process has ended), every
    settlement delivered to its running settlement is in the journal (cash clearing): nothing is held any more,
    and two settlements are two settlements unless they are the same delivery."""
    out = []
    for o in truth.orders:
        if not (await door.closed(o.workflow_id) or await door.closed(o.settle_workflow_id)):
            continue
        received = sum((Decimal(d.data["amount"]) for d in truth.deliveries
                        if d.type == "payment.settled" and d.workflow_id == o.settle_workflow_id
                        and not d.closed_before), Decimal(0))
        async with engine.connect() as conn:
            posted = Decimal(await conn.scalar(text(
                "SELECT coalesce(sum(l.debit - l.credit), 0) FROM journal_lines l "
                "JOIN journal_entries e ON e.key = l.entry_key WHERE e.workflow_id = :w AND l.account = 'cash_clearing'"),
                {"w": o.settle_workflow_id}))
        if posted != received:
            out.append(f"order {o.channel}/{o.order_id}: {received} settled while its settlement ran, "
                       f"{posted} posted to cash clearing")
    return out


async def late_events_have_case(engine: AsyncEngine, truth: Truth) -> list[str]:
    """Every event first delivered after its process ended is applied or has a case (CONTRACT.md, Webhooks:
    `202 {"status": "late", "case_id": ...}`): never answered `duplicate` and dropped. A case named in the
    answer must be in the register ops read."""
    out = []
    async with engine.connect() as conn:
        for d in truth.deliveries:
            if not d.closed_before:
                continue
            code, answer = d.answers[0]
            case_id = answer.get("case_id")
            if answer.get("status") == "late" and case_id is None and d.type == "shipment.delivered":
                continue  # a delivery confirmed after settlement is recorded and changes nothing
            if answer.get("status") == "late" and case_id:
                found = await conn.scalar(text("SELECT count(*) FROM exception_cases WHERE exception_id = :c"),
                                          {"c": case_id})
                if not found:
                    out.append(f"{d.label()}: answered late with case {case_id}, which is not in the register")
            elif answer.get("status") != "applied" and answer.get("applied") is not True:
                out.append(f"{d.label()}: its process had ended; answered {code} {answer}")
    return out


async def verify(database_url: str, engine: AsyncEngine, door: Door, truth: Truth) -> None:
    """All the invariants after a sequence; raises the first failing one's type, naming every finding."""
    await door.quiet(truth.workflow_ids())
    cases = [c["exception_id"] for w in truth.workflow_ids() for c in (await door.state(w)).get("exception_cases", [])]
    late = [a.get("case_id") for d in truth.deliveries for _, a in d.answers[:1] if a.get("status") == "late"]
    await door.quiet(truth.late_workflow_ids())  # the LateEvent processes
    await door.quiet([*cases, *(c for c in late if c)])
    findings: list[tuple[type[BooksViolation], list[str]]] = [
        (JournalDriftsFromLedger, await journal_equals_ledger(database_url)),
        (NetworkUnitsChanged, await network_units(engine, truth)),
        (RefundedBeyondCaptured, await refunds_within_captures(engine, truth)),
        (HeldUnitsOrphaned, await held_units_have_owner(engine, door, truth)),
        (SettlementNotPosted, await settlements_posted(engine, door, truth)),
        (LateEventDropped, await late_events_have_case(engine, truth)),
    ]
    failing = [(kind, found) for kind, found in findings if found]
    if failing:
        text_ = "\n".join(f"{kind.__name__}:\n  " + "\n  ".join(found) for kind, found in failing)
        raise failing[0][0](f"sequence {truth.tag}:\n{text_}")
