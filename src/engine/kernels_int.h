/* Private to the kernels*.c files: byte layouts of the GGUF blocks and of
 * prepared inputs, and the table of matmul kernels that each SIMD level
 * fills in. Nothing outside the kernels includes this. */
#ifndef THAW_ENGINE_KERNELS_INT_H
#define THAW_ENGINE_KERNELS_INT_H

#include "engine/kernels.h"

#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF block layouts are little-endian; big-endian hosts are not supported"
#endif

/* Block sizes in elements. */
#define KQ   32
#define KQ_K 256

/* GGUF block layouts, by byte offset (weights come from an mmap that may not
 * align the u16 fields, so code reads them through kern_ld16):
 *   q4_0 (18): f16 d | u8 qs[16]            x[j] = (qs[j]&15)-8, x[j+16] = (qs[j]>>4)-8, times d
 *   q4_1 (20): f16 d | f16 m | u8 qs[16]    x = q*d + m, same element order
 *   q5_0 (22): f16 d | u32 qh | u8 qs[16]   5th bit of x[j] is qh bit j, of x[j+16] bit j+16; minus
 * 16 q5_1 (24): f16 d | f16 m | u32 qh | u8 qs[16] q8_0 (34): f16 d | i8 qs[32] q4_K (144): f16 d |
 * f16 dmin | u8 scales[12] (8 x 6-bit scale, 8 x 6-bit min) | u8 qs[128] each 64 elements: 32 low
 * nibbles (sub-block 2i) then 32 high nibbles (2i+1) of 32 bytes q5_K (176): f16 d | f16 dmin | u8
 * scales[12] | u8 qh[32] | u8 qs[128] q6_K (210): u8 ql[128] | u8 qh[64] | i8 scales[16] | f16 d;
 * one scale per 16 elements q8_K (292): f32 d | i8 qs[256] | i16 bsums[16] */
enum {
    KB_Q4_0 = 18,
    KB_Q4_1 = 20,
    KB_Q5_0 = 22,
    KB_Q5_1 = 24,
    KB_Q8_0 = 34,
    KB_Q8_1 = 36,
    KB_Q2_K = 84,
    KB_Q3_K = 110,
    KB_Q4_K = 144,
    KB_Q5_K = 176,
    KB_Q6_K = 210,
    KB_Q8_K = 292,
};

static inline uint16_t kern_ld16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static inline uint32_t kern_ld32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Unpacks the j-th 6-bit scale and min of a q4_K/q5_K block (j in 0..7). */
static inline void kern_scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

float kern_f16_table_(uint16_t h);

/* Prepared inputs. Each token's row starts at a multiple of 64 bytes from
 * the buffer start (the buffer itself must be at least 4-byte aligned):
 *   KPREP_F32: float x[n]
 *   KPREP_Q8:  i8 qs[n] | f32 d[n/32] | i32 sum[n/32]  (per 32: x ~ d*qs, sum = sum of qs)
 *              | i32 zsum[n/32] (-z * sum, z the weight type's zero point: kern_zero_point)
 *   KPREP_Q8K: i8 qs[n] | f32 d[n/256] | i16 bsum[n/16] (sums of 16 qs) | i16 bsum32[n/32]
 *              (sums of 32: the AVX-512 Q4_K kernel takes two sub-blocks' mins per product)
 * The integer sums let kernels fold a weight's zero point or min into one
 * multiply per block. */
enum kern_prep { KPREP_NONE, KPREP_F32, KPREP_Q8, KPREP_Q8K };

enum kern_prep kern_prep_kind(enum ggml_type t);
size_t kern_prep_row_bytes(enum ggml_type t, int n_cols);
/* The zero point z of a 32-element block type whose kernels take weights as
 * unsigned bytes: q8_0's w+128 (z 128), q4_0 (8), q5_0 (16); 0 for others. */
static inline int kern_zero_point(enum ggml_type t)
{
    return t == GGML_TYPE_Q8_0 ? 128 : t == GGML_TYPE_Q4_0 ? 8 : t == GGML_TYPE_Q5_0 ? 16 : 0;
}

/* The end of a Q8 preparation whose blocks (values, scales d, sums) are
 * written: the zero-point sums, from those (kernels.c). */
void kern_prep_q8_tail(int n, int z, uint8_t *out);

/* Computes rows [r0, r1) of y = W x for n_tok prepared rows. */
typedef void (*kern_mm_fn)(const uint8_t *W, size_t row_bytes, int n_cols, const uint8_t *prep,
                           size_t prep_stride, int n_tok, float *y, int y_stride, int r0, int r1);

/* Computes rows [r0, r1) from a matrix packed by the level's pack(). */
typedef void (*kern_pmm_fn)(const uint8_t *packed, int n_cols, const uint8_t *prep,
                            size_t prep_stride, int n_tok, float *y, int y_stride, int r0, int r1);

#define KERN_N_TYPES 31

struct kern_ops {
    const char *name;
    kern_mm_fn mm[KERN_N_TYPES];
    /* a packed layout (kernels.h, kern_pack): only levels that have one */
    kern_pmm_fn pmm[KERN_N_TYPES];
    size_t (*pack_bytes)(enum ggml_type t, int n_rows, int n_cols);
    void (*pack)(enum ggml_type t, const uint8_t *W, int n_rows, int n_cols, uint8_t *dst);
    /* one KPREP_Q8K row, the same bytes as the portable C (NULL: that C); with
     * several tokens per step the scalar loop cost about a sixth of the
     * matrix products' time */
    void (*prep_q8k)(const float *x, int n, uint8_t *out);
    /* the same bytes as kernels.c's prep_q8 (Q8_0/Q4_0/Q5_0 inputs), or NULL */
    void (*prep_q8)(const float *x, int n, int z, uint8_t *out);
};

/* F32/F16/BF16 products through OpenBLAS sgemm when n_tok is large enough
 * for it to win; returns false (having done nothing) otherwise. */
bool kern_blas_matmul(enum ggml_type t, const uint8_t *W, size_t row_bytes, int n_cols,
                      const uint8_t *prep, size_t prep_stride, int n_tok, float *y, int y_stride,
                      int r0, int r1);

/* The SIMD levels' matrix-matrix products visit a row for a tile of tokens
 * at a time, over chunks of tokens whose prepared inputs stay in L2 while
 * rows stream: the same loop for every level, around its own tile kernel. */
#define KERN_TILE   4
#define KERN_TCHUNK 64
typedef void (*kern_tile_fn)(const uint8_t *row, const uint8_t *const *xp, int n, float *out,
                             int nt);

static inline void kern_drive_tiles(kern_tile_fn fn, const uint8_t *W, size_t row_bytes, int n,
                                    const uint8_t *prep, size_t ps, int n_tok, float *y, int ys,
                                    int r0, int r1)
{
    for (int c0 = 0; c0 < n_tok; c0 += KERN_TCHUNK) {
        int c1 = n_tok - c0 < KERN_TCHUNK ? n_tok : c0 + KERN_TCHUNK;
        for (int r = r0; r < r1; r++) {
            const uint8_t *row = W + (size_t)r * row_bytes;
            for (int t0 = c0; t0 < c1; t0 += KERN_TILE) {
                int nt = c1 - t0 < KERN_TILE ? c1 - t0 : KERN_TILE;
                const uint8_t *xp[KERN_TILE];
                float out[KERN_TILE];
                for (int i = 0; i < nt; i++)
                    xp[i] = prep + (size_t)(t0 + i) * ps;
                fn(row, xp, n, out, nt);
                for (int i = 0; i < nt; i++)
                    y[(size_t)(t0 + i) * (size_t)ys + (size_t)r] = out[i];
            }
        }
    }
}

/* Each level fills the entries it implements and leaves the rest alone. */
void kern_ops_portable(struct kern_ops *ops);
void kern_ops_avx2(struct kern_ops *ops);
void kern_ops_avx512(struct kern_ops *ops);
void kern_ops_neon(struct kern_ops *ops);
/* Returns false when this build has no dot-product kernels (clang without a
 * global -march that has them), leaving ops alone. */
bool kern_ops_neon_dot(struct kern_ops *ops);

#endif
