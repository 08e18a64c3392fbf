/* Bad input at the library level (the CLI side is tests/input_test.sh):
 *   - tw_error may wrap tw_last_error() itself ("%s: %s", source, tw_last_error()): the message
 *     comes out whole (it was formatted into its own buffer and garbled);
 *   - tw_gpt_config_validate refuses NaN, infinite, negative and too large block scales;
 *   - tw_gpt_config_from_json names the field of an out-of-range number (checked before the
 *     cast to float) and a key given twice;
 *   - tw_json_find_duplicate finds a duplicate at any depth and gives its JSON path;
 *   - a model whose weights hold NaN: tw_evaluate and tw_sample fail saying the values are not
 *     finite, and sample emits no token (it used to emit token 0, a NUL byte, for ever). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/ckpt_internal.h"
#include "core/backend_impl.h" /* tw_error */
#include "harness.h"
#include "twist/train.h"

static void check_error_wraps_itself(void) {
    tw_error(TW_ERR_FORMAT, "layer %d has %d heads", 0, 0);
    tw_status status = tw_error(TW_ERR_FORMAT, "%s: %s", "ck/config.json", tw_last_error());
    TW_CHECK(status == TW_ERR_FORMAT, "tw_error returned %d", (int)status);
    TW_CHECK(strcmp(tw_last_error(), "ck/config.json: layer 0 has 0 heads") == 0,
             "wrapped message garbled: '%s'", tw_last_error());
    /* Longer than the first message, so an in-place vsnprintf would overwrite its own source. */
    tw_error(TW_ERR_FORMAT, "x");
    tw_error(TW_ERR_FORMAT, "%s%s%s", "a much longer prefix than the message: ", tw_last_error(),
             tw_last_error());
    TW_CHECK(strcmp(tw_last_error(), "a much longer prefix than the message: xx") == 0,
             "wrapped message garbled: '%s'", tw_last_error());
    printf("tw_error wrapping tw_last_error(): whole\n");
}

static void check_scales(void) {
    tw_gpt_config c;
    TW_CHECK_OK(tw_gpt_config_uniform(64, 8, 2, 16, 2, &c));
    const float bad[] = {NAN, INFINITY, -INFINITY, -1.0f, 65537.0f, 1e30f};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tw_gpt_config d = c;
        d.layers[1].mlp_scale = bad[i];
        TW_CHECK_ERROR(tw_gpt_config_validate(&d), TW_ERR_INVALID_ARGUMENT,
                       "layer 1 mlp_scale");
        d = c;
        d.layers[0].attn_scale = bad[i];
        TW_CHECK_ERROR(tw_gpt_config_validate(&d), TW_ERR_INVALID_ARGUMENT,
                       "layer 0 attn_scale");
    }
    const float good[] = {0.0f, 1e-30f, 1.0f, 65536.0f};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        tw_gpt_config d = c;
        d.layers[0].attn_scale = d.layers[1].mlp_scale = good[i];
        TW_CHECK_OK(tw_gpt_config_validate(&d));
    }
    printf("block scales: NaN, +-inf, -1, 65537, 1e30 refused; 0 .. 65536 accepted\n");
}

static void check_config_json(void) {
    tw_gpt_config c, back;
    TW_CHECK_OK(tw_gpt_config_uniform(64, 8, 2, 16, 2, &c));
    c.layers[1].attn_scale = 2.0f;
    char *json = NULL;
    TW_CHECK_OK(tw_gpt_config_to_json(&c, 63, &json));
    TW_CHECK_OK(tw_gpt_config_from_json(json, "c.json", &back));
    TW_CHECK(back.layers[1].attn_scale == 2.0f, "round trip lost the scale");
    struct {
        const char *from, *to, *message;
    } edits[] = {
        {"\"attn_scale\":\t2", "\"attn_scale\":\t1e308",
         "c.json (twist.layers[1]): field 'attn_scale' = 1e+308 must lie in [0, 65536]"},
        {"\"attn_scale\":\t2", "\"attn_scale\":\t-1e308",
         "c.json (twist.layers[1]): field 'attn_scale' = -1e+308 must lie in [0, 65536]"},
        {"\"layer_norm_epsilon\":", "\"layer_norm_epsilon\": 1e300, \"x\":",
         "c.json: field 'layer_norm_epsilon' = 1e+300 must lie in (0, 1]"},
        {"\"n_layer\":", "\"n_layer\": 2, \"n_layer\":", "c.json: key 'n_layer' appears twice"},
        {"\"attn_scale\":\t2", "\"attn_scale\":\t2, \"attn_scale\": 1",
         "c.json: key 'attn_scale' appears twice in twist.layers[1]"},
        {"\"format_version\":\t1", "\"format_version\":\t\"1\"",
         "c.json: twist.format_version that is not a number is not one this twist reads (1)"},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        const char *at = strstr(json, edits[i].from);
        TW_CHECK(at != NULL, "config.json text lacks '%s'", edits[i].from);
        if (!at) continue;
        size_t head = (size_t)(at - json), from = strlen(edits[i].from);
        size_t size = strlen(json) + strlen(edits[i].to) + 1;
        char *edited = malloc(size);
        snprintf(edited, size, "%.*s%s%s", (int)head, json, edits[i].to, at + from);
        tw_status status = tw_gpt_config_from_json(edited, "c.json", &back);
        TW_CHECK(status == TW_ERR_FORMAT && strcmp(tw_last_error(), edits[i].message) == 0,
                 "edit %zu: status %d, message '%s', expected '%s'", i, (int)status,
                 tw_last_error(), edits[i].message);
        free(edited);
    }
    free(json);
    printf("config.json: out-of-range numbers, keys given twice, a newer format: refused\n");
}

static void check_duplicates(void) {
    struct {
        const char *json, *key, *top, *path;
    } cases[] = {
        {"{\"a\": 1, \"b\": {\"c\": 1}}", NULL, NULL, ""},
        {"{\"a\": 1, \"a\": 2}", "a", NULL, ""},
        {"{\"a\": {\"b\": 1, \"c\": 2, \"b\": 3}}", "b", "a", "a"},
        {"{\"x\": [{\"k\": 1}, {\"j\": 1, \"k\": 1, \"j\": 2}]}", "j", "x", "x[1]"},
        {"{\"t.w\": {\"s\": [[{\"q\": 1, \"q\": 1}]]}}", "q", "t.w", "t.w.s[0][0]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *root = cJSON_Parse(cases[i].json);
        tw_json_duplicate d;
        TW_CHECK_OK(tw_json_find_duplicate(root, &d));
        bool same_key = cases[i].key ? d.key && strcmp(d.key, cases[i].key) == 0 : !d.key;
        bool same_top = cases[i].top ? d.top && strcmp(d.top, cases[i].top) == 0 : !d.top;
        TW_CHECK(same_key && same_top && (!d.key || strcmp(d.path, cases[i].path) == 0),
                 "%s: found key '%s' under '%s' at '%s'", cases[i].json, d.key ? d.key : "-",
                 d.top ? d.top : "-", d.path);
        cJSON_Delete(root);
    }
    printf("duplicate keys: found at every depth, with their paths\n");
}

static int emitted;
static void count_emit(void *context, int32_t id) {
    (void)context;
    (void)id;
    emitted++;
}

static void check_non_finite_model(tw_device *cpu) {
    tw_gpt_config c;
    TW_CHECK_OK(tw_gpt_config_uniform(64, 8, 1, 16, 2, &c));
    tw_gpt *model = NULL;
    TW_CHECK_OK(tw_gpt_create(cpu, &c, &model));
    if (!model) return;
    TW_CHECK_OK(tw_gpt_init_params(model, 5));
    int32_t stream[200];
    for (int i = 0; i < 200; i++) stream[i] = (i * 37 + 11) % 64;
    tw_eval_result result;
    TW_CHECK_OK(tw_evaluate(model, stream, 200, 4, 8, 0, &result));
    TW_CHECK(isfinite(result.loss) && result.tokens > 0, "healthy model: loss %g over %ld",
             result.loss, result.tokens);
    /* One NaN in the token embedding (row 3) reaches every logit of a sequence holding token 3. */
    size_t P = tw_gpt_param_count(model);
    float *params = malloc(P * sizeof *params);
    TW_CHECK_OK(tw_buffer_download(tw_gpt_params(model), 0, params, P * sizeof *params));
    params[3 * 16 + 5] = NAN;
    TW_CHECK_OK(tw_buffer_upload(tw_gpt_params(model), 0, params, P * sizeof *params));
    free(params);
    TW_CHECK_ERROR(tw_evaluate(model, stream, 200, 4, 8, 0, &result), TW_ERR_INVALID_ARGUMENT,
                   "not a finite number");
    const int32_t prompt[2] = {3, 4};
    tw_sample_options o = {20, 0.8f, 0, 1};
    emitted = 0;
    TW_CHECK_ERROR(tw_sample(model, prompt, 2, 63, &o, count_emit, NULL), TW_ERR_INVALID_ARGUMENT,
                   "not a finite number");
    TW_CHECK(emitted == 0, "sample emitted %d tokens from NaN logits", emitted);
    tw_gpt_destroy(model);
    printf("NaN weights: evaluate and sample refuse, nothing emitted\n");
}

int main(void) {
    check_error_wraps_itself();
    check_scales();
    check_config_json();
    check_duplicates();
    tw_device *cpu = NULL;
    TW_CHECK_OK(tw_device_open("cpu", &cpu));
    if (cpu) check_non_finite_model(cpu);
    tw_device_close(cpu);
    return tw_test_finish("input");
}
