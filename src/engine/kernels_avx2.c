/* AVX2 + FMA + F16C matmul kernels (x86-64 without AVX-512 VNNI). Compiled
 * with per-function target attributes, never global -m flags, so the binary
 * runs on any x86-64 and this code only runs where CPUID says it may. */
#include "engine/kernels_int.h"

#if defined(__x86_64__)

#define KX_TGT __attribute__((target("avx2,fma,f16c")))
/* maddubs makes int16 pair sums (callers keep them in range), madd widens */
#define KX_DOT(a, u, s)                                                                            \
    _mm256_add_epi32((a), _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), _mm256_set1_epi16(1)))
#define KX_DOTW(a, p, w) _mm256_add_epi32((a), _mm256_madd_epi16((p), (w)))

#include "engine/kernels_x86.h"

void kern_ops_avx2(struct kern_ops *ops)
{
    ops->name = "avx2";
    kx_fill(ops);
}

#else

void kern_ops_avx2(struct kern_ops *ops)
{
    (void)ops;
}

#endif
