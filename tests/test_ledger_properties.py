"""Property tests: random movements, valid and invalid, with repeated keys, sequential and concurrent.

The pure rule (domain.inventory) is the oracle for the sequential runs: the ledger must do exactly what it says,
refusing each invalid movement with the same error type. Concurrent bursts cannot be predicted call by call, so
they are checked by what must hold whatever the interleaving: each key applied at most once, the balances equal
the start plus the applied movements, and the invariant checker finds nothing."""
import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest_asyncio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from adapters.stub_erp import PostgresErp
from domain.errors import DomainError, ErrorType
from domain.inventory import Bucket, MovementKind, MovementLine, MovementRequest, apply, deltas
from persistence.engine import create_engine
from tests.ledger_helpers import World, raw_movement
from tests.support import assert_checker_ok

PROFILE = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)
K = MovementKind


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def erp(database_url: str) -> AsyncIterator[PostgresErp]:
    engine = create_engine(database_url, pool_size=10, max_overflow=10)
    yield PostgresErp(engine)
    await engine.dispose()


# A step names things by index, so one strategy serves every fresh World: the last SKU and location are unknown.
KINDS = [K.RECEIPT] * 4 + [K.RETURN_RECEIPT, K.RETURN_RECEIPT] + [K.RESERVE] * 3 + [K.PICK] * 2 + [
    K.RELEASE, K.UNPICK, K.SHIP, K.TRANSFER_SHIP, K.TRANSFER_SHIP, K.TRANSFER_RECEIPT, K.TRANSFER_RECEIPT,
    K.DISPOSITION, K.DISPOSITION, K.WRITE_OFF, K.VENDOR_RETURN, K.ADJUST]
step = st.fixed_dictionaries({
    "kind": st.sampled_from(KINDS),
    "lines": st.lists(st.fixed_dictionaries({
        "sku": st.sampled_from([0] * 6 + [1] * 5 + [2]),
        "location": st.sampled_from([0] * 5 + [1] * 4 + [2] * 4 + [3]),
        "quantity": st.sampled_from([1] * 6 + [2] * 4 + [3, 5, 8, 12] + [0, -2]),
        "legal": st.sampled_from([True] * 8 + [False]),  # most lines get the legal shape for their kind
        "to_location": st.sampled_from([None, 0, 1, 2, 3]),
        "to_bucket": st.sampled_from([None, *Bucket]),
        "bucket": st.sampled_from([None, *Bucket]),
    }), min_size=1, max_size=2),
    "key": st.sampled_from([None] * 5 + [0, 1, 2]),  # None: a fresh key; n: one of a few reused keys
    "reason_code": st.sampled_from([None, "cycle_count", "cycle_count"]),
    "retry": st.sampled_from([False] * 4 + [True]),  # resend the previous request as it was: a retried activity
})


def shaped(kind: MovementKind, raw: dict) -> dict:
    """The legal shape for `kind` (stock levels then decide), or the raw, often illegal, one."""
    if not raw["legal"]:
        return raw
    return {
        **raw,
        "to_location": (raw["location"] + 1) % 3 if kind is K.TRANSFER_SHIP else None,
        "to_bucket": (raw["to_bucket"] if raw["to_bucket"] in (Bucket.AVAILABLE, Bucket.DAMAGED, Bucket.VENDOR_RETURN)
                      else Bucket.AVAILABLE) if kind is K.DISPOSITION else None,
        "bucket": (raw["bucket"] or Bucket.AVAILABLE) if kind is K.ADJUST else None,
    }


def build(world: World, n: int, spec: dict) -> MovementRequest:
    skus = [*world.skus, f"UNKNOWN-{world.prefix}"]
    locations = [*world.location_ids, f"NOWHERE-{world.prefix}"]
    kind = spec["kind"]
    lines = []
    for raw in spec["lines"]:
        legal = shaped(kind, raw)
        quantity = raw["quantity"]
        if kind is K.ADJUST and quantity == 1:
            quantity = -1  # counted shrink, too
        lines.append(MovementLine.model_construct(
            sku=skus[raw["sku"]], location_id=locations[raw["location"]], quantity=quantity,
            to_location_id=None if legal["to_location"] is None else locations[legal["to_location"]],
            to_bucket=legal["to_bucket"], bucket=legal["bucket"]))
    key = world.key(f"step-{n}" if spec["key"] is None else f"reused-{spec['key']}")
    request = raw_movement(key, kind, *lines)
    return request.model_copy(update={"reason_code": spec["reason_code"]})


class Oracle:
    """What the ledger must answer, from the pure rule alone."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.balances: dict = {}
        self.applied: dict[str, tuple] = {}

    def expect(self, request: MovementRequest) -> str:
        try:
            if request.kind is K.ADJUST and not request.reason_code:
                return ErrorType.INVALID_TRANSITION
            for line in request.lines:
                deltas(request.kind, line)
        except DomainError as error:
            return error.type
        if any(line.sku not in self.world.skus for line in request.lines):
            return ErrorType.UNKNOWN_SKU
        if any(loc not in self.world.location_ids
               for line in request.lines for loc in (line.location_id, line.to_location_id) if loc):
            return ErrorType.UNKNOWN_LOCATION
        fingerprint = (request.kind, tuple(request.lines), request.reason_code)
        if request.key in self.applied:
            return "replayed" if self.applied[request.key] == fingerprint else ErrorType.IDEMPOTENCY_CONFLICT
        try:
            self.balances = apply(self.balances, request.kind, list(request.lines))
        except DomainError as error:
            return error.type
        self.applied[request.key] = fingerprint
        return "applied"


async def outcome(erp: PostgresErp, request: MovementRequest) -> str:
    try:
        result = await erp.post_movement(request)
    except DomainError as error:
        return error.type
    return "applied" if result.applied else "replayed"


async def ledger_balances(erp: PostgresErp, world: World) -> dict:
    stock = await erp.stock(world.skus)
    return {(s, loc, Bucket(b)): q for s, by_loc in stock.items() for loc, bs in by_loc.items() for b, q in bs.items()
            if q}


@PROFILE
@given(steps=st.lists(step, min_size=8, max_size=30))
async def test_random_movement_sequences_do_what_the_rule_says(erp: PostgresErp, database_url: str,
                                                              steps: list[dict]) -> None:
    world = await World().create(erp)
    oracle = Oracle(world)
    for kind, quantity in ((K.RECEIPT, 20), (K.RETURN_RECEIPT, 5)):  # some stock, so that more than receipts apply
        opening = raw_movement(world.key(f"open-{kind}"), kind, *(
            MovementLine(sku=s, location_id=loc, quantity=quantity) for s in world.skus for loc in world.location_ids))
        assert oracle.expect(opening) == await outcome(erp, opening) == "applied"
    request = None
    for n, spec in enumerate(steps):
        request = request if spec["retry"] and request is not None else build(world, n, spec)
        expected = oracle.expect(request)
        assert await outcome(erp, request) == expected, (n, request)
        event(f"{request.kind}: {expected}")
    assert await ledger_balances(erp, world) == {k: v for k, v in oracle.balances.items() if v}
    await assert_checker_ok(database_url)


burst = st.lists(st.tuples(st.sampled_from([K.RESERVE, K.RESERVE, K.RELEASE, K.RECEIPT]),
                           st.integers(0, 1), st.integers(1, 4), st.integers(0, 11)), min_size=2, max_size=30)


@PROFILE
@given(calls=burst, opening=st.integers(0, 12))
async def test_concurrent_bursts_apply_each_key_at_most_once(erp: PostgresErp, database_url: str,
                                                            calls: list[tuple], opening: int) -> None:
    world = await World().create(erp)
    store = world.store
    start: dict = {}
    if opening:
        await erp.post_movement(raw_movement(world.key("open"), K.RECEIPT,
                                             *(MovementLine(sku=s, location_id=store, quantity=opening)
                                               for s in world.skus)))
        start = {(s, store, Bucket.AVAILABLE): opening for s in world.skus}
    # a key always names the same movement, so racing callers with one key are retries of each other
    by_key = {}
    for kind, sku, quantity, key in calls:
        by_key.setdefault(key, raw_movement(world.key(f"burst-{key}"), kind,
                                            MovementLine(sku=world.skus[sku], location_id=store, quantity=quantity)))
    requests = [by_key[key] for *_, key in calls]
    results = await asyncio.gather(*(outcome(erp, r) for r in requests))

    for res in results:
        event(f"burst: {res}")
    assert set(results) <= {"applied", "replayed", ErrorType.INSUFFICIENT_STOCK}
    applied = Counter(r.key for r, res in zip(requests, results, strict=True) if res == "applied")
    assert all(n == 1 for n in applied.values())
    assert all(applied[r.key] for r, res in zip(requests, results, strict=True) if res == "replayed")
    expected = dict(start)
    for key in applied:
        for line in by_key_of(by_key, key).lines:
            for d in deltas(by_key_of(by_key, key).kind, line):
                expected[(d.sku, d.location_id, d.bucket)] = expected.get((d.sku, d.location_id, d.bucket), 0) + d.delta
    assert await ledger_balances(erp, world) == {k: v for k, v in expected.items() if v}
    await assert_checker_ok(database_url)


def by_key_of(by_key: dict, key: str) -> MovementRequest:
    return next(r for r in by_key.values() if r.key == key)
