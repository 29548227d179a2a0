"""Activities: thin, typed wrappers over the ERP / WMS / POS ports, plus the PostgreSQL stubs behind them.

`stub_activities` is what a worker registers in the stub setup; a team with real systems builds the same
activity classes over its own port implementations. Imports stay lazy so that workflows can import the
activity models (passed through the sandbox) without pulling in the database stack.
"""
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from worker.settings import Settings


def activity_methods(*instances: object) -> list[Callable[..., Any]]:
    """Every @activity.defn method of the given activity class instances."""
    out = []
    for instance in instances:
        for name in dir(type(instance)):
            attr = getattr(type(instance), name)
            if callable(attr) and hasattr(attr, "__temporal_activity_definition"):
                out.append(getattr(instance, name))
    return out


def stub_activities(engine: "AsyncEngine", settings: "Settings", *, fault_seed: int | None = None) -> list[Callable[..., Any]]:
    """ERP, WMS and POS activities over the PostgreSQL stubs, with the configured faults and safety stock."""
    from activities.adapters.stub_erp import PostgresErp
    from activities.adapters.stub_pos import PostgresPos
    from activities.adapters.stub_wms import PostgresWms
    from activities.erp import ErpActivities
    from activities.faults import Faults
    from activities.pos import PosActivities
    from activities.wms import WmsActivities

    faults = Faults.from_settings(settings, seed=fault_seed)
    return activity_methods(
        ErpActivities(PostgresErp(engine), faults, settings.safety_stock),
        WmsActivities(PostgresWms(engine), faults),
        PosActivities(PostgresPos(engine), faults),
    )
