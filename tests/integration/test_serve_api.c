/* The node's API through the real binary: health, deployments CRUD, invoke,
 * JSON errors for bad input of every kind, SSE, metrics, logs without
 * bodies, and deployments surviving a restart. */
#include "harness.h"
#include "test.h"

#include <curl/curl.h>
#include <sys/wait.h>
#include <unistd.h>

static struct node N;
static char echo_manifest[1024];

static void test_health_and_ready(void)
{
    struct resp r;
    ASSERT_EQ(http(&N, "GET", "/healthz", NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 200);
    char rid[80];
    ASSERT(resp_header(&r, "x-request-id", rid, sizeof(rid)) != NULL);
    ASSERT_EQ(strlen(rid), 32);
    resp_free(&r);
    ASSERT_EQ(http(&N, "GET", "/readyz", NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    /* A client's own request id is echoed back. */
    const char *h[] = {"x-request-id: my-trace-123", NULL};
    ASSERT_EQ(http(&N, "GET", "/healthz", NULL, h, &r), 0);
    ASSERT_STR_EQ(resp_header(&r, "x-request-id", rid, sizeof(rid)), "my-trace-123");
    resp_free(&r);
}

static void test_deploy_and_invoke(void)
{
    ASSERT_EQ(deploy(&N, echo_manifest), 201);
    ASSERT_EQ(deploy(&N, echo_manifest), 200); /* same name again: an update */
    struct resp r;
    ASSERT_EQ(invoke(&N, "echo", "{\"hello\": [1, 2, {\"x\": \"y\"}]}", &r), 0);
    ASSERT_EQ(r.status, 200);
    json_t *j = resp_json(&r);
    ASSERT(j != NULL);
    ASSERT_STR_EQ(
        json_string_value(json_object_get(json_array_get(json_object_get(j, "hello"), 2), "x")),
        "y");
    json_decref(j);
    char start[32];
    ASSERT(resp_header(&r, "x-thaw-start", start, sizeof(start)) != NULL);
    resp_free(&r);
    /* Bodies with line breaks are re-encoded onto one line. */
    ASSERT_EQ(invoke(&N, "echo", "{\"a\":\n 1,\n \"s\": \"two\\nlines\"}", &r), 0);
    ASSERT_EQ(r.status, 200);
    j = resp_json(&r);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "s")), "two\nlines");
    json_decref(j);
    resp_free(&r);
    /* An empty body is null. */
    ASSERT_EQ(invoke(&N, "echo", "", &r), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(r.body, "null\n");
    resp_free(&r);
}

static void expect_error(const char *method, const char *path, const char *body, long status,
                         const char *code)
{
    struct resp r;
    if (http(&N, method, path, body, NULL, &r) != 0) {
        fprintf(stderr, "  FAIL: %s %s: no answer\n", method, path);
        test_cur_failed_ = 1;
        return;
    }
    json_t *j = resp_json(&r);
    const char *got = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    if (r.status != status || !got || strcmp(got, code) != 0 || !msg || !*msg) {
        fprintf(stderr, "  FAIL: %s %s -> %ld %s (wanted %ld %s)\n", method, path, r.status, r.body,
                status, code);
        test_cur_failed_ = 1;
    }
    json_decref(j);
    resp_free(&r);
}

static void test_errors_are_json(void)
{
    expect_error("POST", "/v1/deployments/nope/invoke", "{}", 404, "not_found");
    expect_error("GET", "/v1/deployments/nope", NULL, 404, "not_found");
    expect_error("DELETE", "/v1/deployments/nope", NULL, 404, "not_found");
    expect_error("GET", "/no/such/route", NULL, 404, "not_found");
    expect_error("GET", "/v1/deployments/echo/invoke", NULL, 405, "method_not_allowed");
    expect_error("PUT", "/v1/deployments", "{}", 405, "method_not_allowed");
    expect_error("POST", "/v1/deployments/echo/invoke", "{not json", 400, "invalid_json");
    expect_error("POST", "/v1/deployments", "{\"name\":\"x\"}", 400, "invalid_manifest");
    expect_error(
        "POST", "/v1/deployments",
        "{\"name\":\"x\",\"runtime\":\"exec\",\"command\":[\"a\"],\"scale\":{\"max_instances\":0}}",
        400, "invalid_manifest");
    struct resp r;
    http(&N, "POST", "/v1/deployments",
         "{\"name\":\"x\",\"runtime\":\"exec\",\"command\":[\"a\"],\"concurrency\":\"lots\"}", NULL,
         &r);
    ASSERT_EQ(r.status, 400);
    ASSERT_CONTAINS(r.body, "'concurrency'");
    resp_free(&r);
    http(&N, "GET", "/v1/deployments/echo/invoke", NULL, NULL, &r);
    char allow[64];
    ASSERT_STR_EQ(resp_header(&r, "Allow", allow, sizeof(allow)), "POST");
    resp_free(&r);
}

static void test_input_schema(void)
{
    char m[1024];
    snprintf(
        m, sizeof(m),
        "{\"name\":\"typed\",\"runtime\":\"exec\",\"command\":[\"%s\"],\"input_schema\":"
        "{\"type\":\"object\",\"required\":[\"n\"],\"properties\":{\"n\":{\"type\":\"integer\"}}}}",
        testfn_path());
    ASSERT_EQ(deploy(&N, m), 201);
    struct resp r;
    ASSERT_EQ(invoke(&N, "typed", "{\"n\":\"seven\"}", &r), 0);
    ASSERT_EQ(r.status, 400);
    ASSERT_CONTAINS(r.body, "\"invalid_input\"");
    ASSERT_CONTAINS(r.body, "input.n: expected integer");
    resp_free(&r);
    ASSERT_EQ(invoke(&N, "typed", "{\"n\":7}", &r), 0);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    /* Async jobs: the same check before anything is stored. */
    ASSERT_EQ(
        http(&N, "POST", "/v1/deployments/typed/jobs", "{\"input\":{\"n\":\"seven\"}}", NULL, &r),
        0);
    ASSERT_EQ(r.status, 400);
    ASSERT_CONTAINS(r.body, "\"invalid_input\"");
    ASSERT_CONTAINS(r.body, "input.n: expected integer");
    resp_free(&r);
    ASSERT_EQ(http(&N, "POST", "/v1/deployments/typed/jobs", "{\"inputs\":[{\"n\":1},{\"m\":2}]}",
                   NULL, &r),
              0);
    ASSERT_EQ(r.status, 400);
    ASSERT_CONTAINS(r.body, "inputs[1]: input: is missing required property 'n'");
    resp_free(&r);
    ASSERT_EQ(http(&N, "GET", "/v1/deployments/typed/jobs", NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 200);
    json_t *j = resp_json(&r);
    ASSERT_EQ(json_array_size(json_object_get(j, "jobs")), 0); /* nothing was stored */
    json_decref(j);
    resp_free(&r);
    ASSERT_EQ(http(&N, "POST", "/v1/deployments/typed/jobs", "{\"input\":{\"n\":7}}", NULL, &r), 0);
    ASSERT_EQ(r.status, 202);
    resp_free(&r);
}

static void test_body_limits(void)
{
    /* The deployment allows 4 KiB; 8 KiB is refused with a JSON 413. */
    char *big = malloc(8200);
    big[0] = '"';
    memset(big + 1, 'a', 8190);
    big[8191] = '"';
    big[8192] = 0;
    struct resp r;
    ASSERT_EQ(invoke(&N, "echo", big, &r), 0);
    ASSERT_EQ(r.status, 413);
    ASSERT_CONTAINS(r.body, "\"body_too_large\"");
    resp_free(&r);
    free(big);
    /* No Content-Length on a POST: 411. */
    char out[2048];
    const char *req =
        "POST /v1/deployments/echo/invoke HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        "Authorization: Bearer " TEST_ADMIN_KEY "\r\n\r\n";
    ASSERT_CMP(raw_exchange(&N, req, strlen(req), out, sizeof(out), 3000), >, 0);
    ASSERT_CONTAINS(out, "HTTP/1.1 411");
    ASSERT_CONTAINS(out, "\"length_required\"");
}

static void test_malformed_http(void)
{
    char out[4096];
    const char *garbage = "\x01\x02 NOT HTTP AT ALL\r\n\r\n";
    int n = raw_exchange(&N, garbage, strlen(garbage), out, sizeof(out), 3000);
    ASSERT_CMP(n, >=, 0);
    if (n > 0) ASSERT_CONTAINS(out, "HTTP/1.1 400");
    /* Headers over the node's limit (16 KiB) are refused. */
    size_t hl = 40000;
    char *huge = malloc(hl + 200);
    int off = sprintf(huge, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(huge + off, 'b', hl);
    strcpy(huge + off + hl, "\r\n\r\n");
    n = raw_exchange(&N, huge, strlen(huge), out, sizeof(out), 3000);
    free(huge);
    ASSERT(n <= 0 || strstr(out, "200 OK") == NULL);
    /* The node still serves. */
    struct resp r;
    ASSERT_EQ(http(&N, "GET", "/healthz", NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
}

static void test_slow_client_is_cut_off(void)
{
    /* --read-timeout 2s: a client that sends half a request and stalls is
     * disconnected, and others are served meanwhile. */
    long t0 = now_ms();
    char out[1024];
    const char *partial = "POST /v1/deployments/echo/invoke HTTP/1.1\r\nHost: x\r\nContent-Length: "
                          "100\r\n\r\n{\"a\":";
    int n = raw_exchange(&N, partial, strlen(partial), out, sizeof(out), 8000);
    long took = now_ms() - t0;
    ASSERT_CMP(n, >=, 0);
    ASSERT_CMP(took, <, 7000);
    ASSERT_CMP(took, >=, 1500);
}

static size_t sse_collect(char *d, size_t s, size_t n, void *arg)
{
    strncat((char *)arg, d,
            8191 - strlen((char *)arg) < s * n ? 8191 - strlen((char *)arg) : s * n);
    return s * n;
}

static void test_sse_stream(void)
{
    char body[8192] = "";
    CURL *c = curl_easy_init();
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/deployments/fn/invoke", N.port);
    struct curl_slist *h = curl_slist_append(NULL, "Accept: text/event-stream");
    h = curl_slist_append(h, "Authorization: Bearer " TEST_ADMIN_KEY);
    h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{\"op\":\"stream\",\"n\":5}");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sse_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    ASSERT_EQ(curl_easy_perform(c), CURLE_OK);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    char *ctype = NULL;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ctype);
    ASSERT_EQ(status, 200);
    ASSERT_STR_EQ(ctype, "text/event-stream");
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    ASSERT_CONTAINS(body, "event: chunk\ndata: \"tok0 \"\n\n");
    char *t4 = strstr(body, "\"tok4 \""), *t0 = strstr(body, "\"tok0 \""),
         *done = strstr(body, "event: done\ndata: null");
    ASSERT(t0 && t4 && done && t0 < t4 && t4 < done);
    /* Without SSE the chunks are joined into the answer. */
    struct resp r;
    ASSERT_EQ(invoke(&N, "fn", "{\"op\":\"stream\",\"n\":3}", &r), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(r.body, "\"tok0 tok1 tok2 \"\n");
    resp_free(&r);
}

static void test_function_error_and_stderr(void)
{
    struct resp r;
    ASSERT_EQ(invoke(&N, "fn", "{\"op\":\"error\",\"message\":\"bad thing\"}", &r), 0);
    ASSERT_EQ(r.status, 500);
    ASSERT_CONTAINS(r.body, "\"function_error\"");
    ASSERT_CONTAINS(r.body, "bad thing");
    resp_free(&r);
    ASSERT_EQ(invoke(&N, "fn",
                     "{\"op\":\"stderr\",\"text\":\"diagnostic-marker-42 for jane.doe@example.com "
                     "card 4111 1111 1111 1111\"}",
                     &r),
              0);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    sleep_ms(200);
    ASSERT_EQ(node_log_count(&N, "diagnostic-marker-42"), 1);
    ASSERT_CMP(node_log_count(&N, "\"function_stderr\""), >=, 1);
    /* Personal data a function prints is masked before it reaches the log. */
    ASSERT_EQ(node_log_count(&N, "jane.doe@example.com"), 0);
    ASSERT_EQ(node_log_count(&N, "4111 1111"), 0);
    ASSERT_EQ(node_log_count(&N, "[EMAIL]"), 1);
    ASSERT_EQ(node_log_count(&N, "[CARD]"), 1);
}

static void test_logs_carry_no_bodies(void)
{
    struct resp r;
    ASSERT_EQ(invoke(&N, "echo", "{\"secret\":\"body-marker-7731\"}", &r), 0);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    ASSERT_EQ(invoke(&N, "echo", "{\"secret\":\"broken-marker-7731", &r), 0);
    ASSERT_EQ(r.status, 400);
    resp_free(&r);
    sleep_ms(100);
    ASSERT_EQ(node_log_count(&N, "marker-7731"), 0);
    ASSERT_CMP(node_log_count(&N, "\"event\":\"request\""), >=, 2);
}

static void test_metrics(void)
{
    struct resp r;
    ASSERT_EQ(http(&N, "GET", "/metrics", NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 200);
    /* Answers are labelled by the version that served them. */
    ASSERT_CONTAINS(r.body, "thaw_requests_total{deployment=\"echo\",code=\"200\",version=\"v1\"}");
    ASSERT_CONTAINS(r.body, "thaw_request_duration_seconds_bucket{deployment=\"echo\",version="
                            "\"v1\",le=\"+Inf\"}");
    ASSERT_CONTAINS(r.body, "thaw_version_requests_total{deployment=\"echo\",version=\"v1\","
                            "role=\"primary\",outcome=\"ok\"}");
    ASSERT_CONTAINS(r.body, "thaw_instances{deployment=\"echo\",state=\"ready\"}");
    ASSERT_CONTAINS(r.body, "# TYPE thaw_cold_starts_total counter");
    ASSERT_CONTAINS(r.body, "thaw_held_requests{deployment=\"echo\"}");
    ASSERT_CONTAINS(r.body, "# TYPE thaw_scale_decisions_total counter");
    /* Refused before a version was chosen: no version. */
    ASSERT_CONTAINS(r.body, "thaw_requests_total{deployment=\"echo\",code=\"413\",version=\"\"}");
    ASSERT_CONTAINS(r.body, "thaw_redactions_total{kind=\"email\"} 1");
    resp_free(&r);
}

static void test_list_and_delete(void)
{
    struct resp r;
    ASSERT_EQ(http(&N, "GET", "/v1/deployments", NULL, NULL, &r), 0);
    json_t *j = resp_json(&r);
    ASSERT_EQ(json_array_size(json_object_get(j, "deployments")), 3);
    json_decref(j);
    resp_free(&r);
    ASSERT_EQ(deploy(&N, "{\"name\":\"tmp\",\"runtime\":\"exec\",\"command\":[\"/bin/cat\"]}"),
              201);
    ASSERT_EQ(http(&N, "DELETE", "/v1/deployments/tmp", NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    ASSERT_EQ(invoke(&N, "tmp", "1", &r), 0);
    ASSERT_EQ(r.status, 404);
    resp_free(&r);
}

static void test_restart_keeps_deployments(void)
{
    ASSERT_EQ(WIFEXITED(node_stop(&N)), 1);
    ASSERT_EQ(node_start(&N, (const char *[]){"--read-timeout", "2s", NULL}), 0);
    struct resp r;
    ASSERT_EQ(invoke(&N, "echo", "{\"after\":\"restart\"}", &r), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_CONTAINS(r.body, "restart");
    resp_free(&r);
    ASSERT_EQ(http(&N, "GET", "/v1/deployments", NULL, NULL, &r), 0);
    json_t *j = resp_json(&r);
    ASSERT_EQ(json_array_size(json_object_get(j, "deployments")), 3);
    json_decref(j);
    resp_free(&r);
}

static int run_cli(const char *args, char *out, size_t cap)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "THAW_KEY=%s THAW_SERVER=http://127.0.0.1:%d %s %s 2>&1",
             TEST_ADMIN_KEY, N.port, thaw_path(), args);
    FILE *p = popen(cmd, "r");
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void)
{
    char out[8192], path[300];
    snprintf(path, sizeof(path), "%s/cli.yaml", N.data);
    FILE *f = fopen(path, "w");
    fprintf(f, "name: cli-fn\nruntime: exec\ncommand: [\"%s\"]\nconcurrency: 2\n", testfn_path());
    fclose(f);
    char args[512];
    snprintf(args, sizeof(args), "deploy -f %s", path);
    ASSERT_EQ(run_cli(args, out, sizeof(out)), 0);
    ASSERT_CONTAINS(out, "created cli-fn");
    ASSERT_EQ(run_cli("invoke cli-fn -d '{\"k\":\"v\"}'", out, sizeof(out)), 0);
    ASSERT_CONTAINS(out, "{\"k\":\"v\"}");
    ASSERT_EQ(run_cli("invoke cli-fn --stream -d '{\"op\":\"stream\",\"n\":3}'", out, sizeof(out)),
              0);
    ASSERT_CONTAINS(out, "tok0 tok1 tok2");
    ASSERT_EQ(run_cli("ls", out, sizeof(out)), 0);
    ASSERT_CONTAINS(out, "cli-fn");
    ASSERT_CONTAINS(out, "NAME");
    ASSERT_EQ(run_cli("status cli-fn --json", out, sizeof(out)), 0);
    json_t *j = json_loads(out, 0, NULL);
    ASSERT(j != NULL);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "name")), "cli-fn");
    json_decref(j);
    ASSERT_EQ(run_cli("invoke no-such-fn -d 1", out, sizeof(out)), 3);
    ASSERT_CONTAINS(out, "not found");
    ASSERT_EQ(run_cli("rm cli-fn", out, sizeof(out)), 0);
    ASSERT_EQ(run_cli("rm cli-fn", out, sizeof(out)), 3);
    ASSERT_EQ(run_cli("invoke", out, sizeof(out)), 2);
    ASSERT_EQ(run_cli("ls --server http://127.0.0.1:1", out, sizeof(out)), 4);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (node_start(&N, (const char *[]){"--read-timeout", "2s", NULL})) {
        fprintf(stderr, "cannot start node\n");
        return 1;
    }
    snprintf(echo_manifest, sizeof(echo_manifest),
             "{\"name\":\"echo\",\"runtime\":\"exec\",\"command\":[\"%s\"],"
             "\"limits\":{\"max_body_size\":4096}}",
             testfn_path());
    char fn[1024];
    snprintf(fn, sizeof(fn), "{\"name\":\"fn\",\"runtime\":\"exec\",\"command\":[\"%s\"]}",
             testfn_path());
    RUN(test_health_and_ready);
    RUN(test_deploy_and_invoke);
    if (deploy(&N, fn) != 201) fprintf(stderr, "deploy fn failed\n");
    RUN(test_errors_are_json);
    RUN(test_input_schema);
    RUN(test_body_limits);
    RUN(test_malformed_http);
    RUN(test_slow_client_is_cut_off);
    RUN(test_sse_stream);
    RUN(test_function_error_and_stderr);
    RUN(test_logs_carry_no_bodies);
    RUN(test_metrics);
    RUN(test_list_and_delete);
    RUN(test_restart_keeps_deployments);
    RUN(test_cli);
    node_cleanup(&N);
    curl_global_cleanup();
    return TEST_REPORT();
}
