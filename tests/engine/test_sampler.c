/* Sampler: greedy, the distributions of temperature / top-k / top-p / min-p
 * draws against softmax over 20k draws, seeded determinism, penalties,
 * logprobs against a double-precision log-softmax, and stop strings over
 * every way of cutting a stream into chunks. */
#include "engine/text.h"
#include "test.h"

#include <math.h>

static struct engine_sampler *make(float temp, int32_t top_k, float top_p, float min_p,
                                   uint64_t seed)
{
    struct engine_sampling_params p;
    struct engine_sampler *s = NULL;
    sampler_params_default(&p);
    p.temperature = temp, p.top_k = top_k, p.top_p = top_p, p.min_p = min_p, p.seed = seed;
    if (sampler_new(&p, &s, NULL) != 0) return NULL;
    return s;
}

static void softmax(const float *l, int n, double t, double *out)
{
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++)
        mx = fmax(mx, l[i] / t);
    for (int i = 0; i < n; i++)
        sum += out[i] = exp(l[i] / t - mx);
    for (int i = 0; i < n; i++)
        out[i] /= sum;
}

/* Draws n tokens; counts[] gets the histogram. */
static int draw(struct engine_sampler *s, const float *l, int nv, int n, int *counts)
{
    memset(counts, 0, (size_t)nv * sizeof(*counts));
    for (int i = 0; i < n; i++) {
        int32_t t = -1;
        if (sampler_sample(s, l, nv, &t, NULL) != 0 || t < 0 || t >= nv) return -1;
        counts[t]++;
    }
    return 0;
}

static const float L8[8] = {1.0f, 2.0f, 0.5f, -1.0f, 1.5f, 0.0f, 2.2f, -3.0f};

static void test_greedy(void)
{
    float l[5] = {0.1f, 3.0f, -2.0f, 3.0f, NAN};
    struct engine_sampler *s = make(0, 0, 1, 0, 1);
    int32_t t = -1;
    ASSERT(s);
    ASSERT_EQ(sampler_sample(s, l, 5, &t, NULL), 0);
    ASSERT_EQ(t, 1); /* ties go to the lowest id; NaN is never picked */
    sampler_free(s);
    /* a tiny temperature behaves as greedy */
    s = make(1e-3f, 0, 1, 0, 7);
    for (int i = 0; i < 200; i++) {
        ASSERT_EQ(sampler_sample(s, L8, 8, &t, NULL), 0);
        ASSERT_EQ(t, 6);
    }
    sampler_free(s);
}

static void test_temperature_matches_softmax(void)
{
    const double temps[] = {1.0, 0.5, 2.0};
    const int n = 20000;
    int counts[8];
    double p[8];
    for (size_t k = 0; k < ARRAY_LEN(temps); k++) {
        struct engine_sampler *s = make((float)temps[k], 0, 1, 0, 100 + k);
        ASSERT(s);
        ASSERT_EQ(draw(s, L8, 8, n, counts), 0);
        softmax(L8, 8, temps[k], p);
        for (int i = 0; i < 8; i++) {
            /* 5 standard deviations of a binomial proportion */
            double tol = 5 * sqrt(p[i] * (1 - p[i]) / n) + 1e-3;
            ASSERT_NEAR((double)counts[i] / n, p[i], tol);
        }
        sampler_free(s);
    }
}

static void test_top_k(void)
{
    float l[100];
    int counts[100];
    uint64_t x = 99;
    for (int i = 0; i < 100; i++) {
        x = x * 6364136223846793005ULL + 1;
        l[i] = (float)((x >> 40) % 1000) / 100.0f;
    }
    /* the 5 best, by value then id */
    float sorted[100];
    memcpy(sorted, l, sizeof(l));
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 100; j++)
            if (sorted[j] > sorted[i]) {
                float t = sorted[i];
                sorted[i] = sorted[j], sorted[j] = t;
            }
    struct engine_sampler *s = make(3.0f, 5, 1, 0, 5);
    ASSERT(s);
    ASSERT_EQ(draw(s, l, 100, 5000, counts), 0);
    int distinct = 0;
    for (int i = 0; i < 100; i++) {
        if (!counts[i]) continue;
        distinct++;
        ASSERT(l[i] >= sorted[4]);
    }
    ASSERT_CMP(distinct, >=, 4);
    ASSERT_CMP(distinct, <=, 5);
    sampler_free(s);
    /* top_k 1 is greedy whatever the temperature */
    s = make(5.0f, 1, 1, 0, 5);
    ASSERT_EQ(draw(s, L8, 8, 300, counts), 0);
    ASSERT_EQ(counts[6], 300);
    sampler_free(s);
}

static void test_top_p_and_min_p(void)
{
    double p[8];
    int counts[8];
    const int n = 20000;
    softmax(L8, 8, 1.0, p);
    /* sorted probabilities: id 6, 1, 4, 0, 2, 5, 3, 7 */
    const int order[8] = {6, 1, 4, 0, 2, 5, 3, 7};
    double acc = 0, kept = 0;
    int n_keep = 0;
    while (acc < 0.8)
        acc += p[order[n_keep++]];
    for (int i = 0; i < n_keep; i++)
        kept += p[order[i]];
    struct engine_sampler *s = make(1.0f, 0, 0.8f, 0, 11);
    ASSERT(s);
    ASSERT_EQ(draw(s, L8, 8, n, counts), 0);
    for (int r = 0; r < 8; r++) {
        int id = order[r];
        if (r >= n_keep) {
            ASSERT_EQ(counts[id], 0);
            continue;
        }
        double want = p[id] / kept;
        ASSERT_NEAR((double)counts[id] / n, want, 5 * sqrt(want * (1 - want) / n) + 1e-3);
    }
    sampler_free(s);
    /* min_p 0.3: only tokens with p >= 0.3 * p_max */
    s = make(1.0f, 0, 1, 0.3f, 12);
    ASSERT_EQ(draw(s, L8, 8, n, counts), 0);
    double pmax = p[6], mass = 0;
    for (int i = 0; i < 8; i++)
        if (p[i] >= 0.3 * pmax) mass += p[i];
    for (int i = 0; i < 8; i++) {
        if (p[i] < 0.3 * pmax) {
            ASSERT_EQ(counts[i], 0);
            continue;
        }
        double want = p[i] / mass;
        ASSERT_NEAR((double)counts[i] / n, want, 5 * sqrt(want * (1 - want) / n) + 1e-3);
    }
    sampler_free(s);
}

/* top-p over a large vocabulary (the incremental selection path). */
static void test_top_p_large_vocab(void)
{
    enum { NV = 50000 };
    static float l[NV];
    static int counts[NV];
    for (int i = 0; i < NV; i++)
        l[i] = (float)sin(i * 0.37) * 3.0f;
    struct engine_sampler *s = make(1.0f, 0, 0.5f, 0, 3);
    ASSERT(s);
    ASSERT_EQ(draw(s, l, NV, 300, counts), 0);
    /* every drawn token must be at least as likely as the nucleus boundary */
    double mx = 3.0, total = 0;
    for (int i = 0; i < NV; i++)
        total += exp(l[i] - mx);
    float minl = INFINITY;
    for (int i = 0; i < NV; i++)
        if (counts[i] && l[i] < minl) minl = l[i];
    double above = 0;
    for (int i = 0; i < NV; i++)
        if (l[i] > minl) above += exp(l[i] - mx);
    ASSERT(above < 0.5 * total); /* minl was needed to reach the mass */
    sampler_free(s);
}

static void test_seed_determinism(void)
{
    struct engine_sampler *a = make(1.0f, 0, 1, 0, 42), *b = make(1.0f, 0, 1, 0, 42);
    struct engine_sampler *c = make(1.0f, 0, 1, 0, 43);
    int32_t ta[64], tb[64], tc[64];
    int same_c = 0;
    ASSERT(a && b && c);
    for (int i = 0; i < 64; i++) {
        ASSERT_EQ(sampler_sample(a, L8, 8, &ta[i], NULL), 0);
        ASSERT_EQ(sampler_sample(b, L8, 8, &tb[i], NULL), 0);
        ASSERT_EQ(sampler_sample(c, L8, 8, &tc[i], NULL), 0);
        ASSERT_EQ(ta[i], tb[i]);
        same_c += ta[i] == tc[i];
    }
    ASSERT_CMP(same_c, <, 64);
    sampler_reset(a);
    for (int i = 0; i < 64; i++) {
        int32_t t;
        ASSERT_EQ(sampler_sample(a, L8, 8, &t, NULL), 0);
        ASSERT_EQ(t, ta[i]);
    }
    sampler_free(a);
    sampler_free(b);
    sampler_free(c);
}

static int32_t greedy_after(const float *l, int nv, float rep, float freq, float pres, int last_n,
                            const int32_t *hist, int nh)
{
    struct engine_sampling_params p;
    struct engine_sampler *s = NULL;
    int32_t t = -1;
    sampler_params_default(&p);
    p.temperature = 0, p.repeat_penalty = rep, p.frequency_penalty = freq;
    p.presence_penalty = pres, p.penalty_last_n = last_n;
    if (sampler_new(&p, &s, NULL) != 0) return -2;
    for (int i = 0; i < nh; i++)
        sampler_accept(s, hist[i]);
    if (sampler_sample(s, l, nv, &t, NULL) != 0) t = -3;
    sampler_free(s);
    return t;
}

static void test_penalties(void)
{
    const float pos[4] = {2.0f, 1.5f, 0.0f, -5.0f};
    const float neg[4] = {-1.0f, -1.2f, -4.0f, -5.0f};
    const int32_t h0[] = {0}, h00[] = {0, 0}, h000[] = {0, 0, 0}, hbad[] = {-4, 99, 1 << 30};
    const int32_t hwin[] = {0, 2, 3};
    /* repeat: positive logits are divided (2/1.2 = 1.67 stays above 1.5, 2/1.5 = 1.33 not) */
    ASSERT_EQ(greedy_after(pos, 4, 1.2f, 0, 0, 64, h0, 1), 0);
    ASSERT_EQ(greedy_after(pos, 4, 1.5f, 0, 0, 64, h0, 1), 1);
    /* ... negative ones multiplied (-1.1 > -1.2, -1.3 < -1.2) */
    ASSERT_EQ(greedy_after(neg, 4, 1.1f, 0, 0, 64, h0, 1), 0);
    ASSERT_EQ(greedy_after(neg, 4, 1.3f, 0, 0, 64, h0, 1), 1);
    /* frequency counts occurrences: 2 - 2*0.2 = 1.6, 2 - 3*0.2 = 1.4 */
    ASSERT_EQ(greedy_after(pos, 4, 1, 0.2f, 0, 64, h00, 2), 0);
    ASSERT_EQ(greedy_after(pos, 4, 1, 0.2f, 0, 64, h000, 3), 1);
    /* presence counts once: 2 - 0.4 stays, 2 - 0.6 drops, however many times */
    ASSERT_EQ(greedy_after(pos, 4, 1, 0, 0.4f, 64, h000, 3), 0);
    ASSERT_EQ(greedy_after(pos, 4, 1, 0, 0.6f, 64, h0, 1), 1);
    /* a token that left the window is no longer penalised */
    ASSERT_EQ(greedy_after(pos, 4, 2.0f, 0, 0, 2, hwin, 3), 0);
    ASSERT_EQ(greedy_after(pos, 4, 2.0f, 0, 0, 3, hwin, 3), 1);
    /* out-of-range ids in the window are ignored */
    ASSERT_EQ(greedy_after(pos, 4, 2.0f, 1, 1, 64, hbad, 3), 0);
    /* no penalty: unchanged */
    ASSERT_EQ(greedy_after(pos, 4, 1, 0, 0, 64, h000, 3), 0);
}

static void test_logprobs(void)
{
    struct engine_sampling_params p;
    struct engine_sampler *s = NULL;
    struct sampler_logprobs lp;
    double prob[8];
    int32_t t;
    sampler_params_default(&p);
    p.seed = 9, p.n_logprobs = 3, p.top_k = 0, p.top_p = 1, p.min_p = 0;
    ASSERT_EQ(sampler_new(&p, &s, NULL), 0);
    softmax(L8, 8, 1.0, prob);
    for (int k = 0; k < 20; k++) {
        ASSERT_EQ(sampler_sample(s, L8, 8, &t, &lp), 0);
        ASSERT_NEAR(lp.token_logprob, log(prob[t]), 1e-5);
        ASSERT_EQ(lp.n_top, 3);
        ASSERT_EQ(lp.top[0].token, 6);
        ASSERT_EQ(lp.top[1].token, 1);
        ASSERT_EQ(lp.top[2].token, 4);
        for (int i = 0; i < 3; i++)
            ASSERT_NEAR(lp.top[i].logprob, log(prob[lp.top[i].token]), 1e-5);
    }
    sampler_free(s);
}

static void test_bad_input(void)
{
    struct engine_sampling_params p;
    struct engine_sampler *s = (void *)1;
    struct thaw_err err = {0};
    float l[3] = {-INFINITY, NAN, -INFINITY};
    int32_t t;
    sampler_params_default(&p);
    p.temperature = NAN;
    ASSERT_EQ(sampler_new(&p, &s, &err), THAW_EINVAL);
    ASSERT(s == NULL);
    sampler_params_default(&p);
    p.top_p = 0;
    ASSERT_EQ(sampler_new(&p, &s, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "top_p");
    sampler_params_default(&p);
    p.n_logprobs = SAMPLER_MAX_LOGPROBS + 1;
    ASSERT_EQ(sampler_new(&p, &s, &err), THAW_EINVAL);
    sampler_params_default(&p);
    ASSERT_EQ(sampler_new(&p, &s, &err), 0);
    ASSERT_EQ(sampler_sample(s, l, 3, &t, NULL), THAW_EINVAL);
    ASSERT_EQ(sampler_sample(s, l, 0, &t, NULL), THAW_EINVAL);
    /* +inf is the certain winner, not a NaN in the softmax */
    float inf[3] = {1.0f, INFINITY, 2.0f};
    ASSERT_EQ(sampler_sample(s, inf, 3, &t, NULL), 0);
    ASSERT_EQ(t, 1);
    sampler_free(s);
    sampler_free(NULL);
}

/* Runs text through a stop matcher in chunks cut at the given points. */
static int run_stop(const char *const *stops, size_t ns, const char *text, const size_t *cuts,
                    size_t nc, struct buf *out)
{
    struct sampler_stop *st = NULL;
    size_t prev = 0, len = strlen(text);
    int stopped = 0;
    buf_reset(out);
    if (sampler_stop_new(stops, ns, &st) != 0) return -1;
    for (size_t i = 0; i <= nc && !stopped; i++) {
        size_t end = i < nc ? cuts[i] : len;
        stopped = sampler_stop_push(st, text + prev, end - prev, out);
        prev = end;
    }
    if (!stopped) sampler_stop_flush(st, out);
    buf_reserve(out, 1);
    sampler_stop_free(st);
    return stopped;
}

static void test_stop_strings(void)
{
    const char *stops[] = {"</s>", "\nUser:", ""};
    const char *text = "Hello <b>\nUse it</s>tail\nUser: x";
    struct buf out = {0};
    size_t len = strlen(text);
    /* every cut into up to three chunks gives the same answer */
    for (size_t a = 0; a <= len; a++) {
        for (size_t b = a; b <= len; b++) {
            size_t cuts[2] = {a, b};
            ASSERT_EQ(run_stop(stops, 3, text, cuts, 2, &out), 1);
            ASSERT_STR_EQ(out.data, "Hello <b>\nUse it");
        }
    }
    /* held-back text comes out when it turns out not to be a stop */
    struct sampler_stop *st = NULL;
    ASSERT_EQ(sampler_stop_new(stops, 3, &st), 0);
    buf_reset(&out);
    ASSERT_EQ(sampler_stop_push(st, "ab</", 4, &out), 0);
    ASSERT_EQ(out.len, 2);
    ASSERT_EQ(sampler_stop_push(st, "x", 1, &out), 0);
    ASSERT_STR_EQ(out.data, "ab</x");
    ASSERT_EQ(sampler_stop_push(st, "\nUs", 3, &out), 0);
    ASSERT_STR_EQ(out.data, "ab</x");
    ASSERT_EQ(sampler_stop_flush(st, &out), 0);
    ASSERT_STR_EQ(out.data, "ab</x\nUs");
    sampler_stop_free(st);
    /* no stop strings: everything passes straight through */
    size_t cuts[1] = {3};
    ASSERT_EQ(run_stop(NULL, 0, "abc</s>", cuts, 1, &out), 0);
    ASSERT_STR_EQ(out.data, "abc</s>");
    buf_free(&out);
}

int main(void)
{
    RUN(test_greedy);
    RUN(test_temperature_matches_softmax);
    RUN(test_top_k);
    RUN(test_top_p_and_min_p);
    RUN(test_top_p_large_vocab);
    RUN(test_seed_determinism);
    RUN(test_penalties);
    RUN(test_logprobs);
    RUN(test_bad_input);
    RUN(test_stop_strings);
    return TEST_REPORT();
}
