/* --balance data (src/ist/balance.c): the per-worker batches and the measured paces they come
 * from.
 *   - dist_balance_batches keeps the total, gives every worker at least one sequence, and its
 *     slowest predicted worker is as fast as the best of every integer split (brute force over
 *     all splits of 2, 3 and 4 workers, random paces);
 *   - a worker 3 times slower per sequence gets a third of the fast worker's batch, exactly;
 *     equal paces give equal batches;
 *   - dist_update_pace: the first round counts the passes as proportional to the batch; a second
 *     round at another batch recovers the per-sequence slope of a + b x batch; implausible
 *     slopes and unusable measurements are ignored or fall back to proportional; a round at a
 *     larger batch over four times slower than predicted caps the worker at its last batch;
 *   - the split keeps caps while it can; dist_plan_batches keeps the previous batches unless the
 *     new split is 2% faster. */
#include <math.h>
#include <stdlib.h>

#include "harness.h"
#include "ist/dist_internal.h"

static double slowest(const dist_pace *pace, const int *batches, int n) {
    double worst = 0.0;
    for (int w = 0; w < n; w++) {
        const double t = pace[w].fixed_s + batches[w] * pace[w].seq_s;
        if (t > worst) worst = t;
    }
    return worst;
}

/* The best slowest time over every split of total into n parts >= 1 (recursive). */
static double best_split(const dist_pace *pace, int n, int w, int left, int *batches) {
    if (w == n - 1) {
        batches[w] = left;
        return slowest(pace, batches, n);
    }
    double best = INFINITY;
    for (int b = 1; b <= left - (n - 1 - w); b++) {
        batches[w] = b;
        const double t = best_split(pace, n, w + 1, left - b, batches);
        if (t < best) best = t;
    }
    return best;
}

static void optimal_against_brute_force(void) {
    tw_test_rng rng;
    tw_test_rng_seed(&rng, 16);
    int cases = 0;
    for (int n = 2; n <= 4; n++)
        for (int trial = 0; trial < 40; trial++) {
            dist_pace pace[4];
            float r[8];
            tw_test_fill_uniform(&rng, r, 8, 0.0f, 1.0f);
            for (int w = 0; w < n; w++)
                pace[w] = (dist_pace){.seq_s = 0.01 + 0.2 * r[w], .fixed_s = 0.3 * r[4 + w]};
            const int total = n + 3 + trial % 14;
            int batches[4], scratch[4];
            dist_balance_batches(pace, n, total, batches);
            int sum = 0, smallest = total;
            for (int w = 0; w < n; w++) {
                sum += batches[w];
                if (batches[w] < smallest) smallest = batches[w];
            }
            TW_CHECK(sum == total && smallest >= 1, "n %d total %d: batches sum to %d, smallest %d",
                     n, total, sum, smallest);
            const double got = slowest(pace, batches, n);
            const double best = best_split(pace, n, 0, total, scratch);
            TW_CHECK(got <= best * (1.0 + 1e-12), "n %d total %d: slowest %.6f s, best split %.6f s",
                     n, total, got, best);
            cases++;
        }
    printf("batches: the greedy split is optimal in %d random cases\n", cases);
}

static void simple_splits(void) {
    const dist_pace pace[2] = {{.seq_s = 0.1, .fixed_s = 0.0}, {.seq_s = 0.3, .fixed_s = 0.0}};
    int batches[2];
    dist_balance_batches(pace, 2, 16, batches);
    TW_CHECK(batches[0] == 12 && batches[1] == 4, "3x slower: batches %d and %d, expected 12 and 4",
             batches[0], batches[1]);
    const dist_pace same[3] = {{0.2, 0.1, 0, 0, 0}, {0.2, 0.1, 0, 0, 0}, {0.2, 0.1, 0, 0, 0}};
    int three[3];
    dist_balance_batches(same, 3, 24, three);
    TW_CHECK(three[0] == 8 && three[1] == 8 && three[2] == 8, "equal paces: %d %d %d", three[0],
             three[1], three[2]);
    /* A worker whose fixed part alone exceeds the others' whole phase keeps one sequence. */
    const dist_pace stuck[2] = {{0.1, 0.0, 0, 0, 0}, {0.1, 5.0, 0, 0, 0}};
    dist_balance_batches(stuck, 2, 10, batches);
    TW_CHECK(batches[0] == 9 && batches[1] == 1, "slow fixed part: %d %d", batches[0], batches[1]);
}

static bool near(double a, double b) { return fabs(a - b) <= 1e-12 * (fabs(b) + 1.0); }

static void paces(void) {
    /* passes: 0.2 s + 0.1 s per sequence; 0.5 s of updates and transfers besides */
    dist_pace p = {0};
    dist_update_pace(&p, 8, 0.2 + 0.8, 0.5 + 1.0);
    TW_CHECK(near(p.seq_s, 1.0 / 8) && near(p.fixed_s, 0.5),
             "first round: seq %.6f fixed %.6f, expected 0.125 and 0.5", p.seq_s, p.fixed_s);
    dist_update_pace(&p, 4, 0.2 + 0.4, 0.5 + 0.6);
    /* slope 0.1, fixed 1.1 - 0.4 = 0.7; each smoothed half and half with the first round */
    TW_CHECK(near(p.seq_s, 0.5 * 0.125 + 0.5 * 0.1) && near(p.fixed_s, 0.5 * 0.5 + 0.5 * 0.7),
             "second round: seq %.6f fixed %.6f", p.seq_s, p.fixed_s);
    /* Noise: passes that took longer at a smaller batch give a negative slope, ignored. */
    dist_pace q = {0};
    dist_update_pace(&q, 8, 1.0, 1.5);
    dist_update_pace(&q, 4, 1.2, 1.7);
    TW_CHECK(near(q.seq_s, 0.5 * 0.125 + 0.5 * 0.3), "negative slope: seq %.6f, expected %.6f",
             q.seq_s, 0.5 * 0.125 + 0.5 * 0.3);
    /* Unusable rounds (a failed worker: no passes; compute shorter than the passes) change
     * nothing. */
    const dist_pace before = q;
    dist_update_pace(&q, 4, 0.0, 1.0);
    dist_update_pace(&q, 4, 2.0, 1.0);
    dist_update_pace(&q, 0, 1.0, 2.0);
    TW_CHECK(q.seq_s == before.seq_s && q.fixed_s == before.fixed_s, "an unusable round counted");
}

/* A round at a larger batch far slower than predicted caps the worker at its last batch and
 * is not counted; rounds at smaller batches, or as predicted, count. The greedy split keeps caps while
 * another worker can take a sequence. The plan keeps the previous batches unless the new split
 * is predicted 2% faster. */
static void cliffs_and_keeping(void) {
    dist_pace p = {0};
    dist_update_pace(&p, 8, 1.0, 1.5); /* seq 0.125, fixed 0.5: 12 sequences predict 2.0 s */
    const dist_pace before = p;
    dist_update_pace(&p, 12, 9.0, 10.0);
    TW_CHECK(p.seq_s == before.seq_s && p.fixed_s == before.fixed_s && p.cap == 8,
             "a cliff at 12: seq %.6f, cap %d (expected the pace kept, cap 8)", p.seq_s, p.cap);
    dist_update_pace(&p, 4, 1.0, 1.2); /* smaller batch, slow: counted, no cap change */
    TW_CHECK(p.last_batch == 4 && p.cap == 8, "a round at a smaller batch was not counted");
    dist_pace q = {0};
    dist_update_pace(&q, 8, 1.0, 1.5);
    dist_update_pace(&q, 12, 1.4, 1.95); /* as predicted: counted */
    TW_CHECK(q.last_batch == 12 && q.cap == 0, "a normal round was taken for a cliff");
    dist_pace noisy = {0};
    dist_update_pace(&noisy, 8, 1.0, 1.5);
    dist_update_pace(&noisy, 12, 5.0, 6.0); /* 3x the prediction: a loaded machine, no cap */
    TW_CHECK(noisy.last_batch == 12 && noisy.cap == 0,
             "a round 3x slower than predicted was taken for a cliff (cap %d)", noisy.cap);

    /* worker 0 is 3x faster but capped at 6: it takes 6, worker 1 the other 10 */
    dist_pace capped[2] = {{0.1, 0.0, 0, 0, 6}, {0.3, 0.0, 0, 0, 0}};
    int batches[2];
    dist_balance_batches(capped, 2, 16, batches);
    TW_CHECK(batches[0] == 6 && batches[1] == 10, "capped: %d/%d, expected 6/10", batches[0],
             batches[1]);
    /* both capped: the caps give way, fastest first */
    capped[1].cap = 4;
    dist_balance_batches(capped, 2, 16, batches);
    TW_CHECK(batches[0] + batches[1] == 16 && batches[0] >= 6 && batches[1] >= 4,
             "both capped: %d/%d", batches[0], batches[1]);

    const dist_pace pace[2] = {{0.1, 0.0, 0, 0, 0}, {0.3, 0.0, 0, 0, 0}};
    const int close[2] = {11, 5}; /* 1.5 s against the best 1.2 s: replaced */
    TW_CHECK(dist_plan_batches(pace, 2, 16, close, batches) && batches[0] == 12 &&
                 batches[1] == 4, "previous 11/5: got %d/%d, expected 12/4", batches[0],
             batches[1]);
    const dist_pace near_pace[2] = {{0.1, 0.0, 0, 0, 0}, {0.305, 0.0, 0, 0, 0}};
    const int kept[2] = {12, 4}; /* 1.22 s: the best split is 1.22 s too */
    const int within[2] = {13, 3}; /* 1.3 s: 6.6% slower than the best, replaced */
    TW_CHECK(dist_plan_batches(near_pace, 2, 16, within, batches) && batches[0] == 12,
             "previous 13/3 kept: %d/%d", batches[0], batches[1]);
    TW_CHECK(!dist_plan_batches(near_pace, 2, 16, kept, batches) && batches[0] == 12 &&
                 batches[1] == 4, "previous 12/4 not kept: %d/%d", batches[0], batches[1]);
    const int other_total[2] = {8, 4}; /* a worker left: the total changed */
    TW_CHECK(dist_plan_batches(pace, 2, 16, other_total, batches) && batches[0] + batches[1] == 16,
             "previous batches of another total kept");
    TW_CHECK(dist_plan_batches(pace, 2, 16, NULL, batches) && batches[0] == 12,
             "no previous batches");
    /* previous batches above a cap found since are not kept, however close */
    const dist_pace capped_now[2] = {{0.1, 0.0, 0, 0, 11}, {0.305, 0.0, 0, 0, 0}};
    TW_CHECK(dist_plan_batches(capped_now, 2, 16, kept, batches) && batches[0] == 11 &&
                 batches[1] == 5, "previous 12/4 kept above the cap 11: %d/%d", batches[0],
             batches[1]);
}

int main(void) {
    optimal_against_brute_force();
    simple_splits();
    paces();
    cliffs_and_keeping();
    return tw_test_finish("ist_balance");
}
