/* The naive reference forward pass (see support_reference.h). It reads the
 * hyperparameters itself and follows the textbook definitions: RMSNorm,
 * RoPE on (2i, 2i+1) pairs for llama/mistral and (i, i + n_rot/2) for qwen2,
 * softmax attention with grouped KV heads, SwiGLU. */
#include "support_reference.h"

#include "engine/gguf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ref_layer {
    double *an, *fn, *wq, *wk, *wv, *wo, *wg, *wu, *wd, *bq, *bk, *bv;
};

struct ref_model {
    int vocab, d, n_layer, n_head, n_kv, hd, ff, n_rot;
    double eps, base, fscale;
    double *freq_factors; /* n_rot / 2, or NULL */
    bool neox;
    double *emb, *out, *out_norm;
    struct ref_layer *L;
};

static double *load_t(const struct gguf *g, const char *name, int64_t expect, bool required)
{
    const struct gguf_tensor *t = gguf_find_tensor(g, name);
    if (!t) {
        if (required) fprintf(stderr, "ref: missing %s\n", name);
        return NULL;
    }
    int64_t n = (int64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
    if (expect >= 0 && n != expect) {
        fprintf(stderr, "ref: %s has %lld elements, expected %lld\n", name, (long long)n,
                (long long)expect);
        return NULL;
    }
    float *f = malloc(n * sizeof(float));
    double *d = malloc(n * sizeof(double));
    kern_dequantize(t->type, t->data, f, n);
    for (int64_t i = 0; i < n; i++)
        d[i] = f[i];
    free(f);
    return d;
}

static int geti(const struct gguf *g, const char *arch, const char *suffix, int def)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, suffix);
    int64_t v;
    return gguf_get_i64(g, k, &v) ? def : (int)v;
}

static double getf(const struct gguf *g, const char *arch, const char *suffix, double def)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, suffix);
    float v;
    return gguf_get_f32(g, k, &v) ? def : v;
}

struct ref_model *ref_load(const char *path)
{
    struct gguf *g;
    struct thaw_err err;
    if (gguf_open(path, &g, &err)) {
        fprintf(stderr, "ref: %s\n", err.msg);
        return NULL;
    }
    const char *a;
    size_t al;
    char arch[32] = "";
    if (!gguf_get_str(g, "general.architecture", &a, &al) && al < sizeof arch) memcpy(arch, a, al);
    struct ref_model *m = calloc(1, sizeof(*m));
    m->neox = !strcmp(arch, "qwen2");
    m->d = geti(g, arch, "embedding_length", 0);
    m->n_layer = geti(g, arch, "block_count", 0);
    m->n_head = geti(g, arch, "attention.head_count", 1);
    m->n_kv = geti(g, arch, "attention.head_count_kv", m->n_head);
    m->ff = geti(g, arch, "feed_forward_length", 0);
    m->hd = m->d / m->n_head;
    m->n_rot = geti(g, arch, "rope.dimension_count", m->hd);
    m->eps = getf(g, arch, "attention.layer_norm_rms_epsilon", 1e-5);
    m->base = getf(g, arch, "rope.freq_base", 10000.0);
    m->fscale = 1.0 / getf(g, arch, "rope.scaling.factor", 1.0);
    const struct gguf_tensor *te = gguf_find_tensor(g, "token_embd.weight");
    m->vocab = te ? (int)te->ne[1] : 0;
    int64_t d = m->d, q = (int64_t)m->n_head * m->hd, kv = (int64_t)m->n_kv * m->hd;
    m->emb = load_t(g, "token_embd.weight", d * m->vocab, true);
    m->out = load_t(g, "output.weight", d * m->vocab, false);
    if (!m->out) m->out = m->emb;
    m->out_norm = load_t(g, "output_norm.weight", d, true);
    m->freq_factors = load_t(g, "rope_freqs.weight", m->n_rot / 2, false);
    m->L = calloc(m->n_layer, sizeof(*m->L));
    bool ok = m->emb && m->out_norm;
    for (int il = 0; il < m->n_layer && ok; il++) {
        struct ref_layer *L = &m->L[il];
        char n[64];
#define T(field, suffix, count, req)                                                               \
    snprintf(n, sizeof n, "blk.%d.%s", il, suffix);                                                \
    L->field = load_t(g, n, count, req);                                                           \
    ok = ok && (L->field || !req)
        T(an, "attn_norm.weight", d, true);
        T(fn, "ffn_norm.weight", d, true);
        T(wq, "attn_q.weight", d * q, true);
        T(wk, "attn_k.weight", d * kv, true);
        T(wv, "attn_v.weight", d * kv, true);
        T(wo, "attn_output.weight", q * d, true);
        T(wg, "ffn_gate.weight", d * m->ff, true);
        T(wu, "ffn_up.weight", d * m->ff, true);
        T(wd, "ffn_down.weight", (int64_t)m->ff * d, true);
        T(bq, "attn_q.bias", q, false);
        T(bk, "attn_k.bias", kv, false);
        T(bv, "attn_v.bias", kv, false);
#undef T
    }
    gguf_close(g);
    if (!ok) {
        ref_free(m);
        return NULL;
    }
    return m;
}

void ref_free(struct ref_model *m)
{
    if (!m) return;
    for (int il = 0; il < m->n_layer; il++) {
        struct ref_layer *L = &m->L[il];
        double *p[] = {L->an, L->fn, L->wq, L->wk, L->wv, L->wo,
                       L->wg, L->wu, L->wd, L->bq, L->bk, L->bv};
        for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
            free(p[i]);
    }
    free(m->L);
    if (m->out != m->emb) free(m->out);
    free(m->emb);
    free(m->out_norm);
    free(m->freq_factors);
    free(m);
}

int ref_n_vocab(const struct ref_model *m)
{
    return m->vocab;
}

int ref_n_embd(const struct ref_model *m)
{
    return m->d;
}

/* y[r] = sum_c W[r][c] x[c] (+ b[r]); W stored row-major, rows of cols. */
static void matvec(double *y, const double *W, const double *x, int rows, int cols, const double *b)
{
    for (int r = 0; r < rows; r++) {
        double s = b ? b[r] : 0;
        for (int c = 0; c < cols; c++)
            s += W[(size_t)r * cols + c] * x[c];
        y[r] = s;
    }
}

static void norm(double *o, const double *x, const double *w, int n, double eps)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += x[i] * x[i];
    double s = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++)
        o[i] = x[i] * s * w[i];
}

static void rope(const struct ref_model *m, double *v, int n_heads, int pos)
{
    int half = m->n_rot / 2;
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < half; i++) {
            double th = pos * pow(m->base, -2.0 * i / m->n_rot) * m->fscale;
            if (m->freq_factors) th /= m->freq_factors[i];
            int i0 = m->neox ? i : 2 * i, i1 = m->neox ? i + half : 2 * i + 1;
            double *p = v + (size_t)h * m->hd, a = p[i0], b = p[i1];
            p[i0] = a * cos(th) - b * sin(th);
            p[i1] = a * sin(th) + b * cos(th);
        }
}

void ref_forward(const struct ref_model *m, const int32_t *tokens, int n, double *logits,
                 double *hidden)
{
    int d = m->d, q = m->n_head * m->hd, kv = m->n_kv * m->hd, hd = m->hd;
    double *x = calloc((size_t)n * d, sizeof(double)), *xb = calloc(d, sizeof(double));
    double *K = calloc((size_t)n * kv, sizeof(double)), *V = calloc((size_t)n * kv, sizeof(double));
    double *Q = calloc((size_t)n * q, sizeof(double)), *att = calloc(q, sizeof(double));
    double *tmp = calloc(d, sizeof(double)), *s = calloc(n, sizeof(double));
    double *g = calloc(m->ff, sizeof(double)), *u = calloc(m->ff, sizeof(double));
    for (int t = 0; t < n; t++)
        memcpy(x + (size_t)t * d, m->emb + (size_t)tokens[t] * d, d * sizeof(double));
    for (int il = 0; il < m->n_layer; il++) {
        const struct ref_layer *L = &m->L[il];
        for (int t = 0; t < n; t++) {
            norm(xb, x + (size_t)t * d, L->an, d, m->eps);
            matvec(Q + (size_t)t * q, L->wq, xb, q, d, L->bq);
            matvec(K + (size_t)t * kv, L->wk, xb, kv, d, L->bk);
            matvec(V + (size_t)t * kv, L->wv, xb, kv, d, L->bv);
            rope(m, Q + (size_t)t * q, m->n_head, t);
            rope(m, K + (size_t)t * kv, m->n_kv, t);
        }
        for (int t = 0; t < n; t++) {
            for (int h = 0; h < m->n_head; h++) {
                int kh = h / (m->n_head / m->n_kv);
                double mx = -1e300, sum = 0;
                for (int j = 0; j <= t; j++) {
                    double dot = 0;
                    for (int i = 0; i < hd; i++)
                        dot += Q[(size_t)t * q + h * hd + i] * K[(size_t)j * kv + kh * hd + i];
                    s[j] = dot / sqrt((double)hd);
                    if (s[j] > mx) mx = s[j];
                }
                for (int j = 0; j <= t; j++)
                    sum += (s[j] = exp(s[j] - mx));
                for (int i = 0; i < hd; i++) {
                    double o = 0;
                    for (int j = 0; j <= t; j++)
                        o += s[j] / sum * V[(size_t)j * kv + kh * hd + i];
                    att[h * hd + i] = o;
                }
            }
            matvec(tmp, L->wo, att, d, q, NULL);
            double *xt = x + (size_t)t * d;
            for (int i = 0; i < d; i++)
                xt[i] += tmp[i];
            norm(xb, xt, L->fn, d, m->eps);
            matvec(g, L->wg, xb, m->ff, d, NULL);
            matvec(u, L->wu, xb, m->ff, d, NULL);
            for (int i = 0; i < m->ff; i++)
                g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
            matvec(tmp, L->wd, g, d, m->ff, NULL);
            for (int i = 0; i < d; i++)
                xt[i] += tmp[i];
        }
    }
    for (int t = 0; t < n; t++) {
        norm(xb, x + (size_t)t * d, m->out_norm, d, m->eps);
        if (hidden) memcpy(hidden + (size_t)t * d, xb, d * sizeof(double));
        if (logits) matvec(logits + (size_t)t * m->vocab, m->out, xb, m->vocab, d, NULL);
    }
    free(x), free(xb), free(K), free(V), free(Q), free(att), free(tmp), free(s), free(g), free(u);
}
