/* Private to the engine's model files (model.c, forward.c, modelgen.c,
 * threadpool.c): the loaded model's layout and the thread pool. */
#ifndef THAW_ENGINE_ENGINE_INT_H
#define THAW_ENGINE_ENGINE_INT_H

#include "engine/engine.h"

#define KERN_TYPES_MAX 31 /* type ids below this (ggml's enum) */

/* A weight matrix: rows of n_cols elements of type, in the mapping, and
 * its packed copy (kern_pack), owned, or NULL. */
struct eng_mat {
    enum ggml_type type;
    int32_t n_cols, n_rows;
    size_t row_bytes;
    const void *data;
    void *packed;
};

struct eng_layer {
    float *attn_norm, *ffn_norm;   /* n_embd, owned (converted to f32 at load) */
    float *bq, *bk, *bv;           /* qwen2 biases, owned, or NULL */
    struct eng_mat wq, wk, wv, wo; /* point into the mapping */
    struct eng_mat w_gate, w_up, w_down;
};

struct engine_model {
    struct gguf *g;
    struct engine_model_info info;
    struct eng_mat tok_embd;
    struct eng_mat output; /* == tok_embd when tied */
    float *output_norm;    /* owned */
    float *rope_inv_freq;  /* n_rot / 2, owned: scale and freq factors folded in */
    struct eng_layer *layers;
    void *pack_arena; /* every packed copy (eng_mat.packed points into it), owned */
    size_t pack_arena_bytes;
};

/* ---- thread pool: the caller is thread 0 of every run ---------------- */

struct tpool;
/* Runs part `part` of n_parts on thread `thread` (0 .. size-1, for
 * per-thread scratch). What a part computes must not depend on `thread`. */
typedef void (*tpool_fn)(void *arg, int part, int n_parts, int thread);
/* Starts n_threads - 1 workers. Returns 0 or a negative status. */
int tpool_new(int n_threads, struct tpool **out);
void tpool_free(struct tpool *p);
int tpool_size(const struct tpool *p);
/* On (the default), the pool times windows of runs threaded and alone and
 * keeps to the faster; off, every run is threaded (tests). */
void tpool_set_adaptive(struct tpool *p, bool on);
/* Runs fn for parts 0 .. n_parts-1, spread over the threads (the caller
 * takes parts too), and returns when all have finished. */
void tpool_run(struct tpool *p, tpool_fn fn, void *arg, int n_parts);

#endif
