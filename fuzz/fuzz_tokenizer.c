/* libFuzzer target for the text side of the engine: arbitrary bytes are
 * encoded with small built-in SentencePiece and BPE vocabularies (every
 * pre-tokenizer), decoded whole and streamed, and must round-trip; the same
 * bytes are also read as token ids (out-of-range ones included), as a chat
 * template to match, and as a stream for the stop-string matcher. */
#include "engine/tokenizer_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N_BPE = 4 };
static struct engine_tokenizer *spm, *bpe[N_BPE];

static struct engine_tokenizer *make_spm(void)
{
    static const char *pieces[] = {"\xe2\x96\x81", "a",  "b",   "\xe2\x96\x81the",
                                   "th",           "he", "the", "\xe2\x96\x81t",
                                   "\xc3\xa9"};
    static char bytes[256][8];
    const char *tok[3 + 256 + 9];
    float score[3 + 256 + 9];
    int32_t type[3 + 256 + 9];
    int32_t n = 0;
    tok[n] = "<unk>", type[n] = TOKENIZER_TYPE_UNKNOWN, score[n++] = 0;
    tok[n] = "<s>", type[n] = TOKENIZER_TYPE_CONTROL, score[n++] = 0;
    tok[n] = "</s>", type[n] = TOKENIZER_TYPE_CONTROL, score[n++] = 0;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof(bytes[b]), "<0x%02X>", b);
        tok[n] = bytes[b], type[n] = TOKENIZER_TYPE_BYTE, score[n++] = 0;
    }
    for (int i = 0; i < 9; i++)
        tok[n] = pieces[i], type[n] = TOKENIZER_TYPE_NORMAL, score[n++] = (float)-i;
    struct tokenizer_desc d = {.kind = TOKENIZER_SPM,
                               .n_tokens = n,
                               .tokens = tok,
                               .scores = score,
                               .types = type,
                               .bos = 1,
                               .eos = 2,
                               .unk = 0,
                               .pad = -1,
                               .eot = -1,
                               .eom = -1,
                               .add_bos = true,
                               .add_space_prefix = true};
    struct engine_tokenizer *t = NULL;
    if (tokenizer_new(&d, &t, NULL) != 0) abort();
    return t;
}

static struct engine_tokenizer *make_bpe(enum tokenizer_pre pre)
{
    static char bytes[256][3];
    static const char *extra[] = {"he",          "ll", "hello",        "\xc4\xa0t",
                                  "\xc4\xa0the", "th", "<|im_start|>", "<|im_end|>"};
    static const char *merges[] = {"h e", "l l", "\xc4\xa0 t", "t h", "\xc4\xa0t he"};
    const char *tok[256 + 8];
    int32_t type[256 + 8];
    int32_t n = 0;
    for (int b = 0; b < 256; b++) {
        int l = tokenizer_byte_to_utf8((uint8_t)b, bytes[b]);
        bytes[b][l] = '\0';
        tok[n] = bytes[b], type[n++] = TOKENIZER_TYPE_NORMAL;
    }
    for (int i = 0; i < 8; i++)
        tok[n] = extra[i], type[n++] = i >= 6 ? TOKENIZER_TYPE_CONTROL : TOKENIZER_TYPE_NORMAL;
    struct tokenizer_desc d = {.kind = TOKENIZER_BPE,
                               .pre = pre,
                               .n_tokens = n,
                               .tokens = tok,
                               .types = type,
                               .merges = merges,
                               .n_merges = 5,
                               .bos = -1,
                               .eos = n - 1,
                               .unk = -1,
                               .pad = -1,
                               .eot = -1,
                               .eom = -1};
    struct engine_tokenizer *t = NULL;
    if (tokenizer_new(&d, &t, NULL) != 0) abort();
    return t;
}

static void init(void)
{
    if (spm) return;
    spm = make_spm();
    bpe[0] = make_bpe(TOKENIZER_PRE_GPT2);
    bpe[1] = make_bpe(TOKENIZER_PRE_LLAMA3);
    bpe[2] = make_bpe(TOKENIZER_PRE_QWEN2);
    bpe[3] = make_bpe(TOKENIZER_PRE_SMOLLM);
}

static bool utf8_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = tokenizer_utf8_next((const uint8_t *)s + i, n - i, &cp);
        if (l <= 0) return false;
        i += (size_t)l;
    }
    return true;
}

/* Encode, decode, stream; a lossless vocabulary must give the bytes back.
 * Not checked for SentencePiece text that itself holds "▁" (U+2581): it is
 * the space marker, so it decodes as a space, as in SentencePiece. */
static void round_trip(const struct engine_tokenizer *t, const char *s, size_t n, bool special)
{
    int32_t *ids = NULL;
    size_t nid = 0;
    unsigned flags = TOKENIZER_DECODE_STRIP_SPACE | (special ? TOKENIZER_DECODE_SPECIAL : 0);
    struct buf whole = {0}, streamed = {0};
    struct engine_detok *d = NULL;
    if (tokenizer_encode(t, s, n, special, special, &ids, &nid, NULL) != 0) abort();
    if (tokenizer_decode(t, ids, nid, flags, &whole, NULL) != 0) abort();
    bool lossless =
        !special && !(tokenizer_kind(t) == TOKENIZER_SPM && memmem(s, n, "\xe2\x96\x81", 3));
    if (lossless && (whole.len != n || (n && memcmp(whole.data, s, n) != 0))) abort();
    if (tokenizer_detok_new(t, flags, &d) != 0) abort();
    for (size_t i = 0; i < nid; i++)
        if (tokenizer_detok_push(d, ids[i], &streamed, NULL) != 0) abort();
    tokenizer_detok_flush(d, &streamed);
    if (!utf8_ok(streamed.data ? streamed.data : "", streamed.len)) abort();
    if (utf8_ok(whole.data ? whole.data : "", whole.len) &&
        (streamed.len != whole.len || (whole.len && memcmp(streamed.data, whole.data, whole.len))))
        abort();
    tokenizer_detok_free(d);
    buf_free(&whole);
    buf_free(&streamed);
    free(ids);
}

/* The middle third as users' text inside markup: control tokens only
 * outside it, and (lossless vocabularies) the bytes come back whatever
 * matched where. */
static void spans(const struct engine_tokenizer *t, const char *s, size_t n)
{
    struct text_span plain = {n / 3, n / 3};
    int32_t *ids = NULL;
    size_t nid = 0;
    struct buf whole = {0};
    if (tokenizer_encode_spans(t, s, n, &plain, 1, false, &ids, &nid, NULL) != 0) abort();
    for (size_t i = 0; i < nid; i++)
        if (ids[i] < 0 || ids[i] >= tokenizer_n_tokens(t)) abort();
    if (tokenizer_decode(t, ids, nid, TOKENIZER_DECODE_SPECIAL, &whole, NULL) != 0) abort();
    if (tokenizer_kind(t) == TOKENIZER_BPE && (whole.len != n || (n && memcmp(whole.data, s, n))))
        abort();
    buf_free(&whole);
    free(ids);
}

/* The bytes as little-endian int16 ids, so some are out of range. */
static void decode_ids(const struct engine_tokenizer *t, const uint8_t *data, size_t size)
{
    int32_t ids[512];
    size_t n = 0;
    struct buf out = {0};
    struct engine_detok *d = NULL;
    for (size_t i = 0; i + 1 < size && n < 512; i += 2)
        ids[n++] = (int16_t)(data[i] | data[i + 1] << 8);
    tokenizer_decode(t, ids, n, TOKENIZER_DECODE_SPECIAL, &out, NULL);
    if (tokenizer_detok_new(t, 0, &d) != 0) abort();
    for (size_t i = 0; i < n; i++)
        tokenizer_detok_push(d, ids[i], &out, NULL);
    tokenizer_detok_flush(d, &out);
    tokenizer_detok_free(d);
    buf_free(&out);
}

static void stop_strings(const char *s, size_t n)
{
    const char *stops[] = {"</s>", "\n\n", "aa", "\xe2\x96"};
    struct sampler_stop *st = NULL;
    struct buf out = {0};
    int rc = 0;
    if (sampler_stop_new(stops, 4, &st) != 0) abort();
    for (size_t i = 0; i < n && rc == 0; i += 3)
        rc = sampler_stop_push(st, s + i, MIN(3, n - i), &out);
    if (rc == 0) sampler_stop_flush(st, &out);
    if (out.len > n) abort();
    sampler_stop_free(st);
    buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    if (size > 4096) return 0; /* long inputs only slow the search down */
    const char *s = (const char *)data;
    round_trip(spm, s, size, false);
    round_trip(spm, s, size, true);
    spans(spm, s, size);
    for (int i = 0; i < N_BPE; i++) {
        round_trip(bpe[i], s, size, false);
        round_trip(bpe[i], s, size, true);
        spans(bpe[i], s, size);
    }
    decode_ids(spm, data, size);
    decode_ids(bpe[0], data, size);
    enum chat_family f;
    chat_family_detect(s, size, &f, NULL);
    stop_strings(s, size);
    return 0;
}
