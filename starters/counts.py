"""Ops' decision on a cycle count beyond tolerance (read API and CLI), through the CountToAdjust workflow's
`approve` / `reject` update: the workflow validates it and answers the count as it now stands."""
import asyncio
import hashlib
from typing import Literal

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from domain import ids
from domain.counts import CountState, DecisionRequest

Verdict = Literal["approve", "reject"]


class CountError(Exception):
    """A decision that was not taken; `str(error)` says why."""


class CountNotFound(CountError):
    """No count with that ID (-> 404)."""


class CountRefused(CountError):
    """The count refused the decision: none awaited, already decided, closed (-> 409)."""


class CountUnanswered(CountError):
    """The count did not answer in time; asking again is safe, the same update ID applies once (-> 503)."""


ATTEMPT = 15.0  # seconds one update attempt may take: the count answers a decision in milliseconds
ATTEMPTS = 4


def update_id(count_id: str, verdict: Verdict, request: DecisionRequest) -> str:
    """One ID per decision asked: a retry of the same decision is the same update, applied once."""
    digest = hashlib.sha256(request.model_dump_json().encode()).hexdigest()[:16]
    return f"{verdict}:{count_id}:{digest}"


async def decide(client: Client, count_id: str, verdict: Verdict, request: DecisionRequest) -> CountState:
    """Approve or reject a count's variances beyond tolerance; raises CountNotFound or CountRefused.

    Each attempt is bounded and retried under the same update ID: an update the server admits while the count
    continues as new can be lost without an answer (temporalio/temporal#6375), and the caller (ops at the CLI or
    the read API) must not wait for ever. Sent again, the update reaches the count's latest run; if the first
    attempt was applied, the same ID answers its outcome instead of deciding twice."""
    handle = client.get_workflow_handle(ids.count_workflow_id(count_id))
    uid = update_id(count_id, verdict, request)
    try:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await asyncio.wait_for(
                    handle.execute_update(verdict, request, id=uid, result_type=CountState), ATTEMPT)
            except TimeoutError:
                if attempt == ATTEMPTS:
                    raise CountUnanswered(f"count {count_id} did not answer the decision within "
                                     f"{ATTEMPTS} x {ATTEMPT:g}s; ask again") from None
        raise AssertionError("unreachable")
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        raise CountRefused(cause.message if isinstance(cause, ApplicationError) else str(cause)) from err
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        try:
            await handle.describe()
        except RPCError as missing:
            if missing.status == RPCStatusCode.NOT_FOUND:
                raise CountNotFound(f"no count {count_id}") from err
            raise
        raise CountRefused(f"count {count_id} is closed: no decision is awaited") from err
