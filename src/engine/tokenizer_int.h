/* Private to the tokenizer files: the tokenizer's layout, UTF-8 and Unicode
 * category helpers, the GPT-2 byte map and the BPE pre-tokenizer splits. */
#ifndef THAW_ENGINE_TOKENIZER_INT_H
#define THAW_ENGINE_TOKENIZER_INT_H

#include "engine/text.h"

/* Per-token flags. */
enum {
    TOK_F_EOG = 1,     /* ends generation */
    TOK_F_BYTE = 2,    /* SPM <0xXX>: renders as the byte in tok->byte_val */
    TOK_F_SPECIAL = 4, /* matched in text by the special-token partition */
    /* Matched only where control tokens may be (parse_special, or outside the
     * plain spans of tokenizer_encode_spans): control and unknown tokens, and
     * user-defined ones that look like control markup (see build_specials). */
    TOK_F_CONTROL = 8,
};

struct tok_merge {
    uint64_t key; /* left << 32 | right; 0 marks an empty slot (ids are offset by 1) */
    int32_t rank;
    int32_t result;
};

struct engine_tokenizer {
    enum tokenizer_kind kind;
    enum tokenizer_pre pre;
    int32_t n;
    char *text;    /* all token texts back to back */
    uint32_t *off; /* n+1 offsets into text */
    float *score;
    uint8_t *type;     /* enum tokenizer_token_type */
    uint8_t *flags;    /* TOK_F_* */
    uint8_t *byte_val; /* for TOK_F_BYTE tokens */
    int32_t *slots;    /* text -> id hash, -1 empty */
    size_t slot_mask;
    struct tok_merge *merges; /* (left,right) -> rank, result */
    size_t merge_mask;
    int32_t byte_id[256]; /* SPM: <0xXX> token; BPE: the mapped byte's token; -1 none */
    int32_t *spec;        /* special token ids grouped by first byte, longest first */
    uint32_t spec_start[257];
    int32_t bos, eos, unk, pad, eot, eom;
    bool add_bos, add_eos, add_space_prefix;
    bool ignore_merges; /* llama3: a word that is a token is taken whole */
};

/* Unicode classes for the pre-tokenizers. */
enum { UCAT_OTHER = 0, UCAT_L = 1, UCAT_N = 2, UCAT_W = 4 };

/* Decodes one UTF-8 character from s (n > 0 bytes). Returns its length (1-4)
 * and sets *cp; 0 when s is a valid but incomplete prefix; -1 when s does not
 * start a valid character (overlong, surrogate, > U+10FFFF, stray byte). */
int tokenizer_utf8_next(const uint8_t *s, size_t n, uint32_t *cp);
/* UCAT_* class of a code point (letters L*, numbers N*, White_Space). */
int tokenizer_ucat(uint32_t cp);
/* GPT-2 byte-level map: the UTF-8 form (1-2 bytes) of the code point standing
 * for byte b; returns its length. */
int tokenizer_byte_to_utf8(uint8_t b, char out[2]);
/* Inverse: the byte a code point stands for, or -1. */
int tokenizer_cp_to_byte(uint32_t cp);

/* Splits n bytes into pre-tokenizer words; writes the end offset of each word
 * into ends (capacity n) and the count into *n_words. Invalid UTF-8 bytes are
 * characters of class "other". Returns 0 or THAW_ENOMEM. */
int tokenizer_pre_split(enum tokenizer_pre pre, const char *s, size_t n, size_t *ends,
                        size_t *n_words);

/* A growing id list. */
struct tok_ids {
    int32_t *v;
    size_t n, cap;
};
int tokenizer_ids_push(struct tok_ids *ids, int32_t id);

/* A candidate merge of the adjacent symbols left and right, in the merge
 * queue both tokenizers keep: the lowest key first, then the leftmost. */
struct tok_cand {
    double key; /* BPE: the merge's rank; SPM: minus the merged token's score */
    int32_t left, right;
    union {
        struct {
            int32_t lid, rid; /* ids when queued: a pop whose ids changed is stale */
            int32_t result;
        } bpe;
        uint32_t spm_size; /* bytes of the merged text when queued */
    } u;
};
struct tok_heap {
    struct tok_cand *v;
    size_t n, cap;
};
int tokenizer_heap_push(struct tok_heap *h, struct tok_cand c); /* 0 or THAW_ENOMEM */
struct tok_cand tokenizer_heap_pop(struct tok_heap *h);         /* h->n > 0 */

/* Text -> id, -1 when absent. */
int32_t tokenizer_lookup(const struct engine_tokenizer *tok, const char *s, size_t len);
/* SPM merge of text whose spaces are already "▁"; appends ids. */
int tokenizer_spm_encode(const struct engine_tokenizer *tok, const char *s, size_t len,
                         struct tok_ids *out);
/* Fills tok->merges from d's merge list (tokens must be in place). */
int tokenizer_bpe_build_merges(struct engine_tokenizer *tok, const struct tokenizer_desc *d,
                               struct thaw_err *err);
/* BPE of raw text (pre-split here, byte-mapped, merged by rank); appends ids. */
int tokenizer_bpe_encode(const struct engine_tokenizer *tok, const char *s, size_t len,
                         struct tok_ids *out);

#endif
