"""Ops' decision on a cycle count beyond tolerance (read API and CLI), through the CountToAdjust workflow's
`approve` / `reject` update: the workflow validates it and answers the count as it now stands."""
from typing import Literal

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from client.updates import UpdateUnanswered, execute_bounded
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


async def decide(client: Client, count_id: str, verdict: Verdict, request: DecisionRequest) -> CountState:
    """Approve or reject a count's variances beyond tolerance; raises CountNotFound, CountRefused or
    CountUnanswered (client.updates: bounded attempts under one update ID, so ops never wait for ever)."""
    handle = client.get_workflow_handle(ids.count_workflow_id(count_id))
    try:
        return await execute_bounded(handle, verdict, request, key=count_id, result_type=CountState)
    except UpdateUnanswered as late:
        raise CountUnanswered(str(late)) from None
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
