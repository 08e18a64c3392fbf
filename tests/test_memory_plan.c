/* Device memory (twist/memory.h):
 *   - --device-memory caps: sizes with K/M/G, several devices, a spec given again, bad items
 *     refused naming the flag;
 *   - the allocator enforces a cap: an allocation past it fails (TW_ERR_OUT_OF_MEMORY naming the
 *     device and the cap), freeing makes room again, a cap below what is held is refused, and
 *     tw_device_free_memory reports cap - in use;
 *   - the training-memory estimate against the allocator's measured peak of a real training
 *     step on the cpu (a uniform model and an uneven IST-like subnet): never below it, and
 *     equal to it but for the scratch, which keeps room for other backends' larger scratch;
 *   - the planner: no budget binds -> no change; tight budgets -> every worker's real partition
 *     (rounding included) within its budget, the small worker given less; micro-batches cut
 *     when the shares alone cannot fit; refusals when the smallest subnet cannot fit (naming
 *     worker, device, budget and need) and when the workers together cannot hold the model;
 *     the whole-model (data parallel) plan;
 *   - a worker's micro-batched step (dist_compute_grads_micro) gives the gradients and loss of
 *     the whole batch in one pass, to float rounding;
 *   - opencl:0 and vulkan:0 (skipped, saying so, where absent) report free memory, and on
 *     OpenCL it drops by exactly what twist allocates. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ist/dist_memory.h"
#include "train/train_internal.h"
#include "twist/ist.h"
#include "twist/memory.h"
#include "twist/optim.h"

static void test_caps(void) {
    tw_memory_caps caps = {0};
    TW_CHECK_OK(tw_memory_caps_add(&caps, "cpu=64M,opencl=1G"));
    TW_CHECK_OK(tw_memory_caps_add(&caps, "vulkan:1=2GiB"));
    TW_CHECK_OK(tw_memory_caps_add(&caps, "cpu=1536K")); /* replaces cpu's */
    TW_CHECK(caps.count == 3, "3 caps expected, got %d", caps.count);
    TW_CHECK(tw_memory_caps_find(&caps, "cpu") == 1536u * 1024u, "cpu cap");
    TW_CHECK(tw_memory_caps_find(&caps, "opencl:0") == 1ull << 30, "opencl cap");
    TW_CHECK(tw_memory_caps_find(&caps, "opencl") == 1ull << 30, "opencl alone is opencl:0");
    TW_CHECK(tw_memory_caps_find(&caps, "vulkan:1") == 2ull << 30, "vulkan:1 cap");
    TW_CHECK(tw_memory_caps_find(&caps, "vulkan:0") == 0, "vulkan:0 is not capped");
    TW_CHECK(tw_memory_caps_find(&caps, "cuda:0") == 0, "cuda:0 is not capped");
    tw_memory_caps plain = {0};
    TW_CHECK_OK(tw_memory_caps_add(&plain, "cuda:0=4096"));
    TW_CHECK(tw_memory_caps_find(&plain, "cuda:0") == 4096, "a plain number is bytes");

    const char *const bad[] = {"cpu", "cpu=", "=64M", "gpu=1M", "cpu=0", "cpu=1.5G",
                               "cpu=12X", "cpu=-1", "cpu:1=1M", "opencl:x=1M", "cpu=1M,",
                               "cpu=99999999999999999999", "cpu=17179869184G"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tw_memory_caps before = caps;
        TW_CHECK_ERROR(tw_memory_caps_add(&caps, bad[i]), TW_ERR_INVALID_ARGUMENT,
                       "--device-memory");
        TW_CHECK(memcmp(&before, &caps, sizeof caps) == 0, "'%s' changed the caps", bad[i]);
    }
}

static void test_allocator_cap(void) {
    tw_device *cpu = NULL;
    TW_CHECK_OK(tw_device_open("cpu", &cpu));
    if (!cpu) return;
    uint64_t free_bytes = 0;
    bool capped = true;
    TW_CHECK_OK(tw_device_free_memory(cpu, &free_bytes, &capped));
    TW_CHECK(free_bytes > 0 && !capped, "uncapped cpu: free %llu, capped %d",
             (unsigned long long)free_bytes, capped);

    TW_CHECK_OK(tw_device_set_memory_cap(cpu, 1 << 20));
    TW_CHECK(tw_device_memory_cap(cpu) == 1 << 20, "cap read back");
    tw_buffer *a = NULL, *b = NULL;
    TW_CHECK_OK(tw_buffer_alloc(cpu, 600 << 10, &a));
    TW_CHECK_OK(tw_device_free_memory(cpu, &free_bytes, &capped));
    TW_CHECK(free_bytes == (1 << 20) - (600 << 10) && capped, "free under the cap: %llu",
             (unsigned long long)free_bytes);
    /* 600 KiB + 500 KiB > 1 MiB: refused, naming the device and the cap */
    TW_CHECK_ERROR(tw_buffer_alloc(cpu, 500 << 10, &b), TW_ERR_OUT_OF_MEMORY, "cap of 1.0 MiB");
    TW_CHECK(strstr(tw_last_error(), "cpu") != NULL, "message names the device: %s",
             tw_last_error());
    TW_CHECK(b == NULL && tw_device_bytes_in_use(cpu) == 600 << 10, "a refused allocation "
             "leaves nothing behind");
    /* exactly up to the cap is allowed */
    TW_CHECK_OK(tw_buffer_alloc(cpu, (1 << 20) - (600 << 10), &b));
    tw_buffer_free(b);
    b = NULL;
    TW_CHECK_ERROR(tw_device_set_memory_cap(cpu, 512 << 10), TW_ERR_OUT_OF_MEMORY,
                   "more than the cap");
    tw_buffer_free(a);
    TW_CHECK_OK(tw_buffer_alloc(cpu, 1000 << 10, &b)); /* room again once freed */
    tw_buffer_free(b);
    TW_CHECK_OK(tw_device_set_memory_cap(cpu, 0)); /* no cap */
    TW_CHECK_OK(tw_buffer_alloc(cpu, 4 << 20, &b));
    tw_buffer_free(b);
    TW_CHECK_OK(tw_device_spec_free_memory("cpu", &free_bytes));
    TW_CHECK(free_bytes > 0, "the cpu reports available memory");
    TW_CHECK_ERROR(tw_device_spec_free_memory("gpu:0", &free_bytes), TW_ERR_NOT_FOUND, "gpu");
    tw_device_close(cpu);
}

/* One training step of config at (batch, T) on a fresh cpu device: the allocator's peak. */
static uint64_t measured_peak(const tw_gpt_config *config, int batch, int T) {
    tw_device *cpu = NULL;
    tw_gpt *model = NULL;
    tw_adamw *opt = NULL;
    TW_CHECK_OK(tw_device_open("cpu", &cpu));
    TW_CHECK_OK(tw_gpt_create(cpu, config, &model));
    TW_CHECK_OK(tw_gpt_init_params(model, 3));
    tw_adamw_config adam = tw_adamw_defaults();
    TW_CHECK_OK(tw_adamw_create(model, &adam, &opt));
    const size_t N = (size_t)batch * (size_t)T;
    int32_t *tokens = malloc(N * sizeof *tokens);
    for (size_t i = 0; tokens && i < N; i++) tokens[i] = (int32_t)((i * 7 + 3) % config->vocab_size);
    TW_CHECK_OK(tw_gpt_zero_grad(model));
    TW_CHECK_OK(tw_gpt_forward(model, tokens, tokens, batch, T));
    TW_CHECK_OK(tw_gpt_backward(model, 1.0f));
    TW_CHECK_OK(tw_adamw_update(opt, 1e-3f, NULL));
    TW_CHECK_OK(tw_device_sync(cpu));
    const uint64_t peak = tw_device_peak_bytes(cpu);
    free(tokens);
    tw_adamw_destroy(opt);
    tw_gpt_destroy(model);
    tw_device_close(cpu);
    return peak;
}

static void check_estimate(const char *what, const tw_gpt_config *config, int batch, int T) {
    tw_training_memory need;
    tw_training_memory_of(config, batch, T, &need);
    const uint64_t peak = measured_peak(config, batch, T);
    printf("%s: estimate %llu bytes (params %llu, grads %llu, moments %llu, activations %llu, "
           "scratch %llu), measured peak %llu\n",
           what, (unsigned long long)need.total, (unsigned long long)need.params,
           (unsigned long long)need.grads, (unsigned long long)need.moments,
           (unsigned long long)need.activations, (unsigned long long)need.scratch,
           (unsigned long long)peak);
    TW_CHECK(need.total >= peak, "%s: estimate %llu below the measured peak %llu", what,
             (unsigned long long)need.total, (unsigned long long)peak);
    /* Everything but the scratch is exact: the cpu's only scratch is attention backward's
     * (B, H, T) row terms; the estimate keeps room for larger ones of other backends. */
    int heads = 0;
    for (int l = 0; l < config->n_layer; l++)
        if (config->layers[l].heads > heads) heads = config->layers[l].heads;
    const uint64_t cpu_scratch = 4 * (uint64_t)batch * (uint64_t)heads * (uint64_t)T;
    TW_CHECK(need.total - need.scratch == peak - cpu_scratch,
             "%s: estimate %llu without scratch, measured %llu without the cpu's %llu of "
             "scratch", what, (unsigned long long)(need.total - need.scratch),
             (unsigned long long)peak, (unsigned long long)cpu_scratch);
    TW_CHECK(need.scratch >= cpu_scratch, "%s: scratch %llu below the cpu's %llu", what,
             (unsigned long long)need.scratch, (unsigned long long)cpu_scratch);
    tw_gpt_tensor *tensors = NULL;
    int count = 0;
    size_t params = 0, decay = 0;
    TW_CHECK_OK(tw_gpt_layout(config, &tensors, &count, &params, &decay));
    TW_CHECK(need.params == 4 * (uint64_t)params, "%s: parameter bytes %llu, layout has %zu "
             "parameters", what, (unsigned long long)need.params, params);
    free(tensors);
}

static void test_estimate(void) {
    tw_gpt_config uniform;
    TW_CHECK_OK(tw_gpt_config_uniform(384, 32, 2, 64, 4, &uniform));
    check_estimate("uniform 2 x 64, batch 4", &uniform, 4, 32);
    check_estimate("uniform 2 x 64, batch 3 of T 17", &uniform, 3, 17);
    /* A subnet: layers of other widths, as IST deals them. */
    tw_gpt_config subnet = uniform;
    subnet.layers[0].heads = 1;
    subnet.layers[0].mlp_hidden = 37;
    subnet.layers[1].heads = 3;
    subnet.layers[1].mlp_hidden = 200;
    check_estimate("uneven subnet", &subnet, 2, 32);
}

enum { W = 4 };

/* The real partition with the plan's weights: each worker's subnet need at its micro-batch. */
static void check_plan_fits(const tw_memory_plan_options *o, const tw_memory_plan *plan) {
    tw_ist_partition *partition = NULL;
    tw_ist_partition_options po = {.workers = o->workers, .heads_per_worker = o->heads_per_worker,
                                   .weights = plan->reshaped || o->desired ? plan->weights : NULL,
                                   .seed = 9,
                                   .round = 5};
    TW_CHECK_OK(tw_ist_partition_make(o->model, &po, &partition));
    if (!partition) return;
    for (int w = 0; w < o->workers; w++) {
        tw_gpt_config subnet;
        TW_CHECK_OK(tw_ist_subnet_config(o->model, partition, w, &subnet));
        tw_training_memory need;
        tw_training_memory_of(&subnet, plan->micro_batch[w], o->seq_len, &need);
        TW_CHECK(need.total == plan->need[w], "worker %d: need %llu, plan says %llu", w,
                 (unsigned long long)need.total, (unsigned long long)plan->need[w]);
        TW_CHECK(!o->budgets[w] || need.total <= o->budgets[w],
                 "worker %d: need %llu past its budget %llu", w, (unsigned long long)need.total,
                 (unsigned long long)o->budgets[w]);
        TW_CHECK(o->batch % plan->micro_batch[w] == 0, "worker %d: micro-batch %d does not "
                 "divide %d", w, plan->micro_batch[w], o->batch);
    }
    tw_ist_partition_free(partition);
}

static void test_planner(void) {
    tw_gpt_config model;
    TW_CHECK_OK(tw_gpt_config_uniform(384, 32, 2, 64, 4, &model));
    const char *const devices[W] = {"cpu", "cpu", "opencl:0", "vulkan:0"};
    uint64_t budgets[W] = {0, 0, 0, 0};
    double weights[W];
    int micro[W];
    uint64_t need[W];
    tw_memory_plan plan = {.weights = weights, .micro_batch = micro, .need = need};
    tw_memory_plan_options o = {.model = &model, .workers = W, .heads_per_worker = 1,
                                .batch = 4, .seq_len = 32, .budgets = budgets,
                                .worker_devices = devices};
    tw_training_memory whole, whole1;
    tw_training_memory_of(&model, 4, 32, &whole);
    tw_training_memory_of(&model, 1, 32, &whole1);

    /* No budget, then ample ones: nothing changes. */
    TW_CHECK_OK(tw_memory_plan_make(&o, &plan));
    TW_CHECK(!plan.fitted && !plan.reshaped, "no budgets: no plan");
    for (int w = 0; w < W; w++) budgets[w] = whole.total;
    TW_CHECK_OK(tw_memory_plan_make(&o, &plan));
    TW_CHECK(!plan.fitted && !plan.reshaped, "ample budgets: no plan");
    for (int w = 0; w < W; w++)
        TW_CHECK(micro[w] == 4 && weights[w] == 0.25, "worker %d: micro %d weight %g", w,
                 micro[w], weights[w]);
    check_plan_fits(&o, &plan);

    /* 1.5 MiB each: less than the whole model's parameters, gradients and moments; the plan
     * fits every worker by cutting micro-batches. */
    for (int w = 0; w < W; w++) budgets[w] = 1536 << 10;
    TW_CHECK(whole1.params + whole1.grads + whole1.moments > budgets[0],
             "the test's cap must be below the whole model's state");
    TW_CHECK_OK(tw_memory_plan_make(&o, &plan));
    TW_CHECK(plan.fitted, "1.5 MiB each: the plan binds");
    for (int w = 0; w < W; w++) TW_CHECK(micro[w] < 4, "worker %d keeps micro-batch 4", w);
    check_plan_fits(&o, &plan);

    /* One small worker: it gets a smaller share, the others take the rest. */
    budgets[0] = 1100 << 10;
    for (int w = 1; w < W; w++) budgets[w] = 2 * whole.total;
    o.heads_per_worker = 2;
    TW_CHECK_OK(tw_memory_plan_make(&o, &plan));
    TW_CHECK(plan.reshaped, "a small worker reshapes the shares");
    TW_CHECK(weights[0] < weights[1] && weights[1] == weights[2] && weights[2] == weights[3],
             "shares %g %g %g %g", weights[0], weights[1], weights[2], weights[3]);
    TW_CHECK(micro[1] == 4 && micro[2] == 4 && micro[3] == 4, "the big workers keep batch 4");
    check_plan_fits(&o, &plan);

    /* Desired shares (--balance speed) are followed where they fit. */
    const double desired[W] = {1.0, 1.0, 2.0, 4.0};
    for (int w = 0; w < W; w++) budgets[w] = 2 * whole.total;
    o.desired = desired;
    TW_CHECK_OK(tw_memory_plan_make(&o, &plan));
    TW_CHECK(!plan.reshaped && weights[3] > weights[2] && weights[2] > weights[1],
             "desired shares kept: %g %g %g %g", weights[0], weights[1], weights[2], weights[3]);
    check_plan_fits(&o, &plan);
    o.desired = NULL;
    o.heads_per_worker = 1;

    /* The smallest subnet does not fit worker 2. */
    for (int w = 0; w < W; w++) budgets[w] = 2 * whole.total;
    budgets[2] = 200 << 10;
    TW_CHECK_ERROR(tw_memory_plan_make(&o, &plan), TW_ERR_OUT_OF_MEMORY, "worker 2 on opencl:0");
    TW_CHECK(strstr(tw_last_error(), "200.0 KiB") && strstr(tw_last_error(), "smallest subnet"),
             "message names the budget and the smallest subnet: %s", tw_last_error());

    /* Each fits its smallest subnet, but together they cannot hold every head and unit. */
    for (int w = 0; w < W; w++) budgets[w] = 800 << 10;
    TW_CHECK_ERROR(tw_memory_plan_make(&o, &plan), TW_ERR_OUT_OF_MEMORY, "together");

    /* Data parallel: the whole model per worker; micro-batches shrink, then it refuses. */
    o.whole_model = true;
    for (int w = 0; w < W; w++) budgets[w] = whole1.total + 1024;
    TW_CHECK_OK(tw_memory_plan_make(&o, &plan));
    for (int w = 0; w < W; w++)
        TW_CHECK(micro[w] == 1 && need[w] == whole1.total, "dp worker %d: micro %d need %llu",
                 w, micro[w], (unsigned long long)need[w]);
    budgets[1] = whole1.total - 1;
    TW_CHECK_ERROR(tw_memory_plan_make(&o, &plan), TW_ERR_OUT_OF_MEMORY, "worker 1 on cpu");
    TW_CHECK(strstr(tw_last_error(), "whole model"), "names the whole model: %s",
             tw_last_error());
}

/* The gradients of one step over `batch` rows (x accum) on a fresh cpu model, either in one
 * pass per loaded batch (micro 0) or in passes of `micro` rows. */
static void step_grads(const tw_gpt_config *config, const int32_t *stream, size_t count,
                       int batch, int micro, int accum, float *grads, double *loss) {
    tw_device *cpu = NULL;
    tw_gpt *model = NULL;
    tw_loader loader;
    const int T = config->max_seq_len;
    int32_t *inputs = malloc((size_t)batch * T * sizeof *inputs);
    int32_t *targets = malloc((size_t)batch * T * sizeof *targets);
    TW_CHECK_OK(tw_device_open("cpu", &cpu));
    TW_CHECK_OK(tw_gpt_create(cpu, config, &model));
    TW_CHECK_OK(tw_gpt_init_params(model, 11));
    TW_CHECK_OK(tw_loader_init(&loader, stream, count, batch, T, 5, 0, 1, "test stream"));
    if (micro > 0)
        TW_CHECK_OK(dist_compute_grads_micro(model, &loader, batch, micro, T, accum, 1.0f, inputs,
                                             targets, loss));
    else
        TW_CHECK_OK(tw_train_compute_grads(model, &loader, batch, T, accum, inputs, targets,
                                           loss, NULL));
    TW_CHECK_OK(tw_buffer_download(tw_gpt_grads(model), 0, grads,
                                   tw_gpt_param_count(model) * sizeof(float)));
    free(inputs);
    free(targets);
    tw_gpt_destroy(model);
    tw_device_close(cpu);
}

static void test_micro_batches(void) {
    tw_gpt_config config;
    TW_CHECK_OK(tw_gpt_config_uniform(384, 32, 2, 64, 4, &config));
    const size_t count = 20000;
    int32_t *stream = malloc(count * sizeof *stream);
    for (size_t i = 0; stream && i < count; i++)
        stream[i] = (int32_t)((i * 2654435761u >> 7) % 384);
    tw_gpt_tensor *tensors = NULL;
    int tensor_count = 0;
    size_t P = 0, decay = 0;
    TW_CHECK_OK(tw_gpt_layout(&config, &tensors, &tensor_count, &P, &decay));
    free(tensors);
    float *whole = malloc(P * sizeof *whole), *parts = malloc(P * sizeof *parts);
    if (!stream || !whole || !parts) return;
    /* 3 does not divide 4: a pass of 3 rows and one of 1, weighted by rows (--balance data) */
    const int micros[] = {1, 2, 3};
    for (int accum = 1; accum <= 2; accum++) {
        double whole_loss = 0.0;
        step_grads(&config, stream, count, 4, 0, accum, whole, &whole_loss);
        for (size_t k = 0; k < sizeof micros / sizeof micros[0]; k++) {
            double loss = 0.0;
            step_grads(&config, stream, count, 4, micros[k], accum, parts, &loss);
            double largest = 0.0, worst = 0.0;
            for (size_t i = 0; i < P; i++) {
                largest = fmax(largest, fabs(whole[i]));
                worst = fmax(worst, fabs((double)whole[i] - parts[i]));
            }
            TW_CHECK(largest > 0.0 && worst <= 1e-5 * largest,
                     "accum %d, micro-batch %d of 4: gradients differ by %g (largest %g)", accum,
                     micros[k], worst, largest);
            TW_CHECK(fabs(loss - whole_loss) <= 1e-5 * whole_loss,
                     "accum %d, micro-batch %d of 4: loss %.9f, whole batch %.9f", accum,
                     micros[k], loss, whole_loss);
        }
    }
    TW_CHECK_ERROR(dist_compute_grads_micro(NULL, NULL, 4, 0, 32, 1, 1.0f, NULL, NULL, NULL),
                   TW_ERR_INVALID_ARGUMENT, "micro-batch 0 of a batch of 4");
    free(stream);
    free(whole);
    free(parts);
}

static void test_backend_free_memory(void) {
    const char *const specs[] = {"opencl:0", "vulkan:0"};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        tw_device *device = NULL;
        if (tw_device_open(specs[i], &device) != TW_OK) {
            printf("skipped %s free memory: %s\n", specs[i], tw_last_error());
            tw_clear_error();
            continue;
        }
        const tw_device_info *info = tw_device_get_info(device);
        uint64_t before = 0, after = 0;
        tw_buffer *buffer = NULL;
        TW_CHECK_OK(tw_device_spec_free_memory(specs[i], &before));
        TW_CHECK_OK(tw_buffer_alloc(device, 8 << 20, &buffer));
        TW_CHECK_OK(tw_buffer_fill_f32(buffer, 0, 2 << 20, 1.0f)); /* touch it */
        TW_CHECK_OK(tw_device_sync(device));
        TW_CHECK_OK(tw_device_spec_free_memory(specs[i], &after));
        printf("%s (%s): %llu bytes of memory, free %llu before and %llu after allocating 8 MiB\n",
               specs[i], info->name, (unsigned long long)info->memory_bytes,
               (unsigned long long)before, (unsigned long long)after);
        TW_CHECK(before > 0 && (!info->memory_bytes || before <= info->memory_bytes),
                 "%s: free %llu of %llu", specs[i], (unsigned long long)before,
                 (unsigned long long)info->memory_bytes);
        if (info->backend == TW_BACKEND_OPENCL)
            TW_CHECK(before - after == 8 << 20, "opencl: free memory dropped by %lld, not 8 MiB",
                     (long long)(before - after));
        /* a cap binds below the queried free memory */
        uint64_t left = 0;
        bool capped = false;
        TW_CHECK_OK(tw_device_set_memory_cap(device, 9 << 20));
        TW_CHECK_OK(tw_device_free_memory(device, &left, &capped));
        TW_CHECK(capped && left == 1 << 20, "%s: capped free %llu", specs[i],
                 (unsigned long long)left);
        tw_buffer_free(buffer);
        tw_device_close(device);
    }
}

int main(void) {
    test_caps();
    test_allocator_cap();
    test_estimate();
    test_planner();
    test_micro_batches();
    test_backend_free_memory();
    return tw_test_finish("memory_plan");
}
