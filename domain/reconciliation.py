"""Reconciliation: what one run checked and the discrepancies it found (pure models and rules, no I/O).

A run looks at what no single process can see:
- the invariant checker (`activities.checker`): balances vs ledger, balanced journal entries, inventory vs
  journal per legal entity and account, keys applied once, no negative bucket;
- operational vs financial inventory per legal entity: units x unit cost against the journal's inventory
  accounts, every entity's figures shown (not only the ones that drift);
- orphans: units held in `reserved`, `picked` or `in_transit` by a process (the movements carry its workflow
  ID) that is no longer running (closed, or never existed);
- stale processes: one of the four processes still open long after every deadline it could have had
  (`stale_after`: the sum of its process type's SLA clocks, the longest chain any run can wait, plus a grace).

Every discrepancy has a stable `key`; the exception case it opens has the workflow ID
`exception:reconciliation:{key}` (`domain.ids.exception_workflow_id("reconciliation", key)`), so the same
discrepancy found again by the next run finds its case still open and opens no second one.
"""
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, computed_field

from domain.ids import exception_workflow_id
from domain.sla import SlaKind, SlaPolicy

SCHEDULE_ID = "reconciliation"
WORKFLOW_TYPE = "Reconciliation"
# Units a running process (or an open exception case) is responsible for: a customer return waiting for its
# inspection too, so a parcel no process will ever inspect is found.
HELD_BUCKETS = ("reserved", "picked", "in_transit", "pending_inspection")

# The SLA clocks each process type runs; their sum bounds how long any run of it can legitimately wait.
PROCESS_CLOCKS: dict[str, tuple[SlaKind, ...]] = {
    "ReserveToFulfill": (SlaKind.PICK_OVERDUE, SlaKind.SHIP_OVERDUE, SlaKind.AUTHORIZATION_EXPIRING,
                         SlaKind.PICKUP_EXPIRED),
    "ShipToSettle": (SlaKind.AUTHORIZATION_EXPIRING, SlaKind.SETTLEMENT_OVERDUE),
    "Transfer": (SlaKind.TRANSFER_SHIP_OVERDUE, SlaKind.TRANSFER_OVERDUE),
    "ReturnToRefund": (SlaKind.RETURN_NOT_RECEIVED, SlaKind.INSPECTION_OVERDUE, SlaKind.REFUND_OVERDUE),
    # ReceiveToStock has no bound: a PO stays open until received or closed, its clock runs from its expected_at
    "CountToAdjust": (SlaKind.COUNT_APPROVAL_OVERDUE,),
    "VendorReturn": (SlaKind.VENDOR_CREDIT_OVERDUE,),
}
DEFAULT_GRACE = timedelta(hours=1)
DEFAULT_MAX_CASES = 50  # cases opened per run at most; the report still lists every discrepancy


def stale_thresholds(policies: list[SlaPolicy], grace: timedelta = DEFAULT_GRACE) -> dict[str, timedelta]:
    """Per process type: the longest a run may wait under any of `policies` (default and per channel)."""
    out = {}
    for process_type, kinds in PROCESS_CLOCKS.items():
        out[process_type] = max(sum((p.deadline(k) for k in kinds), timedelta(0)) for p in policies) + grace
    return out


class ReconciliationInput(BaseModel):
    """What the schedule starts each run with (`client.schedules.ensure_schedule` derives it from settings)."""

    stale_after: dict[str, timedelta] = Field(default_factory=lambda: stale_thresholds([SlaPolicy()]))
    max_cases: int = DEFAULT_MAX_CASES
    escalate_every: timedelta = timedelta(hours=4)  # of the cases it opens (RETAILFLOW_EXCEPTION_ESCALATE_EVERY)
    open_cases: bool = True
    resolve_cleared: bool = True  # resolve open reconciliation cases whose discrepancy is gone


class CheckSummary(BaseModel):
    """One thing a run checked (the checker's five checks, plus orphans, stale processes, entity figures)."""

    name: str
    description: str
    ok: bool
    violations: int
    samples: list[dict[str, Any]] = Field(default_factory=list)


class AccountFigure(BaseModel):
    account: str
    units_at_cost: Decimal
    journal_balance: Decimal

    @computed_field  # type: ignore[prop-decorator]
    @property
    def difference(self) -> Decimal:
        return self.journal_balance - self.units_at_cost


class EntityInventory(BaseModel):
    """Operational (units x unit cost) against financial (the journal's inventory accounts) for one entity."""

    legal_entity: str
    units: int
    units_at_cost: Decimal
    journal_balance: Decimal
    accounts: list[AccountFigure] = Field(default_factory=list)
    # inventory control's accruals and variances (GRNI, price variance, shrink, vendor credit receivable, vendor
    # credit variance, accounts payable): debit minus credit, reported beside the inventory they came from
    accruals: dict[str, Decimal] = Field(default_factory=dict)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return all(a.units_at_cost == a.journal_balance for a in self.accounts)


class InventoryCheck(BaseModel):
    """The activity's answer: the checker's report and every entity's figures, read in one snapshot."""

    checked_at: datetime
    checks: list[CheckSummary]
    entities: list[EntityInventory]
    totals: dict[str, int] = Field(default_factory=dict)


class Holding(BaseModel):
    """Units one process holds in one bucket (net of its own movements)."""

    workflow_id: str
    sku: str
    location_id: str
    bucket: str
    quantity: int


class OrphanHolding(BaseModel):
    workflow_id: str
    process_status: str  # not_found | completed | failed | terminated | canceled | timed_out | continued_as_new
    holdings: list[Holding]


class StaleQuery(BaseModel):
    now: datetime
    stale_after: dict[str, timedelta]


class StaleProcess(BaseModel):
    workflow_id: str
    workflow_type: str
    started_at: datetime
    age: timedelta
    stale_after: timedelta


class DiscrepancyKind(StrEnum):
    CHECK_FAILED = "check_failed"
    INVENTORY_DRIFT = "inventory_drift"
    ORPHAN_HOLDING = "orphan_holding"
    STALE_PROCESS = "stale_process"


class CaseOutcome(StrEnum):
    OPENED = "opened"
    ALREADY_OPEN = "already_open"
    NOT_OPENED = "not_opened"  # over the per-run cap, or cases switched off


class Discrepancy(BaseModel):
    key: str  # stable across runs: the case ID is exception:reconciliation:{key}
    kind: DiscrepancyKind
    summary: str
    details: dict[str, str] = Field(default_factory=dict)
    business_key: str
    location_ids: list[str] = Field(default_factory=list)
    skus: list[str] = Field(default_factory=list)
    case_id: str = ""
    case: CaseOutcome | None = None


class ReconciliationReport(BaseModel):
    """One run: when, what it checked, what it found; stored for `GET /reconciliation/latest`."""

    when: datetime
    workflow_id: str
    run_id: str
    ok: bool
    checks: list[CheckSummary]
    entities: list[EntityInventory]
    orphans: list[OrphanHolding] = Field(default_factory=list)
    stale_processes: list[StaleProcess] = Field(default_factory=list)
    discrepancies: list[Discrepancy] = Field(default_factory=list)
    resolved_cases: list[str] = Field(default_factory=list)  # cases closed because their discrepancy is gone
    truncated: list[str] = Field(default_factory=list)  # what was found but not all listed (too many)
    totals: dict[str, int] = Field(default_factory=dict)
    finished_at: datetime | None = None


def case_id(key: str) -> str:
    return exception_workflow_id(SCHEDULE_ID, key)


def _discrepancy(key: str, kind: DiscrepancyKind, summary: str, business_key: str, **kw: Any) -> Discrepancy:
    return Discrepancy(key=key, kind=kind, summary=summary, business_key=business_key, case_id=case_id(key), **kw)


def discrepancies(inventory: InventoryCheck, orphans: list[OrphanHolding],
                  stale: list[StaleProcess]) -> list[Discrepancy]:
    """One discrepancy per failed check, per drifting legal entity, per orphaning process, per stale process.

    The checker's own `inventory_matches_journal` is represented by the per-entity drifts (the same finding,
    one case per entity rather than one for all).
    """
    out: list[Discrepancy] = []
    for check in inventory.checks:
        if check.ok or check.name == "inventory_matches_journal":
            continue
        out.append(_discrepancy(
            f"check:{check.name}", DiscrepancyKind.CHECK_FAILED,
            f"invariant check {check.name} failed: {check.violations} violation(s)", f"check/{check.name}",
            details={"description": check.description, "violations": str(check.violations),
                     "samples": str(check.samples[:5])[:1000]},
        ))
    for entity in inventory.entities:
        if entity.ok:
            continue
        drift = entity.journal_balance - entity.units_at_cost
        out.append(_discrepancy(
            f"drift:{entity.legal_entity}", DiscrepancyKind.INVENTORY_DRIFT,
            f"{entity.legal_entity}: journal inventory {entity.journal_balance} vs units at cost "
            f"{entity.units_at_cost} (drift {drift})", f"entity/{entity.legal_entity}",
            details={"legal_entity": entity.legal_entity, "units_at_cost": str(entity.units_at_cost),
                     "journal_balance": str(entity.journal_balance), "drift": str(drift),
                     **{f"account {a.account}": f"units at cost {a.units_at_cost}, journal {a.journal_balance}"
                        for a in entity.accounts if a.units_at_cost != a.journal_balance}},
        ))
    for orphan in orphans:
        units = sum(h.quantity for h in orphan.holdings)
        out.append(_discrepancy(
            f"orphan:{orphan.workflow_id}", DiscrepancyKind.ORPHAN_HOLDING,
            f"{units} unit(s) held by {orphan.workflow_id}, which is {orphan.process_status}",
            orphan.workflow_id,
            details={"process_status": orphan.process_status,
                     **{f"{h.location_id}/{h.sku}/{h.bucket}": str(h.quantity) for h in orphan.holdings[:50]}},
            location_ids=sorted({h.location_id for h in orphan.holdings}),
            skus=sorted({h.sku for h in orphan.holdings}),
        ))
    for process in stale:
        out.append(_discrepancy(
            f"stale:{process.workflow_id}", DiscrepancyKind.STALE_PROCESS,
            f"{process.workflow_type} {process.workflow_id} open for {process.age}, past every deadline "
            f"({process.stale_after})", process.workflow_id,
            details={"workflow_type": process.workflow_type, "started_at": process.started_at.isoformat(),
                     "age": str(process.age), "stale_after": str(process.stale_after)},
        ))
    return out


def build_report(*, when: datetime, workflow_id: str, run_id: str, inventory: InventoryCheck,
                 orphans: list[OrphanHolding], stale: list[StaleProcess]) -> ReconciliationReport:
    entity_samples = [
        {"legal_entity": e.legal_entity, "units": e.units, "units_at_cost": str(e.units_at_cost),
         "journal_balance": str(e.journal_balance), "ok": e.ok}
        for e in inventory.entities
    ]
    checks = [
        *inventory.checks,
        CheckSummary(name="inventory_by_legal_entity",
                     description="per legal entity, operational inventory (units x unit cost) equals financial "
                                 "inventory (journal inventory accounts)",
                     ok=all(e.ok for e in inventory.entities),
                     violations=sum(1 for e in inventory.entities if not e.ok), samples=entity_samples),
        CheckSummary(name="orphan_holdings",
                     description="no units reserved, picked or in transit for a process that is not running",
                     ok=not orphans, violations=len(orphans),
                     samples=[{"workflow_id": o.workflow_id, "process_status": o.process_status,
                               "units": sum(h.quantity for h in o.holdings)} for o in orphans[:20]]),
        CheckSummary(name="stale_processes",
                     description="no process still open after every deadline it could have",
                     ok=not stale, violations=len(stale),
                     samples=[{"workflow_id": s.workflow_id, "workflow_type": s.workflow_type,
                               "started_at": s.started_at.isoformat()} for s in stale[:20]]),
    ]
    found = discrepancies(inventory, orphans, stale)
    return ReconciliationReport(
        when=when, workflow_id=workflow_id, run_id=run_id, ok=not found and all(c.ok for c in checks),
        checks=checks, entities=inventory.entities, orphans=orphans, stale_processes=stale, discrepancies=found,
        totals=inventory.totals,
    )
