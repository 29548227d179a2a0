"""Write once by key: the idempotency every stub adapter, the door and the registries share.

A record is inserted under its key (the table's primary key) once; a retry finds the first record and gets
its answer; the same key carrying a different request (another fingerprint) is an IdempotencyConflict.
"""
import hashlib
import json
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Row, Table, and_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.errors import DomainError, ErrorType


def request_hash(payload: BaseModel | dict[str, Any], *, exclude: set[str] | None = None) -> str:
    """A stable fingerprint of what a request asks for, to tell a retry from a different request on one key."""
    data = payload.model_dump(mode="json", exclude=exclude) if isinstance(payload, BaseModel) else payload
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def conflict(key: str, what: str) -> DomainError:
    return DomainError(
        ErrorType.IDEMPOTENCY_CONFLICT,
        f"key {key!r} was already used for a different {what}; a retry must send the same request",
        key=key,
    )


def _key_of(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    return {c.name: values[c.name] for c in table.primary_key.columns}


def _label(key: dict[str, Any]) -> str:
    return "/".join(str(v) for v in key.values())


async def first_record(conn: AsyncConnection, table: Table, key: dict[str, Any], *, what: str,
                fingerprint: str | None = None, fingerprint_column: str = "request_hash") -> Row | None:
    """The record stored under `key` (primary-key columns -> values), or None if the key is new. With a
    `fingerprint`, a record made for a different request is refused (IdempotencyConflict)."""
    row = (await conn.execute(select(table).where(and_(*(table.c[k] == v for k, v in key.items()))))).first()
    if row is not None and fingerprint is not None and row._mapping[fingerprint_column] != fingerprint:
        raise conflict(_label(key), what)
    return row


async def write_once(conn: AsyncConnection, table: Table, values: dict[str, Any], *, what: str,
                     fingerprint_column: str | None = "request_hash") -> Row | None:
    """Insert the record; None when this call wrote it, else the first record under its key (checked to carry
    the same fingerprint, unless `fingerprint_column` is None). A concurrent writer of the same key waits on
    the primary key until the first commits, then finds its record (None again if the first was removed
    meanwhile, which only the door's unanswered claims ever are: the key is free)."""
    inserted = await conn.scalar(insert(table).values(**values).on_conflict_do_nothing(
        index_elements=list(table.primary_key.columns)).returning(table.primary_key.columns[0]))
    if inserted is not None:
        return None
    fingerprint = values[fingerprint_column] if fingerprint_column is not None else None
    return await first_record(conn, table, _key_of(table, values), what=what, fingerprint=fingerprint,
                       fingerprint_column=fingerprint_column or "request_hash")
