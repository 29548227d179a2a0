"""The demo master data: a small retailer's item master, its network, and the opening stock.

Pure data (no I/O): `retailflow seed` loads it through the ERP port and receives the opening stock through the
ledger, so the journal opens balanced; the tests and the demo traffic build on the same catalog.
"""
from decimal import Decimal

from domain.inventory import MovementKind, MovementLine, MovementRequest
from domain.items import BASE_UNIT, Item, Location, LocationKind

CURRENCY = "USD"
EAST, WEST = "RF-EAST", "RF-WEST"  # two legal entities: stores and DCs on each coast

LOCATIONS: list[Location] = [
    Location(location_id="DC-EAST", name="Newark distribution center", kind=LocationKind.DISTRIBUTION_CENTER,
             legal_entity=EAST),
    Location(location_id="DC-WEST", name="Reno distribution center", kind=LocationKind.DISTRIBUTION_CENTER,
             legal_entity=WEST),
    Location(location_id="ST-NYC", name="New York Soho", kind=LocationKind.STORE, legal_entity=EAST),
    Location(location_id="ST-BOS", name="Boston Back Bay", kind=LocationKind.STORE, legal_entity=EAST),
    Location(location_id="ST-PHL", name="Philadelphia Rittenhouse", kind=LocationKind.STORE, legal_entity=EAST),
    Location(location_id="ST-SFO", name="San Francisco Union Square", kind=LocationKind.STORE, legal_entity=WEST),
    Location(location_id="ST-SEA", name="Seattle Pike Place", kind=LocationKind.STORE, legal_entity=WEST),
    Location(location_id="ST-LAX", name="Los Angeles Silver Lake", kind=LocationKind.STORE, legal_entity=WEST),
]
DISTRIBUTION_CENTERS = [loc.location_id for loc in LOCATIONS if loc.kind is LocationKind.DISTRIBUTION_CENTER]
STORES = [loc.location_id for loc in LOCATIONS if loc.kind is LocationKind.STORE]

CASE = {"CASE": 12}
PACK = {"PACK": 6}

# (sku stem, name, category, unit cost, price, extra units, variants)
_PRODUCTS: list[tuple[str, str, str, str, str, dict[str, int], list[str]]] = [
    ("APP-TEE", "Organic cotton tee", "apparel", "6.40", "19.00", PACK, ["WHT-S", "WHT-M", "WHT-L", "BLK-S", "BLK-M", "BLK-L"]),
    ("APP-HOOD", "Fleece hoodie", "apparel", "18.50", "54.00", {}, ["GRY-M", "GRY-L", "NVY-M", "NVY-L"]),
    ("APP-JEAN", "Slim selvedge jeans", "apparel", "24.00", "89.00", {}, ["30-32", "32-32", "34-32", "36-34"]),
    ("APP-SOCK", "Merino crew socks", "apparel", "2.75", "12.00", PACK, ["M", "L"]),
    ("APP-CAP", "Washed twill cap", "apparel", "4.10", "22.00", {}, ["OLV", "BLK", "NVY"]),
    ("APP-JKT", "Waxed field jacket", "apparel", "62.00", "198.00", {}, ["M", "L"]),
    ("HOM-MUG", "Stoneware mug 12 oz", "home", "2.20", "14.00", CASE, ["SAND", "SLATE", "MOSS"]),
    ("HOM-TWL", "Turkish bath towel", "home", "7.80", "29.00", PACK, ["WHT", "GRY", "SAGE"]),
    ("HOM-CNDL", "Soy candle cedar", "home", "5.25", "24.00", CASE, ["CEDAR", "FIG"]),
    ("HOM-PLT", "Dinner plate 10 in", "home", "3.10", "16.00", CASE, ["WHT", "CRM"]),
    ("HOM-THRW", "Wool throw blanket", "home", "31.00", "95.00", {}, ["OAT", "RUST"]),
    ("HOM-LAMP", "Ceramic table lamp", "home", "27.50", "79.00", {}, ["WHT", "BLK"]),
    ("HOM-PILL", "Linen pillow cover", "home", "6.90", "32.00", PACK, ["NAT", "SAGE"]),
    ("GRO-COF", "Whole bean coffee 12 oz", "grocery", "5.60", "14.50", CASE, ["HOUSE", "DECAF", "ESPR"]),
    ("GRO-TEA", "Loose leaf tea tin", "grocery", "3.40", "11.00", CASE, ["EARL", "GREEN", "CHAI"]),
    ("GRO-CHOC", "Dark chocolate bar 72%", "grocery", "1.15", "4.50", CASE, ["PLAIN", "SALT", "ALMD"]),
    ("GRO-OIL", "Olive oil 500 ml", "grocery", "6.20", "18.00", PACK, ["EVOO", "GARLIC"]),
    ("GRO-GRAN", "Maple granola 1 lb", "grocery", "2.90", "8.99", CASE, ["MAPLE", "NUT"]),
    ("GRO-HONY", "Wildflower honey 12 oz", "grocery", "4.05", "12.50", CASE, ["RAW"]),
    ("GRO-WATR", "Sparkling water 12 pk", "grocery", "3.30", "7.99", PACK, ["LIME", "PLAIN"]),
]


def _ean13(n: int) -> str:
    """A valid EAN-13 in the GS1 in-store range (prefix 20), from a running number."""
    body = f"20{n:010d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def _build() -> tuple[list[Item], dict[str, str]]:
    items: list[Item] = []
    categories: dict[str, str] = {}
    for stem, name, category, cost, price, extra, variants in _PRODUCTS:
        for variant in variants:
            sku = f"{stem}-{variant}"
            items.append(Item(
                sku=sku, name=f"{name}, {variant.lower()}", barcode=_ean13(len(items) + 1),
                units={BASE_UNIT: 1, **extra}, unit_cost=Decimal(cost), price=Decimal(price), currency=CURRENCY,
            ))
            categories[sku] = category
    return items, categories


ITEMS, CATEGORIES = _build()
ITEMS_BY_SKU = {item.sku: item for item in ITEMS}


def opening_quantity(item: Item, location: Location, index: int) -> int:
    """Opening units (EA): DCs hold whole packs/cases by the dozen, stores a shelf's worth.

    Deterministic, varied by SKU and location, and a few SKUs left out of some stores so that routing has
    real choices to make."""
    pack = max(item.units.values())
    if location.kind is LocationKind.DISTRIBUTION_CENTER:
        return pack * (20 + (index * 7) % 30)
    if (index + sum(map(ord, location.location_id))) % 9 == 0:
        return 0
    return 4 + (index * 5 + sum(map(ord, location.location_id))) % 21


def opening_stock() -> dict[str, list[MovementLine]]:
    """location_id -> receipt lines of its opening stock."""
    out: dict[str, list[MovementLine]] = {}
    for location in LOCATIONS:
        lines = []
        for index, item in enumerate(ITEMS):
            quantity = opening_quantity(item, location, index)
            if quantity:
                lines.append(MovementLine(sku=item.sku, location_id=location.location_id, quantity=quantity))
        out[location.location_id] = lines
    return out


SEED_WORKFLOW_ID = "seed:opening-stock"


def opening_movements() -> list[MovementRequest]:
    """One RECEIPT per location, keyed by the location: seeding twice applies each once."""
    return [
        MovementRequest(
            key=f"seed:opening:{location_id}", kind=MovementKind.RECEIPT, lines=lines, reason="opening stock",
            workflow_id=SEED_WORKFLOW_ID, run_id="seed", reference=f"opening:{location_id}",
        )
        for location_id, lines in opening_stock().items()
    ]
