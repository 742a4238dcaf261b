/* SentencePiece-style ("llama") merging, as llama.cpp does it: start from
 * one symbol per UTF-8 character, repeatedly merge the adjacent pair whose
 * concatenation is the vocabulary token with the highest score (leftmost on
 * ties), using a priority queue so long inputs cost O(n log n). Symbols left
 * that are not tokens fall back to <0xXX> byte tokens. */
#include "engine/tokenizer_int.h"

#include <stdlib.h>

struct sym {
    int32_t prev, next;  /* -1 at the ends */
    uint32_t start, len; /* bytes of the text; len 0 once merged away */
};

static int try_pair(const struct engine_tokenizer *tok, const char *s, struct sym *sy, int32_t l,
                    int32_t r, struct tok_heap *h)
{
    if (l < 0 || r < 0) return 0;
    uint32_t size = sy[l].len + sy[r].len;
    int32_t id = tokenizer_lookup(tok, s + sy[l].start, size);
    if (id < 0) return 0;
    return tokenizer_heap_push(
        h, (struct tok_cand){
               .key = -(double)tok->score[id], .left = l, .right = r, .u.spm_size = size});
}

/* A symbol that is not a token becomes its bytes' <0xXX> tokens, or one
 * <unk> when the vocabulary lacks any of them (dropped if there is no <unk>). */
static int emit_symbol(const struct engine_tokenizer *tok, const char *s, const struct sym *y,
                       struct tok_ids *out)
{
    int32_t id = tokenizer_lookup(tok, s + y->start, y->len);
    if (id >= 0) return tokenizer_ids_push(out, id);
    for (uint32_t i = 0; i < y->len; i++)
        if (tok->byte_id[(uint8_t)s[y->start + i]] < 0)
            return tok->unk >= 0 ? tokenizer_ids_push(out, tok->unk) : 0;
    for (uint32_t i = 0; i < y->len; i++) {
        int rc = tokenizer_ids_push(out, tok->byte_id[(uint8_t)s[y->start + i]]);
        if (rc) return rc;
    }
    return 0;
}

int tokenizer_spm_encode(const struct engine_tokenizer *tok, const char *s, size_t len,
                         struct tok_ids *out)
{
    if (len == 0) return 0;
    if (len > INT32_MAX) return THAW_ENOMEM;
    struct sym *sy = malloc(len * sizeof(*sy));
    struct tok_heap h = {0};
    int rc = 0;
    if (!sy) return THAW_ENOMEM;
    int32_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int l = tokenizer_utf8_next((const uint8_t *)s + i, len - i, &cp);
        if (l <= 0) l = 1; /* a stray byte is a symbol of its own */
        sy[n] = (struct sym){n - 1, -1, (uint32_t)i, (uint32_t)l};
        if (n > 0) sy[n - 1].next = n;
        n++;
        i += (size_t)l;
    }
    for (int32_t i = 0; i + 1 < n && rc == 0; i++)
        rc = try_pair(tok, s, sy, i, i + 1, &h);
    while (rc == 0 && h.n > 0) {
        struct tok_cand b = tokenizer_heap_pop(&h);
        struct sym *l = &sy[b.left], *r = &sy[b.right];
        if (l->len == 0 || r->len == 0 || l->next != b.right || l->len + r->len != b.u.spm_size)
            continue;
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) sy[r->next].prev = b.left;
        rc = try_pair(tok, s, sy, l->prev, b.left, &h);
        if (rc == 0) rc = try_pair(tok, s, sy, b.left, l->next, &h);
    }
    for (int32_t i = 0; rc == 0 && i >= 0 && n > 0; i = sy[i].next)
        rc = emit_symbol(tok, s, &sy[i], out);
    free(h.v);
    free(sy);
    return rc;
}
