/* IST internals shared by extraction (subnet.c) and merging (merge.c): where each element of a
 * worker's subnet lives in the master. */
#ifndef TWIST_IST_INTERNAL_H
#define TWIST_IST_INTERNAL_H

#include <stddef.h>

#include "twist/ist.h"

/* Checks that worker w of partition fits the master config (layer count, head and unit indices
 * in range, ascending, at least one of each) and writes its subnet config. */
tw_status ist_subnet_config(const tw_gpt_config *master, const tw_ist_partition *partition,
                            int worker, tw_gpt_config *out);

/* A worker's subnet against the master: both layouts, for walking the elements they share. */
typedef struct ist_subnet_map {
    const tw_gpt_config *master_config;
    const tw_gpt_tensor *master_tensors;
    int master_tensor_count;
    const tw_ist_partition *partition;
    int worker;
    tw_gpt_config config; /* the subnet's */
    tw_gpt_tensor *tensors;
    int tensor_count;
    size_t param_count; /* the subnet's */
} ist_subnet_map;

tw_status ist_subnet_map_init(ist_subnet_map *map, const tw_gpt_config *master_config,
                              const tw_gpt_tensor *master_tensors, int master_tensor_count,
                              const tw_ist_partition *partition, int worker);
void ist_subnet_map_release(ist_subnet_map *map);

/* Called for each run of elements that are contiguous in both the subnet and the master: subnet
 * elements [sub, sub + len) are master elements [master, master + len) (parameter-buffer
 * indices). Together the runs cover every subnet element exactly once. */
typedef void (*ist_run_fn)(void *context, size_t sub, size_t master, size_t len);

/* Walks every tensor of the subnet in layout order. Fails (with a message) only when the two
 * layouts do not match, which a map from ist_subnet_map_init never does. */
tw_status ist_subnet_map_walk(const ist_subnet_map *map, ist_run_fn fn, void *context);
/* The same for one tensor (index in the layout), so that tensors can be walked in parallel. */
tw_status ist_subnet_map_walk_tensor(const ist_subnet_map *map, int tensor, ist_run_fn fn,
                                     void *context);

#endif
