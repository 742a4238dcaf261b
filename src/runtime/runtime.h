/* Runtimes: what an instance speaks. The exec runtime frames requests and
 * answers as JSON lines on the child's stdin/stdout:
 *   node -> child: {"id":N,"input":<json>}            (plus "stream":true when streaming)
 *   child -> node: {"ready":true}                     once, after its own initialisation
 *                  {"id":N,"output":<json>}           final answer
 *                  {"id":N,"error":"message"}         final failure
 *                  {"id":N,"chunk":<json>}            streamed piece, before the final line */
#ifndef THAW_RUNTIME_H
#define THAW_RUNTIME_H

#include "base/base.h"

#include <stdbool.h>
#include <stdint.h>

/* Appends one request line. input_json must be compact JSON (no newline). */
int runtime_exec_encode(struct buf *out, uint64_t id, const char *input_json, size_t input_len,
                        bool stream);

enum exec_msg_kind { EXEC_MSG_READY, EXEC_MSG_OUTPUT, EXEC_MSG_ERROR, EXEC_MSG_CHUNK };

struct exec_msg {
    enum exec_msg_kind kind;
    uint64_t id;
    char *payload; /* compact JSON for OUTPUT/CHUNK, plain text for ERROR; caller frees */
};

/* Parses one line (without its newline). Returns 0, or THAW_EINVAL with err
 * naming what is wrong when the line breaks the protocol. */
int runtime_exec_parse(const char *line, size_t len, struct exec_msg *msg, struct thaw_err *err);

#endif
