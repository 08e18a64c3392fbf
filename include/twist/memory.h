/* twist: device memory: how much a device has free, caps that emulate a smaller device, how much
 * training a model needs, and the plan that fits IST subnets into each worker's memory.
 *
 *   --device-memory cpu=64M,opencl:0=1G   tw_memory_caps_add()    caps, per device spec
 *   tw_device_set_memory_cap()            the allocator (src/core/device.c) refuses past it
 *   tw_device_free_memory()               what a device can still take: min(cap, queried)
 *   tw_training_memory()                  the bytes training a config needs on its device
 *   tw_memory_plan_make()                 per worker: share of heads and units, micro-batch
 *
 * A cap applies to each opened device context (tw_device) separately. Several IST workers on
 * one device each open their own context, so `--device-memory cpu=64M --workers-per-device 4`
 * emulates four devices of 64 MiB each (the cap is per worker). Without a cap, workers that
 * share a device share its queried free memory equally. */
#ifndef TWIST_MEMORY_H
#define TWIST_MEMORY_H

#include <stdbool.h>
#include <stdint.h>

#include "twist/backend.h"
#include "twist/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Caps: --device-memory SPEC=BYTES                                                           */
/* ------------------------------------------------------------------------------------------ */

enum { TW_MEMORY_CAPS_MAX = 16 };

typedef struct tw_memory_cap {
    char spec[32];  /* normalised: "cpu", "opencl:0" ("opencl" alone means "opencl:0") */
    uint64_t bytes; /* > 0 */
} tw_memory_cap;

typedef struct tw_memory_caps {
    int count;
    tw_memory_cap caps[TW_MEMORY_CAPS_MAX];
} tw_memory_caps;

/* Parses "SPEC=BYTES[,SPEC=BYTES...]" and adds the caps (a spec given again takes the new
 * value). BYTES is a whole number with an optional suffix K, M or G (also KiB, MiB, GiB: powers
 * of 1024). Every error is TW_ERR_INVALID_ARGUMENT with a message naming --device-memory and the
 * bad item; caps is unchanged on error. */
tw_status tw_memory_caps_add(tw_memory_caps *caps, const char *text);
/* The cap of a device spec ("opencl" and "opencl:0" are the same device), 0 when none. */
uint64_t tw_memory_caps_find(const tw_memory_caps *caps, const char *spec);
/* The spec in the caps' normal form: "opencl" -> "opencl:0", "cpu:0" -> "cpu". false when it
 * does not fit or has no backend name. */
bool tw_device_spec_normalise(const char *spec, char *out, size_t capacity);

/* ------------------------------------------------------------------------------------------ */
/* Device memory                                                                              */
/* ------------------------------------------------------------------------------------------ */

/* Caps what twist may allocate through tw_buffer_alloc on this device context (0: no cap).
 * Past it an allocation fails with TW_ERR_OUT_OF_MEMORY naming the device and the cap. Fails
 * when the context already holds more than the new cap. */
tw_status tw_device_set_memory_cap(tw_device *device, uint64_t bytes);
uint64_t tw_device_memory_cap(const tw_device *device);

/* Bytes the device has free as its backend reports it, without opening it: the cpu's available
 * host memory (MemAvailable), CUDA's cudaMemGetInfo, Vulkan's heap budget less its usage
 * (VK_EXT_memory_budget); where the backend cannot say (OpenCL, Vulkan without the extension),
 * the device's global memory less what twist has allocated on it in this process. 0 with
 * TW_OK when nothing is known. */
tw_status tw_device_spec_free_memory(const char *spec, uint64_t *free_bytes);

/* What this context may still allocate: the queried free memory, and at most cap - bytes in
 * use when capped. *capped tells whether the cap is the binding limit (may be NULL). */
tw_status tw_device_free_memory(tw_device *device, uint64_t *free_bytes, bool *capped);

/* Human-readable bytes: "64.0 MiB", "1.50 GiB", "512 B". Returns out. */
const char *tw_format_bytes(uint64_t bytes, char *out, size_t capacity);

/* ------------------------------------------------------------------------------------------ */
/* What training needs                                                                        */
/* ------------------------------------------------------------------------------------------ */

/* Device bytes of one training step of `config` at `micro_batch` sequences of `seq_len`
 * tokens, estimated from the config alone (the allocations tw_gpt_create, tw_adamw_create and
 * the first forward/backward make; tests/test_memory_plan.c checks it against the allocator's
 * measured peak on the cpu, where all but the scratch must match exactly):
 *   params, grads     4 bytes per parameter each
 *   moments           AdamW's m and v, 8 bytes per parameter (+ 4 for the clipping norm)
 *   activations       every saved activation and the backward scratch of tw_gpt
 *   scratch           the largest buffer a backend op allocates and frees within itself
 *                     (attention backward's row terms, CUDA's column partial sums, ...) */
typedef struct tw_training_memory {
    uint64_t params, grads, moments, activations, scratch;
    uint64_t total;
} tw_training_memory;

void tw_training_memory_of(const tw_gpt_config *config, int micro_batch, int seq_len,
                           tw_training_memory *out);
/* The same for a model in `dtype` (tw_gpt_set_dtype): fp32 master weights plus a working copy,
 * gradients and activations in dtype, statistics in fp32 (16-bit tensors padded to 4 bytes are
 * not counted: at most 2 bytes a tensor). */
void tw_training_memory_typed(const tw_gpt_config *config, int micro_batch, int seq_len,
                              tw_dtype dtype, tw_training_memory *out);

/* ------------------------------------------------------------------------------------------ */
/* The memory plan of a distributed run                                                       */
/* ------------------------------------------------------------------------------------------ */

/* Inputs. budgets[w] is what worker w may allocate (0: unknown, no limit). desired[w] is the
 * share of heads and units the run would give worker w without memory limits (NULL: equal;
 * --balance speed passes its weights). whole_model: data parallel and local SGD, where every
 * worker holds the whole model and only the micro-batch can shrink. The micro-batch of a worker
 * is a divisor of batch: it runs batch / micro_batch forward and backward passes per
 * micro-batch of the step, accumulating gradients, so the tokens per step do not change. */
typedef struct tw_memory_plan_options {
    const tw_gpt_config *model;
    int workers;
    int heads_per_worker;
    int batch, seq_len;
    bool whole_model;
    const uint64_t *budgets; /* (workers) */
    const double *desired;   /* (workers) or NULL */
    const char *const *worker_devices; /* (workers) specs, for messages; may be NULL */
} tw_memory_plan_options;

/* Outputs, in arrays of `workers` the caller provides. When no budget binds, `fitted` is false,
 * every micro_batch is batch and weights are the desired shares (the partition runs as it would
 * without a plan). Otherwise weights are partition weights (twist/ist.h) that keep each worker's
 * subnet within its budget, as close to the desired shares as the budgets allow (water-filling:
 * a worker held below its share passes the rest to the others in proportion to theirs), and
 * need[w] is the estimated need of the planned subnet, which tw_memory_plan_make has checked is
 * at most budgets[w]. */
typedef struct tw_memory_plan {
    bool fitted;        /* some budget binds: shares or micro-batches differ from the desired */
    bool reshaped;      /* the shares differ: pass weights to the partition */
    double *weights;    /* (workers) */
    int *micro_batch;   /* (workers) */
    uint64_t *need;     /* (workers) */
} tw_memory_plan;

/* TW_ERR_OUT_OF_MEMORY when a worker cannot hold even the smallest subnet (1 head and 1 MLP
 * unit per layer at micro-batch 1; the whole model for whole_model), naming the worker, its
 * device, its budget and that need; or when the budgets together cannot hold every head and
 * unit of the model. */
tw_status tw_memory_plan_make(const tw_memory_plan_options *options, tw_memory_plan *plan);

#ifdef __cplusplus
}
#endif

#endif
