/* libFuzzer target: lines an exec function writes to the node. A hostile
 * function controls every byte of them. */
#include "runtime/runtime.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    struct exec_msg msg;
    if (runtime_exec_parse((const char *)data, size, &msg, NULL) == 0) free(msg.payload);
    struct buf b = {0};
    runtime_exec_encode(&b, 42, (const char *)data, size, size & 1);
    buf_free(&b);
    return 0;
}
