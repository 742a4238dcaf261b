/* The model generator: same seed gives the same bytes, shapes and
 * fallbacks as asked, and a vocabulary the tokenizer can load and round-trip.
 * Also drives `thaw model ...` and `thaw generate` when THAW_BIN is set. */
#include "engine/engine.h"
#include "test.h"

#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#define KERN_N_TYPES_TEST 31 /* ggml type ids below this */

/* A path under /tmp of this process: several checkouts run these tests at
 * once on one machine, and a fixed name let one run read another's file
 * while it was being rewritten. */
static const char *tmp_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "/tmp/thaw_test_gen_%d_%s.gguf", (int)getpid(), name);
    return buf;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(n > 0 ? n : 1);
    if (p && fread(p, 1, n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void test_deterministic(void)
{
    struct engine_gen_params p;
    struct thaw_err err = {0};
    ASSERT_EQ(engine_gen_preset("tiny-qwen2", &p, &err), 0);
    p.type = GGML_TYPE_Q4_K;
    char pa[128], pb[128];
    const char *a = tmp_path(pa, sizeof pa, "a"), *b = tmp_path(pb, sizeof pb, "b");
    ASSERT_EQ(engine_gen_write(&p, a, NULL, &err), 0);
    ASSERT_EQ(engine_gen_write(&p, b, NULL, &err), 0);
    size_t la, lb;
    uint8_t *da = slurp(a, &la), *db = slurp(b, &lb);
    ASSERT(da && db);
    int same = la == lb && !memcmp(da, db, la);
    free(db);
    p.seed = 2;
    ASSERT_EQ(engine_gen_write(&p, b, NULL, &err), 0);
    db = slurp(b, &lb);
    int differs = la == lb && memcmp(da, db, la) != 0; /* same layout, other weights */
    free(da), free(db);
    unlink(a), unlink(b);
    ASSERT(same);
    ASSERT(differs);
}

/* A smollm2-shaped Q4_K file: rows of 576 do not fit 256-blocks, so those
 * tensors fall back to Q5_0 while rows of 1536 stay Q4_K. */
static void test_fallback_types(void)
{
    struct engine_gen_params p;
    struct thaw_err err = {0};
    ASSERT_EQ(engine_gen_preset("smollm2-135m", &p, &err), 0);
    p.type = GGML_TYPE_Q4_K;
    p.n_layer = 1;
    p.n_vocab = 1000;
    char pbuf[128];
    const char *path = tmp_path(pbuf, sizeof pbuf, "fb");
    int nf = -1;
    ASSERT_EQ(engine_gen_write(&p, path, &nf, &err), 0);
    struct engine_model *m;
    ASSERT_EQ(engine_model_load(path, &m, &err), 0);
    const struct gguf *g = engine_model_gguf(m);
    ASSERT_EQ(gguf_find_tensor(g, "blk.0.attn_q.weight")->type, GGML_TYPE_Q5_0);
    ASSERT_EQ(gguf_find_tensor(g, "blk.0.ffn_down.weight")->type, GGML_TYPE_Q4_K);
    ASSERT_EQ(gguf_find_tensor(g, "token_embd.weight")->type, GGML_TYPE_Q5_0);
    ASSERT_EQ(nf, 7); /* q, k, v, o, gate, up, token_embd */
    const struct engine_model_info *hp = engine_model_info(m);
    ASSERT_EQ(hp->n_embd, 576);
    ASSERT_EQ(hp->n_head, 9);
    ASSERT_EQ(hp->n_head_kv, 3);
    ASSERT_EQ(hp->n_ff, 1536);
    ASSERT(hp->tied_output);
    engine_model_free(m);
    unlink(path);
    ASSERT_EQ(engine_gen_preset("gpt-9", &p, &err), THAW_ENOTFOUND);
    ASSERT_CONTAINS(err.msg, "tinyllama-1.1b");
    ASSERT_EQ(engine_gen_preset("tiny", &p, &err), 0);
    p.n_head_kv = 3;
    ASSERT_EQ(engine_gen_write(&p, path, NULL, &err), THAW_EINVAL);
}

/* Counts of each type among a model's tensors of two dimensions. */
static void count_types(const struct gguf *g, int n[KERN_N_TYPES_TEST])
{
    memset(n, 0, sizeof(int) * KERN_N_TYPES_TEST);
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(g, i);
        if (t->n_dims == 2 && t->type < KERN_N_TYPES_TEST) n[t->type]++;
    }
}

/* llama.cpp's Q4_K_M mixture. A model 576 wide (SmolLM2-135M, here
 * narrowed to 96 with the same 30 layers, tied output and a 256-multiple
 * ffn) is mostly Q5_0: llama.cpp's file of that shape holds Q5_0 x166,
 * Q8_0 x15 (the more-bits attn_v and the tied embedding), Q6_K x14 and
 * Q4_K x16 (ffn_down). A 256-wide untied one: Q6_K output, Q4_K embedding,
 * attn_v and ffn_down Q6_K in layers 0, 3, 6, 7 of 8. */
static void test_q4_k_m_mixture(void)
{
    struct engine_gen_params p;
    struct thaw_err err = {0};
    ASSERT_EQ(engine_gen_preset("smollm2-135m", &p, &err), 0);
    p.q4_k_m = true;
    p.n_embd = 96, p.n_head = 3, p.n_head_kv = 1, p.n_ff = 256, p.n_vocab = 300;
    char pbuf[128];
    const char *path = tmp_path(pbuf, sizeof pbuf, "q4km");
    int nf = -1, n[KERN_N_TYPES_TEST];
    ASSERT_EQ(engine_gen_write(&p, path, &nf, &err), 0);
    struct engine_model *m;
    ASSERT_EQ(engine_model_load(path, &m, &err), 0);
    const struct gguf *g = engine_model_gguf(m);
    count_types(g, n);
    ASSERT_EQ(n[GGML_TYPE_Q5_0], 166);
    ASSERT_EQ(n[GGML_TYPE_Q8_0], 15);
    ASSERT_EQ(n[GGML_TYPE_Q6_K], 14);
    ASSERT_EQ(n[GGML_TYPE_Q4_K], 16);
    ASSERT_EQ(nf, 166 + 14); /* the tied embedding is Q8_0 straight, not a fallback */
    ASSERT_EQ(gguf_find_tensor(g, "token_embd.weight")->type, GGML_TYPE_Q8_0);
    ASSERT_EQ(gguf_find_tensor(g, "blk.2.ffn_down.weight")->type, GGML_TYPE_Q6_K);
    ASSERT_EQ(gguf_find_tensor(g, "blk.3.ffn_down.weight")->type, GGML_TYPE_Q4_K);
    ASSERT_EQ(gguf_find_tensor(g, "blk.5.attn_v.weight")->type, GGML_TYPE_Q8_0);
    ASSERT_EQ(gguf_find_tensor(g, "blk.6.attn_v.weight")->type, GGML_TYPE_Q5_0);
    ASSERT_EQ(gguf_find_tensor(g, "blk.0.attn_norm.weight")->type, GGML_TYPE_F32);
    engine_model_free(m);

    ASSERT_EQ(engine_gen_preset("tiny", &p, &err), 0);
    p.q4_k_m = true;
    p.n_layer = 8;
    ASSERT_EQ(engine_gen_write(&p, path, &nf, &err), 0);
    ASSERT_EQ(nf, 0);
    ASSERT_EQ(engine_model_load(path, &m, &err), 0);
    g = engine_model_gguf(m);
    ASSERT_EQ(gguf_find_tensor(g, "output.weight")->type, GGML_TYPE_Q6_K);
    ASSERT_EQ(gguf_find_tensor(g, "token_embd.weight")->type, GGML_TYPE_Q4_K);
    for (int il = 0; il < 8; il++) {
        char name[64];
        enum ggml_type want = il == 0 || il == 3 || il >= 6 ? GGML_TYPE_Q6_K : GGML_TYPE_Q4_K;
        snprintf(name, sizeof name, "blk.%d.attn_v.weight", il);
        ASSERT_EQ(gguf_find_tensor(g, name)->type, want);
        snprintf(name, sizeof name, "blk.%d.ffn_down.weight", il);
        ASSERT_EQ(gguf_find_tensor(g, name)->type, want);
        snprintf(name, sizeof name, "blk.%d.attn_k.weight", il);
        ASSERT_EQ(gguf_find_tensor(g, name)->type, GGML_TYPE_Q4_K);
    }
    count_types(g, n);
    ASSERT_EQ(n[GGML_TYPE_Q6_K], 2 * 4 + 1);
    engine_model_free(m);
    unlink(path);
}

static void test_vocab_loads(void)
{
    struct engine_gen_params p;
    struct thaw_err err = {0};
    ASSERT_EQ(engine_gen_preset("tiny", &p, &err), 0);
    p.n_vocab = 2000;
    char pbuf[128];
    const char *path = tmp_path(pbuf, sizeof pbuf, "vocab");
    ASSERT_EQ(engine_gen_write(&p, path, NULL, &err), 0);
    struct gguf *g;
    ASSERT_EQ(gguf_open(path, &g, &err), 0);
    struct engine_tokenizer *tok;
    ASSERT_EQ(tokenizer_from_gguf(g, &tok, &err), 0);
    ASSERT_EQ(tokenizer_n_tokens(tok), 2000);
    ASSERT_EQ(tokenizer_bos(tok), 1);
    ASSERT_EQ(tokenizer_eos(tok), 2);
    const char *text = "the quick brown fox, jumps! \xc3\xa9t\xc3\xa9";
    int32_t *ids;
    size_t n;
    ASSERT_EQ(tokenizer_encode(tok, text, strlen(text), true, false, &ids, &n, &err), 0);
    ASSERT(n > 3);
    ASSERT_EQ(ids[0], 1);
    struct buf out = {0};
    ASSERT_EQ(tokenizer_decode(tok, ids, n, TOKENIZER_DECODE_STRIP_SPACE, &out, &err), 0);
    ASSERT_STR_EQ(out.data, text); /* byte fallback covers the accents */
    buf_free(&out);
    free(ids);
    tokenizer_free(tok);
    gguf_close(g);
    unlink(path);
}

/* Runs a shell command, captures stdout (and stderr when err2out). */
static int sh(const char *cmd, struct buf *out)
{
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    char chunk[4096];
    size_t n;
    buf_reset(out);
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_append(out, chunk, n);
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void)
{
    const char *bin = getenv("THAW_BIN");
    if (!bin || access(bin, X_OK)) {
        fprintf(stderr, "  SKIP: THAW_BIN not set (run through ctest)\n");
        return;
    }
    char cmd[1024];
    struct buf out = {0}, out2 = {0};
    char pbuf[128];
    const char *path = tmp_path(pbuf, sizeof pbuf, "cli");
    snprintf(cmd, sizeof cmd, "%s model gen --preset tiny --type Q8_0 --seed 4 -o %s 2>&1", bin,
             path);
    ASSERT_EQ(sh(cmd, &out), 0);
    snprintf(cmd, sizeof cmd, "%s model info %s", bin, path);
    ASSERT_EQ(sh(cmd, &out), 0);
    ASSERT_CONTAINS(out.data, "llama.embedding_length");
    ASSERT_CONTAINS(out.data, "blk.1.ffn_down.weight");
    ASSERT_CONTAINS(out.data, "Q8_0");
    ASSERT_CONTAINS(out.data, "dim 256, layers 2");
    snprintf(cmd, sizeof cmd, "%s model tokenize %s 'ab c'", bin, path);
    ASSERT_EQ(sh(cmd, &out), 0);
    ASSERT(out.len > 1 && out.data[0] != '1'); /* no BOS by default */
    snprintf(cmd, sizeof cmd, "%s model tokenize %s 'ab c' --bos", bin, path);
    ASSERT_EQ(sh(cmd, &out2), 0);
    ASSERT(!strncmp(out2.data, "1 ", 2));
    ASSERT_STR_EQ(out2.data + 2, out.data);
    /* TEXT is plain text, as a deployment reads a prompt; --special parses
     * control tokens (</s> is id 2 in a generated vocabulary) */
    snprintf(cmd, sizeof cmd, "%s model tokenize %s 'ab</s>'", bin, path);
    ASSERT_EQ(sh(cmd, &out), 0);
    ASSERT(strstr(out.data, " 2\n") == NULL && strncmp(out.data, "2 ", 2) != 0);
    snprintf(cmd, sizeof cmd, "%s model tokenize %s 'ab</s>' --special", bin, path);
    ASSERT_EQ(sh(cmd, &out2), 0);
    ASSERT(strstr(out2.data, " 2\n") != NULL);
    snprintf(cmd, sizeof cmd, "%s generate -m %s -p 'the cat' -n 6 --temp 0 2>/dev/null", bin,
             path);
    ASSERT_EQ(sh(cmd, &out), 0);
    ASSERT_EQ(sh(cmd, &out2), 0);
    ASSERT(out.len > 1);
    ASSERT_STR_EQ(out.data, out2.data); /* greedy is reproducible */
    snprintf(cmd, sizeof cmd,
             "%s generate -m %s -p 'the cat' -n 6 --temp 0 --threads 2 2>/dev/null", bin, path);
    ASSERT_EQ(sh(cmd, &out2), 0);
    ASSERT_STR_EQ(out.data, out2.data);
    snprintf(cmd, sizeof cmd, "%s generate -m /nonexistent.gguf -p x 2>&1", bin);
    ASSERT_EQ(sh(cmd, &out), 1);
    ASSERT_CONTAINS(out.data, "/nonexistent.gguf");
    /* llama.cpp's Q4_K_M mixture by name */
    snprintf(cmd, sizeof cmd, "%s model gen --preset tiny --type q4_k_m -o %s 2>&1", bin, path);
    ASSERT_EQ(sh(cmd, &out), 0);
    ASSERT_CONTAINS(out.data, "Q4_K_M");
    snprintf(cmd, sizeof cmd, "%s model info %s", bin, path);
    ASSERT_EQ(sh(cmd, &out), 0);
    ASSERT_CONTAINS(out.data, "Q6_K");
    ASSERT_CONTAINS(out.data, "Q4_K ");
    snprintf(cmd, sizeof cmd, "%s model gen --preset tiny 2>&1", bin);
    ASSERT_EQ(sh(cmd, &out), 2);
    buf_free(&out);
    buf_free(&out2);
    unlink(path);
}

int main(void)
{
    RUN(test_deterministic);
    RUN(test_fallback_types);
    RUN(test_q4_k_m_mixture);
    RUN(test_vocab_loads);
    RUN(test_cli);
    return TEST_REPORT();
}
