"""A line plot as a standalone SVG file (python3 standard library only), shared by
tools/experiments/links and tools/experiments/extract.

    write_svg(path, title, xlabel, ylabel, series, note="")

series: a list of dicts {"label": str, "points": [(x, y), ...], "color": "#rrggbb",
"dash": "" or an SVG stroke-dasharray such as "6,4"}. Axes span the data with a small margin;
every series gets a polyline, a dot on each point and a legend entry with its label."""

import math
from xml.sax.saxutils import escape

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f"]


def nice_ticks(lo, hi, n=6):
    span = hi - lo
    if span <= 0:
        span = abs(hi) or 1.0
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = mag
    for m in (1, 2, 2.5, 5, 10):
        step = m * mag
        if span / step <= n:
            break
    t = math.ceil(lo / step) * step
    ticks = []
    while t <= hi + 1e-9 * step:
        ticks.append(t)
        t += step
    return ticks


def fmt_tick(v):
    if v == 0:
        return "0"
    return "%g" % round(v, 6)


def write_svg(path, title, xlabel, ylabel, series, note="", x_from_zero=True):
    W, H = 900, 520
    ml, mr, mt, mb = 70, 260, 40, 62
    pw, ph = W - ml - mr, H - mt - mb
    xs = [p[0] for s in series for p in s["points"]]
    ys = [p[1] for s in series for p in s["points"]]
    x0 = 0.0 if (x_from_zero or not xs) else min(xs)
    x1 = max(xs) if xs else 1.0
    if x1 <= x0:
        x1 = x0 + 1.0
    y0, y1 = (min(ys), max(ys)) if ys else (0.0, 1.0)
    pad = 0.05 * ((y1 - y0) or 1.0)
    y0, y1 = y0 - pad, y1 + pad
    xpad = 0.02 * (x1 - x0)
    x1 += xpad
    if not x_from_zero:
        x0 -= xpad

    def X(v):
        return ml + (v - x0) / (x1 - x0) * pw

    def Y(v):
        return mt + (y1 - v) / (y1 - y0) * ph

    o = ['<?xml version="1.0" encoding="UTF-8"?>',
         '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
         'font-family="sans-serif" font-size="12">' % (W, H, W, H),
         '<rect x="0" y="0" width="%d" height="%d" fill="white"/>' % (W, H),
         '<defs><clipPath id="plot"><rect x="%d" y="%d" width="%d" height="%d"/></clipPath></defs>'
         % (ml, mt, pw, ph),
         '<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>' % (ml, escape(title))]
    for t in nice_ticks(x0, x1):
        o.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>'
                 % (X(t), mt, X(t), mt + ph))
        o.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>'
                 % (X(t), mt + ph + 16, fmt_tick(t)))
    for t in nice_ticks(y0, y1):
        o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>'
                 % (ml, Y(t), ml + pw, Y(t)))
        o.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>'
                 % (ml - 6, Y(t) + 4, "%.2f" % t))
    o.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="black"/>'
             % (ml, mt, pw, ph))
    o.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>'
             % (ml + pw / 2, H - 26, escape(xlabel)))
    o.append('<text x="18" y="%.1f" text-anchor="middle" transform="rotate(-90 18 %.1f)">%s</text>'
             % (mt + ph / 2, mt + ph / 2, escape(ylabel)))
    if note:
        o.append('<text x="%d" y="%d" font-size="10" fill="#555">%s</text>'
                 % (ml, H - 8, escape(note)))
    for i, s in enumerate(series):
        pts = s["points"]
        c = s.get("color") or COLORS[i % len(COLORS)]
        dash = s.get("dash") or ""
        dash_attr = ' stroke-dasharray="%s"' % dash if dash else ""
        if pts:
            d = " ".join("%.1f,%.1f" % (X(x), Y(y)) for x, y in pts)
            o.append('<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s '
                     'clip-path="url(#plot)"/>' % (d, c, dash_attr))
            for x, y in pts:
                o.append('<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s" clip-path="url(#plot)"/>'
                         % (X(x), Y(y), c))
        ly = mt + 10 + 20 * i
        o.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"%s/>'
                 % (ml + pw + 15, ly, ml + pw + 45, ly, c, dash_attr))
        o.append('<text x="%d" y="%d">%s</text>' % (ml + pw + 51, ly + 4, escape(s["label"])))
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")
