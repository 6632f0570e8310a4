#!/usr/bin/python3
"""Draws accuracy against epsilon from bench/dp_accuracy.sh's JSON as a small SVG (no
plotting library needed): one point per run, joined in order of epsilon, with the issue's
bar (0.84 at epsilon <= 3) as a dashed line.

  bench/accuracy_svg.py build/bench/dp_accuracy.json docs/dp-accuracy.svg
"""
import json
import math
import sys


def main():
    data = json.load(open(sys.argv[1]))
    runs = sorted(data["runs"], key=lambda r: r["epsilon"])
    w, h, left, right, top, bottom = 520, 320, 60, 20, 30, 50
    eps = [r["epsilon"] for r in runs]
    acc = [r["test_accuracy"] for r in runs]
    lo_x, hi_x = math.log2(min(eps)) - 0.3, math.log2(max(eps)) + 0.3
    lo_y, hi_y = min(min(acc), 0.80) - 0.01, max(max(acc), 0.86) + 0.01
    x = lambda e: left + (math.log2(e) - lo_x) / (hi_x - lo_x) * (w - left - right)
    y = lambda a: top + (hi_y - a) / (hi_y - lo_y) * (h - top - bottom)
    # The MLP's hidden activation, when the run names one other than relu (model.activation).
    hidden = f', {data["activation"]}' if data.get("activation", "relu") != "relu" else ""
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="Helvetica" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="18" text-anchor="middle" font-size="13">DP-SGD on Fashion-MNIST: test accuracy '
           f'against epsilon (delta {data["delta"]}, {data["epochs"]} epochs{hidden})</text>',
           f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="black"/>']
    for e in eps:
        out.append(f'<line x1="{x(e):.1f}" y1="{h - bottom}" x2="{x(e):.1f}" y2="{h - bottom + 5}" stroke="black"/>')
        out.append(f'<text x="{x(e):.1f}" y="{h - bottom + 18}" text-anchor="middle">{e:g}</text>')
    tick = math.floor(lo_y * 100) / 100
    while tick <= hi_y:
        if tick >= lo_y:
            out.append(f'<line x1="{left - 5}" y1="{y(tick):.1f}" x2="{left}" y2="{y(tick):.1f}" stroke="black"/>')
            out.append(f'<text x="{left - 8}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:.2f}</text>')
        tick = round(tick + 0.01, 2)
    out.append(f'<text x="{w / 2}" y="{h - 12}" text-anchor="middle">epsilon (log scale)</text>')
    out.append(f'<text x="16" y="{h / 2}" text-anchor="middle" transform="rotate(-90 16 {h / 2})">test accuracy</text>')
    bar_x = x(3) if 3 <= max(eps) else w - right
    out.append(f'<line x1="{left}" y1="{y(0.84):.1f}" x2="{bar_x:.1f}" y2="{y(0.84):.1f}" stroke="#c00" '
               f'stroke-dasharray="5,4"/>')
    out.append(f'<text x="{left + 6}" y="{y(0.84) - 5:.1f}" fill="#c00">bar: 0.84 at epsilon &lt;= 3</text>')
    points = " ".join(f"{x(e):.1f},{y(a):.1f}" for e, a in zip(eps, acc))
    out.append(f'<polyline points="{points}" fill="none" stroke="#1d4ed8" stroke-width="2"/>')
    for e, a in zip(eps, acc):
        out.append(f'<circle cx="{x(e):.1f}" cy="{y(a):.1f}" r="4" fill="#1d4ed8"/>')
        out.append(f'<text x="{x(e) + 6:.1f}" y="{y(a) + 16:.1f}">{a:.4f}</text>')
    out.append("</svg>")
    open(sys.argv[2], "w").write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
