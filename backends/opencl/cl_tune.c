/* twist OpenCL backend: the vtable's kernel-variant entries (`variants`, `force_variant`,
 * `tune`, see twist/backend_support.h), dispatching by op name to the op's own functions:
 * "gemm" -> cl_gemm.c, "attention_fwd" / "attention_bwd" -> cl_attention.c (whose classes are
 * measured on their first forward call, not by `tune`). Ops without variants here list none and
 * refuse to be forced. */
#include <string.h>

#include "cl_internal.h"

int tw_cl_variants(void *context, const char *op, const char **names, int capacity) {
    tw_cl_context *cl = context;
    if (op && strcmp(op, "gemm") == 0) return tw_cl_gemm_variants(cl, names, capacity);
    if (op && strncmp(op, "attention_", 10) == 0)
        return tw_cl_attention_variants(cl, op, names, capacity);
    return 0;
}

tw_status tw_cl_force_variant(void *context, const char *op, const char *name) {
    tw_cl_context *cl = context;
    if (op && strcmp(op, "gemm") == 0) return tw_cl_gemm_force_variant(cl, name);
    if (op && strncmp(op, "attention_", 10) == 0)
        return tw_cl_attention_force_variant(cl, op, name);
    if (!name) return TW_OK; /* back to the default of an op that has only one kernel */
    return tw_error(TW_ERR_NOT_FOUND,
                    "opencl has no variants of op \"%s\" (it has: gemm, attention_fwd, "
                    "attention_bwd)",
                    op ? op : "(null)");
}

tw_status tw_cl_tune(void *context, const tw_tune_request *request) {
    tw_cl_context *cl = context;
    const int total = tw_cl_gemm_tune_count();
    int done = 0;
    return tw_cl_gemm_tune(cl, request, &done, total);
}
