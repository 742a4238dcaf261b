/* Contexts and the forward pass: RMSNorm, RoPE, grouped-query attention over
 * a per-sequence KV cache, SwiGLU, for a batch of tokens of several
 * sequences. Every buffer is allocated when the context is created; the
 * pass allocates nothing. Work is split over the pool by fixed blocks of
 * output rows, tokens or (token, head) pairs, never by splitting a sum, so
 * results do not depend on the number of threads. */
#include "engine/engine_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SLOTS 3

enum pre_kind {
    PRE_NONE,       /* prepare src as is */
    PRE_RESID_NORM, /* x += tmp (when resid), xb = norm(x) * w, prepare xb */
    PRE_SILU,       /* hb = silu(hb) * hb2, prepare hb */
};

struct mm_item {
    const struct eng_mat *w;
    int slot;
    float *y;
    int y_stride;
};

struct engine_ctx {
    struct engine_model *m;
    const struct engine_model_info *hp;
    int32_t n_ctx, n_seq, n_batch, n_outputs;
    bool embeddings;
    struct tpool *pool;
    int32_t q_dim, kv_dim;
    void *kc, *vc; /* [layer][seq][n_ctx][kv_dim] of f32, or f16 when kv_f16 */
    bool kv_f16;
    float (*kdot)(const float *q, const void *k, int n);
    void (*vacc)(float *out, float p, const void *v, int n);
    /* a head's whole pass over its positions, the same floats as kdot and
     * vacc row by row (NULL: row by row) */
    void (*kdots)(const float *q, const char *k, size_t row, int n_pos, int n, float *scores);
    void (*vaccs)(float *out, const float *p, const char *v, size_t row, int n_pos, int n);
    int32_t *seq_len, *seq_next;

    /* the batch being run */
    int32_t n_tok, n_out;
    int32_t *tok_seq, *tok_pos, *out_rows;
    float *x, *xb, *q, *k, *v, *att, *tmp, *hb, *hb2, *xo;
    float *rope_cs; /* [n_batch][n_rot/2][2] */
    float *scores;  /* [thread][n_ctx] */
    float *hidden;  /* [n_batch][n_embd] when embeddings */
    float *logits;  /* [n_outputs][n_vocab] */
    int32_t n_logits_valid;
    size_t bytes, kv_bytes;          /* allocated in all, and of them the KV cache */
    struct engine_batch_entry *feed; /* n_batch, for engine_feed / engine_embed */
    double *pool_acc;                /* n_embd, for engine_embed */
    uint8_t *prep[MAX_SLOTS];
    size_t prep_cap; /* bytes of each prep buffer */

    /* the current parallel step */
    void (*op)(struct engine_ctx *c, int part, int n_parts, int thread);
    int n_threads;
    int layer;
    enum pre_kind pre;
    bool resid;
    const float *norm_w;
    const float *pre_src;
    int pre_cols, pre_rows;
    int n_slots;
    enum ggml_type slot_type[MAX_SLOTS];
    struct mm_item items[3];
    int n_items;
};

/* ---- helpers --------------------------------------------------------- */

static void split(int n, int ith, int nth, int *a, int *b)
{
    *a = (int)((int64_t)n * ith / nth);
    *b = (int)((int64_t)n * (ith + 1) / nth);
}

static void rmsnorm(float *out, const float *x, const float *w, int n, float eps)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float s = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++)
        out[i] = x[i] * s * w[i];
}

static size_t prep_stride(enum ggml_type t, int n_cols)
{
    return kern_input_bytes(t, 1, n_cols);
}

static void trampoline(void *arg, int part, int n_parts, int thread)
{
    struct engine_ctx *c = arg;
    c->op(c, part, n_parts, thread);
}

/* Runs op in parts over the pool: about `per_thread` parts per thread
 * (more than one lets a thread that starts late take fewer), at most
 * max_parts. */
static void run(struct engine_ctx *c, void (*op)(struct engine_ctx *, int, int, int), int max_parts,
                int per_thread)
{
    int n = c->n_threads == 1 ? 1 : MIN(max_parts, c->n_threads * per_thread);
    c->op = op;
    tpool_run(c->pool, trampoline, c, MAX(n, 1));
}

/* Assigns each item a prepared-input slot, one per distinct weight type. */
static void set_items(struct engine_ctx *c, int n, const struct eng_mat *const *w, float *const *y,
                      const int *y_stride)
{
    c->n_slots = 0;
    c->n_items = n;
    for (int i = 0; i < n; i++) {
        int s = 0;
        while (s < c->n_slots && c->slot_type[s] != w[i]->type)
            s++;
        if (s == c->n_slots) c->slot_type[c->n_slots++] = w[i]->type;
        c->items[i] = (struct mm_item){w[i], s, y[i], y_stride[i]};
    }
}

/* ---- parallel steps ------------------------------------------------- */

static void prep_row(struct engine_ctx *c, const float *src, int row)
{
    for (int s = 0; s < c->n_slots; s++) {
        size_t st = prep_stride(c->slot_type[s], c->pre_cols);
        kern_input_prepare(c->slot_type[s], src, 1, c->pre_cols, c->prep[s] + row * st);
    }
}

static void op_prep(struct engine_ctx *c, int ith, int nth, int thread)
{
    int a, b;
    int d = c->hp->n_embd, ff = c->hp->n_ff;
    split(c->pre_rows, ith, nth, &a, &b);
    for (int t = a; t < b; t++) {
        const float *src = c->pre_src + (size_t)t * c->pre_cols;
        if (c->pre == PRE_RESID_NORM) {
            float *x = c->x + (size_t)t * d, *xb = c->xb + (size_t)t * d;
            if (c->resid)
                for (int i = 0; i < d; i++)
                    x[i] += c->tmp[(size_t)t * d + i];
            rmsnorm(xb, x, c->norm_w, d, c->hp->rms_eps);
            src = xb;
        } else if (c->pre == PRE_SILU) {
            float *h = c->hb + (size_t)t * ff, *u = c->hb2 + (size_t)t * ff;
            for (int i = 0; i < ff; i++)
                h[i] = h[i] / (1.0f + expf(-h[i])) * u[i];
            src = h;
        }
        prep_row(c, src, t);
    }
}

/* Residual of the last layer, then the final norm for hidden states and for
 * the rows that want logits. */
static void op_final(struct engine_ctx *c, int ith, int nth, int thread)
{
    int a, b, d = c->hp->n_embd;
    split(c->n_tok, ith, nth, &a, &b);
    for (int t = a; t < b; t++) {
        float *x = c->x + (size_t)t * d;
        for (int i = 0; i < d; i++)
            x[i] += c->tmp[(size_t)t * d + i];
        if (c->embeddings)
            rmsnorm(c->hidden + (size_t)t * d, x, c->m->output_norm, d, c->hp->rms_eps);
    }
}

static void op_out_prep(struct engine_ctx *c, int ith, int nth, int thread)
{
    int a, b, d = c->hp->n_embd;
    split(c->n_out, ith, nth, &a, &b);
    for (int j = a; j < b; j++) {
        float *xo = c->xo + (size_t)j * d;
        rmsnorm(xo, c->x + (size_t)c->out_rows[j] * d, c->m->output_norm, d, c->hp->rms_eps);
        prep_row(c, xo, j);
    }
}

/* Rows per matmul part. Parts depend only on the matrix and the number of
 * tokens, never on the thread count: a kernel (or sgemm) may round a row
 * differently depending on where its block starts, so the same blocks on any
 * number of threads keep the logits bit-identical. */
static int mm_chunk(int n_tok)
{
    return n_tok < 16 ? 64 : 256;
}

static void op_matmul(struct engine_ctx *c, int part, int n_parts, int thread)
{
    int ch = mm_chunk(c->pre_rows);
    for (int i = 0; i < c->n_items; i++) {
        const struct mm_item *it = &c->items[i];
        int rows = it->w->n_rows, n = (rows + ch - 1) / ch;
        if (part >= n) {
            part -= n;
            continue;
        }
        int r0 = part * ch, r1 = MIN(rows, r0 + ch);
        kern_matmul_packed(it->w->type, it->w->data, it->w->packed, it->w->n_cols,
                           c->prep[it->slot], c->pre_rows, it->y, it->y_stride, r0, r1);
        return;
    }
}

static void run_matmul(struct engine_ctx *c)
{
    int ch = mm_chunk(c->pre_rows), n = 0;
    for (int i = 0; i < c->n_items; i++)
        n += (c->items[i].w->n_rows + ch - 1) / ch;
    c->op = op_matmul;
    tpool_run(c->pool, trampoline, c, n);
}

static void rope(float *v, int n_heads, int hd, int n_rot, const float *cs, bool neox)
{
    int half = n_rot / 2;
    for (int h = 0; h < n_heads; h++) {
        float *p = v + (size_t)h * hd;
        for (int i = 0; i < half; i++) {
            int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
            float c = cs[2 * i], s = cs[2 * i + 1];
            float a = p[i0], b = p[i1];
            p[i0] = a * c - b * s;
            p[i1] = a * s + b * c;
        }
    }
}

static void *cache_at(const struct engine_ctx *c, void *base, int layer, int seq, int pos)
{
    size_t i = ((size_t)layer * c->n_seq + seq) * c->n_ctx + pos;
    return (char *)base + i * c->kv_dim * (c->kv_f16 ? 2 : 4);
}

static void cache_put(const struct engine_ctx *c, void *dst, const float *src)
{
    if (!c->kv_f16) {
        memcpy(dst, src, c->kv_dim * sizeof(float));
        return;
    }
    uint16_t *h = dst;
    for (int i = 0; i < c->kv_dim; i++)
        h[i] = kern_fp32_to_fp16(src[i]);
}

/* Biases, RoPE on q and k, then k and v into the cache. */
static void op_rope_store(struct engine_ctx *c, int ith, int nth, int thread)
{
    const struct engine_model_info *hp = c->hp;
    const struct eng_layer *L = &c->m->layers[c->layer];
    bool neox = hp->rope == ENGINE_ROPE_NEOX;
    int a, b;
    split(c->n_tok, ith, nth, &a, &b);
    for (int t = a; t < b; t++) {
        float *q = c->q + (size_t)t * c->q_dim, *k = c->k + (size_t)t * c->kv_dim;
        float *v = c->v + (size_t)t * c->kv_dim;
        if (L->bq) {
            for (int i = 0; i < c->q_dim; i++)
                q[i] += L->bq[i];
            for (int i = 0; i < c->kv_dim; i++) {
                k[i] += L->bk[i];
                v[i] += L->bv[i];
            }
        }
        const float *cs = c->rope_cs + (size_t)t * hp->n_rot;
        rope(q, hp->n_head, hp->head_dim, hp->n_rot, cs, neox);
        rope(k, hp->n_head_kv, hp->head_dim, hp->n_rot, cs, neox);
        cache_put(c, cache_at(c, c->kc, c->layer, c->tok_seq[t], c->tok_pos[t]), k);
        cache_put(c, cache_at(c, c->vc, c->layer, c->tok_seq[t], c->tok_pos[t]), v);
    }
}

/* ---- attention over the cache: f32 or f16 rows ---------------------- */

static float sum8(const float *acc)
{
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static float kdot_f32(const float *q, const void *kv, int n)
{
    const float *k = kv;
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += q[i + j] * k[i + j];
    for (; i < n; i++)
        acc[0] += q[i] * k[i];
    return sum8(acc);
}

static void vacc_f32(float *out, float p, const void *vv, int n)
{
    const float *v = vv;
    for (int i = 0; i < n; i++)
        out[i] += p * v[i];
}

static float kdot_f16(const float *q, const void *kv, int n)
{
    const uint16_t *k = kv;
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += q[i + j] * kern_fp16_to_fp32(k[i + j]);
    for (; i < n; i++)
        acc[0] += q[i] * kern_fp16_to_fp32(k[i]);
    return sum8(acc);
}

static void vacc_f16(float *out, float p, const void *vv, int n)
{
    const uint16_t *v = vv;
    for (int i = 0; i < n; i++)
        out[i] += p * kern_fp16_to_fp32(v[i]);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define F16C_TGT __attribute__((target("avx2,fma,f16c")))

F16C_TGT static float kdot_f16c(const float *q, const void *kv, int n)
{
    const uint16_t *k = kv;
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i),
                              _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i))), acc);
    float t[8];
    _mm256_storeu_ps(t, acc);
    float s = sum8(t);
    for (; i < n; i++)
        s += q[i] * kern_fp16_to_fp32(k[i]);
    return s;
}

F16C_TGT static void vacc_f16c(float *out, float p, const void *vv, int n)
{
    const uint16_t *v = vv;
    __m256 pp = _mm256_set1_ps(p);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(
            out + i, _mm256_fmadd_ps(pp, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + i))),
                                     _mm256_loadu_ps(out + i)));
    for (; i < n; i++)
        out[i] += p * kern_fp16_to_fp32(v[i]);
}

/* kdot_f32 and vacc_f32 over all of a head's positions, 8 floats per vector:
 * lane j of the sum is kdot_f32's acc[j], and each output element takes its
 * products in position order, multiplied then added as the C does, so the
 * results are the same bit for bit; the call per row and vacc's trip through
 * memory per position, 9% of an 8-sequence decode step, are gone. n % 8 == 0. */
#define AVX2_TGT __attribute__((target("avx2")))

AVX2_TGT static inline __m256 kdot8(__m256 acc, const float *q, const float *k)
{
    return _mm256_add_ps(acc, _mm256_mul_ps(_mm256_loadu_ps(q), _mm256_loadu_ps(k)));
}

/* Four positions at a time: four independent chains of adds instead of one
 * waiting on the last add's latency. */
AVX2_TGT static void kdots_f32_avx2(const float *q, const char *k, size_t row, int n_pos, int n,
                                    float *scores)
{
    int j = 0;
    for (; j + 4 <= n_pos; j += 4) {
        const float *k0 = (const float *)(k + (size_t)j * row),
                    *k1 = (const float *)((const char *)k0 + row);
        const float *k2 = (const float *)((const char *)k1 + row),
                    *k3 = (const float *)((const char *)k2 + row);
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int i = 0; i < n; i += 8) {
            a0 = kdot8(a0, q + i, k0 + i);
            a1 = kdot8(a1, q + i, k1 + i);
            a2 = kdot8(a2, q + i, k2 + i);
            a3 = kdot8(a3, q + i, k3 + i);
        }
        float t[4][8];
        _mm256_storeu_ps(t[0], a0);
        _mm256_storeu_ps(t[1], a1);
        _mm256_storeu_ps(t[2], a2);
        _mm256_storeu_ps(t[3], a3);
        for (int m = 0; m < 4; m++)
            scores[j + m] = sum8(t[m]);
    }
    for (; j < n_pos; j++) {
        const float *kj = (const float *)(k + (size_t)j * row);
        __m256 acc = _mm256_setzero_ps();
        for (int i = 0; i < n; i += 8)
            acc = kdot8(acc, q + i, kj + i);
        float t[8];
        _mm256_storeu_ps(t, acc);
        scores[j] = sum8(t);
    }
}

AVX2_TGT static inline __m256 vacc8(__m256 o, __m256 p, const char *v, int i)
{
    return _mm256_add_ps(o, _mm256_mul_ps(p, _mm256_loadu_ps((const float *)v + i)));
}

/* 32 output elements at a time (four chains), 8 for what is left. */
AVX2_TGT static void vaccs_f32_avx2(float *out, const float *p, const char *v, size_t row,
                                    int n_pos, int n)
{
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 o0 = _mm256_setzero_ps(), o1 = o0, o2 = o0, o3 = o0;
        for (int j = 0; j < n_pos; j++) {
            const char *vj = v + (size_t)j * row;
            __m256 pj = _mm256_set1_ps(p[j]);
            o0 = vacc8(o0, pj, vj, i);
            o1 = vacc8(o1, pj, vj, i + 8);
            o2 = vacc8(o2, pj, vj, i + 16);
            o3 = vacc8(o3, pj, vj, i + 24);
        }
        _mm256_storeu_ps(out + i, o0);
        _mm256_storeu_ps(out + i + 8, o1);
        _mm256_storeu_ps(out + i + 16, o2);
        _mm256_storeu_ps(out + i + 24, o3);
    }
    for (; i < n; i += 8) {
        __m256 o = _mm256_setzero_ps();
        for (int j = 0; j < n_pos; j++)
            o = vacc8(o, _mm256_set1_ps(p[j]), v + (size_t)j * row, i);
        _mm256_storeu_ps(out + i, o);
    }
}

static bool have_f16c(void)
{
    unsigned a, b, c, d;
    __builtin_cpu_init();
    /* clang 14 knows no "f16c" feature string: CPUID leaf 1, ECX bit 29 */
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 29))) return false;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

static void pick_attention(struct engine_ctx *c)
{
    c->kdot = c->kv_f16 ? kdot_f16 : kdot_f32;
    c->vacc = c->kv_f16 ? vacc_f16 : vacc_f32;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (c->kv_f16 && have_f16c()) {
        c->kdot = kdot_f16c;
        c->vacc = vacc_f16c;
    }
    /* THAW_ENGINE_ATTN_SIMD=0: the C row by row (tests compare the two) */
    const char *env = getenv("THAW_ENGINE_ATTN_SIMD");
    __builtin_cpu_init();
    if (!c->kv_f16 && c->hp->head_dim % 8 == 0 && __builtin_cpu_supports("avx2") &&
        !(env && !strcmp(env, "0"))) {
        c->kdots = kdots_f32_avx2;
        c->vaccs = vaccs_f32_avx2;
    }
#endif
}

static void attend(struct engine_ctx *c, int t, int h, float *scores)
{
    const struct engine_model_info *hp = c->hp;
    int hd = hp->head_dim, kvh = h / (hp->n_head / hp->n_head_kv);
    int seq = c->tok_seq[t], n = c->tok_pos[t] + 1;
    size_t es = c->kv_f16 ? 2 : 4, row = (size_t)c->kv_dim * es;
    const float *q = c->q + (size_t)t * c->q_dim + (size_t)h * hd;
    const char *kbase = (const char *)cache_at(c, c->kc, c->layer, seq, 0) + kvh * hd * es;
    const char *vbase = (const char *)cache_at(c, c->vc, c->layer, seq, 0) + kvh * hd * es;
    float scale = 1.0f / sqrtf((float)hd), mx = -INFINITY;
    if (c->kdots) c->kdots(q, kbase, row, n, hd, scores);
    for (int j = 0; j < n; j++) {
        scores[j] = (c->kdots ? scores[j] : c->kdot(q, kbase + j * row, hd)) * scale;
        if (scores[j] > mx) mx = scores[j];
    }
    float sum = 0;
    for (int j = 0; j < n; j++) {
        scores[j] = expf(scores[j] - mx);
        sum += scores[j];
    }
    float inv = 1.0f / sum;
    float *out = c->att + (size_t)t * c->q_dim + (size_t)h * hd;
    if (c->vaccs) {
        for (int j = 0; j < n; j++)
            scores[j] *= inv;
        c->vaccs(out, scores, vbase, row, n, hd);
        return;
    }
    memset(out, 0, hd * sizeof(float));
    for (int j = 0; j < n; j++)
        c->vacc(out, scores[j] * inv, vbase + j * row, hd);
}

static void op_attention(struct engine_ctx *c, int ith, int nth, int thread)
{
    int a, b, nh = c->hp->n_head;
    split(c->n_tok * nh, ith, nth, &a, &b);
    float *scores = c->scores + (size_t)thread * c->n_ctx;
    for (int task = a; task < b; task++)
        attend(c, task / nh, task % nh, scores);
}

/* ---- the pass ------------------------------------------------------- */

static void matmuls(struct engine_ctx *c, int n, const struct eng_mat *const *w, float *const *y,
                    const int *ys, const float *src, int cols, enum pre_kind pre, bool resid,
                    const float *norm_w)
{
    set_items(c, n, w, y, ys);
    c->pre = pre;
    c->pre_src = src;
    c->pre_cols = cols;
    c->pre_rows = c->n_tok;
    c->resid = resid;
    c->norm_w = norm_w;
    run(c, op_prep, c->n_tok, 2);
    run_matmul(c);
}

/* Short attention (a decode step early in a sequence) is cheaper than
 * waking another thread: one part per ~256k multiply-adds. */
static int attention_parts(const struct engine_ctx *c)
{
    int64_t work = 0;
    for (int t = 0; t < c->n_tok; t++)
        work += (int64_t)(c->tok_pos[t] + 1) * c->hp->head_dim * c->hp->n_head * 2;
    return (int)MAX(1, MIN(MIN(work / 262144, (int64_t)c->n_tok * c->hp->n_head), 4096));
}

static void layer_pass(struct engine_ctx *c, int il)
{
    const struct engine_model_info *hp = c->hp;
    const struct eng_layer *L = &c->m->layers[il];
    int d = hp->n_embd, ff = hp->n_ff;
    c->layer = il;
    {
        const struct eng_mat *w[3] = {&L->wq, &L->wk, &L->wv};
        float *y[3] = {c->q, c->k, c->v};
        int ys[3] = {c->q_dim, c->kv_dim, c->kv_dim};
        matmuls(c, 3, w, y, ys, c->xb, d, PRE_RESID_NORM, il > 0, L->attn_norm);
    }
    run(c, op_rope_store, c->n_tok, 2);
    run(c, op_attention, attention_parts(c), 4);
    {
        const struct eng_mat *w[1] = {&L->wo};
        float *y[1] = {c->tmp};
        int ys[1] = {d};
        matmuls(c, 1, w, y, ys, c->att, c->q_dim, PRE_NONE, false, NULL);
    }
    {
        const struct eng_mat *w[2] = {&L->w_gate, &L->w_up};
        float *y[2] = {c->hb, c->hb2};
        int ys[2] = {ff, ff};
        matmuls(c, 2, w, y, ys, c->xb, d, PRE_RESID_NORM, true, L->ffn_norm);
    }
    {
        const struct eng_mat *w[1] = {&L->w_down};
        float *y[1] = {c->tmp};
        int ys[1] = {d};
        matmuls(c, 1, w, y, ys, c->hb, ff, PRE_SILU, false, NULL);
    }
}

static void rope_tables(struct engine_ctx *c)
{
    int half = c->hp->n_rot / 2;
    for (int t = 0; t < c->n_tok; t++)
        for (int i = 0; i < half; i++) {
            double th = (double)c->tok_pos[t] * c->m->rope_inv_freq[i];
            c->rope_cs[(size_t)t * 2 * half + 2 * i] = (float)cos(th);
            c->rope_cs[(size_t)t * 2 * half + 2 * i + 1] = (float)sin(th);
        }
}

static void embed_tokens(struct engine_ctx *c, const struct engine_batch_entry *b)
{
    const struct eng_mat *e = &c->m->tok_embd;
    for (int t = 0; t < c->n_tok; t++) {
        const uint8_t *row = (const uint8_t *)e->data + (size_t)b[t].token * e->row_bytes;
        float *x = c->x + (size_t)t * c->hp->n_embd;
        if (e->type == GGML_TYPE_F32)
            memcpy(x, row, c->hp->n_embd * sizeof(float));
        else
            kern_dequantize(e->type, row, x, c->hp->n_embd);
    }
}

/* Checks the whole batch before anything changes. */
static int validate(struct engine_ctx *c, const struct engine_batch_entry *b, int32_t n,
                    struct thaw_err *err)
{
    if (n < 1 || n > c->n_batch)
        return thaw_errf(err, THAW_EINVAL, "engine: batch of %d entries (1..%d allowed)", n,
                         c->n_batch);
    int n_out = 0;
    for (int s = 0; s < c->n_seq; s++)
        c->seq_next[s] = -1;
    for (int i = 0; i < n; i++) {
        int s = b[i].seq;
        if (s < 0 || s >= c->n_seq)
            return thaw_errf(err, THAW_EINVAL, "engine: sequence id %d out of range (0..%d)", s,
                             c->n_seq - 1);
        if (b[i].token < 0 || b[i].token >= c->hp->n_vocab)
            return thaw_errf(err, THAW_EINVAL, "engine: token %d out of range (vocab %d)",
                             b[i].token, c->hp->n_vocab);
        if (b[i].pos >= c->n_ctx)
            return thaw_errf(err, THAW_ERANGE,
                             "engine: context full: sequence %d position %d exceeds n_ctx %d", s,
                             b[i].pos, c->n_ctx);
        int want_max = c->seq_next[s] < 0 ? c->seq_len[s] : c->seq_next[s];
        if (b[i].pos < 0 || b[i].pos > want_max ||
            (c->seq_next[s] >= 0 && b[i].pos != c->seq_next[s]))
            return thaw_errf(err, THAW_EINVAL,
                             "engine: sequence %d: position %d does not follow (expected %s%d)", s,
                             b[i].pos, c->seq_next[s] < 0 ? "at most " : "", want_max);
        c->seq_next[s] = b[i].pos + 1;
        n_out += b[i].logits;
    }
    if (n_out > c->n_outputs)
        return thaw_errf(err, THAW_EINVAL, "engine: %d entries ask for logits (at most %d)", n_out,
                         c->n_outputs);
    return 0;
}

int engine_forward(struct engine_ctx *c, const struct engine_batch_entry *b, int32_t n,
                   struct thaw_err *err)
{
    int rc = validate(c, b, n, err);
    if (rc) return rc;
    const struct engine_model_info *hp = c->hp;
    c->n_tok = n;
    c->n_out = 0;
    for (int i = 0; i < n; i++) {
        c->tok_seq[i] = b[i].seq;
        c->tok_pos[i] = b[i].pos;
        if (b[i].logits) c->out_rows[c->n_out++] = i;
    }
    for (int s = 0; s < c->n_seq; s++)
        if (c->seq_next[s] >= 0) c->seq_len[s] = c->seq_next[s];
    rope_tables(c);
    embed_tokens(c, b);
    for (int il = 0; il < hp->n_layer; il++)
        layer_pass(c, il);
    run(c, op_final, c->n_tok, 2);
    c->n_logits_valid = c->n_out;
    if (c->n_out) {
        const struct eng_mat *w[1] = {&c->m->output};
        float *y[1] = {c->logits};
        int ys[1] = {hp->n_vocab};
        set_items(c, 1, w, y, ys);
        c->pre_cols = hp->n_embd;
        c->pre_rows = c->n_out;
        run(c, op_out_prep, c->n_out, 2);
        run_matmul(c);
    }
    return 0;
}

const float *engine_logits(const struct engine_ctx *c, int32_t i)
{
    if (i < 0 || i >= c->n_logits_valid) return NULL;
    return c->logits + (size_t)i * c->hp->n_vocab;
}

int engine_feed(struct engine_ctx *c, int32_t seq, const int32_t *tokens, int32_t n,
                struct thaw_err *err)
{
    if (seq < 0 || seq >= c->n_seq)
        return thaw_errf(err, THAW_EINVAL, "engine: sequence id %d out of range", seq);
    if (n < 1) return thaw_errf(err, THAW_EINVAL, "engine: nothing to feed");
    if ((int64_t)c->seq_len[seq] + n > c->n_ctx)
        return thaw_errf(err, THAW_ERANGE,
                         "engine: %d tokens do not fit: sequence %d holds %d of n_ctx %d", n, seq,
                         c->seq_len[seq], c->n_ctx);
    struct engine_batch_entry *be = c->feed;
    int rc = 0;
    for (int32_t done = 0; done < n && !rc;) {
        int32_t k = MIN(n - done, c->n_batch), pos = c->seq_len[seq];
        for (int32_t i = 0; i < k; i++)
            be[i] = (struct engine_batch_entry){seq, tokens[done + i], pos + i, done + i == n - 1};
        rc = engine_forward(c, be, k, err);
        done += k;
    }
    return rc;
}

/* ---- contexts ------------------------------------------------------- */

/* Allocates n floats on a cache line, counting the bytes in c->bytes. */
static void *alloc_f(struct engine_ctx *c, size_t n, bool *ok)
{
    size_t bytes = ((n ? n : 1) * sizeof(float) + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, bytes);
    if (!p) *ok = false;
    c->bytes += bytes;
    return p;
}

static size_t prep_need(const struct engine_model *m, int n_batch, int n_outputs)
{
    size_t mx = kern_input_bytes(m->output.type, n_outputs, m->info.n_embd);
    for (int il = 0; il < m->info.n_layer; il++) {
        const struct eng_layer *L = &m->layers[il];
        const struct eng_mat *w[7] = {&L->wq,     &L->wk,   &L->wv,    &L->wo,
                                      &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++)
            mx = MAX(mx, kern_input_bytes(w[i]->type, n_batch, w[i]->n_cols));
    }
    return mx;
}

static int ctx_alloc(struct engine_ctx *c, int n_threads)
{
    const struct engine_model_info *hp = c->hp;
    size_t nb = c->n_batch, d = hp->n_embd;
    size_t kv = (size_t)hp->n_layer * c->n_seq * c->n_ctx * c->kv_dim;
    bool ok = true;
    size_t kv_f = c->kv_f16 ? (kv + 1) / 2 : kv; /* in floats */
    c->kc = alloc_f(c, kv_f, &ok);
    c->vc = alloc_f(c, kv_f, &ok);
    c->kv_bytes = c->bytes;
    c->x = alloc_f(c, nb * d, &ok);
    c->xb = alloc_f(c, nb * d, &ok);
    c->tmp = alloc_f(c, nb * d, &ok);
    c->q = alloc_f(c, nb * c->q_dim, &ok);
    c->att = alloc_f(c, nb * c->q_dim, &ok);
    c->k = alloc_f(c, nb * c->kv_dim, &ok);
    c->v = alloc_f(c, nb * c->kv_dim, &ok);
    c->hb = alloc_f(c, nb * hp->n_ff, &ok);
    c->hb2 = alloc_f(c, nb * hp->n_ff, &ok);
    c->xo = alloc_f(c, (size_t)c->n_outputs * d, &ok);
    c->rope_cs = alloc_f(c, nb * hp->n_rot, &ok);
    c->scores = alloc_f(c, (size_t)n_threads * c->n_ctx, &ok);
    c->logits = alloc_f(c, (size_t)c->n_outputs * hp->n_vocab, &ok);
    if (c->embeddings) c->hidden = alloc_f(c, nb * d, &ok);
    c->prep_cap = prep_need(c->m, c->n_batch, c->n_outputs);
    for (int s = 0; s < MAX_SLOTS; s++)
        c->prep[s] = alloc_f(c, c->prep_cap / sizeof(float) + 1, &ok);
    c->seq_len = calloc(c->n_seq, sizeof(int32_t));
    c->seq_next = calloc(c->n_seq, sizeof(int32_t));
    c->tok_seq = calloc(nb, sizeof(int32_t));
    c->tok_pos = calloc(nb, sizeof(int32_t));
    c->out_rows = calloc(c->n_outputs, sizeof(int32_t));
    c->feed = calloc(nb, sizeof(*c->feed));
    c->pool_acc = calloc(d, sizeof(double));
    if (!c->feed || !c->pool_acc) ok = false;
    if (!ok || !c->seq_len || !c->seq_next || !c->tok_seq || !c->tok_pos || !c->out_rows)
        return THAW_ENOMEM;
    return 0;
}

int engine_ctx_new(struct engine_model *m, const struct engine_ctx_params *p,
                   struct engine_ctx **out, struct thaw_err *err)
{
    *out = NULL;
    const struct engine_model_info *hp = &m->info;
    struct engine_ctx *c = calloc(1, sizeof(*c));
    if (!c) return thaw_errf(err, THAW_ENOMEM, "engine: out of memory");
    c->m = m;
    c->hp = hp;
    c->n_ctx = p && p->n_ctx > 0 ? p->n_ctx : MIN(hp->n_ctx_train, 4096);
    c->n_seq = p && p->n_seq_max > 0 ? p->n_seq_max : 1;
    c->n_batch = p && p->n_batch > 0 ? p->n_batch : 128;
    c->n_outputs = p && p->n_outputs > 0 ? p->n_outputs : c->n_seq;
    c->embeddings = p && p->embeddings;
    c->kv_f16 = p && p->kv_f16;
    pick_attention(c);
    int n_threads = p && p->n_threads > 0 ? p->n_threads : 1;
    c->n_threads = n_threads;
    c->q_dim = hp->n_head * hp->head_dim;
    c->kv_dim = hp->n_head_kv * hp->head_dim;
    if (c->n_ctx > (1 << 20) || c->n_seq > 4096 || c->n_batch > 65536 ||
        c->n_outputs > c->n_batch * 2 + c->n_seq || n_threads > 512) {
        free(c);
        return thaw_errf(err, THAW_EINVAL, "engine: context parameters out of range");
    }
    int rc = ctx_alloc(c, n_threads);
    if (!rc) rc = tpool_new(n_threads, &c->pool);
    if (!rc) tpool_set_adaptive(c->pool, !(p && p->threads_fixed));
    if (rc) {
        engine_ctx_free(c);
        return thaw_errf(err, rc,
                         "engine: cannot allocate the context (%d positions x %d "
                         "sequences): %s",
                         p && p->n_ctx > 0 ? p->n_ctx : MIN(hp->n_ctx_train, 4096),
                         p && p->n_seq_max > 0 ? p->n_seq_max : 1, thaw_strerror(rc));
    }
    *out = c;
    return 0;
}

void engine_ctx_free(struct engine_ctx *c)
{
    if (!c) return;
    tpool_free(c->pool);
    free(c->kc);
    free(c->vc);
    float *fs[] = {c->x,  c->xb,  c->tmp, c->q,       c->att,    c->k,      c->v,
                   c->hb, c->hb2, c->xo,  c->rope_cs, c->scores, c->logits, c->hidden};
    for (size_t i = 0; i < ARRAY_LEN(fs); i++)
        free(fs[i]);
    for (int s = 0; s < MAX_SLOTS; s++)
        free(c->prep[s]);
    free(c->seq_len);
    free(c->seq_next);
    free(c->tok_seq);
    free(c->tok_pos);
    free(c->out_rows);
    free(c->feed);
    free(c->pool_acc);
    free(c);
}

size_t engine_ctx_bytes(const struct engine_ctx *c, size_t *kv_bytes)
{
    if (kv_bytes) *kv_bytes = c->kv_bytes;
    return c->bytes;
}

int32_t engine_ctx_n_ctx(const struct engine_ctx *c)
{
    return c->n_ctx;
}

int32_t engine_ctx_n_seq(const struct engine_ctx *c)
{
    return c->n_seq;
}

void engine_seq_clear(struct engine_ctx *c, int32_t seq)
{
    if (seq >= 0 && seq < c->n_seq) c->seq_len[seq] = 0;
}

int32_t engine_seq_len(const struct engine_ctx *c, int32_t seq)
{
    return seq >= 0 && seq < c->n_seq ? c->seq_len[seq] : -1;
}

/* ---- embeddings ----------------------------------------------------- */

int engine_embed(struct engine_ctx *c, int32_t seq, const int32_t *tokens, int32_t n, float *out,
                 struct thaw_err *err)
{
    int d = c->hp->n_embd;
    if (!c->embeddings)
        return thaw_errf(err, THAW_ESTATE, "engine: context was not created for embeddings");
    if (seq < 0 || seq >= c->n_seq)
        return thaw_errf(err, THAW_EINVAL, "engine: sequence id %d out of range", seq);
    if (n < 1 || n > c->n_ctx)
        return thaw_errf(err, THAW_ERANGE, "engine: %d tokens to embed (1..%d allowed)", n,
                         c->n_ctx);
    enum engine_pooling pool =
        c->hp->pooling == ENGINE_POOL_NONE ? ENGINE_POOL_LAST : c->hp->pooling;
    engine_seq_clear(c, seq);
    memset(out, 0, d * sizeof(float));
    double *acc = c->pool_acc;
    struct engine_batch_entry *be = c->feed;
    int rc = 0;
    memset(acc, 0, d * sizeof(double));
    for (int32_t done = 0; done < n && !rc;) {
        int32_t k = MIN(n - done, c->n_batch);
        for (int32_t i = 0; i < k; i++)
            be[i] = (struct engine_batch_entry){seq, tokens[done + i], done + i, false};
        if ((rc = engine_forward(c, be, k, err))) break;
        for (int32_t i = 0; i < k; i++) {
            int32_t ti = done + i;
            bool take = pool == ENGINE_POOL_MEAN || (pool == ENGINE_POOL_CLS && ti == 0) ||
                        (pool == ENGINE_POOL_LAST && ti == n - 1);
            if (take)
                for (int j = 0; j < d; j++)
                    acc[j] += c->hidden[(size_t)i * d + j];
        }
        done += k;
    }
    if (!rc) {
        double ss = 0;
        for (int j = 0; j < d; j++)
            ss += acc[j] * acc[j];
        double inv = ss > 0 ? 1.0 / sqrt(ss) : 0; /* mean's 1/n cancels in the norm */
        for (int j = 0; j < d; j++)
            out[j] = (float)(acc[j] * inv);
    }
    return rc;
}
