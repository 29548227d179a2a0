"""The one way ops' updates are sent (count decisions, case resolutions): each attempt bounded, sent again under
one update ID. An update the server admits while the workflow continues as new can be lost without an answer
(temporalio/temporal#6375); sent again, it reaches the latest run, and a retry of an update already applied is
the same update, answered with its outcome rather than applied twice (docs/door.md, "Count decisions")."""
import asyncio
import hashlib
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio.client import WorkflowHandle

ATTEMPT = 15.0  # seconds one attempt may take: these updates answer in milliseconds
ATTEMPTS = 4

T = TypeVar("T")


class UpdateUnanswered(Exception):
    """Every attempt went unanswered; asking again is safe (the same ID applies once)."""


def update_id(name: str, key: str, request: BaseModel) -> str:
    """One ID per request asked: the same decision twice is one update, another decision another."""
    return f"{name}:{key}:{hashlib.sha256(request.model_dump_json().encode()).hexdigest()[:16]}"


async def execute_bounded(handle: WorkflowHandle[Any, Any], name: str, request: BaseModel, *, key: str,
                          result_type: type[T]) -> T:
    """`handle.execute_update(name, request)` in attempts of ATTEMPT seconds under `update_id(name, key, request)`;
    UpdateUnanswered after ATTEMPTS. The SDK's own errors (refused, not found) pass through."""
    uid = update_id(name, key, request)
    for _ in range(ATTEMPTS):
        try:
            return await asyncio.wait_for(handle.execute_update(name, request, id=uid, result_type=result_type),
                                          ATTEMPT)
        except TimeoutError:
            continue
    raise UpdateUnanswered(f"{handle.id} did not answer {name} within {ATTEMPTS} x {ATTEMPT:g}s; ask again")
