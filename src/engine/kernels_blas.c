/* Float-weight (F32, F16, BF16) matrix-matrix products through OpenBLAS's
 * sgemm, used from kern_matmul where bench_kernels measured it faster than
 * our kernels: enough tokens for a real GEMM. Each engine thread calls sgemm
 * on its own rows, so OpenBLAS itself runs single-threaded. */
#include "engine/kernels_int.h"

#if !defined(THAW_BLAS)

/* Built without OpenBLAS (-DTHAW_BLAS=OFF, as the aarch64 cross build is):
 * our own kernels do every product. */
bool kern_blas_matmul(enum ggml_type t, const uint8_t *W, size_t row_bytes, int n_cols,
                      const uint8_t *prep, size_t prep_stride, int n_tok, float *y, int y_stride,
                      int r0, int r1)
{
    return false;
}

#else

#include <cblas.h>
#include <pthread.h>
#include <stdlib.h>

/* Token counts from which sgemm wins (bench_kernels, 5632x2048, 1 and 2
 * threads): our F32 kernels are level with it at 8 tokens and 1.4x slower at
 * 32; F16/BF16 first pay a scalar conversion to f32, which 32 tokens do not
 * repay and 512 do (1.7x faster); 128 is between, on the safe side. */
#define BLAS_MIN_TOK_F32 16
#define BLAS_MIN_TOK_F16 128
/* Rows converted to f32 per sgemm call for F16/BF16 weights. */
#define BLAS_CHUNK_ROWS  128

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

static void blas_init(void)
{
    openblas_set_num_threads(1);
}

static void to_f32(enum ggml_type t, const uint8_t *src, float *dst, size_t n)
{
    if (t == GGML_TYPE_BF16) {
        for (size_t i = 0; i < n; i++)
            dst[i] = kern_bf16_to_fp32(kern_ld16(src + 2 * i));
    } else {
        for (size_t i = 0; i < n; i++)
            dst[i] = kern_f16_table_(kern_ld16(src + 2 * i));
    }
}

bool kern_blas_matmul(enum ggml_type t, const uint8_t *W, size_t row_bytes, int n_cols,
                      const uint8_t *prep, size_t prep_stride, int n_tok, float *y, int y_stride,
                      int r0, int r1)
{
    bool f32 = t == GGML_TYPE_F32;
    if (!f32 && t != GGML_TYPE_F16 && t != GGML_TYPE_BF16) return false;
    if (n_tok < (f32 ? BLAS_MIN_TOK_F32 : BLAS_MIN_TOK_F16)) return false;
    pthread_once(&blas_once, blas_init);
    const float *x = (const float *)prep;
    int lda = (int)(prep_stride / 4);
    if (f32) {
        /* y[tok][r0..r1) = x[tok] . W[r] for all tokens at once */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n_tok, r1 - r0, n_cols, 1.0f, x, lda,
                    (const float *)(W + (size_t)r0 * row_bytes), n_cols, 0.0f, y + r0, y_stride);
        return true;
    }
    int chunk = r1 - r0 < BLAS_CHUNK_ROWS ? r1 - r0 : BLAS_CHUNK_ROWS;
    float *wf = malloc(sizeof(float) * (size_t)chunk * (size_t)n_cols);
    if (!wf) return false; /* our own kernels need no memory */
    for (int r = r0; r < r1; r += chunk) {
        int nr = r1 - r < chunk ? r1 - r : chunk;
        to_f32(t, W + (size_t)r * row_bytes, wf, (size_t)nr * (size_t)n_cols);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n_tok, nr, n_cols, 1.0f, x, lda, wf,
                    n_cols, 0.0f, y + r, y_stride);
    }
    free(wf);
    return true;
}

#endif
