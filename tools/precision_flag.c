/* --precision and --save-dtype: see precision_flag.h. */
#include "precision_flag.h"

static const char *const k_precisions[] = {"auto", "fp32", "bf16", "fp16", NULL};
static const tw_dtype k_precision_types[] = {TW_DTYPE_F32, TW_DTYPE_F32, TW_DTYPE_BF16,
                                             TW_DTYPE_F16};
static const char *const k_save_dtypes[] = {"fp32", "bf16", NULL};

arg_spec precision_spec(int *choice) {
    return (arg_spec){.name = "--precision", .kind = ARG_CHOICE, .dest = choice,
                      .metavar = "TYPE", .choices = k_precisions,
                      .help = "auto, fp32, bf16 or fp16: activations, gradients and the working "
                              "copy of the weights in TYPE, fp32 master weights and AdamW "
                              "moments; fp16 scales the loss dynamically (default auto: bf16 "
                              "where the device has a fast bf16 path, CUDA compute capability "
                              "8.0+, else fp32; see twist devices)"};
}

bool precision_dtype(int choice, tw_dtype *out) {
    if (choice <= 0 || choice >= (int)(sizeof k_precision_types / sizeof *k_precision_types))
        return false;
    *out = k_precision_types[choice];
    return true;
}

arg_spec save_dtype_spec(int *choice) {
    return (arg_spec){.name = "--save-dtype", .kind = ARG_CHOICE, .dest = choice,
                      .metavar = "TYPE", .choices = k_save_dtypes,
                      .help = "fp32 or bf16: the type of model.safetensors (bf16: half the size, "
                              "safetensors dtype BF16; the fp32 master weights stay in "
                              "optimizer.safetensors so --resume is exact) (default fp32)"};
}

tw_dtype save_dtype_of(int choice) { return choice == 1 ? TW_DTYPE_BF16 : TW_DTYPE_F32; }
