/* The OpenAI-compatible routes through the real binary with real llm and
 * embed deployments of generated models: /v1/models, completions (equal to
 * `thaw generate` for greedy decoding), chat with and without streaming,
 * embeddings (float and base64), errors, scopes, token quotas and metrics. */
#include "harness.h"
#include "test.h"

#include <curl/curl.h>
#include <math.h>
#include <sodium.h>
#include <unistd.h>

static struct node N;
static char model_path[512], embed_path[512];

static int run_capture(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    return pclose(p);
}

static long post(const char *path, const char *body, const char *const *headers, struct resp *r)
{
    if (http(&N, "POST", path, body, headers, r) != 0) return -1;
    return r->status;
}

static json_t *post_json(const char *path, const char *body, long want)
{
    struct resp r;
    long st = post(path, body, NULL, &r);
    json_t *j = st == want ? resp_json(&r) : NULL;
    if (st != want) fprintf(stderr, "  %s -> %ld %s\n", path, st, r.body ? r.body : "");
    resp_free(&r);
    return j;
}

static void expect_error(const char *path, const char *body, const char *const *headers,
                         long status, const char *code, const char *needle)
{
    struct resp r;
    long st = post(path, body, headers, &r);
    json_t *j = resp_json(&r);
    const char *got = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    if (st != status || !got || strcmp(got, code) || (needle && !strstr(r.body, needle))) {
        fprintf(stderr, "  FAIL: %s %s -> %ld %s (wanted %ld %s)\n", path, body, st, r.body, status,
                code);
        test_cur_failed_ = 1;
    }
    json_decref(j);
    resp_free(&r);
}

static void test_models_list(void)
{
    struct resp r;
    ASSERT_EQ(http(&N, "GET", "/v1/models", NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 200);
    json_t *j = resp_json(&r);
    resp_free(&r);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "object")), "list");
    json_t *data = json_object_get(j, "data");
    int seen_llm = 0, seen_embed = 0, seen_exec = 0;
    size_t i;
    json_t *m;
    json_array_foreach(data, i, m)
    {
        const char *id = json_string_value(json_object_get(m, "id"));
        ASSERT_STR_EQ(json_string_value(json_object_get(m, "object")), "model");
        if (!strcmp(id, "tiny")) seen_llm++;
        if (!strcmp(id, "emb")) seen_embed++;
        if (!strcmp(id, "fn")) seen_exec++;
    }
    json_decref(j);
    ASSERT_EQ(seen_llm, 1);
    ASSERT_EQ(seen_embed, 1);
    ASSERT_EQ(seen_exec, 0); /* functions are not models */
    ASSERT_EQ(http(&N, "GET", "/v1/models/tiny", NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    ASSERT_EQ(http(&N, "GET", "/v1/models/fn", NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 404);
    resp_free(&r);
}

static void test_completion_matches_generate(void)
{
    char cmd[1200], want[4096];
    snprintf(cmd, sizeof(cmd), "%s generate -m %s -p 'Once upon a time' -n 12 --temp 0 2>/dev/null",
             thaw_path(), model_path);
    ASSERT_EQ(run_capture(cmd, want, sizeof(want)), 0);
    size_t wl = strlen(want);
    while (wl && want[wl - 1] == '\n')
        want[--wl] = 0;
    json_t *j = post_json("/v1/completions",
                          "{\"model\":\"tiny\",\"prompt\":\"Once upon a time\",\"max_tokens\":12,"
                          "\"temperature\":0}",
                          200);
    ASSERT(j != NULL);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "object")), "text_completion");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "model")), "tiny");
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    const char *text = json_string_value(json_object_get(ch, "text"));
    ASSERT(text != NULL);
    /* `thaw generate` prints the generated text (greedy: deterministic),
     * the first token's leading space included, as the API answers it; a
     * last piece that is not yet a whole UTF-8 character may differ (the
     * API answers U+FFFD). */
    if (strlen(text) == 0 || strncmp(text, want, wl) != 0 || strlen(text) > wl + 3) {
        fprintf(stderr, "  api: \"%s\"\n  cli: \"%s\"\n", text, want);
        ASSERT(0);
    }
    json_t *u = json_object_get(j, "usage");
    ASSERT_CMP(json_integer_value(json_object_get(u, "prompt_tokens")), >, 0);
    ASSERT_CMP(json_integer_value(json_object_get(u, "completion_tokens")), <=, 12);
    ASSERT_EQ(json_integer_value(json_object_get(u, "total_tokens")),
              json_integer_value(json_object_get(u, "prompt_tokens")) +
                  json_integer_value(json_object_get(u, "completion_tokens")));
    json_decref(j);
}

static const char *chat_body(bool stream)
{
    static char b[512];
    snprintf(b, sizeof(b),
             "{\"model\":\"tiny\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
             "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Tell me a story\"}]}],"
             "\"max_tokens\":10,\"temperature\":0%s}",
             stream ? ",\"stream\":true,\"stream_options\":{\"include_usage\":true}" : "");
    return b;
}

static void test_chat_and_stream_agree(void)
{
    json_t *j = post_json("/v1/chat/completions", chat_body(false), 200);
    ASSERT(j != NULL);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "object")), "chat.completion");
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    json_t *msg = json_object_get(ch, "message");
    ASSERT_STR_EQ(json_string_value(json_object_get(msg, "role")), "assistant");
    char whole[4096];
    snprintf(whole, sizeof(whole), "%s", json_string_value(json_object_get(msg, "content")));
    const char *finish = json_string_value(json_object_get(ch, "finish_reason"));
    ASSERT(finish && (!strcmp(finish, "length") || !strcmp(finish, "stop")));
    json_int_t completion =
        json_integer_value(json_object_get(json_object_get(j, "usage"), "completion_tokens"));
    json_decref(j);

    struct resp r;
    ASSERT_EQ(post("/v1/chat/completions", chat_body(true), NULL, &r), 200);
    char ctype[64];
    ASSERT_CONTAINS(resp_header(&r, "Content-Type", ctype, sizeof(ctype)), "text/event-stream");
    /* Every event is "data: {chunk}"; the last is "data: [DONE]". */
    char joined[4096] = "";
    int events = 0, role_chunks = 0, usage_chunks = 0, finishes = 0;
    bool done_last = false;
    for (char *line = strtok(r.body, "\n"); line; line = strtok(NULL, "\n")) {
        ASSERT(strncmp(line, "data: ", 6) == 0);
        done_last = strcmp(line + 6, "[DONE]") == 0;
        if (done_last) continue;
        json_t *ev = json_loads(line + 6, 0, NULL);
        ASSERT(ev != NULL);
        events++;
        ASSERT_STR_EQ(json_string_value(json_object_get(ev, "object")), "chat.completion.chunk");
        json_t *c0 = json_array_get(json_object_get(ev, "choices"), 0);
        json_t *delta = json_object_get(c0, "delta");
        if (json_object_get(delta, "role")) role_chunks++;
        const char *piece = json_string_value(json_object_get(delta, "content"));
        if (piece) strncat(joined, piece, sizeof(joined) - strlen(joined) - 1);
        if (json_is_string(json_object_get(c0, "finish_reason"))) finishes++;
        if (json_object_get(ev, "usage")) {
            usage_chunks++;
            ASSERT_EQ(json_integer_value(
                          json_object_get(json_object_get(ev, "usage"), "completion_tokens")),
                      completion);
        }
        json_decref(ev);
    }
    resp_free(&r);
    ASSERT(done_last);
    ASSERT_EQ(role_chunks, 1);
    ASSERT_EQ(finishes, 1);
    ASSERT_EQ(usage_chunks, 1);
    ASSERT_CMP(events, >=, 3);
    ASSERT_STR_EQ(joined, whole); /* the stream adds up to the whole answer */
}

static void test_seeded_sampling_repeats(void)
{
    const char *b = "{\"model\":\"tiny\",\"prompt\":\"The\",\"max_tokens\":8,\"temperature\":0.9,"
                    "\"seed\":42,\"top_k\":40}";
    json_t *a = post_json("/v1/completions", b, 200), *c = post_json("/v1/completions", b, 200);
    ASSERT(a && c);
    const char *ta = json_string_value(
        json_object_get(json_array_get(json_object_get(a, "choices"), 0), "text"));
    const char *tc = json_string_value(
        json_object_get(json_array_get(json_object_get(c, "choices"), 0), "text"));
    ASSERT_STR_EQ(ta, tc);
    json_decref(a);
    json_decref(c);
}

static double norm_of(json_t *vec)
{
    double s = 0;
    size_t i;
    json_t *x;
    json_array_foreach(vec, i, x) s += json_number_value(x) * json_number_value(x);
    return sqrt(s);
}

static void test_embeddings(void)
{
    json_t *j = post_json("/v1/embeddings",
                          "{\"model\":\"emb\",\"input\":[\"hello world\",\"another text\"]}", 200);
    ASSERT(j != NULL);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "object")), "list");
    json_t *data = json_object_get(j, "data");
    ASSERT_EQ(json_array_size(data), 2);
    json_t *v0 = json_object_get(json_array_get(data, 0), "embedding");
    json_t *v1 = json_object_get(json_array_get(data, 1), "embedding");
    ASSERT_EQ(json_integer_value(json_object_get(json_array_get(data, 1), "index")), 1);
    ASSERT_CMP(json_array_size(v0), >, 8);
    ASSERT_NEAR(norm_of(v0), 1.0, 1e-3);
    ASSERT_NEAR(norm_of(v1), 1.0, 1e-3);
    ASSERT_CMP(json_integer_value(json_object_get(json_object_get(j, "usage"), "prompt_tokens")), >,
               0);
    /* One string is one input; the same text gives the same vector, and
     * base64 carries the same floats. */
    json_t *k = post_json("/v1/embeddings",
                          "{\"model\":\"emb\",\"input\":\"hello world\","
                          "\"encoding_format\":\"base64\"}",
                          200);
    ASSERT(k != NULL);
    const char *b64 = json_string_value(
        json_object_get(json_array_get(json_object_get(k, "data"), 0), "embedding"));
    ASSERT(b64 != NULL);
    size_t n = json_array_size(v0);
    float *f = calloc(n + 4, sizeof(float));
    size_t got = 0;
    ASSERT_EQ(sodium_base642bin((unsigned char *)f, (n + 4) * sizeof(float), b64, strlen(b64), NULL,
                                &got, NULL, sodium_base64_VARIANT_ORIGINAL),
              0);
    ASSERT_EQ(got, n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        ASSERT_NEAR(f[i], json_number_value(json_array_get(v0, i)), 1e-6);
    free(f);
    json_decref(k);
    json_decref(j);
}

static void test_errors(void)
{
    expect_error("/v1/chat/completions", "{\"messages\":[]}", NULL, 400, "invalid_request",
                 "'model'");
    expect_error("/v1/chat/completions", "{\"model\":\"nope\",\"messages\":[]}", NULL, 404,
                 "model_not_found", NULL);
    expect_error("/v1/chat/completions", "{\"model\":\"tiny\",\"messages\":[]}", NULL, 400,
                 "invalid_request", "messages");
    expect_error("/v1/chat/completions",
                 "{\"model\":\"tiny\",\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}",
                 NULL, 400, "invalid_request", "role");
    expect_error("/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"x\",\"temperature\":7}", NULL,
                 400, "invalid_request", "temperature");
    expect_error("/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"x\",\"n\":3}", NULL, 400,
                 "invalid_request", "'n'");
    expect_error("/v1/completions", "{\"model\":\"tiny\",\"prompt\":[1,2,3]}", NULL, 400,
                 "invalid_request", "prompt");
    expect_error("/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"x\",\"max_tokens\":100000}",
                 NULL, 400, "max_tokens_too_large", NULL);
    expect_error("/v1/completions", "{\"model\":\"fn\",\"prompt\":\"x\"}", NULL, 400,
                 "invalid_model", NULL);
    expect_error("/v1/embeddings", "{\"model\":\"tiny\",\"input\":\"x\"}", NULL, 400,
                 "invalid_model", NULL);
    expect_error("/v1/chat/completions", "{\"model\":\"emb\",\"messages\":[]}", NULL, 400,
                 "invalid_model", NULL);
    expect_error("/v1/embeddings", "{\"model\":\"emb\",\"input\":[]}", NULL, 400, "invalid_request",
                 "input");
    expect_error("/v1/completions", "{not json", NULL, 400, "invalid_json", NULL);
    expect_error("/v1/completions", "[1]", NULL, 400, "invalid_json", NULL);
    /* A prompt past the context is refused by the instance. */
    size_t cap = 40000;
    char *big = malloc(cap);
    int off = snprintf(big, cap, "{\"model\":\"tiny\",\"prompt\":\"");
    for (int i = 0; i < 3000; i++)
        off += snprintf(big + off, cap - (size_t)off, "once upon ");
    snprintf(big + off, cap - (size_t)off, "\"}");
    expect_error("/v1/completions", big, NULL, 400, "context_length_exceeded", NULL);
    free(big);
    struct resp r;
    ASSERT_EQ(http(&N, "GET", "/v1/completions", NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 405);
    resp_free(&r);
    expect_error("/v1/completions", "{}", (const char *[]){"Authorization:", NULL}, 401,
                 "unauthorized", NULL);
}

static int acme_ok;
static char acme_auth[200];

/* acme's usage today, as its own key and the platform admin see it. */
static void check_acme_usage(void)
{
    const char *h[] = {acme_auth, NULL};
    for (int as_admin = 0; as_admin < 2; as_admin++) {
        struct resp r;
        ASSERT_EQ(http(&N, "GET", as_admin ? "/v1/usage?tenant=acme" : "/v1/usage", NULL,
                       as_admin ? NULL : h, &r),
                  0);
        ASSERT_EQ(r.status, 200);
        json_t *j = resp_json(&r);
        resp_free(&r);
        ASSERT_STR_EQ(json_string_value(json_object_get(j, "tenant")), "acme");
        json_t *d = json_object_get(json_object_get(j, "deployments"), "acme-tiny");
        ASSERT_EQ(json_integer_value(json_object_get(d, "requests")), acme_ok);
        ASSERT_EQ(json_integer_value(json_object_get(d, "failed")), 0);
        ASSERT_CMP(json_integer_value(json_object_get(d, "prompt_tokens")), >=, 4 * acme_ok);
        ASSERT_CMP(json_integer_value(json_object_get(d, "completion_tokens")), >, 0);
        json_decref(j);
    }
}

/* A tenant sees only its own models; a read key cannot generate; a daily
 * token quota stops a tenant once spent. */
static void test_tenants_scopes_and_token_quota(void)
{
    json_t *t =
        post_json("/v1/tenants", "{\"name\":\"acme\",\"limits\":{\"daily_tokens\":40}}", 201);
    ASSERT(t != NULL);
    json_decref(t);
    json_t *k = post_json("/v1/tenants/acme/keys", "{\"scopes\":[\"invoke\",\"read\"]}", 201);
    json_t *rk = post_json("/v1/tenants/acme/keys", "{\"scopes\":[\"read\"]}", 201);
    ASSERT(k && rk);
    char auth[200], rauth[200];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s",
             json_string_value(json_object_get(k, "key")));
    snprintf(rauth, sizeof(rauth), "Authorization: Bearer %s",
             json_string_value(json_object_get(rk, "key")));
    json_decref(k);
    json_decref(rk);
    const char *h[] = {auth, NULL}, *rh[] = {rauth, NULL};
    struct resp r;
    ASSERT_EQ(http(&N, "GET", "/v1/models", NULL, h, &r), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT(strstr(r.body, "\"tiny\"") == NULL); /* root's models are not acme's */
    resp_free(&r);
    expect_error("/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"x\"}", h, 404,
                 "model_not_found", NULL);
    /* acme gets its own deployment of the same file. */
    char m[1024];
    snprintf(m, sizeof(m),
             "{\"name\":\"acme-tiny\",\"runtime\":\"llm\",\"model\":\"%s\",\"context\":256,"
             "\"max_output_tokens\":64}",
             model_path);
    ASSERT_EQ(post("/v1/deployments", m, NULL, &r), 201);
    resp_free(&r);
    ASSERT_EQ(post("/v1/deployments/acme-tiny/grants", "{\"tenant\":\"acme\"}", NULL, &r), 201);
    resp_free(&r);
    expect_error("/v1/completions", "{\"model\":\"acme-tiny\",\"prompt\":\"x\"}", rh, 403,
                 "forbidden", NULL);
    const char *b = "{\"model\":\"acme-tiny\",\"prompt\":\"Once upon a time\",\"max_tokens\":16,"
                    "\"temperature\":0}";
    int ok = 0, limited = 0;
    for (int i = 0; i < 6 && !limited; i++) {
        long st = post("/v1/completions", b, h, &r);
        if (st == 200) ok++;
        if (st == 429) {
            limited++;
            ASSERT_CONTAINS(r.body, "daily_tokens");
            char ra[16];
            ASSERT(resp_header(&r, "Retry-After", ra, sizeof(ra)) != NULL);
        }
        resp_free(&r);
    }
    /* Each answer spends more than 4 prompt tokens plus its output: 40
     * tokens last two or three requests. */
    ASSERT_CMP(ok, >=, 1);
    ASSERT_CMP(ok, <=, 3);
    ASSERT_EQ(limited, 1);
    acme_ok = ok;
    snprintf(acme_auth, sizeof(acme_auth), "%s", auth);
    check_acme_usage();
    /* One tenant's usage is not another's to read. */
    ASSERT_EQ(http(&N, "GET", "/v1/usage?tenant=root", NULL, h, &r), 0);
    ASSERT_EQ(r.status, 403);
    resp_free(&r);
    ASSERT_EQ(http(&N, "GET", "/v1/usage?day=yesterday", NULL, h, &r), 0);
    ASSERT_EQ(r.status, 400);
    resp_free(&r);
}

/* Usage survives a restart (written to the store). */
static void test_usage_survives_restart(void)
{
    ASSERT_EQ(node_stop(&N), 0);
    ASSERT_EQ(node_start(&N, NULL), 0);
    check_acme_usage();
}

static void test_metrics_count_tokens(void)
{
    struct resp r;
    ASSERT_EQ(http(&N, "GET", "/metrics", NULL, NULL, &r), 0);
    ASSERT_CONTAINS(r.body,
                    "thaw_tokens_total{deployment=\"tiny\",tenant=\"root\",kind=\"prompt\"}");
    ASSERT_CONTAINS(r.body,
                    "thaw_tokens_total{deployment=\"tiny\",tenant=\"root\",kind=\"completion\"}");
    resp_free(&r);
}

/* OpenAI's official Node.js client (tests/clients, installed by
 * scripts/deps.sh) against this node. */
static void test_official_client(void)
{
    char dir[600], cmd[2048], out[8192];
    snprintf(dir, sizeof(dir), "%s/tests/clients", getenv("THAW_SOURCE_DIR"));
    char probe[700];
    snprintf(probe, sizeof(probe), "%s/node_modules/openai/package.json", dir);
    if (access(probe, R_OK) != 0) {
        fprintf(stderr, "  %s missing: run scripts/deps.sh (npm ci in tests/clients)\n", probe);
        ASSERT(0);
    }
    snprintf(cmd, sizeof(cmd),
             "THAW_URL=http://127.0.0.1:%d THAW_KEY=%s THAW_MODEL=tiny THAW_EMBED_MODEL=emb "
             "node %s/openai_client.mjs 2>&1",
             N.port, TEST_ADMIN_KEY, dir);
    int rc = run_capture(cmd, out, sizeof(out));
    if (rc != 0) fprintf(stderr, "%s", out);
    ASSERT_EQ(rc, 0);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (sodium_init() < 0) return 1;
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(model_path, sizeof(model_path), "%s/thaw-openai-%d.gguf", tmp, (int)getpid());
    snprintf(embed_path, sizeof(embed_path), "%s/thaw-openai-emb-%d.gguf", tmp, (int)getpid());
    char cmd[1200], out[512];
    snprintf(cmd, sizeof(cmd), "%s model gen --preset tiny --type Q8_0 -o %s 2>&1", thaw_path(),
             model_path);
    if (run_capture(cmd, out, sizeof(out)) != 0) {
        fprintf(stderr, "model gen failed: %s\n", out);
        return 1;
    }
    snprintf(cmd, sizeof(cmd), "%s model gen --preset tiny --type F16 --pooling mean -o %s 2>&1",
             thaw_path(), embed_path);
    if (run_capture(cmd, out, sizeof(out)) != 0) {
        fprintf(stderr, "model gen failed: %s\n", out);
        return 1;
    }
    if (node_start(&N, NULL)) {
        fprintf(stderr, "cannot start node\n");
        return 1;
    }
    char m[1024];
    snprintf(m, sizeof(m),
             "{\"name\":\"tiny\",\"runtime\":\"llm\",\"model\":\"%s\",\"context\":256,"
             "\"parallel\":2,\"max_output_tokens\":64,\"chat_template\":\"chatml\"}",
             model_path);
    if (deploy(&N, m) != 201) fprintf(stderr, "deploy tiny failed\n");
    snprintf(m, sizeof(m), "{\"name\":\"emb\",\"runtime\":\"embed\",\"model\":\"%s\"}", embed_path);
    if (deploy(&N, m) != 201) fprintf(stderr, "deploy emb failed\n");
    snprintf(m, sizeof(m), "{\"name\":\"fn\",\"runtime\":\"exec\",\"command\":[\"%s\"]}",
             testfn_path());
    if (deploy(&N, m) != 201) fprintf(stderr, "deploy fn failed\n");
    RUN(test_models_list);
    RUN(test_completion_matches_generate);
    RUN(test_chat_and_stream_agree);
    RUN(test_seeded_sampling_repeats);
    RUN(test_embeddings);
    RUN(test_errors);
    RUN(test_tenants_scopes_and_token_quota);
    RUN(test_metrics_count_tokens);
    RUN(test_official_client);
    RUN(test_usage_survives_restart);
    node_cleanup(&N);
    unlink(model_path);
    unlink(embed_path);
    curl_global_cleanup();
    return TEST_REPORT();
}
