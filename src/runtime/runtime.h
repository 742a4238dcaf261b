/* Runtimes: what an instance speaks. The exec runtime frames requests and
 * answers as JSON lines on the child's stdin/stdout:
 *   node -> child: {"id":N,"input":<json>}            (plus "stream":true when streaming)
 *   child -> node: {"ready":true}                     once, after its own initialisation
 *                  {"id":N,"output":<json>}           final answer
 *                  {"id":N,"error":"message"}         final failure, optionally with
 *                      "status":400..599 and "code":"snake_case" (one of the known codes)
 *                  {"id":N,"chunk":<json>}            streamed piece, before the final line */
#ifndef THAW_RUNTIME_H
#define THAW_RUNTIME_H

#include "base/base.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Appends one request line. input_json must be compact JSON (no newline). */
int runtime_exec_encode(struct buf *out, uint64_t id, const char *input_json, size_t input_len,
                        bool stream);

enum exec_msg_kind { EXEC_MSG_READY, EXEC_MSG_OUTPUT, EXEC_MSG_ERROR, EXEC_MSG_CHUNK };

struct exec_msg {
    enum exec_msg_kind kind;
    uint64_t id;
    char *payload;    /* compact JSON for OUTPUT/CHUNK, plain text for ERROR; caller frees */
    int status;       /* ERROR: the HTTP status the function asked for (400..599), 0: none */
    const char *code; /* ERROR: its code when it is a known one (a static string), or NULL */
};

/* The error codes a function may give with an error line (static strings
 * can travel with the invocation's failure): returns the known code equal
 * to code, or NULL. */
const char *runtime_error_code(const char *code);

/* Parses one line (without its newline). Returns 0, or THAW_EINVAL with err
 * naming what is wrong when the line breaks the protocol. */
int runtime_exec_parse(const char *line, size_t len, struct exec_msg *msg, struct thaw_err *err);

/* ---- the llm and embed runtimes (template.c, llm.c) ----
 * The node starts a template as `thaw __runtime model --spec JSON` (the
 * deployment's canonical JSON, model path absolute) with a control socket
 * as stdin/stdout. The template loads the model once, prints
 * {"ready":true,...}, and forks an instance per request (runtime_template_fork);
 * each instance then speaks the protocol above on its own socket:
 *   llm input   {"op":"complete","prompt":..} | {"op":"chat","messages":[..]}
 *               plus sampling fields (max_tokens, temperature, top_p, top_k,
 *               min_p, repetition/frequency/presence_penalty, seed, stop,
 *               logprobs); chunks {"text":..}; output {"text","finish_reason",
 *               "usage":{"prompt_tokens","completion_tokens"}[,"logprobs"]}
 *   embed input {"op":"embed","input":["text",..]}; output {"data":[[..]..],
 *               "usage":{"prompt_tokens"}}
 *   errors carry status 400 and codes invalid_request, max_tokens_too_large,
 *   context_length_exceeded; 500 model_error for engine failures.
 *   The node may send {"id":N,"cancel":true} for a request it gave up on
 *   (timeout): the instance stops it and answers an error at once, freeing
 *   the sequence. */
#define RUNTIME_MODEL_COMMAND "__runtime"

/* Entry point of `thaw __runtime ...` (argv[0] is "__runtime"). */
int runtime_model_main(int argc, char **argv);

/* Node side: asks the ready template behind ctl to fork an instance whose
 * stdin/stdout is sock and stderr err_fd (both stay the caller's to close),
 * and waits up to timeout_ms for its pid. The instance is the node's to
 * reap once the template's intermediate child has exited (the node must be
 * a child subreaper). Returns 0 or a negative status with err. */
int runtime_template_fork(int ctl, int sock, int err_fd, int timeout_ms, pid_t *pid,
                          struct thaw_err *err);

#endif
