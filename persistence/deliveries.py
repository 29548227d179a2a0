"""The door's delivery records (revision 0003): one per (source, webhook-id), claimed by the first delivery,
answered once it is dispatched, removed when its dispatch failed, so a redelivery gets the first answer."""
from typing import Any

from pydantic import BaseModel
from sqlalchemy import delete, func, update
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.models import WebhookDeliveryRow
from persistence.write_once import write_once

DELIVERIES = WebhookDeliveryRow.__table__  # type: ignore[attr-defined]


class Delivery(BaseModel):
    body_sha256: str
    status: str  # pending | done
    http_status: int | None
    response: dict[str, Any] | None
    workflow_id: str


def _of(source: str, webhook_id: str) -> tuple:
    return DELIVERIES.c.source == source, DELIVERIES.c.webhook_id == webhook_id


async def claim(engine: AsyncEngine, source: str, webhook_id: str, event_type: str, workflow_id: str,
                body_sha256: str) -> Delivery | None:
    """Claim the delivery (pending); None when this call won, else the first delivery's record. The same
    webhook-id with another body is an IdempotencyConflict."""
    async with engine.begin() as conn:
        first = await write_once(conn, DELIVERIES, dict(
            source=source, webhook_id=webhook_id, type=event_type, workflow_id=workflow_id,
            body_sha256=body_sha256), what="webhook body", fingerprint_column="body_sha256")
    return None if first is None else Delivery.model_validate(dict(first._mapping))


async def answer(engine: AsyncEngine, source: str, webhook_id: str, http_status: int, response: dict) -> None:
    """Record the answer the delivery was given (redeliveries answer it)."""
    async with engine.begin() as conn:
        await conn.execute(update(DELIVERIES).where(*_of(source, webhook_id)).values(
            status="done", http_status=http_status, response=response, answered_at=func.now()))


async def forget(engine: AsyncEngine, source: str, webhook_id: str) -> None:
    """Remove an unanswered claim: the next delivery of this webhook-id is a first delivery again."""
    async with engine.begin() as conn:
        await conn.execute(delete(DELIVERIES).where(*_of(source, webhook_id), DELIVERIES.c.status == "pending"))
