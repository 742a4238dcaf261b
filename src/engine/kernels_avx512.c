/* AVX-512 (F, BW, VL, VNNI) matmul kernels: the shared x86 kernels with the
 * byte and word dot products fused by VNNI. Selected at run time from CPUID;
 * per-function target attributes keep the rest of the binary portable. */
#include "engine/kernels_int.h"

#if defined(__x86_64__)

#define KX_TGT           __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define KX_DOT(a, u, s)  _mm256_dpbusd_epi32((a), (u), (s))
#define KX_DOTW(a, p, w) _mm256_dpwssd_epi32((a), (p), (w))

#include "engine/kernels_x86.h"

/* ---- 512-bit kernels for Q8_0, Q4_0, Q5_0 --------------------------------
 * Two blocks per vector, a tile of R rows x T tokens per step: every weight
 * pair is unpacked once for T tokens and every input pair loaded once for R
 * rows. Weights become unsigned bytes u with a zero point z (q8_0: w+128,
 * z=128; q4_0: z=8; q5_0: z=16) so VNNI's u8 x s8 product applies directly;
 * -z*sum(x) enters lane 0 of each block, keeping the block's integer exact. */

#define KZ_INLINE KX_INLINE
#define KZ_R      2

enum kz_kind { KZ_Q8_0, KZ_Q4_0, KZ_Q5_0 };

KZ_INLINE __m512i kz_join(__m256i lo, __m256i hi)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* Unsigned values of blocks b and b+1 of a row (b+1 only when two). */
KZ_INLINE __m512i kz_unpack(const uint8_t *row, int b, int two, const int K)
{
    if (K == KZ_Q8_0) {
        const uint8_t *p = row + (size_t)b * KB_Q8_0 + 2;
        __m256i lo = kx_load(p), hi = two ? kx_load(p + KB_Q8_0) : _mm256_set1_epi8(-128);
        return _mm512_xor_si512(kz_join(lo, hi), _mm512_set1_epi8(-128));
    }
    if (K == KZ_Q4_0) {
        const uint8_t *p = row + (size_t)b * KB_Q4_0;
        __m256i lo = kx_nibbles(p + 2), hi = two ? kx_nibbles(p + KB_Q4_0 + 2) : lo;
        return kz_join(lo, hi);
    }
    const uint8_t *p = row + (size_t)b * KB_Q5_0;
    __m256i lo = _mm256_or_si256(kx_nibbles(p + 6), kx_bits_to_16(kern_ld32(p + 2)));
    __m256i hi = lo;
    if (two)
        hi =
            _mm256_or_si256(kx_nibbles(p + KB_Q5_0 + 6), kx_bits_to_16(kern_ld32(p + KB_Q5_0 + 2)));
    return kz_join(lo, hi);
}

/* [dw(b) x 8, dw(b+1) x 8]; a missing second block scales by 0. */
KZ_INLINE __m512 kz_wscale(const uint8_t *row, int b, int two, size_t bb)
{
    const uint8_t *p = row + (size_t)b * bb;
    uint32_t pair = kern_ld16(p) | (two ? (uint32_t)kern_ld16(p + bb) << 16 : 0u);
    __m128i h = _mm_cvtsi32_si128((int)pair);
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_cvtph_ps(h)));
}

KZ_INLINE void kz_tile(const uint8_t *W, size_t rb, const uint8_t *const *xp, int n, float *out,
                       const int R, const int T, const int K)
{
    const size_t bb = K == KZ_Q8_0 ? KB_Q8_0 : K == KZ_Q4_0 ? KB_Q4_0 : KB_Q5_0;
    const int zshift = K == KZ_Q8_0 ? 7 : K == KZ_Q4_0 ? 3 : 4;
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const int nb = n / KQ;
    __m512 acc[KZ_R][KX_TILE];
    KX_UNROLL
    for (int r = 0; r < R; r++)
        KX_UNROLL
    for (int t = 0; t < T; t++)
        acc[r][t] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b += 2) {
        int two = b + 1 < nb;
        __mmask64 xm = two ? ~(__mmask64)0 : 0xffffffffu;
        __m512i u[KZ_R];
        __m512 dw[KZ_R];
        KX_UNROLL
        for (int r = 0; r < R; r++) {
            u[r] = kz_unpack(W + (size_t)r * rb, b, two, K);
            dw[r] = kz_wscale(W + (size_t)r * rb, b, two, bb);
        }
        KX_UNROLL
        for (int t = 0; t < T; t++) {
            __m512i x = _mm512_maskz_loadu_epi8(xm, xp[t] + KQ * b);
            const float *xd = KX_XD(xp[t], n) + b;
            const int32_t *xs = KX_XS(xp[t], n) + b;
            __m512 dx = _mm512_permutexvar_ps(
                idx, _mm512_castps128_ps512(_mm_setr_ps(xd[0], two ? xd[1] : 0, 0, 0)));
            __m512i c = _mm512_maskz_permutexvar_epi32(
                0x0101, idx, _mm512_castsi128_si512(_mm_setr_epi32(xs[0], two ? xs[1] : 0, 0, 0)));
            c = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(c, (unsigned)zshift));
            KX_UNROLL
            for (int r = 0; r < R; r++) {
                __m512i p = _mm512_dpbusd_epi32(c, u[r], x);
                acc[r][t] =
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw[r], dx), acc[r][t]);
            }
        }
    }
    KX_UNROLL
    for (int r = 0; r < R; r++)
        KX_UNROLL
    for (int t = 0; t < T; t++)
        out[r * KX_TILE + t] = _mm512_reduce_add_ps(acc[r][t]);
}

#define KZ_TILE_FN(NAME, K)                                                                        \
    KX_TGT static void NAME(const uint8_t *W, size_t rb, const uint8_t *const *xp, int n,          \
                            float *out, int nr, int nt)                                            \
    {                                                                                              \
        if (nr == 2) {                                                                             \
            switch (nt) {                                                                          \
            case 1:                                                                                \
                kz_tile(W, rb, xp, n, out, 2, 1, K);                                               \
                break;                                                                             \
            case 2:                                                                                \
                kz_tile(W, rb, xp, n, out, 2, 2, K);                                               \
                break;                                                                             \
            case 3:                                                                                \
                kz_tile(W, rb, xp, n, out, 2, 3, K);                                               \
                break;                                                                             \
            default:                                                                               \
                kz_tile(W, rb, xp, n, out, 2, 4, K);                                               \
                break;                                                                             \
            }                                                                                      \
        } else {                                                                                   \
            switch (nt) {                                                                          \
            case 1:                                                                                \
                kz_tile(W, rb, xp, n, out, 1, 1, K);                                               \
                break;                                                                             \
            case 2:                                                                                \
                kz_tile(W, rb, xp, n, out, 1, 2, K);                                               \
                break;                                                                             \
            case 3:                                                                                \
                kz_tile(W, rb, xp, n, out, 1, 3, K);                                               \
                break;                                                                             \
            default:                                                                               \
                kz_tile(W, rb, xp, n, out, 1, 4, K);                                               \
                break;                                                                             \
            }                                                                                      \
        }                                                                                          \
    }

KZ_TILE_FN(kz_q8_0, KZ_Q8_0)
KZ_TILE_FN(kz_q4_0, KZ_Q4_0)
KZ_TILE_FN(kz_q5_0, KZ_Q5_0)

typedef void (*kz_tile_fn)(const uint8_t *W, size_t rb, const uint8_t *const *xp, int n, float *out,
                           int nr, int nt);

/* Fewer than 8 tokens walk one row at a time: two interleaved row streams
 * measured at half the memory rate of one on this machine (bench_kernels:
 * 4 tokens 1.7x the per-token rate of 1 with one row, 1.0x with two), while
 * from 8 tokens on the input reuse of two rows wins (2.1x vs 1.7x at 8). */
static void kz_drive(kz_tile_fn fn, const uint8_t *W, size_t rb, int n, const uint8_t *prep,
                     size_t ps, int n_tok, float *y, int ys, int r0, int r1)
{
    const int rstep = n_tok < 8 ? 1 : KZ_R;
    for (int c0 = 0; c0 < n_tok; c0 += KX_TCHUNK) {
        int c1 = n_tok - c0 < KX_TCHUNK ? n_tok : c0 + KX_TCHUNK;
        for (int r = r0; r < r1; r += rstep) {
            int nr = r1 - r < rstep ? r1 - r : rstep;
            for (int t0 = c0; t0 < c1; t0 += KX_TILE) {
                int nt = c1 - t0 < KX_TILE ? c1 - t0 : KX_TILE;
                const uint8_t *xp[KX_TILE];
                float out[KZ_R * KX_TILE];
                for (int i = 0; i < nt; i++)
                    xp[i] = prep + (size_t)(t0 + i) * ps;
                fn(W + (size_t)r * rb, rb, xp, n, out, nr, nt);
                for (int k = 0; k < nr; k++)
                    for (int i = 0; i < nt; i++)
                        y[(size_t)(t0 + i) * (size_t)ys + (size_t)(r + k)] = out[k * KX_TILE + i];
            }
        }
    }
}

#define KZ_MM(NAME)                                                                                \
    static void NAME##_mm(const uint8_t *W, size_t rb, int n, const uint8_t *p, size_t ps, int nt, \
                          float *y, int ys, int r0, int r1)                                        \
    {                                                                                              \
        kz_drive(NAME, W, rb, n, p, ps, nt, y, ys, r0, r1);                                        \
    }

KZ_MM(kz_q8_0)
KZ_MM(kz_q4_0)
KZ_MM(kz_q5_0)

void kern_ops_avx512(struct kern_ops *ops)
{
    ops->name = "avx512";
    kx_fill(ops);
    ops->mm[GGML_TYPE_Q8_0] = kz_q8_0_mm;
    ops->mm[GGML_TYPE_Q4_0] = kz_q4_0_mm;
    ops->mm[GGML_TYPE_Q5_0] = kz_q5_0_mm;
}

#else

void kern_ops_avx512(struct kern_ops *ops)
{
    (void)ops;
}

#endif
