"""The stub WMS on PostgreSQL: pick tasks, shipments (priced lines), transfer shipments, receipts, interceptions
and the returnable quantities of every order line, each record written once by key (docs/persistence.md)."""
from collections import defaultdict
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.wms import (
    AuthorizedLine,
    AuthorizeReturnInput,
    AuthorizeReturnResult,
    CancelFulfillmentInput,
    CancelFulfillmentResult,
    ClosedLine,
    CloseReturnInput,
    CloseReturnResult,
    InterceptAnswer,
    PickTaskInput,
    ReceiptRecord,
    ShipmentRecord,
    ShippedLine,
    ShippedLinesInput,
    ShippedLinesResult,
    TransferShipmentInput,
    WmsRecordResult,
)
from domain import returns as rules
from domain.errors import DomainError, ErrorType
from domain.money import round_money
from persistence.engine import autocommit
from persistence.models import (
    PickTaskRow,
    ReceiptRow,
    ReturnAuthorizationLineRow,
    ReturnAuthorizationRow,
    ReturnOrderRow,
    ShipmentLineRow,
    ShipmentRow,
    TransferShipmentRow,
    WmsInterceptionRow,
)
from persistence.write_once import conflict, first_record, request_hash, write_once

PICK_TASKS = PickTaskRow.__table__
SHIPMENTS = ShipmentRow.__table__
SHIPMENT_LINES = ShipmentLineRow.__table__
TRANSFER_SHIPMENTS = TransferShipmentRow.__table__
RECEIPTS = ReceiptRow.__table__
INTERCEPTIONS = WmsInterceptionRow.__table__
RETURN_ORDERS = ReturnOrderRow.__table__
AUTHORIZATIONS = ReturnAuthorizationRow.__table__
AUTH_LINES = ReturnAuthorizationLineRow.__table__


def _shipment_fingerprint(shipment: ShipmentRecord) -> str:
    """The release-2 fields count only when set, so a release-1.0 record retried after the upgrade still
    matches its first call."""
    exclude: dict = {}
    if shipment.payment_id is None:
        exclude["payment_id"] = True
    unset = [i for i, line in enumerate(shipment.lines) if line.amount is None]
    if unset:
        exclude["lines"] = {i: {"amount"} for i in unset}
    return request_hash(shipment.model_dump(mode="json", exclude=exclude))


def _refuse_empty(key: str, lines: list) -> None:
    """Zero-quantity lines (a line shorted to nothing) are tolerated and not stored; negative ones are refused."""
    if any(line.quantity < 0 for line in lines) or not any(line.quantity > 0 for line in lines):
        raise DomainError(ErrorType.INVALID_TRANSITION, f"{key}: a WMS record needs lines with positive quantities",
                          key=key)


class PostgresWms:
    """WmsPort on PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create_pick_task(self, task: PickTaskInput) -> WmsRecordResult:
        _refuse_empty(task.key, task.lines)
        fingerprint = request_hash(task)
        async with autocommit(self.engine) as conn:  # one statement
            applied = await write_once(conn, PICK_TASKS, dict(
                key=task.key, channel=task.channel, order_id=task.order_id, location_id=task.location_id,
                lines=[line.model_dump(mode="json") for line in task.lines], request_hash=fingerprint,
            ), what="pick task") is None
        return WmsRecordResult(key=task.key, applied=applied)

    async def record_shipment(self, shipment: ShipmentRecord) -> WmsRecordResult:
        _refuse_empty(shipment.key, shipment.lines)
        fingerprint = _shipment_fingerprint(shipment)
        async with self.engine.begin() as conn:
            applied = await write_once(conn, SHIPMENTS, dict(
                key=shipment.key, shipment_id=shipment.shipment_id, channel=shipment.channel,
                order_id=shipment.order_id, location_id=shipment.location_id, carrier=shipment.carrier,
                tracking_number=shipment.tracking_number, request_hash=fingerprint, payment_id=shipment.payment_id,
            ), what="shipment") is None
            if applied:
                merged: dict[str, ShippedLine] = {}
                for line in (x for x in shipment.lines if x.quantity > 0):  # one row per order line, even if the WMS split it
                    seen = merged.get(line.line_id)
                    merged[line.line_id] = line if seen is None else seen.model_copy(update={
                        "quantity": seen.quantity + line.quantity,
                        "amount": None if seen.amount is None or line.amount is None else seen.amount + line.amount})
                await conn.execute(insert(SHIPMENT_LINES), [
                    {"shipment_key": shipment.key, "line_id": line.line_id, "sku": line.sku,
                     "quantity": line.quantity, "unit_price": line.unit_price, "currency": line.currency,
                     "amount": line.amount}
                    for line in merged.values()
                ])
        return WmsRecordResult(key=shipment.key, applied=applied)

    async def cancel_fulfillment(self, request: CancelFulfillmentInput) -> CancelFulfillmentResult:
        fingerprint = request_hash(request)
        where = ((INTERCEPTIONS.c.channel == request.channel) & (INTERCEPTIONS.c.order_id == request.order_id)
                 & (INTERCEPTIONS.c.location_id == request.location_id))
        async with self.engine.begin() as conn:
            # one answer per order and location at a time: a racing parcel_left mark or cancel waits here
            await conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(
                f"wms-intercept:{request.channel}:{request.order_id}:{request.location_id}"))))
            earlier = await first_record(conn, INTERCEPTIONS, {"key": request.key},
                                         what="cancel of a fulfilment", fingerprint=fingerprint)
            if earlier is not None:
                return CancelFulfillmentResult(key=request.key, answer=InterceptAnswer(earlier.answer), applied=False)
            left = await conn.scalar(select(INTERCEPTIONS.c.key).where(
                where, INTERCEPTIONS.c.kind == "parcel_left").limit(1))
            # (a shipment recorded for the order there says nothing about the rest: an earlier partial parcel)
            answer = InterceptAnswer.ALREADY_DISPATCHED if left else InterceptAnswer.INTERCEPTED
            await conn.execute(insert(INTERCEPTIONS).values(
                key=request.key, kind="cancel", channel=request.channel, order_id=request.order_id,
                location_id=request.location_id, answer=str(answer), reason=request.reason, request_hash=fingerprint))
        return CancelFulfillmentResult(key=request.key, answer=answer, applied=True)

    async def mark_parcel_left(self, channel: str, order_id: str, location_id: str) -> None:
        """The stub's stand-in for the warehouse floor: the order's parcel left `location_id` (a cancel there
        is then answered `already_dispatched`). Tests and the demo call it; a real WMS simply knows."""
        key = f"parcel-left:{channel}:{order_id}:{location_id}"
        async with self.engine.begin() as conn:
            await conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(
                f"wms-intercept:{channel}:{order_id}:{location_id}"))))
            await write_once(conn, INTERCEPTIONS, dict(
                key=key, kind="parcel_left", channel=channel, order_id=order_id, location_id=location_id,
                answer=str(InterceptAnswer.ALREADY_DISPATCHED), request_hash=key), what="parcel left")

    async def shipped_lines(self, query: ShippedLinesInput) -> ShippedLinesResult:
        """What left the building for one order, summed per order line over all its shipments."""
        async with autocommit(self.engine) as conn:
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
            applied = await write_once(conn, TRANSFER_SHIPMENTS, dict(
                key=shipment.key, transfer_id=shipment.transfer_id, from_location_id=shipment.from_location_id,
                to_location_id=shipment.to_location_id, lines=[line.model_dump(mode="json") for line in shipment.lines],
                request_hash=fingerprint,
            ), what="transfer shipment") is None
        return WmsRecordResult(key=shipment.key, applied=applied)

    async def record_receipt(self, receipt: ReceiptRecord) -> WmsRecordResult:
        _refuse_empty(receipt.key, receipt.lines)
        if receipt.kind not in ("transfer", "return", "purchase_order"):
            raise DomainError(ErrorType.INVALID_TRANSITION,
                              f"a receipt is for a transfer, a return or a purchase order, not {receipt.kind!r}",
                              key=receipt.key)
        fingerprint = request_hash(receipt)
        async with self.engine.begin() as conn:
            applied = await write_once(conn, RECEIPTS, dict(
                key=receipt.key, kind=receipt.kind, reference=receipt.reference, location_id=receipt.location_id,
                lines=[line.model_dump(mode="json") for line in receipt.lines], request_hash=fingerprint,
            ), what="receipt") is None
        return WmsRecordResult(key=receipt.key, applied=applied)

    # --- returns (release 2) ----------------------------------------------------------------------------------
    async def _lock_order(self, conn: AsyncConnection, channel: str, order_id: str) -> None:
        await conn.execute(insert(RETURN_ORDERS).values(channel=channel, order_id=order_id)
                           .on_conflict_do_nothing(index_elements=["channel", "order_id"]))
        await conn.execute(select(RETURN_ORDERS.c.channel).where(
            RETURN_ORDERS.c.channel == channel, RETURN_ORDERS.c.order_id == order_id).with_for_update())

    async def _shipped(self, conn: AsyncConnection, channel: str, order_id: str
                       ) -> tuple[list[rules.Shipped], str | None, list[str]]:
        """Per order line: units shipped, the money charged (the recorded amount, or unit price x units on
        release 1.0 records), the location that first shipped it; the order's payment and shipment IDs."""
        rows = (await conn.execute(
            select(SHIPMENTS.c.shipment_id, SHIPMENTS.c.location_id, SHIPMENTS.c.payment_id,
                   SHIPMENT_LINES.c.line_id, SHIPMENT_LINES.c.sku, SHIPMENT_LINES.c.quantity,
                   SHIPMENT_LINES.c.unit_price, SHIPMENT_LINES.c.currency, SHIPMENT_LINES.c.amount)
            .join(SHIPMENT_LINES, SHIPMENT_LINES.c.shipment_key == SHIPMENTS.c.key)
            .where(SHIPMENTS.c.channel == channel, SHIPMENTS.c.order_id == order_id)
            .order_by(SHIPMENTS.c.created_at, SHIPMENTS.c.key, SHIPMENT_LINES.c.line_id)
        )).all()
        lines: dict[str, rules.Shipped] = {}
        payments: list[str] = []
        shipment_ids: list[str] = []
        for r in rows:
            charged = Decimal(r.amount) if r.amount is not None else round_money(Decimal(r.unit_price) * r.quantity)
            seen = lines.get(r.line_id)
            if seen is None:
                lines[r.line_id] = rules.Shipped(line_id=r.line_id, sku=r.sku, quantity=r.quantity,
                                                 unit_price=Decimal(r.unit_price), currency=r.currency,
                                                 amount=charged, location_id=r.location_id)
            else:
                seen.quantity += r.quantity
                seen.amount = (seen.amount or Decimal(0)) + charged
            if r.payment_id and r.payment_id not in payments:
                payments.append(r.payment_id)
            if r.shipment_id not in shipment_ids:
                shipment_ids.append(r.shipment_id)
        return list(lines.values()), (payments[0] if payments else None), shipment_ids

    async def authorize_return(self, request: AuthorizeReturnInput) -> AuthorizeReturnResult:
        if any(line.quantity <= 0 for line in request.lines) or not request.lines:
            raise DomainError(ErrorType.INVALID_TRANSITION, f"{request.key}: a return asks for positive quantities",
                              key=request.key)
        fingerprint = request_hash(request)
        async with self.engine.begin() as conn:
            await self._lock_order(conn, request.channel, request.order_id)
            earlier = await first_record(conn, AUTHORIZATIONS, {"key": request.key},
                                         what="return authorization", fingerprint=fingerprint)
            if earlier is not None:
                return AuthorizeReturnResult.model_validate({**earlier.result, "applied": False})
            shipped, payment_id, shipment_ids = await self._shipped(conn, request.channel, request.order_id)
            held = dict((await conn.execute(
                select(AUTH_LINES.c.line_id,
                       func.sum(AUTH_LINES.c.authorized - AUTH_LINES.c.released))
                .where(AUTH_LINES.c.channel == request.channel, AUTH_LINES.c.order_id == request.order_id)
                .group_by(AUTH_LINES.c.line_id))).all())
            held = {k: int(v) for k, v in held.items()}
            decided = rules.authorize([(ln.line_id, ln.sku, ln.quantity, ln.reason) for ln in request.lines],
                                      shipped, already=held)
            by_line = {s.line_id: s for s in shipped}
            result = AuthorizeReturnResult(key=request.key, applied=True, payment_id=payment_id,
                                           shipment_ids=shipment_ids, lines=[
                AuthorizedLine(
                    line_no=ln.line_no, line_id=ln.line_id, sku=ln.sku, requested=ln.requested,
                    authorized=ln.authorized, refused_reason=ln.refused_reason,
                    refusal=str(ln.refusal) if ln.refusal else None, shipped=ln.shipped,
                    already=held.get(ln.line_id, 0),
                    unit_price=by_line[ln.line_id].unit_price if ln.line_id in by_line else None,
                    charged=by_line[ln.line_id].amount if ln.line_id in by_line else None,
                    currency=by_line[ln.line_id].currency if ln.line_id in by_line else None,
                    sale_location_id=ln.sale_location_id,
                ) for ln in decided])
            await conn.execute(insert(AUTHORIZATIONS).values(
                key=request.key, return_id=request.return_id, channel=request.channel, order_id=request.order_id,
                request_hash=fingerprint, result=result.model_dump(mode="json")))
            await conn.execute(insert(AUTH_LINES), [
                {"authorization_key": request.key, "line_no": ln.line_no, "channel": request.channel,
                 "order_id": request.order_id, "line_id": ln.line_id, "sku": ln.sku, "authorized": ln.authorized}
                for ln in result.lines])
        return result

    async def close_return(self, request: CloseReturnInput) -> CloseReturnResult:
        """Refund units are numbered per order line across its returns in the order the returns close."""
        async with self.engine.begin() as conn:
            auth = (await conn.execute(select(AUTHORIZATIONS).where(AUTHORIZATIONS.c.key == request.key))
                    ).mappings().first()
            if auth is None:
                raise DomainError(ErrorType.INVALID_TRANSITION, f"no return authorization {request.key!r}",
                                  key=request.key)
            await self._lock_order(conn, auth["channel"], auth["order_id"])
            auth = (await conn.execute(select(AUTHORIZATIONS).where(AUTHORIZATIONS.c.key == request.key))
                    ).mappings().one()
            fingerprint = request_hash(request)
            if auth["status"] == "closed":
                first = auth["close_result"]
                if first.get("request_hash") != fingerprint:
                    raise conflict(request.key, "return close")
                return CloseReturnResult.model_validate({**first["result"], "applied": False})
            decided = AuthorizeReturnResult.model_validate(auth["result"])
            shipped, _, _ = await self._shipped(conn, auth["channel"], auth["order_id"])
            by_line = {s.line_id: s for s in shipped}
            refunded_before = {k: int(v) for k, v in (await conn.execute(
                select(AUTH_LINES.c.line_id, func.sum(AUTH_LINES.c.refunded_units))
                .where(AUTH_LINES.c.channel == auth["channel"], AUTH_LINES.c.order_id == auth["order_id"])
                .group_by(AUTH_LINES.c.line_id))).all()}
            closed: list[ClosedLine] = []
            for line in decided.lines:
                accepted = min(max(request.accepted.get(line.line_no, 0), 0), line.authorized)
                ship = by_line.get(line.line_id)
                before = refunded_before.get(line.line_id, 0)
                units = 0 if ship is None else max(0, min(accepted, ship.quantity - before))
                amount = (rules.refund_of_line(ship.amount or Decimal(0), ship.quantity, before, units)
                          if ship is not None else Decimal("0.00"))
                refunded_before[line.line_id] = before + units
                closed.append(ClosedLine(line_no=line.line_no, line_id=line.line_id, refunded_units=units,
                                         refund=amount, released=line.authorized - units,
                                         sale_location_id=line.sale_location_id))
                await conn.execute(update(AUTH_LINES).where(
                    AUTH_LINES.c.authorization_key == request.key, AUTH_LINES.c.line_no == line.line_no,
                ).values(refunded_units=units, refunded_amount=amount, released=line.authorized - units))
            result = CloseReturnResult(key=request.key, applied=True, lines=closed,
                                       total=round_money(sum((c.refund for c in closed), start=Decimal(0))))
            await conn.execute(update(AUTHORIZATIONS).where(AUTHORIZATIONS.c.key == request.key).values(
                status="closed", closed_at=func.now(),
                close_result={"request_hash": fingerprint, "result": result.model_dump(mode="json")}))
        return result
