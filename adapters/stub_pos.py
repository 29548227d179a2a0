"""The stub POS / payment gateway on PostgreSQL: captures against an authorization (never over it), voids and
refunds, each idempotent by its key (docs/persistence.md)."""
import hashlib
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.pos import (
    CaptureInput,
    CaptureResult,
    PaymentLookupInput,
    PaymentLookupResult,
    RefundInput,
    RefundResult,
    VoidInput,
    VoidResult,
)
from domain.errors import DomainError, ErrorType
from persistence.engine import autocommit
from persistence.models import CaptureRow, PaymentRow, RefundRow, VoidRow
from persistence.write_once import first_record, request_hash

PAYMENTS = PaymentRow.__table__
CAPTURES = CaptureRow.__table__
VOIDS = VoidRow.__table__
REFUNDS = RefundRow.__table__


def _invalid(message: str, **details: object) -> DomainError:
    return DomainError(ErrorType.INVALID_TRANSITION, message, **details)


async def _captured(conn: AsyncConnection, payment_id: str) -> Decimal:
    total = await conn.scalar(select(func.coalesce(func.sum(CAPTURES.c.amount), 0)).where(
        CAPTURES.c.payment_id == payment_id))
    return Decimal(total)


async def _replay(conn: AsyncConnection, table, key: str, fingerprint: str, what: str) -> dict | None:  # noqa: ANN001
    """The first result stored under `key`, or None if the key is new (checked under the caller's lock, before
    the result is computed: it depends on what the payment holds)."""
    row = await first_record(conn, table, {"key": key}, what=what, fingerprint=fingerprint)
    return None if row is None else {**row.result, "applied": False}


class PostgresPos:
    """PosPort on PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def _lock_payment(self, conn: AsyncConnection, payment_id: str, authorized: Decimal | None,
                            currency: str | None):  # noqa: ANN201
        if authorized is not None:
            await conn.execute(insert(PAYMENTS).values(
                payment_id=payment_id, authorized_amount=authorized, currency=currency or "USD",
            ).on_conflict_do_nothing(index_elements=["payment_id"]))
        return (await conn.execute(
            select(PAYMENTS).where(PAYMENTS.c.payment_id == payment_id).with_for_update()
        )).mappings().first()

    async def capture(self, capture: CaptureInput) -> CaptureResult:
        if capture.amount <= 0:
            raise _invalid(f"a capture is positive, got {capture.amount}", key=capture.key)
        fingerprint = request_hash(capture)
        async with self.engine.begin() as conn:
            payment = await self._lock_payment(conn, capture.payment_id, capture.authorized_amount, capture.currency)
            assert payment is not None
            # under the payment lock: a same-key racer sees the first capture once it has committed
            if (first := await _replay(conn, CAPTURES, capture.key, fingerprint, "capture")) is not None:
                return CaptureResult.model_validate(first)
            if payment["voided_at"] is not None:
                raise _invalid(f"payment {capture.payment_id} was voided; nothing is left to capture",
                               payment_id=capture.payment_id)
            if payment["currency"] != capture.currency:
                raise _invalid(f"payment {capture.payment_id} is in {payment['currency']}, not {capture.currency}",
                               payment_id=capture.payment_id)
            captured = await _captured(conn, capture.payment_id)
            authorized = Decimal(payment["authorized_amount"])
            if captured + capture.amount > authorized:
                raise DomainError(
                    ErrorType.OVER_CAPTURE,
                    f"capturing {capture.amount} on {capture.payment_id} would exceed the authorization "
                    f"({captured} of {authorized} captured)",
                    payment_id=capture.payment_id, captured=str(captured), authorized=str(authorized),
                    requested=str(capture.amount),
                )
            result = CaptureResult(key=capture.key, applied=True, captured_total=captured + capture.amount)
            await conn.execute(insert(CAPTURES).values(
                key=capture.key, payment_id=capture.payment_id, amount=capture.amount, currency=capture.currency,
                reference=capture.reference, request_hash=fingerprint, result=result.model_dump(mode="json"),
            ))
        return result

    async def void(self, void: VoidInput) -> VoidResult:
        """Release what is left of the authorization. A payment never seen before is registered if the
        caller says what was authorized; otherwise the void is recorded with nothing to release."""
        fingerprint = request_hash(void)
        async with self.engine.begin() as conn:
            payment = await self._lock_payment(conn, void.payment_id, void.authorized_amount, void.currency)
            if payment is None:
                await conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(void.key))))
            if (first := await _replay(conn, VOIDS, void.key, fingerprint, "void")) is not None:
                return VoidResult.model_validate(first)
            released = Decimal(0)
            if payment is not None and payment["voided_at"] is None:
                released = Decimal(payment["authorized_amount"]) - await _captured(conn, void.payment_id)
                await conn.execute(update(PAYMENTS).where(PAYMENTS.c.payment_id == void.payment_id)
                                   .values(voided_at=func.now()))
            result = VoidResult(key=void.key, applied=True, voided_amount=released)
            await conn.execute(insert(VOIDS).values(
                key=void.key, payment_id=void.payment_id, amount=released, reason=void.reason,
                request_hash=fingerprint, result=result.model_dump(mode="json"),
            ))
        return result

    async def refund(self, refund: RefundInput) -> RefundResult:
        """Pay money back for a return. Against a known payment, refunds never exceed what was captured."""
        if refund.amount <= 0:
            raise _invalid(f"a refund is positive, got {refund.amount}", key=refund.key)
        fingerprint = request_hash(refund)
        async with self.engine.begin() as conn:
            payment = None
            if refund.payment_id is not None:
                payment = await self._lock_payment(conn, refund.payment_id, None, None)
            if payment is None:
                await conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(refund.key))))
            if (first := await _replay(conn, REFUNDS, refund.key, fingerprint, "refund")) is not None:
                return RefundResult.model_validate(first)
            if payment is not None:
                captured = await _captured(conn, refund.payment_id or "")
                refunded = Decimal(await conn.scalar(select(func.coalesce(func.sum(REFUNDS.c.amount), 0)).where(
                    REFUNDS.c.payment_id == refund.payment_id)))
                if refunded + refund.amount > captured:
                    raise DomainError(
                        ErrorType.OVER_CAPTURE,
                        f"refunding {refund.amount} on {refund.payment_id} would exceed what was captured "
                        f"({refunded} of {captured} refunded)",
                        payment_id=refund.payment_id, captured=str(captured), refunded=str(refunded),
                    )
            reference = "rf_" + hashlib.sha256(refund.key.encode()).hexdigest()[:20]
            result = RefundResult(key=refund.key, applied=True, refund_reference=reference)
            await conn.execute(insert(REFUNDS).values(
                key=refund.key, payment_id=refund.payment_id, return_id=refund.return_id, amount=refund.amount,
                currency=refund.currency, refund_reference=reference, request_hash=fingerprint,
                result=result.model_dump(mode="json"),
            ))
        return result

    async def payment_for(self, lookup: PaymentLookupInput) -> PaymentLookupResult:
        """The one payment whose captures reference these shipments; None if none or several (ambiguous: a
        shipment_id is only unique within its order, so a refund is never sent to a guessed payment)."""
        if not lookup.references:
            return PaymentLookupResult()
        async with autocommit(self.engine) as conn:
            found = sorted(r for (r,) in (await conn.execute(
                select(CAPTURES.c.payment_id).where(CAPTURES.c.reference.in_(lookup.references)).distinct())).all())
        return PaymentLookupResult(payment_id=found[0] if len(found) == 1 else None, candidates=found)
