/* Weight types and the numeric kernels of the engine: block layouts,
 * (de)quantisation, and matrix products over quantised weights, with SIMD
 * paths (AVX2, AVX-512, NEON) chosen at run time from CPUID and a portable C
 * path every SIMD path is tested against. Internal to src/engine. */
#ifndef THAW_ENGINE_KERNELS_H
#define THAW_ENGINE_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Values match ggml's type ids as stored in GGUF files. */
enum ggml_type {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6,
    GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14,
    GGML_TYPE_Q8_K = 15,
    GGML_TYPE_BF16 = 30,
};

/* Facts about a type id read from a file: whether this engine can compute
 * with it, its name, elements per block and bytes per block. For an unknown
 * id, supported is false and name is NULL. */
bool ggml_type_supported(uint32_t type);
const char *ggml_type_name(uint32_t type);
int ggml_type_block_elems(enum ggml_type t);
size_t ggml_type_block_bytes(enum ggml_type t);
/* Bytes of one row of n elements; n must be a multiple of the block size
 * (0 is returned when it is not, or on overflow). */
size_t ggml_row_bytes(enum ggml_type t, uint64_t n);

/* Converts n elements (a multiple of the block size) of type t to f32. */
void kern_dequantize(enum ggml_type t, const void *src, float *dst, int64_t n);
/* Converts n f32 values to type t (reference quantisers, used by the writer
 * and tests; need not be fast). */
void kern_quantize(enum ggml_type t, const float *src, void *dst, int64_t n);

float kern_fp16_to_fp32(uint16_t h);
uint16_t kern_fp32_to_fp16(float f);
float kern_bf16_to_fp32(uint16_t h);
uint16_t kern_fp32_to_bf16(float f);

/* Matrix products y = W x for a weight matrix W of n_rows rows of n_cols
 * elements of type t (row r at (char *)W + r * ggml_row_bytes(t, n_cols)),
 * applied to n_tok input vectors x of n_cols floats.
 *
 * Use in two steps so the input is converted once and shared by threads:
 *   kern_input_prepare() converts x into what the dot products for t want
 *   (e.g. Q8 blocks) in a buffer of kern_input_bytes() bytes;
 *   kern_matmul() then computes rows [r0, r1) for every token:
 *   y[tok * y_stride + r] = dot(W row r, x row tok). Different threads call
 *   kern_matmul on disjoint row ranges with the same prepared input.
 * The prepared buffer must be at least 4-byte aligned (malloc's is); 64-byte
 * alignment is fastest. */
size_t kern_input_bytes(enum ggml_type t, int n_tok, int n_cols);
void kern_input_prepare(enum ggml_type t, const float *x, int n_tok, int n_cols, void *prepared);
void kern_matmul(enum ggml_type t, const void *W, int n_cols, const void *prepared, int n_tok,
                 float *y, int y_stride, int r0, int r1);

/* A packed copy of a weight matrix, made once at load, in the layout the
 * best SIMD level here reads fastest (AVX-512: Q8_0 and Q4_K with 16 rows
 * interleaved, so a row group is one stream of memory; about the matrix's
 * own size). kern_pack_bytes() is its size, 0 when there is no packed layout
 * for t on this CPU; kern_pack() writes it into a 64-byte aligned buffer.
 * kern_matmul_packed() computes exactly what kern_matmul(W) computes (bit
 * for bit: both equal the portable path for these types), reading the packed
 * copy when the level in use has that layout and W otherwise (packed may be
 * NULL). */
size_t kern_pack_bytes(enum ggml_type t, int n_rows, int n_cols);
void kern_pack(enum ggml_type t, const void *W, int n_rows, int n_cols, void *packed);
void kern_matmul_packed(enum ggml_type t, const void *W, const void *packed, int n_cols,
                        const void *prepared, int n_tok, float *y, int y_stride, int r0, int r1);

/* Which SIMD level the kernels use: "avx512", "avx2", "neon-dotprod", "neon"
 * or "portable". kern_force_portable(true) makes every later call use the
 * portable C path (for tests comparing paths). */
const char *kern_simd_level(void);
void kern_force_portable(bool on);
/* Makes every later call use the named level ("avx512", "avx2",
 * "neon-dotprod", "neon", "portable") where this CPU has it, or the best
 * level again for NULL (for tests and benchmarks). Returns 0, or -1 when the
 * level is unknown or not available here, changing nothing. */
int kern_force_level(const char *name);
/* F32/F16/BF16 products with many tokens go through OpenBLAS sgemm (faster
 * there); kern_use_blas(false) keeps them on our kernels (for benchmarks). */
void kern_use_blas(bool on);

#endif
