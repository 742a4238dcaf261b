/* The manifest's jobs: block: defaults, YAML and JSON forms, the canonical
 * JSON round trip, and an error naming the field for each bad value. */
#include "registry/registry.h"
#include "test.h"

#define BASE "{\"name\":\"j\",\"runtime\":\"exec\",\"command\":[\"/bin/cat\"]"

static struct deploy_spec *parse(const char *text, const char *ctype, struct thaw_err *err)
{
    struct deploy_spec *spec = NULL;
    registry_spec_parse(text, strlen(text), ctype, &spec, err);
    return spec;
}

static void expect_error(const char *jobs_json, const char *needle)
{
    char text[1024];
    snprintf(text, sizeof(text), BASE ",\"jobs\":%s}", jobs_json);
    struct thaw_err err = {0};
    struct deploy_spec *spec = parse(text, NULL, &err);
    if (spec || !strstr(err.msg, needle)) {
        fprintf(stderr, "  FAIL: jobs %s\n    got '%s', wanted '%s'\n", jobs_json, err.msg, needle);
        test_cur_failed_ = 1;
    }
    registry_spec_free(spec);
}

static void test_defaults(void)
{
    struct thaw_err err = {0};
    struct deploy_spec *s = parse(BASE "}", NULL, &err);
    ASSERT(s != NULL);
    ASSERT_EQ(s->jobs.max_attempts, 3);
    ASSERT_EQ(s->jobs.backoff_base_ms, 1000);
    ASSERT_EQ(s->jobs.backoff_cap_ms, 300000);
    ASSERT_EQ(s->jobs.visibility_timeout_ms, 60000);
    ASSERT_EQ(s->jobs.result_ttl_ms, 86400000);
    ASSERT_EQ(s->jobs.queue_limit, 10000);
    ASSERT_EQ(s->jobs.concurrency, 0);
    ASSERT(s->jobs.webhook == NULL);
    registry_spec_free(s);
}

static void test_yaml_block_and_round_trip(void)
{
    const char *yaml = "name: j\nruntime: exec\ncommand: [/bin/cat]\njobs:\n"
                       "  max_attempts: 5\n  backoff_base: 250ms\n  backoff_cap: 10s\n"
                       "  visibility_timeout: 2m\n  result_ttl: 1h\n  queue_limit: 50\n"
                       "  concurrency: 8\n  webhook: https://hooks.example.com/thaw\n";
    struct thaw_err err = {0};
    struct deploy_spec *s = parse(yaml, "application/yaml", &err);
    ASSERT(s != NULL);
    ASSERT_EQ(s->jobs.max_attempts, 5);
    ASSERT_EQ(s->jobs.backoff_base_ms, 250);
    ASSERT_EQ(s->jobs.backoff_cap_ms, 10000);
    ASSERT_EQ(s->jobs.visibility_timeout_ms, 120000);
    ASSERT_EQ(s->jobs.result_ttl_ms, 3600000);
    ASSERT_EQ(s->jobs.queue_limit, 50);
    ASSERT_EQ(s->jobs.concurrency, 8);
    ASSERT_STR_EQ(s->jobs.webhook, "https://hooks.example.com/thaw");

    /* The canonical form parses back to the same block. */
    json_t *canon = registry_spec_to_json(s);
    ASSERT(canon != NULL);
    json_t *j = json_object_get(canon, "jobs");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "backoff_base")), "250ms");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "webhook")),
                  "https://hooks.example.com/thaw");
    struct deploy_spec *back = NULL;
    ASSERT_EQ(registry_spec_from_json(canon, &back, &err), 0);
    ASSERT_EQ(back->jobs.max_attempts, 5);
    ASSERT_EQ(back->jobs.backoff_cap_ms, 10000);
    ASSERT_EQ(back->jobs.result_ttl_ms, 3600000);
    ASSERT_STR_EQ(back->jobs.webhook, s->jobs.webhook);
    json_decref(canon);
    registry_spec_free(back);
    registry_spec_free(s);

    /* Without a webhook the canonical form says null and parses back. */
    s = parse(BASE "}", NULL, &err);
    ASSERT(s != NULL);
    canon = registry_spec_to_json(s);
    ASSERT(json_is_null(json_object_get(json_object_get(canon, "jobs"), "webhook")));
    ASSERT_EQ(registry_spec_from_json(canon, &back, &err), 0);
    ASSERT(back->jobs.webhook == NULL);
    json_decref(canon);
    registry_spec_free(back);
    registry_spec_free(s);
}

static void test_errors_name_the_field(void)
{
    expect_error("[]", "field 'jobs' must be a map");
    expect_error("{\"retries\":3}", "unknown field 'jobs.retries'");
    expect_error("{\"max_attempts\":0}", "'jobs.max_attempts' must be between 1 and 100");
    expect_error("{\"max_attempts\":\"3\"}", "'jobs.max_attempts' must be an integer");
    expect_error("{\"backoff_base\":\"soon\"}", "'jobs.backoff_base' must be a duration");
    expect_error("{\"backoff_base\":\"10s\",\"backoff_cap\":\"1s\"}",
                 "'jobs.backoff_cap' must be at least 'jobs.backoff_base'");
    expect_error("{\"visibility_timeout\":\"10ms\"}", "'jobs.visibility_timeout' must be at least");
    expect_error("{\"result_ttl\":0}", "'jobs.result_ttl' must be at least");
    expect_error("{\"queue_limit\":0}", "'jobs.queue_limit' must be between");
    expect_error("{\"concurrency\":-1}", "'jobs.concurrency' must be between");
    expect_error("{\"webhook\":\"ftp://x\"}", "'jobs.webhook' must be an http:// or https:// URL");
    expect_error("{\"webhook\":7}", "'jobs.webhook' must be an http");
    expect_error("{\"webhook\":\"http://a b\"}", "'jobs.webhook' must not contain spaces");
}

int main(void)
{
    RUN(test_defaults);
    RUN(test_yaml_block_and_round_trip);
    RUN(test_errors_name_the_field);
    return TEST_REPORT();
}
