"""ERP activities: item master, the inventory ledger and the journal. Thin wrappers over an ErpPort.

Models and names are the contract between the workflows and the adapters.
"""
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field
from temporalio import activity

from activities.calls import guarded
from activities.faults import Faults
from domain.inventory import MovementRequest
from domain.items import Item, Location
from domain.journal import FinancialEvent
from domain.money import Amount

if TYPE_CHECKING:
    from activities.adapters.ports import ErpPort


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


class ErpActivities:
    """Activities over the ERP port; a team swaps the port, never these.

    `safety_stock` (location -> units per SKU, Settings.safety_stock) is held back from what
    `get_availability` offers: it is a business rule of the retailer, not of the ERP.
    """

    def __init__(self, erp: "ErpPort", faults: Faults | None = None,
                 safety_stock: Mapping[str, int] | None = None) -> None:
        self.erp = erp
        self.faults = faults
        self.safety_stock = dict(safety_stock or {})

    @activity.defn(name="lookup_items")
    async def lookup_items(self, input: LookupItemsInput) -> LookupItemsResult:
        async def call() -> LookupItemsResult:
            items = await self.erp.items(sorted(set(input.skus)))
            return LookupItemsResult(items=items, unknown=[s for s in dict.fromkeys(input.skus) if s not in items])

        return await guarded(self.faults, "erp.lookup_items", call)

    @activity.defn(name="lookup_locations")
    async def lookup_locations(self, input: LookupLocationsInput) -> LookupLocationsResult:
        async def call() -> LookupLocationsResult:
            wanted = None if input.location_ids is None else sorted(set(input.location_ids))
            found = await self.erp.locations(wanted)
            unknown = [loc for loc in dict.fromkeys(input.location_ids or []) if loc not in found]
            return LookupLocationsResult(locations=found, unknown=unknown)

        return await guarded(self.faults, "erp.lookup_locations", call)

    @activity.defn(name="get_availability")
    async def get_availability(self, input: AvailabilityInput) -> AvailabilityResult:
        async def call() -> AvailabilityResult:
            rows = await self.erp.availability(sorted(set(input.skus)), input.location_ids)
            return AvailabilityResult(rows=[
                row.model_copy(update={"available": max(0, row.on_hand_available
                                                        - self.safety_stock.get(row.location_id, 0))})
                for row in rows
            ])

        return await guarded(self.faults, "erp.get_availability", call)

    @activity.defn(name="get_stock")
    async def get_stock(self, input: StockInput) -> StockResult:
        """The ledger's buckets at one location, now or as of a past moment (a count's `counted_at`)."""
        async def call() -> StockResult:
            found = await self.erp.stock_at(sorted(set(input.skus)), input.location_id, input.as_of)
            return StockResult(location_id=input.location_id, as_of=input.as_of, buckets=found)

        return await guarded(self.faults, "erp.get_stock", call)

    @activity.defn(name="post_movement")
    async def post_movement(self, input: MovementRequest) -> MovementResult:
        """Apply a movement once (by key) with its journal postings; refusals are non-retryable
        ApplicationErrors typed InsufficientStock / InvalidTransition / UnknownSku / UnknownLocation /
        IdempotencyConflict."""
        return await guarded(self.faults, "erp.post_movement", lambda: self.erp.post_movement(input))

    @activity.defn(name="post_financial")
    async def post_financial(self, input: FinancialPosting) -> PostingResult:
        """Post a sale, settlement, sales return or refund paid once (by key)."""
        return await guarded(self.faults, "erp.post_financial", lambda: self.erp.post_financial(input))
