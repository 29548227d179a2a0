"""`python -m bench.reconcile_scale [--movements N]`: the reconciliation's database work at a large ledger.

In a scratch database (an embedded PostgreSQL of its own, or a new database on RETAILFLOW_DATABASE_URL's server),
migrated and seeded, it bulk-inserts N movements (default 1,000,000: reserve + release of the seeded stock, one in
500 reserved only, spread over 30 days, one in a hundred in the last hour) and N/4 balanced journal entries,
then times, each a few times:
- the full check (`retailflow check`: every movement and journal line, and the kept totals proved);
- the incremental check the reconciliation runs once a run is stored (kept totals, entries of the last window);
- the orphan search's reads (holdings the ledger keeps; quiet holders);
and, on a slice, what the trigger that keeps the totals costs per inserted movement. Prints JSON; the figures
go to bench/RESULTS.md by hand (a measurement, not a test).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from bench.common import machine


async def _timed(engine, label: str, call, reps: int) -> dict:
    seconds = []
    for _ in range(reps):
        begun = time.perf_counter()
        result = await call()
        seconds.append(time.perf_counter() - begun)
    return {"what": label, "median_s": round(statistics.median(seconds), 3), "min_s": round(min(seconds), 3),
            "runs": reps, "ok": getattr(result, "ok", None)}


FILL = """
INSERT INTO movement_batches (key, kind, request_hash, result, workflow_id, run_id, created_at)
SELECT 'bench:' || g, 'reserve', 'h', '{}'::jsonb, 'order:bench:' || (g / 3), 'r',
       CASE WHEN g % 100 = 0 THEN now() - interval '10 minutes' ELSE now() - (g % 43200) * interval '1 minute' END
  FROM generate_series(1, :pairs) g;
INSERT INTO movements (key, line, kind, sku, location_id, bucket, delta, reason, workflow_id, run_id, created_at)
SELECT 'bench:' || g, x.line, 'reserve', b.sku, b.location_id, x.bucket, x.delta, 'bench', 'order:bench:' || (g / 3),
       'r',
       CASE WHEN g % 100 = 0 THEN now() - interval '10 minutes' ELSE now() - (g % 43200) * interval '1 minute' END
  FROM generate_series(1, :pairs) g
  JOIN (SELECT sku, location_id, row_number() OVER (ORDER BY sku, location_id) - 1 AS n FROM balances
         WHERE bucket = 'available' AND quantity >= 20) b
    ON b.n = g % (SELECT count(*) FROM balances WHERE bucket = 'available' AND quantity >= 20)
 CROSS JOIN (VALUES (0, 'available', -1), (0, 'reserved', 1), (1, 'available', 1), (1, 'reserved', -1))
       x(line, bucket, delta)
 WHERE x.line = 0 OR g % 500 <> 0;
INSERT INTO journal_entries (key, source_key, source_kind, legal_entity, currency, memo, created_at)
SELECT 'bench:j:' || g, 'bench:j:' || g, 'sale', 'RF-EAST', 'USD', 'bench',
       CASE WHEN g % 100 = 0 THEN now() - interval '10 minutes' ELSE now() - (g % 43200) * interval '1 minute' END
  FROM generate_series(1, :entries) g;
INSERT INTO journal_lines (entry_key, line, account, debit, credit)
SELECT 'bench:j:' || g, s.line, s.account, s.debit, s.credit
  FROM generate_series(1, :entries) g
 CROSS JOIN (VALUES (0, 'cash_clearing', 10, 0), (1, 'receivable', 0, 10)) s(line, account, debit, credit)
"""

REBUILD = """
TRUNCATE ledger_totals, process_holdings, journal_totals;
INSERT INTO ledger_totals SELECT sku, location_id, bucket, sum(delta) FROM movements GROUP BY 1, 2, 3;
INSERT INTO process_holdings (workflow_id, sku, location_id, bucket, quantity)
SELECT workflow_id, sku, location_id, bucket, sum(delta) FROM movements
 WHERE bucket IN ('reserved', 'picked', 'in_transit') GROUP BY 1, 2, 3, 4 HAVING sum(delta) <> 0;
INSERT INTO journal_totals SELECT e.legal_entity, l.account, 0, sum(l.debit - l.credit)
  FROM journal_lines l JOIN journal_entries e ON e.key = l.entry_key GROUP BY 1, 2;
UPDATE balances b SET quantity = t.quantity FROM ledger_totals t
 WHERE t.sku = b.sku AND t.location_id = b.location_id AND t.bucket = b.bucket;
INSERT INTO balances (sku, location_id, bucket, quantity)
SELECT sku, location_id, bucket, quantity FROM ledger_totals t
 WHERE NOT EXISTS (SELECT 1 FROM balances b WHERE b.sku = t.sku AND b.location_id = t.location_id
                   AND b.bucket = t.bucket)
"""


async def run(movements: int, reps: int, server_url: str | None) -> dict:
    import asyncpg

    from activities.checker import check_connection
    from activities.reconciliation import quiet_holders, read_holdings
    from devtools.embedded_postgres import EmbeddedPostgres
    from devtools.seed import seed
    from persistence.engine import create_engine
    from persistence.migrations import upgrade

    pg = None
    if server_url is None:
        pg = EmbeddedPostgres(tempfile.mkdtemp(prefix="retailflow-bench-recon-"))
        server_url = await asyncio.to_thread(pg.start)
    base, _, _ = server_url.rpartition("/")
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url.replace("+asyncpg", ""))
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = f"{base}/{name}"
    out: dict = {"movements_target": movements, "machine": machine()}
    cleanup: list = []
    try:
        await upgrade(url)
        await seed(url, migrate=False)
        engine = create_engine(url, pool_size=2, max_overflow=0, statement_timeout=None)
        cleanup.append(engine)
        pairs = movements // 4
        begun = time.perf_counter()
        async with engine.begin() as conn:
            await conn.execute(text("SET LOCAL session_replication_role = replica"))  # bulk load, triggers off
            for statement in FILL.split(";\n"):
                await conn.execute(text(statement), {"pairs": pairs, "entries": pairs})
            for statement in REBUILD.split(";\n"):
                await conn.execute(text(statement))
        out["load_s"] = round(time.perf_counter() - begun, 1)
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
            out["rows"] = {t: int(await conn.scalar(text(f"SELECT count(*) FROM {t}"))) for t in
                           ("movements", "movement_batches", "journal_entries", "journal_lines", "balances",
                            "ledger_totals", "process_holdings", "journal_totals")}

        async def full():
            async with engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="REPEATABLE READ")
                async with conn.begin():
                    return await check_connection(conn)

        async def incremental():
            async with engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="REPEATABLE READ")
                async with conn.begin():
                    return await check_connection(conn, since=datetime.now(UTC) - timedelta(minutes=75))

        out["timings"] = [
            await _timed(engine, "full check (retailflow check)", full, max(1, reps // 2)),
            await _timed(engine, "incremental check (a reconciliation run)", incremental, reps),
            await _timed(engine, "holdings of open processes (orphan search)",
                         lambda: read_holdings(engine, ["reserved", "picked", "in_transit"]), reps),
            await _timed(engine, "quiet holders, 30 min (who is described)",
                         lambda: quiet_holders(engine, ["reserved", "picked", "in_transit"], timedelta(minutes=30),
                                               2000), reps),
        ]
        # the trigger's cost: 500 movement transactions (a batch row and 2 movement rows each, as the ledger API
        # writes them) with it and without it
        one = """
            WITH b AS (INSERT INTO movement_batches (key, kind, request_hash, result, workflow_id, run_id)
                       VALUES (:key, 'reserve', 'h', '{}'::jsonb, :wf, 'r') RETURNING key)
            INSERT INTO movements (key, line, kind, sku, location_id, bucket, delta, reason, workflow_id, run_id)
            SELECT b.key, 0, 'reserve', s.sku, s.location_id, x.bucket, x.delta, 'bench', :wf, 'r'
              FROM b, (SELECT sku, location_id FROM balances WHERE bucket = 'available'
                        ORDER BY sku, location_id OFFSET :n LIMIT 1) s,
                   (VALUES ('available', -1), ('reserved', 1)) x(bucket, delta)"""
        samples: dict[str, list[float]] = {"on": [], "off": []}
        for round_ in range(4):  # alternating, so warm-up and neighbours' load fall on both
            for tag, role in ((("on", "origin"), ("off", "replica")) if round_ % 2 else
                              (("off", "replica"), ("on", "origin"))):
                begun = time.perf_counter()
                for n in range(250):
                    async with engine.begin() as conn:
                        await conn.execute(text(f"SET LOCAL session_replication_role = {role}"))
                        await conn.execute(text(one), {"key": f"slice:{tag}:{round_}:{n}", "wf": f"order:slice:{n}",
                                                       "n": n % 300})
                samples[tag].append((time.perf_counter() - begun) / 250)
        per = {tag: statistics.median(v) for tag, v in samples.items()}
        out["ms_per_movement_transaction"] = {"with_totals_trigger": round(per["on"] * 1e3, 2),
                                              "without_triggers": round(per["off"] * 1e3, 2)}
    finally:
        try:
            for engine in cleanup:
                await engine.dispose()
            admin = await asyncpg.connect(server_url.replace("+asyncpg", ""))
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
        finally:
            if pg is not None:
                await asyncio.to_thread(pg.destroy)
    return out


def main(argv: list[str] | None = None) -> int:
    import os

    p = argparse.ArgumentParser(prog="python -m bench.reconcile_scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--movements", type=int, default=1_000_000)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args(argv)
    result = asyncio.run(run(args.movements, args.reps, os.environ.get("RETAILFLOW_DATABASE_URL")))
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
