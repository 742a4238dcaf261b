/* Manifests: JSON and YAML forms, defaults, and an error naming the field for
 * every kind of bad input. */
#include "registry/registry.h"
#include "test.h"

static struct deploy_spec *parse_ok(const char *text, const char *ctype)
{
    struct deploy_spec *spec = NULL;
    struct thaw_err err = {0};
    int rc = registry_spec_parse(text, strlen(text), ctype, &spec, &err);
    if (rc) fprintf(stderr, "  unexpected error: %s\n", err.msg);
    return spec;
}

static void expect_error(const char *text, const char *needle)
{
    struct deploy_spec *spec = NULL;
    struct thaw_err err = {0};
    int rc = registry_spec_parse(text, strlen(text), NULL, &spec, &err);
    if (rc != THAW_EINVAL || spec != NULL || !strstr(err.msg, needle)) {
        fprintf(stderr, "  FAIL: manifest %s\n    got rc=%d msg='%s', wanted '%s'\n", text, rc,
                err.msg, needle);
        test_cur_failed_ = 1;
    }
    registry_spec_free(spec);
}

static void test_json_manifest_with_defaults(void)
{
    struct deploy_spec *s = parse_ok(
        "{\"name\":\"echo\",\"runtime\":\"exec\",\"command\":[\"/bin/cat\",\"-u\"]}", NULL);
    ASSERT(s != NULL);
    ASSERT_STR_EQ(s->name, "echo");
    ASSERT_STR_EQ(s->command[0], "/bin/cat");
    ASSERT_STR_EQ(s->command[1], "-u");
    ASSERT(s->command[2] == NULL);
    ASSERT_EQ(s->concurrency, 4);
    ASSERT_EQ(s->timeout_ms, 30000);
    ASSERT_EQ(s->scale.min_instances, 0);
    ASSERT_EQ(s->scale.max_instances, 4);
    ASSERT_EQ(s->limits.max_body_bytes, 1 << 20);
    registry_spec_free(s);
}

static void test_yaml_manifest_full(void)
{
    const char *y = "name: fn-1\n"
                    "runtime: exec\n"
                    "command: [\"./fn\", \"--fast\"]\n"
                    "env:\n  MODE: fast\n  N: 3\n"
                    "workdir: /tmp\n"
                    "concurrency: 8\n"
                    "timeout: 2s\n"
                    "scale:\n"
                    "  min_instances: 1\n  max_instances: 5\n  idle_timeout: 500ms\n"
                    "  standby_timeout: 1m\n  queue_limit: 10\n  queue_timeout: 1.5\n"
                    "limits:\n  memory: 256Mi\n  max_body_size: 4Ki\n";
    struct deploy_spec *s = parse_ok(y, "application/yaml");
    ASSERT(s != NULL);
    ASSERT_STR_EQ(s->env[0], "MODE=fast");
    ASSERT_STR_EQ(s->env[1], "N=3");
    ASSERT_STR_EQ(s->workdir, "/tmp");
    ASSERT_EQ(s->concurrency, 8);
    ASSERT_EQ(s->timeout_ms, 2000);
    ASSERT_EQ(s->scale.min_instances, 1);
    ASSERT_EQ(s->scale.idle_timeout_ms, 500);
    ASSERT_EQ(s->scale.standby_timeout_ms, 60000);
    ASSERT_EQ(s->scale.queue_timeout_ms, 1500);
    ASSERT_EQ(s->limits.memory_bytes, 256LL << 20);
    ASSERT_EQ(s->limits.max_body_bytes, 4096);

    /* The canonical JSON parses back to the same spec. */
    json_t *j = registry_spec_to_json(s);
    ASSERT(j != NULL);
    struct deploy_spec *s2 = NULL;
    ASSERT_EQ(registry_spec_from_json(j, &s2, NULL), 0);
    json_t *j2 = registry_spec_to_json(s2);
    ASSERT(json_equal(j, j2));
    json_decref(j);
    json_decref(j2);
    registry_spec_free(s2);
    registry_spec_free(s);
}

static void test_bad_manifests_name_the_field(void)
{
    expect_error("{", "invalid JSON");
    expect_error("[]", "must be a map");
    expect_error("{\"runtime\":\"exec\",\"command\":[\"x\"]}", "'name' is required");
    expect_error("{\"name\":\"Bad Name\",\"runtime\":\"exec\",\"command\":[\"x\"]}", "'name'");
    expect_error("{\"name\":\"a\",\"runtime\":\"exec\"}", "'command'");
    expect_error("{\"name\":\"a\",\"runtime\":\"exec\",\"command\":[]}", "'command'");
    expect_error("{\"name\":\"a\",\"runtime\":\"exec\",\"command\":[1]}", "'command[0]'");
    expect_error("{\"name\":\"a\",\"runtime\":\"lisp\",\"command\":[\"x\"]}", "'runtime'");
    expect_error("{\"name\":\"a\",\"runtime\":\"exec\",\"command\":[\"x\"],\"concurrency\":0}",
                 "'concurrency'");
    expect_error("{\"name\":\"a\",\"runtime\":\"exec\",\"command\":[\"x\"],\"timeout\":\"soon\"}",
                 "'timeout'");
    expect_error("{\"name\":\"a\",\"runtime\":\"exec\",\"command\":[\"x\"],\"scael\":{}}",
                 "unknown field 'scael'");
    expect_error("{\"name\":\"a\",\"runtime\":\"exec\",\"command\":[\"x\"],"
                 "\"scale\":{\"min_instances\":3,\"max_instances\":2}}",
                 "'scale.min_instances'");
    expect_error("{\"name\":\"a\",\"runtime\":\"exec\",\"command\":[\"x\"],"
                 "\"scale\":{\"max_instances\":-1}}",
                 "'scale.max_instances'");
    expect_error("{\"name\":\"a\",\"runtime\":\"exec\",\"command\":[\"x\"],"
                 "\"env\":{\"1BAD\":\"x\"}}",
                 "'env.1BAD'");
    expect_error("{\"name\":\"a\",\"runtime\":\"exec\",\"command\":[\"x\"],"
                 "\"limits\":{\"memory\":\"lots\"}}",
                 "'limits.memory'");
    expect_error("name: a\nname: b\n", "duplicate key");
    expect_error("name: &x a\nruntime: *x\n", "aliases");
    expect_error("name: [unclosed\n", "invalid YAML");
    expect_error("--- {name: a}\n--- {name: b}\n", "exactly one YAML document");
    expect_error("", "empty manifest");
}

static void test_deep_yaml_is_refused(void)
{
    struct buf b = {0};
    buf_append_str(&b, "name: ");
    for (int i = 0; i < 100; i++)
        buf_append_str(&b, "[");
    struct deploy_spec *s = NULL;
    struct thaw_err err = {0};
    ASSERT_EQ(registry_spec_parse(b.data, b.len, "yaml", &s, &err), THAW_EINVAL);
    buf_free(&b);
}

int main(void)
{
    RUN(test_json_manifest_with_defaults);
    RUN(test_yaml_manifest_full);
    RUN(test_bad_manifests_name_the_field);
    RUN(test_deep_yaml_is_refused);
    return TEST_REPORT();
}
