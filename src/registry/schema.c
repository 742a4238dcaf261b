/* Input schemas: a deployment may declare a JSON Schema for its input, and
 * requests that do not match are refused before anything is invoked, with
 * the path of the first mismatch. The supported subset is checked when the
 * manifest is parsed, so a schema never silently validates less than it
 * says: type (string or list), properties, required, additionalProperties
 * (boolean), items, enum, const, minimum, maximum, minLength, maxLength,
 * minItems, maxItems, and the annotations title, description, default. */
#include "registry/registry.h"

#include <math.h>
#include <string.h>

#define SCHEMA_MAX_DEPTH 32

static const char *const known[] = {"type",     "properties", "required",    "additionalProperties",
                                    "items",    "enum",       "const",       "minimum",
                                    "maximum",  "minLength",  "maxLength",   "minItems",
                                    "maxItems", "title",      "description", "default",
                                    "$schema",  NULL};

static const char *const types[] = {"object",  "array",   "string", "number",
                                    "integer", "boolean", "null",   NULL};

static bool in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(s, *list)) return true;
    return false;
}

static int check_node(const json_t *s, struct buf *path, int depth, struct thaw_err *err)
{
    if (depth > SCHEMA_MAX_DEPTH)
        return thaw_errf(err, THAW_EINVAL, "input_schema nests deeper than %d levels",
                         SCHEMA_MAX_DEPTH);
    if (!json_is_object(s))
        return thaw_errf(err, THAW_EINVAL, "input_schema%s must be an object",
                         path->data ? path->data : "");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)s, key, v)
    {
        if (!in_list(key, known))
            return thaw_errf(err, THAW_EINVAL, "input_schema%s: keyword '%s' is not supported",
                             path->data ? path->data : "", key);
    }
    json_t *t = json_object_get(s, "type");
    if (t) {
        bool ok = json_is_string(t) && in_list(json_string_value(t), types);
        if (json_is_array(t)) {
            ok = json_array_size(t) > 0;
            size_t i;
            json_array_foreach(t, i, v) ok =
                ok && json_is_string(v) && in_list(json_string_value(v), types);
        }
        if (!ok)
            return thaw_errf(err, THAW_EINVAL, "input_schema%s: bad 'type'",
                             path->data ? path->data : "");
    }
    json_t *props = json_object_get(s, "properties");
    if (props) {
        if (!json_is_object(props))
            return thaw_errf(err, THAW_EINVAL, "input_schema%s: 'properties' must be an object",
                             path->data ? path->data : "");
        json_object_foreach(props, key, v)
        {
            size_t len = path->len;
            buf_printf(path, ".properties.%s", key);
            int rc = check_node(v, path, depth + 1, err);
            path->len = len;
            if (path->data) path->data[len] = 0;
            if (rc) return rc;
        }
    }
    json_t *items = json_object_get(s, "items");
    if (items) {
        size_t len = path->len;
        buf_append_str(path, ".items");
        int rc = check_node(items, path, depth + 1, err);
        path->len = len;
        if (path->data) path->data[len] = 0;
        if (rc) return rc;
    }
    json_t *req = json_object_get(s, "required");
    if (req && !json_is_array(req))
        return thaw_errf(err, THAW_EINVAL, "input_schema%s: 'required' must be a list",
                         path->data ? path->data : "");
    json_t *ap = json_object_get(s, "additionalProperties");
    if (ap && !json_is_boolean(ap))
        return thaw_errf(err, THAW_EINVAL,
                         "input_schema%s: 'additionalProperties' must be true or false",
                         path->data ? path->data : "");
    return 0;
}

int registry_schema_check(const json_t *schema, struct thaw_err *err)
{
    struct buf path = {0};
    int rc = check_node(schema, &path, 0, err);
    buf_free(&path);
    return rc;
}

static bool type_matches(const json_t *v, const char *t)
{
    if (!strcmp(t, "object")) return json_is_object(v);
    if (!strcmp(t, "array")) return json_is_array(v);
    if (!strcmp(t, "string")) return json_is_string(v);
    if (!strcmp(t, "number")) return json_is_number(v);
    if (!strcmp(t, "integer"))
        return json_is_integer(v) ||
               (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)));
    if (!strcmp(t, "boolean")) return json_is_boolean(v);
    if (!strcmp(t, "null")) return json_is_null(v);
    return false;
}

/* Counts UTF-8 code points, as JSON Schema lengths do. */
static size_t utf8_len(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

static int fail(struct thaw_err *err, const struct buf *path, const char *what)
{
    return thaw_errf(err, THAW_EINVAL, "input%s: %s", path->data ? path->data : "", what);
}

static int validate(const json_t *s, const json_t *v, struct buf *path, struct thaw_err *err)
{
    json_t *t = json_object_get(s, "type");
    if (json_is_string(t) && !type_matches(v, json_string_value(t))) {
        char m[64];
        snprintf(m, sizeof(m), "expected %s", json_string_value(t));
        return fail(err, path, m);
    }
    if (json_is_array(t)) {
        bool any = false;
        size_t i;
        json_t *x;
        json_array_foreach(t, i, x) any = any || type_matches(v, json_string_value(x));
        if (!any) return fail(err, path, "has none of the allowed types");
    }
    json_t *e = json_object_get(s, "enum");
    if (json_is_array(e)) {
        bool any = false;
        size_t i;
        json_t *x;
        json_array_foreach(e, i, x) any = any || json_equal(x, (json_t *)v);
        if (!any) return fail(err, path, "is not one of the allowed values");
    }
    json_t *c = json_object_get(s, "const");
    if (c && !json_equal(c, (json_t *)v)) return fail(err, path, "is not the required value");
    if (json_is_number(v)) {
        json_t *lo = json_object_get(s, "minimum"), *hi = json_object_get(s, "maximum");
        if (json_is_number(lo) && json_number_value(v) < json_number_value(lo))
            return fail(err, path, "is below the minimum");
        if (json_is_number(hi) && json_number_value(v) > json_number_value(hi))
            return fail(err, path, "is above the maximum");
    }
    if (json_is_string(v)) {
        size_t n = utf8_len(json_string_value(v), json_string_length(v));
        json_t *lo = json_object_get(s, "minLength"), *hi = json_object_get(s, "maxLength");
        if (json_is_integer(lo) && (json_int_t)n < json_integer_value(lo))
            return fail(err, path, "is too short");
        if (json_is_integer(hi) && (json_int_t)n > json_integer_value(hi))
            return fail(err, path, "is too long");
    }
    if (json_is_array(v)) {
        json_t *lo = json_object_get(s, "minItems"), *hi = json_object_get(s, "maxItems");
        json_int_t n = (json_int_t)json_array_size(v);
        if (json_is_integer(lo) && n < json_integer_value(lo))
            return fail(err, path, "has too few items");
        if (json_is_integer(hi) && n > json_integer_value(hi))
            return fail(err, path, "has too many items");
        json_t *items = json_object_get(s, "items");
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            if (!items) break;
            size_t len = path->len;
            buf_printf(path, "[%zu]", i);
            int rc = validate(items, x, path, err);
            path->len = len;
            if (path->data) path->data[len] = 0;
            if (rc) return rc;
        }
    }
    if (json_is_object(v)) {
        json_t *props = json_object_get(s, "properties");
        size_t i;
        json_t *x;
        json_array_foreach(json_object_get(s, "required"), i, x)
        {
            if (json_is_string(x) && !json_object_get(v, json_string_value(x))) {
                char m[128];
                snprintf(m, sizeof(m), "is missing required property '%.80s'",
                         json_string_value(x));
                return fail(err, path, m);
            }
        }
        const char *key;
        json_object_foreach((json_t *)v, key, x)
        {
            json_t *ps = json_object_get(props, key);
            size_t len = path->len;
            buf_printf(path, ".%s", key);
            int rc = 0;
            if (ps)
                rc = validate(ps, x, path, err);
            else if (json_is_false(json_object_get(s, "additionalProperties")))
                rc = fail(err, path, "is not an allowed property");
            path->len = len;
            if (path->data) path->data[len] = 0;
            if (rc) return rc;
        }
    }
    return 0;
}

int registry_schema_validate(const json_t *schema, const json_t *value, struct thaw_err *err)
{
    struct buf path = {0};
    int rc = validate(schema, value, &path, err);
    buf_free(&path);
    return rc;
}
