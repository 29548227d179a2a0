"""Events that arrive after their process has ended, and the closed-process record that answers for it.

Nothing after close is dropped (docs/books.md): every late event is stored with its payload. Goods that
physically moved enter the ledger whatever the process's state (a parcel received after the return expired, a
truck received after the transfer closed, a parcel the WMS dispatched after the order was cancelled), and a
person is told through an exception case. Money and every other late event open a case. A carrier's delivery
confirmation after the settlement closed is routine: it is stored and changes nothing.

Pure: the door, the LateEvent workflow and the read API use these rules and models; I/O is elsewhere.
"""
from collections import defaultdict
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from domain.events import (
    Event,
    EventType,
    OrderCollected,
    PurchaseOrderReceived,
    ReturnReceived,
    ShipmentDispatched,
    TransferReceived,
)
from domain.ids import exception_workflow_id
from domain.inventory import Bucket, MovementKind, MovementLine
from domain.sla import CaseKind, SlaPolicy

LATE_RECEIPT = "late_receipt"  # reason code of a transfer receipt taken in after the transfer had closed


class LateAction(StrEnum):
    RECORD = "record"  # stored; nothing to change
    CASE = "case"  # stored; an exception case tells ops
    APPLY = "apply"  # stored; the goods are taken into the ledger, and a case tells ops


class LateHandling(BaseModel):
    action: LateAction
    case_kind: CaseKind | None
    why: str


_GOODS = {
    EventType.RETURN_RECEIVED: (CaseKind.LATE_EVENT, "goods received after the return had ended: taken into "
                                "pending_inspection for ops to disposition"),
    EventType.TRANSFER_RECEIVED: (CaseKind.LATE_EVENT, "goods received after the transfer had closed: taken into "
                                  "available at the destination (reverses the shrink written off)"),
    EventType.PURCHASE_ORDER_RECEIVED: (CaseKind.LATE_EVENT, "goods received after the purchase order had closed: "
                                        "taken into available at standard cost; match them to an invoice or "
                                        "return them to the supplier"),
    EventType.SHIPMENT_DISPATCHED: (CaseKind.SHIPPED_AFTER_CANCEL, "the WMS dispatched a parcel after the order "
                                    "had ended: the units left the ledger; bill the customer or recover the parcel"),
    EventType.ORDER_COLLECTED: (CaseKind.SHIPPED_AFTER_CANCEL, "the customer collected after the order had ended: "
                                "the units left the ledger; bill the customer"),
}


def late_handling(event_type: EventType) -> LateHandling:
    """What an event of this type means once its process has ended."""
    if event_type is EventType.SHIPMENT_DELIVERED:
        return LateHandling(action=LateAction.RECORD, case_kind=None,
                            why="a delivery confirmed after the settlement closed changes nothing")
    if event_type in _GOODS:
        kind, why = _GOODS[event_type]
        return LateHandling(action=LateAction.APPLY, case_kind=kind, why=why)
    return LateHandling(action=LateAction.CASE, case_kind=CaseKind.LATE_EVENT,
                        why=f"{event_type} arrived after the process had ended: ops decide what it means")


def late_case_id(late_workflow_id: str, event_type: EventType) -> str | None:
    """The case a late event opens, known before its LateEvent process runs (so the door can answer it)."""
    kind = late_handling(event_type).case_kind
    return exception_workflow_id(late_workflow_id, str(kind)) if kind else None


class ClosedProcess(BaseModel):
    """What a process leaves in PostgreSQL when it ends: the registry row that keeps its business key from ever
    opening a second process, and the summary the read API answers from once Temporal's retention has passed."""

    workflow_id: str
    run_id: str
    workflow_type: str
    business_key: str
    channel: str | None = None
    outcome: str
    stage: str
    closed_at: datetime
    state: dict[str, Any] = Field(default_factory=dict)  # the process's final `state` query answer (JSON)


class LateEventInput(BaseModel):
    """Start input of the LateEvent workflow."""

    event: Event
    process_workflow_id: str
    process_type: str
    business_key: str
    channel: str | None = None
    sla: SlaPolicy = Field(default_factory=SlaPolicy)  # how its case escalates


class LateEventOutcome(BaseModel):
    workflow_id: str
    stage: str  # the action taken, as the process's final stage (record | case | apply)
    action: LateAction
    case_id: str | None = None
    movement_keys: list[str] = Field(default_factory=list)
    unresolved: list[str] = Field(default_factory=list)


class LateEventRecord(BaseModel):
    """One late event as stored (table late_events)."""

    event_id: str
    process_workflow_id: str
    late_workflow_id: str
    type: str
    source: str
    action: LateAction
    case_id: str | None = None
    payload: dict[str, Any]
    received_at: datetime


class LateMovement(BaseModel):
    """One ledger movement a late event requires (posted by the LateEvent workflow under its own keys)."""

    step: str
    kind: MovementKind
    lines: list[MovementLine]
    reason: str
    reason_code: str | None = None


class LatePlan(BaseModel):
    movements: list[LateMovement] = Field(default_factory=list)
    unresolved: list[str] = Field(default_factory=list)  # what could not be mapped to stock (told in the case)


def plan_goods(event: Event, closed: ClosedProcess | None) -> LatePlan:
    """The movements that take a late event's goods into (or out of) the ledger.

    `closed` is the ended process's record; without it (a process from release 1.0 past retention) only a
    return receipt, which names its SKUs and location itself, can be applied; the rest is left to the case.
    """
    data = event.data
    state = closed.state if closed else {}
    plan = LatePlan()
    if isinstance(data, ReturnReceived):
        lines = _by_sku((ln.sku, ln.quantity) for ln in data.lines)
        if lines:
            plan.movements.append(LateMovement(
                step="return-receipt", kind=MovementKind.RETURN_RECEIPT, reason="customer return received after "
                "the return had ended", lines=[MovementLine(sku=s, location_id=data.location_id, quantity=q)
                                               for s, q in lines.items()]))
    elif isinstance(data, PurchaseOrderReceived):
        lines = _by_sku((ln.sku, ln.quantity) for ln in data.lines)
        if lines:
            plan.movements.append(LateMovement(
                step="receipt", kind=MovementKind.RECEIPT, reason=f"receipt {data.receipt_id} after the purchase "
                "order had closed", lines=[MovementLine(sku=s, location_id=data.location_id, quantity=q)
                                           for s, q in lines.items()]))
    elif isinstance(data, TransferReceived):
        destination = state.get("to_location_id")
        lines = _by_sku((ln.sku, ln.quantity) for ln in data.lines)
        if not destination:
            plan.unresolved.append("the transfer's destination is not known: receive the units by hand")
        elif lines:
            plan.movements.append(LateMovement(
                step="receipt", kind=MovementKind.ADJUST, reason="transfer received after it had closed",
                reason_code=LATE_RECEIPT,
                lines=[MovementLine(sku=s, location_id=destination, quantity=q, bucket=Bucket.AVAILABLE)
                       for s, q in lines.items()]))
    elif isinstance(data, ShipmentDispatched | OrderCollected):
        skus = {ln.get("line_id"): ln.get("sku") for ln in state.get("lines", [])}
        if isinstance(data, ShipmentDispatched):
            wanted = [(skus.get(ln.line_id), ln.quantity, ln.line_id) for ln in data.lines]
        else:  # a collection hands over what the order had held at that store
            wanted = [(ln.get("sku"), int(ln.get("released", 0)), ln.get("line_id"))
                      for ln in state.get("lines", []) if ln.get("location_id") == data.location_id]
        for sku, _, line_id in wanted:
            if sku is None:
                plan.unresolved.append(f"line {line_id} is not a line of the order")
        lines = _by_sku((sku, qty) for sku, qty, _ in wanted if sku is not None)
        if lines:
            at = [MovementLine(sku=s, location_id=data.location_id, quantity=q) for s, q in lines.items()]
            reason = f"{event.type} after the order had ended: the units left"
            plan.movements += [LateMovement(step="reserve", kind=MovementKind.RESERVE, lines=at, reason=reason),
                               LateMovement(step="pick", kind=MovementKind.PICK, lines=at, reason=reason),
                               LateMovement(step="ship", kind=MovementKind.SHIP, lines=at, reason=reason)]
    return plan


def _by_sku(pairs: Any) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for sku, qty in pairs:
        if qty > 0:
            out[sku] += qty
    return dict(sorted(out.items()))
