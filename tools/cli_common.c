/* Shared helpers of the `twist` commands (see cli.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cli.h"
#include "twist/clock.h"

int cli_library_error(const char *prog, tw_status status) {
    const char *message = tw_last_error();
    if (message && *message)
        fprintf(stderr, "%s: %s\n", prog, message);
    else
        fprintf(stderr, "%s: %s\n", prog, tw_status_name(status));
    return CLI_EXIT_RUNTIME;
}

int cli_runtime_error(const char *prog, const char *format, ...) {
    va_list list;
    va_start(list, format);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, format, list);
    fprintf(stderr, "\n");
    va_end(list);
    return CLI_EXIT_RUNTIME;
}

double cli_now_ms(void) { return 1e3 * tw_now_seconds(); }

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double cli_median(double *values, int count) {
    if (count <= 0) return 0.0;
    qsort(values, (size_t)count, sizeof *values, compare_doubles);
    return count % 2 ? values[count / 2] : 0.5 * (values[count / 2 - 1] + values[count / 2]);
}

const char *cli_format_bytes(double bytes, char *buf, size_t size) {
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int unit = 0;
    while (bytes >= 1024.0 && unit < 4) {
        bytes /= 1024.0;
        unit++;
    }
    if (unit == 0)
        snprintf(buf, size, "%.0f B", bytes);
    else
        snprintf(buf, size, "%.1f %s", bytes, units[unit]);
    return buf;
}
