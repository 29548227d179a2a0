"""The screenshots of docs/ops.md, from a running stack (e.g. `python -m tests.histories.capture --keep`):

    .venv/bin/python -m tests.histories.screenshots --address 127.0.0.1:7233 --ui http://localhost:8233

Headless Chromium (Debian's `chromium`) renders each Temporal UI page into docs/img/. Look at every PNG before
committing it: the UI is a JS app and a page that did not finish loading is just a frame.
"""
import argparse
import asyncio
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from client.names import LOCATION_IDS, SKUS

IMG = Path(__file__).resolve().parent.parent.parent / "docs" / "img"
CHROMIUM = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--virtual-time-budget=15000"]


def shoot(name: str, url: str, size: str = "1600,1000") -> Path:
    out = IMG / name
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([*CHROMIUM, f"--user-data-dir={profile}", f"--window-size={size}", f"--screenshot={out}", url],
                       check=True, capture_output=True, timeout=180)
    print(out, out.stat().st_size)
    return out


async def pages(client: Client, ui: str) -> list[tuple[str, str, str]]:
    """(file, url, window size) for every screenshot."""
    base = f"{ui}/namespaces/{client.namespace}/workflows"

    async def run(workflow_id: str) -> str:
        description = await client.get_workflow_handle(workflow_id).describe()
        return f"{base}/{quote(workflow_id, safe='')}/{description.run_id}"

    def listing(query: str) -> str:
        return f"{base}?query={quote(query, safe='')}"

    locations = [w.typed_search_attributes.get(LOCATION_IDS)
                 async for w in client.list_workflows("WorkflowType = 'ExceptionCase' AND Stage = 'open'")]
    location = next((ids[0] for ids in locations if ids), "DC-EAST")  # a location with an open case
    order = await run("order:marketplace:O-h-0003")
    sku = (await client.get_workflow_handle("order:marketplace:O-h-0003").describe()).typed_search_attributes.get(
        SKUS)[0]
    return [
        ("order-run.png", f"{order}/user-metadata", "1600,900"),
        ("order-history.png", f"{order}/history", "1600,1300"),
        ("sla-breached.png", listing("SlaBreached = true"), "1800,800"),
        ("open-exceptions-by-location.png",
         listing(f"WorkflowType = 'ExceptionCase' AND Stage = 'open' AND LocationIds = '{location}'"), "1800,700"),
        ("sku.png", listing(f"Skus = '{sku}'"), "1800,800"),
        ("case-resolved.png", f"{await run('exception:settle:web:O-h-0010:settlement_mismatch')}/user-metadata",
         "1600,1000"),
        ("case-resolved-history.png", f"{await run('exception:settle:web:O-h-0010:settlement_mismatch')}/history",
         "1600,1200"),
    ]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--ui", required=True)
    parser.add_argument("--only", nargs="*")
    args = parser.parse_args()
    client = await Client.connect(args.address, data_converter=pydantic_data_converter)
    IMG.mkdir(parents=True, exist_ok=True)
    for name, url, size in await pages(client, args.ui):
        if not args.only or name in args.only:
            await asyncio.to_thread(shoot, name, url, size)


if __name__ == "__main__":
    asyncio.run(main())
