/* AVX-512 (F, BW, VL, VNNI) matmul kernels: the shared x86 kernels with the
 * byte and word dot products fused by VNNI. Selected at run time from CPUID;
 * per-function target attributes keep the rest of the binary portable. */
#include "engine/kernels_int.h"

#if defined(__x86_64__)

#define KX_TGT           __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define KX_DOT(a, u, s)  _mm256_dpbusd_epi32((a), (u), (s))
#define KX_DOTW(a, p, w) _mm256_dpwssd_epi32((a), (p), (w))

#include "engine/kernels_x86.h"

/* ---- 512-bit Q8_0, sixteen rows per vector --------------------------------
 * Kernels that put one row's elements in a vector's lanes (kernels_x86.h)
 * end every (row, token, block pair) in its own int->float epilogue; with several
 * tokens that epilogue, not memory, bounds them. Here lane i of every vector
 * is row i of a group of 16: a pair of blocks (68 bytes per row: d, 32 values,
 * d, 32 values = 17 dwords) is loaded from the 16 rows and transposed in
 * registers, so dword k of the pair for all 16 rows sits in one vector. One
 * VNNI dot product against 4 input bytes broadcast from memory then serves 16
 * rows, and a block's exact integer sum for 16 rows comes out in one vector:
 * the epilogue (convert, scale, add) runs once per 16 rows. The transposition
 * is paid once per row visit whatever the number of tokens, and the weights
 * stay as mmap'd (no repacked copy, no extra memory).
 *
 * The d bytes of a pair sit in dword 0 (bytes 0-1) and dword 8 (bytes 2-3);
 * they are cleared in the weight vectors, so those dwords can take any input
 * bytes there: the input dwords are read unaligned at the matching offsets
 * (block 2p's values start 2 bytes into dword 0). Weights become unsigned
 * (w+128) for VNNI's u8 x s8 product; -128*sum(x) starts each block's sum.
 * Each lane computes sum_b (dw*dx)*isum_b in block order with separate
 * multiply and add: the portable path's float operations, so the results are
 * bit-identical to it and do not depend on how many tokens or rows share a
 * visit. */

#define KT_ROWS 16
/* loops over 16 rows and 17 dwords must unroll fully too */
#define KT_UNROLL _Pragma("GCC unroll 32")
#define KT_T      8   /* tokens per row-group visit */
#define KT_PF     512 /* bytes ahead each row's stream is prefetched */
/* Bytes ahead the packed stream is prefetched: the hardware prefetcher
 * alone left the packed kernels at 1/3 of their rate from DRAM with 8 tokens
 * (2-8 KiB ahead measured alike; nearer is better for one token). */
#define KT_PPF 4096

/* v[k] lane i = dword k of r[i], for 16 rows of 16 dwords. */
KX_INLINE void kt_transpose16(const __m512i r[16], __m512i v[16])
{
    __m512i a[16], b[16];
    KT_UNROLL
    for (int i = 0; i < 8; i++) {
        a[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    /* b[4j+c], 128-bit lane L: dword 4L+c of rows 4j..4j+3 */
    KT_UNROLL
    for (int j = 0; j < 4; j++) {
        b[4 * j + 0] = _mm512_unpacklo_epi64(a[4 * j + 0], a[4 * j + 2]);
        b[4 * j + 1] = _mm512_unpackhi_epi64(a[4 * j + 0], a[4 * j + 2]);
        b[4 * j + 2] = _mm512_unpacklo_epi64(a[4 * j + 1], a[4 * j + 3]);
        b[4 * j + 3] = _mm512_unpackhi_epi64(a[4 * j + 1], a[4 * j + 3]);
    }
    /* a 4x4 transpose of 128-bit lanes for each c */
    KT_UNROLL
    for (int c = 0; c < 4; c++) {
        __m512i e0 = _mm512_shuffle_i32x4(b[c], b[4 + c], _MM_SHUFFLE(1, 0, 1, 0));
        __m512i e1 = _mm512_shuffle_i32x4(b[c], b[4 + c], _MM_SHUFFLE(3, 2, 3, 2));
        __m512i e2 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], _MM_SHUFFLE(1, 0, 1, 0));
        __m512i e3 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], _MM_SHUFFLE(3, 2, 3, 2));
        v[c] = _mm512_shuffle_i32x4(e0, e2, _MM_SHUFFLE(2, 0, 2, 0));
        v[4 + c] = _mm512_shuffle_i32x4(e0, e2, _MM_SHUFFLE(3, 1, 3, 1));
        v[8 + c] = _mm512_shuffle_i32x4(e1, e3, _MM_SHUFFLE(2, 0, 2, 0));
        v[12 + c] = _mm512_shuffle_i32x4(e1, e3, _MM_SHUFFLE(3, 1, 3, 1));
    }
}

KX_INLINE __m512i kt_bcast(const uint8_t *p)
{
    return _mm512_set1_epi32((int)kern_ld32(p));
}

/* acc + dpbusd(u, the 4 bytes at p in every lane), the bytes read by the
 * product itself ({1to16}): clang folds kt_bcast into it, gcc (12) emits a
 * separate broadcast, one more instruction per product. */
typedef int32_t __attribute__((may_alias, aligned(1))) kt_i32u;
/* the same for vpdpwssd (signed word pairs) */
KX_INLINE __m512i kt_dotw_bcast(__m512i acc, __m512i w, const uint8_t *p)
{
#if defined(__clang__)
    return _mm512_dpwssd_epi32(acc, w, _mm512_set1_epi32(*(const kt_i32u *)p));
#else
    __asm__("vpdpwssd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const kt_i32u *)p));
    return acc;
#endif
}
#define KT_PIN(v) __asm__("" : "+v"(v))
KX_INLINE __m512i kt_dot_bcast(__m512i acc, __m512i u, const uint8_t *p)
{
#if defined(__clang__)
    return _mm512_dpbusd_epi32(acc, u, _mm512_set1_epi32(*(const kt_i32u *)p));
#else
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(u), "m"(*(const kt_i32u *)p));
    return acc;
#endif
}

/* A group of 16 rows against T tokens: y[t * ys + i] for row i, lanes in
 * sm stored. Unpacked (P 0): rows [0, nr) at W (lanes past nr repeat the
 * last row). Packed (P 1): the group's vectors at pk, as kern_pack wrote
 * them (the transposition done once at load: one stream of memory instead
 * of 16 rows read side by side, which measured at 2/3 of one stream's
 * rate from DRAM here, and no shuffles). */
KX_INLINE void kt_q8_0_tile(const uint8_t *W, size_t rb, int nr, const uint8_t *pk, unsigned sm,
                            const uint8_t *const *xp, int n, float *y, int ys, const int T,
                            const int P)
{
    const int nb = n / KQ, np = (nb + 1) / 2;
    const uint8_t *rp[KT_ROWS];
    KT_UNROLL
    for (int i = 0; i < KT_ROWS; i++)
        rp[i] = W + (size_t)(i < nr ? i : nr - 1) * rb;
    const __m512i gidx = _mm512_mullo_epi32(
        _mm512_min_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                         _mm512_set1_epi32(nr - 1)),
        _mm512_set1_epi32((int)rb));
    const __m512i flip = _mm512_set1_epi8(-128);
    __m512 acc[KT_T];
    KT_UNROLL
    for (int t = 0; t < T; t++)
        acc[t] = _mm512_setzero_ps();
    for (int p = 0; p < np; p++) {
        const size_t off = (size_t)p * 2 * KB_Q8_0;
        const int two = 2 * p + 1 < nb;
        __m512i r[KT_ROWS], v[17];
        if (P) {
            KT_UNROLL
            for (int k = 0; k < 17; k++) {
                v[k] = _mm512_load_si512((const void *)(pk + ((size_t)p * 17 + (size_t)k) * 64));
                _mm_prefetch((const char *)pk + ((size_t)p * 17 + (size_t)k) * 64 + KT_PPF,
                             _MM_HINT_T0);
            }
        } else if (two) {
            KT_UNROLL
            for (int i = 0; i < KT_ROWS; i++) {
                r[i] = _mm512_loadu_si512((const void *)(rp[i] + off));
                _mm_prefetch((const char *)rp[i] + off + KT_PF, _MM_HINT_T0);
            }
        } else {
            /* the last, lone block: 34 bytes, nothing past the row read */
            KT_UNROLL
            for (int i = 0; i < KT_ROWS; i++)
                r[i] = _mm512_maskz_loadu_epi8(((__mmask64)1 << KB_Q8_0) - 1, rp[i] + off);
        }
        if (!P) {
            kt_transpose16(r, v);
            v[16] = two ? _mm512_i32gather_epi32(gidx, (const void *)(W + off + 64), 1)
                        : _mm512_setzero_si512();
        }
        __m512 dw0 = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v[0]));
        __m512 dw1 = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(v[8], 16)));
        /* unsigned values; the d bytes cleared */
        KT_UNROLL
        for (int k = 0; k < 17; k++)
            v[k] = _mm512_xor_si512(v[k], flip);
        v[0] = _mm512_and_si512(v[0], _mm512_set1_epi32((int)0xffff0000u));
        v[8] = _mm512_and_si512(v[8], _mm512_set1_epi32(0xffff));
        KT_UNROLL
        for (int t = 0; t < T; t++) {
            const uint8_t *x = xp[t] + (size_t)KQ * 2 * p;
            const float *xd = KX_XD(xp[t], n) + 2 * p;
            const int32_t *xz = KX_XS(xp[t], n) + nb + 2 * p;
            /* dword 0: [d d x0 x1]; the first pair has no bytes before x0 */
            __m512i x0 =
                p ? kt_bcast(x - 2) : _mm512_set1_epi32((int)((uint32_t)kern_ld16(x) << 16));
            __m512i s0 = _mm512_dpbusd_epi32(_mm512_set1_epi32(xz[0]), v[0], x0);
            __m512i s0b = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[1], kt_bcast(x + 2));
            KT_UNROLL
            for (int k = 2; k < 9; k += 2) {
                s0 = _mm512_dpbusd_epi32(s0, v[k], kt_bcast(x + 4 * k - 2));
                if (k + 1 < 9) s0b = _mm512_dpbusd_epi32(s0b, v[k + 1], kt_bcast(x + 4 * k + 2));
            }
            s0 = _mm512_add_epi32(s0, s0b);
            __m512 sc0 = _mm512_mul_ps(dw0, _mm512_set1_ps(xd[0]));
            acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(_mm512_cvtepi32_ps(s0), sc0));
            if (two) {
                __m512i s1 = _mm512_dpbusd_epi32(_mm512_set1_epi32(xz[1]), v[9], kt_bcast(x + 32));
                __m512i s1b = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[10], kt_bcast(x + 36));
                KT_UNROLL
                for (int k = 11; k < 17; k += 2) {
                    s1 = _mm512_dpbusd_epi32(s1, v[k], kt_bcast(x + 32 + 4 * (k - 9)));
                    s1b = _mm512_dpbusd_epi32(s1b, v[k + 1], kt_bcast(x + 32 + 4 * (k - 8)));
                }
                s1 = _mm512_add_epi32(s1, s1b);
                __m512 sc1 = _mm512_mul_ps(dw1, _mm512_set1_ps(xd[1]));
                acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(_mm512_cvtepi32_ps(s1), sc1));
            }
        }
    }
    KT_UNROLL
    for (int t = 0; t < T; t++)
        _mm512_mask_storeu_ps(y + (size_t)t * (size_t)ys, (__mmask16)sm, acc[t]);
}

/* One function per type taking the token count and packing at run time;
 * each case inlines the tile with constants so its loops unroll. */
#define KT_CASE(F, T)                                                                              \
    case T:                                                                                        \
        if (pk)                                                                                    \
            F(W, rb, nr, pk, sm, xp, n, y, ys, T, 1);                                              \
        else                                                                                       \
            F(W, rb, nr, pk, sm, xp, n, y, ys, T, 0);                                              \
        break;

#define KT_TILE_FN(NAME, F)                                                                        \
    KX_TGT static void NAME(const uint8_t *W, size_t rb, int nr, const uint8_t *pk, unsigned sm,   \
                            const uint8_t *const *xp, int n, float *y, int ys, int nt)             \
    {                                                                                              \
        switch (nt) {                                                                              \
            KT_CASE(F, 1)                                                                          \
            KT_CASE(F, 2)                                                                          \
            KT_CASE(F, 3)                                                                          \
            KT_CASE(F, 4)                                                                          \
            KT_CASE(F, 5)                                                                          \
            KT_CASE(F, 6)                                                                          \
            KT_CASE(F, 7)                                                                          \
        default:                                                                                   \
            KT_CASE(F, 8)                                                                          \
        }                                                                                          \
    }

KT_TILE_FN(kt_q8_0, kt_q8_0_tile)

typedef void (*kt_tile_fn)(const uint8_t *W, size_t rb, int nr, const uint8_t *pk, unsigned sm,
                           const uint8_t *const *xp, int n, float *y, int ys, int nt);

/* Row groups of 16 in the outer loop, tiles of up to 8 tokens inside: a
 * group's rows are transposed (or its packed vectors read) once per tile.
 * Unpacked (pk NULL): groups of rows [r0, r1) from r0, nr rows each (the
 * last one shorter) at W. Packed: pk holds groups of 16 rows from row 0, gb
 * bytes each, so a range cut inside a group stores only its rows (sm). Every
 * row-group kernel goes through here. */
static void kt_drive(kt_tile_fn fn, const uint8_t *W, size_t rb, const uint8_t *pk, size_t gb,
                     int n, const uint8_t *prep, size_t ps, int n_tok, float *y, int ys, int r0,
                     int r1)
{
    const int g0 = pk ? r0 / KT_ROWS * KT_ROWS : r0;
    for (int c0 = 0; c0 < n_tok; c0 += KX_TCHUNK) {
        int c1 = n_tok - c0 < KX_TCHUNK ? n_tok : c0 + KX_TCHUNK;
        for (int base = g0; base < r1; base += KT_ROWS) {
            int lo = r0 > base ? r0 - base : 0, hi = r1 - base < KT_ROWS ? r1 - base : KT_ROWS;
            unsigned sm = (hi >= KT_ROWS ? 0xffffu : (1u << hi) - 1) & ~((1u << lo) - 1);
            const uint8_t *gw = pk ? W : W + (size_t)base * rb;
            const uint8_t *gp = pk ? pk + (size_t)(base / KT_ROWS) * gb : NULL;
            for (int t0 = c0; t0 < c1; t0 += KT_T) {
                int nt = c1 - t0 < KT_T ? c1 - t0 : KT_T;
                const uint8_t *xp[KT_T];
                for (int i = 0; i < nt; i++)
                    xp[i] = prep + (size_t)(t0 + i) * ps;
                fn(gw, rb, hi, gp, sm, xp, n, y + (size_t)t0 * (size_t)ys + (size_t)base, ys, nt);
            }
        }
    }
}

static void kt_q8_0_mm(const uint8_t *W, size_t rb, int n, const uint8_t *prep, size_t ps,
                       int n_tok, float *y, int ys, int r0, int r1)
{
    /* the gather's offsets are int32 */
    if (rb > (size_t)INT32_MAX / KT_ROWS) {
        kx_q8_0_mm(W, rb, n, prep, ps, n_tok, y, ys, r0, r1);
        return;
    }
    kt_drive(kt_q8_0, W, rb, NULL, 0, n, prep, ps, n_tok, y, ys, r0, r1);
}

/* ---- 512-bit Q4_K, sixteen rows per vector --------------------------------
 * The same scheme for q4_K's 144-byte blocks: per 16-row group and block, the
 * 16 header bytes (d, dmin, 12 bytes of 6-bit scales and mins) and the 128
 * bytes of 4-bit values are transposed so lane i holds row i. Dword k of the
 * values holds 4 low nibbles of sub-block 2(k/8) and 4 high nibbles of
 * sub-block 2(k/8)+1; masked and shifted they meet 4 input bytes broadcast
 * from memory in a VNNI product, and 8 of those give a sub-block's exact sum
 * for 16 rows, scaled by the rows' 6-bit scales with one integer multiply.
 * The mins meet the per-16 input sums by pairs of int16 (one dpwssd per
 * sub-block). The float epilogue per block is the portable path's, so results
 * are bit-identical to it for any batch and row range. */

/* Lane r of h[k] = dword k of row r's first 16 bytes (d, dmin, scales). */
KX_INLINE void kt_header16(const uint8_t *const *rp, size_t off, __m512i h[4])
{
    __m512i z[4];
    KT_UNROLL
    for (int j = 0; j < 4; j++) {
        /* 128-bit lane L: row 4L + j */
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(rp[j] + off)));
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rp[4 + j] + off)), 1);
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rp[8 + j] + off)), 2);
        z[j] = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rp[12 + j] + off)), 3);
    }
    __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
    __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
    h[0] = _mm512_unpacklo_epi64(t0, t2);
    h[1] = _mm512_unpackhi_epi64(t0, t2);
    h[2] = _mm512_unpacklo_epi64(t1, t3);
    h[3] = _mm512_unpackhi_epi64(t1, t3);
}

/* Lane i of v[k] = dword k of row i's 32 bytes, for 16 rows given as z[i] =
 * row i | row i + 8: an 8x8 transpose in each 256-bit half, then the halves'
 * 128-bit lanes put in row order. */
KX_INLINE void kt_transpose8_net(const __m512i z[8], __m512i v[8])
{
    __m512i a[8], b[8];
    KT_UNROLL
    for (int i = 0; i < 4; i++) {
        a[2 * i] = _mm512_unpacklo_epi32(z[2 * i], z[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_epi32(z[2 * i], z[2 * i + 1]);
    }
    /* b[4j+c], 128-bit lanes: dword c / 4+c of rows 4j..4j+3, then of rows 8+4j.. */
    KT_UNROLL
    for (int j = 0; j < 2; j++) {
        b[4 * j + 0] = _mm512_unpacklo_epi64(a[4 * j + 0], a[4 * j + 2]);
        b[4 * j + 1] = _mm512_unpackhi_epi64(a[4 * j + 0], a[4 * j + 2]);
        b[4 * j + 2] = _mm512_unpacklo_epi64(a[4 * j + 1], a[4 * j + 3]);
        b[4 * j + 3] = _mm512_unpackhi_epi64(a[4 * j + 1], a[4 * j + 3]);
    }
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    const __m512i hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    KT_UNROLL
    for (int c = 0; c < 4; c++) {
        v[c] = _mm512_permutex2var_epi64(b[c], lo, b[4 + c]);
        v[4 + c] = _mm512_permutex2var_epi64(b[c], hi, b[4 + c]);
    }
}

/* kt_transpose8_net over the 32 bytes at rp[i] + off. */
KX_INLINE void kt_transpose8(const uint8_t *const *rp, size_t off, __m512i v[8])
{
    __m512i z[8];
    KT_UNROLL
    for (int i = 0; i < 8; i++)
        z[i] = _mm512_inserti64x4(_mm512_castsi256_si512(kx_load(rp[i] + off)),
                                  kx_load(rp[i + 8] + off), 1);
    kt_transpose8_net(z, v);
}

/* pshufb control taking bytes 2i and 2i+1 of every dword to its two words
 * ([b(2i), 0, b(2i+1), 0]) */
KX_INLINE __m512i kt_pair_ctl(int i)
{
    const __m512i l4 = _mm512_setr_epi32(0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12);
    uint32_t c = 0x80008000u | (uint32_t)(2 * i) | (uint32_t)(2 * i + 1) << 16;
    return _mm512_add_epi32(_mm512_set1_epi32((int)c),
                            _mm512_or_si512(l4, _mm512_slli_epi32(l4, 16)));
}

/* pshufb control taking byte j of every dword to its low byte (others 0) */
KX_INLINE __m512i kt_byte_ctl(int j)
{
    const __m512i l4 = _mm512_setr_epi32(0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12);
    return _mm512_add_epi32(_mm512_set1_epi32((int)(0x80808000u | (uint32_t)j)), l4);
}

KX_INLINE void kt_q4_K_tile(const uint8_t *W, size_t rb, int nr, const uint8_t *pk, unsigned sm,
                            const uint8_t *const *xp, int n, float *y, int ys, const int T,
                            const int P)
{
    const int nb = n / KQ_K;
    const uint8_t *rp[KT_ROWS];
    KT_UNROLL
    for (int i = 0; i < KT_ROWS; i++)
        rp[i] = W + (size_t)(i < nr ? i : nr - 1) * rb;
    const __m512i m4 = _mm512_set1_epi8(15);
    __m512 acc[KT_T];
    KT_UNROLL
    for (int t = 0; t < T; t++)
        acc[t] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const size_t off = (size_t)b * KB_Q4_K;
        /* packed: 36 vectors per block, the 4 of the header first */
        const uint8_t *pb = pk + (size_t)b * 36 * 64;
        __m512i h[4];
        if (P) {
            /* the value vectors' prefetches go with their first use below */
            KT_UNROLL
            for (int k = 0; k < 4; k++) {
                h[k] = _mm512_load_si512((const void *)(pb + 64 * k));
                _mm_prefetch((const char *)pb + 64 * k + KT_PPF, _MM_HINT_T0);
            }
        } else {
            KT_UNROLL
            for (int i = 0; i < KT_ROWS; i++) {
                _mm_prefetch((const char *)rp[i] + off + KT_PF, _MM_HINT_T0);
                _mm_prefetch((const char *)rp[i] + off + KT_PF + 64, _MM_HINT_T0);
                _mm_prefetch((const char *)rp[i] + off + KT_PF + 128, _MM_HINT_T0);
            }
            kt_header16(rp, off, h);
        }
        __m512 dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h[0]));
        __m512 dm = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(h[0], 16)));
        /* bytes of sc[4]: scales 0-3 / 4-7; of mn[2]: mins 0-3 / 4-7 (kern_scale_min_k4) */
        const __m512i m6 = _mm512_set1_epi8(63), m30 = _mm512_set1_epi8(0x30);
        __m512i sc[2], mn[2];
        sc[0] = _mm512_and_si512(h[1], m6);
        mn[0] = _mm512_and_si512(h[2], m6);
        sc[1] = _mm512_or_si512(_mm512_and_si512(h[3], m4),
                                _mm512_and_si512(_mm512_srli_epi32(h[1], 2), m30));
        mn[1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(h[3], 4), m4),
                                _mm512_and_si512(_mm512_srli_epi32(h[2], 2), m30));
        __m512i sumi[KT_T];
        KT_UNROLL
        for (int c = 0; c < 4; c++) {
            /* 32-byte chunk c: low nibbles sub-block 2c, high nibbles 2c+1 */
            __m512i q[8];
            if (!P) kt_transpose8(rp, off + 16 + 32 * (size_t)c, q);
            KT_UNROLL
            for (int e = 0; e < 2; e++) {
                /* weights in the outer loop, tokens inside: the live set is
                 * one sum per token; packed weights are read again from L1
                 * for the high nibbles rather than held (held, gcc spilled) */
                const int j = 2 * c + e;
                __m512i sa[KT_T];
                KT_UNROLL
                for (int m = 0; m < 8; m++) {
                    const uint8_t *pv = pb + 64 * (4 + 8 * c + m);
                    if (P && !e) _mm_prefetch((const char *)pv + KT_PPF, _MM_HINT_T0);
                    __m512i v = P ? _mm512_load_si512((const void *)pv) : q[m];
                    __m512i w = _mm512_and_si512(e ? _mm512_srli_epi32(v, 4) : v, m4);
                    const size_t xo = (size_t)KQ_K * b + 32 * j + 4 * m;
                    KT_UNROLL
                    for (int t = 0; t < T; t++)
                        sa[t] = kt_dot_bcast(m ? sa[t] : _mm512_setzero_si512(), w, xp[t] + xo);
                }
                __m512i sj = _mm512_shuffle_epi8(sc[j / 4], kt_byte_ctl(j % 4));
                KT_UNROLL
                for (int t = 0; t < T; t++) {
                    sumi[t] = j ? _mm512_add_epi32(sumi[t], _mm512_mullo_epi32(sa[t], sj))
                                : _mm512_mullo_epi32(sa[t], sj);
                    /* gcc reassociates the sum over sub-blocks into a tree
                     * that keeps all 64 partial sums live (spilled): the
                     * empty asm pins the running sum here */
                    KT_PIN(sumi[t]);
                }
            }
        }
        /* mins: sum_j m[j] * bs32[j], two sub-blocks per dpwssd: words
         * [m(2k), m(2k+1)] of each row against the pair of sums of 32 */
        __m512i summ[KT_T];
        KT_UNROLL
        for (int k = 0; k < 4; k++) {
            __m512i mw = _mm512_shuffle_epi8(mn[k / 2], kt_pair_ctl(k % 2));
            KT_UNROLL
            for (int t = 0; t < T; t++)
                summ[t] =
                    kt_dotw_bcast(k ? summ[t] : _mm512_setzero_si512(), mw,
                                  (const uint8_t *)(KX_XBS(xp[t], n) + n / 16 + 8 * b) + 4 * k);
        }
        KT_UNROLL
        for (int t = 0; t < T; t++) {
            __m512 dx = _mm512_set1_ps(KX_XD(xp[t], n)[b]);
            __m512 a = _mm512_mul_ps(_mm512_mul_ps(dw, dx), _mm512_cvtepi32_ps(sumi[t]));
            __m512 mm = _mm512_mul_ps(_mm512_mul_ps(dm, dx), _mm512_cvtepi32_ps(summ[t]));
            acc[t] = _mm512_add_ps(acc[t], _mm512_sub_ps(a, mm));
        }
    }
    KT_UNROLL
    for (int t = 0; t < T; t++)
        _mm512_mask_storeu_ps(y + (size_t)t * (size_t)ys, (__mmask16)sm, acc[t]);
}

KT_TILE_FN(kt_q4_K, kt_q4_K_tile)

static void kt_q4_K_mm(const uint8_t *W, size_t rb, int n, const uint8_t *prep, size_t ps,
                       int n_tok, float *y, int ys, int r0, int r1)
{
    kt_drive(kt_q4_K, W, rb, NULL, 0, n, prep, ps, n_tok, y, ys, r0, r1);
}

/* ---- 512-bit Q6_K, sixteen rows per vector --------------------------------
 * The row-group scheme for q6_K's 210-byte blocks (ql[128] low nibbles,
 * qh[64] high bit pairs, 16 int8 scales, f16 d). Transposed per 16 rows:
 * the 16 scale bytes (4 vectors), d (1: the dword ending at the block's end,
 * d in its high half), ql in 4 chunks and qh in 2 chunks of 32 bytes (8
 * vectors each: dword m of a chunk, lane i = row i). Element 128h + 32j + 4m
 * + k of a row (half h, quarter j) is byte k of dword m of ql chunk 2h + j%2
 * (low nibble for j < 2, high for j >= 2) with bits 2j, 2j+1 of the same qh
 * byte of chunk h on top: one vector of 16 rows x 4 values unpacked with a
 * shift, a mask and one ternary-logic op, then one VNNI product against 4
 * input bytes broadcast from memory. Values stay unsigned (0..63); a group of
 * 16 elements is 4 products summed exactly, times its int8 scale per lane;
 * the -32 offset of every value is -32 * sum_g sc[g] * bs[g] (int16 pairs,
 * one dpwssd per two groups). The float epilogue per block is the portable
 * path's, so results are bit-identical to it for any batch and row range. */

#define KT_Q6_VECS 53 /* packed vectors per block and 16 rows: 4 + 1 + 32 + 16 */

/* shuffle control putting bytes 2q, 2q+1 of every dword in the high bytes of
 * its two words (srai by 8 then sign-extends them) */
KX_INLINE __m512i kt_spair_ctl(int q)
{
    const __m512i l4 = _mm512_setr_epi32(0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12);
    uint32_t c = 0x00800080u | (uint32_t)(2 * q) << 8 | (uint32_t)(2 * q + 1) << 24;
    return _mm512_add_epi32(_mm512_set1_epi32((int)c),
                            _mm512_or_si512(_mm512_slli_epi32(l4, 8), _mm512_slli_epi32(l4, 24)));
}

/* Lane i: row i's d in the high half (as packed). */
KX_INLINE __m512i kt_q6_d(const uint8_t *const *rp, size_t off)
{
    uint32_t dd[KT_ROWS];
    KT_UNROLL
    for (int i = 0; i < KT_ROWS; i++)
        dd[i] = (uint32_t)kern_ld16(rp[i] + off + 208) << 16;
    return _mm512_loadu_si512((const void *)dd);
}

KX_INLINE void kt_q6_K_tile(const uint8_t *W, size_t rb, int nr, const uint8_t *pk, unsigned sm,
                            const uint8_t *const *xp, int n, float *y, int ys, const int T,
                            const int P)
{
    const int nb = n / KQ_K;
    const uint8_t *rp[KT_ROWS];
    KT_UNROLL
    for (int i = 0; i < KT_ROWS; i++)
        rp[i] = W + (size_t)(i < nr ? i : nr - 1) * rb;
    const __m512i m4 = _mm512_set1_epi8(15), m30 = _mm512_set1_epi8(0x30);
    __m512 acc[KT_T];
    KT_UNROLL
    for (int t = 0; t < T; t++)
        acc[t] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const size_t off = (size_t)b * KB_Q6_K;
        const uint8_t *pb = P ? pk + (size_t)b * KT_Q6_VECS * 64 : NULL;
        __m512i s[4], dv;
        if (P) {
            KT_UNROLL
            for (int k = 0; k < 4; k++)
                s[k] = _mm512_load_si512((const void *)(pb + 64 * k));
            dv = _mm512_load_si512((const void *)(pb + 64 * 4));
            KT_UNROLL
            for (int k = 0; k < KT_Q6_VECS; k++)
                _mm_prefetch((const char *)pb + 64 * k + KT_PPF, _MM_HINT_T0);
        } else {
            KT_UNROLL
            for (int i = 0; i < KT_ROWS; i++)
                KT_UNROLL
            for (int k = 0; k < 4; k++)
                _mm_prefetch((const char *)rp[i] + off + KT_PF + 64 * k, _MM_HINT_T0);
            kt_header16(rp, off + 192, s);
            dv = kt_q6_d(rp, off);
        }
        __m512 dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dv, 16)));
        /* sumi starts at the offset's -32 * sum_g sc[g] * bs[g] */
        __m512i sumi[KT_T];
        KT_UNROLL
        for (int t = 0; t < T; t++)
            sumi[t] = _mm512_setzero_si512();
        KT_UNROLL
        for (int q = 0; q < 8; q++) {
            __m512i pr = _mm512_srai_epi16(_mm512_shuffle_epi8(s[q / 2], kt_spair_ctl(q % 2)), 8);
            KT_UNROLL
            for (int t = 0; t < T; t++)
                sumi[t] = kt_dotw_bcast(sumi[t], pr,
                                        (const uint8_t *)(KX_XBS(xp[t], n) + 16 * b) + 4 * q);
        }
        KT_UNROLL
        for (int t = 0; t < T; t++)
            sumi[t] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sumi[t], 5));
        KT_UNROLL
        for (int h = 0; h < 2; h++) {
            /* the half's ql chunks 2h, 2h+1 and qh chunk h, 8 vectors each */
            __m512i tq[3][8];
            const __m512i *qv[3];
            if (P) {
                qv[0] = (const __m512i *)(pb + 64 * (5 + 16 * h));
                qv[1] = (const __m512i *)(pb + 64 * (5 + 16 * h + 8));
                qv[2] = (const __m512i *)(pb + 64 * (37 + 8 * h));
            } else {
                kt_transpose8(rp, off + 64 * (size_t)h, tq[0]);
                kt_transpose8(rp, off + 64 * (size_t)h + 32, tq[1]);
                kt_transpose8(rp, off + 128 + 32 * (size_t)h, tq[2]);
                qv[0] = tq[0], qv[1] = tq[1], qv[2] = tq[2];
            }
            KT_UNROLL
            for (int j = 0; j < 4; j++)
                KT_UNROLL
            for (int gh = 0; gh < 2; gh++) {
                const int g = 8 * h + 2 * j + gh;
                __m512i sa[KT_T];
                KT_UNROLL
                for (int t = 0; t < T; t++)
                    sa[t] = _mm512_setzero_si512();
                KT_UNROLL
                for (int mm = 0; mm < 4; mm++) {
                    const int m = 4 * gh + mm;
                    __m512i l = _mm512_load_si512((const void *)&qv[j % 2][m]);
                    __m512i hb = _mm512_load_si512((const void *)&qv[2][m]);
                    if (j >= 2) l = _mm512_srli_epi32(l, 4);
                    /* bits 2j, 2j+1 of each qh byte to bits 4, 5 */
                    hb = j == 0   ? _mm512_slli_epi32(hb, 4)
                         : j == 1 ? _mm512_slli_epi32(hb, 2)
                         : j == 3 ? _mm512_srli_epi32(hb, 2)
                                  : hb;
                    /* (l & 15) | (hb & 0x30) */
                    __m512i w = _mm512_ternarylogic_epi32(l, _mm512_and_si512(hb, m30), m4, 0xEC);
                    const size_t xo = (size_t)KQ_K * b + 128 * h + 32 * j + 4 * m;
                    KT_UNROLL
                    for (int t = 0; t < T; t++)
                        sa[t] = kt_dot_bcast(sa[t], w, xp[t] + xo);
                }
                /* lane i: row i's int8 scale of group g */
                __m512i sg = _mm512_srai_epi32(_mm512_slli_epi32(s[g / 4], 24 - 8 * (g % 4)), 24);
                KT_UNROLL
                for (int t = 0; t < T; t++) {
                    sumi[t] = _mm512_add_epi32(sumi[t], _mm512_mullo_epi32(sa[t], sg));
                    KT_PIN(sumi[t]); /* a running sum, not a tree of 16 live ones (kt_q4_K) */
                }
            }
        }
        KT_UNROLL
        for (int t = 0; t < T; t++) {
            __m512 dx = _mm512_set1_ps(KX_XD(xp[t], n)[b]);
            acc[t] = _mm512_add_ps(
                acc[t], _mm512_mul_ps(_mm512_mul_ps(dw, dx), _mm512_cvtepi32_ps(sumi[t])));
        }
    }
    KT_UNROLL
    for (int t = 0; t < T; t++)
        _mm512_mask_storeu_ps(y + (size_t)t * (size_t)ys, (__mmask16)sm, acc[t]);
}

KT_TILE_FN(kt_q6_K, kt_q6_K_tile)

static void kt_q6_K_mm(const uint8_t *W, size_t rb, int n, const uint8_t *prep, size_t ps,
                       int n_tok, float *y, int ys, int r0, int r1)
{
    kt_drive(kt_q6_K, W, rb, NULL, 0, n, prep, ps, n_tok, y, ys, r0, r1);
}

/* ---- 512-bit Q4_0 and Q5_0, sixteen rows per vector -----------------------
 * The row-group scheme for the 32-element blocks with a zero point (q4_0: 18
 * bytes, values - 8; q5_0: 22 bytes, a fifth bit per value in qh, values -
 * 16). Per 16 rows and pair of blocks the packed layout holds one vector of
 * both blocks' d (lane i: row i's d(b) in the low half, d(b+1) in the high),
 * for q5_0 each block's qh with its bits transposed (byte k, bit m: qh bit
 * 4m + k, the fifth bit of element 4m + k), then each block's 16 bytes of
 * nibbles as 4 vectors (dword m, lane i = row i): 9 vectors for q4_0, 11 for
 * q5_0, exactly the matrix's bytes (a lone last block's half is zeros).
 * Element dword m (elements 4m..4m+3) is dword m % 4's low (m < 4) or high
 * nibbles, with the fifth bits shifted to bit 4 in one shift and a mask; one
 * VNNI product with 4 broadcast input bytes serves 16 rows, the chain
 * starting at -z*sum(x) so a block's integer is exact. The float epilogue is
 * the portable path's, so results equal it bit for bit. Unpacked, a block's
 * 18 or 22 bytes are loaded from 16 rows at the end of a 32-byte window
 * (masked: nothing outside the block is read) and transposed, and the fifth
 * bits spread from qh with a multiply. */

enum kt_qz { KT_Q4_0, KT_Q5_0 };

#define KT_QZ_VECS(K) ((K) == KT_Q4_0 ? 9 : 11) /* per pair of blocks */

/* The transposed 32-byte windows ending at the ends of block b of 16 rows:
 * v[2] (q5_0) or v[3] (q4_0) has d in its high half, v[3] is q5_0's qh,
 * v[4..7] the nibbles. */
KX_INLINE void kt_qz_window(const uint8_t *const *rp, size_t off, size_t bb, __m512i v[8])
{
    /* bytes 32-bb.. of the window are the block's */
    const __mmask32 mk = ~(__mmask32)0 << (32 - bb);
    const ptrdiff_t w0 = (ptrdiff_t)off + (ptrdiff_t)bb - 32; /* may be before the row: masked */
    __m512i z[8];
    KT_UNROLL
    for (int i = 0; i < 8; i++)
        z[i] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_maskz_loadu_epi8(mk, rp[i] + w0)),
                                  _mm256_maskz_loadu_epi8(mk, rp[i + 8] + w0), 1);
    kt_transpose8_net(z, v);
}

/* 0x10 in byte k of every lane where qh bit 4m + k is set: from the raw qh
 * (a multiply spreads 4 bits to 4 bytes) or the packed, transposed one. */
KX_INLINE __m512i kt_q5_hbits(__m512i qh, int m, int transposed)
{
    const __m512i m10 = _mm512_set1_epi8(0x10);
    if (transposed) {
        __m512i s = m < 4 ? _mm512_slli_epi32(qh, 4 - m) : _mm512_srli_epi32(qh, m - 4);
        return _mm512_and_si512(s, m10);
    }
    __m512i x = _mm512_and_si512(_mm512_srli_epi32(qh, 4 * m), _mm512_set1_epi32(15));
    return _mm512_and_si512(_mm512_mullo_epi32(x, _mm512_set1_epi32(0x02040810)), m10);
}

/* q5_0's qh with its bits transposed (byte k, bit m: bit 4m + k), lane-wise. */
KX_INLINE __m512i kt_q5_qh_transpose(__m512i qh)
{
    __m512i r = _mm512_setzero_si512();
    KT_UNROLL
    for (int m = 0; m < 8; m++) {
        __m512i h = kt_q5_hbits(qh, m, 0); /* bit 4 of byte k: qh bit 4m + k */
        r = _mm512_or_si512(r, m < 4 ? _mm512_srli_epi32(h, 4 - m) : _mm512_slli_epi32(h, m - 4));
    }
    return r;
}

KX_INLINE void kt_qz_tile(const uint8_t *W, size_t rb, int nr, const uint8_t *pk, unsigned sm,
                          const uint8_t *const *xp, int n, float *y, int ys, const int T,
                          const int P, const int K)
{
    const size_t bb = K == KT_Q4_0 ? KB_Q4_0 : KB_Q5_0;
    const int nb = n / KQ, nv = KT_QZ_VECS(K);
    const uint8_t *rp[KT_ROWS];
    KT_UNROLL
    for (int i = 0; i < KT_ROWS; i++)
        rp[i] = W + (size_t)(i < nr ? i : nr - 1) * rb;
    const __m512i m4 = _mm512_set1_epi8(15);
    __m512 acc[KT_T];
    KT_UNROLL
    for (int t = 0; t < T; t++)
        acc[t] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const size_t off = (size_t)b * bb;
        __m512i q[4], qh = _mm512_setzero_si512();
        __m512 dw;
        if (P) {
            const uint8_t *pp = pk + (size_t)(b / 2) * (size_t)nv * 64;
            const int e = b % 2;
            if (!e) {
                KT_UNROLL
                for (int k = 0; k < nv; k++)
                    _mm_prefetch((const char *)pp + 64 * k + KT_PPF, _MM_HINT_T0);
            }
            __m512i d2 = _mm512_load_si512((const void *)pp);
            dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(e ? _mm512_srli_epi32(d2, 16) : d2));
            if (K == KT_Q5_0) qh = _mm512_load_si512((const void *)(pp + 64 * (1 + e)));
            const uint8_t *pq = pp + 64 * (K == KT_Q5_0 ? 3 : 1) + 256 * e;
            KT_UNROLL
            for (int k = 0; k < 4; k++)
                q[k] = _mm512_load_si512((const void *)(pq + 64 * k));
        } else {
            KT_UNROLL
            for (int i = 0; i < KT_ROWS; i++)
                _mm_prefetch((const char *)rp[i] + off + KT_PF, _MM_HINT_T0);
            __m512i v[8];
            kt_qz_window(rp, off, bb, v);
            dw = _mm512_cvtph_ps(
                _mm512_cvtepi32_epi16(_mm512_srli_epi32(v[K == KT_Q4_0 ? 3 : 2], 16)));
            qh = v[3];
            KT_UNROLL
            for (int k = 0; k < 4; k++)
                q[k] = v[4 + k];
        }
        /* element dwords 0-7, unsigned */
        __m512i u[8];
        KT_UNROLL
        for (int m = 0; m < 8; m++) {
            __m512i nib = _mm512_and_si512(m < 4 ? q[m] : _mm512_srli_epi32(q[m - 4], 4), m4);
            u[m] = K == KT_Q5_0 ? _mm512_or_si512(nib, kt_q5_hbits(qh, m, P)) : nib;
        }
        KT_UNROLL
        for (int t = 0; t < T; t++) {
            const uint8_t *x = xp[t] + (size_t)KQ * b;
            __m512i s = _mm512_set1_epi32(KX_XS(xp[t], n)[nb + b]); /* -z * sum(x) */
            __m512i s2 = _mm512_setzero_si512();
            KT_UNROLL
            for (int m = 0; m < 8; m += 2) {
                s = kt_dot_bcast(s, u[m], x + 4 * m);
                s2 = kt_dot_bcast(s2, u[m + 1], x + 4 * m + 4);
            }
            __m512 sc = _mm512_mul_ps(dw, _mm512_set1_ps(KX_XD(xp[t], n)[b]));
            acc[t] = _mm512_add_ps(acc[t],
                                   _mm512_mul_ps(sc, _mm512_cvtepi32_ps(_mm512_add_epi32(s, s2))));
        }
    }
    KT_UNROLL
    for (int t = 0; t < T; t++)
        _mm512_mask_storeu_ps(y + (size_t)t * (size_t)ys, (__mmask16)sm, acc[t]);
}

KX_INLINE void kt_q4_0_tile(const uint8_t *W, size_t rb, int nr, const uint8_t *pk, unsigned sm,
                            const uint8_t *const *xp, int n, float *y, int ys, const int T,
                            const int P)
{
    kt_qz_tile(W, rb, nr, pk, sm, xp, n, y, ys, T, P, KT_Q4_0);
}

KX_INLINE void kt_q5_0_tile(const uint8_t *W, size_t rb, int nr, const uint8_t *pk, unsigned sm,
                            const uint8_t *const *xp, int n, float *y, int ys, const int T,
                            const int P)
{
    kt_qz_tile(W, rb, nr, pk, sm, xp, n, y, ys, T, P, KT_Q5_0);
}

KT_TILE_FN(kt_q4_0, kt_q4_0_tile)
KT_TILE_FN(kt_q5_0, kt_q5_0_tile)

static void kt_q4_0_mm(const uint8_t *W, size_t rb, int n, const uint8_t *prep, size_t ps,
                       int n_tok, float *y, int ys, int r0, int r1)
{
    kt_drive(kt_q4_0, W, rb, NULL, 0, n, prep, ps, n_tok, y, ys, r0, r1);
}

static void kt_q5_0_mm(const uint8_t *W, size_t rb, int n, const uint8_t *prep, size_t ps,
                       int n_tok, float *y, int ys, int r0, int r1)
{
    kt_drive(kt_q5_0, W, rb, NULL, 0, n, prep, ps, n_tok, y, ys, r0, r1);
}

/* ---- packing ------------------------------------------------------------
 * The packed layout is the unpacked kernels' registers after transposition,
 * stored in order: per group of 16 rows (the last one padded by repeating its
 * last row) and per Q8_0 block pair, 17 vectors of 64 bytes (vector k, lane i:
 * bytes 4k..4k+3 of row i's pair, zeros past a lone last block); per Q4_K
 * block, 4 header vectors then 32 of values (chunk c, dword m: vector
 * 4+8c+m). The same bytes as the matrix, plus the padding of the last group.
 * Plain C: it runs once per matrix at load. */

static size_t kt_group_bytes(enum ggml_type t, int n_cols)
{
    if (t == GGML_TYPE_Q8_0 && n_cols % KQ == 0) return (size_t)(n_cols / KQ + 1) / 2 * 17 * 64;
    if (t == GGML_TYPE_Q4_K && n_cols % KQ_K == 0) return (size_t)(n_cols / KQ_K) * 36 * 64;
    if (t == GGML_TYPE_Q4_0 && n_cols % KQ == 0)
        return (size_t)(n_cols / KQ + 1) / 2 * KT_QZ_VECS(KT_Q4_0) * 64;
    if (t == GGML_TYPE_Q5_0 && n_cols % KQ == 0)
        return (size_t)(n_cols / KQ + 1) / 2 * KT_QZ_VECS(KT_Q5_0) * 64;
    if (t == GGML_TYPE_Q6_K && n_cols % KQ_K == 0) return (size_t)(n_cols / KQ_K) * KT_Q6_VECS * 64;
    return 0;
}

static size_t kt_pack_bytes(enum ggml_type t, int n_rows, int n_cols)
{
    size_t gb = kt_group_bytes(t, n_cols);
    if (!gb || n_rows <= 0 || n_cols <= 0) return 0;
    size_t ng = ((size_t)n_rows + KT_ROWS - 1) / KT_ROWS;
    return ng > SIZE_MAX / gb ? 0 : ng * gb;
}

/* The unpacked kernels' loads and transpositions, stored (non-temporal: the
 * copy is far larger than the caches and read back only by the kernels). */
KX_TGT static void kt_pack(enum ggml_type t, const uint8_t *W, int n_rows, int n_cols, uint8_t *dst)
{
    size_t rb = ggml_row_bytes(t, (uint64_t)n_cols), gb = kt_group_bytes(t, n_cols);
    int ng = (n_rows + KT_ROWS - 1) / KT_ROWS;
    for (int g = 0; g < ng; g++) {
        uint8_t *o = dst + (size_t)g * gb;
        const uint8_t *rp[KT_ROWS];
        for (int i = 0; i < KT_ROWS; i++)
            rp[i] = W + (size_t)(g * KT_ROWS + i < n_rows ? g * KT_ROWS + i : n_rows - 1) * rb;
        if (t == GGML_TYPE_Q8_0) {
            const int nb = n_cols / KQ;
            for (int p = 0; p < (nb + 1) / 2; p++) {
                const size_t off = (size_t)p * 2 * KB_Q8_0;
                const int two = 2 * p + 1 < nb;
                __m512i r[KT_ROWS], v[16];
                uint32_t c16[KT_ROWS];
                KT_UNROLL
                for (int i = 0; i < KT_ROWS; i++) {
                    r[i] =
                        two ? _mm512_loadu_si512((const void *)(rp[i] + off))
                            : _mm512_maskz_loadu_epi8(((__mmask64)1 << KB_Q8_0) - 1, rp[i] + off);
                    c16[i] = two ? kern_ld32(rp[i] + off + 64) : 0;
                }
                kt_transpose16(r, v);
                uint8_t *po = o + (size_t)p * 17 * 64;
                KT_UNROLL
                for (int k = 0; k < 16; k++)
                    _mm512_stream_si512((void *)(po + 64 * k), v[k]);
                _mm512_stream_si512((void *)(po + 64 * 16), _mm512_loadu_si512((const void *)c16));
            }
        } else if (t == GGML_TYPE_Q4_0 || t == GGML_TYPE_Q5_0) {
            const int q5 = t == GGML_TYPE_Q5_0, nv = q5 ? KT_QZ_VECS(KT_Q5_0) : KT_QZ_VECS(KT_Q4_0);
            const size_t bb = q5 ? KB_Q5_0 : KB_Q4_0;
            const int nb = n_cols / KQ;
            for (int p = 0; p < (nb + 1) / 2; p++) {
                uint8_t *pp = o + (size_t)p * (size_t)nv * 64;
                __m512i d2 = _mm512_setzero_si512();
                for (int e = 0; e < 2; e++) {
                    __m512i v[8] = {0};
                    if (2 * p + e < nb) kt_qz_window(rp, (size_t)(2 * p + e) * bb, bb, v);
                    __m512i d = _mm512_srli_epi32(v[q5 ? 2 : 3], 16);
                    d2 = _mm512_or_si512(d2, e ? _mm512_slli_epi32(d, 16) : d);
                    if (q5)
                        _mm512_stream_si512((void *)(pp + 64 * (1 + e)), kt_q5_qh_transpose(v[3]));
                    uint8_t *pq = pp + 64 * (q5 ? 3 : 1) + 256 * e;
                    for (int k = 0; k < 4; k++)
                        _mm512_stream_si512((void *)(pq + 64 * k), v[4 + k]);
                }
                _mm512_stream_si512((void *)pp, d2);
            }
        } else if (t == GGML_TYPE_Q6_K) {
            for (int b = 0; b < n_cols / KQ_K; b++) {
                const size_t off = (size_t)b * KB_Q6_K;
                uint8_t *pb = o + (size_t)b * KT_Q6_VECS * 64;
                __m512i h[4];
                kt_header16(rp, off + 192, h);
                KT_UNROLL
                for (int k = 0; k < 4; k++)
                    _mm512_stream_si512((void *)(pb + 64 * k), h[k]);
                _mm512_stream_si512((void *)(pb + 64 * 4), kt_q6_d(rp, off));
                /* ql chunks 0-3, then qh chunks 0-1 */
                KT_UNROLL
                for (int c = 0; c < 6; c++) {
                    __m512i q[8];
                    kt_transpose8(rp, off + 32 * (size_t)c, q);
                    KT_UNROLL
                    for (int m = 0; m < 8; m++)
                        _mm512_stream_si512((void *)(pb + 64 * (5 + 8 * c + m)), q[m]);
                }
            }
        } else {
            for (int b = 0; b < n_cols / KQ_K; b++) {
                const size_t off = (size_t)b * KB_Q4_K;
                uint8_t *pb = o + (size_t)b * 36 * 64;
                __m512i h[4];
                kt_header16(rp, off, h);
                KT_UNROLL
                for (int k = 0; k < 4; k++)
                    _mm512_stream_si512((void *)(pb + 64 * k), h[k]);
                KT_UNROLL
                for (int c = 0; c < 4; c++) {
                    __m512i q[8];
                    kt_transpose8(rp, off + 16 + 32 * (size_t)c, q);
                    KT_UNROLL
                    for (int m = 0; m < 8; m++)
                        _mm512_stream_si512((void *)(pb + 64 * (4 + 8 * c + m)), q[m]);
                }
            }
        }
    }
    _mm_sfence();
}

static void kt_q8_0_pmm(const uint8_t *pk, int n, const uint8_t *p, size_t ps, int nt, float *y,
                        int ys, int r0, int r1)
{
    kt_drive(kt_q8_0, NULL, 0, pk, kt_group_bytes(GGML_TYPE_Q8_0, n), n, p, ps, nt, y, ys, r0, r1);
}

static void kt_q4_K_pmm(const uint8_t *pk, int n, const uint8_t *p, size_t ps, int nt, float *y,
                        int ys, int r0, int r1)
{
    kt_drive(kt_q4_K, NULL, 0, pk, kt_group_bytes(GGML_TYPE_Q4_K, n), n, p, ps, nt, y, ys, r0, r1);
}

/* ---- prepared inputs ------------------------------------------------------
 * kernels.c's prep_q8k, 16 elements per vector: the same bytes. max over |x|
 * with the NaN-ignoring operand order of fmaxf (vmaxps returns its second
 * operand when either is NaN), then one rounding of x * id under the current
 * mode as lrintf does (a NaN converts to INT_MIN, as lrintf's LONG_MIN, and
 * clamps to -127 either way). A group of 16 is one vector, so its sum is one
 * reduction; the sums of 32 follow from those. */
KX_TGT static void kt_prep_q8k(const float *x, int n, uint8_t *out)
{
    float *d = (float *)(out + n);
    int16_t *bsum = (int16_t *)(d + n / KQ_K);
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    for (int b = 0; b < n / KQ_K; b++) {
        const float *xb = x + (size_t)b * KQ_K;
        __m512 m = _mm512_setzero_ps();
        for (int i = 0; i < KQ_K; i += 16)
            m = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(xb + i)), m);
        float amax = _mm512_reduce_max_ps(m);
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        const __m512 vid = _mm512_set1_ps(id);
        int32_t s[KQ_K / 16];
        for (int g = 0; g < KQ_K / 16; g++) {
            __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + 16 * g), vid));
            q = _mm512_min_epi32(_mm512_max_epi32(q, lo), hi);
            _mm_storeu_si128((__m128i *)(out + (size_t)b * KQ_K + 16 * g), _mm512_cvtepi32_epi8(q));
            s[g] = _mm512_reduce_add_epi32(q);
        }
        for (int g = 0; g < KQ_K / 16; g++) {
            int16_t v = (int16_t)s[g];
            memcpy(bsum + (size_t)b * 16 + g, &v, 2);
        }
        for (int g = 0; g < KQ_K / 32; g++) {
            int16_t v = (int16_t)(s[2 * g] + s[2 * g + 1]);
            memcpy(bsum + n / 16 + (size_t)b * 8 + g, &v, 2);
        }
        float db = amax / 127.0f;
        memcpy(d + b, &db, 4);
    }
}

/* kernels.c's prep_q8 for Q8_0/Q4_0/Q5_0 inputs: each block of 32 is two
 * vectors, with kt_prep_q8k's max and rounding (the same bytes). */
KX_TGT static void kt_prep_q8(const float *x, int n, int z, uint8_t *out)
{
    float *d = (float *)(out + n);
    int32_t *sum = (int32_t *)(d + n / KQ);
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    for (int b = 0; b < n / KQ; b++) {
        __m512 x0 = _mm512_loadu_ps(x + (size_t)b * KQ),
               x1 = _mm512_loadu_ps(x + (size_t)b * KQ + 16);
        __m512 m = _mm512_max_ps(_mm512_abs_ps(x0), _mm512_setzero_ps());
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x1), m));
        const __m512 vid = _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
        __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, vid));
        __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, vid));
        q0 = _mm512_min_epi32(_mm512_max_epi32(q0, lo), hi);
        q1 = _mm512_min_epi32(_mm512_max_epi32(q1, lo), hi);
        _mm_storeu_si128((__m128i *)(out + (size_t)b * KQ), _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(out + (size_t)b * KQ + 16), _mm512_cvtepi32_epi8(q1));
        int32_t s = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        float db = amax / 127.0f;
        memcpy(sum + b, &s, 4);
        memcpy(d + b, &db, 4);
    }
    kern_prep_q8_tail(n, z, out);
}

static void kt_q4_0_pmm(const uint8_t *pk, int n, const uint8_t *p, size_t ps, int nt, float *y,
                        int ys, int r0, int r1)
{
    kt_drive(kt_q4_0, NULL, 0, pk, kt_group_bytes(GGML_TYPE_Q4_0, n), n, p, ps, nt, y, ys, r0, r1);
}

static void kt_q5_0_pmm(const uint8_t *pk, int n, const uint8_t *p, size_t ps, int nt, float *y,
                        int ys, int r0, int r1)
{
    kt_drive(kt_q5_0, NULL, 0, pk, kt_group_bytes(GGML_TYPE_Q5_0, n), n, p, ps, nt, y, ys, r0, r1);
}

static void kt_q6_K_pmm(const uint8_t *pk, int n, const uint8_t *p, size_t ps, int nt, float *y,
                        int ys, int r0, int r1)
{
    kt_drive(kt_q6_K, NULL, 0, pk, kt_group_bytes(GGML_TYPE_Q6_K, n), n, p, ps, nt, y, ys, r0, r1);
}

void kern_ops_avx512(struct kern_ops *ops)
{
    ops->name = "avx512";
    kx_fill(ops);
    ops->mm[GGML_TYPE_Q8_0] = kt_q8_0_mm;
    ops->mm[GGML_TYPE_Q4_0] = kt_q4_0_mm;
    ops->mm[GGML_TYPE_Q5_0] = kt_q5_0_mm;
    ops->pmm[GGML_TYPE_Q4_0] = kt_q4_0_pmm;
    ops->pmm[GGML_TYPE_Q5_0] = kt_q5_0_pmm;
    ops->mm[GGML_TYPE_Q4_K] = kt_q4_K_mm;
    ops->pmm[GGML_TYPE_Q8_0] = kt_q8_0_pmm;
    ops->pmm[GGML_TYPE_Q4_K] = kt_q4_K_pmm;
    ops->pack_bytes = kt_pack_bytes;
    ops->pack = kt_pack;
    ops->prep_q8k = kt_prep_q8k;
    ops->prep_q8 = kt_prep_q8;
    ops->mm[GGML_TYPE_Q6_K] = kt_q6_K_mm;
    ops->pmm[GGML_TYPE_Q6_K] = kt_q6_K_pmm;
}

#else

void kern_ops_avx512(struct kern_ops *ops)
{
    (void)ops;
}

#endif
