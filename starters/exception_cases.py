"""Ops' side of exception cases, shared by the read API and the CLI: resolve through the case workflow's
`resolve` update (the workflow, the source of truth, validates it), list from the register (persistence.cases)."""
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from client.updates import UpdateUnanswered, execute_bounded
from domain.cases import CaseFilter, CaseSnapshot, CaseStatus, ResolveRequest
from persistence import cases

RESOLVE_UPDATE = "resolve"


class CaseError(Exception):
    """A resolve that was not done; `str(error)` says why, in words ops can act on."""


class CaseNotFound(CaseError):
    """No case with that ID (-> 404)."""


class CaseUnanswered(CaseError):
    """The case did not answer in time; asking again is safe, the same update ID applies once (-> 503)."""


class CaseRefused(CaseError):
    """The case refused the resolve: note missing, or already resolved (-> 409 / 422)."""

    def __init__(self, message: str, *, already_resolved: bool = False) -> None:
        super().__init__(message)
        self.already_resolved = already_resolved


async def resolve_case(client: Client, exception_id: str, request: ResolveRequest) -> CaseSnapshot:
    """Resolve a case through its workflow; raises CaseNotFound or CaseRefused with the workflow's reason."""
    if not request.note or not request.note.strip():  # say it without a round trip; the workflow checks too
        raise CaseRefused(f"a note is required to resolve case {exception_id}: say what was done")
    handle = client.get_workflow_handle(exception_id, result_type=CaseSnapshot)
    try:
        return await execute_bounded(handle, RESOLVE_UPDATE, request, key=exception_id, result_type=CaseSnapshot)
    except UpdateUnanswered as late:
        raise CaseUnanswered(str(late)) from None
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause)
        raise CaseRefused(message, already_resolved="already resolved" in message) from err
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        # Not found, or completed: a case completes when resolved, so a closed case is a resolved one.
        try:
            closed = await handle.result()
        except Exception:
            raise CaseNotFound(f"no exception case {exception_id}") from err
        r = closed.resolution
        detail = f" (by {r.resolved_by} at {r.resolved_at.isoformat()}: {r.note})" if r else ""
        raise CaseRefused(f"case {exception_id} is already resolved{detail}", already_resolved=True) from err


async def list_cases(engine: AsyncEngine, status: CaseStatus | str | None = None,
                     **filters: object) -> list[CaseSnapshot]:
    """Cases from the register; `status` open / resolved / None (all), plus CaseFilter fields (kind,
    business_key, location_id, limit, after)."""
    return await cases.list_cases(engine, CaseFilter(status=CaseStatus(status) if status else None, **filters))
