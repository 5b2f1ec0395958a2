#!/usr/bin/env python3
"""Draws a scheduled fleet's wave from the fleet benchmark's own series (issue 22).

    cargo bench --bench fleet -- --scheduled 10000     # writes target/scheduled-wave.{csv,json}
    python3 scripts/plot-wave.py                       # writes docs/img/scheduled-wave.svg

Top: phones loaded and parked as the simulator shows them, phones switched to Loaded as the operator
shows them, over seconds since the run's start, with the wave's edge, the window's start and end.
Bottom: vendor calls sent in each second against the account's pace. Standard library only: the
SVG is written by hand.
"""

import argparse
import csv
import json
from pathlib import Path

W, H = 900, 560
LEFT, RIGHT = 70, 20
TOP_PANEL = (40, 300)  # y from, y to
BOTTOM_PANEL = (350, 500)


def read(csv_path, json_path):
    with open(csv_path, newline="") as f:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    with open(json_path) as f:
        summary = json.load(f)
    return rows, summary


def polyline(points, colour, width=2.0, dash=None):
    d = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    extra = f' stroke-dasharray="{dash}"' if dash else ""
    return (
        f'<polyline points="{d}" fill="none" stroke="{colour}" '
        f'stroke-width="{width}"{extra}/>'
    )


def text(x, y, s, anchor="start", size=12, colour="#222", rotate=None):
    t = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate is not None else ""
    s = s.replace("&", "&amp;").replace("<", "&lt;")
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
        f'fill="{colour}" font-family="sans-serif"{t}>{s}</text>'
    )


def svg(rows, s):
    n = s["phones"]
    limit = s["calls_per_second_limit"]
    t_max = max(r["seconds"] for r in rows)
    x_of = lambda t: LEFT + (W - LEFT - RIGHT) * t / t_max  # noqa: E731

    def y_top(v):
        lo, hi = TOP_PANEL
        # NB: headroom above the fleet, for the labels.
        return hi - (hi - lo) * v / (n * 1.2)

    c_max = max(limit * 1.4, max(r["calls"] for r in rows) * 1.1)

    def y_bottom(v):
        lo, hi = BOTTOM_PANEL
        return hi - (hi - lo) * v / c_max

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        text(
            W / 2,
            22,
            f"{n:,} Scheduled phones across a window: prewarmLead {s['prewarm_lead_secs']} s, "
            f"restore estimate {s['restore_estimate_secs']} s, pace {limit} calls/s, "
            f"{s['users']} users",
            "middle",
            14,
        ),
    ]
    # The window (shaded), the wave's edge and where its spread ends, the park's spread.
    edge, start, end = s["edge_s"], s["start_s"], s["end_s"]
    spread, lead = s["wake_spread_secs"], s["prewarm_lead_secs"]
    for lo, hi in (TOP_PANEL, BOTTOM_PANEL):
        out.append(
            f'<rect x="{x_of(start):.1f}" y="{lo}" width="{x_of(end) - x_of(start):.1f}" '
            f'height="{hi - lo}" fill="#fff4d6"/>'
        )
        for t, colour in (
            (edge, "#888"),
            (edge + spread, "#888"),
            (end + lead, "#888"),
        ):
            out.append(
                f'<line x1="{x_of(t):.1f}" x2="{x_of(t):.1f}" y1="{lo}" y2="{hi}" '
                f'stroke="{colour}" stroke-dasharray="3,3"/>'
            )
    lo, _ = TOP_PANEL

    def mark(t, row, label, colour="#555"):
        # NB: near the right edge the label goes left of its line.
        x = x_of(t)
        if x > W - 160:
            return text(x - 3, lo + 12 + 14 * row, label, "end", 11, colour)
        return text(x + 3, lo + 12 + 14 * row, label, size=11, colour=colour)

    out.append(mark(edge, 0, "wake edge (start - lead)"))
    out.append(mark(edge + spread, 1, "wake spread ends (lead - restore)"))
    out.append(mark(start, 2, "window start", "#a06a00"))
    out.append(mark(end, 0, "window end", "#a06a00"))
    out.append(mark(end + lead, 1, "park spread ends (end + lead)"))

    # Axes and grid.
    for lo, hi, y_of, top_value, label in (
        (*TOP_PANEL, y_top, n, "phones"),  # the grid to the fleet's size
        (*BOTTOM_PANEL, y_bottom, c_max, "calls sent in the second"),
    ):
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{hi}" y2="{hi}" stroke="#333"/>')
        out.append(f'<line x1="{LEFT}" x2="{LEFT}" y1="{lo}" y2="{hi}" stroke="#333"/>')
        for k in range(5):
            v = top_value * k / 4
            y = y_of(v)
            out.append(
                f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
            )
            out.append(text(LEFT - 6, y + 4, f"{v:,.0f}", "end", 11))
        out.append(text(18, (lo + hi) / 2, label, "middle", 12, rotate=-90))
    step = 60 if t_max > 240 else 30
    for t in range(0, int(t_max) + 1, step):
        for _, hi in (TOP_PANEL, BOTTOM_PANEL):
            out.append(
                f'<line x1="{x_of(t):.1f}" x2="{x_of(t):.1f}" y1="{hi}" y2="{hi + 4}" '
                f'stroke="#333"/>'
            )
        out.append(text(x_of(t), BOTTOM_PANEL[1] + 18, f"{t}", "middle", 11))
    out.append(text(W / 2, BOTTOM_PANEL[1] + 38, "seconds since the run started", "middle", 12))

    # The series.
    pts = lambda key, y_of: [(x_of(r["seconds"]), y_of(r[key])) for r in rows]  # noqa: E731
    out.append(polyline(pts("switched", y_top), "#7b61ff", 1.5, "5,3"))
    out.append(polyline(pts("parked", y_top), "#999999", 2))
    out.append(polyline(pts("loaded", y_top), "#1f77b4", 2.5))
    actions = [
        (x_of(r["seconds"]), y_bottom(r["prepare_calls"] + r["backup_calls"])) for r in rows
    ]
    out.append(polyline(pts("calls", y_bottom), "#2ca02c", 1.2))
    out.append(polyline(actions, "#d62728", 1.2))
    y = y_bottom(limit)
    out.append(
        f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d62728" '
        f'stroke-dasharray="6,3"/>'
    )
    out.append(text(W - RIGHT - 4, y - 6, f"account pace {limit}/s", "end", 11, "#d62728"))

    # Legends.
    def legend(x, y, colour, label, dash=None):
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        return (
            f'<line x1="{x}" x2="{x + 24}" y1="{y - 4}" y2="{y - 4}" stroke="{colour}" '
            f'stroke-width="2.5"{extra}/>' + text(x + 30, y, label, size=11)
        )

    y0 = TOP_PANEL[1] + 22
    out.append(legend(LEFT + 10, y0, "#1f77b4", "loaded (simulator: DataLoaded)"))
    out.append(legend(LEFT + 250, y0, "#999999", "parked (simulator: Idle)"))
    out.append(legend(LEFT + 450, y0, "#7b61ff", "switched to Loaded (operator)", "5,3"))
    y1 = BOTTOM_PANEL[0] - 8
    out.append(legend(LEFT + 10, y1, "#2ca02c", "all calls (status, prepare, backup)"))
    out.append(legend(LEFT + 290, y1, "#d62728", "prepare + backup calls"))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    root = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--csv", default=root / "target/scheduled-wave.csv")
    p.add_argument("--json", default=root / "target/scheduled-wave.json")
    p.add_argument("--out", default=root / "docs/img/scheduled-wave.svg")
    a = p.parse_args()
    rows, summary = read(a.csv, a.json)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(svg(rows, summary))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
