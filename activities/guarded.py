"""How every adapter activity runs its port call: inject the configured fault first (before anything is
written), then turn a business refusal (DomainError) into a non-retryable ApplicationError whose `type` the
workflows match on. Anything else (a dropped connection, a deadlock, a timeout) leaves as it is and is retried
by the activity's retry policy."""
from collections.abc import Awaitable, Callable
from typing import TypeVar

from temporalio.exceptions import ApplicationError

from activities.faults import NO_FAULTS, Faults
from domain.errors import DomainError

T = TypeVar("T")


def refusal(error: DomainError) -> ApplicationError:
    details = {k: v if isinstance(v, str | int | float | bool | list | None) else str(v)
               for k, v in error.details.items()}
    return ApplicationError(str(error), details, type=str(error.type), non_retryable=True)


async def guarded(faults: Faults | None, operation: str, call: Callable[[], Awaitable[T]]) -> T:
    await (faults or NO_FAULTS).inject(operation)
    try:
        return await call()
    except DomainError as error:
        raise refusal(error) from error
