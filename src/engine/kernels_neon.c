/* neon matmul kernels (placeholder until the SIMD kernels land: every entry
 * stays on the portable path). */
#include "engine/kernels_int.h"

void kern_ops_neon(struct kern_ops *ops)
{
    (void)ops;
}
