/* A twist checkpoint opens in PyTorch (Debian's python3-torch) and gives twist's logits within
 * 1e-4: for a plain GPT-2 shaped model, for one whose layers differ in heads, MLP width and
 * block scales, and for a model saved with --save-dtype bf16 (BF16 tensors, whose logits twist
 * computes from the checkpoint loaded back: the bf16-rounded weights). Both models train a few steps first, so the weights are not just their
 * initialisation. Usage: test_torch_logits TOOLS_DIR SCRIPT (tools/ holds torch_gpt2.py,
 * SCRIPT is tests/torch_logits.py). Skipped when /usr/bin/python3 cannot import torch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "twist/train.h"

enum { B = 2, T = 24 };

static char temp_root[256];

/* Trains a few steps of `config` and saves it to dir. */
static tw_gpt *train_and_save(tw_device *cpu, const tw_gpt_config *config,
                              const tw_tokenizer *tok, const char *dir, tw_dtype save_dtype) {
    tw_gpt *model = NULL;
    tw_adamw *opt = NULL;
    tw_adamw_config adam = tw_adamw_defaults();
    TW_CHECK_OK(tw_gpt_create(cpu, config, &model));
    if (!model) return NULL;
    TW_CHECK_OK(tw_gpt_init_params(model, 11));
    TW_CHECK_OK(tw_adamw_create(model, &adam, &opt));
    tw_test_rng rng;
    tw_test_rng_seed(&rng, 4);
    int32_t tokens[B * T], targets[B * T];
    for (int step = 0; step < 5; step++) {
        for (int i = 0; i < B * T; i++) {
            tokens[i] = tw_test_rng_int(&rng, config->vocab_size);
            targets[i] = (tokens[i] + 1) % config->vocab_size;
        }
        TW_CHECK_OK(tw_gpt_zero_grad(model));
        TW_CHECK_OK(tw_gpt_forward(model, tokens, targets, B, T));
        TW_CHECK_OK(tw_gpt_backward(model, 1.0f));
        TW_CHECK_OK(tw_adamw_update(opt, 3e-2f, NULL));
    }
    TW_CHECK_OK(tw_train_save_as(dir, model, opt, NULL, tok, save_dtype));
    tw_adamw_destroy(opt);
    if (save_dtype == TW_DTYPE_F32) return model;
    /* The weights PyTorch will see: the checkpoint's model file, loaded back and widened. */
    tw_gpt_destroy(model);
    tw_loaded_model loaded;
    TW_CHECK_OK(tw_train_load(dir, cpu, NULL, &loaded));
    model = loaded.model;
    loaded.model = NULL;
    tw_loaded_model_free(&loaded);
    return model;
}

/* Writes B, T, V, the tokens and twist's logits (B, T, V) for PyTorch to compare. */
static void write_logits(tw_gpt *model, const char *path) {
    const int V = tw_gpt_get_config(model)->vocab_size;
    int32_t header[3] = {B, T, V}, tokens[B * T];
    for (int i = 0; i < B * T; i++) tokens[i] = (i * 37 + 5) % V;
    TW_CHECK_OK(tw_gpt_forward(model, tokens, NULL, B, T));
    float *logits = malloc((size_t)B * T * V * sizeof *logits);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            TW_CHECK_OK(tw_gpt_logits_read(model, b, t, logits + ((size_t)b * T + t) * V));
    FILE *file = fopen(path, "wb");
    TW_CHECK(file != NULL, "cannot write %s", path);
    if (file) {
        fwrite(header, sizeof header, 1, file);
        fwrite(tokens, sizeof tokens, 1, file);
        fwrite(logits, sizeof(float), (size_t)B * T * V, file);
        fclose(file);
    }
    free(logits);
}

static void check_in_pytorch(tw_device *cpu, const char *name, const tw_gpt_config *config,
                             const tw_tokenizer *tok, const char *tools, const char *script,
                             tw_dtype save_dtype) {
    char dir[400], logits[400], command[1600];
    snprintf(dir, sizeof dir, "%s/%s", temp_root, name);
    snprintf(logits, sizeof logits, "%s/%s.logits", temp_root, name);
    tw_gpt *model = train_and_save(cpu, config, tok, dir, save_dtype);
    if (!model) return;
    write_logits(model, logits);
    tw_gpt_destroy(model);
    snprintf(command, sizeof command, "/usr/bin/python3 '%s' '%s' '%s' '%s'", script, tools, dir,
             logits);
    fflush(stdout);
    TW_CHECK(system(command) == 0, "%s: PyTorch's logits differ from twist's (see above)", name);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: test_torch_logits TOOLS_DIR SCRIPT\n");
        return 2;
    }
    if (system("/usr/bin/python3 -c 'import torch' > /dev/null 2>&1") != 0)
        tw_test_skip("/usr/bin/python3 cannot import torch (Debian's python3-torch is not "
                     "installed)");
    tw_test_temp_dir("torch", temp_root, sizeof temp_root);
    char corpus[300];
    snprintf(corpus, sizeof corpus, "%s/corpus.txt", temp_root);
    TW_CHECK_OK(tw_synth_write(1, 3, 20000, corpus));
    tw_tokenizer *tok = NULL;
    const char *paths[1] = {corpus};
    TW_CHECK_OK(tw_tokenizer_train(paths, 1, 512, &tok));
    tw_device *cpu = NULL;
    TW_CHECK_OK(tw_device_open("cpu", &cpu));
    if (!tok || !cpu) return tw_test_finish("torch_logits");
    const int V = tw_tokenizer_vocab_size(tok);

    tw_gpt_config plain;
    TW_CHECK_OK(tw_gpt_config_preset("nano", V, &plain));
    check_in_pytorch(cpu, "nano", &plain, tok, argv[1], argv[2], TW_DTYPE_F32);
    check_in_pytorch(cpu, "nano_bf16", &plain, tok, argv[1], argv[2], TW_DTYPE_BF16);

    tw_gpt_config irregular;
    TW_CHECK_OK(tw_gpt_config_uniform(V, 32, 2, 32, 4, &irregular));
    irregular.head_dim = 6;
    irregular.layers[0] = (tw_gpt_layer){.heads = 5, .mlp_hidden = 70, .attn_scale = 1.5f,
                                         .mlp_scale = 0.5f};
    irregular.layers[1] = (tw_gpt_layer){.heads = 2, .mlp_hidden = 33, .attn_scale = 0.75f,
                                         .mlp_scale = 2.0f};
    check_in_pytorch(cpu, "irregular", &irregular, tok, argv[1], argv[2], TW_DTYPE_F32);

    tw_tokenizer_free(tok);
    tw_device_close(cpu);
    tw_test_remove_temp_dir(temp_root);
    return tw_test_finish("torch_logits");
}
