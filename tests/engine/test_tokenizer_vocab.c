/* Tokenizers built from real vocabularies (../shared/models): llama.cpp's
 * test vectors for the Llama 2 SentencePiece and GPT-2 BPE vocabularies,
 * round trips and streaming decode, and the stories260K vocabulary. Skipped
 * with a message when the files are absent. */
#include "engine/gguf.h"
#include "engine/text.h"
#include "test.h"

#include <libgen.h>
#include <unistd.h>

static char models_dir[1024];

static bool find_models(void)
{
    const char *src = getenv("THAW_SOURCE_DIR");
    char here[1024];
    if (src)
        snprintf(models_dir, sizeof(models_dir), "%s/../shared/models", src);
    else {
        /* __FILE__ is tests/engine/<this>.c under the source dir */
        str_copy(here, __FILE__, sizeof(here));
        snprintf(models_dir, sizeof(models_dir), "%s/../../../shared/models", dirname(here));
    }
    return access(models_dir, R_OK) == 0;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct buf b = {0};
    char chunk[4096];
    size_t n;
    if (!f) return NULL;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(&b, chunk, n);
    fclose(f);
    buf_reserve(&b, 1);
    *len = b.len;
    return buf_steal(&b);
}

static struct engine_tokenizer *load(const char *rel, struct gguf **g)
{
    char path[1200];
    struct thaw_err err = {0};
    struct engine_tokenizer *tok = NULL;
    snprintf(path, sizeof(path), "%s/%s", models_dir, rel);
    if (gguf_open(path, g, &err) != 0) {
        fprintf(stderr, "  cannot open %s: %s\n", path, err.msg);
        return NULL;
    }
    if (tokenizer_from_gguf(*g, &tok, &err) != 0) fprintf(stderr, "  %s: %s\n", rel, err.msg);
    return tok;
}

/* Texts of a .inp file: separated by "\n__ggml_vocab_test__\n". */
static size_t split_inputs(char *s, size_t len, char **texts, size_t *lens, size_t max)
{
    const char *sep = "\n__ggml_vocab_test__\n";
    size_t n = 0, seplen = strlen(sep), pos = 0;
    while (pos < len && n < max) {
        char *next = memmem(s + pos, len - pos, sep, seplen);
        size_t end = next ? (size_t)(next - s) : len;
        texts[n] = s + pos;
        lens[n++] = end - pos;
        if (!next) break;
        pos = end + seplen;
    }
    return n;
}

static bool utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t l = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
        if (!l || i + l > n) return false;
        for (size_t k = 1; k < l; k++)
            if (((unsigned char)s[i + k] & 0xc0) != 0x80) return false;
        i += l;
    }
    return true;
}

/* Streams ids through a detokenizer; every chunk must be valid UTF-8 and the
 * chunks together must equal the whole decode. */
static bool stream_matches(const struct engine_tokenizer *tok, const int32_t *ids, size_t n,
                           unsigned flags, const struct buf *whole)
{
    struct engine_detok *d = NULL;
    struct buf all = {0}, chunk = {0};
    bool ok = tokenizer_detok_new(tok, flags, &d) == 0;
    for (size_t i = 0; ok && i < n; i++) {
        buf_reset(&chunk);
        ok =
            tokenizer_detok_push(d, ids[i], &chunk, NULL) == 0 && utf8_valid(chunk.data, chunk.len);
        buf_append(&all, chunk.data ? chunk.data : "", chunk.len);
    }
    ok = ok && tokenizer_detok_pending(d) == 0 && all.len == whole->len &&
         memcmp(all.data ? all.data : "", whole->data ? whole->data : "", all.len) == 0;
    tokenizer_detok_free(d);
    buf_free(&all);
    buf_free(&chunk);
    return ok;
}

static int check_vectors(const char *vocab)
{
    char path[1200];
    struct gguf *g = NULL;
    struct engine_tokenizer *tok = load(vocab, &g);
    char *inp = NULL, *outp = NULL, *texts[256], *lines[256];
    size_t ilen = 0, olen = 0, tlens[256], llens[256], bad = 0;
    if (!tok) return -1;
    snprintf(path, sizeof(path), "%s/%s.inp", models_dir, vocab);
    inp = read_file(path, &ilen);
    snprintf(path, sizeof(path), "%s/%s.out", models_dir, vocab);
    outp = read_file(path, &olen);
    size_t nt = inp ? split_inputs(inp, ilen, texts, tlens, 256) : 0;
    size_t nl = 0;
    for (char *p = outp, *e; p && nl < 256 && (e = strchr(p, '\n')); p = e + 1) {
        lines[nl] = p, llens[nl++] = (size_t)(e - p);
    }
    if (nt == 0 || nt != nl) {
        fprintf(stderr, "  %s: %zu texts but %zu expected lines\n", vocab, nt, nl);
        bad = 1000;
    }
    for (size_t t = 0; t < nt && t < nl; t++) {
        int32_t *ids = NULL;
        size_t n = 0;
        struct buf got = {0}, dec = {0};
        tokenizer_encode(tok, texts[t], tlens[t], false, false, &ids, &n, NULL);
        for (size_t i = 0; i < n; i++)
            buf_printf(&got, " %d", ids[i]);
        bool match =
            got.len == llens[t] && memcmp(got.data ? got.data : "", lines[t], got.len) == 0;
        if (!match) {
            bad++;
            fprintf(stderr, "  %s text %zu \"%.*s\":\n    want%.*s\n    got %s\n", vocab, t,
                    (int)tlens[t], texts[t], (int)llens[t], lines[t], got.data ? got.data : "");
        }
        /* decode(encode(x)) == x, and streaming equals the whole decode */
        tokenizer_decode(tok, ids, n, TOKENIZER_DECODE_STRIP_SPACE, &dec, NULL);
        if (dec.len != tlens[t] || memcmp(dec.data ? dec.data : "", texts[t], dec.len) != 0) {
            bad++;
            fprintf(stderr, "  %s text %zu: round trip gave \"%s\"\n", vocab, t,
                    dec.data ? dec.data : "");
        }
        if (!stream_matches(tok, ids, n, TOKENIZER_DECODE_STRIP_SPACE, &dec)) {
            bad++;
            fprintf(stderr, "  %s text %zu: streaming decode differs\n", vocab, t);
        }
        free(ids);
        buf_free(&got);
        buf_free(&dec);
    }
    fprintf(stderr, "  %s: %zu texts checked, %zu problems\n", vocab, nt, bad);
    free(inp);
    free(outp);
    tokenizer_free(tok);
    gguf_close(g);
    return (int)bad;
}

static void test_llama_spm_vectors(void)
{
    ASSERT_EQ(check_vectors("vocab/ggml-vocab-llama-spm.gguf"), 0);
}

static void test_gpt2_vectors(void)
{
    ASSERT_EQ(check_vectors("vocab/ggml-vocab-gpt-2.gguf"), 0);
}

/* Known ids of the Llama 2 vocabulary, and what add_bos / parse_special do. */
static void test_llama_specials(void)
{
    struct gguf *g = NULL;
    struct engine_tokenizer *tok = load("vocab/ggml-vocab-llama-spm.gguf", &g);
    int32_t *ids = NULL;
    size_t n = 0;
    ASSERT(tok);
    ASSERT_EQ(tokenizer_bos(tok), 1);
    ASSERT_EQ(tokenizer_eos(tok), 2);
    ASSERT(tokenizer_wants_bos(tok));
    ASSERT(tokenizer_is_eog(tok, 2));
    ASSERT(!tokenizer_is_eog(tok, 1));
    ASSERT_EQ(tokenizer_encode(tok, "</s>", 4, true, true, &ids, &n, NULL), 0);
    ASSERT_EQ(n, 2);
    ASSERT_EQ(ids[0], 1);
    ASSERT_EQ(ids[1], 2);
    free(ids);
    /* without parse_special the same text is plain text */
    ASSERT_EQ(tokenizer_encode(tok, "</s>", 4, false, false, &ids, &n, NULL), 0);
    ASSERT_CMP(n, >, 1);
    for (size_t i = 0; i < n; i++)
        ASSERT_NE(ids[i], 2);
    free(ids);
    tokenizer_free(tok);
    gguf_close(g);
}

static void test_stories_vocab(void)
{
    struct gguf *g = NULL;
    struct engine_tokenizer *tok = load("stories260K.gguf", &g);
    const char *text = "Once upon a time, there was a little girl named Lily.\nShe liked 🍎!";
    int32_t *ids = NULL;
    size_t n = 0;
    struct buf dec = {0};
    ASSERT(tok);
    ASSERT_EQ(tokenizer_n_tokens(tok), 512);
    ASSERT_EQ(tokenizer_encode(tok, text, strlen(text), true, false, &ids, &n, NULL), 0);
    ASSERT_CMP(n, >, 10);
    ASSERT_EQ(ids[0], 1);
    for (size_t i = 0; i < n; i++)
        ASSERT(ids[i] >= 0 && ids[i] < 512);
    /* neither the newline nor the emoji is among the 512 tokens: they go
     * through <0xXX> byte tokens (1 + 4) */
    size_t nbytes = 0;
    for (size_t i = 0; i < n; i++)
        nbytes += tokenizer_token_type(tok, ids[i]) == TOKENIZER_TYPE_BYTE;
    ASSERT_EQ(nbytes, 5);
    ASSERT_EQ(tokenizer_decode(tok, ids, n, TOKENIZER_DECODE_STRIP_SPACE, &dec, NULL), 0);
    ASSERT_STR_EQ(dec.data, text);
    ASSERT(stream_matches(tok, ids, n, TOKENIZER_DECODE_STRIP_SPACE, &dec));
    /* "Once" starts with the space SentencePiece adds: the token is "▁Once" */
    size_t len;
    const char *t = tokenizer_token_text(tok, ids[1], &len);
    ASSERT(t && len >= 3 && memcmp(t, "\xe2\x96\x81", 3) == 0);
    free(ids);
    buf_free(&dec);
    tokenizer_free(tok);
    gguf_close(g);
}

int main(void)
{
    if (!find_models()) {
        printf("skipped: %s not found (real vocabularies)\n", models_dir);
        printf("0 passed, 0 failed\n");
        return 0;
    }
    RUN(test_llama_spm_vectors);
    RUN(test_gpt2_vectors);
    RUN(test_llama_specials);
    RUN(test_stories_vocab);
    return TEST_REPORT();
}
