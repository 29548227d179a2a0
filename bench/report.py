"""bench/results.json -> the generated part of bench/RESULTS.md and bench/scale.png.

Everything between the two markers is generated; the rest of RESULTS.md (how each figure is measured, the
analysis) is written by hand and kept as it is.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from bench.targets import Verdict, verdicts

START, END = "<!-- generated:start -->", "<!-- generated:end -->"


def _s(d: dict | None, fmt: str = "{:.2f}") -> str:
    if not d or not d.get("values"):
        return "n/a"
    return f"{fmt.format(d['min'])} / **{fmt.format(d['median'])}** / {fmt.format(d['max'])}"


def _ms(d: dict | None, key: str) -> str:
    return f"{d[key]:.0f}" if d and key in d else "n/a"


def _fmt(verdict: Verdict, value: float | None) -> str:
    if value is None:
        return "n/a"
    if verdict.target.key in ("lifecycle_actions", "transfer_actions", "return_actions", "scale_open", "scale_rss"):
        return f"{value:,.0f}"
    return f"{value:.2f}"


REUSED_PHASE = {"latency": "latency", "transfer": "others", "return": "others", "scale": "scale"}


def verdict_rows(r: dict) -> list[str]:
    rows = ["| target | measured: min / **median** / max | verdict |", "|---|---|---|"]
    reused = r.get("reused", {})
    for v in verdicts(r):
        phase = REUSED_PHASE.get(v.target.key.split("_", 1)[0])
        if phase in reused:
            v = dataclasses.replace(v, note=", ".join(
                x for x in (v.note, f"reused from the run of {reused[phase][:16].replace('T', ' ')}") if x))
        if v.low is not None and v.high is not None:
            measured = f"{_fmt(v, v.low)} / **{_fmt(v, v.value)}** / {_fmt(v, v.high)}"
        else:
            measured = f"**{_fmt(v, v.value)}**"
        note = f" ({v.note})" if v.note else ""
        rows.append(f"| {v.target.what}: {v.target.text} | {measured}{note} | **{v.text}** |")
    return rows


def _load(values: list[float] | None) -> str:
    return "/".join(f"{x:.2f}" for x in values) if values else "?"


def cpu_rows(cpu: dict | None) -> list[str]:
    """CPU milliseconds per lifecycle, by part, at the plateau: where a real lifecycle's cost goes next to the
    skeleton's, on the cores they share."""
    if not cpu or not cpu.get("real"):
        return []
    parts = [p for p in ("temporal", "postgres", "worker", "api", "skeleton", "bench") if p in cpu["real"]
             or p in cpu.get("ceiling", {})]
    med = {kind: {p: cpu.get(kind, {}).get(p, {}).get("median") for p in parts} for kind in ("ceiling", "real")}
    total = {kind: sum(v for v in med[kind].values() if v is not None) for kind in med}
    cell = lambda v: "" if v is None else f"{v:.0f}"  # noqa: E731
    lines = ["CPU per lifecycle at the plateau, by part (ms, median of the repetitions; user + system, children "
             "included): what each lifecycle costs the 2 cores, so the ratio above is bounded by the totals' "
             f"ratio ({total['ceiling'] / total['real']:.2f} here) when the cores are the limit.", "",
             "| | " + " | ".join(parts) + " | total |", "|---|" + "---|" * (len(parts) + 1)]
    for kind, label in (("ceiling", "skeleton ceiling"), ("real", "real lifecycle")):
        lines.append(f"| {label} | " + " | ".join(cell(med[kind][p]) for p in parts) + f" | {total[kind]:.0f} |")
    return [*lines, ""]


def generated(r: dict) -> str:  # noqa: PLR0915
    m = r["machine"]
    lines = [START, "",
             f"Run {r['started']} to {r.get('finished', '?')} UTC. Load average (1/5/15 min) at start "
             f"{_load(r.get('load_at_start'))}, at end {_load(r.get('load_at_end'))}.", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}; Python {m['python']}, "
             f"temporalio {m['temporalio']}, {m['temporal_cli']} (dev server, SQLite file persistence).", "",
             "Worker settings: " + ", ".join(f"`{k}={v}`" for k, v in r.get("settings", {}).items()) + ".", "",
             f"Arguments: {', '.join(f'{k}={v}' for k, v in r['args'].items() if k not in ('out', 'data_dir'))}.",
             "", "Each figure: min / **median** / max over the repetitions; a ratio is paired (each repetition "
             "against the one run next to it), its spread is the spread of the pairs.", "",
             "### Targets (issue 19)", "", *verdict_rows(r), ""]
    if r.get("reused"):
        lines += ["Not measured in this run, reused from earlier runs (`--reuse`): " + "; ".join(
            f"{phase} from the run started {when}" for phase, when in r["reused"].items()) + ".", ""]
    bc = r.get("bytecode")
    if bc:
        lines += [f"Bytecode: {bc['fresh']} of {bc['modules']} of the worker's modules had an up-to-date `.pyc` "
                  "after the warm-up lifecycle.", ""]
    t = r.get("throughput")
    if t:
        lines += ["### Throughput: lifecycles in flight swept to the plateau (lifecycles per second)", "",
                  "| in flight | skeleton ceiling | real lifecycles through HTTP | paired ratio real / ceiling | "
                  "load (1 min) after |", "|---|---|---|---|---|"]
        for inflight, d in t["levels"].items():
            mark = " (plateau)" if str(t["plateau"]) == inflight else ""
            lines.append(f"| {inflight}{mark} | {_s(d['ceiling'])} | {_s(d['real'])} | {_s(d['ratio'])} | "
                         f"{d['load'][0]:.2f} |")
        top = t["levels"][str(t["plateau"])]
        sk = r.get("skeleton_actions", {})
        lines += ["", f"{t['lifecycles_per_rep']} lifecycles per repetition; the plateau is the first level after "
                  f"which neither series gains {t['plateau_gain']:.0%} "
                  f"({'reached' if t['plateau_reached'] else 'not reached: the last level swept'}). "
                  f"{sum(d['rejected'] for d in t['levels'].values())} orders rejected. Worker RSS at the plateau: "
                  f"{top['worker_rss_mib']:.0f} MiB (skeleton worker {top['skeleton_rss_mib']:.0f} MiB). "
                  f"A skeleton lifecycle costs {sk.get('order', '?')} + {sk.get('settle', '?')} actions.", ""]
        lines += cpu_rows(top.get("cpu_ms"))
    lat = r.get("latency")
    if lat:
        lines += ["### order.placed decision latency (ms)", "",
                  "| senders | | p50 | p95 | p99 |", "|---|---|---|---|---|"]
        for senders, d in lat.items():
            for who, label in (("real", "order.placed via HTTP"), ("bare", "bare update-with-start")):
                lines.append(f"| {senders} | {label} | {_s(d[who]['p50'], '{:.0f}')} | {_s(d[who]['p95'], '{:.0f}')} "
                             f"| {_s(d[who]['p99'], '{:.0f}')} |")
            bound = "1.5" if senders == "1" else "2"
            lines.append(f"| {senders} | paired ratio (target <= {bound}) | {_s(d['ratio']['p50'])} | "
                         f"| {_s(d['ratio']['p99'])} |")
        lines += ["", "Samples per repetition: " + ", ".join(
            f"{s} sender(s): {d['samples_per_rep']} per sender ({d['non_decisions']} answered without a decision)"
            for s, d in lat.items()) + ".", ""]
    c = r.get("cost")
    if c:
        lines += ["### Temporal actions and history events per process", "",
                  "| process | actions | history events |", "|---|---|---|"]
        processes = {**c["processes"], **c.get("other_processes", {})}
        for wf, d in processes.items():
            lines.append(f"| {wf} | {_s(d['actions'], '{:.0f}')} | {_s(d['events'], '{:.0f}')} |")
        lines += [f"| **one order lifecycle (R2F + S2S)** | {_s(c['lifecycle_actions'], '{:.0f}')} | |", "",
                  f"Cost per 1,000 orders: USD {_s(c['cost_per_1000_orders_usd'])} ({c['price']}).", "",
                  "Actions by reason (median over the sampled histories):", ""]
        for wf, d in processes.items():
            lines.append(f"- {wf} ({d['sampled']} histories): " + ", ".join(
                f"{reason}: {v:g}" for reason, v in d["by_reason_median"].items()))
        lines.append("")
    ws = r.get("wft_slots")
    if ws:
        lines += [f"### Workflow-task slots on {m['cores']} cores ({ws['inflight']} lifecycles in flight)", "",
                  "| max_concurrent_workflow_tasks | skeleton ceiling | real | paired ratio |", "|---|---|---|---|"]
        for value, d in ws["values"].items():
            lines.append(f"| {value} | {_s(d['ceiling'])} | {_s(d['real'])} | {_s(d['ratio'])} |")
        lines.append("")
    sc = r.get("scale")
    if sc:
        lines += ["### Scale: open waiting orders", "",
                  f"Opened by {sc['fill_path_text']}. Throughput at {sc['inflight']} lifecycles in flight, a ceiling "
                  f"repetition next to every real one. An event to an evicted order: `fulfillment.picked` to orders "
                  f"opened more than 1.5 x the cache ({sc['cache_size']} runs) before, timed from the POST to the "
                  "completion of the workflow task that applied it; cached: the same to the orders opened last.", "",
                  "| open | opened/s | worker RSS MiB (before / after) | ceiling | real | paired ratio | "
                  "vs none open | evicted p50 / p99 ms | cached p50 / p99 ms |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for p in sc["points"]:
            rate = f"{p['opened_per_s']:.1f}" if p.get("opened_per_s") else "-"
            lines.append(f"| {p['open']:,} (target {p['target']:,}) | {rate} | {p['rss_mib_before']:.0f} / "
                         f"{p['rss_mib_after']:.0f} | {_s(p['ceiling'])} | {_s(p['real'])} | {_s(p['ratio'])} | "
                         f"{_s(p['vs_none_open'])} | {_ms(p.get('evicted'), 'p50_ms')} / "
                         f"{_ms(p.get('evicted'), 'p99_ms')} | {_ms(p.get('cached'), 'p50_ms')} / "
                         f"{_ms(p.get('cached'), 'p99_ms')} |")
        lines += ["", f"Scale phase budget: {sc['budget_minutes']} minutes. ![throughput and memory against open "
                  "processes](scale.png)", ""]
    lines.append(END)
    return "\n".join(lines)


def plot(r: dict, out: Path) -> Path | None:
    sc, t = r.get("scale"), r.get("throughput")
    if not sc or not sc["points"] or not t:
        return None
    import matplotlib  # the dev group's; only the full run draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = t["levels"][str(t["plateau"])]
    points = [{"open": 0, **base, "rss_mib_after": base["worker_rss_mib"]}, *sc["points"]]
    xs = [p["open"] for p in points]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for key, color, label in (("real", "tab:blue", "real lifecycles/s"), ("ceiling", "tab:gray", "skeleton ceiling/s")):
        med = [p[key].get("median", float("nan")) for p in points]
        lo = [m - p[key].get("min", m) for m, p in zip(med, points, strict=True)]
        hi = [p[key].get("max", m) - m for m, p in zip(med, points, strict=True)]
        ax.errorbar(xs, med, yerr=[lo, hi], marker="o", color=color, label=label, capsize=3)
    ax.set_xlabel("open waiting processes")
    ax.set_ylabel("lifecycles / s (min-median-max)")
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    ax2.plot(xs, [p["rss_mib_after"] for p in points], marker="s", color="tab:red", label="worker RSS (MiB)")
    ax2.axhline(1024, color="tab:red", linestyle=":", linewidth=1)
    ax2.set_ylabel("worker RSS, MiB (dotted: 1 GiB)", color="tab:red")
    ax2.set_ylim(bottom=0)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="lower left", fontsize=8)
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
