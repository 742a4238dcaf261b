/* NEON matmul kernels for aarch64 CPUs with the ARMv8.2 dot product (SDOT:
 * 16 byte products summed into 4 int32 lanes in one instruction). Compiled
 * with a per-function target attribute, never a global -march flag, so the
 * binary runs on any ARMv8-A core and this code runs only where the kernel
 * reports HWCAP_ASIMDDP (kernels.c). */
#include "engine/kernels_int.h"

/* GCC takes the feature as a function attribute; clang (up to 15 at least)
 * only offers vdotq_s32 when the whole build targets it. */
#if defined(__aarch64__) && (defined(__ARM_FEATURE_DOTPROD) || !defined(__clang__))

#include <arm_neon.h>

#if defined(__ARM_FEATURE_DOTPROD)
#define KN_TGT
#else
#define KN_TGT __attribute__((target("arch=armv8.2-a+dotprod")))
#endif
#define KN_DOT(a, x, y) vdotq_s32((a), (x), (y))
#include "engine/kernels_neon.h"

bool kern_ops_neon_dot(struct kern_ops *ops)
{
    ops->name = "neon-dotprod";
    kn_fill(ops);
    return true;
}

#else

bool kern_ops_neon_dot(struct kern_ops *ops)
{
    (void)ops;
    return false;
}

#endif
