"""Concurrent callers on one ledger: no lost update, no oversell, no deadlock, one application per key.

Also measures throughput (printed with -s; never asserted: the machine is shared)."""
import asyncio
import random
import time
from collections.abc import AsyncIterator

import pytest_asyncio

from adapters.stub_erp import PostgresErp
from domain.errors import DomainError, ErrorType
from domain.inventory import Bucket, MovementKind
from persistence.engine import create_engine
from tests.ledger_helpers import World, buckets, line, movement
from tests.support import assert_checker_ok

K = MovementKind


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def erp(database_url: str) -> AsyncIterator[PostgresErp]:
    # callers beyond the pool wait their turn: on a loaded machine longer than the production bound (5 s), which
    # is not the deadlock these tests look for
    engine = create_engine(database_url, pool_size=20, max_overflow=10, pool_timeout=60)
    yield PostgresErp(engine)
    await engine.dispose()


async def outcome(erp: PostgresErp, request) -> str:  # noqa: ANN001
    try:
        result = await erp.post_movement(request)
    except DomainError as error:
        return str(error.type)
    return "applied" if result.applied else "replayed"


async def test_fifty_reservations_compete_for_ten_units(erp: PostgresErp, database_url: str) -> None:
    world = await World().create(erp)
    sku, store = world.skus[0], world.store
    await erp.post_movement(movement(world.key("rcv"), K.RECEIPT, line(sku, store, 10)))
    results = await asyncio.gather(*(
        outcome(erp, movement(world.key(f"order-{n}"), K.RESERVE, line(sku, store, 1))) for n in range(50)
    ))
    assert results.count("applied") == 10
    assert results.count(ErrorType.INSUFFICIENT_STOCK) == 40
    assert await buckets(erp, sku, store) == {**dict.fromkeys(Bucket, 0), Bucket.RESERVED: 10}
    await assert_checker_ok(database_url)


async def test_racing_callers_with_one_key_apply_it_once(erp: PostgresErp, database_url: str) -> None:
    world = await World().create(erp)
    sku, dc = world.skus[0], world.dc
    await erp.post_movement(movement(world.key("rcv"), K.RECEIPT, line(sku, dc, 100)))
    same = movement(world.key("reserve-once"), K.RESERVE, line(sku, dc, 7))
    results = await asyncio.gather(*(outcome(erp, same) for _ in range(20)))
    assert results.count("applied") == 1 and results.count("replayed") == 19
    assert (await buckets(erp, sku, dc))[Bucket.RESERVED] == 7
    await assert_checker_ok(database_url)


async def test_crossing_multi_line_movements_never_deadlock(erp: PostgresErp, database_url: str) -> None:
    """Lines listed in opposite orders, across two legal entities, all at once: every one commits."""
    world = await World(skus=4).create(erp)
    locs = [world.dc, world.store, world.far]
    await erp.post_movement(movement(world.key("rcv"), K.RECEIPT,
                                     *(line(s, loc, 1000) for s in world.skus for loc in locs)))
    rng = random.Random(7)
    requests = []
    for n in range(80):
        pairs = [(s, loc) for s in world.skus for loc in locs]
        rng.shuffle(pairs)
        requests.append(movement(world.key(f"mix-{n}"), K.RESERVE, *(line(s, loc, 1) for s, loc in pairs[:5])))
    results = await asyncio.gather(*(outcome(erp, r) for r in requests))
    assert results == ["applied"] * 80
    reserved = sum([(await buckets(erp, s, loc))[Bucket.RESERVED] for s in world.skus for loc in locs])
    assert reserved == 80 * 5
    await assert_checker_ok(database_url)


async def test_throughput(erp: PostgresErp, database_url: str) -> None:
    """movements/s, one caller and 20 concurrent callers (printed; the numbers go in the report)."""
    world = await World(skus=20).create(erp)
    n = 200
    start = time.perf_counter()
    for i in range(n):
        await erp.post_movement(movement(world.key(f"seq-{i}"), K.RECEIPT, line(world.skus[i % 20], world.dc, 1)))
    sequential = n / (time.perf_counter() - start)

    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def caller() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            await erp.post_movement(movement(world.key(f"par-{i}"), K.RESERVE, line(world.skus[i % 20], world.dc, 1)))

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(20)))
    concurrent = n / (time.perf_counter() - start)
    print(f"\nledger throughput: {sequential:.0f} movements/s sequential, {concurrent:.0f} movements/s with 20 callers")
    assert sum([(await buckets(erp, s, world.dc))[Bucket.RESERVED] for s in world.skus]) == n
    await assert_checker_ok(database_url)
