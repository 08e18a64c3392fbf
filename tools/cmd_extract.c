/* `twist extract`: a smaller dense model cut from a trained checkpoint, keeping in every layer
 * the K most important heads and M most important MLP units (twist/extract.h states the score),
 * written as a normal checkpoint (config.json, model.safetensors, tokenizer.json; no optimizer
 * state) that twist eval / sample and PyTorch open and that runs without retraining.
 *
 * The source is loaded and checked and the cut made before --out is touched; --out must be
 * absent or empty, and a save that fails leaves nothing (the checkpoint lock removes what it
 * created). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "args.h"
#include "cli.h"
#include "output.h"
#include "twist/extract.h"
#include "twist/optim.h"
#include "twist/train.h"

static const char *const SCALES[] = {"subnet", "keep", "mass", NULL};
static const char *const SELECTS[] = {"importance", "random", NULL};

/* True when dir exists and holds any entry (even files the checkpoint rules would tolerate,
 * such as an old log.txt: an extracted model never shares a directory). */
static bool dir_has_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return errno != ENOENT; /* a file, or unreadable: not a place to write */
    bool any = false;
    for (struct dirent *e; !any && (e = readdir(d)) != NULL;)
        any = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return any;
}

/* dir's model on the CPU, as a host master (parameters only). */
static tw_status load_master(const char *dir, tw_device *cpu, tw_loaded_model *loaded,
                             tw_ist_master **out) {
    TW_TRY(tw_train_load(dir, cpu, NULL, loaded));
    TW_TRY(tw_ist_master_create(tw_gpt_get_config(loaded->model), out));
    return tw_buffer_download(tw_gpt_params(loaded->model), 0, (*out)->params,
                              (*out)->param_count * sizeof(float));
}

static tw_status save_model(const char *dir, const tw_ist_master *m, const tw_tokenizer *tok,
                            tw_device *cpu) {
    tw_gpt *model = NULL;
    tw_status status = tw_gpt_create(cpu, &m->config, &model);
    if (status == TW_OK)
        status = tw_buffer_upload(tw_gpt_params(model), 0, m->params,
                                  m->param_count * sizeof(float));
    if (status == TW_OK) status = tw_train_save(dir, model, NULL, "{}", tok);
    tw_gpt_destroy(model);
    return status;
}

/* "kept": per layer {"heads": [...], "units": [...]} as master indices. */
static void add_kept(cJSON *record, const tw_ist_partition *keep) {
    cJSON *layers = cJSON_AddArrayToObject(record, "kept");
    if (!layers) return;
    for (int l = 0; l < keep->n_layer; l++) {
        const tw_ist_layer_share *s = tw_ist_share(keep, 0, l);
        cJSON *layer = cJSON_CreateObject();
        if (!layer) return;
        cJSON_AddItemToObject(layer, "heads", cJSON_CreateIntArray(s->heads, s->head_count));
        cJSON_AddItemToObject(layer, "units", cJSON_CreateIntArray(s->units, s->unit_count));
        cJSON_AddItemToArray(layers, layer);
    }
}

int cmd_extract(int argc, char **argv) {
    const char *model_dir = NULL, *out_dir = NULL, *json = NULL;
    int heads = 0, mlp = 0, scale = 0, select = 0, seed = 1;
    arg_spec specs[] = {
        {.name = "--model", .kind = ARG_STRING, .dest = &model_dir, .metavar = "DIR",
         .required = true, .help = "the trained checkpoint to cut from"},
        {.name = "--heads", .kind = ARG_INT, .dest = &heads, .metavar = "K", .required = true,
         .min = 1, .max = 1 << 20, .help = "heads kept in every layer (1 .. the layer's heads)"},
        {.name = "--mlp", .kind = ARG_INT, .dest = &mlp, .metavar = "M", .required = true,
         .min = 1, .max = 1 << 24,
         .help = "MLP units kept in every layer (1 .. the layer's units)"},
        {.name = "--out", .kind = ARG_STRING, .dest = &out_dir, .metavar = "DIR",
         .required = true, .help = "the extracted checkpoint (must be absent or empty)"},
        {.name = "--scale", .kind = ARG_CHOICE, .dest = &scale, .metavar = "HOW",
         .choices = SCALES,
         .help = "block scales of the cut model: subnet (IST's 1/p: x H/K and x units/M, as "
                 "IST's subnets train; default), keep (the source's) or mass (x all / kept "
                 "importance)"},
        {.name = "--select", .kind = ARG_CHOICE, .dest = &select, .metavar = "HOW",
         .choices = SELECTS,
         .help = "importance (default) or random: heads and units drawn uniformly (--seed), the "
                 "baseline of the importance score"},
        {.name = "--seed", .kind = ARG_INT, .dest = &seed, .metavar = "S", .min = 0,
         .max = 2147483647, .help = "--select random: the draw (default 1)"},
        output_json_spec(&json, "an \"extract\" record (JSON, with the kept heads and units) on "
                                "stdout instead of the text, or appended to FILE"),
    };
    args_command command = {
        "twist extract",
        "twist extract --model DIR --heads K --mlp M --out DIR [--scale subnet|keep|mass] "
        "[--select importance|random [--seed S]] [--json[=FILE]]",
        "Cuts a smaller dense model from a trained checkpoint: in every layer the K heads and M "
        "MLP units of highest importance (head: |value weights| x |output projection rows|; "
        "unit: |input weights and bias| x |output projection row|), with IST's subnet "
        "extraction. Writes a normal checkpoint (no optimizer state) that runs without "
        "retraining.",
        specs, (int)(sizeof specs / sizeof specs[0])};
    args_result parsed = args_parse(&command, argc, argv);
    if (parsed != ARGS_OK) return parsed == ARGS_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    if (select == 0 && args_given(&command, "--seed"))
        return args_usage_error(command.name, "--seed belongs to --select random");
    if (strcmp(model_dir, out_dir) == 0)
        return args_usage_error(command.name, "--out %s is the --model checkpoint", out_dir);

    output out;
    int code = output_open(&out, command.name, "extract", json);
    if (code != CLI_EXIT_OK) return code;
    tw_device *cpu = NULL;
    tw_loaded_model loaded;
    memset(&loaded, 0, sizeof loaded);
    tw_ist_master *source = NULL, *cut = NULL;
    tw_ist_partition *keep = NULL;
    tw_checkpoint_lock *lock = NULL;

    /* --out first: a directory that holds anything is refused before any work. */
    tw_ckpt_target kind = TW_CKPT_TARGET_EMPTY;
    tw_status status = tw_checkpoint_probe(out_dir, &kind);
    if (status == TW_OK && (kind != TW_CKPT_TARGET_EMPTY || dir_has_entries(out_dir)))
        status = tw_error(TW_ERR_INVALID_ARGUMENT,
                          "--out %s is not empty; twist extract writes only into an absent or "
                          "empty directory", out_dir);
    if (status == TW_OK) status = tw_device_open("cpu", &cpu);
    if (status == TW_OK) status = load_master(model_dir, cpu, &loaded, &source);
    for (int l = 0; status == TW_OK && l < source->config.n_layer; l++) {
        const tw_gpt_layer *layer = &source->config.layers[l];
        if (heads > layer->heads)
            status = tw_error(TW_ERR_INVALID_ARGUMENT,
                              "--heads %d: layer %d of %s has %d heads (keep 1 .. %d)", heads, l,
                              model_dir, layer->heads, layer->heads);
        else if (mlp > layer->mlp_hidden)
            status = tw_error(TW_ERR_INVALID_ARGUMENT,
                              "--mlp %d: layer %d of %s has %d MLP units (keep 1 .. %d)", mlp, l,
                              model_dir, layer->mlp_hidden, layer->mlp_hidden);
    }
    if (status == TW_OK)
        status = select == 0 ? tw_extract_plan(source, heads, mlp, &keep)
                             : tw_extract_plan_random(source, heads, mlp, (uint64_t)seed, &keep);
    if (status == TW_OK) status = tw_extract_model(source, keep, (tw_extract_scale)scale, &cut);
    /* Lock --out (creating it) only now, so a refused cut leaves nothing behind. */
    if (status == TW_OK) {
        status = tw_checkpoint_lock_take(out_dir, &kind, &lock);
        if (status == TW_OK && kind != TW_CKPT_TARGET_EMPTY)
            status = tw_error(TW_ERR_INVALID_ARGUMENT, "--out %s is not empty", out_dir);
        if (status == TW_OK) status = save_model(out_dir, cut, loaded.tokenizer, cpu);
        tw_checkpoint_lock_release(lock);
    }
    if (status != TW_OK) {
        code = cli_library_error(command.name, status);
    } else {
        const tw_gpt_config *s = &source->config, *c = &cut->config;
        cJSON *record = output_new(&out, "extract");
        tw_record_string(record, "model", model_dir);
        tw_record_string(record, "out", out_dir);
        tw_record_int(record, "heads", heads);
        tw_record_int(record, "mlp", mlp);
        tw_record_string(record, "scale", SCALES[scale]);
        tw_record_string(record, "select", SELECTS[select]);
        tw_record_int(record, "source_params", (long long)source->param_count);
        tw_record_int(record, "params", (long long)cut->param_count);
        tw_record_number(record, "attn_scale_layer0", c->layers[0].attn_scale);
        tw_record_number(record, "mlp_scale_layer0", c->layers[0].mlp_scale);
        add_kept(record, keep);
        output_record(&out, record);
        output_line(&out,
                    "extracted %s from %s: every layer keeps %d of %d heads and %d of %d MLP "
                    "units (layer 0; %s), %zu of %zu parameters (%.1f%%), block "
                    "scales %s (layer 0: attention %g, MLP %g)",
                    out_dir, model_dir, heads, s->layers[0].heads, mlp, s->layers[0].mlp_hidden,
                    select == 0 ? "by importance" : "drawn at random", cut->param_count,
                    source->param_count,
                    100.0 * (double)cut->param_count / (double)source->param_count,
                    scale == 0 ? "as IST's subnets (1/p)"
                               : scale == 1 ? "kept" : "x all / kept importance",
                    c->layers[0].attn_scale,
                    c->layers[0].mlp_scale);
    }
    tw_ist_master_free(cut);
    tw_ist_partition_free(keep);
    tw_ist_master_free(source);
    tw_loaded_model_free(&loaded);
    tw_device_close(cpu);
    return output_close(&out, code);
}
