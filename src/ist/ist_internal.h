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
/* The same runs in compact form, for visiting any range of master elements (the parallel
 * merge): tensor `tensor` seen as a (rows, cols) matrix in both layouts, subnet row r
 * (rows[i].sub + k) being master row rows[i].master + k, and likewise for columns. A tensor
 * taken whole is one row of all its elements. Runs ascend in both sub and master. rows and cols
 * must hold ist_subnet_axis_capacity(master config) runs each. */
typedef struct ist_axis_run {
    int sub, master, len;
} ist_axis_run;

typedef struct ist_tensor_axes {
    ist_axis_run *rows, *cols;
    int row_count, col_count;
    size_t sub_offset, master_offset, master_count;
    size_t sub_cols, master_cols; /* row lengths */
} ist_tensor_axes;

int ist_subnet_axis_capacity(const tw_gpt_config *master);
tw_status ist_subnet_map_axes(const ist_subnet_map *map, int tensor, ist_tensor_axes *out);

#endif
