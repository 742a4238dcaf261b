/* Reference quantisers from f32 to every supported GGUF block type. They
 * follow ggml's reference algorithms (same scale searches, same rounding),
 * so files written by `thaw model gen` quantise as llama.cpp would. Used by
 * the writer and tests, not on the inference path, so clarity beats speed. */
#include "engine/kernels_int.h"

#include <assert.h>
#include <math.h>

#define GROUP_MAX_EPS 1e-15f

/* Round to nearest, ties to even (as ggml's nearest_int). */
static int nearest_int(float f)
{
    return (int)lrintf(f);
}

static void st16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, 2);
}

static void sth(uint8_t *p, float f)
{
    st16(p, kern_fp32_to_fp16(f));
}

static float ldh(const uint8_t *p)
{
    return kern_fp16_to_fp32(kern_ld16(p));
}

/* The element of largest magnitude, with its sign. */
static float signed_absmax(const float *x, int n, float *amax_out)
{
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    *amax_out = amax;
    return max;
}

static void minmax(const float *x, int n, float *mn, float *mx)
{
    *mn = INFINITY;
    *mx = -INFINITY;
    for (int i = 0; i < n; i++) {
        *mn = fminf(*mn, x[i]);
        *mx = fmaxf(*mx, x[i]);
    }
}

/* ---- 32-element types ------------------------------------------------- */

static void q4_0_block(const float *x, uint8_t *b)
{
    float amax, max = signed_absmax(x, KQ, &amax);
    float d = max / -8, id = d ? 1.0f / d : 0.0f;
    sth(b, d);
    for (int j = 0; j < 16; j++) {
        int lo = (int)(x[j] * id + 8.5f), hi = (int)(x[j + 16] * id + 8.5f);
        lo = lo > 15 ? 15 : lo;
        hi = hi > 15 ? 15 : hi;
        b[2 + j] = (uint8_t)(lo | (hi << 4));
    }
}

static void q4_1_block(const float *x, uint8_t *b)
{
    float mn, mx;
    minmax(x, KQ, &mn, &mx);
    float d = (mx - mn) / 15, id = d ? 1.0f / d : 0.0f;
    sth(b, d);
    sth(b + 2, mn);
    for (int j = 0; j < 16; j++) {
        int lo = (int)((x[j] - mn) * id + 0.5f), hi = (int)((x[j + 16] - mn) * id + 0.5f);
        lo = lo > 15 ? 15 : lo;
        hi = hi > 15 ? 15 : hi;
        b[4 + j] = (uint8_t)(lo | (hi << 4));
    }
}

static void q5_0_block(const float *x, uint8_t *b)
{
    float amax, max = signed_absmax(x, KQ, &amax);
    float d = max / -16, id = d ? 1.0f / d : 0.0f;
    uint32_t qh = 0;
    sth(b, d);
    for (int j = 0; j < 16; j++) {
        int lo = (int)(x[j] * id + 16.5f), hi = (int)(x[j + 16] * id + 16.5f);
        lo = lo > 31 ? 31 : lo;
        hi = hi > 31 ? 31 : hi;
        b[6 + j] = (uint8_t)((lo & 15) | ((hi & 15) << 4));
        qh |= (uint32_t)((lo >> 4) & 1) << j;
        qh |= (uint32_t)((hi >> 4) & 1) << (j + 16);
    }
    memcpy(b + 2, &qh, 4);
}

static void q5_1_block(const float *x, uint8_t *b)
{
    float mn, mx;
    minmax(x, KQ, &mn, &mx);
    float d = (mx - mn) / 31, id = d ? 1.0f / d : 0.0f;
    uint32_t qh = 0;
    sth(b, d);
    sth(b + 2, mn);
    for (int j = 0; j < 16; j++) {
        int lo = (int)((x[j] - mn) * id + 0.5f), hi = (int)((x[j + 16] - mn) * id + 0.5f);
        lo = lo > 31 ? 31 : lo;
        hi = hi > 31 ? 31 : hi;
        b[8 + j] = (uint8_t)((lo & 15) | ((hi & 15) << 4));
        qh |= (uint32_t)((lo >> 4) & 1) << j;
        qh |= (uint32_t)((hi >> 4) & 1) << (j + 16);
    }
    memcpy(b + 4, &qh, 4);
}

static void q8_0_block(const float *x, uint8_t *b)
{
    float amax;
    signed_absmax(x, KQ, &amax);
    float d = amax / 127, id = d ? 1.0f / d : 0.0f;
    sth(b, d);
    for (int j = 0; j < KQ; j++)
        b[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
}

/* ---- K types: scale searches ----------------------------------------- */

/* Fits x ~ scale * L - the_min with L in [0, nmax], weighting errors by w:
 * a first guess from the range, then nstep+1 trial scales around it, each
 * refined by weighted least squares; keeps the best. */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *w, uint8_t *L,
                              float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep)
{
    float min = x[0], max = x[0], sum_w = w[0], sum_x = w[0] * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.0f;
    }
    float iscale = nmax / (max - min), scale = 1 / iscale, best = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        float diff = scale * L[i] + min - x[i];
        best += w[i] * diff * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * (x[i] - min));
            l = l < 0 ? 0 : l > nmax ? nmax : l;
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D <= 0) continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float err = 0;
        for (int i = 0; i < n; i++) {
            float diff = this_scale * Laux[i] + this_min - x[i];
            err += w[i] * diff * diff;
        }
        if (err < best) {
            memcpy(L, Laux, (size_t)n);
            best = err;
            scale = this_scale;
            min = this_min;
        }
    }
    *the_min = -min;
    return scale;
}

/* Fits x ~ scale * (L - nmax) with L in [0, 2*nmax), weighting by x^2, trying
 * 19 scales around nmax/max. Returns the scale (negative when the largest
 * magnitude is positive, as ggml does). */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L)
{
    float amax, max = signed_absmax(x, n, &amax);
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * x[i]);
            l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                int l = nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + (l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Shared by q4_K and q5_K: per 32-element sub-block scale and min, packed
 * into 12 bytes of 6-bit values under the f16 super-scales; then the final
 * levels L in [0, nmax] against the quantised scales. */
static void kquant_scales(const float *x, uint8_t *b, uint8_t *L, int nmax, float rmin, int nstep)
{
    float scales[8], mins[8], weights[32], max_scale = 0, max_min = 0;
    uint8_t Laux[32];
    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++)
            sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++)
            weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                     rmin, 0.1f, nstep);
        max_scale = fmaxf(max_scale, scales[j]);
        max_min = fmaxf(max_min, mins[j]);
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t *sc = b + 4;
    memset(sc, 0, 12);
    for (int j = 0; j < 8; j++) {
        int ls = nearest_int(inv_scale * scales[j]), lm = nearest_int(inv_min * mins[j]);
        ls = ls > 63 ? 63 : ls;
        lm = lm > 63 ? 63 : lm;
        if (j < 4) {
            sc[j] = (uint8_t)ls;
            sc[j + 4] = (uint8_t)lm;
        } else {
            sc[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            sc[j - 4] |= (uint8_t)((ls >> 4) << 6);
            sc[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    sth(b, max_scale / 63.f);
    sth(b + 2, max_min / 63.f);
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        kern_scale_min_k4(j, sc, &s, &m);
        float d = ldh(b) * s;
        if (!d) continue;
        float dm = ldh(b + 2) * m;
        for (int ii = 0; ii < 32; ii++) {
            int l = nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        }
    }
}

static void q4_K_block(const float *x, uint8_t *b)
{
    uint8_t L[KQ_K];
    kquant_scales(x, b, L, 15, -1.f, 20);
    uint8_t *q = b + 16;
    for (int j = 0; j < KQ_K; j += 64, q += 32)
        for (int l = 0; l < 32; l++)
            q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
}

static void q5_K_block(const float *x, uint8_t *b)
{
    uint8_t L[KQ_K];
    kquant_scales(x, b, L, 31, -0.5f, 15);
    uint8_t *qh = b + 16, *ql = b + 48, m1 = 1, m2 = 2;
    memset(qh, 0, 32);
    for (int n = 0; n < KQ_K; n += 64, ql += 32, m1 <<= 2, m2 <<= 2) {
        for (int j = 0; j < 32; j++) {
            int l1 = L[n + j], l2 = L[n + j + 32];
            if (l1 > 15) {
                l1 -= 16;
                qh[j] |= m1;
            }
            if (l2 > 15) {
                l2 -= 16;
                qh[j] |= m2;
            }
            ql[j] = (uint8_t)(l1 | (l2 << 4));
        }
    }
}

static void q6_K_block(const float *x, uint8_t *b)
{
    int8_t L[KQ_K];
    float scales[16], max_scale = 0, max_abs = 0;
    for (int ib = 0; ib < 16; ib++) {
        scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
        if (fabsf(scales[ib]) > max_abs) {
            max_abs = fabsf(scales[ib]);
            max_scale = scales[ib];
        }
    }
    memset(b, 0, KB_Q6_K);
    if (max_abs < GROUP_MAX_EPS) return;
    float iscale = -128.f / max_scale;
    sth(b + 208, 1 / iscale);
    int8_t *sc = (int8_t *)(b + 192);
    for (int ib = 0; ib < 16; ib++) {
        int v = nearest_int(iscale * scales[ib]);
        sc[ib] = (int8_t)(v > 127 ? 127 : v);
    }
    for (int j = 0; j < 16; j++) {
        float d = ldh(b + 208) * sc[j];
        if (!d) continue;
        for (int ii = 0; ii < 16; ii++) {
            int l = nearest_int(x[16 * j + ii] / d);
            L[16 * j + ii] = (int8_t)((l < -32 ? -32 : l > 31 ? 31 : l) + 32);
        }
    }
    uint8_t *ql = b, *qh = b + 128;
    for (int j = 0; j < KQ_K; j += 128, ql += 64, qh += 32) {
        for (int l = 0; l < 32; l++) {
            uint8_t q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF;
            uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
            ql[l] = (uint8_t)(q1 | (q3 << 4));
            ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
            qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                              ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
        }
    }
}

static void q8_K_block(const float *x, uint8_t *b)
{
    float amax, max = signed_absmax(x, KQ_K, &amax);
    memset(b, 0, KB_Q8_K);
    if (!amax) return;
    float iscale = -127.f / max, d = 1 / iscale;
    int8_t *qs = (int8_t *)(b + 4);
    for (int j = 0; j < KQ_K; j++) {
        int v = nearest_int(iscale * x[j]);
        qs[j] = (int8_t)(v > 127 ? 127 : v);
    }
    for (int g = 0; g < 16; g++) {
        int s = 0;
        for (int j = 0; j < 16; j++)
            s += qs[16 * g + j];
        st16(b + 4 + KQ_K + 2 * g, (uint16_t)(int16_t)s);
    }
    memcpy(b, &d, 4);
}

void kern_quantize(enum ggml_type t, const float *src, void *dst, int64_t n)
{
    uint8_t *d = dst;
    void (*blk)(const float *, uint8_t *) = NULL;
    switch (t) {
    case GGML_TYPE_F32:
        memcpy(dst, src, (size_t)n * 4);
        return;
    case GGML_TYPE_F16:
        for (int64_t i = 0; i < n; i++)
            st16(d + 2 * i, kern_fp32_to_fp16(src[i]));
        return;
    case GGML_TYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            st16(d + 2 * i, kern_fp32_to_bf16(src[i]));
        return;
    case GGML_TYPE_Q4_0:
        blk = q4_0_block;
        break;
    case GGML_TYPE_Q4_1:
        blk = q4_1_block;
        break;
    case GGML_TYPE_Q5_0:
        blk = q5_0_block;
        break;
    case GGML_TYPE_Q5_1:
        blk = q5_1_block;
        break;
    case GGML_TYPE_Q8_0:
        blk = q8_0_block;
        break;
    case GGML_TYPE_Q4_K:
        blk = q4_K_block;
        break;
    case GGML_TYPE_Q5_K:
        blk = q5_K_block;
        break;
    case GGML_TYPE_Q6_K:
        blk = q6_K_block;
        break;
    case GGML_TYPE_Q8_K:
        blk = q8_K_block;
        break;
    default:
        assert(!"kern_quantize: unsupported type");
        return;
    }
    int be = ggml_type_block_elems(t);
    size_t bb = ggml_type_block_bytes(t);
    assert(n % be == 0);
    for (int64_t i = 0; i < n / be; i++)
        blk(src + i * be, d + (size_t)i * bb);
}
