/* Registry internals shared by the front end. */
#ifndef TWIST_CORE_REGISTRY_H
#define TWIST_CORE_REGISTRY_H

#include "twist/backend_support.h"

/* Resolves a spec to its backend, backend-local index and info; errors name the spec. */
tw_status tw_registry_find(const char *spec, const tw_backend_vtable **vtable, int *local_index,
                           tw_device_info *info);

#endif
