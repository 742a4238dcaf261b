/* The text side of the engine: tokenizers built from GGUF metadata
 * (SentencePiece-style "llama" and byte-level BPE "gpt2"), a streaming
 * detokenizer, built-in chat templates (thaw runs no Jinja), the sampler and
 * a stop-string matcher for streamed text. Nothing here runs a model. */
#ifndef THAW_ENGINE_TEXT_H
#define THAW_ENGINE_TEXT_H

#include "base/base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gguf;

/* ---------------------------------------------------------------- tokenizer */

enum tokenizer_kind {
    TOKENIZER_SPM = 1, /* tokenizer.ggml.model "llama": SentencePiece, byte fallback */
    TOKENIZER_BPE = 2, /* tokenizer.ggml.model "gpt2": byte-level BPE */
};

/* BPE pre-tokenizers (how text is split into words before merging). */
enum tokenizer_pre {
    TOKENIZER_PRE_GPT2 = 0,   /* "default", "gpt-2" and unknown names */
    TOKENIZER_PRE_LLAMA3 = 1, /* "llama3", "llama-bpe", "llama-v3", "falcon3" (digits by 1-3) */
    TOKENIZER_PRE_QWEN2 = 2,  /* "qwen2", "deepseek-r1-qwen" (single digits) */
    TOKENIZER_PRE_SMOLLM = 3, /* "smollm": every digit alone, then GPT-2 */
};

/* Token types as stored in tokenizer.ggml.token_type. */
enum tokenizer_token_type {
    TOKENIZER_TYPE_NORMAL = 1,
    TOKENIZER_TYPE_UNKNOWN = 2,
    TOKENIZER_TYPE_CONTROL = 3,
    TOKENIZER_TYPE_USER_DEFINED = 4,
    TOKENIZER_TYPE_UNUSED = 5,
    TOKENIZER_TYPE_BYTE = 6,
};

/* A vocabulary given as plain arrays (what tokenizer_from_gguf builds from
 * the metadata; tests and the fuzzer build small ones by hand). Nothing is
 * kept: tokenizer_new copies all of it. */
struct tokenizer_desc {
    enum tokenizer_kind kind;
    enum tokenizer_pre pre; /* BPE only */
    int32_t n_tokens;
    const char *const *tokens; /* n_tokens texts */
    const size_t *token_lens;  /* lengths, or NULL when tokens are NUL-terminated */
    const float *scores;       /* SPM merge priority (higher first); NULL: all 0 */
    const int32_t *types;      /* enum tokenizer_token_type; NULL: all NORMAL */
    const char *const *merges; /* BPE: "left right" strings, rank = index */
    const size_t *merge_lens;  /* or NULL when NUL-terminated */
    size_t n_merges;
    int32_t bos, eos, unk, pad; /* -1 (or out of range): none */
    int32_t eot, eom;           /* extra end-of-generation ids, -1: none */
    bool add_bos;               /* the model expects a BOS at the start */
    bool add_eos;
    bool add_space_prefix; /* SPM: prepend a space as SentencePiece does */
};

/* A tokenizer is immutable once built: any number of threads may encode and
 * decode with it at once. Pre-tokenizer classes (letter, number, white
 * space) cover all of Unicode 14 (a table of 1516 ranges). Not implemented:
 * the lstrip/rstrip attributes of added tokens, and pre-tokenizers other
 * than the four below (refused by name at load). */
struct engine_tokenizer;

/* Builds a tokenizer from a description. On success *out is the caller's
 * (tokenizer_free). Returns 0, THAW_EINVAL (bad description, message says
 * what) or THAW_ENOMEM. */
int tokenizer_new(const struct tokenizer_desc *d, struct engine_tokenizer **out,
                  struct thaw_err *err);

/* Builds a tokenizer from a GGUF file's tokenizer.ggml.* metadata. The gguf
 * may be closed afterwards (everything is copied). Returns 0,
 * THAW_EUNSUPPORTED (unknown tokenizer.ggml.model), THAW_EFORMAT (missing or
 * inconsistent keys) or THAW_ENOMEM. */
int tokenizer_from_gguf(const struct gguf *g, struct engine_tokenizer **out, struct thaw_err *err);

void tokenizer_free(struct engine_tokenizer *tok);

enum tokenizer_kind tokenizer_kind(const struct engine_tokenizer *tok);
int32_t tokenizer_n_tokens(const struct engine_tokenizer *tok);
int32_t tokenizer_bos(const struct engine_tokenizer *tok); /* -1: none */
int32_t tokenizer_eos(const struct engine_tokenizer *tok); /* -1: none */
/* Whether the model wants a BOS at the start of a prompt (add_bos_token). */
bool tokenizer_wants_bos(const struct engine_tokenizer *tok);
/* True for tokens that end generation: EOS, EOT, EOM and control tokens
 * named like an end of turn (<|eot_id|>, <|im_end|>, <end_of_turn>, ...). */
bool tokenizer_is_eog(const struct engine_tokenizer *tok, int32_t id);
/* The token's stored text (SPM keeps its "▁", BPE its byte-level form), not
 * NUL-terminated, owned by tok. NULL for an out-of-range id. */
const char *tokenizer_token_text(const struct engine_tokenizer *tok, int32_t id, size_t *len);
enum tokenizer_token_type tokenizer_token_type(const struct engine_tokenizer *tok, int32_t id);
/* Exact lookup of a token text; -1 when absent. */
int32_t tokenizer_find(const struct engine_tokenizer *tok, const char *text, size_t len);

/* Encodes len bytes of text. add_bos prepends the BOS id (when the vocabulary
 * has one; whether the model wants it is tokenizer_wants_bos). With
 * parse_special, text equal to a control token's text (e.g. "<|im_start|>")
 * becomes that token; user-defined tokens always match, except those that
 * look like chat markup ("<|...|>", "<｜...｜>"), which count as control
 * tokens (older converters left some of them user-defined). Text from users
 * must be encoded without parse_special (or as plain spans, below). Any bytes are
 * accepted: invalid UTF-8 is encoded byte by byte (byte-fallback tokens for
 * SPM, byte-level symbols for BPE), so nothing is lost. On success *ids is a
 * malloc'd array of *n ids (the caller frees it; non-NULL even when *n is 0).
 * Returns 0 or THAW_ENOMEM. */
int tokenizer_encode(const struct engine_tokenizer *tok, const char *text, size_t len, bool add_bos,
                     bool parse_special, int32_t **ids, size_t *n, struct thaw_err *err);

/* A byte range of a text. */
struct text_span {
    size_t off, len;
};

/* Encodes a prompt whose markup may hold control tokens but whose n_plain
 * plain spans (sorted, not overlapping: the users' text inside a chat
 * template) may not: a control token is recognised only where it lies wholly
 * outside them, so text a user sends is encoded as its literal characters
 * however it is spelled. The rest is as tokenizer_encode, which is this with
 * no plain span (parse_special) or one over the whole text (without); text
 * between special tokens is encoded as one fragment across span edges, so a
 * prompt whose plain text spells no control token gets the same ids either
 * way. Returns 0, THAW_EINVAL (spans out of order or past the text) or
 * THAW_ENOMEM. */
int tokenizer_encode_spans(const struct engine_tokenizer *tok, const char *text, size_t len,
                           const struct text_span *plain, size_t n_plain, bool add_bos,
                           int32_t **ids, size_t *n, struct thaw_err *err);

enum tokenizer_decode_flags {
    TOKENIZER_DECODE_SPECIAL = 1, /* render control tokens' text (default: nothing) */
    /* SPM: drop the leading space the encoder added, and a BOS at the start.
     * Only for ids that start a text (decode(encode(x)) == x); tokens that
     * continue a prompt (generation) must be decoded without it, or a first
     * "▁word" loses its space. */
    TOKENIZER_DECODE_STRIP_SPACE = 2,
};

/* Appends the bytes of one token to out (SPM: "▁" becomes a space, <0xXX>
 * the raw byte; BPE: the byte-level map inverted). STRIP_SPACE does nothing
 * here (it concerns the start of a sequence). Returns 0, THAW_ERANGE for an
 * id out of range, or THAW_ENOMEM. */
int tokenizer_token_to_piece(const struct engine_tokenizer *tok, int32_t id, unsigned flags,
                             struct buf *out, struct thaw_err *err);
/* Appends the bytes of n tokens to out; flags as above. The result may be
 * invalid UTF-8 if the ids say so (a lone byte token). Returns 0,
 * THAW_ERANGE (out-of-range id; out is left as it was) or THAW_ENOMEM. */
int tokenizer_decode(const struct engine_tokenizer *tok, const int32_t *ids, size_t n,
                     unsigned flags, struct buf *out, struct thaw_err *err);

/* Streaming detokenizer: push tokens one at a time and get back text that is
 * always valid UTF-8. A multi-byte character split across tokens is held
 * until it completes; bytes that can never form a character become U+FFFD.
 * For ids whose whole decode is valid UTF-8, the pushed chunks concatenated
 * equal tokenizer_decode of the same ids. */
struct engine_detok;

/* tok must outlive the detokenizer. Returns 0 or THAW_ENOMEM. */
int tokenizer_detok_new(const struct engine_tokenizer *tok, unsigned flags,
                        struct engine_detok **out);
void tokenizer_detok_free(struct engine_detok *d);
/* Appends to out the text that id completes (possibly nothing). Returns 0,
 * THAW_ERANGE (bad id; nothing changes) or THAW_ENOMEM. */
int tokenizer_detok_push(struct engine_detok *d, int32_t id, struct buf *out, struct thaw_err *err);
/* End of stream: appends U+FFFD for a held incomplete character. */
int tokenizer_detok_flush(struct engine_detok *d, struct buf *out);
/* Bytes currently held back (0..3). */
size_t tokenizer_detok_pending(const struct engine_detok *d);

/* ----------------------------------------------------------- chat templates */

enum chat_family {
    CHAT_NONE = 0,
    CHAT_CHATML,      /* <|im_start|>role\n...<|im_end|>\n (Qwen, Hermes, SmolLM) */
    CHAT_LLAMA2,      /* [INST] <<SYS>>\n...\n<</SYS>>\n\nuser [/INST] assistant</s> */
    CHAT_LLAMA3,      /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    CHAT_MISTRAL,     /* [INST] user [/INST] assistant</s> (Mistral v1, system folded in) */
    CHAT_MISTRAL_V3,  /* [INST]user[/INST]assistant</s> ("tekken": Nemo, no spaces) */
    CHAT_ZEPHYR,      /* <|user|>\n...</s>\n<|assistant|>\n */
    CHAT_PHI3,        /* <|user|>\n...<|end|>\n<|assistant|>\n */
    CHAT_GEMMA,       /* <start_of_turn>user\n...<end_of_turn>\n<start_of_turn>model\n */
    CHAT_DEEPSEEK3,   /* system<｜User｜>...<｜Assistant｜>...<｜end▁of▁sentence｜> */
    CHAT_DEEPSEEK_R1, /* as deepseek3, the generation prompt opening "<think>\n" (R1 distills) */
    CHAT_COMMAND_R,   /* <|START_OF_TURN_TOKEN|><|USER_TOKEN|>...<|END_OF_TURN_TOKEN|> */
};

struct chat_message {
    const char *role; /* "system", "user" or "assistant" (others: see chat_format) */
    const char *content;
};

/* The family's name ("chatml", "llama3", ...); "none" for CHAT_NONE. */
const char *chat_family_name(enum chat_family f);
/* Looks a family up by name (an explicit override from a manifest or flag).
 * Returns 0 or THAW_ENOTFOUND with the known names in the message. */
int chat_family_from_name(const char *name, enum chat_family *out, struct thaw_err *err);
/* Picks the family of a Jinja template (tokenizer.chat_template) by its
 * distinctive markers. Returns 0, or THAW_ENOTFOUND ("no built-in chat
 * template fits") when none does. */
int chat_family_detect(const char *tmpl, size_t len, enum chat_family *out, struct thaw_err *err);

/* Appends the prompt for messages to out, with the assistant header at the end
 * when add_generation_prompt. The leading BOS is NOT written: encode with
 * add_bos = tokenizer_wants_bos() and, since the contents are the users'
 * text, with chat_format_spans' plain spans (tokenizer_encode_spans), never
 * with parse_special over the whole prompt. Roles other than
 * system/user/assistant are refused (THAW_EINVAL), as are families that
 * cannot express a message (a gemma system message is folded into the first
 * user turn, as Gemma's own template asks). Returns 0, THAW_EINVAL or
 * THAW_ENOMEM. */
int chat_format(enum chat_family f, const struct chat_message *msgs, size_t n,
                bool add_generation_prompt, struct buf *out, struct thaw_err *err);
/* The same, also returning where the messages' contents landed in out: *spans
 * (malloc'd, the caller frees; NULL when *n_spans is 0) holds the byte ranges
 * of out, in order, that came from a content rather than from the template's
 * markup, for tokenizer_encode_spans. */
int chat_format_spans(enum chat_family f, const struct chat_message *msgs, size_t n,
                      bool add_generation_prompt, struct buf *out, struct text_span **spans,
                      size_t *n_spans, struct thaw_err *err);

/* ------------------------------------------------------------------ sampler */

#define SAMPLER_MAX_LOGPROBS 20
#define SAMPLER_SEED_RANDOM  UINT64_MAX

struct engine_sampling_params {
    float temperature;       /* <= 0: greedy (argmax, lowest id on ties) */
    int32_t top_k;           /* <= 0: off */
    float top_p;             /* >= 1: off */
    float min_p;             /* <= 0: off */
    float repeat_penalty;    /* 1: off; divides positive logits, multiplies negative */
    float frequency_penalty; /* 0: off; subtracts count * f */
    float presence_penalty;  /* 0: off; subtracts p once per seen token */
    int32_t penalty_last_n;  /* window of accepted tokens the penalties look at */
    uint64_t seed;           /* SAMPLER_SEED_RANDOM: from the kernel */
    int32_t n_logprobs;      /* 0..SAMPLER_MAX_LOGPROBS top entries reported */
};

/* temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, penalties off, window 64,
 * random seed, no logprobs. */
void sampler_params_default(struct engine_sampling_params *p);

struct sampler_logprob {
    int32_t token;
    float logprob;
};

/* Log-probabilities under the model's distribution (softmax of the raw
 * logits, before penalties, temperature and truncation). */
struct sampler_logprobs {
    float token_logprob; /* of the sampled token */
    int32_t n_top;       /* entries filled, highest first */
    struct sampler_logprob top[SAMPLER_MAX_LOGPROBS];
};

/* One sampler per sequence; not for use by two threads at once. */
struct engine_sampler;

/* Copies params. Returns 0, THAW_EINVAL (NaN, top_p <= 0, n_logprobs out of
 * range, ...) or THAW_ENOMEM. */
int sampler_new(const struct engine_sampling_params *p, struct engine_sampler **out,
                struct thaw_err *err);
void sampler_free(struct engine_sampler *s);
/* Forgets accepted tokens and reseeds with the original seed. */
void sampler_reset(struct engine_sampler *s);

/* Picks the next token from n_vocab logits (not modified). Order: penalties,
 * temperature, top-k, top-p, min-p, then a draw from the kept tokens with the
 * sampler's own PRNG (xoshiro256**), so the same seed and logits give the
 * same tokens on every machine. lp (may be NULL) gets logprobs if asked for
 * in the params. Returns 0, THAW_EINVAL (n_vocab <= 0, all logits NaN or
 * -inf) or THAW_ENOMEM. Does not accept the token: call sampler_accept. */
int sampler_sample(struct engine_sampler *s, const float *logits, int32_t n_vocab, int32_t *token,
                   struct sampler_logprobs *lp);
/* Records a token in the penalty window (prompt tokens may be fed too). */
void sampler_accept(struct engine_sampler *s, int32_t token);

/* Stop strings over streamed text: text that might be the start of a stop
 * string is held back until it is known not to be; at a stop, the text before
 * it is released and the rest is dropped. */
struct sampler_stop;

/* Copies the n strings (empty ones are ignored). Returns 0 or THAW_ENOMEM. */
int sampler_stop_new(const char *const *stops, size_t n, struct sampler_stop **out);
void sampler_stop_free(struct sampler_stop *st);
/* Feeds a chunk; appends to out what is safe to show. Returns 1 when a stop
 * string completed (nothing more should be fed or shown), 0 otherwise,
 * THAW_ENOMEM on allocation failure. */
int sampler_stop_push(struct sampler_stop *st, const char *text, size_t len, struct buf *out);
/* End of stream without a stop: appends the held-back text. */
int sampler_stop_flush(struct sampler_stop *st, struct buf *out);

#endif
