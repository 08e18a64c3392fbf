/* --device-memory: see device_memory_flag.h. */
#include "device_memory_flag.h"

#include <string.h>

#include "cli.h"
#include "twist/status.h"

arg_spec device_memory_spec(arg_string_list *list) {
    return (arg_spec){
        .name = "--device-memory", .kind = ARG_STRING_LIST, .dest = list,
        .metavar = "SPEC=BYTES",
        .help = "cap twist's memory on a device to emulate a smaller one, e.g. cpu=64M "
                "(K, M, G suffixes; comma-separated or repeated; per worker in ist and dp)"};
}

int device_memory_caps(const char *prog, const arg_string_list *list,
                       const char *const *devices, int device_count, tw_memory_caps *caps) {
    memset(caps, 0, sizeof *caps);
    for (int i = 0; i < list->count; i++)
        if (tw_memory_caps_add(caps, list->values[i]) != TW_OK)
            return args_usage_error(prog, "%s", tw_last_error());
    for (int c = 0; c < caps->count; c++) {
        bool used = false;
        for (int d = 0; d < device_count && !used; d++) {
            char normal[32];
            const char *spec = devices[d];
            tw_device_info best;
            if (strcmp(spec, "auto") == 0 && tw_best_device(&best) == TW_OK) spec = best.spec;
            used = tw_device_spec_normalise(spec, normal, sizeof normal) &&
                   strcmp(normal, caps->caps[c].spec) == 0;
        }
        if (!used)
            return args_usage_error(prog,
                                    "--device-memory %s=%llu: %s is not a device of this run",
                                    caps->caps[c].spec,
                                    (unsigned long long)caps->caps[c].bytes,
                                    caps->caps[c].spec);
    }
    return CLI_EXIT_OK;
}
