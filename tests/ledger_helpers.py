"""Small builders for the ledger tests: an isolated corner of the item master per test, and movements."""
import uuid
from decimal import Decimal

from adapters.stub_erp import PostgresErp
from domain.inventory import Bucket, MovementKind, MovementLine, MovementRequest
from domain.items import Item, Location, LocationKind


class World:
    """Fresh SKUs and locations (two legal entities), so tests sharing a database never see each other."""

    def __init__(self, prefix: str | None = None, skus: int = 2) -> None:
        p = prefix or uuid.uuid4().hex[:8]
        self.prefix = p
        self.entity_a, self.entity_b = f"LE-A-{p}", f"LE-B-{p}"
        self.items = [
            Item(sku=f"SKU-{p}-{n}", name=f"test item {n}", barcode=f"B{p}{n}", units={"EA": 1, "CASE": 12},
                 unit_cost=Decimal("2.50") + n, price=Decimal("9.99") + n)
            for n in range(skus)
        ]
        self.skus = [i.sku for i in self.items]
        self.dc = f"DC-{p}"
        self.store = f"ST-{p}"
        self.far = f"FAR-{p}"  # another legal entity
        self.locations = [
            Location(location_id=self.dc, name="dc", kind=LocationKind.DISTRIBUTION_CENTER, legal_entity=self.entity_a),
            Location(location_id=self.store, name="store", kind=LocationKind.STORE, legal_entity=self.entity_a),
            Location(location_id=self.far, name="far store", kind=LocationKind.STORE, legal_entity=self.entity_b),
        ]
        self.location_ids = [loc.location_id for loc in self.locations]
        self.cost = {i.sku: Decimal(i.unit_cost) for i in self.items}

    async def create(self, erp: PostgresErp) -> "World":
        await erp.add_master_data(self.items, self.locations)
        return self

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"


def line(sku: str, location_id: str, quantity: int, **kw: object) -> MovementLine:
    return MovementLine(sku=sku, location_id=location_id, quantity=quantity, **kw)


def movement(key: str, kind: MovementKind, *lines: MovementLine, reason_code: str | None = None,
             workflow_id: str = "test:wf", run_id: str = "run-1", reference: str | None = None) -> MovementRequest:
    return MovementRequest(key=key, kind=kind, lines=list(lines), reason=f"test {kind}", reason_code=reason_code,
                           workflow_id=workflow_id, run_id=run_id, reference=reference)


def raw_movement(key: str, kind: MovementKind, *lines: MovementLine) -> MovementRequest:
    """A movement that skips the model's own validation: what a buggy caller could send to the port."""
    return MovementRequest.model_construct(key=key, kind=kind, lines=list(lines), reason="raw", reason_code=None,
                                           workflow_id="test:wf", run_id="run-1", reference=None)


async def buckets(erp: PostgresErp, sku: str, location_id: str) -> dict[Bucket, int]:
    stock = await erp.stock([sku], [location_id])
    got = stock.get(sku, {}).get(location_id, {})
    return {b: got.get(b.value, 0) for b in Bucket}
