/* Input schemas: the supported subset is checked at deploy time, and values
 * are validated with the path of the first mismatch. */
#include "registry/registry.h"
#include "test.h"

static json_t *J(const char *s)
{
    return json_loads(s, JSON_DECODE_ANY, NULL);
}

static void expect_invalid(const char *schema, const char *value, const char *needle)
{
    json_t *s = J(schema), *v = J(value);
    struct thaw_err err = {0};
    int rc = registry_schema_validate(s, v, &err);
    if (rc != THAW_EINVAL || !strstr(err.msg, needle)) {
        fprintf(stderr, "  FAIL: %s against %s: rc=%d '%s' (wanted '%s')\n", value, schema, rc,
                err.msg, needle);
        test_cur_failed_ = 1;
    }
    json_decref(s);
    json_decref(v);
}

static void expect_valid(const char *schema, const char *value)
{
    json_t *s = J(schema), *v = J(value);
    struct thaw_err err = {0};
    if (registry_schema_validate(s, v, &err) != 0) {
        fprintf(stderr, "  FAIL: %s against %s: %s\n", value, schema, err.msg);
        test_cur_failed_ = 1;
    }
    json_decref(s);
    json_decref(v);
}

static const char *user =
    "{\"type\":\"object\",\"required\":[\"name\",\"age\"],\"additionalProperties\":false,"
    "\"properties\":{\"name\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":5},"
    "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":150},"
    "\"tags\":{\"type\":\"array\",\"maxItems\":2,\"items\":{\"enum\":[\"a\",\"b\"]}},"
    "\"nick\":{\"type\":[\"string\",\"null\"]}}}";

static void test_validation_paths(void)
{
    expect_valid(user, "{\"name\":\"ada\",\"age\":36}");
    expect_valid(user, "{\"name\":\"ada\",\"age\":36.0,\"tags\":[\"a\",\"b\"],\"nick\":null}");
    expect_valid(user,
                 "{\"name\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\",\"age\":1}"); /* 5 chars */
    expect_invalid(user, "[]", "input: expected object");
    expect_invalid(user, "{\"name\":\"ada\"}", "input: is missing required property 'age'");
    expect_invalid(user, "{\"name\":\"ada\",\"age\":\"36\"}", "input.age: expected integer");
    expect_invalid(user, "{\"name\":\"ada\",\"age\":3.5}", "input.age: expected integer");
    expect_invalid(user, "{\"name\":\"ada\",\"age\":200}", "input.age: is above the maximum");
    expect_invalid(user, "{\"name\":\"\",\"age\":1}", "input.name: is too short");
    expect_invalid(user, "{\"name\":\"abcdef\",\"age\":1}", "input.name: is too long");
    expect_invalid(user, "{\"name\":\"a\",\"age\":1,\"tags\":[\"a\",\"c\"]}",
                   "input.tags[1]: is not one of");
    expect_invalid(user, "{\"name\":\"a\",\"age\":1,\"tags\":[\"a\",\"a\",\"a\"]}",
                   "input.tags: has too many");
    expect_invalid(user, "{\"name\":\"a\",\"age\":1,\"nick\":3}",
                   "input.nick: has none of the allowed types");
    expect_invalid(user, "{\"name\":\"a\",\"age\":1,\"x\":1}",
                   "input.x: is not an allowed property");
}

static void test_unsupported_schemas_refused(void)
{
    struct thaw_err err = {0};
    json_t *s = J("{\"type\":\"object\",\"properties\":{\"a\":{\"pattern\":\"^x\"}}}");
    ASSERT_EQ(registry_schema_check(s, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "input_schema.properties.a: keyword 'pattern' is not supported");
    json_decref(s);
    s = J("{\"type\":\"decimal\"}");
    ASSERT_EQ(registry_schema_check(s, &err), THAW_EINVAL);
    json_decref(s);
    s = J(user);
    ASSERT_EQ(registry_schema_check(s, &err), 0);
    json_decref(s);
    /* Through a manifest. */
    const char *m =
        "{\"name\":\"s\",\"runtime\":\"exec\",\"command\":[\"x\"],\"input_schema\":{\"oneOf\":[]}}";
    struct deploy_spec *spec = NULL;
    ASSERT_EQ(registry_spec_parse(m, strlen(m), NULL, &spec, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "oneOf");
}

int main(void)
{
    RUN(test_validation_paths);
    RUN(test_unsupported_schemas_refused);
    return TEST_REPORT();
}
