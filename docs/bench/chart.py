#!/usr/bin/env python3
"""Draw the side-by-side comparison (docs/bench/side-by-side.jsonl) as SVG bar charts, with no
dependency beyond the standard library:

  python3 docs/bench/chart.py [RUN]

RUN is a run id from the file or the start of one (a date such as 2026-12-06 takes every run of
that day, the latest row of each server and workload); default: the latest run. Writes
docs/bench/cpu-per-edit.svg (server CPU ms per edit, per workload and server),
docs/bench/edit-to-peer.svg (edit-to-peer p99 ms) and, if the runs have the storm workload,
docs/bench/storm-online.svg (the online tablets' edit-to-peer p50/p99 before and during the
reconnect storm, against the 50 ms target), and prints the tables benchmarks.md shows.
"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
SERVERS = [
    ("firemode-sqlite", "FireMode, SQLite", "#c0392b"),
    ("firemode-postgres", "FireMode, PostgreSQL", "#e67e22"),
    ("ref25", "reference, automerge-repo 2.5", "#2c3e50"),
    ("ref028", "reference, sync-server 0.2.8", "#7f8c8d"),
    ("samod", "reference, samod 0.16 (Rust)", "#2980b9"),
]
REFERENCES = [key for key, _, _ in SERVERS if not key.startswith("firemode")]
WORKLOADS = [
    ("rust-closed", "Rust, 200 clients, closed loop"),
    ("rust-1hz", "Rust, 200 clients, 1 edit/s"),
    ("js-burst", "JS, 20 clients, burst"),
    ("js-paced", "JS, 100 clients, 5 edits/s"),
]
STORM_SERIES = [
    ("before-p50", "before the storm, p50", "#a9cce3"),
    ("before-p99", "before the storm, p99", "#2471a3"),
    ("during-p50", "during the storm, p50", "#f5b7b1"),
    ("during-p99", "during the storm, p99", "#c0392b"),
]
STORM_TARGET_MS = 50


def cpu_ms_per_edit(r):
    if "server_cpu_ms_per_edit" in r:
        return r["server_cpu_ms_per_edit"]
    usage = r.get("server_usage") or {}
    eps = r.get("edits_per_sec") or 0
    if usage.get("cpu_cores") is None or not eps:
        return None
    return usage["cpu_cores"] * 1000 / eps


def p99(r):
    if "edit_to_peer_ms" in r:
        return r["edit_to_peer_ms"].get("p99")
    e = r.get("edit_to_peer") or {}
    return e.get("p99_ms")


def load(sel):
    """Rows of the selected run(s), keyed by (server, workload); a later run's row wins."""
    rows = []
    for line in (HERE / "side-by-side.jsonl").read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # not a result (an older script let client logs through)
    rows = [r for r in rows if not r.get("failed") and "run" in r]
    runs = sorted({r["run"] for r in rows})
    if not runs:
        sys.exit("no runs in side-by-side.jsonl")
    sel = sel or runs[-1]
    chosen = [r for r in rows if r["run"].startswith(sel)]
    if not chosen:
        sys.exit(f"no run in side-by-side.jsonl starts with {sel}")
    out = {}
    for r in sorted(chosen, key=lambda r: r["run"]):
        out[(r["sbs_server"], r["workload"])] = r
    return sel, out


def bars(title, unit, groups, series, values, path, target=None):
    """Grouped bars: `values[(series key, group key)]`; `target` draws a dashed line."""
    width, height, left, top, bottom = 1000, 360, 60, 40, 90
    vmax = max([v for v in values.values() if v is not None] + [target or 0, 0.001]) * 1.15
    group_w = (width - left - 20) / len(groups)
    bar_w = group_w / (len(series) + 1)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="15">{title}</text>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 20}" y2="{height - bottom}" stroke="#333"/>',
    ]
    plot_h = height - bottom - top
    for i in range(5):
        v = vmax * i / 4
        y = height - bottom - plot_h * i / 4
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 20}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{v:.2f}</text>')
    out.append(f'<text x="14" y="{top + plot_h / 2}" transform="rotate(-90 14 {top + plot_h / 2})" text-anchor="middle">{unit}</text>')
    for gi, (gkey, gname) in enumerate(groups):
        gx = left + gi * group_w + bar_w / 2
        for si, (skey, _, colour) in enumerate(series):
            v = values.get((skey, gkey))
            x = gx + si * bar_w
            if v is None:
                out.append(f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom - 4}" text-anchor="middle" fill="#999">n/a</text>')
                continue
            h = plot_h * v / vmax
            out.append(f'<rect x="{x:.1f}" y="{height - bottom - h:.1f}" width="{bar_w * 0.9:.1f}" height="{h:.1f}" fill="{colour}"/>')
            out.append(f'<text x="{x + bar_w * 0.45:.1f}" y="{height - bottom - h - 3:.1f}" text-anchor="middle" font-size="10">{v:.2f}</text>')
        out.append(f'<text x="{left + gi * group_w + group_w / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle">{gname}</text>')
    if target is not None:
        y = height - bottom - plot_h * target / vmax
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 20}" y2="{y:.1f}" stroke="#27ae60" stroke-dasharray="6 4"/>')
        out.append(f'<text x="{width - 22}" y="{y - 4:.1f}" text-anchor="end" fill="#27ae60">target {target:g} {unit}</text>')
    for si, (_, sname, colour) in enumerate(series):
        x = left + si * 188
        out.append(f'<rect x="{x}" y="{height - 40}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{x + 16}" y="{height - 30}">{sname}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def storm(sel, rows):
    """The storm rows (FireMode only): chart of the online tablets, and their table."""
    runs = [(key, label) for key, label, _ in SERVERS if (key, "storm") in rows]
    if not runs:
        return
    values = {}
    print()
    print("| server | tablets | sessions | offline edits | converged | server CPU | server waited for a CPU | peak RSS "
          "| cut for being slow | online p50 / p99 before (n) | online p50 / p99 during (n) | lost "
          "| online process's event-loop delay p99 before / during |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key, label in runs:
        r = rows[(key, "storm")]
        on = r.get("online") or {}
        b, d = on.get("before") or {}, on.get("during") or {}
        for phase, ph in (("before", b), ("during", d)):
            for p in ("p50", "p99"):
                values[(f"{phase}-{p}", key)] = ph.get(p)
        print(f"| {label} | {r['tablets']:,} | {r['sessions']:,} | {r['tablets'] * r['edits_per_tablet']:,} "
              f"| {r['converged_ms'] / 1000:.2f} s{'' if r['converged'] else ' (NOT converged)'} | {r['server_cpu_s']} s "
              f"| {r.get('server_runqueue_wait_s', '—')} s | {r['server_peak_rss_mib']} MiB | {r['slow_cuts']} "
              f"| {b.get('p50')} / {b.get('p99')} ms ({b.get('n')}) | {d.get('p50')} / {d.get('p99')} ms ({d.get('n')}) "
              f"| {(b.get('lost') or 0) + (d.get('lost') or 0)} "
              f"| {b.get('event_loop_delay_p99_ms')} / {d.get('event_loop_delay_p99_ms')} ms |")
    bars(f"Online tablets' edit-to-peer during the reconnect storm (ms) — run {sel}", "ms",
         runs, STORM_SERIES, values, HERE / "storm-online.svg", target=STORM_TARGET_MS)


def main():
    sel, rows = load(sys.argv[1] if len(sys.argv) > 1 else None)
    cpu = {k: cpu_ms_per_edit(r) for k, r in rows.items()}
    lat = {k: p99(r) for k, r in rows.items()}
    bars(f"Server CPU per edit (ms), lower is better — run {sel}", "ms CPU / edit", WORKLOADS, SERVERS, cpu,
         HERE / "cpu-per-edit.svg")
    bars(f"Edit-to-peer p99 (ms), lower is better — run {sel}", "ms", WORKLOADS, SERVERS, lat, HERE / "edit-to-peer.svg")
    print("| workload | " + " | ".join(s[1] for s in SERVERS) + " | best reference ÷ FireMode SQLite |")
    print("|---|" + "---:|" * (len(SERVERS) + 1))
    for wkey, wname in WORKLOADS:
        cells = []
        for skey, _, _ in SERVERS:
            v = cpu.get((skey, wkey))
            cells.append("—" if v is None else f"{v:.3f}")
        refs = [cpu.get((s, wkey)) for s in REFERENCES if cpu.get((s, wkey))]
        fm = cpu.get(("firemode-sqlite", wkey))
        ratio = f"{min(refs) / fm:.1f}×" if refs and fm else "—"
        print(f"| {wname} | " + " | ".join(cells) + f" | {ratio} |")
    storm(sel, rows)


if __name__ == "__main__":
    main()
