"""ERP activities: item master, the inventory ledger and the journal. Thin wrappers over an ErpPort."""

from collections.abc import Mapping

from cachetools import TTLCache
from temporalio import activity

from activities.faults import Faults
from activities.guarded import guarded
from adapters.erp import (
    AvailabilityInput,
    AvailabilityResult,
    ErpPort,
    FinancialPosting,
    LookupItemsInput,
    LookupItemsResult,
    LookupLocationsInput,
    LookupLocationsResult,
    MovementResult,
    PostingResult,
    StockInput,
    StockResult,
)
from domain.inventory import MovementRequest
from domain.items import Item


class ErpActivities:
    """Activities over the ERP port; a team swaps the port, never these.

    `safety_stock` (location -> units per SKU, Settings.safety_stock) is held back from what
    `get_availability` offers: it is a business rule of the retailer, not of the ERP.
    """

    def __init__(self, erp: ErpPort, faults: Faults | None = None,
                 safety_stock: Mapping[str, int] | None = None, *, master_data_ttl: float = 60.0) -> None:
        self.erp = erp
        self.faults = faults
        self.safety_stock = dict(safety_stock or {})
        # Item master read by every order: cached per worker for `master_data_ttl` s (a result is recorded in the
        # history, so replay never depends on it; a change reaches new orders within the TTL). Unknown SKUs are
        # never cached, so an item added to the master is found at once.
        self._items: TTLCache[str, Item] = TTLCache(maxsize=10_000, ttl=master_data_ttl)

    @activity.defn(name="lookup_items")
    async def lookup_items(self, input: LookupItemsInput) -> LookupItemsResult:
        async def call() -> LookupItemsResult:
            wanted = sorted(set(input.skus))
            items = {sku: self._items[sku] for sku in wanted if sku in self._items}
            missing = [sku for sku in wanted if sku not in items]
            if missing:
                found = await self.erp.items(missing)
                self._items.update(found)
                items |= found
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
