/* Reads a tokenizer out of GGUF metadata (tokenizer.ggml.*) into a
 * tokenizer_desc and builds it. Every array is checked against the token
 * count before use; missing optional keys take llama.cpp's defaults. */
#include "engine/gguf.h"
#include "engine/tokenizer_int.h"

#include <stdlib.h>
#include <string.h>

struct gguf_vocab {
    const char **tokens;
    size_t *token_lens;
    float *scores;
    int32_t *types;
    const char **merges;
    size_t *merge_lens;
};

static void vocab_free(struct gguf_vocab *v)
{
    free(v->tokens);
    free(v->token_lens);
    free(v->scores);
    free(v->types);
    free(v->merges);
    free(v->merge_lens);
}

static bool str_is(const char *s, size_t len, const char *lit)
{
    return strlen(lit) == len && memcmp(s, lit, len) == 0;
}

static int pick_pre(const struct gguf *g, enum tokenizer_pre *pre, struct thaw_err *err)
{
    static const struct {
        const char *name;
        enum tokenizer_pre pre;
    } names[] = {
        {"default", TOKENIZER_PRE_GPT2},
        {"gpt-2", TOKENIZER_PRE_GPT2},
        {"gpt2", TOKENIZER_PRE_GPT2},
        {"llama3", TOKENIZER_PRE_LLAMA3},
        {"llama-v3", TOKENIZER_PRE_LLAMA3},
        {"llama-bpe", TOKENIZER_PRE_LLAMA3},
        {"falcon3", TOKENIZER_PRE_LLAMA3},
        {"qwen2", TOKENIZER_PRE_QWEN2},
        {"deepseek-r1-qwen", TOKENIZER_PRE_QWEN2},
        {"smollm", TOKENIZER_PRE_SMOLLM},
    };
    const char *s;
    size_t len;
    *pre = TOKENIZER_PRE_GPT2;
    if (gguf_get_str(g, "tokenizer.ggml.pre", &s, &len) != 0) return 0;
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        if (str_is(s, len, names[i].name)) {
            *pre = names[i].pre;
            return 0;
        }
    }
    return thaw_errf(err, THAW_EUNSUPPORTED,
                     "tokenizer: pre-tokenizer \"%.*s\" is not supported (known: default, gpt-2, "
                     "llama3, llama-bpe, qwen2, deepseek-r1-qwen, smollm, falcon3)",
                     (int)MIN(len, 64), s);
}

static int read_tokens(const struct gguf *g, struct gguf_vocab *v, int32_t *n_out,
                       struct thaw_err *err)
{
    enum gguf_vtype t;
    uint64_t n;
    if (gguf_get_arr(g, "tokenizer.ggml.tokens", &t, &n) != 0 || t != GGUF_VTYPE_STRING)
        return thaw_errf(err, THAW_EFORMAT,
                         "tokenizer: tokenizer.ggml.tokens is missing or not "
                         "an array of strings");
    if (n == 0 || n >= INT32_MAX / 2)
        return thaw_errf(err, THAW_EFORMAT, "tokenizer: %llu tokens", (unsigned long long)n);
    v->tokens = malloc(n * sizeof(*v->tokens));
    v->token_lens = malloc(n * sizeof(*v->token_lens));
    if (!v->tokens || !v->token_lens) return thaw_errf(err, THAW_ENOMEM, "out of memory");
    for (uint64_t i = 0; i < n; i++)
        if (gguf_arr_str(g, "tokenizer.ggml.tokens", i, &v->tokens[i], &v->token_lens[i]) != 0)
            return thaw_errf(err, THAW_EFORMAT, "tokenizer: token %llu unreadable",
                             (unsigned long long)i);
    *n_out = (int32_t)n;
    return 0;
}

/* Optional per-token arrays must match the token count when present. */
static int read_per_token(const struct gguf *g, const char *key, int32_t n, bool is_float,
                          void **out, struct thaw_err *err)
{
    enum gguf_vtype t;
    uint64_t m;
    if (gguf_find_key(g, key) < 0) return 0;
    if (gguf_get_arr(g, key, &t, &m) != 0 || m != (uint64_t)n)
        return thaw_errf(err, THAW_EFORMAT, "tokenizer: %s is not an array of %d values", key, n);
    void *a = malloc((size_t)n * 4);
    if (!a) return thaw_errf(err, THAW_ENOMEM, "out of memory");
    *out = a;
    for (int32_t i = 0; i < n; i++) {
        int rc = is_float ? gguf_arr_f32(g, key, (uint64_t)i, (float *)a + i)
                          : gguf_arr_i32(g, key, (uint64_t)i, (int32_t *)a + i);
        if (rc) return thaw_errf(err, THAW_EFORMAT, "tokenizer: %s[%d] has the wrong type", key, i);
    }
    return 0;
}

static int read_merges(const struct gguf *g, struct gguf_vocab *v, size_t *n_out,
                       struct thaw_err *err)
{
    enum gguf_vtype t;
    uint64_t n;
    *n_out = 0;
    if (gguf_get_arr(g, "tokenizer.ggml.merges", &t, &n) != 0 || t != GGUF_VTYPE_STRING)
        return thaw_errf(err, THAW_EFORMAT,
                         "tokenizer: a gpt2 vocabulary needs "
                         "tokenizer.ggml.merges (array of strings)");
    if (n >= INT32_MAX) return thaw_errf(err, THAW_EFORMAT, "tokenizer: too many merges");
    v->merges = malloc((n + 1) * sizeof(*v->merges));
    v->merge_lens = malloc((n + 1) * sizeof(*v->merge_lens));
    if (!v->merges || !v->merge_lens) return thaw_errf(err, THAW_ENOMEM, "out of memory");
    for (uint64_t i = 0; i < n; i++)
        if (gguf_arr_str(g, "tokenizer.ggml.merges", i, &v->merges[i], &v->merge_lens[i]) != 0)
            return thaw_errf(err, THAW_EFORMAT, "tokenizer: merge %llu unreadable",
                             (unsigned long long)i);
    *n_out = (size_t)n;
    return 0;
}

static int32_t get_id(const struct gguf *g, const char *key)
{
    int64_t v;
    if (gguf_get_i64(g, key, &v) != 0 || v < 0 || v > INT32_MAX) return -1;
    return (int32_t)v;
}

static bool get_flag(const struct gguf *g, const char *key, bool dflt)
{
    bool b;
    return gguf_get_bool(g, key, &b) == 0 ? b : dflt;
}

/* An id key, or dflt when the key is absent; out-of-range values mean none. */
static int32_t get_id_or(const struct gguf *g, const char *key, int32_t dflt)
{
    return gguf_find_key(g, key) < 0 ? dflt : get_id(g, key);
}

int tokenizer_from_gguf(const struct gguf *g, struct engine_tokenizer **out, struct thaw_err *err)
{
    struct gguf_vocab v = {0};
    struct tokenizer_desc d = {0};
    const char *model;
    size_t mlen;
    int rc;
    *out = NULL;
    if (gguf_get_str(g, "tokenizer.ggml.model", &model, &mlen) != 0)
        return thaw_errf(err, THAW_EFORMAT, "tokenizer: tokenizer.ggml.model is missing");
    if (str_is(model, mlen, "llama"))
        d.kind = TOKENIZER_SPM;
    else if (str_is(model, mlen, "gpt2"))
        d.kind = TOKENIZER_BPE;
    else
        return thaw_errf(err, THAW_EUNSUPPORTED,
                         "tokenizer: tokenizer.ggml.model \"%.*s\" is not supported (llama, gpt2)",
                         (int)MIN(mlen, 64), model);
    if ((rc = read_tokens(g, &v, &d.n_tokens, err)) ||
        (rc = read_per_token(g, "tokenizer.ggml.scores", d.n_tokens, true, (void **)&v.scores,
                             err)) ||
        (rc = read_per_token(g, "tokenizer.ggml.token_type", d.n_tokens, false, (void **)&v.types,
                             err)))
        goto out_free;
    if (d.kind == TOKENIZER_BPE &&
        ((rc = pick_pre(g, &d.pre, err)) || (rc = read_merges(g, &v, &d.n_merges, err))))
        goto out_free;
    d.tokens = v.tokens;
    d.token_lens = v.token_lens;
    d.scores = v.scores;
    d.types = v.types;
    d.merges = v.merges;
    d.merge_lens = v.merge_lens;
    /* llama.cpp's defaults for SentencePiece vocabularies: <unk> <s> </s> */
    bool spm = d.kind == TOKENIZER_SPM;
    d.bos = get_id_or(g, "tokenizer.ggml.bos_token_id", spm ? 1 : -1);
    d.eos = get_id_or(g, "tokenizer.ggml.eos_token_id", spm ? 2 : -1);
    d.unk = get_id_or(g, "tokenizer.ggml.unknown_token_id", spm ? 0 : -1);
    d.pad = get_id(g, "tokenizer.ggml.padding_token_id");
    d.eot = get_id(g, "tokenizer.ggml.eot_token_id");
    d.eom = get_id(g, "tokenizer.ggml.eom_token_id");
    d.add_bos = get_flag(g, "tokenizer.ggml.add_bos_token", spm);
    d.add_eos = get_flag(g, "tokenizer.ggml.add_eos_token", false);
    d.add_space_prefix = get_flag(g, "tokenizer.ggml.add_space_prefix", spm);
    rc = tokenizer_new(&d, out, err);
out_free:
    vocab_free(&v);
    return rc;
}
