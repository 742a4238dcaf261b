/* libFuzzer target for the model loader on top of the GGUF reader: any bytes
 * that open as GGUF are handed to engine_model_from_gguf; a file that loads
 * runs one forward step on a small context. Nothing may crash or read out of
 * bounds, whatever the metadata says. */
#include "engine/engine.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    struct gguf *g = NULL;
    struct engine_model *m = NULL;
    struct thaw_err err = {0};
    if (gguf_open_memory(copy, size, &g, &err) == 0 && engine_model_from_gguf(g, &m, &err) == 0) {
        struct engine_ctx *c = NULL;
        struct engine_ctx_params cp = {.n_ctx = 4, .n_batch = 2, .n_threads = 1};
        if (engine_ctx_new(m, &cp, &c, &err) == 0) {
            struct engine_batch_entry b[2] = {{0, 0, 0, false}, {0, 1, 1, true}};
            if (engine_model_info(m)->n_vocab >= 2 && engine_forward(c, b, 2, &err) == 0 &&
                !engine_logits(c, 0))
                abort();
        }
        engine_ctx_free(c);
    }
    engine_model_free(m); /* closes g when the model took it */
    free(copy);
    return 0;
}
