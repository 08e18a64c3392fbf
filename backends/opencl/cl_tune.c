/* twist OpenCL backend: the vtable's kernel-variant entries (twist/backend_support.h:
 * `variants`, `force_variant`), dispatching by op name to the op files' own functions.
 * On this branch only attention has variants (cl_attention.c); the GEMM tuner's branch has the
 * same file name, and the two dispatchers merge into one. */
#include <string.h>

#include "cl_internal.h"

static bool is_attention(const char *op) { return strncmp(op, "attention_", 10) == 0; }

int tw_cl_variants(void *context, const char *op, const char **names, int capacity) {
    if (is_attention(op)) return tw_cl_attention_variants(context, op, names, capacity);
    return 0;
}

tw_status tw_cl_force_variant(void *context, const char *op, const char *name) {
    if (is_attention(op)) return tw_cl_attention_force_variant(context, op, name);
    if (!name) return TW_OK;
    return tw_error(TW_ERR_NOT_FOUND, "opencl: %s has a single kernel here: no variant \"%s\"",
                    op, name);
}
