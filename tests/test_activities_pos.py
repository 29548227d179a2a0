"""The POS / payments activities through temporalio's ActivityEnvironment, over the PostgreSQL stub."""
import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import pytest_asyncio
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.pos import PosActivities
from adapters.pos import CaptureInput, RefundInput, VoidInput
from adapters.stub_pos import PostgresPos
from domain.errors import ErrorType
from persistence.engine import create_engine


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def acts(database_url: str) -> AsyncIterator[PosActivities]:
    engine = create_engine(database_url)
    yield PosActivities(PostgresPos(engine))
    await engine.dispose()


def capture(payment: str, n: int, amount: str, authorized: str = "100.00") -> CaptureInput:
    return CaptureInput(key=f"{payment}:capture-{n}", payment_id=payment, authorized_amount=Decimal(authorized),
                        amount=Decimal(amount), currency="USD", reference=f"SH-{n}")


async def refusal(call, arg) -> ApplicationError:  # noqa: ANN001
    with pytest.raises(ApplicationError) as error:
        await ActivityEnvironment().run(call, arg)
    assert error.value.non_retryable
    return error.value


async def test_captures_add_up_to_the_authorization_and_no_further(acts: PosActivities) -> None:
    env = ActivityEnvironment()
    pay = f"pay-{uuid.uuid4().hex[:8]}"
    first = await env.run(acts.capture_payment, capture(pay, 1, "60.00"))
    assert first.applied and first.captured_total == Decimal("60.00")
    retried = await env.run(acts.capture_payment, capture(pay, 1, "60.00"))
    assert not retried.applied and retried.captured_total == Decimal("60.00")
    over = await refusal(acts.capture_payment, capture(pay, 2, "40.01"))
    assert over.type == ErrorType.OVER_CAPTURE
    assert (await env.run(acts.capture_payment, capture(pay, 2, "40.00"))).captured_total == Decimal("100.00")
    conflict = await refusal(acts.capture_payment, capture(pay, 1, "1.00"))
    assert conflict.type == ErrorType.IDEMPOTENCY_CONFLICT


async def test_concurrent_captures_never_exceed_the_authorization(acts: PosActivities) -> None:
    pay = f"pay-{uuid.uuid4().hex[:8]}"

    async def attempt(n: int) -> str:
        try:
            await ActivityEnvironment().run(acts.capture_payment, capture(pay, n, "10.00", authorized="35.00"))
        except ApplicationError as error:
            return str(error.type)
        return "captured"

    results = await asyncio.gather(*(attempt(n) for n in range(10)))
    assert results.count("captured") == 3 and results.count(ErrorType.OVER_CAPTURE) == 7


async def test_void_releases_the_rest_and_stops_captures(acts: PosActivities) -> None:
    env = ActivityEnvironment()
    pay = f"pay-{uuid.uuid4().hex[:8]}"
    await env.run(acts.capture_payment, capture(pay, 1, "30.00"))
    void = VoidInput(key=f"{pay}:void", payment_id=pay, reason="order cancelled")
    first = await env.run(acts.void_payment, void)
    assert first.applied and first.voided_amount == Decimal("70.00")
    again = await env.run(acts.void_payment, void)
    assert not again.applied and again.voided_amount == Decimal("70.00")
    after = await refusal(acts.capture_payment, capture(pay, 2, "5.00"))
    assert after.type == ErrorType.INVALID_TRANSITION


async def test_void_of_a_never_captured_authorization(acts: PosActivities) -> None:
    env = ActivityEnvironment()
    pay = f"pay-{uuid.uuid4().hex[:8]}"
    released = await env.run(acts.void_payment, VoidInput(key=f"{pay}:void", payment_id=pay, reason="pickup expired",
                                                           authorized_amount=Decimal("25.00"), currency="USD"))
    assert released.voided_amount == Decimal("25.00")
    unknown = await env.run(acts.void_payment, VoidInput(key=f"{pay}-x:void", payment_id=f"{pay}-x", reason="?"))
    assert unknown.applied and unknown.voided_amount == 0


async def test_refunds_are_idempotent_and_bounded_by_captures(acts: PosActivities) -> None:
    env = ActivityEnvironment()
    pay = f"pay-{uuid.uuid4().hex[:8]}"
    await env.run(acts.capture_payment, capture(pay, 1, "50.00"))

    def refund(n: int, amount: str, payment: str | None = pay) -> RefundInput:
        return RefundInput(key=f"return:{pay}:refund-{n}", payment_id=payment, return_id=f"R-{pay}",
                           amount=Decimal(amount), currency="USD")

    first = await env.run(acts.refund_payment, refund(1, "20.00"))
    retried = await env.run(acts.refund_payment, refund(1, "20.00"))
    assert first.applied and not retried.applied and retried.refund_reference == first.refund_reference
    over = await refusal(acts.refund_payment, refund(2, "30.01"))
    assert over.type == ErrorType.OVER_CAPTURE
    assert (await env.run(acts.refund_payment, refund(2, "30.00"))).applied
    # a store return paid in cash: no payment to bound it
    assert (await env.run(acts.refund_payment, refund(3, "99.00", payment=None))).applied
