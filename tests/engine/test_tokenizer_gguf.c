/* tokenizer_from_gguf on small files written with the GGUF writer: a good
 * vocabulary encodes as the same description given directly, and missing,
 * mistyped or unsupported metadata gets a clear error. Needs no shared files. */
#include "engine/gguf.h"
#include "engine/text.h"
#include "test.h"

#include <unistd.h>

static char dir[64];

/* <unk> <s> </s>, 256 byte tokens, then a few pieces ("▁hi" last). */
static const char *spm_tokens[3 + 256 + 5];
static float spm_scores[3 + 256 + 5];
static int32_t spm_types[3 + 256 + 5];
static char byte_names[256][8];
enum { SPM_N = 3 + 256 + 5 };

static void make_spm_arrays(void)
{
    static const char *pieces[] = {"\xe2\x96\x81", "h", "i", "hi", "\xe2\x96\x81hi"};
    int n = 0;
    spm_tokens[n] = "<unk>", spm_types[n++] = 2;
    spm_tokens[n] = "<s>", spm_types[n++] = 3;
    spm_tokens[n] = "</s>", spm_types[n++] = 3;
    for (int b = 0; b < 256; b++) {
        snprintf(byte_names[b], sizeof(byte_names[b]), "<0x%02X>", b);
        spm_tokens[n] = byte_names[b], spm_types[n++] = 6;
    }
    for (int i = 0; i < 5; i++)
        spm_tokens[n] = pieces[i], spm_types[n] = 1, spm_scores[n++] = (float)i;
}

/* Writes a vocabulary-only file; `skip` names a key to leave out and `model`
 * overrides tokenizer.ggml.model. */
static int write_vocab(const char *path, const char *model, const char *skip, int n_types)
{
    struct gguf_writer *w = gguf_writer_new();
    struct thaw_err err = {0};
    int rc = 0;
    if (!w) return -1;
    rc |= gguf_writer_set_str(w, "general.architecture", "llama");
    if (!skip || strcmp(skip, "model") != 0)
        rc |= gguf_writer_set_str(w, "tokenizer.ggml.model", model);
    if (!skip || strcmp(skip, "tokens") != 0)
        rc |= gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", spm_tokens, SPM_N);
    rc |= gguf_writer_set_arr_f32(w, "tokenizer.ggml.scores", spm_scores, SPM_N);
    rc |= gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", spm_types, (uint64_t)n_types);
    rc |= gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    rc |= gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    rc |= gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", UINT32_MAX);
    rc |= gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    if (strcmp(model, "gpt2") == 0)
        rc |= gguf_writer_set_str(w, "tokenizer.ggml.pre", "mystery-pre");
    if (rc == 0) rc = gguf_writer_write(w, path, &err);
    if (rc) fprintf(stderr, "  write %s: %s\n", path, err.msg);
    gguf_writer_free(w);
    return rc;
}

static int load(const char *path, struct engine_tokenizer **tok, struct thaw_err *err)
{
    struct gguf *g = NULL;
    *tok = NULL;
    int rc = gguf_open(path, &g, err);
    if (rc == 0) rc = tokenizer_from_gguf(g, tok, err);
    gguf_close(g); /* the tokenizer copies what it needs */
    return rc;
}

static void test_good_vocab(void)
{
    char path[128];
    struct engine_tokenizer *tok = NULL, *direct = NULL;
    struct thaw_err err = {0};
    snprintf(path, sizeof(path), "%s/good.gguf", dir);
    ASSERT_EQ(write_vocab(path, "llama", NULL, SPM_N), 0);
    ASSERT_EQ(load(path, &tok, &err), 0);
    struct tokenizer_desc d = {.kind = TOKENIZER_SPM,
                               .n_tokens = SPM_N,
                               .tokens = spm_tokens,
                               .scores = spm_scores,
                               .types = spm_types,
                               .bos = 1,
                               .eos = 2,
                               .unk = 0,
                               .pad = -1,
                               .eot = -1,
                               .eom = -1,
                               .add_bos = true,
                               .add_space_prefix = true};
    ASSERT_EQ(tokenizer_new(&d, &direct, &err), 0);
    ASSERT_EQ(tokenizer_kind(tok), TOKENIZER_SPM);
    ASSERT_EQ(tokenizer_n_tokens(tok), SPM_N);
    ASSERT_EQ(tokenizer_bos(tok), 1);
    ASSERT(tokenizer_wants_bos(tok));
    const char *text = "hi hih \xc3\xa9";
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    ASSERT_EQ(tokenizer_encode(tok, text, strlen(text), true, false, &a, &na, NULL), 0);
    ASSERT_EQ(tokenizer_encode(direct, text, strlen(text), true, false, &b, &nb, NULL), 0);
    ASSERT_EQ(na, nb);
    for (size_t i = 0; i < na; i++)
        ASSERT_EQ(a[i], b[i]);
    ASSERT_EQ(a[0], 1);
    ASSERT_EQ(a[1], SPM_N - 1); /* "▁hi" */
    free(a);
    free(b);
    tokenizer_free(tok);
    tokenizer_free(direct);
}

static void test_bad_metadata(void)
{
    char path[128];
    struct engine_tokenizer *tok = NULL;
    struct thaw_err err = {0};
    snprintf(path, sizeof(path), "%s/bad.gguf", dir);
    ASSERT_EQ(write_vocab(path, "bert", NULL, SPM_N), 0);
    ASSERT_EQ(load(path, &tok, &err), THAW_EUNSUPPORTED);
    ASSERT_CONTAINS(err.msg, "bert");
    ASSERT_EQ(write_vocab(path, "llama", "model", SPM_N), 0);
    ASSERT_EQ(load(path, &tok, &err), THAW_EFORMAT);
    ASSERT_CONTAINS(err.msg, "tokenizer.ggml.model");
    ASSERT_EQ(write_vocab(path, "llama", "tokens", SPM_N), 0);
    ASSERT_EQ(load(path, &tok, &err), THAW_EFORMAT);
    ASSERT_CONTAINS(err.msg, "tokenizer.ggml.tokens");
    ASSERT_EQ(write_vocab(path, "llama", NULL, SPM_N - 1), 0);
    ASSERT_EQ(load(path, &tok, &err), THAW_EFORMAT);
    ASSERT_CONTAINS(err.msg, "token_type");
    /* a BPE file naming a pre-tokenizer we do not implement is refused by name */
    ASSERT_EQ(write_vocab(path, "gpt2", NULL, SPM_N), 0);
    ASSERT_EQ(load(path, &tok, &err), THAW_EUNSUPPORTED);
    ASSERT_CONTAINS(err.msg, "mystery-pre");
    ASSERT(tok == NULL);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/thaw-tokgguf-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    make_spm_arrays();
    RUN(test_good_vocab);
    RUN(test_bad_metadata);
    char path[128];
    snprintf(path, sizeof(path), "%s/good.gguf", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/bad.gguf", dir);
    unlink(path);
    rmdir(dir);
    return TEST_REPORT();
}
