/* aarch64 Advanced SIMD (NEON) matmul kernels, written once and compiled
 * twice: by kernels_neon.c (ARMv8.0 NEON, on every aarch64 core) and by
 * kernels_neon_dot.c (adds the ARMv8.2 SDOT byte dot product). The includer
 * defines
 *   KN_TGT         a function attribute naming the target features (may be empty),
 *   KN_DOT(a,x,y)  a + the products of the signed bytes x and y summed into
 *                  4 int32 lanes; how products spread over the lanes may
 *                  differ between versions (kernels only use lane totals),
 *                  and the plain version adds two products in int16 first,
 *                  which is exact because one operand is always a prepared
 *                  input (|x| <= 127) and the other a weight (>= -128).
 * Bit-identical to the portable path, not only close: every kernel reduces
 * each block's products to the same exact integer as kernels_portable.c,
 * then does that file's float operations on it in the same order (products
 * rounded, sums in the portable order; both files are compiled with
 * -ffp-contract=off so no multiply-add is fused). So a model gives the same
 * logits on any aarch64 CPU, whichever level it runs. Each kernel computes
 * one weight row against up to four tokens at once, so a row is read from
 * memory once per four tokens. */
#ifndef KN_TGT
#error "define KN_TGT and KN_DOT before including kernels_neon.h"
#endif

#include <arm_neon.h>

#define KN_INLINE KN_TGT static inline __attribute__((always_inline))
/* Loops over tokens and sub-blocks must unroll fully so their arrays of
 * accumulators live in registers. */
#define KN_UNROLL _Pragma("GCC unroll 16")
#define KN_TILE   KERN_TILE /* tokens per row visit (kernels_int.h) */
#define KN_TCHUNK KERN_TCHUNK

/* The n-byte prepared row's scales and per-16 sums (see kernels_int.h). */
#define KN_XD(p, n)  ((const float *)((p) + (n)))
#define KN_XBS(p, n) ((p) + (n) + ((n) / KQ_K) * 4)

/* Byte loads: weights come from an mmap with no alignment promise. */
KN_INLINE int8x16_t kn_ld8(const uint8_t *p)
{
    return vreinterpretq_s8_u8(vld1q_u8(p));
}

KN_INLINE float kn_h2f(const uint8_t *p)
{
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(kern_ld16(p)))), 0);
}

/* The f16 scales of 4 consecutive blocks of `stride` bytes. */
KN_INLINE float32x4_t kn_h2f4(const uint8_t *p, size_t stride)
{
    uint64_t h = (uint64_t)kern_ld16(p) | (uint64_t)kern_ld16(p + stride) << 16 |
                 (uint64_t)kern_ld16(p + 2 * stride) << 32 |
                 (uint64_t)kern_ld16(p + 3 * stride) << 48;
    return vcvt_f32_f16(vreinterpret_f16_u64(vcreate_u64(h)));
}

/* The exact totals of four blocks' lanes, one block per lane. */
KN_INLINE int32x4_t kn_sum4(int32x4_t a, int32x4_t b, int32x4_t c, int32x4_t d)
{
    return vpaddq_s32(vpaddq_s32(a, b), vpaddq_s32(c, d));
}

/* acc plus the lanes of v in block order, as the portable loop adds them. */
KN_INLINE float kn_add4(float acc, float32x4_t v)
{
    acc += vgetq_lane_f32(v, 0);
    acc += vgetq_lane_f32(v, 1);
    acc += vgetq_lane_f32(v, 2);
    acc += vgetq_lane_f32(v, 3);
    return acc;
}

/* ---- float weights: F32, F16, BF16 ------------------------------------ */

KN_INLINE float32x4_t kn_wf32(const uint8_t *row, int i)
{
    return vreinterpretq_f32_u8(vld1q_u8(row + 4 * (size_t)i));
}

KN_INLINE float32x4_t kn_wf16(const uint8_t *row, int i)
{
    return vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(row + 2 * (size_t)i)));
}

KN_INLINE float32x4_t kn_wbf16(const uint8_t *row, int i)
{
    return vreinterpretq_f32_u32(
        vshll_n_u16(vreinterpret_u16_u8(vld1_u8(row + 2 * (size_t)i)), 16));
}

KN_INLINE float kn_sf32(const uint8_t *row, int k)
{
    float w;
    memcpy(&w, row + 4 * (size_t)k, 4);
    return w;
}

KN_INLINE float kn_sf16(const uint8_t *row, int k)
{
    return kn_h2f(row + 2 * (size_t)k);
}

KN_INLINE float kn_sbf16(const uint8_t *row, int k)
{
    return kern_bf16_to_fp32(kern_ld16(row + 2 * (size_t)k));
}

/* The portable path keeps 8 partial sums (element i goes to i % 8), each a
 * chain of rounded products added in order: two vectors hold them here. */
#define KN_FLOAT_TILE(NAME, LOADW, SCALAR)                                                         \
    KN_INLINE void NAME##_nt(const uint8_t *row, const uint8_t *const *xp, int n, float *out,      \
                             const int NT)                                                         \
    {                                                                                              \
        float32x4_t acc[KN_TILE][2];                                                               \
        KN_UNROLL                                                                                  \
        for (int t = 0; t < NT; t++)                                                               \
            acc[t][0] = acc[t][1] = vdupq_n_f32(0.0f);                                             \
        int i = 0;                                                                                 \
        for (; i + 8 <= n; i += 8) {                                                               \
            float32x4_t w0 = LOADW(row, i), w1 = LOADW(row, i + 4);                                \
            KN_UNROLL                                                                              \
            for (int t = 0; t < NT; t++) {                                                         \
                const float *x = (const float *)xp[t] + i;                                         \
                acc[t][0] = vaddq_f32(acc[t][0], vmulq_f32(w0, vld1q_f32(x)));                     \
                acc[t][1] = vaddq_f32(acc[t][1], vmulq_f32(w1, vld1q_f32(x + 4)));                 \
            }                                                                                      \
        }                                                                                          \
        KN_UNROLL                                                                                  \
        for (int t = 0; t < NT; t++) {                                                             \
            float a[8];                                                                            \
            vst1q_f32(a, acc[t][0]);                                                               \
            vst1q_f32(a + 4, acc[t][1]);                                                           \
            for (int k = 0; i + k < n; k++)                                                        \
                a[k] += SCALAR(row, i + k) * ((const float *)xp[t])[i + k];                        \
            out[t] = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));            \
        }                                                                                          \
    }

KN_FLOAT_TILE(kn_f32, kn_wf32, kn_sf32)
KN_FLOAT_TILE(kn_f16, kn_wf16, kn_sf16)
KN_FLOAT_TILE(kn_bf16, kn_wbf16, kn_sbf16)

/* ---- 32-element blocks: Q8_0, Q4_0, Q5_0 ------------------------------- */

/* The 32 signed weights of a block as two vectors (elements 0-15, 16-31). */
KN_INLINE void kn_w_q8_0(const uint8_t *blk, int8x16_t w[2])
{
    w[0] = kn_ld8(blk + 2);
    w[1] = kn_ld8(blk + 18);
}

/* q4_0: low nibbles are elements 0-15, high nibbles 16-31; minus 8 makes
 * them signed, which is the portable path's u.x - 8*sum(x) exactly. */
KN_INLINE void kn_w_q4_0(const uint8_t *blk, int8x16_t w[2])
{
    uint8x16_t raw = vld1q_u8(blk + 2);
    const int8x16_t z = vdupq_n_s8(8);
    w[0] = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(raw, vdupq_n_u8(15))), z);
    w[1] = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(raw, 4)), z);
}

/* q5_0: the 5th bit of element j is bit j of qh; minus 16 makes them signed. */
KN_INLINE void kn_w_q5_0(const uint8_t *blk, int8x16_t w[2])
{
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    static const uint8_t sel[32] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                    2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
    uint8x16_t qh = vreinterpretq_u8_u32(vdupq_n_u32(kern_ld32(blk + 2)));
    uint8x16_t bits = vld1q_u8(bit), h16 = vdupq_n_u8(16);
    /* byte j of qh_lo/qh_hi: 16 where the element's 5th bit is set */
    uint8x16_t hlo = vandq_u8(vtstq_u8(vqtbl1q_u8(qh, vld1q_u8(sel)), bits), h16);
    uint8x16_t hhi = vandq_u8(vtstq_u8(vqtbl1q_u8(qh, vld1q_u8(sel + 16)), bits), h16);
    uint8x16_t raw = vld1q_u8(blk + 6);
    const int8x16_t z = vdupq_n_s8(16);
    w[0] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vandq_u8(raw, vdupq_n_u8(15)), hlo)), z);
    w[1] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(raw, 4), hhi)), z);
}

/* One 32-element type: blocks go four at a time, their exact integers
 * gathered one per lane, scaled by d*dx per lane (as the portable path
 * rounds it), and added to the token's sum in block order. */
#define KN_Q32_TILE(NAME, BB, WLOAD)                                                               \
    KN_INLINE void NAME##_nt(const uint8_t *row, const uint8_t *const *xp, int n, float *out,      \
                             const int NT)                                                         \
    {                                                                                              \
        float acc[KN_TILE];                                                                        \
        KN_UNROLL                                                                                  \
        for (int t = 0; t < NT; t++)                                                               \
            acc[t] = 0.0f;                                                                         \
        const int nb = n / KQ;                                                                     \
        int b = 0;                                                                                 \
        for (; b + 4 <= nb; b += 4) {                                                              \
            const uint8_t *blk = row + (size_t)b * (BB);                                           \
            int8x16_t w[4][2];                                                                     \
            KN_UNROLL                                                                              \
            for (int e = 0; e < 4; e++)                                                            \
                WLOAD(blk + (size_t)e * (BB), w[e]);                                               \
            float32x4_t dw = kn_h2f4(blk, (BB));                                                   \
            KN_UNROLL                                                                              \
            for (int t = 0; t < NT; t++) {                                                         \
                const uint8_t *x = xp[t] + KQ * b;                                                 \
                int32x4_t p[4];                                                                    \
                KN_UNROLL                                                                          \
                for (int e = 0; e < 4; e++) {                                                      \
                    p[e] = KN_DOT(vdupq_n_s32(0), w[e][0], kn_ld8(x + 32 * e));                    \
                    p[e] = KN_DOT(p[e], w[e][1], kn_ld8(x + 32 * e + 16));                         \
                }                                                                                  \
                float32x4_t s = vcvtq_f32_s32(kn_sum4(p[0], p[1], p[2], p[3]));                    \
                float32x4_t d = vmulq_f32(dw, vld1q_f32(KN_XD(xp[t], n) + b));                     \
                acc[t] = kn_add4(acc[t], vmulq_f32(d, s));                                         \
            }                                                                                      \
        }                                                                                          \
        for (; b < nb; b++) {                                                                      \
            const uint8_t *blk = row + (size_t)b * (BB);                                           \
            int8x16_t w[2];                                                                        \
            WLOAD(blk, w);                                                                         \
            float dw = kn_h2f(blk);                                                                \
            KN_UNROLL                                                                              \
            for (int t = 0; t < NT; t++) {                                                         \
                const uint8_t *x = xp[t] + KQ * b;                                                 \
                int32x4_t p = KN_DOT(vdupq_n_s32(0), w[0], kn_ld8(x));                             \
                p = KN_DOT(p, w[1], kn_ld8(x + 16));                                               \
                acc[t] += dw * KN_XD(xp[t], n)[b] * (float)vaddvq_s32(p);                          \
            }                                                                                      \
        }                                                                                          \
        KN_UNROLL                                                                                  \
        for (int t = 0; t < NT; t++)                                                               \
            out[t] = acc[t];                                                                       \
    }

KN_Q32_TILE(kn_q8_0, KB_Q8_0, kn_w_q8_0)
KN_Q32_TILE(kn_q4_0, KB_Q4_0, kn_w_q4_0)
KN_Q32_TILE(kn_q5_0, KB_Q5_0, kn_w_q5_0)

/* ---- 256-element blocks: Q4_K, Q6_K ------------------------------------ */

/* The 8 scales (bytes 0-7) and 8 mins (bytes 8-15) of a q4_K block. */
KN_INLINE void kn_k4_scales(const uint8_t *s12, uint32_t u[4])
{
    uint32_t a = kern_ld32(s12), b = kern_ld32(s12 + 4), c = kern_ld32(s12 + 8);
    u[0] = a & 0x3f3f3f3f;
    u[1] = (c & 0x0f0f0f0f) | (((a >> 6) & 0x03030303) << 4);
    u[2] = b & 0x3f3f3f3f;
    u[3] = ((c >> 4) & 0x0f0f0f0f) | (((b >> 6) & 0x03030303) << 4);
}

/* Eight unsigned bytes widened to two vectors of int32. */
KN_INLINE void kn_u8x8_to_s32(uint64_t v, int32x4_t out[2])
{
    uint16x8_t w = vmovl_u8(vcreate_u8(v));
    out[0] = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(w)));
    out[1] = vreinterpretq_s32_u32(vmovl_high_u16(w));
}

/* q4_K and q5_K (Q5 set: a 5th bit per value from qh): sub-block k's
 * integer s_k = q.x over its 32 elements; the block's integers are
 * sum sc[k]*s_k and sum m[k]*(x sums of sub-block k). */
KN_INLINE void kn_qk4_nt(const uint8_t *row, const uint8_t *const *xp, int n, float *out,
                         const int NT, const int Q5)
{
    const size_t bb = Q5 ? KB_Q5_K : KB_Q4_K;
    float acc[KN_TILE];
    KN_UNROLL
    for (int t = 0; t < NT; t++)
        acc[t] = 0.0f;
    const uint8x16_t m4 = vdupq_n_u8(15);
    for (int b = 0; b < n / KQ_K; b++, row += bb) {
        uint32_t u[4];
        kn_k4_scales(row + 4, u);
        int32x4_t sc[2];
        kn_u8x8_to_s32((uint64_t)u[0] | (uint64_t)u[1] << 32, sc);
        int16x8_t mins =
            vreinterpretq_s16_u16(vmovl_u8(vcreate_u8((uint64_t)u[2] | (uint64_t)u[3] << 32)));
        const uint8_t *q = row + (Q5 ? 48 : 16);
        uint8x16_t qh[2] = {vld1q_u8(row + 16), vld1q_u8(row + 32)};
        int32x4_t s[KN_TILE];
        KN_UNROLL
        for (int t = 0; t < NT; t++)
            s[t] = vdupq_n_s32(0);
        /* half h: sub-blocks 4h..4h+3, one per lane after kn_sum4 */
        KN_UNROLL
        for (int h = 0; h < 2; h++) {
            int8x16_t w[8];
            KN_UNROLL
            for (int j = 0; j < 2; j++) {
                uint8x16_t r0 = vld1q_u8(q + 64 * h + 32 * j);
                uint8x16_t r1 = vld1q_u8(q + 64 * h + 32 * j + 16);
                w[4 * j + 0] = vreinterpretq_s8_u8(vandq_u8(r0, m4));
                w[4 * j + 1] = vreinterpretq_s8_u8(vandq_u8(r1, m4));
                w[4 * j + 2] = vreinterpretq_s8_u8(vshrq_n_u8(r0, 4));
                w[4 * j + 3] = vreinterpretq_s8_u8(vshrq_n_u8(r1, 4));
                if (Q5) {
                    /* chunk c = 2h+j: bit 2c of qh[l] tops its low nibbles, bit 2c+1 its high */
                    const int c = 2 * h + j;
                    const uint8x16_t b4 = vdupq_n_u8(16);
                    const int8x16_t sl = vdupq_n_s8((int8_t)(4 - 2 * c));
                    const int8x16_t sh = vdupq_n_s8((int8_t)(3 - 2 * c));
                    KN_UNROLL
                    for (int e = 0; e < 2; e++) {
                        uint8x16_t lo = vandq_u8(vshlq_u8(qh[e], sl), b4);
                        uint8x16_t hi = vandq_u8(vshlq_u8(qh[e], sh), b4);
                        w[4 * j + e] = vorrq_s8(w[4 * j + e], vreinterpretq_s8_u8(lo));
                        w[4 * j + 2 + e] = vorrq_s8(w[4 * j + 2 + e], vreinterpretq_s8_u8(hi));
                    }
                }
            }
            KN_UNROLL
            for (int t = 0; t < NT; t++) {
                const uint8_t *x = xp[t] + KQ_K * b + 128 * h;
                int32x4_t p[4];
                KN_UNROLL
                for (int k = 0; k < 4; k++)
                    p[k] = KN_DOT(KN_DOT(vdupq_n_s32(0), w[2 * k], kn_ld8(x + 32 * k)),
                                  w[2 * k + 1], kn_ld8(x + 32 * k + 16));
                s[t] = vmlaq_s32(s[t], kn_sum4(p[0], p[1], p[2], p[3]), sc[h]);
            }
        }
        float d = kn_h2f(row), dmin = kn_h2f(row + 2);
        KN_UNROLL
        for (int t = 0; t < NT; t++) {
            /* x sums per sub-block: adjacent pairs of the per-16 sums (|.| <= 4064) */
            const uint8_t *bs = KN_XBS(xp[t], n) + 32 * (size_t)b;
            int16x8_t xs = vpaddq_s16(vreinterpretq_s16_u8(vld1q_u8(bs)),
                                      vreinterpretq_s16_u8(vld1q_u8(bs + 16)));
            int32x4_t m = vmlal_high_s16(vmull_s16(vget_low_s16(xs), vget_low_s16(mins)), xs, mins);
            float dx = KN_XD(xp[t], n)[b];
            acc[t] += d * dx * (float)vaddvq_s32(s[t]) - dmin * dx * (float)vaddvq_s32(m);
        }
    }
    KN_UNROLL
    for (int t = 0; t < NT; t++)
        out[t] = acc[t];
}

KN_INLINE void kn_q4_K_nt(const uint8_t *row, const uint8_t *const *xp, int n, float *out,
                          const int NT)
{
    kn_qk4_nt(row, xp, n, out, NT, 0);
}

KN_INLINE void kn_q5_K_nt(const uint8_t *row, const uint8_t *const *xp, int n, float *out,
                          const int NT)
{
    kn_qk4_nt(row, xp, n, out, NT, 1);
}

/* q6_K: 16 groups of 16 values (q - 32, signed), group g against x[16g..];
 * the block's integer is sum sc[g] * group dot. */
KN_INLINE void kn_q6_K_nt(const uint8_t *row, const uint8_t *const *xp, int n, float *out,
                          const int NT)
{
    float acc[KN_TILE];
    KN_UNROLL
    for (int t = 0; t < NT; t++)
        acc[t] = 0.0f;
    const uint8x16_t m4 = vdupq_n_u8(15), m30 = vdupq_n_u8(0x30);
    const int8x16_t z = vdupq_n_s8(32);
    for (int b = 0; b < n / KQ_K; b++, row += KB_Q6_K) {
        int8x16_t sc8 = kn_ld8(row + 192);
        int16x8_t sl = vmovl_s8(vget_low_s8(sc8)), sh = vmovl_high_s8(sc8);
        int32x4_t sc[4] = {vmovl_s16(vget_low_s16(sl)), vmovl_high_s16(sl),
                           vmovl_s16(vget_low_s16(sh)), vmovl_high_s16(sh)};
        int32x4_t s[KN_TILE];
        KN_UNROLL
        for (int t = 0; t < NT; t++)
            s[t] = vdupq_n_s32(0);
        KN_UNROLL
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = row + 64 * h, *qh = row + 128 + 32 * h;
            int8x16_t v[8];
            KN_UNROLL
            for (int c = 0; c < 2; c++) {
                /* c: elements 0-15 or 16-31 of each 32-element quarter */
                uint8x16_t l0 = vld1q_u8(ql + 16 * c), l1 = vld1q_u8(ql + 32 + 16 * c);
                uint8x16_t hb = vld1q_u8(qh + 16 * c);
                uint8x16_t q0 = vorrq_u8(vandq_u8(l0, m4), vandq_u8(vshlq_n_u8(hb, 4), m30));
                uint8x16_t q1 = vorrq_u8(vandq_u8(l1, m4), vandq_u8(vshlq_n_u8(hb, 2), m30));
                uint8x16_t q2 = vorrq_u8(vshrq_n_u8(l0, 4), vandq_u8(hb, m30));
                uint8x16_t q3 = vorrq_u8(vshrq_n_u8(l1, 4), vandq_u8(vshrq_n_u8(hb, 2), m30));
                v[0 + c] = vsubq_s8(vreinterpretq_s8_u8(q0), z);
                v[2 + c] = vsubq_s8(vreinterpretq_s8_u8(q1), z);
                v[4 + c] = vsubq_s8(vreinterpretq_s8_u8(q2), z);
                v[6 + c] = vsubq_s8(vreinterpretq_s8_u8(q3), z);
            }
            KN_UNROLL
            for (int t = 0; t < NT; t++) {
                const uint8_t *x = xp[t] + KQ_K * b + 128 * h;
                int32x4_t g[8];
                KN_UNROLL
                for (int k = 0; k < 8; k++)
                    g[k] = KN_DOT(vdupq_n_s32(0), v[k], kn_ld8(x + 16 * k));
                s[t] = vmlaq_s32(s[t], kn_sum4(g[0], g[1], g[2], g[3]), sc[2 * h]);
                s[t] = vmlaq_s32(s[t], kn_sum4(g[4], g[5], g[6], g[7]), sc[2 * h + 1]);
            }
        }
        float d = kn_h2f(row + 208);
        KN_UNROLL
        for (int t = 0; t < NT; t++)
            acc[t] += d * KN_XD(xp[t], n)[b] * (float)vaddvq_s32(s[t]);
    }
    KN_UNROLL
    for (int t = 0; t < NT; t++)
        out[t] = acc[t];
}

/* ---- driver ------------------------------------------------------------ */

typedef kern_tile_fn kn_tile_fn;

/* One function per type taking nt at run time; each case inlines the kernel
 * with a constant token count so its loops over tokens unroll. */
#define KN_TILE_FN(NAME)                                                                           \
    KN_TGT static void NAME(const uint8_t *row, const uint8_t *const *xp, int n, float *out,       \
                            int nt)                                                                \
    {                                                                                              \
        switch (nt) {                                                                              \
        case 1:                                                                                    \
            NAME##_nt(row, xp, n, out, 1);                                                         \
            break;                                                                                 \
        case 2:                                                                                    \
            NAME##_nt(row, xp, n, out, 2);                                                         \
            break;                                                                                 \
        case 3:                                                                                    \
            NAME##_nt(row, xp, n, out, 3);                                                         \
            break;                                                                                 \
        default:                                                                                   \
            NAME##_nt(row, xp, n, out, 4);                                                         \
            break;                                                                                 \
        }                                                                                          \
    }

KN_TILE_FN(kn_f32)
KN_TILE_FN(kn_f16)
KN_TILE_FN(kn_bf16)
KN_TILE_FN(kn_q8_0)
KN_TILE_FN(kn_q4_0)
KN_TILE_FN(kn_q5_0)
KN_TILE_FN(kn_q4_K)
KN_TILE_FN(kn_q5_K)
KN_TILE_FN(kn_q6_K)

#define KN_MM(NAME)                                                                                \
    static void NAME##_mm(const uint8_t *W, size_t rb, int n, const uint8_t *p, size_t ps, int nt, \
                          float *y, int ys, int r0, int r1)                                        \
    {                                                                                              \
        kern_drive_tiles(NAME, W, rb, n, p, ps, nt, y, ys, r0, r1);                                \
    }

KN_MM(kn_f32)
KN_MM(kn_f16)
KN_MM(kn_bf16)
KN_MM(kn_q8_0)
KN_MM(kn_q4_0)
KN_MM(kn_q5_0)
KN_MM(kn_q4_K)
KN_MM(kn_q5_K)
KN_MM(kn_q6_K)

static void kn_fill(struct kern_ops *ops)
{
    ops->mm[GGML_TYPE_F32] = kn_f32_mm;
    ops->mm[GGML_TYPE_F16] = kn_f16_mm;
    ops->mm[GGML_TYPE_BF16] = kn_bf16_mm;
    ops->mm[GGML_TYPE_Q8_0] = kn_q8_0_mm;
    ops->mm[GGML_TYPE_Q4_0] = kn_q4_0_mm;
    ops->mm[GGML_TYPE_Q5_0] = kn_q5_0_mm;
    ops->mm[GGML_TYPE_Q4_K] = kn_q4_K_mm;
    ops->mm[GGML_TYPE_Q5_K] = kn_q5_K_mm;
    ops->mm[GGML_TYPE_Q6_K] = kn_q6_K_mm;
}
