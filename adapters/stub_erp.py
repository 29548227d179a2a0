"""The stub ERP on PostgreSQL: item master, the inventory ledger and the journal. `post_movement` is the one way
stock changes, in one transaction (docs/persistence.md)."""
from collections import defaultdict
from datetime import datetime
from decimal import Decimal

from cachetools import LRUCache
from sqlalchemy import bindparam, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.erp import AvailabilityRow, FinancialPosting, MovementResult, PostingResult
from domain.errors import DomainError, ErrorType
from domain.inventory import Bucket, MovementKind, MovementRequest, apply, deltas
from domain.items import Item, Location, LocationKind
from domain.journal import JournalLine, financial_lines, movement_postings
from persistence.engine import autocommit
from persistence.models import (
    BalanceRow,
    ItemRow,
    JournalEntryRow,
    JournalLineRow,
    LocationRow,
    MovementBatchRow,
    MovementRow,
)
from persistence.write_once import request_hash, write_once

ITEMS = ItemRow.__table__
LOCATIONS = LocationRow.__table__
BALANCES = BalanceRow.__table__
BATCHES = MovementBatchRow.__table__
MOVEMENTS = MovementRow.__table__
ENTRIES = JournalEntryRow.__table__
LINES = JournalLineRow.__table__
MASTER_DATA_KEPT = 100_000  # items and locations an adapter keeps once read (each a few hundred bytes)


def _item(row) -> Item:  # noqa: ANN001 - a RowMapping
    return Item(
        sku=row["sku"], name=row["name"], barcode=row["barcode"], units=row["units"],
        unit_cost=row["unit_cost"], price=row["price"], currency=row["currency"],
    )


def _location(row) -> Location:  # noqa: ANN001
    return Location(
        location_id=row["location_id"], name=row["name"], kind=LocationKind(row["kind"]),
        legal_entity=row["legal_entity"],
    )


def _invalid(message: str, **details: object) -> DomainError:
    return DomainError(ErrorType.INVALID_TRANSITION, message, **details)


class PostgresErp:
    """ErpPort on PostgreSQL.

    Items and locations are written once and never rewritten (`add_master_data` inserts only: the journal was
    posted at an item's standard cost), so a row once read stays true: the adapter keeps what it has read and
    reads only what it has not (an unknown SKU or location is asked again every time). Every posting needs the
    items' costs and the locations' legal entities; this saves it those reads, as an ERP serves its master
    data from memory.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._items: LRUCache[str, Item] = LRUCache(maxsize=MASTER_DATA_KEPT)
        self._locations: LRUCache[str, Location] = LRUCache(maxsize=MASTER_DATA_KEPT)

    async def _known_items(self, conn: AsyncConnection, skus: list[str]) -> dict[str, Item]:
        found = {sku: self._items[sku] for sku in skus if sku in self._items}
        if missing := [sku for sku in skus if sku not in found]:
            read = await _items(conn, missing)
            self._items.update(read)
            found |= read
        return found

    async def _known_locations(self, conn: AsyncConnection, location_ids: list[str]) -> dict[str, Location]:
        found = {loc: self._locations[loc] for loc in location_ids if loc in self._locations}
        if missing := [loc for loc in location_ids if loc not in found]:
            read = await _locations(conn, missing)
            self._locations.update(read)
            found |= read
        return found

    # --- master data -------------------------------------------------------------------------------------
    async def items(self, skus: list[str]) -> dict[str, Item]:
        async with autocommit(self.engine) as conn:
            return await self._known_items(conn, skus)

    async def items_page(self, after: str | None, limit: int) -> list[Item]:
        """Up to `limit` items by SKU, after `after` (the read API's cursor)."""
        query = select(ITEMS).order_by(ITEMS.c.sku).limit(limit)
        if after is not None:
            query = query.where(ITEMS.c.sku > after)
        async with autocommit(self.engine) as conn:
            return [_item(r) for r in (await conn.execute(query)).mappings()]

    async def locations_page(self, after: str | None, limit: int) -> list[Location]:
        """Up to `limit` locations by ID, after `after` (the read API's cursor)."""
        query = select(LOCATIONS).order_by(LOCATIONS.c.location_id).limit(limit)
        if after is not None:
            query = query.where(LOCATIONS.c.location_id > after)
        async with autocommit(self.engine) as conn:
            return [_location(r) for r in (await conn.execute(query)).mappings()]

    async def locations(self, location_ids: list[str] | None) -> dict[str, Location]:
        async with autocommit(self.engine) as conn:
            if location_ids is None:  # all of them: only the database knows which exist
                return await _locations(conn, None)
            return await self._known_locations(conn, location_ids)

    async def add_master_data(
        self, items: list[Item], locations: list[Location], categories: dict[str, str] | None = None
    ) -> int:
        """Insert items and locations that do not exist yet (never rewrites one: costs are standard costs
        the journal was posted at). Returns how many rows were new."""
        categories = categories or {}
        added = 0
        async with self.engine.begin() as conn:
            if items:
                res = await conn.execute(
                    insert(ITEMS)
                    .values([
                        {**i.model_dump(include={"sku", "name", "barcode", "units", "unit_cost", "price",
                                                 "currency"}), "category": categories.get(i.sku, "general")}
                        for i in items
                    ])
                    .on_conflict_do_nothing(index_elements=["sku"])
                    .returning(ITEMS.c.sku)
                )
                added += len(res.all())
            if locations:
                res = await conn.execute(
                    insert(LOCATIONS)
                    .values([{**loc.model_dump(), "kind": str(loc.kind)} for loc in locations])
                    .on_conflict_do_nothing(index_elements=["location_id"])
                    .returning(LOCATIONS.c.location_id)
                )
                added += len(res.all())
        return added

    # --- stock --------------------------------------------------------------------------------------------
    async def availability(self, skus: list[str], location_ids: list[str] | None) -> list[AvailabilityRow]:
        """The raw `available` bucket for each known SKU at each (selected) location, zeros included."""
        b = BALANCES.alias("b")
        query = (
            select(ITEMS.c.sku, LOCATIONS.c.location_id, func.coalesce(b.c.quantity, 0).label("quantity"))
            .select_from(
                ITEMS.join(LOCATIONS, literal(True)).outerjoin(
                    b,
                    (b.c.sku == ITEMS.c.sku)
                    & (b.c.location_id == LOCATIONS.c.location_id)
                    & (b.c.bucket == Bucket.AVAILABLE.value),
                )
            )
            .where(ITEMS.c.sku.in_(skus))
            .order_by(ITEMS.c.sku, LOCATIONS.c.location_id)
        )
        if location_ids is not None:
            query = query.where(LOCATIONS.c.location_id.in_(location_ids))
        async with autocommit(self.engine) as conn:
            rows = (await conn.execute(query)).all()
        return [
            AvailabilityRow(sku=sku, location_id=loc, available=qty, on_hand_available=qty) for sku, loc, qty in rows
        ]

    async def stock(self, skus: list[str], location_ids: list[str] | None = None) -> dict[str, dict[str, dict[str, int]]]:
        """sku -> location -> bucket -> units (base units), for the read API and the reconciliation."""
        query = select(BALANCES.c.sku, BALANCES.c.location_id, BALANCES.c.bucket, BALANCES.c.quantity).where(
            BALANCES.c.sku.in_(skus)
        )
        if location_ids is not None:
            query = query.where(BALANCES.c.location_id.in_(location_ids))
        out: dict[str, dict[str, dict[str, int]]] = {}
        async with autocommit(self.engine) as conn:
            for sku, loc, bucket, qty in (await conn.execute(query.order_by(*BALANCES.primary_key.columns))).all():
                out.setdefault(sku, {}).setdefault(loc, {b.value: 0 for b in Bucket})[bucket] = qty
        return out

    async def stock_at(self, skus: list[str], location_id: str,
                       as_of: datetime | None) -> dict[str, dict[str, int]]:
        """sku -> bucket -> units at `location_id` for the known SKUs. Now: the balances. As of a past moment: the
        sum of the append-only ledger's deltas written up to then (what a count at that moment should find)."""
        if as_of is None:
            query = (select(BALANCES.c.sku, BALANCES.c.bucket, BALANCES.c.quantity)
                     .where(BALANCES.c.sku.in_(skus), BALANCES.c.location_id == location_id))
        else:
            query = (select(MOVEMENTS.c.sku, MOVEMENTS.c.bucket, func.sum(MOVEMENTS.c.delta))
                     .where(MOVEMENTS.c.sku.in_(skus), MOVEMENTS.c.location_id == location_id,
                            MOVEMENTS.c.created_at <= as_of)
                     .group_by(MOVEMENTS.c.sku, MOVEMENTS.c.bucket))
        async with autocommit(self.engine) as conn:
            known = set(await self._known_items(conn, skus))
            rows = (await conn.execute(query)).all()
        out = {sku: {b.value: 0 for b in Bucket} for sku in skus if sku in known}
        for sku, bucket, quantity in rows:
            out[sku][bucket] = int(quantity)
        return out

    # --- the ledger ---------------------------------------------------------------------------------------
    async def post_movement(self, request: MovementRequest) -> MovementResult:
        kind = MovementKind(request.kind)
        if kind is MovementKind.ADJUST and not request.reason_code:
            raise _invalid("adjust needs a reason_code", kind=str(kind))
        per_line = [deltas(kind, line) for line in request.lines]  # InvalidTransition for an illegal line
        if not per_line:
            raise _invalid("a movement has at least one line", kind=str(kind))
        fingerprint = _movement_fingerprint(request)
        try:
            async with self.engine.begin() as conn:
                return await self._post_movement(conn, request, kind, per_line, fingerprint)
        except IntegrityError as exc:  # the database's own guard: only reachable if the rule above were wrong
            if "balances_quantity_not_negative" in str(exc.orig):
                raise DomainError(ErrorType.INSUFFICIENT_STOCK, f"{request.key}: a bucket would go negative",
                                  key=request.key) from exc
            raise

    async def _post_movement(self, conn: AsyncConnection, request: MovementRequest, kind: MovementKind,
                             per_line: list, fingerprint: str) -> MovementResult:
        skus = sorted({line.sku for line in request.lines})
        location_ids = sorted(
            {line.location_id for line in request.lines}
            | {line.to_location_id for line in request.lines if line.to_location_id}
            | {line.sale_location_id for line in request.lines if line.sale_location_id}
        )
        items = await self._known_items(conn, skus)
        if missing := [s for s in skus if s not in items]:
            raise DomainError(ErrorType.UNKNOWN_SKU, f"unknown SKU {', '.join(missing)}", skus=missing)
        locations = await self._known_locations(conn, location_ids)
        if missing := [loc for loc in location_ids if loc not in locations]:
            raise DomainError(ErrorType.UNKNOWN_LOCATION, f"unknown location {', '.join(missing)}",
                              location_ids=missing)
        entries = _journal(request, kind, items, {k: v.legal_entity for k, v in locations.items()})
        result = MovementResult(key=request.key, applied=True, journal_keys=sorted(entries))

        # 1. the idempotency row; a same-key racer waits here for the first to commit
        first = await write_once(conn, BATCHES, dict(
            key=request.key, kind=str(kind), request_hash=fingerprint, result=result.model_dump(mode="json"),
            workflow_id=request.workflow_id, run_id=request.run_id), what="movement")
        if first is not None:
            return MovementResult.model_validate({**first.result, "applied": False})

        # 2. lock (or create) the touched balances, in one deterministic order
        keys = sorted({(d.sku, d.location_id, d.bucket.value) for ds in per_line for d in ds})
        locked = await conn.execute(
            insert(BALANCES)
            .values([{"sku": s, "location_id": loc, "bucket": b, "quantity": 0} for s, loc, b in keys])
            .on_conflict_do_update(index_elements=["sku", "location_id", "bucket"],
                                   set_={"quantity": BALANCES.c.quantity})
            .returning(BALANCES.c.sku, BALANCES.c.location_id, BALANCES.c.bucket, BALANCES.c.quantity)
        )
        current = {(s, loc, Bucket(b)): q for s, loc, b, q in locked.all()}

        # 3. the pure rule decides
        after = apply(current, kind, list(request.lines))

        # 4. write
        changed = [
            {"k_sku": s, "k_loc": loc, "k_bucket": b.value, "q": q}
            for (s, loc, b), q in sorted(after.items()) if q != current.get((s, loc, b))
        ]
        if changed:
            await conn.execute(
                update(BALANCES)
                .where(BALANCES.c.sku == bindparam("k_sku"))
                .where(BALANCES.c.location_id == bindparam("k_loc"))
                .where(BALANCES.c.bucket == bindparam("k_bucket"))
                .values(quantity=bindparam("q"), updated_at=func.now()),
                changed,
            )
        await conn.execute(insert(MOVEMENTS), [
            {"key": request.key, "line": i, "kind": str(kind), "sku": d.sku, "location_id": d.location_id,
             "bucket": d.bucket.value, "delta": d.delta, "reason": request.reason, "reason_code": request.reason_code,
             "workflow_id": request.workflow_id, "run_id": request.run_id, "reference": request.reference}
            for i, ds in enumerate(per_line) for d in ds
        ])
        await _write_entries(conn, entries, source_kind=str(kind), memo=f"{kind}: {request.reason}",
                             source_key=request.key, workflow_id=request.workflow_id, run_id=request.run_id,
                             reference=request.reference)
        return result

    # --- money ----------------------------------------------------------------------------------------------
    async def post_financial(self, posting: FinancialPosting) -> PostingResult:
        if posting.amount < 0:
            raise _invalid(f"{posting.event}: amount must not be negative, got {posting.amount}", key=posting.key)
        if posting.amount == 0:
            return PostingResult(key=posting.key, applied=False)  # nothing to post: no value changed hands
        # fee and difference join the fingerprint only when set, so a key posted before they existed still replays
        fingerprint = request_hash(posting, exclude={"run_id", "memo"} | (
            set() if posting.fee or posting.difference else {"fee", "difference"}))
        try:
            lines = financial_lines(posting.event, posting.amount, fee=posting.fee, difference=posting.difference)
        except ValueError as bad:
            raise _invalid(str(bad), key=posting.key) from None
        async with self.engine.begin() as conn:
            entity = posting.legal_entity
            if entity is None:
                if posting.location_id is None:
                    raise _invalid("a financial posting names its legal_entity or a location_id", key=posting.key)
                locations = await self._known_locations(conn, [posting.location_id])
                if posting.location_id not in locations:
                    raise DomainError(ErrorType.UNKNOWN_LOCATION, f"unknown location {posting.location_id}",
                                      location_ids=[posting.location_id])
                entity = locations[posting.location_id].legal_entity
            first = await write_once(conn, ENTRIES, dict(
                key=posting.key, source_key=posting.key, source_kind=str(posting.event), legal_entity=entity,
                currency=posting.currency, memo=posting.memo, request_hash=fingerprint,
                workflow_id=posting.workflow_id, run_id=posting.run_id, reference=posting.reference),
                what="financial posting")
            if first is not None:
                return PostingResult(key=posting.key, applied=False)
            await conn.execute(insert(LINES), [
                {"entry_key": posting.key, "line": n, "account": str(jl.account), "debit": jl.debit,
                 "credit": jl.credit, "location_id": posting.location_id}
                for n, jl in enumerate(lines)
            ])
        return PostingResult(key=posting.key, applied=True)


# --- helpers ------------------------------------------------------------------------------------------------
def _movement_fingerprint(request: MovementRequest) -> str:
    """What the request asks for (not its run or wording). `sale_location_id` (release 2) counts only where set,
    so a release-1.0 movement retried after the upgrade still matches its first call."""
    exclude: dict = {"run_id": True, "reason": True}
    unset = [i for i, line in enumerate(request.lines) if line.sale_location_id is None]
    if unset:
        exclude["lines"] = {i: {"sale_location_id"} for i in unset}
    return request_hash(request.model_dump(mode="json", exclude=exclude))


async def _items(conn: AsyncConnection, skus: list[str]) -> dict[str, Item]:
    rows = (await conn.execute(select(ITEMS).where(ITEMS.c.sku.in_(skus)))).mappings()
    return {r["sku"]: _item(r) for r in rows}


async def _locations(conn: AsyncConnection, location_ids: list[str] | None) -> dict[str, Location]:
    query = select(LOCATIONS).order_by(LOCATIONS.c.location_id)
    if location_ids is not None:
        query = query.where(LOCATIONS.c.location_id.in_(location_ids))
    return {r["location_id"]: _location(r) for r in (await conn.execute(query)).mappings()}


JournalDraft = dict[str, tuple[str, str, list[tuple[JournalLine, str, str]]]]  # key -> (entity, currency, lines)


def _journal(request: MovementRequest, kind: MovementKind, items: dict[str, Item],
             entity_of: dict[str, str]) -> JournalDraft:
    """The movement's journal entries: one per legal entity (and currency), at standard unit cost."""
    grouped: dict[tuple[str, str], list[tuple[JournalLine, str, str]]] = defaultdict(list)
    for line in request.lines:
        item = items[line.sku]
        for entity, jlines in movement_postings(kind, line, Decimal(item.unit_cost), entity_of):
            if entity_of[line.location_id] == entity:
                at = line.location_id
            elif line.sale_location_id and entity_of[line.sale_location_id] == entity:
                at = line.sale_location_id
            else:
                at = line.to_location_id or line.location_id
            grouped[(entity, item.currency)].extend((jl, line.sku, at) for jl in jlines if jl.debit or jl.credit)
    per_entity: dict[str, int] = defaultdict(int)
    for entity, _ in grouped:
        per_entity[entity] += 1
    out: JournalDraft = {}
    for (entity, currency), jlines in grouped.items():
        if not jlines:
            continue
        key = f"{request.key}@{entity}" + (f":{currency}" if per_entity[entity] > 1 else "")
        out[key] = (entity, currency, jlines)
    return out


async def _write_entries(conn: AsyncConnection, entries: JournalDraft, *, source_kind: str, memo: str,
                         source_key: str, workflow_id: str | None, run_id: str | None,
                         reference: str | None) -> None:
    if not entries:
        return
    await conn.execute(insert(ENTRIES), [
        {"key": key, "source_key": source_key, "source_kind": source_kind, "legal_entity": entity,
         "currency": currency, "memo": memo, "request_hash": None, "workflow_id": workflow_id, "run_id": run_id,
         "reference": reference}
        for key, (entity, currency, _) in sorted(entries.items())
    ])
    await conn.execute(insert(LINES), [
        {"entry_key": key, "line": n, "account": str(jl.account), "debit": jl.debit, "credit": jl.credit,
         "sku": sku, "location_id": loc}
        for key, (_, _, jlines) in sorted(entries.items()) for n, (jl, sku, loc) in enumerate(jlines)
    ])
