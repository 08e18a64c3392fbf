/* Pieces of a training run shared between `twist train` (trainer.c) and the distributed runs of
 * src/ist (IST, data parallel, local SGD), so that every mode prepares its data and computes its
 * steps with the same code: a worker's local step is the plain training step, bit for bit. */
#ifndef TWIST_TRAIN_INTERNAL_H
#define TWIST_TRAIN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "twist/train.h"

/* Called with one line of set-up information ("data: ...", "tokenizer: ..."). */
typedef void (*tw_train_say_fn)(void *context, const char *message);

/* The corpus path for a run: data_path, or (NULL) the built-in synthetic corpus, written once
 * into the cache directory. *synthetic tells which. */
tw_status tw_train_choose_corpus(const char *data_path, char *corpus, size_t capacity,
                                 bool *synthetic, tw_train_say_fn say, void *context);

/* Checks the corpus, then loads the tokenizer at tokenizer_path or (NULL) trains one of
 * vocab_size tokens on the corpus. */
tw_status tw_train_prepare_tokenizer(const char *corpus, const char *tokenizer_path,
                                     int vocab_size, tw_tokenizer **out, tw_train_say_fn say,
                                     void *context);

/* Tokenises the corpus (or reads its cache) into the train and validation streams. */
tw_status tw_train_load_dataset(const char *corpus, const tw_tokenizer *tokenizer,
                                tw_dataset **out, tw_train_say_fn say, void *context);

/* Refuses (TW_ERR_INVALID_ARGUMENT, naming the corpus, its split sizes and seq_len) a dataset
 * whose validation split is shorter than one sequence of seq_len + 1 tokens: checked at the
 * start, since every validation pass would fail once the training time is spent. */
tw_status tw_train_check_validation(const tw_dataset *dataset, const char *corpus, int seq_len);

/* The gradient half of a training step: zeroes the gradients, then grad_accum micro-batches of
 * (batch, seq_len) from the loader, forward and backward, each scaled 1 / grad_accum. loss and
 * accuracy (may be NULL) get the mean over the micro-batches. inputs and targets are scratch of
 * batch * seq_len ids each. The update half is tw_adamw_update. */
tw_status tw_train_compute_grads(tw_gpt *model, tw_loader *loader, int batch, int seq_len,
                                 int grad_accum, int32_t *inputs, int32_t *targets,
                                 double *loss, double *accuracy);
/* The same with the loss gradient multiplied by loss_scale (fp16's dynamic loss scale; 1 gives
 * tw_train_compute_grads bit for bit). */
tw_status tw_train_compute_grads_scaled(tw_gpt *model, tw_loader *loader, int batch,
                                        int seq_len, int grad_accum, float loss_scale,
                                        int32_t *inputs, int32_t *targets, double *loss,
                                        double *accuracy);

/* The precision a run or worker takes on `device`: the asked one (set), after
 * tw_gpt_check_dtype; else tw_gpt_default_dtype. *why (may be NULL) gets why, for a line of
 * set-up information. */
tw_status tw_train_choose_precision(tw_device *device, bool set, tw_dtype asked, tw_dtype *out,
                                    const char **why);

#endif
