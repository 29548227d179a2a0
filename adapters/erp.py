"""The ERP port: the messages the workflows, activities and adapters exchange, and the Protocol an
implementation satisfies (the PostgreSQL stub, or a team's real system)."""
from datetime import datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, Field

from domain.inventory import MovementRequest
from domain.items import Item, Location
from domain.journal import FinancialEvent
from domain.money import Amount


class LookupItemsInput(BaseModel):
    skus: list[str]


class LookupItemsResult(BaseModel):
    items: dict[str, Item]  # sku -> item, for the known ones
    unknown: list[str] = Field(default_factory=list)


class LookupLocationsInput(BaseModel):
    location_ids: list[str] | None = None  # None: all


class LookupLocationsResult(BaseModel):
    locations: dict[str, Location]
    unknown: list[str] = Field(default_factory=list)


class AvailabilityInput(BaseModel):
    skus: list[str]
    location_ids: list[str] | None = None  # None: every location


class AvailabilityRow(BaseModel):
    sku: str
    location_id: str
    available: int  # sellable now, after the location's safety stock
    on_hand_available: int  # the raw `available` bucket


class AvailabilityResult(BaseModel):
    rows: list[AvailabilityRow]


class StockInput(BaseModel):
    """Buckets of some SKUs at one location, now or as the ledger stood at `as_of` (movements up to then)."""

    skus: list[str]
    location_id: str
    as_of: datetime | None = None


class StockResult(BaseModel):
    location_id: str
    as_of: datetime | None = None
    buckets: dict[str, dict[str, int]]  # sku -> bucket -> units (every bucket, zeros included; known SKUs only)


class MovementResult(BaseModel):
    key: str
    applied: bool  # False: the key had been applied before, this is the first call's result
    journal_keys: list[str] = Field(default_factory=list)


class FinancialPosting(BaseModel):
    """A money-only journal entry (sale, settlement, sales return, refund paid)."""

    key: str
    event: FinancialEvent
    legal_entity: str | None = None  # or derived from location_id
    location_id: str | None = None
    amount: Amount
    currency: str
    memo: str
    workflow_id: str
    run_id: str
    reference: str | None = None
    # a settlement only (domain.journal.financial_lines): the processor's fee and the difference (gross settled -
    # `amount`) within the tolerance, each to its own account; `amount` is the receivable cleared
    fee: Amount = Decimal(0)
    difference: Amount = Decimal(0)


class PostingResult(BaseModel):
    key: str
    applied: bool


@runtime_checkable
class ErpPort(Protocol):
    """Item master, the inventory ledger and the journal (the activities and the read API use it)."""

    async def items(self, skus: list[str]) -> dict[str, Item]: ...

    async def items_page(self, after: str | None, limit: int) -> list[Item]:
        """Up to `limit` items by SKU, after the SKU `after` (the read API's cursor)."""
        ...

    async def locations(self, location_ids: list[str] | None) -> dict[str, Location]: ...

    async def locations_page(self, after: str | None, limit: int) -> list[Location]:
        """Up to `limit` locations by ID, after the ID `after` (the read API's cursor)."""
        ...

    async def stock(self, skus: list[str], location_ids: list[str] | None = None
                    ) -> dict[str, dict[str, dict[str, int]]]:
        """sku -> location -> bucket -> units, for every balance the SKUs have (the read API's inventory)."""
        ...

    async def availability(self, skus: list[str], location_ids: list[str] | None) -> list[AvailabilityRow]:
        """Raw `available` bucket per SKU x location (safety stock is the activity's business)."""
        ...

    async def stock_at(self, skus: list[str], location_id: str,
                       as_of: datetime | None) -> dict[str, dict[str, int]]:
        """sku -> bucket -> units at one location for the known SKUs, now or as of a past moment."""
        ...

    async def post_movement(self, request: MovementRequest) -> MovementResult: ...

    async def post_financial(self, posting: FinancialPosting) -> PostingResult: ...
