/* BPE pre-tokenizers: the word splits of the GPT-2, Llama 3, Qwen2 and
 * SmolLM regexes, written out by hand (no regex library). The patterns:
 *   GPT-2:  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *   Llama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}
 *           | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *   Qwen2:  as Llama3 with \p{N} (one digit per word)
 *   SmolLM: every \p{N} alone, then GPT-2 on the text between digits
 * \p{L}, \p{N} and \s come from tokenizer_ucat (all of Unicode 14). */
#include "engine/tokenizer_int.h"

#include <stdlib.h>

/* The text as code points: class and byte offset of each. */
struct cps {
    const char *s;
    size_t n; /* code points */
    uint32_t *cp;
    uint8_t *cat;
    size_t *off; /* n+1 byte offsets */
};

static bool is_l(const struct cps *c, size_t i)
{
    return i < c->n && c->cat[i] == UCAT_L;
}
static bool is_n(const struct cps *c, size_t i)
{
    return i < c->n && c->cat[i] == UCAT_N;
}
static bool is_w(const struct cps *c, size_t i)
{
    return i < c->n && c->cat[i] == UCAT_W;
}
static bool is_other(const struct cps *c, size_t i)
{
    return i < c->n && c->cat[i] == UCAT_OTHER;
}
static bool is_nl(const struct cps *c, size_t i)
{
    return i < c->n && (c->cp[i] == '\r' || c->cp[i] == '\n');
}

static uint32_t lower(uint32_t cp)
{
    return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
}

/* Length of a contraction ('s 't 're 've 'm 'll 'd) at i, 0 if none. */
static size_t contraction(const struct cps *c, size_t i, size_t end, bool fold)
{
    if (c->cp[i] != '\'' || i + 1 >= end) return 0;
    uint32_t a = fold ? lower(c->cp[i + 1]) : c->cp[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (i + 2 >= end) return 0;
    uint32_t b = fold ? lower(c->cp[i + 2]) : c->cp[i + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* \s+(?!\S)|\s+ at a whitespace run starting at i: the run, less its last
 * character when a non-space follows and the run is longer than one. */
static size_t white_run(const struct cps *c, size_t i, size_t end)
{
    size_t k = i;
    while (k < end && c->cat[k] == UCAT_W)
        k++;
    if (k < end && k - i >= 2) k--;
    return k;
}

/* One GPT-2 word starting at i (< end); returns its end. */
static size_t gpt2_word(const struct cps *c, size_t i, size_t end)
{
    size_t k = contraction(c, i, end, false);
    if (k) return i + k;
    size_t j = i + (c->cp[i] == ' ' && i + 1 < end);
    if (is_l(c, j) && j < end) {
        while (j < end && is_l(c, j))
            j++;
        return j;
    }
    if (is_n(c, j) && j < end) {
        while (j < end && is_n(c, j))
            j++;
        return j;
    }
    if (is_other(c, j) && j < end) {
        while (j < end && is_other(c, j))
            j++;
        return j;
    }
    return white_run(c, i, end);
}

/* One Llama 3 / Qwen2 word starting at i; max_digits 3 or 1. */
static size_t llama3_word(const struct cps *c, size_t i, size_t end, size_t max_digits)
{
    size_t k = contraction(c, i, end, true), j;
    if (k) return i + k;
    j = i + (!is_l(c, i) && !is_n(c, i) && !is_nl(c, i) && i + 1 < end && is_l(c, i + 1));
    if (is_l(c, j)) {
        while (j < end && is_l(c, j))
            j++;
        return j;
    }
    if (is_n(c, i)) {
        for (j = i; j < end && j - i < max_digits && is_n(c, j);)
            j++;
        return j;
    }
    j = i + (c->cp[i] == ' ' && i + 1 < end && is_other(c, i + 1));
    if (is_other(c, j)) {
        while (j < end && is_other(c, j))
            j++;
        while (j < end && is_nl(c, j))
            j++;
        return j;
    }
    /* \s*[\r\n]+ : through the last newline of the whitespace run, if any */
    size_t run = i, last_nl = SIZE_MAX;
    while (run < end && is_w(c, run)) {
        if (is_nl(c, run)) last_nl = run;
        run++;
    }
    if (last_nl != SIZE_MAX) return last_nl + 1;
    return white_run(c, i, end);
}

static int decode_cps(const char *s, size_t n, struct cps *c)
{
    c->s = s;
    c->cp = malloc((n + 1) * sizeof(*c->cp));
    c->cat = malloc(n + 1);
    c->off = malloc((n + 1) * sizeof(*c->off));
    if (!c->cp || !c->cat || !c->off) return THAW_ENOMEM;
    size_t i = 0, k = 0;
    while (i < n) {
        uint32_t cp;
        int len = tokenizer_utf8_next((const uint8_t *)s + i, n - i, &cp);
        c->off[k] = i;
        if (len <= 0) { /* a stray byte: a character of class "other" */
            c->cp[k] = 0xfffd;
            c->cat[k] = UCAT_OTHER;
            len = 1;
        } else {
            c->cp[k] = cp;
            c->cat[k] = (uint8_t)tokenizer_ucat(cp);
        }
        k++;
        i += (size_t)len;
    }
    c->off[k] = n;
    c->n = k;
    return 0;
}

static size_t split_range(enum tokenizer_pre pre, const struct cps *c, size_t i, size_t end,
                          size_t *ends, size_t nw)
{
    while (i < end) {
        size_t j;
        if (pre == TOKENIZER_PRE_LLAMA3)
            j = llama3_word(c, i, end, 3);
        else if (pre == TOKENIZER_PRE_QWEN2)
            j = llama3_word(c, i, end, 1);
        else
            j = gpt2_word(c, i, end);
        if (j <= i) j = i + 1; /* cannot happen; guarantees progress */
        ends[nw++] = c->off[j];
        i = j;
    }
    return nw;
}

int tokenizer_pre_split(enum tokenizer_pre pre, const char *s, size_t n, size_t *ends,
                        size_t *n_words)
{
    struct cps c = {0};
    size_t nw = 0;
    int rc = decode_cps(s, n, &c);
    if (rc != 0) goto out_free;
    if (pre == TOKENIZER_PRE_SMOLLM) {
        size_t start = 0;
        for (size_t i = 0; i < c.n; i++) {
            if (c.cat[i] != UCAT_N) continue;
            nw = split_range(TOKENIZER_PRE_GPT2, &c, start, i, ends, nw);
            ends[nw++] = c.off[i + 1];
            start = i + 1;
        }
        nw = split_range(TOKENIZER_PRE_GPT2, &c, start, c.n, ends, nw);
    } else {
        nw = split_range(pre, &c, 0, c.n, ends, nw);
    }
    *n_words = nw;
out_free:
    free(c.cp);
    free(c.cat);
    free(c.off);
    return rc;
}
