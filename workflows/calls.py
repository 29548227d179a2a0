"""The one way a process workflow calls an activity: the same timeouts and retry policy everywhere.

Transient trouble (an adapter outage, a dropped connection, an injected fault) is retried with backoff for as
long as it lasts; business refusals are non-retryable `ApplicationError`s with a `domain.errors.ErrorType`
`type`, which `refusal_type` reads. `call_local` runs reads (and short steps of one workflow task) as local
activities: no server round trip, and all local activities of one workflow task are one action
(docs/versioning.md and bench/RESULTS.md say where each process uses them).
"""
from collections.abc import Callable
from contextlib import nullcontext
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.parts import ProcessView

RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,  # unlimited: only non-retryable refusals stop it
)
START_TO_CLOSE = timedelta(seconds=30)
LOCAL_START_TO_CLOSE = timedelta(seconds=10)


async def call(activity: Callable[..., Any], arg: Any, *, summary: str) -> Any:
    """Run an activity method (e.g. `ErpActivities.post_movement`) on the task queue with the standard policy.

    `summary` is what the Temporal UI shows for the call ("reserve 3 units at DC-EAST").
    """
    return await workflow.execute_activity_method(
        activity, arg, start_to_close_timeout=START_TO_CLOSE, retry_policy=RETRY, summary=summary[:200])


async def call_local(activity: Callable[..., Any], arg: Any, *, summary: str) -> Any:
    """Run an activity method as a local activity in this worker, same retry policy (past a minute of retries
    the SDK backs off with a timer, so an outage is waited out as with `call`). The running process's view is
    held meanwhile, so the changes before and after it in one workflow task are one upsert (`ProcessView`)."""
    view = getattr(workflow.instance(), "view", None)
    with view.local_activity() if isinstance(view, ProcessView) else nullcontext():
        return await workflow.execute_local_activity_method(
            activity, arg, start_to_close_timeout=LOCAL_START_TO_CLOSE, retry_policy=RETRY, summary=summary[:200])


def refusal_type(error: BaseException) -> str | None:
    """The business refusal type (`InsufficientStock`, ...) behind an activity failure, else None."""
    cause = error.cause if isinstance(error, ActivityError) else error
    if isinstance(cause, ApplicationError) and cause.non_retryable:
        return cause.type
    return None
