/* The front end's device object, shared by src/core (device.c, ops.c, registry.c) and white-box
 * tests. Backends never see inside it: they hold a tw_device* to allocate scratch through
 * tw_buffer_alloc and read its info with tw_device_get_info. */
#ifndef TWIST_CORE_DEVICE_H
#define TWIST_CORE_DEVICE_H

#include "twist/backend_support.h"

struct tw_device {
    const tw_backend_vtable *vtable;
    void *context;
    tw_device_info info;
    size_t bytes_in_use;
    size_t peak_bytes;
    struct tw_prof_track *profile; /* the profiler's record of this device, or NULL (src/prof) */
    uint64_t memory_cap;           /* tw_device_set_memory_cap; 0: none */
    uint64_t *spec_bytes;          /* twist's bytes on this device over every context of the
                                      process (device.c), updated atomically */
};

#endif
