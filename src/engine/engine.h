/* The engine's public face: llama-family models loaded from GGUF files
 * (weights stay in the read-only mapping), contexts holding a KV cache for
 * several sequences, a batched forward pass (continuous batching), logits
 * and pooled embeddings. Tokenizer, chat templates and sampler: text.h.
 *
 * Threads: one context is used by one caller thread at a time; it owns a
 * pool of worker threads. Several contexts may share one model. */
#ifndef THAW_ENGINE_ENGINE_H
#define THAW_ENGINE_ENGINE_H

#include "base/base.h"
#include "engine/gguf.h"
#include "engine/text.h"

#include <stdbool.h>
#include <stdint.h>

enum engine_rope_kind {
    ENGINE_ROPE_NORMAL = 0, /* rotate adjacent pairs (x[2i], x[2i+1]): llama, mistral GGUFs */
    ENGINE_ROPE_NEOX = 2,   /* rotate halves (x[i], x[i + n_rot/2]): qwen2 */
};

enum engine_pooling {
    ENGINE_POOL_NONE = 0,
    ENGINE_POOL_MEAN = 1,
    ENGINE_POOL_CLS = 2, /* the first token */
    ENGINE_POOL_LAST = 3,
};

struct engine_model_info {
    char arch[32];  /* general.architecture */
    char name[128]; /* general.name, or "" */
    int32_t n_vocab;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;
    int32_t n_ff;
    int32_t n_ctx_train;
    int32_t n_rot;
    float rope_base;
    float rope_freq_scale;  /* 1 / linear scaling factor */
    bool rope_freq_factors; /* a rope_freqs.weight tensor divides the frequencies */
    enum engine_rope_kind rope;
    float rms_eps;
    enum engine_pooling pooling; /* from <arch>.pooling_type; MEAN when absent */
    bool tied_output;            /* output.weight absent: token_embd is reused */
    bool qkv_bias;
    enum ggml_type ftype;  /* type of most weight bytes */
    uint64_t weight_bytes; /* bytes of all tensors */
    uint64_t n_params;
    /* bytes of private memory holding packed copies of weight matrices (see
     * engine_model_load); 0 when none */
    uint64_t packed_bytes;
};

struct engine_model;

/* Maps the GGUF file at path, checks architecture, hyperparameters and the
 * shape of every tensor, and prefaults the mapping (gguf_prefault) so the
 * first token takes no page faults. Weight matrices the kernels read faster
 * in another layout (kern_pack: Q8_0 and Q4_K on AVX-512) are copied into it
 * in one private mapping of transparent huge pages, about their own size
 * (info.packed_bytes), on as many threads as the process has CPUs, and their
 * pages of the mapping dropped from the process: load in a template before
 * forking and the instances share the copy. THAW_ENGINE_PACK=0 in the
 * environment keeps every matrix in the mapping only (the same results, bit
 * for bit; slower with several sequences). Any architecture but the llama family (llama,
 * mistral, qwen2) is refused by name. On success *out is the caller's
 * (engine_model_free). Returns 0 or a negative status with err set. */
int engine_model_load(const char *path, struct engine_model **out, struct thaw_err *err);
/* Same over an opened gguf, whose ownership passes to the model (also on
 * error, where it is closed). */
int engine_model_from_gguf(struct gguf *g, struct engine_model **out, struct thaw_err *err);
void engine_model_free(struct engine_model *m);
/* Maps every page of the file that the forward pass reads (the matrices not
 * packed, the embedding table) into the page tables in one call. A forked
 * process calls it first: fork does not copy a file mapping's page table
 * entries, and faulting them back in one by one took a forked instance of a
 * 1.1B Q4_K_M model +250 ms on its first token. A hint: errors are ignored. */
void engine_model_prefault(struct engine_model *m);
const struct engine_model_info *engine_model_info(const struct engine_model *m);
/* The file behind the model (owned by the model): metadata, tokenizer. */
const struct gguf *engine_model_gguf(const struct engine_model *m);

struct engine_ctx_params {
    int32_t n_ctx;      /* positions per sequence; 0: min(n_ctx_train, 4096) */
    int32_t n_seq_max;  /* sequences held at once; 0: 1 */
    int32_t n_batch;    /* most tokens per forward call; 0: 128 (scratch grows with it) */
    int32_t n_outputs;  /* most entries per call that ask for logits; 0: n_seq_max */
    int32_t n_threads;  /* 0: 1 */
    bool embeddings;    /* keep final hidden states for engine_embed */
    bool kv_f16;        /* keep the KV cache in f16: half the memory (default f32) */
    bool threads_fixed; /* always use every thread; by default the pool times runs
                           threaded and alone and keeps to the faster (busy hosts) */
};

struct engine_ctx;

/* Allocates every buffer a forward pass needs (KV cache for n_seq_max x
 * n_ctx positions) and starts n_threads - 1 workers. The model must outlive
 * the context. Returns 0 or a negative status. */
int engine_ctx_new(struct engine_model *m, const struct engine_ctx_params *p,
                   struct engine_ctx **out, struct thaw_err *err);
void engine_ctx_free(struct engine_ctx *c);
int32_t engine_ctx_n_ctx(const struct engine_ctx *c);
/* Bytes the context allocated (pages are touched only when used), and of
 * them the KV cache's (f32 keys and values for n_seq_max x n_ctx). */
size_t engine_ctx_bytes(const struct engine_ctx *c, size_t *kv_bytes);
int32_t engine_ctx_n_seq(const struct engine_ctx *c);

/* Forgets a sequence's cache so its id can start a new one. */
void engine_seq_clear(struct engine_ctx *c, int32_t seq);
/* Positions cached for seq (the next position to feed). */
int32_t engine_seq_len(const struct engine_ctx *c, int32_t seq);

/* One entry of a batch. Within a batch, the entries of one sequence have
 * consecutive positions; the first one may be at most the sequence's current
 * length (less rewinds it: later positions are dropped). */
struct engine_batch_entry {
    int32_t seq;
    int32_t token;
    int32_t pos;
    bool logits; /* compute logits for this entry */
};

/* Runs the model over n entries (of any sequences), appending to their
 * caches. Allocates nothing. Returns 0, or THAW_EINVAL / THAW_ERANGE (bad
 * sequence id, token, position, batch larger than n_batch, too many logits,
 * context full) with nothing changed. */
int engine_forward(struct engine_ctx *c, const struct engine_batch_entry *b, int32_t n,
                   struct thaw_err *err);
/* Logits of the i-th entry of the last batch that asked for logits (counted
 * among those entries only), n_vocab floats owned by the context, valid until
 * the next forward. NULL when i is out of range. */
const float *engine_logits(const struct engine_ctx *c, int32_t i);

/* Convenience: feeds n tokens of one sequence from its current length in
 * chunks of n_batch and leaves the logits of the last one at
 * engine_logits(c, 0). */
int engine_feed(struct engine_ctx *c, int32_t seq, const int32_t *tokens, int32_t n,
                struct thaw_err *err);

/* Embedding of n tokens: clears seq, runs them through (context created with
 * embeddings = true), pools the final normalised hidden states as the model
 * declares (pooling NONE uses the last token) and L2-normalises into out
 * (n_embd floats). Returns 0 or a negative status. */
int engine_embed(struct engine_ctx *c, int32_t seq, const int32_t *tokens, int32_t n, float *out,
                 struct thaw_err *err);

/* ------------------------------------------------------------ generator */

/* Shapes for generated models (modelgen.c). */
struct engine_gen_params {
    const char *arch; /* "llama" (default) or "qwen2" (adds q/k/v biases, NeoX RoPE) */
    int32_t n_vocab;  /* >= 259 + a few: the tokenizer needs 3 specials and 256 bytes */
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t n_ff;
    int32_t n_ctx;
    bool tied_output;
    enum ggml_type type;        /* of the 2-D weight matrices */
    enum ggml_type output_type; /* of output.weight / token_embd; F32 (0) means same as type */
    /* llama.cpp's Q4_K_M mixture instead of type/output_type: Q4_K, with
     * attn_v and ffn_down in Q6_K in a third of the layers, output.weight (or
     * a tied token_embd) Q6_K, and llama.cpp's fallbacks for rows that do not
     * fit 256-element blocks (Q4_K -> Q5_0, Q6_K -> Q8_0; a tied or output
     * matrix straight to Q8_0) */
    bool q4_k_m;
    uint64_t seed;
    float rope_base;             /* 0: 10000 */
    enum engine_pooling pooling; /* written when not NONE */
    float rope_scale;            /* > 1: linear RoPE scaling by this factor */
    bool rope_freq_factors;      /* write a rope_freqs.weight (as Llama 3 files carry) */
};

/* Fills p with a named preset: "smollm2-135m", "tinyllama-1.1b", "tiny"
 * (dim 64), "tiny-gqa", "tiny-qwen2". Type Q8_0, seed 1. Returns 0 or
 * THAW_ENOTFOUND naming the presets. */
int engine_gen_preset(const char *name, struct engine_gen_params *p, struct thaw_err *err);
/* Writes a model with seeded random weights and a SentencePiece-style
 * vocabulary to path (atomically). Tensors whose rows do not fit the block
 * size of the requested type fall back as llama.cpp does (Q4_K -> Q5_0,
 * Q5_K -> Q5_1, Q6_K -> Q8_0; others -> F16); *n_fallback (may be NULL)
 * counts them.
 * Returns 0 or a negative status. */
int engine_gen_write(const struct engine_gen_params *p, const char *path, int *n_fallback,
                     struct thaw_err *err);

#endif
