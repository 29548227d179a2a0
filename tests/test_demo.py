"""`retailflow demo` in small: a short retail day through the real stack's webhooks, and the summary it prints.

The stack runs on free ports and a temporary data folder; the day has every story of the full demo (ship,
pickup, split, short pick, cancellations, late pick and missing settlement breaching the demo SLAs, a settlement
mismatch, transfers with a variance, returns, a PO received in two parts, counts (one approved through the API), a
vendor return credited) at a tenth of its size.
"""
from pathlib import Path

import pytest
from rich.console import Console

from config.settings import Settings
from devtools.demo import demo_settings, drive, render
from devtools.embedded_postgres import free_port
from devtools.stack import DevStack
from devtools.traffic import DayPlan

pytestmark = pytest.mark.stack


async def test_a_small_demo_day_ends_as_expected(tmp_path: Path) -> None:
    settings = demo_settings(Settings(data_dir=tmp_path, temporal_address=f"127.0.0.1:{free_port()}",
                                      temporal_ui_port=free_port(), http_port=free_port()))
    console = Console(record=True, width=140)
    async with DevStack(settings, postgres_port=free_port(), start_timeout=180) as stack:
        summary = await drive(stack, DayPlan.scaled(20), console=console)
    render(summary, console)
    text = console.export_text()

    failed = [(v.expectation.workflow_id, v.status, v.stage) for v in summary.verdicts if not v.ok]
    assert not failed, failed
    assert summary.reconciliation_ok and summary.invariants_ok
    processes = {process for process, _, _ in summary.by_process()}
    assert processes == {"ReserveToFulfill", "ShipToSettle", "Transfer", "ReturnToRefund", "ReceiveToStock",
                         "CountToAdjust", "VendorReturn"}
    assert summary.sender_stats["counts_approved"] >= 1  # the count beyond tolerance, approved through the API
    kinds = {kind for kind, _ in summary.cases}
    assert {"pick_overdue", "settlement_overdue", "settlement_mismatch", "short_pick"} <= kinds
    assert ("pick_overdue", "resolved") in summary.cases  # the late pick arrived and resolved its case
    assert summary.sender_stats["events"] >= 80
    assert "every process ended as expected" in text and "Reconciliation: clean" in text
