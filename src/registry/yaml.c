/* YAML manifests to JSON values through libyaml's event parser. Plain
 * scalars are typed as YAML 1.2's core schema says (null, booleans, integers,
 * floats); quoted scalars stay strings. Aliases are refused so a hostile
 * manifest cannot expand exponentially. */
#include "registry/registry.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define YAML_MAX_DEPTH 32

struct yaml_ctx {
    yaml_parser_t parser;
    struct thaw_err *err;
};

static json_t *plain_scalar(const char *s, size_t len)
{
    if (len == 0 || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
        !strcmp(s, "NULL"))
        return json_null();
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) return json_true();
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) return json_false();
    char *end;
    errno = 0;
    long long i = strtoll(s, &end, 10);
    if (*end == '\0' && errno == 0 && (s[0] == '-' || s[0] == '+' || (s[0] >= '0' && s[0] <= '9')))
        return json_integer(i);
    errno = 0;
    double d = strtod(s, &end);
    if (*end == '\0' && errno == 0 && isfinite(d) &&
        (s[0] == '-' || s[0] == '+' || s[0] == '.' || (s[0] >= '0' && s[0] <= '9')))
        return json_real(d);
    return json_stringn(s, len);
}

static int next_event(struct yaml_ctx *c, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&c->parser, ev))
        return thaw_errf(c->err, THAW_EINVAL, "invalid YAML at line %zu: %s",
                         c->parser.problem_mark.line + 1,
                         c->parser.problem ? c->parser.problem : "parse error");
    return 0;
}

static int parse_node(struct yaml_ctx *c, yaml_event_t *ev, int depth, json_t **out);

static int parse_sequence(struct yaml_ctx *c, int depth, json_t **out)
{
    json_t *arr = json_array();
    for (;;) {
        yaml_event_t ev;
        int rc = next_event(c, &ev);
        if (rc) goto fail;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            *out = arr;
            return 0;
        }
        json_t *item = NULL;
        rc = parse_node(c, &ev, depth + 1, &item);
        yaml_event_delete(&ev);
        if (rc) {
        fail:
            json_decref(arr);
            return rc;
        }
        json_array_append_new(arr, item);
    }
}

static int parse_mapping(struct yaml_ctx *c, int depth, json_t **out)
{
    json_t *obj = json_object();
    for (;;) {
        yaml_event_t ev;
        int rc = next_event(c, &ev);
        if (rc) goto fail;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            *out = obj;
            return 0;
        }
        if (ev.type != YAML_SCALAR_EVENT) {
            yaml_event_delete(&ev);
            rc = thaw_errf(c->err, THAW_EINVAL, "YAML mapping keys must be plain strings");
            goto fail;
        }
        char *key = strndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
        yaml_event_delete(&ev);
        if (!key) {
            rc = thaw_errf(c->err, THAW_ENOMEM, "out of memory");
            goto fail;
        }
        json_t *val = NULL;
        rc = next_event(c, &ev);
        if (!rc) {
            rc = parse_node(c, &ev, depth + 1, &val);
            yaml_event_delete(&ev);
        }
        if (!rc && json_object_get(obj, key)) {
            rc = thaw_errf(c->err, THAW_EINVAL, "duplicate key '%s' in YAML", key);
            json_decref(val);
        }
        if (!rc) json_object_set_new(obj, key, val);
        free(key);
        if (rc) {
        fail:
            json_decref(obj);
            return rc;
        }
    }
}

static int parse_node(struct yaml_ctx *c, yaml_event_t *ev, int depth, json_t **out)
{
    if (depth > YAML_MAX_DEPTH)
        return thaw_errf(c->err, THAW_EINVAL, "YAML nested deeper than %d levels", YAML_MAX_DEPTH);
    switch (ev->type) {
    case YAML_SCALAR_EVENT: {
        const char *s = (const char *)ev->data.scalar.value;
        size_t len = ev->data.scalar.length;
        if (strlen(s) != len) return thaw_errf(c->err, THAW_EINVAL, "YAML scalar contains NUL");
        *out = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? plain_scalar(s, len)
                                                                : json_stringn(s, len);
        return *out ? 0 : thaw_errf(c->err, THAW_EINVAL, "YAML scalar is not valid UTF-8");
    }
    case YAML_SEQUENCE_START_EVENT:
        return parse_sequence(c, depth, out);
    case YAML_MAPPING_START_EVENT:
        return parse_mapping(c, depth, out);
    case YAML_ALIAS_EVENT:
        return thaw_errf(c->err, THAW_EINVAL, "YAML aliases are not allowed");
    default:
        return thaw_errf(c->err, THAW_EINVAL, "unexpected YAML structure");
    }
}

int registry_yaml_to_json(const char *text, size_t len, json_t **out, struct thaw_err *err)
{
    struct yaml_ctx c = {.err = err};
    if (!yaml_parser_initialize(&c.parser)) return thaw_errf(err, THAW_ENOMEM, "out of memory");
    yaml_parser_set_input_string(&c.parser, (const unsigned char *)text, len);
    json_t *doc = NULL;
    int rc = 0;
    for (;;) {
        yaml_event_t ev;
        rc = next_event(&c, &ev);
        if (rc) break;
        yaml_event_type_t type = ev.type;
        if (type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (type == YAML_STREAM_START_EVENT || type == YAML_DOCUMENT_START_EVENT ||
            type == YAML_DOCUMENT_END_EVENT) {
            yaml_event_delete(&ev);
            continue;
        }
        if (doc) {
            yaml_event_delete(&ev);
            rc = thaw_errf(err, THAW_EINVAL, "a manifest holds exactly one YAML document");
            break;
        }
        rc = parse_node(&c, &ev, 0, &doc);
        yaml_event_delete(&ev);
        if (rc) break;
    }
    yaml_parser_delete(&c.parser);
    if (!rc && !doc) rc = thaw_errf(err, THAW_EINVAL, "empty manifest");
    if (rc) {
        json_decref(doc);
        return rc;
    }
    *out = doc;
    return 0;
}
