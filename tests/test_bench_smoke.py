"""The bench harness works end to end at its tiniest: a skeleton lifecycle shaped like a real order, the bare
update-with-start, and action counting on the histories they leave. No timing assertions (bench/RESULTS.md has the
figures)."""
import uuid

import pytest

from bench import ceiling, cost
from bench.__main__ import shape_of
from bench.common import Spread, at_concurrency, percentile
from config.settings import Settings


@pytest.mark.asyncio(loop_scope="session")
async def test_skeleton_lifecycles_and_counting(dev_env) -> None:
    client = dev_env.client
    queue = f"bench-smoke-{uuid.uuid4().hex[:6]}"
    run = uuid.uuid4().hex[:6]
    async with ceiling.build_skeleton_worker(client, Settings(), queue):
        rate = await at_concurrency(3, 3, lambda n: ceiling.skeleton_lifecycle(
            client, run, n, ceiling.DEFAULT_ORDER, ceiling.DEFAULT_SETTLE, task_queue=queue))
        took = await ceiling.bare_place(client, f"bench-bare-{run}", queue)
    assert rate > 0 and took > 0

    # the skeleton's own history has the shape it was given (messages and totals; a signal that arrives while
    # earlier work still runs moves that work to a later segment in the history, so segments are not compared)
    order = await cost.count_workflow(client, f"bench-order-{run}-0")
    settle = await cost.count_workflow(client, f"bench-settle-{run}-0")
    assert shape_of(order).totals() == ceiling.DEFAULT_ORDER.totals()
    assert shape_of(settle).totals() == ceiling.DEFAULT_SETTLE.totals()

    # actions: update-with-start = start + update; activities, timers, upserts one each; signals one each
    expected_order = 1 + 1 + 2 + sum(s.activities + s.timers + s.upserts for s in ceiling.DEFAULT_ORDER.segments)
    assert order.total == expected_order
    # signal-with-start that starts the workflow is one action with its signal: 4 signals -> 1 start + 3 signals
    expected_settle = 1 + 3 + sum(s.activities + s.timers + s.upserts for s in ceiling.DEFAULT_SETTLE.segments)
    assert settle.total == expected_settle
    assert cost.cost_per_thousand(20) == pytest.approx(1.0)


def test_spread_and_percentile() -> None:
    s = Spread([3.0, 1.0, 2.0])
    assert (s.min, s.median, s.max) == (1.0, 2.0, 3.0)
    assert percentile([1, 2, 3, 4, 5], 50) == 3
    assert percentile(list(range(101)), 99) == pytest.approx(99)
