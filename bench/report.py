"""bench/results.json -> the generated part of bench/RESULTS.md and bench/scale.png."""
from __future__ import annotations

import json
import sys
from pathlib import Path

START, END = "<!-- generated:start -->", "<!-- generated:end -->"


def _s(d: dict, fmt: str = "{:.2f}") -> str:
    if not d or not d.get("values"):
        return "n/a"
    return f"{fmt.format(d['min'])} / **{fmt.format(d['median'])}** / {fmt.format(d['max'])}"


def _ratio(a: dict, b: dict) -> float | None:
    if not a or not b or not a.get("values") or not b.get("values") or not b["median"]:
        return None
    return a["median"] / b["median"]


def generated(r: dict) -> str:  # noqa: PLR0915
    m = r["machine"]
    lines = [START, "",
             f"Run {r['started']} to {r.get('finished', '?')} UTC. Load average (1/5/15 min) at start "
             f"{'/'.join(f'{x:.2f}' for x in r['load_at_start'])}, at end "
             f"{'/'.join(f'{x:.2f}' for x in r.get('load_at_end', [0, 0, 0]))}.", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}; Python {m['python']}, "
             f"temporalio {m['temporalio']}, {m['temporal_cli']} (dev server, SQLite file persistence).", "",
             "Worker settings: " + ", ".join(f"`{k}={v}`" for k, v in r.get("settings", {}).items()) + ".", "",
             f"Arguments: {', '.join(f'{k}={v}' for k, v in r['args'].items() if k not in ('out', 'data_dir'))}.",
             "", "Each figure: min / **median** / max over the repetitions.", ""]
    t = r.get("throughput", {})
    ratio = _ratio(t.get("real"), t.get("ceiling"))
    lines += ["### Throughput (lifecycles per second)", "",
              "| | lifecycles/s |", "|---|---|",
              f"| skeleton ceiling | {_s(t.get('ceiling'))} |",
              f"| real lifecycles through HTTP | {_s(t.get('real'))} |",
              f"| ratio of medians (target >= 0.8) | {ratio:.2f} |" if ratio else "| ratio | n/a |", "",
              f"{t.get('lifecycles_per_rep')} lifecycles per repetition, {t.get('concurrency')} in flight; "
              f"{t.get('rejected', 0)} orders rejected. Worker RSS after: {t.get('worker_rss_mib', 0):.0f} MiB "
              f"(skeleton worker {t.get('skeleton_rss_mib', 0):.0f} MiB).", ""]
    lat = r.get("latency")
    if lat:
        lines += ["### order.placed decision latency (ms)", "",
                  "| senders | | p50 | p95 | p99 |", "|---|---|---|---|---|"]
        for senders, d in lat.items():
            for who in ("real", "bare"):
                label = "order.placed via HTTP" if who == "real" else "bare update-with-start"
                lines.append(f"| {senders} | {label} | {_s(d[who]['p50'], '{:.0f}')} | {_s(d[who]['p95'], '{:.0f}')} "
                             f"| {_s(d[who]['p99'], '{:.0f}')} |")
            q = _ratio(d["real"]["p99"], d["bare"]["p99"])
            lines.append(f"| {senders} | p99 ratio (target <= 2 at 10) | | | {q:.2f} |" if q else "")
        lines += ["", "Samples per repetition: " + ", ".join(
            f"{s} sender(s): {d['samples_per_rep']} per sender ({d['non_decisions']} answered without a decision)"
            for s, d in lat.items()) + ".", ""]
    c = r.get("cost")
    if c:
        lines += ["### Temporal actions and history events per process", "",
                  "| process | actions | history events |", "|---|---|---|"]
        for wf, d in c["processes"].items():
            lines.append(f"| {wf} | {_s(d['actions'], '{:.0f}')} | {_s(d['events'], '{:.0f}')} |")
        for wf, d in c.get("other_processes", {}).items():
            lines.append(f"| {wf} | {_s(d['actions'], '{:.0f}')} | {_s(d['events'], '{:.0f}')} |")
        lines += [f"| **one order lifecycle (R2F + S2S)** | {_s(c['lifecycle_actions'], '{:.0f}')} | |", "",
                  f"Cost per 1,000 orders: USD {_s(c['cost_per_1000_orders_usd'])} ({c['price']}).", "",
                  "Actions by reason (median over the sampled histories):", ""]
        for wf, d in c["processes"].items():
            lines.append(f"- {wf} ({d['sampled']} histories): " + ", ".join(
                f"{reason}: {v:g}" for reason, v in d["by_reason_median"].items()))
        lines.append("")
    sc = r.get("scale")
    if sc:
        base = t.get("real")
        lines += ["### Scale: open waiting orders", "",
                  "| open processes | worker RSS MiB (before / after) | lifecycles/s | vs none open |",
                  "|---|---|---|---|",
                  f"| ~0 | {t.get('worker_rss_mib', 0):.0f} | {_s(base)} | 1.00 |"]
        for p in sc["points"]:
            q = _ratio(p["throughput"], base)
            lines.append(f"| {p['open']} (target {p['target']}) | {p['rss_mib_before']:.0f} / {p['rss_mib_after']:.0f} "
                         f"| {_s(p['throughput'])} | {q:.2f} |" if q else
                         f"| {p['open']} | {p['rss_mib_before']:.0f} / {p['rss_mib_after']:.0f} | n/a | n/a |")
        lines += ["", f"Scale phase budget: {sc['budget_minutes']} minutes. ![throughput and memory against open "
                  "processes](scale.png)", ""]
    lines.append(END)
    return "\n".join(lines)


def plot(r: dict, out: Path) -> Path | None:
    sc = r.get("scale")
    if not sc or not sc["points"]:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = r["throughput"]["real"]
    xs = [0] + [p["open"] for p in sc["points"]]
    med = [t["median"]] + [p["throughput"].get("median", float("nan")) for p in sc["points"]]
    lo = [t["min"]] + [p["throughput"].get("min", float("nan")) for p in sc["points"]]
    hi = [t["max"]] + [p["throughput"].get("max", float("nan")) for p in sc["points"]]
    rss = [r["throughput"]["worker_rss_mib"]] + [p["rss_mib_after"] for p in sc["points"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.errorbar(xs, med, yerr=[[m - a for m, a in zip(med, lo, strict=True)], [b - m for m, b in zip(med, hi, strict=True)]],
                marker="o", color="tab:blue", label="lifecycles/s (min-median-max)")
    ax.set_xlabel("open waiting processes")
    ax.set_ylabel("lifecycles / s", color="tab:blue")
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    ax2.plot(xs, rss, marker="s", color="tab:red", label="worker RSS (MiB)")
    ax2.axhline(1024, color="tab:red", linestyle=":", linewidth=1)
    ax2.set_ylabel("worker RSS, MiB (dotted: 1 GiB)", color="tab:red")
    ax2.set_ylim(bottom=0)
    ax.set_title("retailflow: throughput and worker memory vs open processes")
    fig.tight_layout()
    path = out / "scale.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(r: dict, out: Path) -> None:
    path = out / "RESULTS.md"
    text = path.read_text() if path.exists() else "# retailflow benchmark results\n\n" + START + "\n" + END + "\n"
    if START not in text:
        text += "\n" + START + "\n" + END + "\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    path.write_text(head + generated(r) + tail)
    plot(r, out)


def summary(r: dict) -> str:
    return generated(r).replace(START, "").replace(END, "").strip()


if __name__ == "__main__":  # python -m bench.report [results.json]: regenerate RESULTS.md and the plot
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results.json"
    write(json.loads(source.read_text()), source.parent)
