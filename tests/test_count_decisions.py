"""Ops' updates (client.updates, behind starters.counts.decide and exception_cases.resolve_case) are bounded and
retried under one update ID: an attempt the server never answers is sent again, and a retry of an applied
decision is the same update, not a second one."""
import asyncio

import pytest

from client import updates
from domain.counts import CountState, DecisionRequest
from starters import counts

pytestmark = pytest.mark.unit


class Handle:
    """A count's handle whose first `lost` attempts are never answered (the update lost), then decided."""

    id = "count:C-1"

    def __init__(self, lost: int) -> None:
        self.lost = lost
        self.ids: list[str] = []

    async def execute_update(self, verdict, request, *, id, result_type):  # noqa: A002, ANN001, ANN201
        self.ids.append(id)
        if len(self.ids) <= self.lost:
            await asyncio.Event().wait()  # no answer, ever
        return result_type.model_construct(count_id="C-1")


class Client:
    def __init__(self, handle: Handle) -> None:
        self.handle = handle

    def get_workflow_handle(self, workflow_id: str) -> Handle:
        assert workflow_id == "count:C-1"
        return self.handle


async def test_an_unanswered_decision_is_sent_again_under_the_same_update_id(monkeypatch) -> None:
    monkeypatch.setattr(updates, "ATTEMPT", 0.05)
    handle = Handle(lost=2)
    request = DecisionRequest(note="recounted", decided_by="ops-ana")
    state = await counts.decide(Client(handle), "C-1", "approve", request)  # type: ignore[arg-type]
    assert isinstance(state, CountState)
    assert len(handle.ids) == 3 and len(set(handle.ids)) == 1
    assert handle.ids[0] == updates.update_id("approve", "C-1", request)
    assert updates.update_id("reject", "C-1", request) != handle.ids[0]  # another decision is another update


async def test_a_count_that_never_answers_is_a_clear_error_not_a_hang(monkeypatch) -> None:
    monkeypatch.setattr(updates, "ATTEMPT", 0.02)
    handle = Handle(lost=99)
    with pytest.raises(counts.CountUnanswered, match="count:C-1 did not answer approve"):
        await counts.decide(Client(handle), "C-1", "approve",  # type: ignore[arg-type]
                            DecisionRequest(note="recounted", decided_by="ops-ana"))
    assert len(handle.ids) == updates.ATTEMPTS
