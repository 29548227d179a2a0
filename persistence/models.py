"""The ORM rows (SQLModel) of every table the code queries. The schema is made by the alembic revisions (with
the CHECKs and triggers that enforce the invariants); these rows map it, and tests/test_schema_models.py keeps
the two from drifting apart (alembic's autogenerate comparison finds no difference)."""
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Numeric,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import AutoString, Field, SQLModel


def _json(nullable: bool = False) -> Any:
    return Field(sa_column=Column(JSONB, nullable=nullable))


def _money(nullable: bool = False, default: Decimal | None = None) -> Any:
    kw: dict[str, Any] = {"sa_column": Column(Numeric, nullable=nullable)}
    if default is not None:
        kw["default"] = default
    return Field(**kw)


def _created() -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()))


class ItemRow(SQLModel, table=True):
    __tablename__ = "items"

    sku: str = Field(primary_key=True)
    name: str
    barcode: str = Field(unique=True)
    category: str = "general"
    units: dict[str, int] = _json()
    unit_cost: Decimal = _money()
    price: Decimal = _money()
    currency: str = "USD"
    created_at: datetime | None = _created()


class LocationRow(SQLModel, table=True):
    __tablename__ = "locations"
    __table_args__ = (
        Index("locations_legal_entity", "legal_entity"),
    )

    location_id: str = Field(primary_key=True)
    name: str
    kind: str
    legal_entity: str
    created_at: datetime | None = _created()


class BalanceRow(SQLModel, table=True):
    __tablename__ = "balances"
    __table_args__ = (
        Index("balances_location", "location_id"),
    )

    sku: str = Field(primary_key=True, foreign_key="items.sku")
    location_id: str = Field(primary_key=True, foreign_key="locations.location_id")
    bucket: str = Field(primary_key=True)
    quantity: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    updated_at: datetime | None = _created()


class MovementBatchRow(SQLModel, table=True):
    """The idempotency record of one transaction key, with the first call's result."""

    __tablename__ = "movement_batches"

    key: str = Field(primary_key=True)
    kind: str
    request_hash: str
    result: dict[str, Any] = _json()
    workflow_id: str
    run_id: str
    created_at: datetime | None = _created()


class MovementRow(SQLModel, table=True):
    """One bucket delta of one line of a movement (append-only)."""

    __tablename__ = "movements"
    __table_args__ = (
        UniqueConstraint("key", "line", "location_id", "bucket", name="movements_once"),
        Index("movements_sku_location", "sku", "location_id"),
        Index("movements_workflow", "workflow_id"),
        Index("movements_reference", "reference"),
        Index("movements_created", "created_at"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    key: str = Field(foreign_key="movement_batches.key")
    line: int
    kind: str
    sku: str = Field(foreign_key="items.sku")
    location_id: str = Field(foreign_key="locations.location_id")
    bucket: str
    delta: int = Field(sa_column=Column(BigInteger, nullable=False))
    reason: str
    reason_code: str | None = None
    workflow_id: str
    run_id: str
    reference: str | None = None
    created_at: datetime | None = _created()


class JournalEntryRow(SQLModel, table=True):
    __tablename__ = "journal_entries"
    __table_args__ = (
        Index("journal_entries_source", "source_key"),
        Index("journal_entries_entity", "legal_entity"),
        Index("journal_entries_created", "created_at"),
    )

    key: str = Field(primary_key=True)
    source_key: str
    source_kind: str
    legal_entity: str
    currency: str
    memo: str
    request_hash: str | None = None
    workflow_id: str | None = None
    run_id: str | None = None
    reference: str | None = None
    created_at: datetime | None = _created()


class JournalLineRow(SQLModel, table=True):
    __tablename__ = "journal_lines"
    __table_args__ = (
        UniqueConstraint("entry_key", "line", name="journal_lines_once"),
        Index("journal_lines_account", "account"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    entry_key: str = Field(foreign_key="journal_entries.key")
    line: int
    account: str
    debit: Decimal = _money(default=Decimal(0))
    credit: Decimal = _money(default=Decimal(0))
    sku: str | None = None
    location_id: str | None = None


class PaymentRow(SQLModel, table=True):
    __tablename__ = "payments"

    payment_id: str = Field(primary_key=True)
    authorized_amount: Decimal = _money()
    currency: str
    voided_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    created_at: datetime | None = _created()


class CaptureRow(SQLModel, table=True):
    __tablename__ = "captures"
    __table_args__ = (
        Index("captures_payment", "payment_id"),
    )

    key: str = Field(primary_key=True)
    payment_id: str = Field(foreign_key="payments.payment_id")
    amount: Decimal = _money()
    currency: str
    reference: str
    request_hash: str
    result: dict[str, Any] = _json()
    created_at: datetime | None = _created()


class VoidRow(SQLModel, table=True):
    __tablename__ = "voids"
    __table_args__ = (
        Index("voids_payment", "payment_id"),
    )

    key: str = Field(primary_key=True)
    payment_id: str
    amount: Decimal = _money()
    reason: str
    request_hash: str
    result: dict[str, Any] = _json()
    created_at: datetime | None = _created()


class RefundRow(SQLModel, table=True):
    __tablename__ = "refunds"
    __table_args__ = (
        Index("refunds_return", "return_id"),
        Index("refunds_payment", "payment_id"),
    )

    key: str = Field(primary_key=True)
    payment_id: str | None = None
    return_id: str
    amount: Decimal = _money()
    currency: str
    refund_reference: str = Field(unique=True)
    request_hash: str
    result: dict[str, Any] = _json()
    created_at: datetime | None = _created()


class PickTaskRow(SQLModel, table=True):
    __tablename__ = "pick_tasks"
    __table_args__ = (
        Index("pick_tasks_order", "channel", "order_id"),
    )

    key: str = Field(primary_key=True)
    channel: str
    order_id: str
    location_id: str
    lines: list[dict[str, Any]] = _json()
    request_hash: str
    created_at: datetime | None = _created()


class ShipmentRow(SQLModel, table=True):
    __tablename__ = "shipments"
    __table_args__ = (
        Index("shipments_order", "channel", "order_id"),
    )

    key: str = Field(primary_key=True)
    shipment_id: str
    channel: str
    order_id: str
    location_id: str
    carrier: str | None = None
    tracking_number: str | None = None
    request_hash: str
    payment_id: str | None = None  # revision 0005; NULL on release 1.0 records
    created_at: datetime | None = _created()


class ShipmentLineRow(SQLModel, table=True):
    __tablename__ = "shipment_lines"

    shipment_key: str = Field(primary_key=True, foreign_key="shipments.key")
    line_id: str = Field(primary_key=True)
    sku: str
    quantity: int = Field(sa_column=Column(BigInteger, nullable=False))
    unit_price: Decimal = _money()
    currency: str
    amount: Decimal | None = _money(nullable=True)  # revision 0005: charged for this line in this shipment


class TransferShipmentRow(SQLModel, table=True):
    __tablename__ = "transfer_shipments"
    __table_args__ = (
        Index("transfer_shipments_transfer", "transfer_id"),
    )

    key: str = Field(primary_key=True)
    transfer_id: str
    from_location_id: str
    to_location_id: str
    lines: list[dict[str, Any]] = _json()
    request_hash: str
    created_at: datetime | None = _created()


class ReceiptRow(SQLModel, table=True):
    __tablename__ = "receipts"
    __table_args__ = (
        Index("receipts_reference", "kind", "reference"),
    )

    key: str = Field(primary_key=True)
    kind: str
    reference: str
    location_id: str
    lines: list[dict[str, Any]] = _json()
    request_hash: str
    created_at: datetime | None = _created()


class ReturnOrderRow(SQLModel, table=True):
    """Revision 0005: the row every return of one order locks (authorize, close)."""

    __tablename__ = "return_orders"

    channel: str = Field(primary_key=True)
    order_id: str = Field(primary_key=True)
    created_at: datetime | None = _created()


class ReturnAuthorizationRow(SQLModel, table=True):
    """Revision 0005: one return's authorization against its order, idempotent by key."""

    __tablename__ = "return_authorizations"
    __table_args__ = (
        ForeignKeyConstraint(["channel", "order_id"], ["return_orders.channel", "return_orders.order_id"],
                             name="return_authorizations_channel_order_id_fkey"),
    )

    key: str = Field(primary_key=True)
    return_id: str
    channel: str
    order_id: str
    status: str = "open"  # open | closed
    request_hash: str
    result: dict[str, Any] = _json()
    close_result: dict[str, Any] | None = _json(nullable=True)
    created_at: datetime | None = _created()
    closed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class ReturnAuthorizationLineRow(SQLModel, table=True):
    """Revision 0005: per requested line, units authorized, released and refunded (units and money)."""

    __tablename__ = "return_authorization_lines"
    __table_args__ = (
        Index("return_authorization_lines_order", "channel", "order_id", "line_id"),
    )

    authorization_key: str = Field(primary_key=True, foreign_key="return_authorizations.key")
    line_no: int = Field(primary_key=True)
    channel: str
    order_id: str
    line_id: str
    sku: str
    authorized: int = Field(sa_column=Column(BigInteger, nullable=False))
    released: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    refunded_units: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    refunded_amount: Decimal = _money(default=Decimal(0))


class WmsInterceptionRow(SQLModel, table=True):
    """A cancel of an order's fulfilment at a location and the WMS's answer, or a parcel known to have left
    (revision 0007)."""

    __tablename__ = "wms_interceptions"
    __table_args__ = (
        Index("wms_interceptions_order", "channel", "order_id", "location_id"),
    )

    key: str = Field(primary_key=True)
    kind: str  # cancel | parcel_left
    channel: str
    order_id: str
    location_id: str
    answer: str  # intercepted | already_dispatched
    reason: str | None = None
    request_hash: str
    created_at: datetime | None = _created()


class WebhookDeliveryRow(SQLModel, table=True):
    """One webhook delivery (revision 0003): the idempotency record of a `webhook-id` and its answer."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("webhook_deliveries_workflow", "workflow_id"),
        Index("webhook_deliveries_received", "received_at"),
        Index("webhook_deliveries_pending", "received_at", postgresql_where=text("status = 'pending'")),
    )

    source: str = Field(primary_key=True)
    webhook_id: str = Field(primary_key=True)
    type: str
    workflow_id: str
    body_sha256: str
    status: str = "pending"  # pending | done
    http_status: int | None = None
    response: dict[str, Any] | None = _json(nullable=True)
    received_at: datetime | None = _created()
    answered_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class UnopenedProcessRow(SQLModel, table=True):
    """A process a source's non-opening event started before its opening event came (revision 0009)."""

    __tablename__ = "unopened_processes"
    __table_args__ = (
        Index("unopened_processes_opener", "opener"),
    )

    source: str = Field(primary_key=True)
    workflow_id: str = Field(primary_key=True)
    opener: str
    first_seen: datetime | None = _created()


class ExceptionCaseRow(SQLModel, table=True):
    """The exception-case register (revision 0002); written by activities/cases.py."""

    __tablename__ = "exception_cases"
    __table_args__ = (
        Index("exception_cases_status_kind", "status", "kind", "opened_at"),
        Index("exception_cases_business_key", "business_key"),
        Index("exception_cases_process", "process_workflow_id"),
        Index("exception_cases_locations", "location_ids", postgresql_using="gin"),
        Index("exception_cases_skus", "skus", postgresql_using="gin"),
    )

    exception_id: str = Field(primary_key=True)
    kind: str
    status: str
    severity: str
    business_key: str
    channel: str | None = None
    location_ids: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False))
    skus: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False))
    summary: str
    details: dict[str, Any] = _json()
    process_workflow_id: str
    process_run_id: str
    process_type: str | None = None
    events_seen: list[str] = _json()
    opened_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    deadline: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    breached_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    escalations: int = 0
    last_escalated_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    resolved_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    resolved_by: str | None = None
    resolution_note: str | None = None
    created_at: datetime | None = _created()
    updated_at: datetime | None = _created()


class ReconciliationRunRow(SQLModel, table=True):
    """One reconciliation run (revision 0004) with its report (domain.reconciliation.ReconciliationReport)."""

    __tablename__ = "reconciliation_runs"

    run_id: str = Field(primary_key=True)
    workflow_id: str
    run_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    ok: bool
    discrepancies: int
    report: dict[str, Any] = _json()
    stored_at: datetime | None = _created()


Index("reconciliation_runs_run_at", ReconciliationRunRow.__table__.c.run_at.desc())  # type: ignore[attr-defined]


class ProcessRegistryRow(SQLModel, table=True):
    """A process that has ended (revision 0006): its business key never opens a second process."""

    __tablename__ = "process_registry"
    __table_args__ = (
        Index("process_registry_business_key", "business_key"),
    )

    workflow_id: str = Field(primary_key=True)
    run_id: str
    workflow_type: str
    business_key: str
    channel: str | None = None
    outcome: str
    stage: str
    closed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    state: dict[str, Any] = _json()
    recorded_at: datetime | None = _created()


class LateEventRow(SQLModel, table=True):
    """An event that came after its process had ended (revision 0006), with what was done with it."""

    __tablename__ = "late_events"
    __table_args__ = (
        Index("late_events_process", "process_workflow_id"),
    )

    event_id: str = Field(primary_key=True)
    process_workflow_id: str
    late_workflow_id: str
    type: str
    source: str
    action: str
    case_id: str | None = None
    payload: dict[str, Any] = _json()
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    stored_at: datetime | None = _created()


METADATA = SQLModel.metadata
for _table in METADATA.tables.values():  # every str column is PostgreSQL `text`, as the migrations write them
    for _column in _table.columns:
        if isinstance(_column.type, AutoString):
            _column.type = Text()

# Tables of the migrations with no ORM row, and why: alembic's comparison (persistence/env.py,
# tests/test_schema_models.py) leaves them out.
UNMAPPED = {
    "ledger_totals": "kept by the movements trigger (revision 0009) and read by the checker's SQL alone",
    "process_holdings": "kept by the movements trigger (revision 0009) and read by the reconciliation's SQL alone",
    "journal_totals": "kept by the journal lines trigger (revision 0009) and read by the checker's SQL alone",
}


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """alembic's filter: every table but the UNMAPPED ones (and their indexes)."""
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return table not in UNMAPPED
