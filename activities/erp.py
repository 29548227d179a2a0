"""ERP activities: item master, the inventory ledger and the journal. Thin wrappers over an ErpPort.

INTERFACE STUB (foundation): models and signatures are the contract between workflows and adapters;
bodies are filled in by the ledger issue.
"""
from decimal import Decimal

from pydantic import BaseModel, Field
from temporalio import activity

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


class PostingResult(BaseModel):
    key: str
    applied: bool


class ErpActivities:
    """Activities over the ERP port; a team swaps the port, never these."""

    def __init__(self, erp: "object") -> None:
        self.erp = erp

    @activity.defn(name="lookup_items")
    async def lookup_items(self, input: LookupItemsInput) -> LookupItemsResult:
        raise NotImplementedError

    @activity.defn(name="lookup_locations")
    async def lookup_locations(self, input: LookupLocationsInput) -> LookupLocationsResult:
        raise NotImplementedError

    @activity.defn(name="get_availability")
    async def get_availability(self, input: AvailabilityInput) -> AvailabilityResult:
        raise NotImplementedError

    @activity.defn(name="post_movement")
    async def post_movement(self, input: MovementRequest) -> MovementResult:
        """Apply a movement once (by key) with its journal postings; refusals are non-retryable
        ApplicationErrors typed InsufficientStock / InvalidTransition / UnknownSku / UnknownLocation."""
        raise NotImplementedError

    @activity.defn(name="post_financial")
    async def post_financial(self, input: FinancialPosting) -> PostingResult:
        raise NotImplementedError


_ = Decimal
