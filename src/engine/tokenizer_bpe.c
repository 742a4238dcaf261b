/* Byte-level BPE ("gpt2"): split the text into words with the model's
 * pre-tokenizer, map each byte to its GPT-2 code point (one starting symbol
 * per byte), then repeatedly merge the adjacent pair with the lowest merge
 * rank (leftmost on ties) through a priority queue. */
#include "engine/tokenizer_int.h"

#include <stdlib.h>
#include <string.h>

struct bsym {
    int32_t id; /* token of the symbol so far; -1 if the vocabulary lacks the byte */
    int32_t prev, next;
    bool dead;
};

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static const struct tok_merge *merge_find(const struct engine_tokenizer *tok, int32_t l, int32_t r)
{
    if (!tok->merges || l < 0 || r < 0) return NULL;
    uint64_t key = ((uint64_t)(uint32_t)(l + 1) << 32) | (uint32_t)(r + 1);
    for (size_t i = mix64(key) & tok->merge_mask;; i = (i + 1) & tok->merge_mask) {
        if (tok->merges[i].key == key) return &tok->merges[i];
        if (tok->merges[i].key == 0) return NULL;
    }
}

static int try_pair(const struct engine_tokenizer *tok, struct bsym *sy, int32_t l, int32_t r,
                    struct tok_heap *h)
{
    if (l < 0 || r < 0) return 0;
    const struct tok_merge *m = merge_find(tok, sy[l].id, sy[r].id);
    if (!m) return 0;
    return tokenizer_heap_push(
        h, (struct tok_cand){
               .key = m->rank, .left = l, .right = r, .u.bpe = {sy[l].id, sy[r].id, m->result}});
}

/* Whole-word lookup for ignore_merges: the word in its byte-mapped form. */
static int32_t whole_word(const struct engine_tokenizer *tok, const char *w, size_t len, char *map)
{
    size_t k = 0;
    for (size_t i = 0; i < len; i++)
        k += (size_t)tokenizer_byte_to_utf8((uint8_t)w[i], map + k);
    return tokenizer_lookup(tok, map, k);
}

static int encode_word(const struct engine_tokenizer *tok, const char *w, size_t len,
                       struct bsym *sy, struct tok_heap *h, char *map, struct tok_ids *out)
{
    int rc = 0;
    if (tok->ignore_merges) {
        int32_t id = whole_word(tok, w, len, map);
        if (id >= 0) return tokenizer_ids_push(out, id);
    }
    int32_t n = (int32_t)len;
    for (int32_t i = 0; i < n; i++)
        sy[i] = (struct bsym){tok->byte_id[(uint8_t)w[i]], i - 1, i + 1 < n ? i + 1 : -1, false};
    h->n = 0;
    for (int32_t i = 0; i + 1 < n && rc == 0; i++)
        rc = try_pair(tok, sy, i, i + 1, h);
    while (rc == 0 && h->n > 0) {
        struct tok_cand p = tokenizer_heap_pop(h);
        struct bsym *l = &sy[p.left], *r = &sy[p.right];
        if (l->dead || r->dead || l->next != p.right || l->id != p.u.bpe.lid ||
            r->id != p.u.bpe.rid)
            continue;
        l->id = p.u.bpe.result;
        r->dead = true;
        l->next = r->next;
        if (r->next >= 0) sy[r->next].prev = p.left;
        rc = try_pair(tok, sy, l->prev, p.left, h);
        if (rc == 0) rc = try_pair(tok, sy, p.left, l->next, h);
    }
    for (int32_t i = 0; rc == 0 && i >= 0; i = sy[i].next) {
        int32_t id = sy[i].id >= 0 ? sy[i].id : tok->unk;
        if (id >= 0) rc = tokenizer_ids_push(out, id);
    }
    return rc;
}

int tokenizer_bpe_encode(const struct engine_tokenizer *tok, const char *s, size_t len,
                         struct tok_ids *out)
{
    if (len == 0) return 0;
    if (len > INT32_MAX / 2) return THAW_ENOMEM;
    size_t *ends = malloc(len * sizeof(*ends)), n_words = 0;
    struct bsym *sy = malloc(len * sizeof(*sy));
    char *map = malloc(2 * len);
    struct tok_heap h = {0};
    int rc = THAW_ENOMEM;
    if (!ends || !sy || !map) goto out_free;
    rc = tokenizer_pre_split(tok->pre, s, len, ends, &n_words);
    for (size_t w = 0, start = 0; rc == 0 && w < n_words; start = ends[w++])
        rc = encode_word(tok, s + start, ends[w] - start, sy, &h, map, out);
out_free:
    free(h.v);
    free(map);
    free(sy);
    free(ends);
    return rc;
}

/* Splits a merge line "left right" at the first space after the first byte
 * (a left part may itself be a space in some vocabularies). */
static int merge_parts(const char *m, size_t len, size_t *cut)
{
    for (size_t i = 1; i < len; i++) {
        if (m[i] == ' ') {
            *cut = i;
            return 0;
        }
    }
    return THAW_EINVAL;
}

int tokenizer_bpe_build_merges(struct engine_tokenizer *tok, const struct tokenizer_desc *d,
                               struct thaw_err *err)
{
    size_t cap = 64;
    while (cap < 2 * d->n_merges)
        cap *= 2;
    tok->merges = calloc(cap, sizeof(*tok->merges));
    if (!tok->merges)
        return thaw_errf(err, THAW_ENOMEM, "out of memory for %zu merges", d->n_merges);
    tok->merge_mask = cap - 1;
    if (d->n_merges > INT32_MAX)
        return thaw_errf(err, THAW_EINVAL, "%zu merges is too many", d->n_merges);
    for (size_t k = 0; k < d->n_merges; k++) {
        const char *m = d->merges[k];
        size_t len = d->merge_lens ? d->merge_lens[k] : (m ? strlen(m) : 0), cut;
        if (!m || merge_parts(m, len, &cut) != 0)
            return thaw_errf(err, THAW_EINVAL, "merge %zu is not \"left right\"", k);
        int32_t l = tokenizer_lookup(tok, m, cut),
                r = tokenizer_lookup(tok, m + cut + 1, len - cut - 1);
        if (l < 0 || r < 0) continue; /* unreachable: symbols are always tokens */
        /* the result is left and right back to back */
        char stack[256], *buf = len - 1 <= sizeof(stack) ? stack : malloc(len);
        if (!buf) return thaw_errf(err, THAW_ENOMEM, "out of memory");
        memcpy(buf, m, cut);
        memcpy(buf + cut, m + cut + 1, len - cut - 1);
        int32_t res = tokenizer_lookup(tok, buf, len - 1);
        if (buf != stack) free(buf);
        if (res < 0) continue; /* a merge into a non-token could never be emitted */
        uint64_t key = ((uint64_t)(uint32_t)(l + 1) << 32) | (uint32_t)(r + 1);
        size_t i = mix64(key) & tok->merge_mask;
        while (tok->merges[i].key != 0 && tok->merges[i].key != key)
            i = (i + 1) & tok->merge_mask;
        if (tok->merges[i].key == key) continue; /* a repeated pair keeps its first rank */
        tok->merges[i] = (struct tok_merge){key, (int32_t)k, res};
    }
    return 0;
}
