/* Portable C matmul kernels: one dot product per (row, token), integer
 * within a block, float across blocks. Every SIMD path is tested against
 * these, so they favour obviousness; the SIMD paths compute the same
 * per-block integers and differ only in the order floats are summed. */
#include "engine/kernels_int.h"

typedef float (*dot_fn)(const uint8_t *row, const uint8_t *prep, int n);

static float f16(const uint8_t *p)
{
    return kern_f16_table_(kern_ld16(p));
}

/* Views of a prepared KPREP_Q8 / KPREP_Q8K row of n elements. */
#define Q8_QS(p)       ((const int8_t *)(p))
#define Q8_D(p, n)     ((const float *)((p) + (n)))
#define Q8_SUM(p, n)   ((const int32_t *)((p) + (n) + ((n) / KQ) * 4))
#define Q8K_BSUM(p, n) ((const int16_t *)((p) + (n) + ((n) / KQ_K) * 4))

static float dot_f32(const uint8_t *row, const uint8_t *prep, int n)
{
    const float *x = (const float *)prep;
    float acc[8] = {0};
    for (int i = 0; i < n; i += 8)
        for (int k = 0; k < 8 && i + k < n; k++) {
            float w;
            memcpy(&w, row + 4 * (size_t)(i + k), 4);
            acc[k] += w * x[i + k];
        }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static float dot_f16(const uint8_t *row, const uint8_t *prep, int n)
{
    const float *x = (const float *)prep;
    float acc[8] = {0};
    for (int i = 0; i < n; i += 8)
        for (int k = 0; k < 8 && i + k < n; k++)
            acc[k] += f16(row + 2 * (size_t)(i + k)) * x[i + k];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static float dot_bf16(const uint8_t *row, const uint8_t *prep, int n)
{
    const float *x = (const float *)prep;
    float acc[8] = {0};
    for (int i = 0; i < n; i += 8)
        for (int k = 0; k < 8 && i + k < n; k++)
            acc[k] += kern_bf16_to_fp32(kern_ld16(row + 2 * (size_t)(i + k))) * x[i + k];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static float dot_q4_0(const uint8_t *row, const uint8_t *prep, int n)
{
    const int8_t *xq = Q8_QS(prep);
    const float *xd = Q8_D(prep, n);
    const int32_t *xs = Q8_SUM(prep, n);
    float acc = 0;
    for (int b = 0; b < n / KQ; b++, row += KB_Q4_0, xq += KQ) {
        const uint8_t *qs = row + 2;
        int s = 0;
        for (int j = 0; j < 16; j++)
            s += (qs[j] & 15) * xq[j] + (qs[j] >> 4) * xq[j + 16];
        acc += f16(row) * xd[b] * (float)(s - 8 * xs[b]);
    }
    return acc;
}

static float dot_q4_1(const uint8_t *row, const uint8_t *prep, int n)
{
    const int8_t *xq = Q8_QS(prep);
    const float *xd = Q8_D(prep, n);
    const int32_t *xs = Q8_SUM(prep, n);
    float acc = 0;
    for (int b = 0; b < n / KQ; b++, row += KB_Q4_1, xq += KQ) {
        const uint8_t *qs = row + 4;
        int s = 0;
        for (int j = 0; j < 16; j++)
            s += (qs[j] & 15) * xq[j] + (qs[j] >> 4) * xq[j + 16];
        acc += f16(row) * xd[b] * (float)s + f16(row + 2) * xd[b] * (float)xs[b];
    }
    return acc;
}

/* Sum of the 5-bit values of a q5 block (low nibbles qs, high bits qh) times xq. */
static int q5_isum(const uint8_t *qs, uint32_t qh, const int8_t *xq)
{
    int s = 0;
    for (int j = 0; j < 16; j++) {
        int lo = (qs[j] & 15) | (int)(((qh >> j) & 1) << 4);
        int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
        s += lo * xq[j] + hi * xq[j + 16];
    }
    return s;
}

static float dot_q5_0(const uint8_t *row, const uint8_t *prep, int n)
{
    const int8_t *xq = Q8_QS(prep);
    const float *xd = Q8_D(prep, n);
    const int32_t *xs = Q8_SUM(prep, n);
    float acc = 0;
    for (int b = 0; b < n / KQ; b++, row += KB_Q5_0, xq += KQ) {
        int s = q5_isum(row + 6, kern_ld32(row + 2), xq);
        acc += f16(row) * xd[b] * (float)(s - 16 * xs[b]);
    }
    return acc;
}

static float dot_q5_1(const uint8_t *row, const uint8_t *prep, int n)
{
    const int8_t *xq = Q8_QS(prep);
    const float *xd = Q8_D(prep, n);
    const int32_t *xs = Q8_SUM(prep, n);
    float acc = 0;
    for (int b = 0; b < n / KQ; b++, row += KB_Q5_1, xq += KQ) {
        int s = q5_isum(row + 8, kern_ld32(row + 4), xq);
        acc += f16(row) * xd[b] * (float)s + f16(row + 2) * xd[b] * (float)xs[b];
    }
    return acc;
}

static float dot_q8_0(const uint8_t *row, const uint8_t *prep, int n)
{
    const int8_t *xq = Q8_QS(prep);
    const float *xd = Q8_D(prep, n);
    float acc = 0;
    for (int b = 0; b < n / KQ; b++, row += KB_Q8_0, xq += KQ) {
        const int8_t *qs = (const int8_t *)(row + 2);
        int s = 0;
        for (int j = 0; j < KQ; j++)
            s += qs[j] * xq[j];
        acc += f16(row) * xd[b] * (float)s;
    }
    return acc;
}

/* q4_K: per 32-element sub-block j, x = d*sc[j]*q - dmin*m[j], so the dot is
 * d*dx*sum_j sc[j]*(q.y)_j - dmin*dx*sum_j m[j]*(sum y)_j. */
static float dot_q4_K(const uint8_t *row, const uint8_t *prep, int n)
{
    const int8_t *xq = Q8_QS(prep);
    const float *xd = Q8_D(prep, n);
    const int16_t *bs = Q8K_BSUM(prep, n);
    float acc = 0;
    for (int b = 0; b < n / KQ_K; b++, row += KB_Q4_K, xq += KQ_K, bs += 16) {
        const uint8_t *q = row + 16;
        int sumi = 0, summ = 0;
        for (int j = 0; j < 4; j++, q += 32) {
            uint8_t sc1, m1, sc2, m2;
            kern_scale_min_k4(2 * j, row + 4, &sc1, &m1);
            kern_scale_min_k4(2 * j + 1, row + 4, &sc2, &m2);
            int s1 = 0, s2 = 0;
            for (int l = 0; l < 32; l++) {
                s1 += (q[l] & 15) * xq[64 * j + l];
                s2 += (q[l] >> 4) * xq[64 * j + 32 + l];
            }
            sumi += sc1 * s1 + sc2 * s2;
            summ += m1 * (bs[4 * j] + bs[4 * j + 1]) + m2 * (bs[4 * j + 2] + bs[4 * j + 3]);
        }
        acc += f16(row) * xd[b] * (float)sumi - f16(row + 2) * xd[b] * (float)summ;
    }
    return acc;
}

static float dot_q5_K(const uint8_t *row, const uint8_t *prep, int n)
{
    const int8_t *xq = Q8_QS(prep);
    const float *xd = Q8_D(prep, n);
    const int16_t *bs = Q8K_BSUM(prep, n);
    float acc = 0;
    for (int b = 0; b < n / KQ_K; b++, row += KB_Q5_K, xq += KQ_K, bs += 16) {
        const uint8_t *qh = row + 16, *ql = row + 48;
        int sumi = 0, summ = 0;
        for (int j = 0; j < 4; j++, ql += 32) {
            uint8_t sc1, m1, sc2, m2;
            kern_scale_min_k4(2 * j, row + 4, &sc1, &m1);
            kern_scale_min_k4(2 * j + 1, row + 4, &sc2, &m2);
            int s1 = 0, s2 = 0;
            for (int l = 0; l < 32; l++) {
                int lo = (ql[l] & 15) | (((qh[l] >> (2 * j)) & 1) << 4);
                int hi = (ql[l] >> 4) | (((qh[l] >> (2 * j + 1)) & 1) << 4);
                s1 += lo * xq[64 * j + l];
                s2 += hi * xq[64 * j + 32 + l];
            }
            sumi += sc1 * s1 + sc2 * s2;
            summ += m1 * (bs[4 * j] + bs[4 * j + 1]) + m2 * (bs[4 * j + 2] + bs[4 * j + 3]);
        }
        acc += f16(row) * xd[b] * (float)sumi - f16(row + 2) * xd[b] * (float)summ;
    }
    return acc;
}

/* q6_K: x = d*sc[g]*(q-32) per 16-element group g; the -32 folds into the
 * group sums of y. */
static float dot_q6_K(const uint8_t *row, const uint8_t *prep, int n)
{
    const int8_t *xq = Q8_QS(prep);
    const float *xd = Q8_D(prep, n);
    const int16_t *bs = Q8K_BSUM(prep, n);
    float acc = 0;
    for (int b = 0; b < n / KQ_K; b++, row += KB_Q6_K, xq += KQ_K, bs += 16) {
        const uint8_t *ql = row, *qh = row + 128;
        const int8_t *sc = (const int8_t *)(row + 192);
        int g[16] = {0};
        for (int h = 0; h < 2; h++, ql += 64, qh += 32) {
            const int8_t *y = xq + 128 * h;
            for (int l = 0; l < 32; l++) {
                int q1 = (ql[l] & 15) | (((qh[l] >> 0) & 3) << 4);
                int q2 = (ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4);
                int q3 = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                int q4 = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                g[8 * h + l / 16 + 0] += q1 * y[l];
                g[8 * h + l / 16 + 2] += q2 * y[l + 32];
                g[8 * h + l / 16 + 4] += q3 * y[l + 64];
                g[8 * h + l / 16 + 6] += q4 * y[l + 96];
            }
        }
        int sumi = 0;
        for (int k = 0; k < 16; k++)
            sumi += sc[k] * (g[k] - 32 * bs[k]);
        acc += f16(row + 208) * xd[b] * (float)sumi;
    }
    return acc;
}

static float dot_q8_K(const uint8_t *row, const uint8_t *prep, int n)
{
    const int8_t *xq = Q8_QS(prep);
    const float *xd = Q8_D(prep, n);
    float acc = 0;
    for (int b = 0; b < n / KQ_K; b++, row += KB_Q8_K, xq += KQ_K) {
        const int8_t *qs = (const int8_t *)(row + 4);
        float d;
        memcpy(&d, row, 4);
        int s = 0;
        for (int j = 0; j < KQ_K; j++)
            s += qs[j] * xq[j];
        acc += d * xd[b] * (float)s;
    }
    return acc;
}

static void mm_generic(dot_fn dot, const uint8_t *W, size_t row_bytes, int n_cols,
                       const uint8_t *prep, size_t prep_stride, int n_tok, float *y, int y_stride,
                       int r0, int r1)
{
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = W + (size_t)r * row_bytes;
        for (int t = 0; t < n_tok; t++)
            y[(size_t)t * (size_t)y_stride + (size_t)r] =
                dot(row, prep + (size_t)t * prep_stride, n_cols);
    }
}

#define MM_WRAP(T)                                                                                 \
    static void mm_##T(const uint8_t *W, size_t rb, int n, const uint8_t *p, size_t ps, int nt,    \
                       float *y, int ys, int r0, int r1)                                           \
    {                                                                                              \
        mm_generic(dot_##T, W, rb, n, p, ps, nt, y, ys, r0, r1);                                   \
    }

MM_WRAP(f32)
MM_WRAP(f16)
MM_WRAP(bf16)
MM_WRAP(q4_0)
MM_WRAP(q4_1)
MM_WRAP(q5_0)
MM_WRAP(q5_1)
MM_WRAP(q8_0)
MM_WRAP(q4_K)
MM_WRAP(q5_K)
MM_WRAP(q6_K)
MM_WRAP(q8_K)

void kern_ops_portable(struct kern_ops *ops)
{
    ops->name = "portable";
    ops->mm[GGML_TYPE_F32] = mm_f32;
    ops->mm[GGML_TYPE_F16] = mm_f16;
    ops->mm[GGML_TYPE_BF16] = mm_bf16;
    ops->mm[GGML_TYPE_Q4_0] = mm_q4_0;
    ops->mm[GGML_TYPE_Q4_1] = mm_q4_1;
    ops->mm[GGML_TYPE_Q5_0] = mm_q5_0;
    ops->mm[GGML_TYPE_Q5_1] = mm_q5_1;
    ops->mm[GGML_TYPE_Q8_0] = mm_q8_0;
    ops->mm[GGML_TYPE_Q4_K] = mm_q4_K;
    ops->mm[GGML_TYPE_Q5_K] = mm_q5_K;
    ops->mm[GGML_TYPE_Q6_K] = mm_q6_K;
    ops->mm[GGML_TYPE_Q8_K] = mm_q8_K;
}
