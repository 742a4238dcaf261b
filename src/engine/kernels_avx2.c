/* avx2 matmul kernels (placeholder until the SIMD kernels land: every entry
 * stays on the portable path). */
#include "engine/kernels_int.h"

void kern_ops_avx2(struct kern_ops *ops)
{
    (void)ops;
}
