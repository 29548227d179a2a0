"""The one way a process workflow calls an activity: the same timeouts and retry policy everywhere.

Transient trouble (an adapter outage, a dropped database connection, an injected fault) is retried with
backoff for as long as it lasts: a workflow waits out an outage rather than failing. Business refusals are
raised by the activities as non-retryable `ApplicationError`s with a `type` from `domain.errors.ErrorType`,
which the workflow catches with `refusal_type`.
"""
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

T = TypeVar("T")

RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,  # unlimited: only non-retryable refusals stop it
)
START_TO_CLOSE = timedelta(seconds=30)


async def call(activity: Callable[..., Any], arg: Any, *, summary: str) -> Any:
    """Run an activity method (e.g. `ErpActivities.post_movement`) with the standard policy.

    `summary` is what the Temporal UI shows for the call ("reserve 3 units at DC-EAST").
    """
    return await workflow.execute_activity_method(
        activity,
        arg,
        start_to_close_timeout=START_TO_CLOSE,
        retry_policy=RETRY,
        summary=summary[:200],
    )


def refusal_type(error: BaseException) -> str | None:
    """The business refusal type (`InsufficientStock`, ...) behind an activity failure, else None."""
    cause = error.cause if isinstance(error, ActivityError) else error
    if isinstance(cause, ApplicationError) and cause.non_retryable:
        return cause.type
    return None
