"""Money split without drift: the parts of any split add up to the whole, to the cent."""
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from domain.money import allocate, share_of_units


def test_largest_remainder_gives_the_left_over_cents_to_the_largest_remainders() -> None:
    assert allocate(Decimal("10.00"), [1, 1, 1]) == [Decimal("3.34"), Decimal("3.33"), Decimal("3.33")]
    assert allocate(Decimal("0.05"), [1, 3]) == [Decimal("0.01"), Decimal("0.04")]


@given(st.integers(0, 10**7), st.lists(st.integers(0, 50), min_size=1, max_size=8))
def test_allocate_sums_to_the_whole(cents: int, weights: list[int]) -> None:
    total = Decimal(cents) / 100
    assert sum(allocate(total, weights), Decimal(0)) == total


def test_a_ten_dollar_line_of_three_units_returned_one_by_one_refunds_ten_dollars() -> None:
    parts = [share_of_units(Decimal("10.00"), 3, k, 1) for k in range(3)]
    assert parts == [Decimal("3.33"), Decimal("3.34"), Decimal("3.33")]
    assert sum(parts) == Decimal("10.00")


@given(st.integers(1, 10**6), st.integers(1, 40), st.data())
def test_any_cut_of_a_line_into_parts_adds_up_to_the_line(cents: int, units: int, data: st.DataObject) -> None:
    total = Decimal(cents) / 100
    cuts = sorted(set(data.draw(st.lists(st.integers(1, units - 1), max_size=5)))) if units > 1 else []
    bounds = [0, *cuts, units]
    parts = [share_of_units(total, units, a, b - a) for a, b in zip(bounds, bounds[1:], strict=False)]
    assert sum(parts) == total
