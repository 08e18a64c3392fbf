/* `twist report` (tools/cmd_report.c), shared with `twist bench all` (tools/cmd_bench_all.c). */
#ifndef TWIST_TOOLS_REPORT_H
#define TWIST_TOOLS_REPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "svg.h"

/* Makes dir ready for a report: creates it (its parent must exist), or accepts it when empty;
 * a non-empty dir is refused unless overwrite, which removes only the files a report or
 * `bench all` writes (report.html, loss_*.svg, ist_timeline*.svg, ops_*.svg, bench*.svg,
 * bench.jsonl, bench.md) and keeps everything else. Returns a CLI exit code (message printed). */
int report_prepare_dir(const char *prog, const char *dir, bool overwrite);

/* Reads the inputs (run records as JSON lines: metrics.jsonl of train/ist/dp, or --json output
 * of `twist bench`; Chrome traces written by --profile), and writes dir/report.html (one
 * self-contained page, inline SVG, no script) and each plot as dir/<name>.svg. An unreadable or
 * invalid input gives one message naming the file and line, and nothing is written. With
 * prepare, dir is made ready (report_prepare_dir) once the inputs have been read. Returns a CLI
 * exit code. */
int report_write(const char *prog, int count, const char *const *inputs, const char *dir,
                 const char *title, bool prepare, bool overwrite);

/* Writes data to path through a temporary file renamed into place (no partial file). */
int report_write_file(const char *prog, const char *path, const char *data, size_t size);

/* Appends the markdown table of the "bench" records in jsonl (one row per device and benchmark,
 * with its speed relative to the fastest device) to md. Returns a CLI exit code. */
int report_bench_markdown(const char *prog, const char *jsonl, strbuf *md);

#endif
