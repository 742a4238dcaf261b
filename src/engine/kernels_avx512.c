/* AVX-512 (F, BW, VL, VNNI) matmul kernels: the shared x86 kernels with the
 * byte and word dot products fused by VNNI. Selected at run time from CPUID;
 * per-function target attributes keep the rest of the binary portable. */
#include "engine/kernels_int.h"

#if defined(__x86_64__)

#define KX_TGT           __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define KX_DOT(a, u, s)  _mm256_dpbusd_epi32((a), (u), (s))
#define KX_DOTW(a, p, w) _mm256_dpwssd_epi32((a), (p), (w))

#include "engine/kernels_x86.h"

void kern_ops_avx512(struct kern_ops *ops)
{
    ops->name = "avx512";
    kx_fill(ops);
}

#else

void kern_ops_avx512(struct kern_ops *ops)
{
    (void)ops;
}

#endif
