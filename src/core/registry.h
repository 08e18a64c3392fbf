/* Registry internals shared by the front end. */
#ifndef TWIST_CORE_REGISTRY_H
#define TWIST_CORE_REGISTRY_H

#include "core/backend_impl.h"

/* Resolves a spec to its backend, backend-local index and info; errors name the spec. */
tw_status tw_registry_find(const char *spec, const tw_backend_vtable **vtable, int *local_index,
                           tw_device_info *info);

/* Devices the backend listed (0 if not compiled or no runtime). */
int tw_backend_device_count(tw_backend_kind kind);

/* Why a compiled backend listed no devices, as the backend reports it (for example
 * "cudaGetDeviceCount: no CUDA-capable device is detected"); "" when it listed devices, is not
 * compiled, or cannot say. */
const char *tw_backend_no_device_reason(tw_backend_kind kind);

#endif
