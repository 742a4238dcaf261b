/* libFuzzer target for the GGUF reader: any byte string must either open
 * cleanly or be refused with a message, never read out of bounds. Everything
 * an opened file exposes is touched so ASan sees a bad index or length. */
#include "engine/gguf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t sink;

static void touch(const struct gguf *g)
{
    struct buf b = {0};
    for (int64_t i = 0; i < gguf_n_kv(g); i++) {
        size_t kl;
        const char *k = gguf_key_name(g, i, &kl);
        char key[128];
        if (kl < sizeof key) {
            memcpy(key, k, kl);
            key[kl] = 0;
            uint64_t n = 0;
            enum gguf_vtype et;
            if (!gguf_get_arr(g, key, &et, &n) && n) {
                const char *s;
                size_t sl;
                int32_t iv;
                float fv;
                gguf_arr_str(g, key, n - 1, &s, &sl);
                gguf_arr_i32(g, key, n - 1, &iv);
                gguf_arr_f32(g, key, n - 1, &fv);
            }
        }
        buf_reset(&b);
        gguf_format_value(g, i, 64, &b);
    }
    buf_free(&b);
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(g, i);
        const uint8_t *p = t->data;
        sink ^= p[0] ^ p[t->nbytes - 1];
        if (gguf_find_tensor(g, t->name) == NULL) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exactly-sized copy so reads past the end are caught */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    struct gguf *g = NULL;
    struct thaw_err err = {0};
    if (gguf_open_memory(copy, size, &g, &err) == 0)
        touch(g);
    else if (!err.msg[0])
        abort(); /* every refusal must say why */
    gguf_close(g);
    free(copy);
    return 0;
}
