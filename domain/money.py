"""Money as Decimal with a currency: never floats, amounts travel as decimal strings."""
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, PlainSerializer

CENT = Decimal("0.01")

# A Decimal that serialises as a string, as the contract's "amounts are decimal strings".
Amount = Annotated[Decimal, PlainSerializer(lambda d: str(d), return_type=str, when_used="json")]


def round_money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_EVEN)


class Money(BaseModel):
    model_config = ConfigDict(frozen=True)

    amount: Amount
    currency: str

    def __add__(self, other: "Money") -> "Money":
        if other.currency != self.currency:
            raise ValueError(f"cannot add {other.currency} to {self.currency}")
        return Money(amount=self.amount + other.amount, currency=self.currency)


def allocate(total: Decimal, weights: "list[int] | list[Decimal]") -> list[Decimal]:
    """Split `total` (whole cents) over `weights` so the parts always sum to `total` to the cent.

    Largest remainder: each part is its proportional share rounded down to the cent, and the cents left over go
    to the parts with the largest remainders (ties to the earlier part). Used wherever one amount is divided
    (a line over shipments or units, a settlement over shipments), so no split ever gains or loses a cent.
    """
    cents = int((round_money(Decimal(total)) / CENT).to_integral_value())
    weight_sum = sum((Decimal(w) for w in weights), Decimal(0))
    if not weights:
        return []
    if weight_sum == 0:
        return [round_money(Decimal(total))] + [Decimal(0).quantize(CENT)] * (len(weights) - 1)
    exact = [Decimal(cents) * Decimal(w) / weight_sum for w in weights]
    floors = [int(x.to_integral_value(rounding="ROUND_FLOOR")) for x in exact]
    left = cents - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += 1
    return [(Decimal(c) * CENT).quantize(CENT) for c in floors]


def share_of_units(total: Decimal, units: int, start: int, count: int) -> Decimal:
    """The amount of `count` units, numbered from `start`, of a line of `units` units that costs `total`.

    Cumulative rounding: units [0, k) are worth round(total * k / units), so any sequence of parts (split
    shipments, partial returns, unit by unit) adds up to exactly `total` once all units are taken, and a
    part never depends on how the earlier ones were cut.
    """
    if units <= 0 or count <= 0:
        return Decimal(0).quantize(CENT)
    if start < 0 or start + count > units:
        raise ValueError(f"units {start}..{start + count} are not within the line's {units}")
    total = Decimal(total)

    def upto(k: int) -> Decimal:
        return round_money(total * k / units)

    return upto(start + count) - upto(start)
