/* The exec runtime's line protocol (see runtime.h). */
#include "runtime/runtime.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int runtime_exec_encode(struct buf *out, uint64_t id, const char *input_json, size_t input_len,
                        bool stream)
{
    int rc = buf_printf(out, "{\"id\":%llu,", (unsigned long long)id);
    if (!rc && stream) rc = buf_append_str(out, "\"stream\":true,");
    if (!rc) rc = buf_append_str(out, "\"input\":");
    if (!rc) rc = buf_append(out, input_json, input_len);
    if (!rc) rc = buf_append(out, "}\n", 2);
    return rc;
}

static int parse_id(json_t *v, uint64_t *id)
{
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *id = (uint64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_string(v)) {
        char *end;
        const char *s = json_string_value(v);
        unsigned long long n = strtoull(s, &end, 10);
        if (end != s && *end == '\0') {
            *id = n;
            return 0;
        }
    }
    return THAW_EINVAL;
}

const char *runtime_error_code(const char *code)
{
    static const char *const known[] = {
        "invalid_request",
        "invalid_input",
        "context_length_exceeded",
        "max_tokens_too_large",
        "input_too_large",
        "unprocessable_entity",
        "rate_limited",
        "overloaded",
        "model_error",
        "internal_error",
        "function_error",
        "not_found",
        "cancelled",
    };
    for (size_t i = 0; code && i < ARRAY_LEN(known); i++)
        if (strcmp(code, known[i]) == 0) return known[i];
    return NULL;
}

int runtime_exec_parse(const char *line, size_t len, struct exec_msg *msg, struct thaw_err *err)
{
    memset(msg, 0, sizeof(*msg));
    json_error_t jerr;
    json_t *o = json_loadb(line, len, 0, &jerr);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return thaw_errf(err, THAW_EINVAL, "function wrote a line that is not a JSON object");
    }
    int rc = 0;
    json_t *v;
    if (json_is_true(json_object_get(o, "ready")) && !json_object_get(o, "id")) {
        msg->kind = EXEC_MSG_READY;
        goto out;
    }
    if (parse_id(json_object_get(o, "id"), &msg->id)) {
        rc = thaw_errf(err, THAW_EINVAL, "function wrote a line without a valid \"id\"");
        goto out;
    }
    if ((v = json_object_get(o, "chunk"))) {
        msg->kind = EXEC_MSG_CHUNK;
        msg->payload = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    } else if ((v = json_object_get(o, "error")) && !json_is_null(v)) {
        msg->kind = EXEC_MSG_ERROR;
        msg->payload = json_is_string(v) ? str_dup(json_string_value(v))
                                         : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        json_t *st = json_object_get(o, "status");
        if (json_is_integer(st) && json_integer_value(st) >= 400 && json_integer_value(st) <= 599)
            msg->status = (int)json_integer_value(st);
        msg->code = runtime_error_code(json_string_value(json_object_get(o, "code")));
    } else {
        msg->kind = EXEC_MSG_OUTPUT;
        v = json_object_get(o, "output");
        msg->payload = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : str_dup("null");
    }
    if (!msg->payload) rc = thaw_errf(err, THAW_ENOMEM, "out of memory");
out:
    json_decref(o);
    return rc;
}
