/* A small SVG plotting helper for `twist report` and `twist bench all`: line charts, horizontal
 * bar charts and timelines, each written as one self-contained <svg> element (no scripts, no
 * external fonts or styles) into a growing text buffer. The same text is a standalone .svg file
 * and can be placed inline in an HTML page. */
#ifndef TWIST_TOOLS_SVG_H
#define TWIST_TOOLS_SVG_H

#include <stdbool.h>
#include <stddef.h>

/* A growing, NUL-terminated text buffer. A failed allocation sets `failed`; later appends do
 * nothing, so callers check once at the end. */
typedef struct strbuf {
    char *data;
    size_t length, capacity;
    bool failed;
} strbuf;

void sb_printf(strbuf *b, const char *format, ...) __attribute__((format(printf, 2, 3)));
/* Appends text with &, <, >, " and ' escaped for XML and HTML. */
void sb_escaped(strbuf *b, const char *text);
void sb_free(strbuf *b);

/* The colour of series / span kind i (a fixed palette, repeating after 8). */
const char *svg_color(int i);

/* ---- line chart ------------------------------------------------------------------------- */

typedef struct svg_series {
    const char *label;
    const double *x, *y; /* count points; non-finite points are skipped (the line breaks) */
    int count;
    bool markers; /* a dot at every point (for sparse series such as validation losses) */
    int color;    /* palette index */
} svg_series;

typedef struct svg_line_chart {
    const char *title, *x_label, *y_label;
    const svg_series *series;
    int count;
    int width, height; /* pixels */
} svg_line_chart;

void svg_lines(strbuf *b, const svg_line_chart *chart);

/* ---- horizontal bars -------------------------------------------------------------------- */

typedef struct svg_bar {
    const char *label; /* left of the bar */
    double value;      /* bar length; a non-finite value makes the row a group heading */
    const char *note;  /* right of the bar ("12.3 GFLOP/s, 4.5% of peak"), or NULL */
    int color;
} svg_bar;

typedef struct svg_bar_chart {
    const char *title, *value_label; /* value_label: the axis under the bars */
    const svg_bar *bars;
    int count;
    int width; /* the height follows from the number of bars */
} svg_bar_chart;

void svg_bars(strbuf *b, const svg_bar_chart *chart);

/* ---- timeline --------------------------------------------------------------------------- */

typedef struct svg_span {
    int row;           /* index into rows */
    double start, end; /* x units (seconds) */
    int kind;          /* index into kinds: the colour and the legend */
} svg_span;

typedef struct svg_timeline {
    const char *title, *x_label;
    const char *const *rows; /* row labels, top to bottom */
    int row_count;
    const char *const *kinds; /* legend labels of the span kinds */
    int kind_count;
    const svg_span *spans;
    int span_count;
    int width;
} svg_timeline;

void svg_timeline_chart(strbuf *b, const svg_timeline *chart);

#endif
