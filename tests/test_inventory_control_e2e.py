"""Inventory control through the signed webhooks into the real processes on the dev server (build_worker over the
PostgreSQL stubs, the HTTP app in-process): a PO received in two parts, a count approved through the API (ops
token, the decider recorded), vendor returns credited; each process found by its search attributes, as ops find
it in the Temporal UI.

`RETAILFLOW_EXPORT_HISTORIES=1` exports the runs (and their cases) into tests/histories/ with the project's export
helper (`devtools.histories.export`): that is how the committed histories of ReceiveToStock, CountToAdjust and
VendorReturn were made.
"""
import asyncio
import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import text
from temporalio.client import Client

from adapters.stub_erp import PostgresErp
from client.correlation import CorrelationInterceptor
from devtools.catalog import ITEMS_BY_SKU
from devtools.histories import export
from domain.inventory import Bucket, MovementKind
from persistence.engine import create_engine
from starters.api import create_app
from starters.signatures import sign_headers
from tests.ledger_helpers import line, movement
from tests.support import assert_checker_ok, at_stage, eventually, read_until, seeded
from tests.support import test_settings as make_settings
from worker.factory import build_worker

pytestmark = pytest.mark.asyncio(loop_scope="session")

SECRET = "whsec_" + "aW52ZW50b3J5LWNvbnRyb2wtZTJlLTAxMjM0NTY3"
TOKEN = "ic-e2e-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
EXPORT = os.environ.get("RETAILFLOW_EXPORT_HISTORIES") == "1"


def new_tag() -> str:
    """Fixed when exporting (the committed file names stay the same on a re-export), else fresh."""
    return "h" if EXPORT else uuid.uuid4().hex[:6]


@pytest.fixture(scope="module")
def settings(database_url: str):
    return make_settings(database_url=database_url, api_tokens=[TOKEN],
                         webhook_secrets={s: SECRET for s in ("erp", "wms", "pos")})


@pytest.fixture
async def http(dev_env, settings, database_url):
    await seeded(database_url)
    engine = create_engine(database_url, pool_size=5, max_overflow=10)
    cfg = dev_env.client.config()
    cfg["interceptors"] = [CorrelationInterceptor()]
    client = Client(**cfg)
    async with build_worker(client, engine, settings):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(settings, engine=engine,
                                                                                  client=client)),
                                     base_url="http://rf", timeout=60) as http:
            http.engine, http.client = engine, client  # type: ignore[attr-defined]
            yield http
    await engine.dispose()


async def send(http: httpx.AsyncClient, source: str, type_: str, data: dict) -> httpx.Response:
    raw = json.dumps({"type": type_, "timestamp": datetime.now(UTC).isoformat(), "data": data}).encode()
    headers = {"content-type": "application/json", **sign_headers(SECRET, f"msg_{uuid.uuid4().hex}", raw)}
    response = await http.post(f"/webhooks/{source}", content=raw, headers=headers)
    assert response.status_code == 202, response.text
    return response


async def found_by(client: Client, query: str) -> list[str]:
    """Workflow IDs the visibility store finds for `query`, once it finds any (it is eventually consistent)."""
    async def ids() -> list[str]:
        return [w.id async for w in client.list_workflows(query)]

    return await eventually(ids, what=f"a run listed for {query}")


async def journal(engine, reference: str) -> dict[str, Decimal]:
    sql = ("SELECT l.account, sum(l.debit - l.credit) FROM journal_lines l JOIN journal_entries e "
           "ON e.key = l.entry_key WHERE e.reference = :r GROUP BY 1")
    async with engine.connect() as conn:
        return {a: v for a, v in await conn.execute(text(sql), {"r": reference}) if v}


async def available(engine, sku: str, location_id: str) -> int:
    stock = await PostgresErp(engine).stock([sku], [location_id])
    return stock.get(sku, {}).get(location_id, {}).get("available", 0)


async def exported(client: Client, workflow_ids: list[str]) -> None:
    if not EXPORT:
        return
    cases = [w.id async for w in client.list_workflows("WorkflowType = 'ExceptionCase'")
             if any(w.id.startswith(f"exception:{wid}:") for wid in workflow_ids)]
    await export(client, [*workflow_ids, *cases])


async def test_a_purchase_order_received_in_two_parts_and_one_over_received(http, database_url) -> None:
    tag = new_tag()
    po, over = f"PO-e2e-{tag}", f"PO-e2e-over-{tag}"
    coffee, tea = ITEMS_BY_SKU["GRO-COF-HOUSE"], ITEMS_BY_SKU["GRO-TEA-EARL"]  # standard 5.60 and 3.40
    before = await available(http.engine, coffee.sku, "DC-EAST")
    expected_at = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    opened = await send(http, "erp", "purchase_order.created", {
        "po_id": po, "supplier_id": "SUP-ROAST", "location_id": "DC-EAST", "currency": "USD",
        "expected_at": expected_at,
        "lines": [{"line_id": "1", "sku": coffee.sku, "quantity": 2, "uom": "CASE", "unit_cost": "68.40"},
                  {"line_id": "2", "sku": tea.sku, "quantity": 10, "uom": "EA", "unit_cost": "3.40"}]})
    assert opened.json() == {"status": "started", "workflow_id": f"po:{po}"}
    await send(http, "wms", "purchase_order.received", {
        "po_id": po, "receipt_id": "GR-1", "location_id": "DC-EAST",
        "lines": [{"line_id": "1", "sku": coffee.sku, "quantity": 12}]})
    state = await read_until(http, f"/purchase-orders/{po}", at_stage("receiving"), token=TOKEN)
    assert [(ln["line_id"], ln["ordered"], ln["received"]) for ln in state["lines"]] == [("1", 24, 12), ("2", 10, 0)]
    await send(http, "pos", "purchase_order.received", {
        "po_id": po, "receipt_id": "GR-2", "location_id": "DC-EAST",
        "lines": [{"line_id": "1", "sku": coffee.sku, "quantity": 12}, {"line_id": "2", "sku": tea.sku,
                                                                         "quantity": 10}]})
    state = await read_until(http, f"/purchase-orders/{po}", at_stage("received"), token=TOKEN)
    assert state["workflow_id"] == f"po:{po}" and state["exceptions"] == []
    assert await available(http.engine, coffee.sku, "DC-EAST") == before + 24
    # inventory at standard, GRNI at PO cost (5.70 / EA for coffee), the 0.10 / EA between as price variance
    assert await journal(http.engine, po) == {
        "inventory": Decimal("24") * Decimal("5.60") + Decimal("10") * Decimal("3.40"),
        "goods_received_not_invoiced": -(Decimal("24") * Decimal("5.70") + Decimal("10") * Decimal("3.40")),
        "purchase_price_variance": Decimal("2.40")}
    # ops find it in the UI by its search attributes
    assert await found_by(http.client, f"BusinessKey = '{po}' AND Stage = 'received'") == [f"po:{po}"]
    assert f"po:{po}" in await found_by(http.client, f"WorkflowType = 'ReceiveToStock' AND LocationIds = 'DC-EAST' "
                                                     f"AND Skus = '{tea.sku}'")

    await send(http, "erp", "purchase_order.created", {
        "po_id": over, "supplier_id": "SUP-ROAST", "location_id": "ST-NYC", "currency": "USD",
        "expected_at": expected_at,
        "lines": [{"line_id": "1", "sku": tea.sku, "quantity": 10, "uom": "EA", "unit_cost": "3.30"}]})
    await send(http, "wms", "purchase_order.received", {
        "po_id": over, "receipt_id": "GR-1", "location_id": "ST-NYC",
        "lines": [{"line_id": "1", "sku": tea.sku, "quantity": 12}]})
    state = await read_until(http, f"/purchase-orders/{over}",
                             lambda s: s.get("stage") == "received" and s["exceptions"], token=TOKEN)
    assert [c["kind"] for c in state["exceptions"]] == ["over_receipt"]
    assert f"po:{over}" in await found_by(http.client, f"BusinessKey = '{over}' AND OpenExceptions > 0")
    await assert_checker_ok(database_url)
    await exported(http.client, [f"po:{po}", f"po:{over}"])


async def test_a_count_beyond_tolerance_approved_through_the_api(http, database_url) -> None:
    tag = new_tag()
    count, rejected = f"CC-e2e-{tag}", f"CC-e2e-rej-{tag}"
    sku = "HOM-LAMP-WHT"  # standard 27.50: one unit is beyond the 25.00 value tolerance
    on_hand = await available(http.engine, sku, "ST-BOS")
    assert on_hand >= 3
    await send(http, "pos", "count.submitted", {
        "count_id": count, "location_id": "ST-BOS", "counted_at": datetime.now(UTC).isoformat(),
        "lines": [{"sku": sku, "quantity": on_hand - 1}]})
    state = await read_until(http, f"/counts/{count}", at_stage("awaiting_approval"), token=TOKEN)
    assert state["lines"][0]["variance"] == -1 and not state["lines"][0]["within_tolerance"]
    assert f"count:{count}" in await found_by(http.client, f"BusinessKey = '{count}' AND Stage = 'awaiting_approval'")
    refused = await http.post(f"/counts/{count}/approve", json={"note": "checked"})  # no token
    assert refused.status_code == 401
    approved = await http.post(f"/counts/{count}/approve", headers=AUTH,
                               json={"note": "lamp broken in the stockroom, photo on file"})
    assert approved.status_code == 200, approved.text
    answer = approved.json()
    assert answer["stage"] == "adjusted" and answer["decision"]["decided_by"] == "token-1"  # the token's name
    assert answer["decision"]["note"] == "lamp broken in the stockroom, photo on file"
    assert await available(http.engine, sku, "ST-BOS") == on_hand - 1
    assert await journal(http.engine, count) == {"inventory": Decimal("-27.50"), "shrink": Decimal("27.50")}
    again = await http.post(f"/counts/{count}/reject", headers=AUTH, json={"note": "too late"})
    assert again.status_code == 409 and again.headers["content-type"].startswith("application/problem+json")
    missing = await http.post(f"/counts/NO-SUCH-{tag}/approve", headers=AUTH, json={"note": "x"})
    assert missing.status_code == 404

    await send(http, "wms", "count.submitted", {
        "count_id": rejected, "location_id": "ST-BOS", "counted_at": datetime.now(UTC).isoformat(),
        "lines": [{"sku": sku, "quantity": on_hand + 5}]})
    await read_until(http, f"/counts/{rejected}", at_stage("awaiting_approval"), token=TOKEN)
    answer = (await http.post(f"/counts/{rejected}/reject", headers=AUTH, json={"note": "recount ordered"})).json()
    assert answer["stage"] == "rejected" and await journal(http.engine, rejected) == {}
    await assert_checker_ok(database_url)
    await exported(http.client, [f"count:{count}", f"count:{rejected}"])


async def test_vendor_returns_credited_in_full_and_short(http, database_url) -> None:
    tag = new_tag()
    rtv, short = f"RTV-e2e-{tag}", f"RTV-e2e-short-{tag}"
    mug = ITEMS_BY_SKU["HOM-MUG-SAND"]  # standard 2.20
    erp = PostgresErp(http.engine)
    # a damaged lot customers brought back, dispositioned for the vendor
    await erp.post_movement(movement(f"e2e:{tag}:returned", MovementKind.RETURN_RECEIPT, line(mug.sku, "DC-EAST", 9)))
    await erp.post_movement(movement(f"e2e:{tag}:inspected", MovementKind.DISPOSITION,
                                     line(mug.sku, "DC-EAST", 9, to_bucket=Bucket.VENDOR_RETURN)))
    await send(http, "wms", "vendor_return.shipped", {"rtv_id": rtv, "location_id": "DC-EAST",
                                                      "supplier_id": "SUP-CERAMICS",
                                                      "lines": [{"sku": mug.sku, "quantity": 6}]})
    state = await read_until(http, f"/vendor-returns/{rtv}", at_stage("awaiting_credit"), token=TOKEN)
    assert state["receivable"] == "13.20"
    await send(http, "erp", "vendor_credit.received", {"rtv_id": rtv, "amount": "13.20", "currency": "USD"})
    state = await read_until(http, f"/vendor-returns/{rtv}", at_stage("credited"), token=TOKEN)
    assert state["exceptions"] == []
    assert await journal(http.engine, rtv) == {"inventory": Decimal("-13.20"), "accounts_payable": Decimal("13.20")}
    assert await found_by(http.client, f"BusinessKey = '{rtv}' AND Stage = 'credited'") == [f"rtv:{rtv}"]

    await send(http, "wms", "vendor_return.shipped", {"rtv_id": short, "location_id": "DC-EAST",
                                                      "supplier_id": "SUP-CERAMICS",
                                                      "lines": [{"sku": mug.sku, "quantity": 3}]})
    await send(http, "erp", "vendor_credit.received", {"rtv_id": short, "amount": "5.00", "currency": "USD"})
    state = await read_until(http, f"/vendor-returns/{short}",
                             lambda s: s.get("stage") == "credited" and s["exceptions"], token=TOKEN)
    assert [c["kind"] for c in state["exceptions"]] == ["vendor_credit_mismatch"]
    assert await journal(http.engine, short) == {"inventory": Decimal("-6.60"), "accounts_payable": Decimal("5.00"),
                                                 "vendor_credit_variance": Decimal("1.60")}
    stock = await erp.stock([mug.sku], ["DC-EAST"])
    assert stock[mug.sku]["DC-EAST"]["vendor_return"] == 0
    await assert_checker_ok(database_url)
    await exported(http.client, [f"rtv:{rtv}", f"rtv:{short}"])


async def test_the_cli_approves_a_count_and_says_why_it_cannot(http, dev_env) -> None:
    """`retailflow counts approve|reject COUNT_ID --note` reaches the same update as the API and the UI."""
    from typer.testing import CliRunner

    from devtools.cli import main

    def cli(*args: str):
        env = {k: v for k, v in os.environ.items() if not k.startswith("RETAILFLOW_")}
        env["RETAILFLOW_TEMPORAL_ADDRESS"] = dev_env.client.service_client.config.target_host
        return CliRunner().invoke(main, list(args), env=env)

    count = f"CC-cli-{uuid.uuid4().hex[:6]}"
    sku = "APP-JKT-M"  # standard 62.00
    on_hand = await available(http.engine, sku, "DC-WEST")
    await send(http, "wms", "count.submitted", {"count_id": count, "location_id": "DC-WEST",
                                                "counted_at": datetime.now(UTC).isoformat(),
                                                "lines": [{"sku": sku, "quantity": on_hand + 1}]})
    await read_until(http, f"/counts/{count}", at_stage("awaiting_approval"), token=TOKEN)
    blank = await asyncio.to_thread(cli, "counts", "approve", count, "--note", "  ")
    assert blank.exit_code == 1 and "a note is required" in blank.output
    approved = await asyncio.to_thread(cli, "counts", "approve", count, "--note", "found behind the racking",
                                       "--by", "ops-cli")
    assert approved.exit_code == 0, approved.output
    body = json.loads(approved.output)
    assert body["stage"] == "adjusted" and body["decision"]["decided_by"] == "ops-cli"
    assert await available(http.engine, sku, "DC-WEST") == on_hand + 1
    closed = await asyncio.to_thread(cli, "counts", "reject", count, "--note", "changed my mind")
    # refused whether the count is still entering itself in the registry or has closed
    assert closed.exit_code == 1 and ("decided already" in closed.output or "no decision is awaited" in closed.output)
    unknown = await asyncio.to_thread(cli, "counts", "reject", f"NOPE-{count}", "--note", "x")
    assert unknown.exit_code == 1 and "no count" in unknown.output
