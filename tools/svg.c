/* SVG charts for `twist report` and `twist bench all` (see svg.h). Plain SVG 1.1: text, lines,
 * rectangles and polylines, with a <title> on each shape so a browser shows the exact number on
 * hover without any script. */
#include "svg.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- text buffer ------------------------------------------------------------------------ */

static bool sb_reserve(strbuf *b, size_t extra) {
    if (b->failed) return false;
    if (b->length + extra + 1 <= b->capacity) return true;
    size_t capacity = b->capacity ? b->capacity : 4096;
    while (capacity < b->length + extra + 1) capacity *= 2;
    char *data = realloc(b->data, capacity);
    if (!data) {
        b->failed = true;
        return false;
    }
    b->data = data;
    b->capacity = capacity;
    return true;
}

void sb_printf(strbuf *b, const char *format, ...) {
    va_list args;
    va_start(args, format);
    int need = vsnprintf(NULL, 0, format, args);
    va_end(args);
    if (need < 0 || !sb_reserve(b, (size_t)need)) return;
    va_start(args, format);
    vsnprintf(b->data + b->length, (size_t)need + 1, format, args);
    va_end(args);
    b->length += (size_t)need;
}

void sb_escaped(strbuf *b, const char *text) {
    for (const char *s = text ? text : ""; *s; s++) {
        switch (*s) {
        case '&': sb_printf(b, "&amp;"); break;
        case '<': sb_printf(b, "&lt;"); break;
        case '>': sb_printf(b, "&gt;"); break;
        case '"': sb_printf(b, "&quot;"); break;
        case '\'': sb_printf(b, "&#39;"); break;
        default:
            /* control characters are not allowed in XML 1.0 text */
            if ((unsigned char)*s >= 0x20 || *s == '\n' || *s == '\t') sb_printf(b, "%c", *s);
        }
    }
}

void sb_free(strbuf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* Colour-blind-safe palette (Okabe-Ito, black left out), then two greys. */
const char *svg_color(int i) {
    static const char *const palette[] = {"#0072B2", "#E69F00", "#009E73", "#D55E00",
                                          "#CC79A7", "#56B4E9", "#F0E442", "#7f7f7f"};
    return palette[((i % 8) + 8) % 8];
}

/* ---- shared pieces ---------------------------------------------------------------------- */

static void open_svg(strbuf *b, int width, int height, const char *title) {
    sb_printf(b,
              "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
              "viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans, Arial, sans-serif\" "
              "font-size=\"12\">\n<title>",
              width, height, width, height);
    sb_escaped(b, title);
    sb_printf(b, "</title>\n<rect width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n", width, height);
    sb_printf(b, "<text x=\"%d\" y=\"18\" text-anchor=\"middle\" font-size=\"14\" "
                 "font-weight=\"bold\">", width / 2);
    sb_escaped(b, title);
    sb_printf(b, "</text>\n");
}

static void text_at(strbuf *b, double x, double y, const char *anchor, const char *text) {
    sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\">", x, y, anchor);
    sb_escaped(b, text);
    sb_printf(b, "</text>\n");
}

/* "Nice" axis ticks over [lo, hi]: steps of 1, 2 or 5 times a power of ten, about `want` of
 * them. Returns the step and widens lo/hi to multiples of it. */
static double nice_ticks(double *lo, double *hi, int want) {
    if (!(*hi > *lo)) {
        double pad = fabs(*lo) > 0 ? fabs(*lo) * 0.1 : 1.0;
        *lo -= pad;
        *hi += pad;
    }
    double raw = (*hi - *lo) / want, power = pow(10.0, floor(log10(raw)));
    double step = raw / power < 1.5 ? power : raw / power < 3.5 ? 2 * power
                                         : raw / power < 7.5 ? 5 * power : 10 * power;
    *lo = floor(*lo / step) * step;
    *hi = ceil(*hi / step) * step;
    return step;
}

/* A tick label: as short as the step allows ("0.25", "1500", "2e+06"). */
static void tick_label(double value, double step, char *out, size_t size) {
    if (fabs(value) < step * 1e-9) value = 0;
    int decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (fabs(value) >= 1e6 || (value != 0 && fabs(value) < 1e-4)) snprintf(out, size, "%.3g", value);
    else snprintf(out, size, "%.*f", decimals > 6 ? 6 : decimals, value);
}

/* ---- line chart ------------------------------------------------------------------------- */

void svg_lines(strbuf *b, const svg_line_chart *c) {
    const int width = c->width > 0 ? c->width : 640, height = c->height > 0 ? c->height : 360;
    const double left = 64, right = width - 28.0, top = 34, bottom = height - 64.0;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int s = 0; s < c->count; s++)
        for (int i = 0; i < c->series[s].count; i++) {
            double x = c->series[s].x[i], y = c->series[s].y[i];
            if (!isfinite(x) || !isfinite(y)) continue;
            x0 = fmin(x0, x), x1 = fmax(x1, x), y0 = fmin(y0, y), y1 = fmax(y1, y);
        }
    /* the legend wraps into rows under the x axis label; the image grows by the extra rows */
    int legend_rows = 1;
    double legend_x = left;
    for (int i = 0; i < c->count; i++) {
        const char *label = c->series[i].label;
        const double w = 26 + 7.0 * (double)strlen(label ? label : "");
        if (legend_x + w > right && legend_x > left) {
            legend_x = left;
            legend_rows++;
        }
        legend_x += w;
    }
    open_svg(b, width, height + 14 * (legend_rows - 1), c->title);
    if (!isfinite(x0)) {
        text_at(b, width / 2.0, height / 2.0, "middle", "(no data)");
        sb_printf(b, "</svg>\n");
        return;
    }
    double xstep = nice_ticks(&x0, &x1, 6), ystep = nice_ticks(&y0, &y1, 5);
#define PX(x) (left + ((x) - x0) / (x1 - x0) * (right - left))
#define PY(y) (bottom - ((y) - y0) / (y1 - y0) * (bottom - top))
    char label[32];
    for (double y = y0; y <= y1 + ystep * 0.5; y += ystep) {
        sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n",
                  left, PY(y), right, PY(y));
        tick_label(y, ystep, label, sizeof label);
        text_at(b, left - 6, PY(y) + 4, "end", label);
    }
    for (double x = x0; x <= x1 + xstep * 0.5; x += xstep) {
        sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n",
                  PX(x), top, PX(x), bottom);
        tick_label(x, xstep, label, sizeof label);
        text_at(b, PX(x), bottom + 16, "middle", label);
    }
    sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
                 "stroke=\"#444\"/>\n", left, top, right - left, bottom - top);
    text_at(b, (left + right) / 2, bottom + 34, "middle", c->x_label);
    sb_printf(b, "<text transform=\"translate(14 %.1f) rotate(-90)\" text-anchor=\"middle\">",
              (top + bottom) / 2);
    sb_escaped(b, c->y_label);
    sb_printf(b, "</text>\n");
    for (int s = 0; s < c->count; s++) {
        const svg_series *series = &c->series[s];
        const char *color = svg_color(series->color);
        bool open = false;
        for (int i = 0; i < series->count; i++) {
            double x = series->x[i], y = series->y[i];
            if (!isfinite(x) || !isfinite(y)) {
                if (open) sb_printf(b, "\"/>\n");
                open = false;
                continue;
            }
            if (!open)
                sb_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\" "
                             "points=\"", color);
            sb_printf(b, "%s%.1f,%.1f", open ? " " : "", PX(x), PY(y));
            open = true;
        }
        if (open) sb_printf(b, "\"/>\n");
        for (int i = 0; series->markers && i < series->count; i++) {
            double x = series->x[i], y = series->y[i];
            if (!isfinite(x) || !isfinite(y)) continue;
            sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>", PX(x),
                      PY(y), color);
            sb_escaped(b, series->label);
            sb_printf(b, ": %.6g at %.6g</title></circle>\n", y, x);
        }
    }
#undef PX
#undef PY
    /* legend, in rows under the x axis label */
    double lx = left, ly = height - 12.0;
    for (int s = 0; s < c->count; s++) {
        const double w = 26 + 7.0 * (double)strlen(c->series[s].label ? c->series[s].label : "");
        if (lx + w > right && lx > left) {
            lx = left;
            ly += 14;
        }
        sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"4\" fill=\"%s\"/>\n", lx,
                  ly - 5, svg_color(c->series[s].color));
        text_at(b, lx + 18, ly, "start", c->series[s].label);
        lx += w;
    }
    sb_printf(b, "</svg>\n");
}

/* ---- horizontal bars -------------------------------------------------------------------- */

void svg_bars(strbuf *b, const svg_bar_chart *c) {
    const int width = c->width > 0 ? c->width : 760, row = 18;
    const int height = 34 + row * (c->count > 0 ? c->count : 1) + 40;
    size_t longest = 4;
    double max = 0;
    for (int i = 0; i < c->count; i++) {
        if (c->bars[i].label && strlen(c->bars[i].label) > longest)
            longest = strlen(c->bars[i].label);
        if (isfinite(c->bars[i].value) && c->bars[i].value > max) max = c->bars[i].value;
    }
    /* label column: up to 40% of the width, 7 px per character */
    const double left = fmin(12 + 7.0 * (double)longest, width * 0.4), notes = 220;
    const double right = width - notes, top = 34;
    open_svg(b, width, height, c->title);
    if (c->count == 0) {
        text_at(b, width / 2.0, height / 2.0, "middle", "(no data)");
        sb_printf(b, "</svg>\n");
        return;
    }
    double lo = 0, hi = max > 0 ? max : 1;
    double step = nice_ticks(&lo, &hi, 5);
    const double bottom = top + (double)row * c->count;
    char label[32];
    for (double v = 0; v <= hi + step * 0.5; v += step) {
        const double x = left + v / hi * (right - left);
        sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n",
                  x, top, x, bottom);
        tick_label(v, step, label, sizeof label);
        text_at(b, x, bottom + 14, "middle", label);
    }
    text_at(b, (left + right) / 2, bottom + 30, "middle", c->value_label);
    for (int i = 0; i < c->count; i++) {
        const svg_bar *bar = &c->bars[i];
        const double y = top + (double)row * i;
        if (!isfinite(bar->value)) { /* group heading */
            sb_printf(b, "<text x=\"4\" y=\"%.1f\" font-weight=\"bold\">", y + 13);
            sb_escaped(b, bar->label);
            sb_printf(b, "</text>\n");
            continue;
        }
        text_at(b, left - 6, y + 13, "end", bar->label);
        const double w = bar->value > 0 ? bar->value / hi * (right - left) : 0;
        sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%d\" fill=\"%s\">"
                     "<title>", left, y + 3, w, row - 5, svg_color(bar->color));
        sb_escaped(b, bar->label);
        sb_printf(b, ": %.6g", bar->value);
        sb_printf(b, "</title></rect>\n");
        if (bar->note) text_at(b, left + w + 6, y + 13, "start", bar->note);
    }
    sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>\n", left,
              top, left, bottom);
    sb_printf(b, "</svg>\n");
}

/* ---- timeline --------------------------------------------------------------------------- */

void svg_timeline_chart(strbuf *b, const svg_timeline *c) {
    const int width = c->width > 0 ? c->width : 900, row = 22;
    const int height = 34 + row * (c->row_count > 0 ? c->row_count : 1) + 62;
    size_t longest = 4;
    for (int r = 0; r < c->row_count; r++)
        if (strlen(c->rows[r]) > longest) longest = strlen(c->rows[r]);
    const double left = fmin(12 + 7.0 * (double)longest, width * 0.35), right = width - 16.0;
    const double top = 34, bottom = top + (double)row * c->row_count;
    double t0 = INFINITY, t1 = -INFINITY;
    for (int i = 0; i < c->span_count; i++) {
        if (!isfinite(c->spans[i].start) || !isfinite(c->spans[i].end)) continue;
        t0 = fmin(t0, c->spans[i].start);
        t1 = fmax(t1, c->spans[i].end);
    }
    open_svg(b, width, height, c->title);
    if (!isfinite(t0) || c->row_count == 0) {
        text_at(b, width / 2.0, height / 2.0, "middle", "(no data)");
        sb_printf(b, "</svg>\n");
        return;
    }
    double step = nice_ticks(&t0, &t1, 8);
#define TX(t) (left + ((t) - t0) / (t1 - t0) * (right - left))
    char label[32];
    for (double t = t0; t <= t1 + step * 0.5; t += step) {
        sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n",
                  TX(t), top, TX(t), bottom);
        tick_label(t, step, label, sizeof label);
        text_at(b, TX(t), bottom + 14, "middle", label);
    }
    text_at(b, (left + right) / 2, bottom + 30, "middle", c->x_label);
    for (int r = 0; r < c->row_count; r++) {
        const double y = top + (double)row * r;
        if (r % 2) sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%d\" "
                                "fill=\"#f6f6f6\"/>\n", left, y, right - left, row);
        text_at(b, left - 6, y + 15, "end", c->rows[r]);
    }
    for (int i = 0; i < c->span_count; i++) {
        const svg_span *s = &c->spans[i];
        if (s->row < 0 || s->row >= c->row_count || !isfinite(s->start) || !isfinite(s->end))
            continue;
        const double x = TX(s->start), w = fmax(TX(s->end) - x, 0.5);
        sb_printf(b, "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%d\" fill=\"%s\"><title>",
                  x, top + (double)row * s->row + 3, w, row - 6, svg_color(s->kind));
        sb_escaped(b, s->kind >= 0 && s->kind < c->kind_count ? c->kinds[s->kind] : "?");
        sb_printf(b, " %.6g to %.6g</title></rect>\n", s->start, s->end);
    }
#undef TX
    double lx = left;
    for (int k = 0; k < c->kind_count; k++) {
        sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"12\" fill=\"%s\"/>\n", lx,
                  bottom + 40, svg_color(k));
        text_at(b, lx + 16, bottom + 50, "start", c->kinds[k]);
        lx += 30 + 7.0 * (double)strlen(c->kinds[k]);
    }
    sb_printf(b, "</svg>\n");
}
