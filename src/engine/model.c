/* Loading llama-family models from GGUF: architecture, hyperparameters from
 * "<arch>.*" metadata, and every tensor by the names llama.cpp writes, with
 * its shape checked. Matrices stay in the mapping, except those the kernels
 * read faster packed (a copy made at load, see engine_model_load); the small
 * norm and bias vectors are converted to f32 copies. */
#include "engine/engine_int.h"

#include <inttypes.h>
#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct arch_desc {
    const char *name;
    enum engine_rope_kind rope;
};

/* llama.cpp writes llama/mistral Q and K permuted for interleaved-pair RoPE;
 * qwen2 keeps the Hugging Face layout and rotates halves (NeoX). */
static const struct arch_desc archs[] = {
    {"llama", ENGINE_ROPE_NORMAL},
    {"mistral", ENGINE_ROPE_NORMAL},
    {"qwen2", ENGINE_ROPE_NEOX},
};

struct loader {
    struct engine_model *m;
    const struct gguf *g;
    const char *arch;
    struct thaw_err *err;
};

/* Reads "<arch>.<suffix>" as an int in [lo, hi]; def when absent and def >= 0. */
static int hp_int(struct loader *ld, const char *suffix, int64_t def, int64_t lo, int64_t hi,
                  int32_t *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", ld->arch, suffix);
    int64_t v;
    int rc = gguf_get_i64(ld->g, key, &v);
    if (rc == THAW_ENOTFOUND && def >= 0)
        v = def;
    else if (rc == THAW_ENOTFOUND)
        return thaw_errf(ld->err, THAW_EFORMAT, "model: required key %s is missing", key);
    else if (rc)
        return thaw_errf(ld->err, THAW_EFORMAT, "model: key %s is not a single integer", key);
    if (v < lo || v > hi)
        return thaw_errf(ld->err, THAW_EFORMAT,
                         "model: key %s = %" PRId64 " is out of range [%" PRId64 ", %" PRId64 "]",
                         key, v, lo, hi);
    *out = (int32_t)v;
    return 0;
}

static int hp_float(struct loader *ld, const char *suffix, float def, float lo, float hi,
                    float *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", ld->arch, suffix);
    float v;
    int rc = gguf_get_f32(ld->g, key, &v);
    if (rc == THAW_ENOTFOUND)
        v = def;
    else if (rc)
        return thaw_errf(ld->err, THAW_EFORMAT, "model: key %s is not a float", key);
    if (!(v >= lo && v <= hi))
        return thaw_errf(ld->err, THAW_EFORMAT, "model: key %s = %g is out of range", key,
                         (double)v);
    *out = v;
    return 0;
}

static int load_rope_scaling(struct loader *ld, struct engine_model_info *hp)
{
    char key[128];
    const char *s;
    size_t len;
    float factor = 1.0f;
    hp->rope_freq_scale = 1.0f;
    snprintf(key, sizeof key, "%s.rope.scaling.type", ld->arch);
    int rc = gguf_get_str(ld->g, key, &s, &len);
    if (rc == 0) {
        if (len == 4 && !memcmp(s, "none", 4)) return 0;
        if (!(len == 6 && !memcmp(s, "linear", 6)))
            return thaw_errf(ld->err, THAW_EUNSUPPORTED,
                             "model: rope scaling '%.*s' is not supported (none, linear are)",
                             (int)(len > 32 ? 32 : len), s);
        if ((rc = hp_float(ld, "rope.scaling.factor", 1.0f, 1e-3f, 1e6f, &factor))) return rc;
    } else if (rc != THAW_ENOTFOUND) {
        return thaw_errf(ld->err, THAW_EFORMAT, "model: key %s is not a string", key);
    } else if ((rc = hp_float(ld, "rope.scale_linear", 1.0f, 1e-3f, 1e6f, &factor))) {
        return rc;
    }
    hp->rope_freq_scale = 1.0f / factor;
    return 0;
}

static int load_hparams(struct loader *ld, struct engine_model_info *hp)
{
    int rc;
    int32_t pool = -1, key_len;
    if ((rc = hp_int(ld, "embedding_length", -1, 1, 1 << 16, &hp->n_embd)) ||
        (rc = hp_int(ld, "block_count", -1, 1, 1024, &hp->n_layer)) ||
        (rc = hp_int(ld, "attention.head_count", -1, 1, 1024, &hp->n_head)) ||
        (rc = hp_int(ld, "attention.head_count_kv", hp->n_head, 1, hp->n_head, &hp->n_head_kv)) ||
        (rc = hp_int(ld, "feed_forward_length", -1, 1, 1 << 20, &hp->n_ff)) ||
        (rc = hp_int(ld, "context_length", 2048, 1, 1 << 24, &hp->n_ctx_train)) ||
        (rc = hp_int(ld, "attention.key_length", hp->n_embd / hp->n_head, 2, 1024, &key_len)) ||
        (rc = hp_int(ld, "attention.value_length", key_len, key_len, key_len, &key_len)) ||
        (rc = hp_int(ld, "rope.dimension_count", key_len, 2, key_len, &hp->n_rot)) ||
        (rc = hp_float(ld, "rope.freq_base", 10000.0f, 1.0f, 1e12f, &hp->rope_base)) ||
        (rc = hp_float(ld, "attention.layer_norm_rms_epsilon", 1e-5f, 0.0f, 1.0f, &hp->rms_eps)) ||
        (rc = hp_int(ld, "pooling_type", 1, 0, 3, &pool)) || (rc = load_rope_scaling(ld, hp)))
        return rc;
    hp->head_dim = key_len;
    hp->pooling = (enum engine_pooling)pool;
    if (hp->n_head % hp->n_head_kv)
        return thaw_errf(ld->err, THAW_EFORMAT,
                         "model: head_count %d is not a multiple of head_count_kv %d", hp->n_head,
                         hp->n_head_kv);
    if (hp->head_dim % 2 || hp->n_rot % 2)
        return thaw_errf(ld->err, THAW_EFORMAT, "model: head size %d / rope dims %d must be even",
                         hp->head_dim, hp->n_rot);
    if ((int64_t)hp->n_head * hp->head_dim > (1 << 16))
        return thaw_errf(ld->err, THAW_EFORMAT, "model: attention width is too large");
    return 0;
}

static const struct gguf_tensor *find(struct loader *ld, const char *name, bool required)
{
    const struct gguf_tensor *t = gguf_find_tensor(ld->g, name);
    if (!t && required) thaw_errf(ld->err, THAW_EFORMAT, "model: tensor '%s' is missing", name);
    return t;
}

static int check_shape(struct loader *ld, const struct gguf_tensor *t, uint64_t ne0, uint64_t ne1)
{
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1)
        return thaw_errf(ld->err, THAW_EFORMAT,
                         "model: tensor '%s' has shape [%" PRIu64 ", %" PRIu64 ", %" PRIu64
                         ", %" PRIu64 "], expected [%" PRIu64 ", %" PRIu64 "]",
                         t->name, t->ne[0], t->ne[1], t->ne[2], t->ne[3], ne0, ne1);
    return 0;
}

/* A matrix of n_rows rows of n_cols; n_rows < 0 takes it from the file. */
static int get_mat(struct loader *ld, const char *name, int64_t n_cols, int64_t n_rows,
                   struct eng_mat *out)
{
    const struct gguf_tensor *t = find(ld, name, true);
    if (!t) return THAW_EFORMAT;
    if (n_rows < 0) n_rows = t->ne[1] <= INT32_MAX ? (int64_t)t->ne[1] : -1;
    int rc = n_rows < 0 ? thaw_errf(ld->err, THAW_EFORMAT, "model: tensor '%s' too large", name)
                        : check_shape(ld, t, (uint64_t)n_cols, (uint64_t)n_rows);
    if (rc) return rc;
    out->type = t->type;
    out->n_cols = (int32_t)n_cols;
    out->n_rows = (int32_t)n_rows;
    out->row_bytes = ggml_row_bytes(t->type, (uint64_t)n_cols);
    out->data = t->data;
    return 0;
}

/* A vector of n values converted to an owned f32 array; NULL *out when
 * absent and not required. */
static int get_vec(struct loader *ld, const char *name, int64_t n, bool required, float **out)
{
    *out = NULL;
    const struct gguf_tensor *t = find(ld, name, required);
    if (!t) return required ? THAW_EFORMAT : 0;
    int rc = check_shape(ld, t, (uint64_t)n, 1);
    if (rc) return rc;
    *out = malloc((size_t)n * sizeof(float));
    if (!*out) return thaw_errf(ld->err, THAW_ENOMEM, "model: out of memory");
    if (t->type == GGML_TYPE_F32)
        memcpy(*out, t->data, (size_t)n * sizeof(float));
    else
        kern_dequantize(t->type, t->data, *out, n);
    return 0;
}

static int load_layer(struct loader *ld, int il, struct eng_layer *L)
{
    const struct engine_model_info *hp = &ld->m->info;
    int64_t d = hp->n_embd, q = (int64_t)hp->n_head * hp->head_dim;
    int64_t kv = (int64_t)hp->n_head_kv * hp->head_dim;
    char n[12][64];
    static const char *const suffix[12] = {
        "attn_norm.weight",   "attn_q.weight",   "attn_k.weight",   "attn_v.weight",
        "attn_output.weight", "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight",
        "ffn_down.weight",    "attn_q.bias",     "attn_k.bias",     "attn_v.bias",
    };
    for (int i = 0; i < 12; i++)
        snprintf(n[i], sizeof n[i], "blk.%d.%s", il, suffix[i]);
    int rc;
    if ((rc = get_vec(ld, n[0], d, true, &L->attn_norm)) ||
        (rc = get_mat(ld, n[1], d, q, &L->wq)) || (rc = get_mat(ld, n[2], d, kv, &L->wk)) ||
        (rc = get_mat(ld, n[3], d, kv, &L->wv)) || (rc = get_mat(ld, n[4], q, d, &L->wo)) ||
        (rc = get_vec(ld, n[5], d, true, &L->ffn_norm)) ||
        (rc = get_mat(ld, n[6], d, hp->n_ff, &L->w_gate)) ||
        (rc = get_mat(ld, n[7], d, hp->n_ff, &L->w_up)) ||
        (rc = get_mat(ld, n[8], hp->n_ff, d, &L->w_down)))
        return rc;
    bool need_bias = !strcmp(hp->arch, "qwen2");
    if ((rc = get_vec(ld, n[9], q, need_bias, &L->bq)) ||
        (rc = get_vec(ld, n[10], kv, need_bias, &L->bk)) ||
        (rc = get_vec(ld, n[11], kv, need_bias, &L->bv)))
        return rc;
    if (!L->bq != !L->bk || !L->bk != !L->bv)
        return thaw_errf(ld->err, THAW_EFORMAT, "model: layer %d has only some of the q/k/v biases",
                         il);
    ld->m->info.qkv_bias = L->bq != NULL;
    return 0;
}

static int load_rope(struct loader *ld)
{
    struct engine_model *m = ld->m;
    int half = m->info.n_rot / 2;
    float *factors = NULL;
    int rc = get_vec(ld, "rope_freqs.weight", half, false, &factors);
    if (rc) return rc;
    m->rope_inv_freq = malloc(half * sizeof(float));
    if (!m->rope_inv_freq) {
        free(factors);
        return thaw_errf(ld->err, THAW_ENOMEM, "model: out of memory");
    }
    m->info.rope_freq_factors = factors != NULL;
    for (int i = 0; i < half; i++) {
        double f = pow((double)m->info.rope_base, -2.0 * i / m->info.n_rot);
        f *= m->info.rope_freq_scale;
        if (factors) f /= factors[i];
        m->rope_inv_freq[i] = (float)f;
    }
    free(factors);
    return 0;
}

static void summarise(struct engine_model *m)
{
    uint64_t by_type[KERN_TYPES_MAX] = {0};
    for (int64_t i = 0; i < gguf_n_tensors(m->g); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(m->g, i);
        m->info.weight_bytes += t->nbytes;
        m->info.n_params += t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        if (t->n_dims >= 2 && (unsigned)t->type < KERN_TYPES_MAX) by_type[t->type] += t->nbytes;
    }
    int best = 0;
    for (int t = 1; t < KERN_TYPES_MAX; t++)
        if (by_type[t] > by_type[best]) best = t;
    m->info.ftype = (enum ggml_type)best;
}

static int load_arch(struct loader *ld)
{
    const char *s;
    size_t len;
    if (gguf_get_str(ld->g, "general.architecture", &s, &len))
        return thaw_errf(ld->err, THAW_EFORMAT, "model: general.architecture is missing");
    struct engine_model_info *hp = &ld->m->info;
    for (size_t i = 0; i < ARRAY_LEN(archs); i++)
        if (strlen(archs[i].name) == len && !memcmp(archs[i].name, s, len)) {
            str_copy(hp->arch, archs[i].name, sizeof hp->arch);
            hp->rope = archs[i].rope;
            ld->arch = hp->arch;
            break;
        }
    if (!ld->arch)
        return thaw_errf(ld->err, THAW_EUNSUPPORTED,
                         "model: architecture '%.*s' is not supported (llama, mistral, qwen2 are)",
                         (int)(len > 64 ? 64 : len), s);
    if (!gguf_get_str(ld->g, "general.name", &s, &len))
        snprintf(hp->name, sizeof hp->name, "%.*s", (int)(len > 127 ? 127 : len), s);
    return 0;
}

static int load(struct loader *ld)
{
    struct engine_model *m = ld->m;
    struct engine_model_info *hp = &m->info;
    int rc;
    if ((rc = load_arch(ld)) || (rc = load_hparams(ld, hp))) return rc;
    if ((rc = get_mat(ld, "token_embd.weight", hp->n_embd, -1, &m->tok_embd))) return rc;
    hp->n_vocab = m->tok_embd.n_rows;
    if (gguf_find_tensor(ld->g, "output.weight")) {
        rc = get_mat(ld, "output.weight", hp->n_embd, hp->n_vocab, &m->output);
    } else {
        m->output = m->tok_embd;
        hp->tied_output = true;
    }
    if (rc || (rc = get_vec(ld, "output_norm.weight", hp->n_embd, true, &m->output_norm)) ||
        (rc = load_rope(ld)))
        return rc;
    m->layers = calloc(hp->n_layer, sizeof(*m->layers));
    if (!m->layers) return thaw_errf(ld->err, THAW_ENOMEM, "model: out of memory");
    for (int il = 0; il < hp->n_layer; il++)
        if ((rc = load_layer(ld, il, &m->layers[il]))) return rc;
    summarise(m);
    return 0;
}

int engine_model_from_gguf(struct gguf *g, struct engine_model **out, struct thaw_err *err)
{
    *out = NULL;
    struct engine_model *m = calloc(1, sizeof(*m));
    if (!m) {
        gguf_close(g);
        return thaw_errf(err, THAW_ENOMEM, "model: out of memory");
    }
    m->g = g;
    struct loader ld = {.m = m, .g = g, .err = err};
    int rc = load(&ld);
    if (rc) {
        engine_model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

/* Every matrix the forward pass multiplies by (the output one once when
 * tied: it is the embedding table's struct copy). */
static int model_mats(struct engine_model *m, struct eng_mat **v, int cap)
{
    int n = 0;
    for (int il = 0; il < m->info.n_layer; il++) {
        struct eng_layer *L = &m->layers[il];
        struct eng_mat *lm[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7 && n < cap; i++)
            v[n++] = lm[i];
    }
    if (n < cap) v[n++] = &m->output;
    return n;
}

/* Drops [p, p + len) from the process's page tables, whole pages inside it
 * only: the file's pages stay in the page cache while the kernel keeps them,
 * and a later read (a forced portable path) faults them back in. */
static void drop_pages(const void *p, size_t len)
{
    long ps = sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + (uintptr_t)ps - 1) & ~((uintptr_t)ps - 1);
    uintptr_t b = ((uintptr_t)p + len) & ~((uintptr_t)ps - 1);
    if (ps > 0 && b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

/* Packed copies live in one mapping aligned to 2 MiB and asking for
 * transparent huge pages. On this kind of VM a fresh 4 KiB page costs ~10 us
 * to fault in (2.8 s per GiB) and a forked instance pays again on its first
 * read of every page (the accessed bit of each copied entry); a huge page
 * pays once per 2 MiB. */
#define PACK_ALIGN ((size_t)2 << 20)

static void *pack_arena_map(size_t bytes)
{
    size_t len = bytes + PACK_ALIGN;
    uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    uint8_t *a = (uint8_t *)(((uintptr_t)p + PACK_ALIGN - 1) & ~(uintptr_t)(PACK_ALIGN - 1));
    if (a > p) munmap(p, (size_t)(a - p));
    if (p + len > a + bytes) munmap(a + bytes, (size_t)(p + len - (a + bytes)));
#ifdef MADV_HUGEPAGE
    madvise(a, bytes, MADV_HUGEPAGE); /* a hint: without it, only slower */
#endif
    return a;
}

struct pack_job {
    struct eng_mat **mats; /* those to pack, largest first */
    int n;
    atomic_int next;
    bool tied_output;
    const struct eng_mat *output;
};

/* One thread's share: matrices claimed one at a time, so the largest ones
 * (taken first) spread over the threads. */
static void pack_part(void *arg, int part, int n_parts, int thread)
{
    (void)part, (void)n_parts, (void)thread;
    struct pack_job *job = arg;
    for (int i; (i = atomic_fetch_add(&job->next, 1)) < job->n;) {
        struct eng_mat *w = job->mats[i];
        kern_pack(w->type, w->data, w->n_rows, w->n_cols, w->packed);
        /* the embedding table behind a tied output is still read by rows */
        if (!(w == job->output && job->tied_output))
            drop_pages(w->data, w->row_bytes * (size_t)w->n_rows);
    }
}

static int cmp_mat_size(const void *a, const void *b)
{
    const struct eng_mat *x = *(struct eng_mat *const *)a, *y = *(struct eng_mat *const *)b;
    size_t sx = x->row_bytes * (size_t)x->n_rows, sy = y->row_bytes * (size_t)y->n_rows;
    return sx < sy ? 1 : sx > sy ? -1 : 0;
}

/* Threads for packing: the CPUs this process may run on. Loading is a burst
 * before any request; the copy does not depend on the count. */
static int pack_threads(void)
{
    cpu_set_t set;
    int n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
    return n < 1 ? 1 : n > 8 ? 8 : n;
}

static size_t pack_bytes(const struct eng_mat *w)
{
    return (kern_pack_bytes(w->type, w->n_rows, w->n_cols) + 63) & ~(size_t)63;
}

/* Copies every matrix listed into the arena, on pack_threads() threads. */
static void pack_all(struct engine_model *m, struct eng_mat **mats, int n)
{
    uint8_t *at = m->pack_arena;
    for (int i = 0; i < n; i++) {
        mats[i]->packed = at;
        at += pack_bytes(mats[i]);
    }
    qsort(mats, (size_t)n, sizeof(*mats), cmp_mat_size);
    struct pack_job job = {
        .mats = mats, .n = n, .tied_output = m->info.tied_output, .output = &m->output};
    struct tpool *pool = NULL;
    int nt = pack_threads();
    if (nt > 1 && tpool_new(nt, &pool) == 0) {
        tpool_set_adaptive(pool, false);
        tpool_run(pool, pack_part, &job, nt);
        tpool_free(pool);
    } else {
        pack_part(&job, 0, 1, 0);
    }
}

/* See engine_model_load. A matrix without a packed layout is left as is. */
static int model_pack(struct engine_model *m, struct thaw_err *err)
{
    const char *env = getenv("THAW_ENGINE_PACK");
    if (env && !strcmp(env, "0")) return 0;
    enum { CAP = 7 * 1024 + 1 };
    struct eng_mat **mats = malloc(CAP * sizeof(*mats));
    if (!mats) return thaw_errf(err, THAW_ENOMEM, "model: out of memory");
    int n = model_mats(m, mats, CAP), k = 0;
    size_t total = 0;
    for (int i = 0; i < n; i++)
        if (kern_pack_bytes(mats[i]->type, mats[i]->n_rows, mats[i]->n_cols))
            total += pack_bytes(mats[i]), mats[k++] = mats[i];
    int rc = 0;
    if (k && !(m->pack_arena = pack_arena_map(total))) {
        rc = thaw_errf(err, THAW_ENOMEM, "model: out of memory for %zu MiB of packed weights",
                       total >> 20);
    } else if (k) {
        m->pack_arena_bytes = m->info.packed_bytes = total;
        pack_all(m, mats, k);
    }
    free(mats);
    return rc;
}

int engine_model_load(const char *path, struct engine_model **out, struct thaw_err *err)
{
    struct gguf *g;
    *out = NULL;
    int rc = gguf_open(path, &g, err);
    if (rc) return rc;
    rc = engine_model_from_gguf(g, out, err);
    if (rc) return rc;
    gguf_prefault(g); /* a hint: faults later are only slower */
    if ((rc = model_pack(*out, err))) {
        engine_model_free(*out);
        *out = NULL;
    }
    return rc;
}

/* Whole pages around [p, p + len). */
static void populate_read(const void *p, size_t len)
{
    long ps = sysconf(_SC_PAGESIZE);
    if (ps <= 0 || !len) return;
    uintptr_t a = (uintptr_t)p & ~((uintptr_t)ps - 1);
#ifdef MADV_POPULATE_READ
    madvise((void *)a, (uintptr_t)p + len - a, MADV_POPULATE_READ); /* a hint */
#else
    madvise((void *)a, (uintptr_t)p + len - a, MADV_WILLNEED);
#endif
}

void engine_model_prefault(struct engine_model *m)
{
    enum { CAP = 7 * 1024 + 1 };
    struct eng_mat **mats = malloc(CAP * sizeof(*mats));
    if (!mats) return;
    int n = model_mats(m, mats, CAP);
    for (int i = 0; i < n; i++)
        if (!mats[i]->packed) populate_read(mats[i]->data, mats[i]->row_bytes * mats[i]->n_rows);
    free(mats);
    if (m->output.packed || !m->info.tied_output)
        populate_read(m->tok_embd.data, m->tok_embd.row_bytes * m->tok_embd.n_rows);
}

void engine_model_free(struct engine_model *m)
{
    if (!m) return;
    if (m->layers)
        for (int il = 0; il < m->info.n_layer; il++) {
            struct eng_layer *L = &m->layers[il];
            free(L->attn_norm);
            free(L->ffn_norm);
            free(L->bq);
            free(L->bk);
            free(L->bv);
        }
    free(m->layers);
    if (m->pack_arena) munmap(m->pack_arena, m->pack_arena_bytes);
    free(m->output_norm);
    free(m->rope_inv_freq);
    gguf_close(m->g);
    free(m);
}

const struct engine_model_info *engine_model_info(const struct engine_model *m)
{
    return &m->info;
}

const struct gguf *engine_model_gguf(const struct engine_model *m)
{
    return m->g;
}
