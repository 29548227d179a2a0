"""The targets of issue 19 and their verdicts, computed from bench/results.json (never written by hand).

A verdict is on the median of the repetitions; where the spread (min to max) crosses the target the verdict
says so, because then another run could fall on the other side.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

MET, MISSED, NOT_MEASURED = "met", "missed", "not measured"


@dataclass(frozen=True)
class Target:
    key: str
    what: str
    bound: float
    at_most: bool  # the figure must be <= bound (else >= bound)
    unit: str = ""

    @property
    def text(self) -> str:
        return f"{'<=' if self.at_most else '>='} {self.bound:,g}{self.unit}"

    def holds(self, value: float) -> bool:
        return value <= self.bound if self.at_most else value >= self.bound


TARGETS = {t.key: t for t in (
    Target("throughput_ratio", "lifecycle throughput / skeleton ceiling at the plateau (paired)", 0.85, False, "x"),
    Target("latency_1_p50", "order.placed p50 / bare update-with-start p50, 1 sender (paired)", 1.5, True, "x"),
    Target("latency_1_p99", "order.placed p99 / bare update-with-start p99, 1 sender (paired)", 1.5, True, "x"),
    Target("latency_10_p50", "order.placed p50 / bare update-with-start p50, 10 senders (paired)", 2.0, True, "x"),
    Target("latency_10_p99", "order.placed p99 / bare update-with-start p99, 10 senders (paired)", 2.0, True, "x"),
    Target("lifecycle_actions", "actions per one-shipment order lifecycle (ReserveToFulfill + ShipToSettle)", 20, True),
    Target("transfer_actions", "actions per Transfer", 14, True),
    Target("return_actions", "actions per ReturnToRefund", 16, True),
    Target("cost_per_1000", "USD per 1,000 orders (actions x list price)", 1.0, True),
    Target("scale_open", "open processes reached", 20_000, False),
    Target("scale_rss", "worker RSS at the highest level, MiB", 1024, True, " MiB"),
    Target("scale_throughput", "paired ratio at the highest level / paired ratio with none open", 0.9, False, "x"),
    Target("bytecode", "share of the worker's modules with an up-to-date .pyc after the warm-up", 1.0, False),
)}


@dataclass(frozen=True)
class Verdict:
    target: Target
    value: float | None
    low: float | None = None
    high: float | None = None
    note: str = ""

    @property
    def outcome(self) -> str:
        if self.value is None:
            return NOT_MEASURED
        return MET if self.target.holds(self.value) else MISSED

    @property
    def fragile(self) -> bool:
        """The spread of the repetitions crosses the bound."""
        if self.value is None or self.low is None or self.high is None:
            return False
        return self.target.holds(self.low) != self.target.holds(self.high)

    @property
    def text(self) -> str:
        return self.outcome + (" (the spread crosses the target)" if self.fragile else "")


def _spread(d: dict | None) -> tuple[float | None, float | None, float | None]:
    if not d or not d.get("values"):
        return None, None, None
    return d["median"], d["min"], d["max"]


def _of(key: str, d: dict | None, note: str = "") -> Verdict:
    median, low, high = _spread(d)
    return Verdict(TARGETS[key], median, low, high, note)


def _dig(r: dict, *path: str) -> dict | None:
    for p in path:
        if not isinstance(r, dict) or p not in r:
            return None
        r = r[p]
    return r


def verdicts(r: dict) -> list[Verdict]:
    """Every target of issue 19 judged on the results of one run (missing phases: not measured)."""
    out: list[Verdict] = []
    plateau = _dig(r, "throughput", "plateau")
    out.append(_of("throughput_ratio", _dig(r, "throughput", "levels", str(plateau), "ratio") if plateau else None,
                   f"at {plateau} lifecycles in flight" if plateau else ""))
    for senders in ("1", "10"):
        for q in ("p50", "p99"):
            out.append(_of(f"latency_{senders}_{q}", _dig(r, "latency", senders, "ratio", q)))
    out.append(_of("lifecycle_actions", _dig(r, "cost", "lifecycle_actions")))
    out.append(_of("transfer_actions", _dig(r, "cost", "other_processes", "Transfer", "actions")))
    out.append(_of("return_actions", _dig(r, "cost", "other_processes", "ReturnToRefund", "actions")))
    out.append(_of("cost_per_1000", _dig(r, "cost", "cost_per_1000_orders_usd")))
    points = _dig(r, "scale", "points") or []
    top: Callable[[str], float | None] = lambda k: points[-1].get(k) if points else None  # noqa: E731
    out.append(Verdict(TARGETS["scale_open"], top("open"),
                       note=f"filled by the {_dig(r, 'scale', 'fill_path') or '?'} path" if points else ""))
    out.append(Verdict(TARGETS["scale_rss"], max((p["rss_mib_after"] for p in points), default=None)))
    out.append(_of("scale_throughput", points[-1].get("vs_none_open") if points else None))
    bytecode = _dig(r, "bytecode")
    out.append(Verdict(TARGETS["bytecode"], bytecode["share"] if bytecode else None,
                       note=f"{bytecode['fresh']} of {bytecode['modules']}" if bytecode else ""))
    return out
