#!/usr/bin/env python3
"""Draw the side-by-side comparison (docs/bench/side-by-side.jsonl) as SVG bar charts, with no
dependency beyond the standard library:

  python3 docs/bench/chart.py [RUN]   # RUN: a run id from the file; default the latest

writes docs/bench/cpu-per-edit.svg (server CPU ms per edit, per workload and server) and
docs/bench/edit-to-peer.svg (edit-to-peer p99 ms), and prints the table benchmarks.md shows.
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
]
WORKLOADS = [
    ("rust-closed", "Rust, 200 clients, closed loop"),
    ("rust-1hz", "Rust, 200 clients, 1 edit/s"),
    ("js-burst", "JS, 20 clients, burst"),
    ("js-paced", "JS, 100 clients, 5 edits/s"),
]


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


def load(run):
    rows = [json.loads(line) for line in (HERE / "side-by-side.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if not r.get("failed")]
    runs = sorted({r["run"] for r in rows if "run" in r})
    if not runs:
        sys.exit("no runs in side-by-side.jsonl")
    run = run or runs[-1]
    return run, {(r["sbs_server"], r["workload"]): r for r in rows if r.get("run") == run}


def bars(title, unit, values, path):
    width, height, left, top, bottom = 860, 360, 60, 40, 90
    vmax = max([v for v in values.values() if v is not None] + [0.001]) * 1.15
    group_w = (width - left - 20) / len(WORKLOADS)
    bar_w = group_w / (len(SERVERS) + 1)
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
    for gi, (wkey, wname) in enumerate(WORKLOADS):
        gx = left + gi * group_w + bar_w / 2
        for si, (skey, _, colour) in enumerate(SERVERS):
            v = values.get((skey, wkey))
            x = gx + si * bar_w
            if v is None:
                out.append(f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom - 4}" text-anchor="middle" fill="#999">n/a</text>')
                continue
            h = plot_h * v / vmax
            out.append(f'<rect x="{x:.1f}" y="{height - bottom - h:.1f}" width="{bar_w * 0.9:.1f}" height="{h:.1f}" fill="{colour}"/>')
            out.append(f'<text x="{x + bar_w * 0.45:.1f}" y="{height - bottom - h - 3:.1f}" text-anchor="middle" font-size="10">{v:.2f}</text>')
        out.append(f'<text x="{left + gi * group_w + group_w / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle">{wname}</text>')
    for si, (_, sname, colour) in enumerate(SERVERS):
        x = left + si * 200
        out.append(f'<rect x="{x}" y="{height - 40}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{x + 16}" y="{height - 30}">{sname}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def main():
    run, rows = load(sys.argv[1] if len(sys.argv) > 1 else None)
    cpu = {k: cpu_ms_per_edit(r) for k, r in rows.items()}
    lat = {k: p99(r) for k, r in rows.items()}
    bars(f"Server CPU per edit (ms), lower is better — run {run}", "ms CPU / edit", cpu, HERE / "cpu-per-edit.svg")
    bars(f"Edit-to-peer p99 (ms), lower is better — run {run}", "ms", lat, HERE / "edit-to-peer.svg")
    print("| workload | " + " | ".join(s[1] for s in SERVERS) + " | best reference ÷ FireMode SQLite |")
    print("|---|" + "---:|" * (len(SERVERS) + 1))
    for wkey, wname in WORKLOADS:
        cells = []
        for skey, _, _ in SERVERS:
            v = cpu.get((skey, wkey))
            cells.append("—" if v is None else f"{v:.3f}")
        refs = [cpu.get((s, wkey)) for s in ("ref25", "ref028") if cpu.get((s, wkey))]
        fm = cpu.get(("firemode-sqlite", wkey))
        ratio = f"{min(refs) / fm:.1f}×" if refs and fm else "—"
        print(f"| {wname} | " + " | ".join(cells) + f" | {ratio} |")


if __name__ == "__main__":
    main()
