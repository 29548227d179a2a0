"""The stub WMS on PostgreSQL: pick tasks, customer shipments (with priced lines, which the returns process
reads back to know what a customer may return and at what price), transfer shipments and receipts.

Every record is written once per key: a retry returns applied=False, a different request under a used key is
an IdempotencyConflict. Stock itself never moves here; the workflows move it through the ERP ledger.
"""
from collections import defaultdict
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Insert

from activities.adapters.common import conflict, request_hash
from activities.db.models import PickTaskRow, ReceiptRow, ShipmentLineRow, ShipmentRow, TransferShipmentRow
from activities.wms import (
    PickTaskInput,
    ReceiptRecord,
    ShipmentRecord,
    ShippedLine,
    ShippedLinesInput,
    ShippedLinesResult,
    TransferShipmentInput,
    WmsRecordResult,
)
from domain.errors import DomainError, ErrorType

PICK_TASKS = PickTaskRow.__table__
SHIPMENTS = ShipmentRow.__table__
SHIPMENT_LINES = ShipmentLineRow.__table__
TRANSFER_SHIPMENTS = TransferShipmentRow.__table__
RECEIPTS = ReceiptRow.__table__


def _refuse_empty(key: str, lines: list) -> None:
    """Zero-quantity lines (a line shorted to nothing) are tolerated and not stored; negative ones are refused."""
    if any(line.quantity < 0 for line in lines) or not any(line.quantity > 0 for line in lines):
        raise DomainError(ErrorType.INVALID_TRANSITION, f"{key}: a WMS record needs lines with positive quantities",
                          key=key)


class PostgresWms:
    """WmsPort on PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def _once(self, conn: AsyncConnection, table, statement: Insert, key: str, fingerprint: str,  # noqa: ANN001
                    what: str) -> bool:
        """Insert the keyed row; False if the key was there (after checking it is the same request)."""
        inserted = await conn.scalar(statement.on_conflict_do_nothing(index_elements=["key"]).returning(table.c.key))
        if inserted is not None:
            return True
        first = await conn.scalar(select(table.c.request_hash).where(table.c.key == key))
        if first != fingerprint:
            raise conflict(key, what)
        return False

    async def create_pick_task(self, task: PickTaskInput) -> WmsRecordResult:
        _refuse_empty(task.key, task.lines)
        fingerprint = request_hash(task)
        async with self.engine.begin() as conn:
            applied = await self._once(conn, PICK_TASKS, insert(PICK_TASKS).values(
                key=task.key, channel=task.channel, order_id=task.order_id, location_id=task.location_id,
                lines=[line.model_dump(mode="json") for line in task.lines], request_hash=fingerprint,
            ), task.key, fingerprint, "pick task")
        return WmsRecordResult(key=task.key, applied=applied)

    async def record_shipment(self, shipment: ShipmentRecord) -> WmsRecordResult:
        _refuse_empty(shipment.key, shipment.lines)
        fingerprint = request_hash(shipment)
        async with self.engine.begin() as conn:
            applied = await self._once(conn, SHIPMENTS, insert(SHIPMENTS).values(
                key=shipment.key, shipment_id=shipment.shipment_id, channel=shipment.channel,
                order_id=shipment.order_id, location_id=shipment.location_id, carrier=shipment.carrier,
                tracking_number=shipment.tracking_number, request_hash=fingerprint,
            ), shipment.key, fingerprint, "shipment")
            if applied:
                merged: dict[str, ShippedLine] = {}
                for line in (x for x in shipment.lines if x.quantity > 0):  # one row per order line, even if the WMS split it
                    seen = merged.get(line.line_id)
                    merged[line.line_id] = line if seen is None else seen.model_copy(
                        update={"quantity": seen.quantity + line.quantity})
                await conn.execute(insert(SHIPMENT_LINES), [
                    {"shipment_key": shipment.key, "line_id": line.line_id, "sku": line.sku,
                     "quantity": line.quantity, "unit_price": line.unit_price, "currency": line.currency}
                    for line in merged.values()
                ])
        return WmsRecordResult(key=shipment.key, applied=applied)

    async def shipped_lines(self, query: ShippedLinesInput) -> ShippedLinesResult:
        """What left the building for one order, summed per order line over all its shipments."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(SHIPMENTS.c.location_id, SHIPMENT_LINES.c.line_id, SHIPMENT_LINES.c.sku,
                       SHIPMENT_LINES.c.quantity, SHIPMENT_LINES.c.unit_price, SHIPMENT_LINES.c.currency)
                .join(SHIPMENT_LINES, SHIPMENT_LINES.c.shipment_key == SHIPMENTS.c.key)
                .where(SHIPMENTS.c.channel == query.channel, SHIPMENTS.c.order_id == query.order_id)
                .order_by(SHIPMENTS.c.created_at, SHIPMENTS.c.key, SHIPMENT_LINES.c.line_id)
            )).all()
        totals: dict[str, ShippedLine] = {}
        quantities: dict[str, int] = defaultdict(int)
        locations: list[str] = []
        for location_id, line_id, sku, quantity, unit_price, currency in rows:
            quantities[line_id] += quantity
            totals.setdefault(line_id, ShippedLine(line_id=line_id, sku=sku, quantity=0,
                                                   unit_price=Decimal(unit_price), currency=currency))
            if location_id not in locations:
                locations.append(location_id)
        return ShippedLinesResult(
            lines=[line.model_copy(update={"quantity": quantities[line_id]}) for line_id, line in sorted(totals.items())],
            location_ids=locations,
        )

    async def create_transfer_shipment(self, shipment: TransferShipmentInput) -> WmsRecordResult:
        _refuse_empty(shipment.key, shipment.lines)
        if shipment.from_location_id == shipment.to_location_id:
            raise DomainError(ErrorType.INVALID_TRANSITION, "a transfer ships to another location", key=shipment.key)
        fingerprint = request_hash(shipment)
        async with self.engine.begin() as conn:
            applied = await self._once(conn, TRANSFER_SHIPMENTS, insert(TRANSFER_SHIPMENTS).values(
                key=shipment.key, transfer_id=shipment.transfer_id, from_location_id=shipment.from_location_id,
                to_location_id=shipment.to_location_id, lines=[line.model_dump(mode="json") for line in shipment.lines],
                request_hash=fingerprint,
            ), shipment.key, fingerprint, "transfer shipment")
        return WmsRecordResult(key=shipment.key, applied=applied)

    async def record_receipt(self, receipt: ReceiptRecord) -> WmsRecordResult:
        _refuse_empty(receipt.key, receipt.lines)
        if receipt.kind not in ("transfer", "return", "purchase_order"):
            raise DomainError(ErrorType.INVALID_TRANSITION,
                              f"a receipt is for a transfer, a return or a purchase order, not {receipt.kind!r}",
                              key=receipt.key)
        fingerprint = request_hash(receipt)
        async with self.engine.begin() as conn:
            applied = await self._once(conn, RECEIPTS, insert(RECEIPTS).values(
                key=receipt.key, kind=receipt.kind, reference=receipt.reference, location_id=receipt.location_id,
                lines=[line.model_dump(mode="json") for line in receipt.lines], request_hash=fingerprint,
            ), receipt.key, fingerprint, "receipt")
        return WmsRecordResult(key=receipt.key, applied=applied)
