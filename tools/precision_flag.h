/* --precision and --save-dtype, shared by `twist train`, `ist`, `dp`, `eval` and `bench step`
 * (twist/model.h, "Mixed precision"). */
#ifndef TWIST_TOOLS_PRECISION_FLAG_H
#define TWIST_TOOLS_PRECISION_FLAG_H

#include <stdbool.h>

#include "args.h"
#include "twist/backend.h"

/* --precision auto|fp32|bf16|fp16 into *choice (0: auto, the default). */
arg_spec precision_spec(int *choice);
/* The asked type: false for auto (the device's default, tw_gpt_default_dtype). */
bool precision_dtype(int choice, tw_dtype *out);
/* --save-dtype fp32|bf16 into *choice (0: fp32). */
arg_spec save_dtype_spec(int *choice);
tw_dtype save_dtype_of(int choice);

#endif
