/* Generated models for tests and benchmarks: llama-shaped GGUF files with
 * seeded random weights of any supported type, and a small SentencePiece-
 * style vocabulary (<unk>, <s>, </s>, 256 byte tokens, then pieces) so the
 * tokenizer can load them. Same parameters and seed: same bytes. */
#include "engine/engine_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KQ_K_ELEMS 256 /* elements of a K-quant block */

struct preset {
    const char *name;
    const char *arch;
    int32_t vocab, embd, layer, head, head_kv, ff, ctx;
    bool tied;
};

static const struct preset presets[] = {
    {"smollm2-135m", "llama", 32000, 576, 30, 9, 3, 1536, 2048, true},
    {"tinyllama-1.1b", "llama", 32000, 2048, 22, 32, 4, 5632, 2048, false},
    /* tiny ones for tests: rows of 256 so every block type fits */
    {"tiny", "llama", 512, 256, 2, 4, 4, 512, 256, false},
    {"tiny-gqa", "llama", 512, 256, 2, 8, 2, 256, 256, true},
    {"tiny-qwen2", "qwen2", 512, 256, 2, 4, 2, 512, 256, false},
};

int engine_gen_preset(const char *name, struct engine_gen_params *p, struct thaw_err *err)
{
    for (size_t i = 0; i < ARRAY_LEN(presets); i++) {
        const struct preset *s = &presets[i];
        if (strcmp(s->name, name)) continue;
        *p = (struct engine_gen_params){
            .arch = s->arch,
            .n_vocab = s->vocab,
            .n_embd = s->embd,
            .n_layer = s->layer,
            .n_head = s->head,
            .n_head_kv = s->head_kv,
            .n_ff = s->ff,
            .n_ctx = s->ctx,
            .tied_output = s->tied,
            .type = GGML_TYPE_Q8_0,
            .seed = 1,
        };
        return 0;
    }
    return thaw_errf(err, THAW_ENOTFOUND,
                     "unknown preset '%s' (smollm2-135m, tinyllama-1.1b, tiny, tiny-gqa, "
                     "tiny-qwen2)",
                     name);
}

/* ---- random numbers: splitmix64, reproducible everywhere ------------- */

static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static float uni(uint64_t *s)
{
    return (float)((next_u64(s) >> 40) * (2.0 / 16777216.0) - 1.0);
}

/* ---- vocabulary ------------------------------------------------------ */

struct vocab {
    char **tok;
    float *score;
    int32_t *type;
    int32_t n;
};

static void vocab_free(struct vocab *v)
{
    if (v->tok)
        for (int32_t i = 0; i < v->n; i++)
            free(v->tok[i]);
    free(v->tok);
    free(v->score);
    free(v->type);
}

/* Pieces after the specials and bytes: "▁", letters, "▁"+letter, then
 * letter pairs and triples with and without "▁", in that order. */
static void piece_at(int64_t k, char *out)
{
    static const char *sp = "\xe2\x96\x81"; /* U+2581 */
    static const char alpha[] = "etaoinshrdlucmfwypvbgkjqxz";
    const char *extra[] = {".", ",", "!", "?", "'", "\n"};
    if (k == 0) {
        strcpy(out, sp);
        return;
    }
    k--;
    if (k < 26 + 6) {
        if (k < 26)
            snprintf(out, 8, "%c", alpha[k]);
        else
            snprintf(out, 8, "%s", extra[k - 26]);
        return;
    }
    k -= 32;
    for (int len = 1; len <= 4; len++) {
        int64_t n = 1;
        for (int i = 0; i < len; i++)
            n *= 26;
        for (int with_sp = 1; with_sp >= 0; with_sp--) {
            if (len == 1 && !with_sp) continue; /* plain letters came first */
            if (k < n) {
                int o = with_sp ? sprintf(out, "%s", sp) : 0;
                for (int i = len - 1; i >= 0; i--) {
                    out[o + i] = alpha[k % 26];
                    k /= 26;
                }
                out[o + len] = 0;
                return;
            }
            k -= n;
        }
    }
    sprintf(out, "<extra_%lld>", (long long)k);
}

static int vocab_make(int32_t n, struct vocab *v)
{
    v->n = n;
    v->tok = calloc(n, sizeof(char *));
    v->score = calloc(n, sizeof(float));
    v->type = calloc(n, sizeof(int32_t));
    if (!v->tok || !v->score || !v->type) return THAW_ENOMEM;
    char buf[32];
    for (int32_t i = 0; i < n; i++) {
        if (i < 3) {
            static const char *sp[3] = {"<unk>", "<s>", "</s>"};
            snprintf(buf, sizeof buf, "%s", sp[i]);
            v->type[i] = i == 0 ? TOKENIZER_TYPE_UNKNOWN : TOKENIZER_TYPE_CONTROL;
        } else if (i < 259) {
            snprintf(buf, sizeof buf, "<0x%02X>", i - 3);
            v->type[i] = TOKENIZER_TYPE_BYTE;
        } else {
            piece_at(i - 259, buf);
            v->type[i] = TOKENIZER_TYPE_NORMAL;
            v->score[i] = -(float)(i - 259);
        }
        if (!(v->tok[i] = str_dup(buf))) return THAW_ENOMEM;
    }
    return 0;
}

static int write_vocab(struct gguf_writer *w, int32_t n)
{
    struct vocab v = {0};
    int rc = vocab_make(n, &v);
    if (!rc) rc = gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    if (!rc)
        rc = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v.tok, n);
    if (!rc) rc = gguf_writer_set_arr_f32(w, "tokenizer.ggml.scores", v.score, n);
    if (!rc) rc = gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", v.type, n);
    if (!rc) rc = gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    if (!rc) rc = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    if (!rc) rc = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    if (!rc) rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    if (!rc) rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false);
    vocab_free(&v);
    return rc;
}

/* ---- tensors --------------------------------------------------------- */

struct gen {
    struct gguf_writer *w;
    uint64_t rng;
    int n_fallback;
    float *f;   /* scratch: one tensor of floats */
    uint8_t *q; /* scratch: the same quantised */
    size_t f_cap, q_cap;
};

/* The type a row of n elements gets when t's blocks do not fit, as
 * llama.cpp's quantiser falls back. */
static enum ggml_type fit_type(enum ggml_type t, int64_t n)
{
    if (n % ggml_type_block_elems(t) == 0) return t;
    if (t == GGML_TYPE_Q4_K && n % 32 == 0) return GGML_TYPE_Q5_0;
    if (t == GGML_TYPE_Q5_K && n % 32 == 0) return GGML_TYPE_Q5_1;
    if (t == GGML_TYPE_Q6_K && n % 32 == 0) return GGML_TYPE_Q8_0;
    return GGML_TYPE_F16;
}

/* llama.cpp's Q4_K_M: the layers whose attn_v and ffn_down get more bits
 * (the first and last eighth, and every third in between). */
static bool more_bits(int il, int n)
{
    return il < n / 8 || il >= 7 * n / 8 || (il - n / 8) % 3 == 2;
}

/* The type of a matrix of rows of n elements in llama.cpp's Q4_K_M mixture;
 * the output matrix (a tied token_embd too) goes straight to Q8_0 when its
 * rows do not fit 256-element blocks, others fall back in add(). */
static enum ggml_type q4_k_m_type(const char *name, int il, int n_layer, int64_t n, bool tied)
{
    bool out = !strcmp(name, "output.weight") || (tied && !strcmp(name, "token_embd.weight"));
    if (out) return n % KQ_K_ELEMS ? GGML_TYPE_Q8_0 : GGML_TYPE_Q6_K;
    if ((strstr(name, "attn_v.weight") || strstr(name, "ffn_down.weight")) &&
        more_bits(il, n_layer))
        return GGML_TYPE_Q6_K;
    return GGML_TYPE_Q4_K;
}

/* The type of a tensor asked as t: the Q4_K_M mixture's for matrices when
 * asked (il: the layer, -1 outside them), t otherwise (norms, biases). */
static enum ggml_type pick(const struct engine_gen_params *p, const char *name, enum ggml_type t,
                           int il, int64_t cols, int64_t rows)
{
    if (!p->q4_k_m || rows < 2) return t;
    return q4_k_m_type(name, il, p->n_layer, cols, p->tied_output);
}

static int reserve(struct gen *g, size_t n_f, size_t n_q)
{
    if (n_f > g->f_cap) {
        free(g->f);
        g->f = malloc(n_f * sizeof(float));
        g->f_cap = g->f ? n_f : 0;
    }
    if (n_q > g->q_cap) {
        free(g->q);
        g->q = malloc(n_q);
        g->q_cap = g->q ? n_q : 0;
    }
    return g->f && g->q ? 0 : THAW_ENOMEM;
}

/* Adds a tensor of rows x cols values center + scale * U(-1, 1). */
static int add(struct gen *g, const char *name, enum ggml_type t, int64_t cols, int64_t rows,
               float center, float scale)
{
    enum ggml_type ft = fit_type(t, cols);
    if (ft != t) g->n_fallback++;
    size_t n = (size_t)(cols * rows), rb = ggml_row_bytes(ft, cols);
    int rc = reserve(g, n, rb * rows);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++)
        g->f[i] = center + scale * uni(&g->rng);
    if (ft == GGML_TYPE_F32)
        memcpy(g->q, g->f, n * sizeof(float));
    else
        for (int64_t r = 0; r < rows; r++)
            kern_quantize(ft, g->f + r * cols, g->q + r * rb, cols);
    uint64_t ne[2] = {(uint64_t)cols, (uint64_t)rows};
    return gguf_writer_add_tensor(g->w, name, ft, rows > 1 ? 2 : 1, ne, g->q);
}

static int add_layer(struct gen *g, const struct engine_gen_params *p, int il)
{
    int64_t d = p->n_embd, hd = d / p->n_head, q = hd * p->n_head, kv = hd * p->n_head_kv;
    float sd = sqrtf(3.0f / (float)d), sq = sqrtf(3.0f / (float)q),
          sf = sqrtf(3.0f / (float)p->n_ff);
    char n[64];
    int rc = 0;
#define ADD(suffix, t, cols, rows, c0, s)                                                          \
    do {                                                                                           \
        snprintf(n, sizeof n, "blk.%d.%s", il, suffix);                                            \
        if (!rc) rc = add(g, n, pick(p, n, t, il, cols, rows), cols, rows, c0, s);                 \
    } while (0)
    ADD("attn_norm.weight", GGML_TYPE_F32, d, 1, 1.0f, 0.1f);
    ADD("attn_q.weight", p->type, d, q, 0, sd);
    ADD("attn_k.weight", p->type, d, kv, 0, sd);
    ADD("attn_v.weight", p->type, d, kv, 0, sd);
    if (!strcmp(p->arch, "qwen2")) {
        ADD("attn_q.bias", GGML_TYPE_F32, q, 1, 0, 0.2f);
        ADD("attn_k.bias", GGML_TYPE_F32, kv, 1, 0, 0.2f);
        ADD("attn_v.bias", GGML_TYPE_F32, kv, 1, 0, 0.2f);
    }
    ADD("attn_output.weight", p->type, q, d, 0, sq);
    ADD("ffn_norm.weight", GGML_TYPE_F32, d, 1, 1.0f, 0.1f);
    ADD("ffn_gate.weight", p->type, d, p->n_ff, 0, sd);
    ADD("ffn_up.weight", p->type, d, p->n_ff, 0, sd);
    ADD("ffn_down.weight", p->type, p->n_ff, d, 0, sf);
#undef ADD
    return rc;
}

static int check_params(const struct engine_gen_params *p, struct thaw_err *err)
{
    const char *arch = p->arch ? p->arch : "llama";
    if (strcmp(arch, "llama") && strcmp(arch, "qwen2") && strcmp(arch, "mistral"))
        return thaw_errf(err, THAW_EINVAL, "gen: architecture '%s' (llama, mistral, qwen2)", arch);
    if (p->n_vocab < 300 || p->n_vocab > 1 << 20 || p->n_embd < 2 || p->n_layer < 1 ||
        p->n_layer > 1024 || p->n_head < 1 || p->n_head_kv < 1 || p->n_head % p->n_head_kv ||
        p->n_embd % p->n_head || (p->n_embd / p->n_head) % 2 || p->n_ff < 1 || p->n_ctx < 1 ||
        p->n_embd > 1 << 16 || p->n_ff > 1 << 20)
        return thaw_errf(err, THAW_EINVAL,
                         "gen: bad shape (vocab >= 300, heads dividing the width with an even "
                         "head size, kv heads dividing heads)");
    if (!ggml_type_supported(p->type) || (p->output_type && !ggml_type_supported(p->output_type)))
        return thaw_errf(err, THAW_EINVAL, "gen: unsupported weight type");
    return 0;
}

static int write_meta(struct gguf_writer *w, const struct engine_gen_params *p, const char *arch)
{
    char k[96];
    int rc = gguf_writer_set_str(w, "general.architecture", arch);
    if (!rc) rc = gguf_writer_set_str(w, "general.name", "thaw generated model");
#define U32(suffix, v)                                                                             \
    do {                                                                                           \
        snprintf(k, sizeof k, "%s.%s", arch, suffix);                                              \
        if (!rc) rc = gguf_writer_set_u32(w, k, (uint32_t)(v));                                    \
    } while (0)
    U32("context_length", p->n_ctx);
    U32("embedding_length", p->n_embd);
    U32("block_count", p->n_layer);
    U32("feed_forward_length", p->n_ff);
    U32("attention.head_count", p->n_head);
    U32("attention.head_count_kv", p->n_head_kv);
    U32("rope.dimension_count", p->n_embd / p->n_head);
    if (p->pooling != ENGINE_POOL_NONE) U32("pooling_type", p->pooling);
#undef U32
    if (p->rope_scale > 1.0f) {
        snprintf(k, sizeof k, "%s.rope.scaling.type", arch);
        if (!rc) rc = gguf_writer_set_str(w, k, "linear");
        snprintf(k, sizeof k, "%s.rope.scaling.factor", arch);
        if (!rc) rc = gguf_writer_set_f32(w, k, p->rope_scale);
    }
    snprintf(k, sizeof k, "%s.rope.freq_base", arch);
    if (!rc) rc = gguf_writer_set_f32(w, k, p->rope_base > 0 ? p->rope_base : 10000.0f);
    snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", arch);
    if (!rc) rc = gguf_writer_set_f32(w, k, 1e-5f);
    if (!rc) rc = write_vocab(w, p->n_vocab);
    return rc;
}

int engine_gen_write(const struct engine_gen_params *p, const char *path, int *n_fallback,
                     struct thaw_err *err)
{
    int rc = check_params(p, err);
    if (rc) return rc;
    const char *arch = p->arch ? p->arch : "llama";
    enum ggml_type ot = p->output_type ? p->output_type : p->type;
    struct gen g = {.w = gguf_writer_new(), .rng = p->seed};
    if (!g.w) return thaw_errf(err, THAW_ENOMEM, "gen: out of memory");
    rc = write_meta(g.w, p, arch);
    if (!rc)
        rc = add(&g, "token_embd.weight",
                 pick(p, "token_embd.weight", ot, -1, p->n_embd, p->n_vocab), p->n_embd, p->n_vocab,
                 0, 1.0f);
    for (int il = 0; il < p->n_layer && !rc; il++)
        rc = add_layer(&g, p, il);
    if (!rc) rc = add(&g, "output_norm.weight", GGML_TYPE_F32, p->n_embd, 1, 1.0f, 0.1f);
    if (!rc && p->rope_freq_factors) /* factors in [1, 8], as long-context files have */
        rc = add(&g, "rope_freqs.weight", GGML_TYPE_F32, p->n_embd / p->n_head / 2, 1, 4.5f, 3.5f);
    if (!rc && !p->tied_output)
        rc = add(&g, "output.weight", pick(p, "output.weight", ot, -1, p->n_embd, p->n_vocab),
                 p->n_embd, p->n_vocab, 0, sqrtf(3.0f / p->n_embd));
    if (rc)
        rc = thaw_errf(err, rc, "gen: building the model failed: %s", thaw_strerror(rc));
    else
        rc = gguf_writer_write(g.w, path, err);
    if (n_fallback) *n_fallback = g.n_fallback;
    gguf_writer_free(g.w);
    free(g.f);
    free(g.q);
    return rc;
}
