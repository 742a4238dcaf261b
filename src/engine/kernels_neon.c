/* NEON matmul kernels for every aarch64 CPU (Advanced SIMD is part of
 * ARMv8-A): the byte dot products widen through int16 (SMULL, SMLAL2,
 * SADALP). CPUs with the ARMv8.2 dot product get kernels_neon_dot.c. */
#include "engine/kernels_int.h"

#if defined(__aarch64__)

#include <arm_neon.h>

/* Two products meet in int16, which holds them: one operand is a prepared
 * input (|x| <= 127), the other a weight (>= -128), so |pair| <= 32512. */
static inline __attribute__((always_inline)) int32x4_t kn_dot_plain(int32x4_t a, int8x16_t x,
                                                                    int8x16_t y)
{
    int16x8_t p = vmull_s8(vget_low_s8(x), vget_low_s8(y));
    p = vmlal_high_s8(p, x, y);
    return vpadalq_s16(a, p);
}

#define KN_TGT
#define KN_DOT(a, x, y) kn_dot_plain((a), (x), (y))
#include "engine/kernels_neon.h"

void kern_ops_neon(struct kern_ops *ops)
{
    ops->name = "neon";
    kn_fill(ops);
}

#else

void kern_ops_neon(struct kern_ops *ops)
{
    (void)ops;
}

#endif
