/* IST subnets: a worker's share as a dense smaller GPT config, the host master, and extraction of
 * a worker's slices into one packed buffer [params | exp_avg | exp_avg_sq]. See twist/ist.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twist/error.h"
#include "ist/ist_internal.h"

/* ------------------------------------------------------------------------------------------ */
/* Subnet config                                                                              */
/* ------------------------------------------------------------------------------------------ */

/* indices (count) must be ascending, distinct and in [0, limit), with 1 <= count <= limit. */
static tw_status check_indices(const int *indices, int count, int limit, const char *what,
                               int worker, int layer) {
    if (count < 1 || count > limit || !indices)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "IST subnet: worker %d holds %d %s of layer %d (need 1 .. %d)", worker,
                        count, what, layer, limit);
    for (int i = 0; i < count; i++)
        if (indices[i] < 0 || indices[i] >= limit || (i > 0 && indices[i] <= indices[i - 1]))
            return tw_error(TW_ERR_INVALID_ARGUMENT,
                            "IST subnet: worker %d's %s of layer %d are not ascending indices in "
                            "[0, %d) (entry %d is %d)",
                            worker, what, layer, limit, i, indices[i]);
    return TW_OK;
}

tw_status ist_subnet_config(const tw_gpt_config *master, const tw_ist_partition *partition,
                            int worker, tw_gpt_config *out) {
    if (!master || !partition || !out || !partition->shares)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "IST subnet: NULL argument");
    if (partition->n_layer != master->n_layer)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "IST subnet: the partition has %d layers but the model has %d",
                        partition->n_layer, master->n_layer);
    if (worker < 0 || worker >= partition->workers)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "IST subnet: worker %d is not in the partition's [0, %d)", worker,
                        partition->workers);
    TW_TRY(tw_gpt_config_validate(master));
    *out = *master;
    for (int l = 0; l < master->n_layer; l++) {
        const tw_ist_layer_share *s = tw_ist_share(partition, worker, l);
        const tw_gpt_layer *full = &master->layers[l];
        TW_TRY(check_indices(s->heads, s->head_count, full->heads, "heads", worker, l));
        TW_TRY(check_indices(s->units, s->unit_count, full->mlp_hidden, "MLP units", worker, l));
        tw_gpt_layer *layer = &out->layers[l];
        layer->heads = s->head_count;
        layer->mlp_hidden = s->unit_count;
        /* 1/p in double then rounded once: a worker holding everything keeps the master's scale
         * exactly. */
        layer->attn_scale = (float)((double)full->attn_scale * full->heads / s->head_count);
        layer->mlp_scale = (float)((double)full->mlp_scale * full->mlp_hidden / s->unit_count);
    }
    return TW_OK;
}

tw_status tw_ist_subnet_config(const tw_gpt_config *master, const tw_ist_partition *partition,
                               int worker, tw_gpt_config *out) {
    return ist_subnet_config(master, partition, worker, out);
}

/* ------------------------------------------------------------------------------------------ */
/* Master                                                                                     */
/* ------------------------------------------------------------------------------------------ */

tw_status tw_ist_master_create(const tw_gpt_config *config, tw_ist_master **out) {
    if (!config || !out) return tw_error(TW_ERR_INVALID_ARGUMENT, "IST master: NULL argument");
    *out = NULL;
    tw_ist_master *m = calloc(1, sizeof *m);
    if (!m) return tw_error(TW_ERR_OUT_OF_MEMORY, "IST master: out of host memory");
    m->config = *config;
    tw_status status =
        tw_gpt_layout(config, &m->tensors, &m->tensor_count, &m->param_count, NULL);
    if (status != TW_OK) {
        free(m);
        return status;
    }
    m->params = calloc(m->param_count, sizeof(float));
    m->exp_avg = calloc(m->param_count, sizeof(float));
    m->exp_avg_sq = calloc(m->param_count, sizeof(float));
    if (!m->params || !m->exp_avg || !m->exp_avg_sq) {
        const size_t count = m->param_count;
        tw_ist_master_free(m);
        return tw_error(TW_ERR_OUT_OF_MEMORY,
                        "IST master: out of host memory for %zu parameters and their moments",
                        count);
    }
    *out = m;
    return TW_OK;
}

void tw_ist_master_free(tw_ist_master *master) {
    if (!master) return;
    free(master->tensors);
    free(master->params);
    free(master->exp_avg);
    free(master->exp_avg_sq);
    free(master);
}

size_t tw_ist_packed_floats(const tw_gpt_config *subnet) {
    tw_gpt_tensor *tensors = NULL;
    int count = 0;
    size_t params = 0;
    if (!subnet || tw_gpt_layout(subnet, &tensors, &count, &params, NULL) != TW_OK) return 0;
    free(tensors);
    return 3 * params;
}

/* ------------------------------------------------------------------------------------------ */
/* Subnet map: which master elements a subnet holds                                           */
/* ------------------------------------------------------------------------------------------ */

tw_status ist_subnet_map_init(ist_subnet_map *map, const tw_gpt_config *master_config,
                              const tw_gpt_tensor *master_tensors, int master_tensor_count,
                              const tw_ist_partition *partition, int worker) {
    memset(map, 0, sizeof *map);
    TW_TRY(ist_subnet_config(master_config, partition, worker, &map->config));
    TW_TRY(tw_gpt_layout(&map->config, &map->tensors, &map->tensor_count, &map->param_count,
                         NULL));
    map->master_config = master_config;
    map->master_tensors = master_tensors;
    map->master_tensor_count = master_tensor_count;
    map->partition = partition;
    map->worker = worker;
    return TW_OK;
}

void ist_subnet_map_release(ist_subnet_map *map) {
    free(map->tensors);
    map->tensors = NULL;
}

/* How a tensor's slice is taken. Tensors are seen as (rows, cols) matrices, 1-D ones as (1, n). */
typedef enum tensor_kind {
    KIND_WHOLE,         /* copied whole: embeddings, LayerNorms, c_proj biases */
    KIND_QKV_WEIGHT,    /* attn.c_attn.weight (C, 3A): head columns of the Q, K, V blocks */
    KIND_QKV_BIAS,      /* attn.c_attn.bias (3A): the same columns */
    KIND_ATTN_PROJ,     /* attn.c_proj.weight (A, C): head rows */
    KIND_FC_WEIGHT,     /* mlp.c_fc.weight (C, M): unit columns */
    KIND_FC_BIAS,       /* mlp.c_fc.bias (M): unit columns */
    KIND_MLP_PROJ       /* mlp.c_proj.weight (M, C): unit rows */
} tensor_kind;

static tensor_kind kind_of(const char *name, int *layer) {
    static const struct {
        const char *suffix;
        tensor_kind kind;
    } kinds[] = {{"attn.c_attn.weight", KIND_QKV_WEIGHT}, {"attn.c_attn.bias", KIND_QKV_BIAS},
                 {"attn.c_proj.weight", KIND_ATTN_PROJ},  {"mlp.c_fc.weight", KIND_FC_WEIGHT},
                 {"mlp.c_fc.bias", KIND_FC_BIAS},         {"mlp.c_proj.weight", KIND_MLP_PROJ}};
    int consumed = 0;
    if (sscanf(name, "transformer.h.%d.%n", layer, &consumed) != 1 || consumed == 0)
        return KIND_WHOLE;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(name + consumed, kinds[i].suffix) == 0) return kinds[i].kind;
    return KIND_WHOLE;
}

/* Consecutive index ranges along one axis: subnet [sub, sub + len) = master [master, ...). */
typedef struct axis_run {
    int sub, master, len;
} axis_run;

typedef struct axis_runs {
    axis_run *runs;
    int count;
} axis_runs;

/* Appends a range, joining it to the previous one when both sides continue it. */
static void push_run(axis_runs *a, int sub, int master, int len) {
    axis_run *last = a->count > 0 ? &a->runs[a->count - 1] : NULL;
    if (last && last->sub + last->len == sub && last->master + last->len == master) {
        last->len += len;
        return;
    }
    a->runs[a->count++] = (axis_run){sub, master, len};
}

/* The kept heads' D-wide ranges of one block that starts at sub_base / master_base. */
static void push_heads(axis_runs *a, const tw_ist_layer_share *s, int D, int sub_base,
                       int master_base) {
    for (int k = 0; k < s->head_count; k++)
        push_run(a, sub_base + k * D, master_base + s->heads[k] * D, D);
}

static void push_units(axis_runs *a, const tw_ist_layer_share *s) {
    for (int k = 0; k < s->unit_count; k++) push_run(a, k, s->units[k], 1);
}

/* Row and column runs of one tensor (rows/cols: capacity 3 * max heads + max units + 1). */
static void tensor_runs(const ist_subnet_map *map, const tw_gpt_tensor *sub, tensor_kind kind,
                        int layer, axis_runs *rows, axis_runs *cols) {
    const int D = map->config.head_dim;
    rows->count = cols->count = 0;
    if (kind == KIND_WHOLE) {
        push_run(rows, 0, 0, 1);
        push_run(cols, 0, 0, (int)sub->count);
        return;
    }
    const tw_ist_layer_share *s = tw_ist_share(map->partition, map->worker, layer);
    const int A_sub = s->head_count * D, A_master = map->master_config->layers[layer].heads * D;
    switch (kind) {
    case KIND_QKV_WEIGHT:
    case KIND_QKV_BIAS:
        push_run(rows, 0, 0, kind == KIND_QKV_WEIGHT ? sub->shape[0] : 1);
        for (int block = 0; block < 3; block++)
            push_heads(cols, s, D, block * A_sub, block * A_master);
        break;
    case KIND_ATTN_PROJ:
        push_heads(rows, s, D, 0, 0);
        push_run(cols, 0, 0, sub->shape[1]);
        break;
    case KIND_FC_WEIGHT:
    case KIND_FC_BIAS:
        push_run(rows, 0, 0, kind == KIND_FC_WEIGHT ? sub->shape[0] : 1);
        push_units(cols, s);
        break;
    case KIND_MLP_PROJ:
        push_units(rows, s);
        push_run(cols, 0, 0, sub->shape[1]);
        break;
    case KIND_WHOLE:
        break;
    }
}

/* Row length of a tensor seen as (rows, cols): 1-D tensors are one row. */
static size_t row_length(const tw_gpt_tensor *t) {
    return t->ndim == 1 ? t->count : (size_t)t->shape[1];
}

static void walk_tensor(const tw_gpt_tensor *sub, const tw_gpt_tensor *master,
                        const axis_runs *rows, const axis_runs *cols, ist_run_fn fn,
                        void *context) {
    const size_t sub_cols = row_length(sub), master_cols = row_length(master);
    for (int i = 0; i < rows->count; i++)
        for (int r = 0; r < rows->runs[i].len; r++) {
            const size_t sub_row = sub->offset + (size_t)(rows->runs[i].sub + r) * sub_cols;
            const size_t master_row =
                master->offset + (size_t)(rows->runs[i].master + r) * master_cols;
            for (int j = 0; j < cols->count; j++)
                fn(context, sub_row + (size_t)cols->runs[j].sub,
                   master_row + (size_t)cols->runs[j].master, (size_t)cols->runs[j].len);
        }
}

static int run_capacity(const tw_gpt_config *c) {
    int widest = 1;
    for (int l = 0; l < c->n_layer; l++) {
        const int need = 3 * c->layers[l].heads + c->layers[l].mlp_hidden + 1;
        if (need > widest) widest = need;
    }
    return widest;
}

tw_status ist_subnet_map_walk(const ist_subnet_map *map, ist_run_fn fn, void *context) {
    if (map->tensor_count != map->master_tensor_count)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "IST subnet: %d tensors in the subnet but %d in the master",
                        map->tensor_count, map->master_tensor_count);
    const int capacity = run_capacity(map->master_config);
    axis_runs rows = {malloc(sizeof(axis_run) * (size_t)capacity), 0};
    axis_runs cols = {malloc(sizeof(axis_run) * (size_t)capacity), 0};
    tw_status status = TW_OK;
    if (!rows.runs || !cols.runs)
        status = tw_error(TW_ERR_OUT_OF_MEMORY, "IST subnet: out of host memory");
    for (int i = 0; status == TW_OK && i < map->tensor_count; i++) {
        /* Both layouts list the same names in the same order; only the widths differ. */
        const tw_gpt_tensor *sub = &map->tensors[i], *master = &map->master_tensors[i];
        if (strcmp(sub->name, master->name) != 0) {
            status = tw_error(TW_ERR_INVALID_ARGUMENT,
                              "IST subnet: tensor %d is %s in the subnet but %s in the master", i,
                              sub->name, master->name);
            break;
        }
        int layer = -1;
        const tensor_kind kind = kind_of(sub->name, &layer);
        if (kind == KIND_WHOLE && sub->count != master->count) {
            status = tw_error(TW_ERR_INVALID_ARGUMENT,
                              "IST subnet: %s has %zu elements in the subnet but %zu in the "
                              "master",
                              sub->name, sub->count, master->count);
            break;
        }
        tensor_runs(map, sub, kind, layer, &rows, &cols);
        walk_tensor(sub, master, &rows, &cols, fn, context);
    }
    free(rows.runs);
    free(cols.runs);
    return status;
}

int ist_subnet_axis_capacity(const tw_gpt_config *master) { return run_capacity(master); }

tw_status ist_subnet_map_axes(const ist_subnet_map *map, int tensor, ist_tensor_axes *out) {
    if (map->tensor_count != map->master_tensor_count || tensor < 0 ||
        tensor >= map->tensor_count ||
        strcmp(map->tensors[tensor].name, map->master_tensors[tensor].name) != 0)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "IST subnet: tensor %d does not match the "
                        "master's", tensor);
    const tw_gpt_tensor *sub = &map->tensors[tensor], *master = &map->master_tensors[tensor];
    int layer = -1;
    const tensor_kind kind = kind_of(sub->name, &layer);
    if (kind == KIND_WHOLE && sub->count != master->count)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "IST subnet: %s has %zu elements in the subnet "
                        "but %zu in the master", sub->name, sub->count, master->count);
    /* axis_run and ist_axis_run are the same three ints */
    axis_runs rows = {(axis_run *)out->rows, 0}, cols = {(axis_run *)out->cols, 0};
    tensor_runs(map, sub, kind, layer, &rows, &cols);
    out->row_count = rows.count;
    out->col_count = cols.count;
    out->sub_offset = sub->offset;
    out->master_offset = master->offset;
    out->master_count = master->count;
    /* a tensor taken whole is one row of all its elements (walk_tensor visits row 0 only) */
    out->sub_cols = kind == KIND_WHOLE ? sub->count : row_length(sub);
    out->master_cols = kind == KIND_WHOLE ? master->count : row_length(master);
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Extraction                                                                                 */
/* ------------------------------------------------------------------------------------------ */

typedef struct extract_context {
    const tw_ist_master *master;
    float *packed;
    size_t sub_count; /* the subnet's parameter count: the stride of the three packed parts */
} extract_context;

static void extract_run(void *context, size_t sub, size_t master, size_t len) {
    const extract_context *x = context;
    const size_t bytes = len * sizeof(float);
    memcpy(x->packed + sub, x->master->params + master, bytes);
    memcpy(x->packed + x->sub_count + sub, x->master->exp_avg + master, bytes);
    memcpy(x->packed + 2 * x->sub_count + sub, x->master->exp_avg_sq + master, bytes);
}

tw_status tw_ist_extract(const tw_ist_master *master, const tw_ist_partition *partition,
                         int worker, float *packed) {
    if (!master || !packed)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "IST extract: NULL argument");
    ist_subnet_map map;
    tw_status status = ist_subnet_map_init(&map, &master->config, master->tensors,
                                           master->tensor_count, partition, worker);
    if (status == TW_OK) {
        extract_context context = {master, packed, map.param_count};
        status = ist_subnet_map_walk(&map, extract_run, &context);
    }
    ist_subnet_map_release(&map);
    return status;
}
