/* The tokenizer object: the vocabulary and its lookups, special-token
 * matching, encode (dispatching to SPM or BPE), decode, and the streaming
 * detokenizer that only ever emits whole UTF-8 characters. */
#include "engine/tokenizer_int.h"

#include <stdlib.h>
#include <string.h>

/* Control tokens that end a turn in the common chat formats. */
static const char *const eog_names[] = {
    "<|eot_id|>",
    "<|eom_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<EOT>",
    "<|END_OF_TURN_TOKEN|>",
    /* DeepSeek's end of sentence: fullwidth bars, U+2581 for spaces */
    "<\xef\xbd\x9c\x65nd\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
};

static uint64_t fnv1a(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 0x100000001b3ULL;
    return h;
}

static size_t tok_len(const struct engine_tokenizer *tok, int32_t id)
{
    return tok->off[id + 1] - tok->off[id];
}

int32_t tokenizer_lookup(const struct engine_tokenizer *tok, const char *s, size_t len)
{
    for (size_t i = fnv1a(s, len) & tok->slot_mask;; i = (i + 1) & tok->slot_mask) {
        int32_t id = tok->slots[i];
        if (id < 0) return -1;
        if (tok_len(tok, id) == len && memcmp(tok->text + tok->off[id], s, len) == 0) return id;
    }
}

int tokenizer_ids_push(struct tok_ids *ids, int32_t id)
{
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 64;
        int32_t *v = realloc(ids->v, cap * sizeof(*v));
        if (!v) return THAW_ENOMEM;
        ids->v = v, ids->cap = cap;
    }
    ids->v[ids->n++] = id;
    return 0;
}

static bool cand_before(const struct tok_cand *a, const struct tok_cand *b)
{
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

int tokenizer_heap_push(struct tok_heap *h, struct tok_cand c)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct tok_cand *v = realloc(h->v, cap * sizeof(*v));
        if (!v) return THAW_ENOMEM;
        h->v = v, h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0 && cand_before(&c, &h->v[(i - 1) / 2])) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = c;
    return 0;
}

struct tok_cand tokenizer_heap_pop(struct tok_heap *h)
{
    struct tok_cand top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && cand_before(&h->v[c + 1], &h->v[c])) c++;
        if (!cand_before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = last;
    return top;
}

static int copy_texts(struct engine_tokenizer *tok, const struct tokenizer_desc *d,
                      struct thaw_err *err)
{
    uint64_t total = 0;
    for (int32_t i = 0; i < d->n_tokens; i++) {
        if (!d->tokens[i]) return thaw_errf(err, THAW_EINVAL, "token %d has no text", i);
        total += d->token_lens ? d->token_lens[i] : strlen(d->tokens[i]);
    }
    if (total >= UINT32_MAX) return thaw_errf(err, THAW_EINVAL, "token texts too large");
    tok->text = malloc(total + 1);
    tok->off = malloc(((size_t)d->n_tokens + 1) * sizeof(*tok->off));
    if (!tok->text || !tok->off) return thaw_errf(err, THAW_ENOMEM, "out of memory");
    uint32_t o = 0;
    for (int32_t i = 0; i < d->n_tokens; i++) {
        size_t len = d->token_lens ? d->token_lens[i] : strlen(d->tokens[i]);
        tok->off[i] = o;
        memcpy(tok->text + o, d->tokens[i], len);
        o += (uint32_t)len;
    }
    tok->off[d->n_tokens] = o;
    return 0;
}

/* Later duplicates win, as in llama.cpp's token_to_id map. */
static int build_hash(struct engine_tokenizer *tok, struct thaw_err *err)
{
    size_t cap = 64;
    while (cap < 2 * (size_t)tok->n)
        cap *= 2;
    tok->slots = malloc(cap * sizeof(*tok->slots));
    if (!tok->slots) return thaw_errf(err, THAW_ENOMEM, "out of memory");
    memset(tok->slots, 0xff, cap * sizeof(*tok->slots));
    tok->slot_mask = cap - 1;
    for (int32_t id = 0; id < tok->n; id++) {
        const char *s = tok->text + tok->off[id];
        size_t len = tok_len(tok, id), i = fnv1a(s, len) & tok->slot_mask;
        for (;; i = (i + 1) & tok->slot_mask) {
            int32_t o = tok->slots[i];
            if (o < 0 || (tok_len(tok, o) == len && memcmp(tok->text + tok->off[o], s, len) == 0))
                break;
        }
        tok->slots[i] = id;
    }
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* SPM byte tokens are "<0xXX>"; BPE bytes are the mapped code points. */
static void build_bytes(struct engine_tokenizer *tok)
{
    for (int b = 0; b < 256; b++)
        tok->byte_id[b] = -1;
    if (tok->kind == TOKENIZER_BPE) {
        for (int b = 0; b < 256; b++) {
            char m[2];
            int l = tokenizer_byte_to_utf8((uint8_t)b, m);
            tok->byte_id[b] = tokenizer_lookup(tok, m, (size_t)l);
        }
        return;
    }
    for (int32_t id = 0; id < tok->n; id++) {
        const char *s = tok->text + tok->off[id];
        if (tok->type[id] != TOKENIZER_TYPE_BYTE || tok_len(tok, id) != 6) continue;
        if (memcmp(s, "<0x", 3) != 0 || s[5] != '>' || hexval(s[3]) < 0 || hexval(s[4]) < 0)
            continue;
        int b = hexval(s[3]) * 16 + hexval(s[4]);
        tok->flags[id] |= TOK_F_BYTE;
        tok->byte_val[id] = (uint8_t)b;
        if (tok->byte_id[b] < 0) tok->byte_id[b] = id;
    }
}

static int spec_cmp(const void *a, const void *b, void *arg)
{
    const struct engine_tokenizer *tok = arg;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint8_t fx = (uint8_t)tok->text[tok->off[x]], fy = (uint8_t)tok->text[tok->off[y]];
    if (fx != fy) return fx < fy ? -1 : 1;
    size_t lx = tok_len(tok, x), ly = tok_len(tok, y);
    if (lx != ly) return lx > ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* "<|...|>" or DeepSeek's "<｜...｜>": the markup of chat formats. Converters
 * older than llama.cpp's does_token_look_special left some of these
 * user-defined rather than control; user text must not be able to spell them
 * either. */
static bool looks_control(const char *s, size_t n)
{
    static const char bar[] = "\xef\xbd\x9c"; /* U+FF5C */
    if (n >= 4 && s[0] == '<' && s[1] == '|' && s[n - 2] == '|' && s[n - 1] == '>') return true;
    return n >= 8 && s[0] == '<' && memcmp(s + 1, bar, 3) == 0 && memcmp(s + n - 4, bar, 3) == 0 &&
           s[n - 1] == '>';
}

static int build_specials(struct engine_tokenizer *tok, struct thaw_err *err)
{
    size_t n = 0;
    tok->spec = malloc(((size_t)tok->n + 1) * sizeof(*tok->spec));
    if (!tok->spec) return thaw_errf(err, THAW_ENOMEM, "out of memory");
    for (int32_t id = 0; id < tok->n; id++) {
        uint8_t t = tok->type[id];
        if ((t == TOKENIZER_TYPE_CONTROL || t == TOKENIZER_TYPE_USER_DEFINED ||
             t == TOKENIZER_TYPE_UNKNOWN) &&
            tok_len(tok, id) > 0) {
            tok->spec[n++] = id;
            tok->flags[id] |= TOK_F_SPECIAL;
            if (t != TOKENIZER_TYPE_USER_DEFINED ||
                looks_control(tok->text + tok->off[id], tok_len(tok, id)))
                tok->flags[id] |= TOK_F_CONTROL;
        }
    }
    qsort_r(tok->spec, n, sizeof(*tok->spec), spec_cmp, tok);
    size_t k = 0;
    for (int b = 0; b < 256; b++) {
        tok->spec_start[b] = (uint32_t)k;
        while (k < n && (uint8_t)tok->text[tok->off[tok->spec[k]]] == b)
            k++;
    }
    tok->spec_start[256] = (uint32_t)n;
    return 0;
}

static void build_eog(struct engine_tokenizer *tok)
{
    int32_t ids[] = {tok->eos, tok->eot, tok->eom};
    for (size_t i = 0; i < ARRAY_LEN(ids); i++)
        if (ids[i] >= 0) tok->flags[ids[i]] |= TOK_F_EOG;
    for (size_t i = 0; i < ARRAY_LEN(eog_names); i++) {
        int32_t id = tokenizer_lookup(tok, eog_names[i], strlen(eog_names[i]));
        if (id >= 0 && tok->type[id] == TOKENIZER_TYPE_CONTROL) tok->flags[id] |= TOK_F_EOG;
    }
}

static int32_t opt_id(int32_t id, int32_t n)
{
    return id >= 0 && id < n ? id : -1;
}

int tokenizer_new(const struct tokenizer_desc *d, struct engine_tokenizer **out,
                  struct thaw_err *err)
{
    *out = NULL;
    if (!d || d->n_tokens <= 0 || !d->tokens)
        return thaw_errf(err, THAW_EINVAL, "tokenizer: empty vocabulary");
    if (d->kind != TOKENIZER_SPM && d->kind != TOKENIZER_BPE)
        return thaw_errf(err, THAW_EINVAL, "tokenizer: unknown kind %d", (int)d->kind);
    if (d->n_tokens >= INT32_MAX / 2)
        return thaw_errf(err, THAW_EINVAL, "tokenizer: %d tokens is too many", d->n_tokens);
    struct engine_tokenizer *tok = calloc(1, sizeof(*tok));
    if (!tok) return thaw_errf(err, THAW_ENOMEM, "out of memory");
    size_t n = (size_t)d->n_tokens;
    tok->kind = d->kind;
    tok->pre = d->pre;
    tok->n = d->n_tokens;
    tok->score = malloc(n * sizeof(*tok->score));
    tok->type = malloc(n);
    tok->flags = calloc(n, 1);
    tok->byte_val = calloc(n, 1);
    int rc = THAW_ENOMEM;
    if (!tok->score || !tok->type || !tok->flags || !tok->byte_val) {
        thaw_errf(err, rc, "out of memory");
        goto out_free;
    }
    for (size_t i = 0; i < n; i++) {
        int32_t t = d->types ? d->types[i] : TOKENIZER_TYPE_NORMAL;
        tok->type[i] = (uint8_t)(t >= TOKENIZER_TYPE_NORMAL && t <= TOKENIZER_TYPE_BYTE
                                     ? t
                                     : TOKENIZER_TYPE_NORMAL);
        tok->score[i] = d->scores ? d->scores[i] : 0.0f;
        if (tok->score[i] != tok->score[i]) tok->score[i] = -1e30f; /* NaN never wins */
    }
    tok->bos = opt_id(d->bos, tok->n);
    tok->eos = opt_id(d->eos, tok->n);
    tok->unk = opt_id(d->unk, tok->n);
    tok->pad = opt_id(d->pad, tok->n);
    tok->eot = opt_id(d->eot, tok->n);
    tok->eom = opt_id(d->eom, tok->n);
    tok->add_bos = d->add_bos;
    tok->add_eos = d->add_eos;
    tok->add_space_prefix = d->kind == TOKENIZER_SPM && d->add_space_prefix;
    tok->ignore_merges = d->kind == TOKENIZER_BPE && d->pre == TOKENIZER_PRE_LLAMA3;
    if ((rc = copy_texts(tok, d, err)) || (rc = build_hash(tok, err))) goto out_free;
    build_bytes(tok);
    if ((rc = build_specials(tok, err))) goto out_free;
    build_eog(tok);
    if (d->kind == TOKENIZER_BPE && (rc = tokenizer_bpe_build_merges(tok, d, err))) goto out_free;
    *out = tok;
    return 0;
out_free:
    tokenizer_free(tok);
    return rc;
}

void tokenizer_free(struct engine_tokenizer *tok)
{
    if (!tok) return;
    free(tok->text);
    free(tok->off);
    free(tok->score);
    free(tok->type);
    free(tok->flags);
    free(tok->byte_val);
    free(tok->slots);
    free(tok->merges);
    free(tok->spec);
    free(tok);
}

enum tokenizer_kind tokenizer_kind(const struct engine_tokenizer *tok)
{
    return tok->kind;
}
int32_t tokenizer_n_tokens(const struct engine_tokenizer *tok)
{
    return tok->n;
}
int32_t tokenizer_bos(const struct engine_tokenizer *tok)
{
    return tok->bos;
}
int32_t tokenizer_eos(const struct engine_tokenizer *tok)
{
    return tok->eos;
}
bool tokenizer_wants_bos(const struct engine_tokenizer *tok)
{
    return tok->add_bos && tok->bos >= 0;
}

bool tokenizer_is_eog(const struct engine_tokenizer *tok, int32_t id)
{
    return id >= 0 && id < tok->n && (tok->flags[id] & TOK_F_EOG);
}

const char *tokenizer_token_text(const struct engine_tokenizer *tok, int32_t id, size_t *len)
{
    if (id < 0 || id >= tok->n) return NULL;
    if (len) *len = tok_len(tok, id);
    return tok->text + tok->off[id];
}

enum tokenizer_token_type tokenizer_token_type(const struct engine_tokenizer *tok, int32_t id)
{
    return id >= 0 && id < tok->n ? (enum tokenizer_token_type)tok->type[id]
                                  : TOKENIZER_TYPE_UNUSED;
}

int32_t tokenizer_find(const struct engine_tokenizer *tok, const char *text, size_t len)
{
    return tokenizer_lookup(tok, text, len);
}

/* ------------------------------------------------------------------ encode */

/* The longest special token at s[0..n) that may match, or -1. A control
 * token must also fit in the first ctl bytes (where markup may be). */
static int32_t match_special(const struct engine_tokenizer *tok, const char *s, size_t n,
                             size_t ctl)
{
    uint8_t b = (uint8_t)s[0];
    for (uint32_t k = tok->spec_start[b]; k < tok->spec_start[b + 1]; k++) {
        int32_t id = tok->spec[k];
        size_t len = tok_len(tok, id);
        if (len > ((tok->flags[id] & TOK_F_CONTROL) ? ctl : n)) continue;
        if (memcmp(tok->text + tok->off[id], s, len) == 0) return id;
    }
    return -1;
}

/* SPM wants spaces as U+2581 and, like SentencePiece, a space in front. */
static int encode_raw(const struct engine_tokenizer *tok, const char *s, size_t n,
                      struct tok_ids *out)
{
    if (n == 0) return 0;
    if (tok->kind == TOKENIZER_BPE) return tokenizer_bpe_encode(tok, s, n, out);
    size_t spaces = tok->add_space_prefix;
    for (size_t i = 0; i < n; i++)
        spaces += s[i] == ' ';
    if (n + 2 * spaces < n) return THAW_ENOMEM;
    char *esc = malloc(n + 2 * spaces + 1);
    if (!esc) return THAW_ENOMEM;
    size_t k = 0;
    if (tok->add_space_prefix) {
        memcpy(esc, "\xe2\x96\x81", 3);
        k = 3;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ')
            memcpy(esc + k, "\xe2\x96\x81", 3), k += 3;
        else
            esc[k++] = s[i];
    }
    int rc = tokenizer_spm_encode(tok, esc, k, out);
    free(esc);
    return rc;
}

int tokenizer_encode_spans(const struct engine_tokenizer *tok, const char *text, size_t len,
                           const struct text_span *plain, size_t n_plain, bool add_bos,
                           int32_t **ids, size_t *n, struct thaw_err *err)
{
    *ids = NULL;
    *n = 0;
    for (size_t k = 0; k < n_plain; k++) {
        size_t prev_end = k ? plain[k - 1].off + plain[k - 1].len : 0;
        if (plain[k].off < prev_end || plain[k].off > len || plain[k].len > len - plain[k].off)
            return thaw_errf(err, THAW_EINVAL,
                             "tokenizer: plain span %zu (%zu+%zu) is out of order or past the "
                             "%zu-byte text",
                             k, plain[k].off, plain[k].len, len);
    }
    struct tok_ids out = {0};
    int rc = tokenizer_ids_push(&out, 0); /* so *ids is never NULL */
    size_t raw = 0, k = 0;
    out.n = 0;
    if (rc == 0 && add_bos && tok->bos >= 0) rc = tokenizer_ids_push(&out, tok->bos);
    /* Special tokens split the text; what lies between them is encoded as one
     * fragment, across the edges of plain spans, so a prompt whose plain text
     * spells no control token encodes as it would with parse_special. Every
     * raw fragment opens the text or follows a special token, so SPM gives
     * each one its space prefix (llama.cpp does the same). */
    for (size_t i = 0; rc == 0 && i < len;) {
        while (k < n_plain && plain[k].off + plain[k].len <= i)
            k++;
        /* bytes from i on where a control token may lie: up to the next plain span */
        size_t ctl = k == n_plain ? len - i : plain[k].off > i ? plain[k].off - i : 0;
        int32_t id = tok->spec_start[256] ? match_special(tok, text + i, len - i, ctl) : -1;
        if (id < 0) {
            i++;
            continue;
        }
        rc = encode_raw(tok, text + raw, i - raw, &out);
        if (rc == 0) rc = tokenizer_ids_push(&out, id);
        i += tok_len(tok, id);
        raw = i;
    }
    if (rc == 0) rc = encode_raw(tok, text + raw, len - raw, &out);
    if (rc == 0 && add_bos && tok->add_eos && tok->eos >= 0)
        rc = tokenizer_ids_push(&out, tok->eos);
    if (rc != 0) {
        free(out.v);
        return thaw_errf(err, rc, "tokenizer: out of memory encoding %zu bytes", len);
    }
    *ids = out.v;
    *n = out.n;
    return 0;
}

int tokenizer_encode(const struct engine_tokenizer *tok, const char *text, size_t len, bool add_bos,
                     bool parse_special, int32_t **ids, size_t *n, struct thaw_err *err)
{
    struct text_span all = {0, len};
    return tokenizer_encode_spans(tok, text, len, &all, parse_special ? 0 : 1, add_bos, ids, n,
                                  err);
}

/* ------------------------------------------------------------------ decode */

static int append_spm(const struct engine_tokenizer *tok, int32_t id, struct buf *out)
{
    const char *s = tok->text + tok->off[id];
    size_t len = tok_len(tok, id), i = 0, start = 0;
    int rc = buf_reserve(out, len);
    while (rc == 0 && i + 3 <= len) {
        if (memcmp(s + i, "\xe2\x96\x81", 3) != 0) {
            i++;
            continue;
        }
        rc = buf_append(out, s + start, i - start);
        if (rc == 0) rc = buf_append(out, " ", 1);
        i += 3;
        start = i;
    }
    return rc ? rc : buf_append(out, s + start, len - start);
}

static int append_bpe(const struct engine_tokenizer *tok, int32_t id, struct buf *out)
{
    const uint8_t *s = (const uint8_t *)tok->text + tok->off[id];
    size_t len = tok_len(tok, id);
    int rc = buf_reserve(out, len);
    for (size_t i = 0; rc == 0 && i < len;) {
        uint32_t cp;
        int l = tokenizer_utf8_next(s + i, len - i, &cp);
        int b = l > 0 ? tokenizer_cp_to_byte(cp) : -1;
        if (l <= 0) l = 1;
        if (b >= 0) {
            char c = (char)b;
            rc = buf_append(out, &c, 1);
        } else { /* not a byte-level symbol: keep it as it is */
            rc = buf_append(out, s + i, (size_t)l);
        }
        i += (size_t)l;
    }
    return rc;
}

static int append_piece(const struct engine_tokenizer *tok, int32_t id, unsigned flags,
                        struct buf *out)
{
    uint8_t t = tok->type[id];
    if (t == TOKENIZER_TYPE_CONTROL) {
        if (!(flags & TOKENIZER_DECODE_SPECIAL)) return 0;
        return buf_append(out, tok->text + tok->off[id], tok_len(tok, id));
    }
    if (tok->flags[id] & TOK_F_BYTE) return buf_append(out, &tok->byte_val[id], 1);
    if (tok->kind == TOKENIZER_SPM) {
        if (t == TOKENIZER_TYPE_UNKNOWN) return buf_append_str(out, "\xe2\x96\x85");
        return append_spm(tok, id, out);
    }
    if (t == TOKENIZER_TYPE_USER_DEFINED || t == TOKENIZER_TYPE_UNKNOWN)
        return buf_append(out, tok->text + tok->off[id], tok_len(tok, id));
    return append_bpe(tok, id, out);
}

/* One token of a decode; *at_start tracks the space prefix to strip. */
static int decode_one(const struct engine_tokenizer *tok, int32_t id, unsigned flags,
                      bool *at_start, struct buf *out)
{
    bool strip = (flags & TOKENIZER_DECODE_STRIP_SPACE) && tok->add_space_prefix && *at_start;
    if (strip && id == tok->bos) return 0;
    size_t before = out->len;
    int rc = append_piece(tok, id, flags, out);
    if (rc || out->len == before) return rc;
    if (strip && out->data[before] == ' ') {
        memmove(out->data + before, out->data + before + 1, out->len - before - 1);
        out->data[--out->len] = '\0';
    }
    *at_start = false;
    return 0;
}

int tokenizer_token_to_piece(const struct engine_tokenizer *tok, int32_t id, unsigned flags,
                             struct buf *out, struct thaw_err *err)
{
    if (id < 0 || id >= tok->n)
        return thaw_errf(err, THAW_ERANGE, "token id %d out of range (vocabulary of %d)", id,
                         tok->n);
    /* STRIP_SPACE is about the start of a sequence, not every piece */
    bool at_start = false;
    int rc = decode_one(tok, id, flags, &at_start, out);
    return rc ? thaw_errf(err, rc, "out of memory") : 0;
}

int tokenizer_decode(const struct engine_tokenizer *tok, const int32_t *ids, size_t n,
                     unsigned flags, struct buf *out, struct thaw_err *err)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= tok->n)
            return thaw_errf(err, THAW_ERANGE, "token %zu: id %d out of range (vocabulary of %d)",
                             i, ids[i], tok->n);
    bool at_start = true;
    size_t len0 = out->len;
    for (size_t i = 0; i < n; i++) {
        int rc = decode_one(tok, ids[i], flags, &at_start, out);
        if (rc) {
            out->len = len0;
            if (out->data) out->data[len0] = '\0';
            return thaw_errf(err, rc, "out of memory");
        }
    }
    return buf_reserve(out, 0);
}

/* -------------------------------------------------------- streaming decode */

struct engine_detok {
    const struct engine_tokenizer *tok;
    unsigned flags;
    bool at_start;
    uint8_t held[4];
    size_t n_held;
    struct buf work;
};

int tokenizer_detok_new(const struct engine_tokenizer *tok, unsigned flags,
                        struct engine_detok **out)
{
    struct engine_detok *d = calloc(1, sizeof(*d));
    *out = d;
    if (!d) return THAW_ENOMEM;
    d->tok = tok;
    d->flags = flags;
    d->at_start = true;
    return 0;
}

void tokenizer_detok_free(struct engine_detok *d)
{
    if (!d) return;
    buf_free(&d->work);
    free(d);
}

size_t tokenizer_detok_pending(const struct engine_detok *d)
{
    return d->n_held;
}

static const char replacement[] = "\xef\xbf\xbd";

int tokenizer_detok_push(struct engine_detok *d, int32_t id, struct buf *out, struct thaw_err *err)
{
    if (id < 0 || id >= d->tok->n)
        return thaw_errf(err, THAW_ERANGE, "token id %d out of range (vocabulary of %d)", id,
                         d->tok->n);
    buf_reset(&d->work);
    int rc = buf_append(&d->work, d->held, d->n_held);
    bool at_start = d->at_start;
    if (rc == 0) rc = decode_one(d->tok, id, d->flags, &at_start, &d->work);
    if (rc) return thaw_errf(err, rc, "out of memory");
    const uint8_t *s = (const uint8_t *)d->work.data;
    size_t n = d->work.len, i = 0, good = 0, len0 = out->len;
    size_t hold = 0;
    /* Copy whole characters; a stray byte becomes U+FFFD; a valid prefix at
     * the very end waits for the next token. */
    while (rc == 0 && i < n) {
        uint32_t cp;
        int l = tokenizer_utf8_next(s + i, n - i, &cp);
        if (l > 0) {
            i += (size_t)l;
            continue;
        }
        rc = buf_append(out, s + good, i - good);
        if (l == 0) {
            hold = n - i;
            good = i = n;
            break;
        }
        if (rc == 0) rc = buf_append(out, replacement, 3);
        good = ++i;
    }
    if (rc == 0) rc = buf_append(out, s + good, i - good);
    if (rc) {
        out->len = len0;
        if (out->data) out->data[len0] = '\0';
        return thaw_errf(err, rc, "out of memory");
    }
    memcpy(d->held, s + n - hold, hold);
    d->n_held = hold;
    d->at_start = at_start;
    return 0;
}

int tokenizer_detok_flush(struct engine_detok *d, struct buf *out)
{
    if (d->n_held == 0) return 0;
    d->n_held = 0;
    return buf_append(out, replacement, 3);
}
