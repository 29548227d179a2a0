"""The shared test helpers fail clearly: `eventually` returns the first value that holds, and past its time says
what it waited for, the last value and the last error it let pass."""
import itertools

import pytest
from temporalio.service import RPCError, RPCStatusCode

from tests.support import eventually

pytestmark = pytest.mark.unit


async def test_eventually_returns_the_first_value_that_holds() -> None:
    counter = itertools.count()
    assert await eventually(lambda: next(counter), lambda n: n >= 3, every=0) == 3


async def test_eventually_awaits_a_probe_and_counts_an_ignored_error_as_not_yet() -> None:
    answers = iter([RPCError("not yet", RPCStatusCode.NOT_FOUND, b""), "ready"])

    async def probe() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert await eventually(probe, every=0) == "ready"


async def test_eventually_fails_naming_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match=r"the stage: not so within 0.2s; last value: 'open'"):
        await eventually(lambda: "open", lambda s: s == "closed", what="the stage", within=0.2, every=0.05)

    async def refused() -> None:
        raise RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b"")

    with pytest.raises(AssertionError, match="last error: RPCError"):
        await eventually(refused, within=0.1, every=0.05)


async def test_eventually_lets_any_other_error_through() -> None:
    def broken() -> None:
        raise KeyError("stage")

    with pytest.raises(KeyError):
        await eventually(broken, within=5)
