"""Item master and locations: what a unit is, what it costs, where it can be."""
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from domain.errors import DomainError, ErrorType
from domain.money import Amount

BASE_UNIT = "EA"


class Item(BaseModel):
    """One SKU. `units` maps a unit of measure to how many base units (EA) it holds; EA is always 1."""

    model_config = ConfigDict(frozen=True)

    sku: str
    name: str
    barcode: str
    units: dict[str, int] = Field(default_factory=lambda: {BASE_UNIT: 1})
    unit_cost: Amount  # standard cost per EA, in the item's currency
    price: Amount  # list price per EA
    currency: str = "USD"

    def to_base_units(self, quantity: int, uom: str) -> int:
        """Convert a quantity in `uom` to EA; an unknown unit is refused, never guessed."""
        factor = self.units.get(uom)
        if factor is None:
            raise DomainError(
                ErrorType.UNKNOWN_UNIT,
                f"unit {uom!r} is not defined for {self.sku} (known: {', '.join(sorted(self.units))})",
                sku=self.sku,
                uom=uom,
            )
        return quantity * factor


class LocationKind(StrEnum):
    STORE = "store"
    DISTRIBUTION_CENTER = "distribution_center"


class Location(BaseModel):
    model_config = ConfigDict(frozen=True)

    location_id: str
    name: str
    kind: LocationKind
    legal_entity: str
