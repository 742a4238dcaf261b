/* The engine against the naive double-precision reference on generated
 * models of every weight type and architecture variant, plus thread-count
 * independence, batched vs one-by-one decoding, context limits, refusals
 * and embeddings. Tolerances (relative RMS of the logit error):
 *   F32 1e-5, F16/BF16 1e-4 (f32 activations against the same rounded
 *   weights), types whose kernels quantise activations to 8 bits 3e-2. */
#include "engine/engine.h"
#include "support_reference.h"
#include "test.h"

#include <math.h>
#include <unistd.h>

static const enum ggml_type all_types[] = {
    GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0,
    GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K,
};

static const int32_t prompt[] = {1, 300, 17, 400, 260, 511, 3, 299, 42, 350, 270, 5};
#define N_PROMPT ((int)ARRAY_LEN(prompt))

static char path_buf[256];
static const char *gen(const char *preset, enum ggml_type t, uint64_t seed)
{
    struct engine_gen_params p;
    struct thaw_err err = {0};
    if (engine_gen_preset(preset, &p, &err)) return NULL;
    p.type = t;
    p.seed = seed;
    snprintf(path_buf, sizeof path_buf, "/tmp/thaw_test_model_%d_%s_%s.gguf", (int)getpid(), preset,
             ggml_type_name(t));
    if (engine_gen_write(&p, path_buf, NULL, &err)) {
        fprintf(stderr, "gen: %s\n", err.msg);
        return NULL;
    }
    return path_buf;
}

static double tolerance(enum ggml_type t)
{
    if (t == GGML_TYPE_F32) return 1e-5;
    if (t == GGML_TYPE_F16 || t == GGML_TYPE_BF16) return 1e-4;
    return 3e-2;
}

/* Relative RMS error of n_vocab engine logits against the reference. */
static double rel_err(const float *e, const double *r, int n)
{
    double se = 0, sr = 0;
    for (int i = 0; i < n; i++) {
        se += (e[i] - r[i]) * (e[i] - r[i]);
        sr += r[i] * r[i];
    }
    return sqrt(se / (sr + 1e-30));
}

static int argmax_f(const float *v, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

static int argmax_d(const double *v, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

static bool fx_kv_f16; /* contexts of the fixture keep an f16 KV cache */

struct fixture {
    struct engine_model *m;
    struct engine_ctx *c;
};

static int open_fx(struct fixture *f, const char *path, int threads, int n_seq, int n_outputs)
{
    struct thaw_err err = {0};
    f->m = NULL;
    f->c = NULL;
    if (engine_model_load(path, &f->m, &err)) {
        fprintf(stderr, "load: %s\n", err.msg);
        return -1;
    }
    struct engine_ctx_params cp = {.n_ctx = 64,
                                   .n_seq_max = n_seq,
                                   .n_batch = 32,
                                   .n_outputs = n_outputs,
                                   .n_threads = threads,
                                   .kv_f16 = fx_kv_f16,
                                   .threads_fixed = true};
    if (engine_ctx_new(f->m, &cp, &f->c, &err)) {
        fprintf(stderr, "ctx: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static void close_fx(struct fixture *f)
{
    engine_ctx_free(f->c);
    engine_model_free(f->m);
}

/* Prompt logits at every position, engine vs reference. */
static double compare_prompt(const char *path, int threads)
{
    struct fixture f;
    struct ref_model *r = ref_load(path);
    if (!r || open_fx(&f, path, threads, 1, N_PROMPT)) return 1e9;
    int nv = ref_n_vocab(r);
    double *rl = malloc(sizeof(double) * nv * N_PROMPT);
    ref_forward(r, prompt, N_PROMPT, rl, NULL);
    struct engine_batch_entry b[N_PROMPT];
    for (int i = 0; i < N_PROMPT; i++)
        b[i] = (struct engine_batch_entry){0, prompt[i], i, true};
    struct thaw_err err = {0};
    double worst = 1e9;
    if (!engine_forward(f.c, b, N_PROMPT, &err)) {
        worst = 0;
        for (int i = 0; i < N_PROMPT; i++)
            worst = fmax(worst, rel_err(engine_logits(f.c, i), rl + (size_t)i * nv, nv));
    } else {
        fprintf(stderr, "forward: %s\n", err.msg);
    }
    free(rl);
    ref_free(r);
    close_fx(&f);
    return worst;
}

static void test_every_type_vs_reference(void)
{
    for (size_t k = 0; k < ARRAY_LEN(all_types); k++) {
        const char *path = gen("tiny", all_types[k], 7);
        ASSERT(path);
        double e = compare_prompt(path, 2);
        unlink(path);
        fprintf(stderr, "  tiny %-5s rel err %.3g (tol %g)\n", ggml_type_name(all_types[k]), e,
                tolerance(all_types[k]));
        ASSERT(e <= tolerance(all_types[k]));
    }
}

static void test_architectures_vs_reference(void)
{
    const char *presets[] = {"tiny-gqa", "tiny-qwen2"};
    const enum ggml_type types[] = {GGML_TYPE_F32, GGML_TYPE_Q8_0, GGML_TYPE_Q4_K};
    for (size_t p = 0; p < ARRAY_LEN(presets); p++)
        for (size_t k = 0; k < ARRAY_LEN(types); k++) {
            const char *path = gen(presets[p], types[k], 11);
            ASSERT(path);
            double e = compare_prompt(path, 1);
            unlink(path);
            fprintf(stderr, "  %-10s %-5s rel err %.3g\n", presets[p], ggml_type_name(types[k]), e);
            ASSERT(e <= tolerance(types[k]));
        }
}

/* Linear RoPE scaling and Llama 3 style frequency factors. */
static void test_rope_scaling_vs_reference(void)
{
    for (int k = 0; k < 2; k++) {
        struct engine_gen_params p;
        struct thaw_err err = {0};
        ASSERT_EQ(engine_gen_preset(k ? "tiny-qwen2" : "tiny", &p, &err), 0);
        p.type = GGML_TYPE_F32;
        p.rope_scale = 4.0f;
        p.rope_freq_factors = k == 0;
        p.rope_base = 500000.0f;
        char path[96]; /* per process: test runs of other checkouts share /tmp */
        snprintf(path, sizeof path, "/tmp/thaw_test_model_%d_rope.gguf", (int)getpid());
        ASSERT_EQ(engine_gen_write(&p, path, NULL, &err), 0);
        struct engine_model *m;
        ASSERT_EQ(engine_model_load(path, &m, &err), 0);
        ASSERT_NEAR(engine_model_info(m)->rope_freq_scale, 0.25, 1e-7);
        ASSERT_EQ(engine_model_info(m)->rope_freq_factors, k == 0);
        engine_model_free(m);
        double e = compare_prompt(path, 2);
        unlink(path);
        fprintf(stderr, "  rope scaling%s: rel err %.3g\n", k ? "" : " + freq factors", e);
        ASSERT(e <= 1e-5);
    }
}

/* Greedy decoding: the engine's tokens equal the reference's. */
static void greedy_matches(const char *path, int steps)
{
    struct fixture f;
    struct ref_model *r = ref_load(path);
    ASSERT(r);
    ASSERT_EQ(open_fx(&f, path, 2, 1, 1), 0);
    int nv = ref_n_vocab(r);
    int32_t toks[64];
    memcpy(toks, prompt, sizeof prompt);
    int n = N_PROMPT;
    struct thaw_err err = {0};
    ASSERT_EQ(engine_feed(f.c, 0, toks, n, &err), 0);
    double *rl = malloc(sizeof(double) * nv * (N_PROMPT + steps));
    int mismatch = -1;
    for (int s = 0; s < steps; s++) {
        int te = argmax_f(engine_logits(f.c, 0), nv);
        ref_forward(r, toks, n, rl, NULL);
        int tr = argmax_d(rl + (size_t)(n - 1) * nv, nv);
        if (te != tr && mismatch < 0) mismatch = s;
        toks[n++] = tr;
        if (engine_feed(f.c, 0, &toks[n - 1], 1, &err)) break;
    }
    free(rl);
    ref_free(r);
    close_fx(&f);
    ASSERT_EQ(mismatch, -1);
}

static void test_greedy_f32_f16(void)
{
    const char *presets[] = {"tiny", "tiny-qwen2"};
    for (int p = 0; p < 2; p++)
        for (int t = 0; t < 2; t++) {
            const char *path = gen(presets[p], t ? GGML_TYPE_F16 : GGML_TYPE_F32, 3);
            ASSERT(path);
            char copy[256];
            str_copy(copy, path, sizeof copy);
            greedy_matches(copy, 12);
            unlink(copy);
            if (test_cur_failed_) return;
        }
}

/* Logits of a prompt and 4 decode steps with a given thread count. */
static float *run_threads(const char *path, int threads, int *nv)
{
    struct fixture f;
    if (open_fx(&f, path, threads, 1, 1)) return NULL;
    *nv = engine_model_info(f.m)->n_vocab;
    float *out = malloc(sizeof(float) * *nv * 5);
    struct thaw_err err = {0};
    /* 56 tokens in batches of 32: long enough that attention is split too */
    int32_t longp[56];
    for (int i = 0; i < 56; i++)
        longp[i] = 259 + (i * 37) % 253;
    int rc = engine_feed(f.c, 0, longp, 56, &err);
    for (int s = 0; s < 5 && !rc; s++) {
        memcpy(out + (size_t)s * *nv, engine_logits(f.c, 0), sizeof(float) * *nv);
        int32_t t = argmax_f(engine_logits(f.c, 0), *nv);
        if (s < 4) rc = engine_feed(f.c, 0, &t, 1, &err);
    }
    close_fx(&f);
    if (rc) {
        free(out);
        return NULL;
    }
    return out;
}

/* The logits of a model file with 1, 2 and 3 threads, unpacked, and with C
 * attention: the same bits. */
static void check_bit_identical(const char *path, const char *name)
{
    ASSERT(path);
    int nv;
    float *a = run_threads(path, 1, &nv), *b = run_threads(path, 2, &nv);
    float *c = run_threads(path, 3, &nv);
    /* the weights left unpacked (engine_model_load): the same logits */
    setenv("THAW_ENGINE_PACK", "0", 1);
    float *d = run_threads(path, 2, &nv);
    unsetenv("THAW_ENGINE_PACK");
    /* attention row by row in C instead of a head at a time in vectors
     * (x86 with AVX2; elsewhere both runs are the C): the same logits */
    setenv("THAW_ENGINE_ATTN_SIMD", "0", 1);
    float *e = run_threads(path, 2, &nv);
    unsetenv("THAW_ENGINE_ATTN_SIMD");
    unlink(path);
    ASSERT(a && b && c && d && e);
    int same2 = !memcmp(a, b, sizeof(float) * nv * 5);
    int same3 = !memcmp(a, c, sizeof(float) * nv * 5);
    int samep = !memcmp(a, d, sizeof(float) * nv * 5);
    int samea = !memcmp(a, e, sizeof(float) * nv * 5);
    if (!same2 || !same3 || !samep || !samea)
        fprintf(stderr, "  %s: 1 vs 2 threads %s, 1 vs 3 threads %s, unpacked %s, C attention %s\n",
                name, same2 ? "same" : "DIFFER", same3 ? "same" : "DIFFER",
                samep ? "same" : "DIFFER", samea ? "same" : "DIFFER");
    free(a), free(b), free(c), free(d), free(e);
    ASSERT(same2 && same3 && samep && samea);
}

static void test_threads_bit_identical(void)
{
    const enum ggml_type types[] = {GGML_TYPE_F32,  GGML_TYPE_Q8_0, GGML_TYPE_Q4_K,
                                    GGML_TYPE_Q6_K, GGML_TYPE_Q5_0, GGML_TYPE_Q4_0};
    for (size_t k = 0; k < ARRAY_LEN(types) && !test_cur_failed_; k++)
        check_bit_identical(gen("tiny-gqa", types[k], 5), ggml_type_name(types[k]));
    if (test_cur_failed_) return;
    /* llama.cpp's Q4_K_M mixture 96 wide: Q5_0, Q8_0 (attn_v of layer 1, the
     * tied embedding), Q6_K and Q4_K (ffn_down) */
    struct engine_gen_params p;
    struct thaw_err err = {0};
    ASSERT_EQ(engine_gen_preset("tiny-gqa", &p, &err), 0);
    p.q4_k_m = true;
    p.n_embd = 96, p.n_head = 3, p.n_head_kv = 1, p.seed = 6;
    snprintf(path_buf, sizeof path_buf, "/tmp/thaw_test_model_%d_q4km.gguf", (int)getpid());
    ASSERT_EQ(engine_gen_write(&p, path_buf, NULL, &err), 0);
    check_bit_identical(path_buf, "Q4_K_M");
}

/* An f16 KV cache: close to the reference (K and V rounded to f16),
 * greedy tokens unchanged on F32 weights, still independent of threads. */
static void test_kv_f16(void)
{
    fx_kv_f16 = true;
    const char *path = gen("tiny-gqa", GGML_TYPE_F32, 21);
    char p[256];
    str_copy(p, path ? path : "", sizeof p);
    double e = path ? compare_prompt(p, 2) : 1e9;
    fprintf(stderr, "  f16 KV, F32 weights: rel err %.3g (tol 2e-3)\n", e);
    int nv = 0;
    float *a = run_threads(p, 1, &nv), *b = run_threads(p, 2, &nv);
    int same = a && b && !memcmp(a, b, sizeof(float) * nv * 5);
    free(a), free(b);
    greedy_matches(p, 8);
    unlink(p);
    fx_kv_f16 = false;
    ASSERT(e <= 2e-3);
    ASSERT(same);
}

/* Three sequences decoded together (with one joining late and one leaving)
 * give the logits each gets alone. */
static void test_batched_equals_sequential(void)
{
    const char *path = gen("tiny-qwen2", GGML_TYPE_Q8_0, 9);
    ASSERT(path);
    char p[256];
    str_copy(p, path, sizeof p);
    struct fixture f;
    ASSERT_EQ(open_fx(&f, p, 2, 3, 3), 0);
    int nv = engine_model_info(f.m)->n_vocab;
    const int32_t starts[3][4] = {{1, 300, 301, 302}, {1, 400, 20}, {1, 260, 270, 280}};
    const int lens[3] = {4, 3, 4};
    float *solo = malloc(sizeof(float) * nv * 3 * 4);
    int32_t next[3][4];
    struct thaw_err err = {0};
    /* alone, one by one */
    for (int s = 0; s < 3; s++) {
        engine_seq_clear(f.c, 0);
        ASSERT_EQ(engine_feed(f.c, 0, starts[s], lens[s], &err), 0);
        for (int step = 0; step < 4; step++) {
            const float *l = engine_logits(f.c, 0);
            memcpy(solo + ((size_t)s * 4 + step) * nv, l, sizeof(float) * nv);
            next[s][step] = argmax_f(l, nv);
            ASSERT_EQ(engine_feed(f.c, 0, &next[s][step], 1, &err), 0);
        }
    }
    /* together: prompts of 0 and 1 in one batch, seq 2 joins a step later,
     * seq 1 leaves after 3 steps */
    engine_seq_clear(f.c, 0);
    struct engine_batch_entry b[16];
    int n = 0;
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < lens[s]; i++)
            b[n++] = (struct engine_batch_entry){s, starts[s][i], i, i == lens[s] - 1};
    ASSERT_EQ(engine_forward(f.c, b, n, &err), 0);
    int step[3] = {0, 0, 0};
    double worst = 0;
    for (int s = 0; s < 2; s++) {
        const float *l = engine_logits(f.c, s);
        for (int i = 0; i < nv; i++)
            worst = fmax(worst, fabs(l[i] - solo[((size_t)s * 4) * nv + i]));
        step[s] = 1;
    }
    /* seq 2's prompt plus one decode step each for 0 and 1 */
    n = 0;
    b[n++] = (struct engine_batch_entry){0, next[0][0], lens[0], true};
    for (int i = 0; i < lens[2]; i++)
        b[n++] = (struct engine_batch_entry){2, starts[2][i], i, i == lens[2] - 1};
    b[n++] = (struct engine_batch_entry){1, next[1][0], lens[1], true};
    ASSERT_EQ(engine_forward(f.c, b, n, &err), 0);
    int order[3] = {0, 2, 1};
    for (int j = 0; j < 3; j++) {
        int s = order[j];
        const float *l = engine_logits(f.c, j);
        for (int i = 0; i < nv; i++)
            worst = fmax(worst, fabs(l[i] - solo[((size_t)s * 4 + step[s]) * nv + i]));
        step[s]++;
    }
    /* two more steps with all three, then seq 1 leaves */
    for (int round = 0; round < 2; round++) {
        n = 0;
        int who[3], nw = 0;
        for (int s = 0; s < 3; s++) {
            if (s == 1 && round == 1) continue;
            int pos = lens[s] + step[s] - 1;
            b[n++] = (struct engine_batch_entry){s, next[s][step[s] - 1], pos, true};
            who[nw++] = s;
        }
        ASSERT_EQ(engine_forward(f.c, b, n, &err), 0);
        for (int j = 0; j < nw; j++) {
            int s = who[j];
            const float *l = engine_logits(f.c, j);
            for (int i = 0; i < nv; i++)
                worst = fmax(worst, fabs(l[i] - solo[((size_t)s * 4 + step[s]) * nv + i]));
            step[s]++;
        }
    }
    fprintf(stderr, "  batched vs alone: max |diff| %.3g\n", worst);
    free(solo);
    close_fx(&f);
    unlink(p);
    ASSERT(worst <= 1e-4);
}

static void test_limits_and_errors(void)
{
    const char *path = gen("tiny", GGML_TYPE_Q8_0, 2);
    ASSERT(path);
    char p[256];
    str_copy(p, path, sizeof p);
    struct fixture f;
    ASSERT_EQ(open_fx(&f, p, 1, 2, 2), 0);
    struct thaw_err err = {0};
    int32_t many[65];
    for (int i = 0; i < 65; i++)
        many[i] = 300 + i;
    /* a prompt longer than the context is refused with nothing changed */
    ASSERT_EQ(engine_feed(f.c, 0, many, 65, &err), THAW_ERANGE);
    ASSERT_CONTAINS(err.msg, "n_ctx 64");
    ASSERT_EQ(engine_seq_len(f.c, 0), 0);
    ASSERT_EQ(engine_feed(f.c, 0, many, 64, &err), 0);
    ASSERT_EQ(engine_seq_len(f.c, 0), 64);
    struct engine_batch_entry b = {0, 5, 64, true};
    ASSERT_EQ(engine_forward(f.c, &b, 1, &err), THAW_ERANGE);
    ASSERT_CONTAINS(err.msg, "context full");
    b = (struct engine_batch_entry){2, 5, 0, true};
    ASSERT_EQ(engine_forward(f.c, &b, 1, &err), THAW_EINVAL);
    b = (struct engine_batch_entry){1, 512, 0, true};
    ASSERT_EQ(engine_forward(f.c, &b, 1, &err), THAW_EINVAL);
    b = (struct engine_batch_entry){1, 5, 3, true}; /* gap: seq 1 is empty */
    ASSERT_EQ(engine_forward(f.c, &b, 1, &err), THAW_EINVAL);
    ASSERT_EQ(engine_seq_len(f.c, 1), 0);
    /* rewinding to position 10 and refeeding gives the same logits */
    ASSERT_EQ(engine_feed(f.c, 1, many, 11, &err), 0);
    int nv = engine_model_info(f.m)->n_vocab;
    float *want = malloc(sizeof(float) * nv);
    memcpy(want, engine_logits(f.c, 0), sizeof(float) * nv);
    b = (struct engine_batch_entry){1, many[10], 10, true};
    ASSERT_EQ(engine_forward(f.c, &b, 1, &err), 0);
    ASSERT_EQ(engine_seq_len(f.c, 1), 11);
    int same = !memcmp(want, engine_logits(f.c, 0), sizeof(float) * nv);
    free(want);
    ASSERT(same);
    ASSERT(engine_logits(f.c, 1) == NULL);
    close_fx(&f);
    unlink(p);
}

/* Files that must be refused, with the reason named. */
static void test_refusals(void)
{
    char path[96]; /* per process: test runs of other checkouts share /tmp */
    snprintf(path, sizeof path, "/tmp/thaw_test_model_%d_refuse.gguf", (int)getpid());
    struct thaw_err err = {0};
    struct engine_model *m = NULL;
    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "gpt2");
    ASSERT_EQ(gguf_writer_write(w, path, &err), 0);
    gguf_writer_free(w);
    ASSERT_EQ(engine_model_load(path, &m, &err), THAW_EUNSUPPORTED);
    ASSERT_CONTAINS(err.msg, "'gpt2'");
    /* a llama with a missing tensor and one with a wrong shape */
    w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u32(w, "llama.embedding_length", 32);
    gguf_writer_set_u32(w, "llama.block_count", 1);
    gguf_writer_set_u32(w, "llama.attention.head_count", 2);
    gguf_writer_set_u32(w, "llama.feed_forward_length", 64);
    float z[32 * 300] = {0};
    uint64_t ne[2] = {32, 300};
    gguf_writer_add_tensor(w, "token_embd.weight", GGML_TYPE_F32, 2, ne, z);
    uint64_t ne1[1] = {32};
    gguf_writer_add_tensor(w, "output_norm.weight", GGML_TYPE_F32, 1, ne1, z);
    ASSERT_EQ(gguf_writer_write(w, path, &err), 0);
    ASSERT_EQ(engine_model_load(path, &m, &err), THAW_EFORMAT);
    ASSERT_CONTAINS(err.msg, "blk.0.attn_norm.weight");
    uint64_t bad[1] = {16};
    gguf_writer_add_tensor(w, "blk.0.attn_norm.weight", GGML_TYPE_F32, 1, bad, z);
    ASSERT_EQ(gguf_writer_write(w, path, &err), 0);
    ASSERT_EQ(engine_model_load(path, &m, &err), THAW_EFORMAT);
    ASSERT_CONTAINS(err.msg, "blk.0.attn_norm.weight");
    ASSERT_CONTAINS(err.msg, "shape");
    gguf_writer_free(w);
    /* heads that do not divide */
    w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u32(w, "llama.embedding_length", 32);
    gguf_writer_set_u32(w, "llama.block_count", 1);
    gguf_writer_set_u32(w, "llama.attention.head_count", 4);
    gguf_writer_set_u32(w, "llama.attention.head_count_kv", 3);
    gguf_writer_set_u32(w, "llama.feed_forward_length", 64);
    ASSERT_EQ(gguf_writer_write(w, path, &err), 0);
    gguf_writer_free(w);
    ASSERT_CMP(engine_model_load(path, &m, &err), <, 0);
    ASSERT_CONTAINS(err.msg, "head_count");
    ASSERT(m == NULL);
    unlink(path);
}

static void test_embeddings(void)
{
    const enum engine_pooling pools[] = {ENGINE_POOL_MEAN, ENGINE_POOL_CLS, ENGINE_POOL_LAST};
    for (int k = 0; k < 3; k++) {
        struct engine_gen_params p;
        struct thaw_err err = {0};
        ASSERT_EQ(engine_gen_preset("tiny-gqa", &p, &err), 0);
        p.type = GGML_TYPE_F32;
        p.pooling = pools[k];
        char path[96]; /* per process: test runs of other checkouts share /tmp */
        snprintf(path, sizeof path, "/tmp/thaw_test_model_%d_embed.gguf", (int)getpid());
        ASSERT_EQ(engine_gen_write(&p, path, NULL, &err), 0);
        struct engine_model *m;
        ASSERT_EQ(engine_model_load(path, &m, &err), 0);
        ASSERT_EQ(engine_model_info(m)->pooling, pools[k]);
        struct engine_ctx *c;
        struct engine_ctx_params cp = {.n_ctx = 64, .n_batch = 5, .embeddings = true};
        ASSERT_EQ(engine_ctx_new(m, &cp, &c, &err), 0);
        int d = engine_model_info(m)->n_embd;
        float *e = malloc(sizeof(float) * d);
        ASSERT_EQ(engine_embed(c, 0, prompt, N_PROMPT, e, &err), 0); /* 3 chunks of 5 */
        struct ref_model *r = ref_load(path);
        double *h = malloc(sizeof(double) * d * N_PROMPT), *want = calloc(d, sizeof(double));
        ref_forward(r, prompt, N_PROMPT, NULL, h);
        for (int t = 0; t < N_PROMPT; t++) {
            bool take = pools[k] == ENGINE_POOL_MEAN || (pools[k] == ENGINE_POOL_CLS && t == 0) ||
                        (pools[k] == ENGINE_POOL_LAST && t == N_PROMPT - 1);
            for (int i = 0; take && i < d; i++)
                want[i] += h[(size_t)t * d + i] / (pools[k] == ENGINE_POOL_MEAN ? N_PROMPT : 1);
        }
        double ss = 0, norm = 0, maxd = 0;
        for (int i = 0; i < d; i++)
            ss += want[i] * want[i];
        for (int i = 0; i < d; i++) {
            norm += (double)e[i] * e[i];
            maxd = fmax(maxd, fabs(e[i] - want[i] / sqrt(ss)));
        }
        free(e), free(h), free(want);
        ref_free(r);
        engine_ctx_free(c);
        engine_model_free(m);
        unlink(path);
        ASSERT_NEAR(norm, 1.0, 1e-5);
        ASSERT(maxd < 1e-5);
    }
}

/* Finds ../shared/models/NAME beside the source tree; 0 or -1 (skip). */
static int shared_model(const char *name, char *out, size_t n)
{
    const char *src = getenv("THAW_SOURCE_DIR");
    const char *dirs[] = {"../shared/models", "../../shared/models", "../../../shared/models"};
    snprintf(out, n, "%s/../shared/models/%s", src ? src : ".", name);
    for (size_t i = 0; i < ARRAY_LEN(dirs) && access(out, R_OK); i++)
        snprintf(out, n, "%s/%s", dirs[i], name);
    if (!access(out, R_OK)) return 0;
    fprintf(stderr, "  SKIP: %s not found (looked in $THAW_SOURCE_DIR/../shared/models)\n", name);
    return -1;
}

/* stories260K: a real trained llama model, engine vs reference. */
static void test_stories260k(void)
{
    char path[1024];
    if (shared_model("stories260K.gguf", path, sizeof path)) return;
    double e = compare_prompt(path, 1);
    fprintf(stderr, "  stories260K rel err %.3g\n", e);
    ASSERT(e <= 1e-5);
    greedy_matches(path, 20);
}

/* stories260K through the tokenizer: greedy decoding of "Once upon a time"
 * tells a story (the model's well-known first sentence mentions Lily). */
static void test_stories260k_text(void)
{
    char path[1024];
    if (shared_model("stories260K.gguf", path, sizeof path)) return;
    struct engine_model *m;
    struct engine_tokenizer *tok;
    struct thaw_err err = {0};
    ASSERT_EQ(engine_model_load(path, &m, &err), 0);
    ASSERT_EQ(tokenizer_from_gguf(engine_model_gguf(m), &tok, &err), 0);
    int32_t *ids;
    size_t n;
    const char *text = "Once upon a time";
    ASSERT_EQ(tokenizer_encode(tok, text, strlen(text), true, false, &ids, &n, &err), 0);
    struct engine_ctx *c;
    struct engine_ctx_params cp = {.n_ctx = 128, .n_threads = 2};
    ASSERT_EQ(engine_ctx_new(m, &cp, &c, &err), 0);
    ASSERT_EQ(engine_feed(c, 0, ids, (int32_t)n, &err), 0);
    int32_t out[40];
    int k = 0;
    for (; k < 40; k++) {
        out[k] = argmax_f(engine_logits(c, 0), engine_model_info(m)->n_vocab);
        if (tokenizer_is_eog(tok, out[k]) || engine_feed(c, 0, &out[k], 1, &err)) break;
    }
    struct buf s = {0};
    ASSERT_EQ(tokenizer_decode(tok, out, k, 0, &s, &err), 0);
    fprintf(stderr, "  Once upon a time|%s\n", s.data);
    bool lily = s.data && strstr(s.data, "Lily");
    buf_free(&s);
    free(ids);
    engine_ctx_free(c);
    tokenizer_free(tok);
    engine_model_free(m);
    ASSERT_EQ(k, 40);
    ASSERT(lily);
}

int main(void)
{
    RUN(test_every_type_vs_reference);
    RUN(test_architectures_vs_reference);
    RUN(test_rope_scaling_vs_reference);
    RUN(test_greedy_f32_f16);
    RUN(test_threads_bit_identical);
    RUN(test_batched_equals_sequential);
    RUN(test_kv_f16);
    RUN(test_limits_and_errors);
    RUN(test_refusals);
    RUN(test_embeddings);
    RUN(test_stories260k);
    RUN(test_stories260k_text);
    return TEST_REPORT();
}
