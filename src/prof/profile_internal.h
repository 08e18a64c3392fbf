/* The profiler's hooks, called by the front end (src/core/device.c, src/core/ops.c) only.
 * A device's `profile` field (core/device.h) is NULL unless it was opened during a session;
 * the front end calls these only when it is not. */
#ifndef TWIST_PROF_PROFILE_INTERNAL_H
#define TWIST_PROF_PROFILE_INTERNAL_H

#include <stddef.h>

#include "twist/backend_support.h"
#include "twist/profile.h"

/* One index per op of the op list (TW_BACKEND_OPS): TW_PROF_OP_gemm, ... */
#define TW_PROF_OP_ENUM_(prefix, name, params) TW_PROF_OP_##name,
typedef enum tw_prof_op { TW_BACKEND_OPS(TW_PROF_OP_ENUM_, unused) TW_PROF_OP_COUNT } tw_prof_op;

typedef struct tw_prof_track tw_prof_track;

/* Device open: attaches a track when a session is open (sets device->profile). A failure to
 * set up the device's timers is returned and fails the open. */
tw_status tw_prof_attach(tw_device *device);
/* Device close: resolves what is pending and detaches. */
void tw_prof_detach(tw_device *device);
/* After a device sync: the queue is idle, so pending events resolve without waiting. */
void tw_prof_sync(tw_device *device);

/* Around one op: begin records the start event and returns the record's index; end records the
 * end event, the FLOPs and bytes, and returns the op's status unchanged. */
size_t tw_prof_op_begin(tw_device *device, tw_prof_op op);
tw_status tw_prof_op_end(tw_device *device, size_t record, tw_status status, double flops,
                         double bytes);

#endif
