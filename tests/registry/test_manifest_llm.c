/* Manifests of the llm and embed runtimes: model, engine knobs, sampling
 * defaults, strict refusal of fields that belong to another runtime, and the
 * canonical JSON round trip. */
#include "registry/registry.h"
#include "test.h"

static struct deploy_spec *parse_ok(const char *text)
{
    struct deploy_spec *spec = NULL;
    struct thaw_err err = {0};
    if (registry_spec_parse(text, strlen(text), NULL, &spec, &err))
        fprintf(stderr, "  unexpected error: %s\n", err.msg);
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

/* The canonical form parses back to itself. */
static int round_trips(const struct deploy_spec *s)
{
    json_t *j = registry_spec_to_json(s);
    struct deploy_spec *s2 = NULL;
    struct thaw_err err = {0};
    int ok = j && registry_spec_from_json(j, &s2, &err) == 0;
    if (!ok) fprintf(stderr, "  round trip refused: %s\n", err.msg);
    json_t *j2 = ok ? registry_spec_to_json(s2) : NULL;
    ok = ok && json_equal(j, j2);
    json_decref(j);
    json_decref(j2);
    registry_spec_free(s2);
    return ok;
}

static void test_llm_defaults(void)
{
    struct deploy_spec *s =
        parse_ok("{\"name\":\"chat\",\"runtime\":\"llm\",\"model\":\"/m/x.gguf\"}");
    ASSERT(s != NULL);
    ASSERT(registry_runtime_is_model(s));
    ASSERT_STR_EQ(s->model.path, "/m/x.gguf");
    ASSERT_EQ(s->model.threads, 1);
    ASSERT_EQ(s->model.context, 0);
    ASSERT_EQ(s->concurrency, 4);
    ASSERT_EQ(s->model.max_output_tokens, 512);
    ASSERT(s->model.chat_template == NULL);
    ASSERT(!s->model.redact);
    ASSERT_EQ(s->model.sampling.max_tokens, 256);
    ASSERT_EQ(s->model.sampling.seed, -1);
    ASSERT_NEAR(s->model.sampling.temperature, 0.8, 1e-9);
    ASSERT_EQ(s->timeout_ms, 300000);
    ASSERT(s->command == NULL);
    ASSERT(round_trips(s));
    registry_spec_free(s);
}

static void test_llm_full_yaml(void)
{
    const char *y = "name: chat-small\n"
                    "runtime: llm\n"
                    "model: sha256:"
                    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"
                    "threads: 2\ncontext: 2048\nparallel: 8\nmax_output_tokens: 100\n"
                    "chat_template: chatml\nredact: true\n"
                    "sampling: {temperature: 0, top_p: 0.9, top_k: 20, min_p: 0.1,\n"
                    "           repetition_penalty: 1.1, frequency_penalty: 0.5,\n"
                    "           presence_penalty: -0.5, max_tokens: 50, seed: 42}\n"
                    "timeout: 2m\nscale: {min_instances: 1, max_instances: 2}\n";
    struct deploy_spec *s = NULL;
    struct thaw_err err = {0};
    ASSERT_EQ(registry_spec_parse(y, strlen(y), "yaml", &s, &err), 0);
    ASSERT_EQ(s->model.threads, 2);
    ASSERT_EQ(s->model.context, 2048);
    ASSERT_EQ(s->concurrency, 8);
    ASSERT_EQ(s->model.max_output_tokens, 100);
    ASSERT_STR_EQ(s->model.chat_template, "chatml");
    ASSERT(s->model.redact);
    ASSERT_NEAR(s->model.sampling.temperature, 0, 1e-9);
    ASSERT_EQ(s->model.sampling.top_k, 20);
    ASSERT_EQ(s->model.sampling.max_tokens, 50);
    ASSERT_EQ(s->model.sampling.seed, 42);
    ASSERT_NEAR(s->model.sampling.presence_penalty, -0.5, 1e-9);
    ASSERT(round_trips(s));
    json_t *j = registry_spec_to_json(s);
    ASSERT(json_object_get(j, "command") == NULL);
    ASSERT(json_object_get(j, "concurrency") == NULL);
    ASSERT_EQ(json_integer_value(json_object_get(j, "parallel")), 8);
    json_decref(j);
    registry_spec_free(s);
}

static void test_embed(void)
{
    struct deploy_spec *s =
        parse_ok("{\"name\":\"emb\",\"runtime\":\"embed\",\"model\":\"./e.gguf\",\"parallel\":2}");
    ASSERT(s != NULL);
    ASSERT(registry_runtime_is_model(s));
    ASSERT_EQ(s->concurrency, 2);
    ASSERT(round_trips(s));
    json_t *j = registry_spec_to_json(s);
    ASSERT(json_object_get(j, "sampling") == NULL);
    json_decref(j);
    registry_spec_free(s);
}

static void test_bad_llm_manifests(void)
{
#define LLM "{\"name\":\"a\",\"runtime\":\"llm\",\"model\":\"/m.gguf\","
    expect_error("{\"name\":\"a\",\"runtime\":\"llm\"}", "'model' is required");
    expect_error("{\"name\":\"a\",\"runtime\":\"llm\",\"model\":\"\"}", "'model'");
    expect_error("{\"name\":\"a\",\"runtime\":\"llm\",\"model\":7}", "'model'");
    expect_error("{\"name\":\"a\",\"runtime\":\"llm\",\"model\":\"sha256:abc\"}", "'model'");
    expect_error(LLM "\"command\":[\"x\"]}", "field 'command' is not allowed for runtime llm");
    expect_error(LLM "\"env\":{}}", "'env' is not allowed");
    expect_error(LLM "\"concurrency\":2}", "'parallel'");
    expect_error(LLM "\"threads\":0}", "'threads'");
    expect_error(LLM "\"context\":8}", "'context'");
    expect_error(LLM "\"parallel\":0}", "'parallel'");
    expect_error(LLM "\"max_output_tokens\":0}", "'max_output_tokens'");
    expect_error(LLM "\"chat_template\":\"jinja\"}", "'chat_template'");
    expect_error(LLM "\"redact\":\"yes\"}", "'redact'");
    expect_error(LLM "\"sampling\":[]}", "'sampling'");
    expect_error(LLM "\"sampling\":{\"temp\":1}}", "unknown field 'sampling.temp'");
    expect_error(LLM "\"sampling\":{\"top_p\":0}}", "'sampling.top_p'");
    expect_error(LLM "\"sampling\":{\"temperature\":-1}}", "'sampling.temperature'");
    expect_error(LLM "\"sampling\":{\"seed\":-3}}", "'sampling.seed'");
    expect_error(LLM "\"max_output_tokens\":10,\"sampling\":{\"max_tokens\":11}}",
                 "'sampling.max_tokens' (11) exceeds 'max_output_tokens' (10)");
    expect_error(LLM "\"modle\":1}", "unknown field 'modle'");
    expect_error("{\"name\":\"a\",\"runtime\":\"embed\",\"model\":\"/m\",\"sampling\":{}}",
                 "'sampling' is only for runtime llm");
    expect_error("{\"name\":\"a\",\"runtime\":\"embed\",\"model\":\"/m\",\"chat_template\":"
                 "\"chatml\"}",
                 "'chat_template' is only for runtime llm");
    expect_error("{\"name\":\"a\",\"runtime\":\"exec\",\"command\":[\"x\"],\"model\":\"/m\"}",
                 "'model' is only for runtimes llm and embed");
    expect_error("{\"name\":\"a\",\"runtime\":\"exec\",\"command\":[\"x\"],\"parallel\":2}",
                 "'parallel' is only for runtimes llm and embed");
    expect_error("{\"name\":\"a\",\"runtime\":\"gpu\",\"model\":\"/m\"}",
                 "known: exec, llm, embed");
#undef LLM
}

int main(void)
{
    RUN(test_llm_defaults);
    RUN(test_llm_full_yaml);
    RUN(test_embed);
    RUN(test_bad_llm_manifests);
    return TEST_REPORT();
}
