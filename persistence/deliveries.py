"""The door's delivery records (revision 0003): one per (source, webhook-id), claimed by the first delivery,
answered once it is dispatched, removed when its dispatch failed, so a redelivery gets the first answer.

A delivery costs the door two statements, each one round trip in autocommit (docs/door.md, "Round trips"):
`arrive` (the registry lookup, the unopened check and the claim) before dispatch, `answer` after it. Both are
built once here, with bound parameters, so a request pays neither statement construction nor a BEGIN/COMMIT."""
from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    Boolean,
    String,
    bindparam,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.late import ClosedProcess
from domain.routing import OPENING_EVENTS
from persistence.engine import autocommit
from persistence.models import ProcessRegistryRow, UnopenedProcessRow, WebhookDeliveryRow
from persistence.write_once import conflict, write_once

DELIVERIES = WebhookDeliveryRow.__table__  # type: ignore[attr-defined]
REGISTRY = ProcessRegistryRow.__table__  # type: ignore[attr-defined]
UNOPENED = UnopenedProcessRow.__table__  # type: ignore[attr-defined]
OPENING_TYPES = sorted(str(t) for t in OPENING_EVENTS)
CLAIMED = ("source", "webhook_id", "type", "workflow_id", "body_sha256")


class Delivery(BaseModel):
    body_sha256: str
    status: str  # pending | done
    http_status: int | None
    response: dict[str, Any] | None
    workflow_id: str


class Arrival(BaseModel):
    """What the door learns in one statement before it dispatches a delivery."""

    claimed: bool  # this delivery now holds the claim (prior is None)
    prior: Delivery | None  # the first delivery of this webhook-id: this one is a redelivery
    closed: ClosedProcess | None  # the ended process the delivery's workflow ID names


def _of(source: str, webhook_id: str) -> tuple:
    return DELIVERIES.c.source == source, DELIVERIES.c.webhook_id == webhook_id


def opening_delivered(opener: Any) -> Any:  # noqa: ANN401 - a value or a bind parameter
    """Whether the opening event of `opener` has a delivery record: its process opened (arrive, unopened.admit)."""
    return exists().where(DELIVERIES.c.workflow_id == opener, DELIVERIES.c.type.in_(OPENING_TYPES))


def _arrive_statement() -> Any:
    """WITH prior, closed, claimed AS (INSERT ... WHERE admitted AND no prior ON CONFLICT DO NOTHING): the claim
    is made only when no admission check is needed (an opening event, an ended process, or a process whose opening
    delivery came), so a process nobody opened still goes through `unopened.admit` and its locks."""
    d, reg = DELIVERIES, REGISTRY
    prior = select(d).where(d.c.source == bindparam("source"), d.c.webhook_id == bindparam("webhook_id")) \
        .cte("prior")
    closed = select(reg).where(reg.c.workflow_id == bindparam("workflow_id")).cte("closed")
    admitted = or_(bindparam("opens", type_=Boolean),
                   exists(select(literal_column("1")).select_from(closed)),
                   opening_delivered(bindparam("opener")))
    values = select(*(bindparam(name, type_=String) for name in CLAIMED)) \
        .where(admitted, ~exists(select(literal_column("1")).select_from(prior)))
    claimed = insert(d).from_select(list(CLAIMED), values) \
        .on_conflict_do_nothing(index_elements=list(d.primary_key.columns)).returning(d.c.source).cte("claimed")
    base = select(exists(select(literal_column("1")).select_from(claimed)).label("claimed")).subquery("arrival")
    return select(base.c.claimed, *(c.label("prior_" + c.name) for c in prior.c),
                  *(c.label("closed_" + c.name) for c in closed.c)) \
        .select_from(base.outerjoin(prior, true()).outerjoin(closed, true()))


ARRIVE = _arrive_statement()
ANSWER = update(DELIVERIES).where(DELIVERIES.c.source == bindparam("k_source"),
                                  DELIVERIES.c.webhook_id == bindparam("k_webhook_id")) \
    .values(status="done", http_status=bindparam("http_status"), response=bindparam("response"),
            answered_at=func.now())
CLEARED = delete(UNOPENED).where(UNOPENED.c.opener == bindparam("opener")).returning(UNOPENED.c.opener).cte("cleared")
ANSWER_OPENED = ANSWER.add_cte(CLEARED)


def _prefixed(row: Any, prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in row.items() if k.startswith(prefix)}


async def arrive(engine: AsyncEngine, source: str, webhook_id: str, event_type: str, workflow_id: str,
                 body_sha256: str, *, opens: bool, opener: str) -> Arrival:
    """Claim the delivery when it needs no admission check, and say what the door must know, in one statement.
    Neither claimed nor prior: the process was never opened (admit it, then `claim`), or a concurrent first
    delivery committed after this statement began (`claim` finds it). The same webhook-id with another body is an
    IdempotencyConflict."""
    async with autocommit(engine) as conn:
        row = (await conn.execute(ARRIVE, dict(
            source=source, webhook_id=webhook_id, type=event_type, workflow_id=workflow_id,
            body_sha256=body_sha256, opens=opens, opener=opener))).mappings().one()
    prior = _prefixed(row, "prior_")
    closed = _prefixed(row, "closed_")
    if prior["source"] is not None and prior["body_sha256"] != body_sha256:
        raise conflict(f"{source}/{webhook_id}", "webhook body")
    return Arrival(
        claimed=row["claimed"],
        prior=Delivery.model_validate(prior) if prior["source"] is not None else None,
        closed=ClosedProcess.model_validate({k: v for k, v in closed.items() if k != "recorded_at"})
        if closed["workflow_id"] is not None else None)


async def claim(engine: AsyncEngine, source: str, webhook_id: str, event_type: str, workflow_id: str,
                body_sha256: str) -> Delivery | None:
    """Claim the delivery (pending); None when this call won, else the first delivery's record. The same
    webhook-id with another body is an IdempotencyConflict. (The door's path after `unopened.admit`.)"""
    async with engine.begin() as conn:
        first = await write_once(conn, DELIVERIES, dict(
            source=source, webhook_id=webhook_id, type=event_type, workflow_id=workflow_id,
            body_sha256=body_sha256), what="webhook body", fingerprint_column="body_sha256")
    return None if first is None else Delivery.model_validate(dict(first._mapping))


async def answer(engine: AsyncEngine, source: str, webhook_id: str, http_status: int, response: dict, *,
                 opened: str | None = None) -> None:
    """Record the answer the delivery was given (redeliveries answer it). `opened`: the delivery was the opening
    event of this workflow ID, so what waited for it no longer counts against its source (persistence.unopened),
    cleared in the same statement."""
    params = dict(k_source=source, k_webhook_id=webhook_id, http_status=http_status, response=response)
    async with autocommit(engine) as conn:
        if opened is None:
            await conn.execute(ANSWER, params)
        else:
            await conn.execute(ANSWER_OPENED, {**params, "opener": opened})


async def forget(engine: AsyncEngine, source: str, webhook_id: str) -> None:
    """Remove an unanswered claim: the next delivery of this webhook-id is a first delivery again."""
    async with engine.begin() as conn:
        await conn.execute(delete(DELIVERIES).where(*_of(source, webhook_id), DELIVERIES.c.status == "pending"))
