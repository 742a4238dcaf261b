/* Async jobs through the real binary: submit (single and batch), long-poll,
 * list, idempotency keys, a poison job dead-lettered after max_attempts
 * without holding up the others, retry gaps within the backoff policy, the
 * dead-letter queue's replay and purge, cancel, 4xx without retries,
 * backpressure, result expiry, and jobs surviving kill -9 and SIGTERM. */
#include "harness.h"
#include "test.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

static struct node N;
static char marks[300];

static long deployf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static long deployf(const char *fmt, ...)
{
    char m[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof(m), fmt, ap);
    va_end(ap);
    return deploy(&N, m);
}

/* POSTs body to the deployment's jobs; returns the status, id into out. */
static long submit(const char *dep, const char *body, const char *key, char *id, size_t n)
{
    char path[256], hdr[300];
    snprintf(path, sizeof(path), "/v1/deployments/%s/jobs", dep);
    snprintf(hdr, sizeof(hdr), "Idempotency-Key: %s", key ? key : "");
    const char *h[] = {hdr, NULL};
    struct resp r;
    if (http(&N, "POST", path, body, key ? h : NULL, &r)) {
        resp_free(&r);
        return -1;
    }
    json_t *j = resp_json(&r);
    if (id) {
        const char *s = json_string_value(json_object_get(j, "id"));
        snprintf(id, n, "%s", s ? s : "");
    }
    if (r.status >= 300 && r.status != 409 && r.status != 429)
        fprintf(stderr, "  submit -> %ld %s\n", r.status, r.body);
    json_decref(j);
    long st = r.status;
    resp_free(&r);
    return st;
}

/* GET /v1/jobs/ID?wait=S; returns the job (caller decrefs) or NULL. */
static json_t *get_job(const char *id, int wait_s, long *status)
{
    char path[256];
    snprintf(path, sizeof(path), "/v1/jobs/%s?wait=%d", id, wait_s);
    struct resp r;
    if (http(&N, "GET", path, NULL, NULL, &r)) {
        resp_free(&r);
        return NULL;
    }
    if (status) *status = r.status;
    json_t *j = resp_json(&r);
    resp_free(&r);
    return j;
}

static const char *state_of(json_t *job)
{
    const char *s = json_string_value(json_object_get(job, "state"));
    return s ? s : "";
}

/* Waits (long-polling) until the job has ended; returns it. */
static json_t *wait_end(const char *id, int seconds)
{
    long deadline = now_ms() + seconds * 1000L;
    json_t *j = NULL;
    while (now_ms() < deadline) {
        json_decref(j);
        j = get_job(id, 5, NULL);
        const char *s = state_of(j);
        if (strcmp(s, "queued") && strcmp(s, "running")) return j;
    }
    return j;
}

static int count_marks(const char *tag)
{
    FILE *f = fopen(marks, "r");
    if (!f) return 0;
    char line[256];
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = 0;
        n += strcmp(line, tag) == 0;
    }
    fclose(f);
    return n;
}

static void test_submit_wait_list(void)
{
    ASSERT_EQ(
        deployf("{\"name\":\"jfn\",\"runtime\":\"exec\",\"command\":[\"%s\"]}", testfn_path()),
        201);
    struct resp r;
    ASSERT_EQ(http(&N, "POST", "/v1/deployments/jfn/jobs", "{\"input\":{\"a\":[1,2]}}", NULL, &r),
              0);
    ASSERT_EQ(r.status, 202);
    char loc[128];
    ASSERT(resp_header(&r, "Location", loc, sizeof(loc)) != NULL);
    json_t *j = resp_json(&r);
    resp_free(&r);
    char id[64];
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(j, "id")));
    ASSERT_STR_EQ(state_of(j), "queued");
    json_decref(j);
    ASSERT(strstr(loc, id) != NULL);
    /* Long-poll returns once it has ended. */
    long t0 = now_ms();
    j = get_job(id, 20, NULL);
    ASSERT_CMP(now_ms() - t0, <, 10000);
    ASSERT_STR_EQ(state_of(j), "succeeded");
    ASSERT_EQ(json_integer_value(json_object_get(j, "attempts")), 1);
    ASSERT_EQ(json_array_size(json_object_get(json_object_get(j, "result"), "a")), 2);
    json_t *log = json_object_get(j, "attempt_log");
    ASSERT_EQ(json_array_size(log), 1);
    ASSERT_EQ(json_integer_value(json_object_get(json_array_get(log, 0), "status")), 200);
    json_decref(j);

    /* A batch: one id per input, in order. */
    ASSERT_EQ(http(&N, "POST", "/v1/deployments/jfn/jobs",
                   "{\"inputs\":[{\"n\":0},{\"n\":1},{\"n\":2}]}", NULL, &r),
              0);
    ASSERT_EQ(r.status, 202);
    j = resp_json(&r);
    resp_free(&r);
    json_t *jobs = json_object_get(j, "jobs");
    ASSERT_EQ(json_array_size(jobs), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *job =
            wait_end(json_string_value(json_object_get(json_array_get(jobs, i), "id")), 20);
        ASSERT_STR_EQ(state_of(job), "succeeded");
        ASSERT_EQ(json_integer_value(json_object_get(json_object_get(job, "result"), "n")),
                  (long long)i);
        json_decref(job);
    }
    json_decref(j);

    /* Listing by deployment and state, with a cursor. */
    ASSERT_EQ(http(&N, "GET", "/v1/jobs?deployment=jfn&state=succeeded&limit=2", NULL, NULL, &r),
              0);
    ASSERT_EQ(r.status, 200);
    j = resp_json(&r);
    resp_free(&r);
    ASSERT_EQ(json_array_size(json_object_get(j, "jobs")), 2);
    char path[256];
    snprintf(path, sizeof(path), "/v1/jobs?deployment=jfn&state=succeeded&after=%s",
             json_string_value(json_object_get(j, "next")));
    json_decref(j);
    ASSERT_EQ(http(&N, "GET", path, NULL, NULL, &r), 0);
    j = resp_json(&r);
    resp_free(&r);
    ASSERT_EQ(json_array_size(json_object_get(j, "jobs")), 2);
    json_decref(j);
    ASSERT_EQ(http(&N, "GET", "/v1/jobs?state=finished", NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 400);
    resp_free(&r);
}

static void test_bad_submissions(void)
{
    struct {
        const char *dep, *body;
        long status;
        const char *needle;
    } cases[] = {
        {"jfn", "{nope", 400, "not valid JSON"},
        {"jfn", "[1]", 400, "an object"},
        {"jfn", "{\"input\":1,\"inputs\":[1]}", 400, "exactly one"},
        {"jfn", "{}", 400, "exactly one"},
        {"jfn", "{\"input\":1,\"priority\":3}", 400, "unknown field 'priority'"},
        {"jfn", "{\"inputs\":[]}", 400, "1 to"},
        {"jfn", "{\"input\":1,\"webhook\":\"ftp://x\"}", 400, "http:// or https://"},
        {"nosuch", "{\"input\":1}", 404, "not found"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char path[256];
        snprintf(path, sizeof(path), "/v1/deployments/%s/jobs", cases[i].dep);
        struct resp r;
        ASSERT_EQ(http(&N, "POST", path, cases[i].body, NULL, &r), 0);
        if (r.status != cases[i].status || !strstr(r.body, cases[i].needle))
            TEST_FAIL_("%s -> %ld %s", cases[i].body, r.status, r.body);
        resp_free(&r);
    }
    struct resp r;
    ASSERT_EQ(http(&N, "GET", "/v1/jobs/job_0123", NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 404);
    resp_free(&r);
    ASSERT_EQ(http(&N, "GET", "/v1/jobs/job_0123456789abcdef0123456789abcdef", NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 404);
    resp_free(&r);
    ASSERT_EQ(http(&N, "PUT", "/v1/jobs", NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 405);
    resp_free(&r);
}

static void test_idempotency(void)
{
    char a[64], b[64], c[64];
    ASSERT_EQ(submit("jfn", "{\"input\":{\"k\":1}}", "order-17", a, sizeof(a)), 202);
    /* The same request again: the same job, 200, not a second job. */
    ASSERT_EQ(submit("jfn", "{\"input\":{\"k\":1}}", "order-17", b, sizeof(b)), 200);
    ASSERT_STR_EQ(a, b);
    /* Spelled differently but the same JSON: still the same. */
    ASSERT_EQ(submit("jfn", "{ \"input\" : { \"k\" : 1 } }", "order-17", c, sizeof(c)), 200);
    ASSERT_STR_EQ(a, c);
    /* The same key with a different body: 409. */
    ASSERT_EQ(submit("jfn", "{\"input\":{\"k\":2}}", "order-17", NULL, 0), 409);
    ASSERT_EQ(submit("jfn", "{\"input\":{\"k\":1},\"webhook\":\"https://example.com/h\"}",
                     "order-17", NULL, 0),
              409);
    /* Without the key, a second job. */
    ASSERT_EQ(submit("jfn", "{\"input\":{\"k\":1}}", NULL, b, sizeof(b)), 202);
    ASSERT(strcmp(a, b) != 0);
    ASSERT_EQ(submit("jfn", "{\"input\":1}", "bad key with spaces", NULL, 0), 400);
    json_t *j = wait_end(a, 20);
    ASSERT_STR_EQ(state_of(j), "succeeded");
    json_decref(j);
}

static void test_poison_and_backoff(void)
{
    ASSERT_EQ(
        deployf(
            /* concurrency 1: a good job never shares the instance the poison
             * crashes, so under a slow (sanitized, loaded) run it cannot be
             * crashed three times alongside it */
            "{\"name\":\"pz\",\"runtime\":\"exec\",\"command\":[\"%s\"],\"concurrency\":1,"
            "\"jobs\":{\"max_attempts\":3,\"backoff_base\":\"300ms\",\"backoff_cap\":\"500ms\"},"
            "\"scale\":{\"max_instances\":2}}",
            testfn_path()),
        201);
    char poison[64], good[8][64];
    ASSERT_EQ(submit("pz", "{\"input\":{\"op\":\"crash\"}}", NULL, poison, sizeof(poison)), 202);
    for (int i = 0; i < 8; i++)
        ASSERT_EQ(submit("pz", "{\"input\":{\"op\":\"pid\"}}", NULL, good[i], sizeof(good[i])),
                  202);
    json_t *p = wait_end(poison, 30);
    ASSERT_STR_EQ(state_of(p), "dead");
    ASSERT_EQ(json_integer_value(json_object_get(p, "attempts")), 3);
    json_t *log = json_object_get(p, "attempt_log");
    ASSERT_EQ(json_array_size(log), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *a = json_array_get(log, i);
        ASSERT_EQ(json_integer_value(json_object_get(a, "status")), 502);
        ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(a, "error"), "code")),
                      "instance_crashed");
    }
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(p, "error"), "status")), 502);
    long long dead_at = json_integer_value(json_object_get(p, "finished_ms"));
    json_decref(p);
    /* The others were not held up behind its retries: most were done before
     * the poison reached the dead-letter queue. */
    int before = 0;
    for (int i = 0; i < 8; i++) {
        json_t *g = wait_end(good[i], 20);
        ASSERT_STR_EQ(state_of(g), "succeeded");
        ASSERT_CMP(json_integer_value(json_object_get(g, "attempts")), <=, 3);
        before += json_integer_value(json_object_get(g, "finished_ms")) < dead_at;
        json_decref(g);
    }
    ASSERT_CMP(before, >=, 6);

    /* Recorded retry gaps follow the policy: attempt n+1 starts within
     * min(cap, base * 2^(n-1)) of attempt n's end (plus the runner's poll). */
    ASSERT_EQ(
        deployf(
            "{\"name\":\"flaky\",\"runtime\":\"exec\",\"command\":[\"%s\"],"
            "\"jobs\":{\"max_attempts\":5,\"backoff_base\":\"200ms\",\"backoff_cap\":\"400ms\"}}",
            testfn_path()),
        201);
    char ids[3][64];
    for (int k = 0; k < 3; k++)
        ASSERT_EQ(submit("flaky", "{\"input\":{\"op\":\"error\",\"message\":\"nope\"}}", NULL,
                         ids[k], sizeof(ids[k])),
                  202);
    long long total = 0;
    int gaps = 0;
    for (int k = 0; k < 3; k++) {
        json_t *j = wait_end(ids[k], 30);
        ASSERT_STR_EQ(state_of(j), "dead");
        json_t *l = json_object_get(j, "attempt_log");
        ASSERT_EQ(json_array_size(l), 5);
        for (size_t i = 1; i < json_array_size(l); i++) {
            long long end =
                json_integer_value(json_object_get(json_array_get(l, i - 1), "ended_ms"));
            long long start =
                json_integer_value(json_object_get(json_array_get(l, i), "started_ms"));
            long long ceiling = i == 1 ? 200 : 400;
            ASSERT_CMP(start - end, >=, 0);
            ASSERT_CMP(start - end, <=, ceiling + 150);
            total += start - end;
            gaps++;
        }
        ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                      "function_error");
        json_decref(j);
    }
    /* Jittered, not immediate: 12 uniform draws averaging near half their ceilings. */
    ASSERT_CMP(total / gaps, >, 40);
    ASSERT_CMP(total / gaps, <, 350);
    /* Attempts are counted for operators. */
    struct resp r;
    ASSERT_EQ(http(&N, "GET", "/metrics", NULL, NULL, &r), 0);
    ASSERT_CONTAINS(r.body, "thaw_job_attempts_total{deployment=\"flaky\",outcome=\"dead\"} 3");
    ASSERT_CONTAINS(r.body, "thaw_job_attempts_total{deployment=\"flaky\",outcome=\"retry\"} 12");
    ASSERT_CONTAINS(r.body, "thaw_jobs_unfinished{deployment=\"flaky\"} 0");
    resp_free(&r);
}

static void test_dlq(void)
{
    struct resp r;
    ASSERT_EQ(http(&N, "GET", "/v1/dlq?deployment=flaky", NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 200);
    json_t *j = resp_json(&r);
    resp_free(&r);
    json_t *dead = json_object_get(j, "jobs");
    ASSERT_EQ(json_array_size(dead), 3);
    char id[64], path[256];
    snprintf(id, sizeof(id), "%s",
             json_string_value(json_object_get(json_array_get(dead, 0), "id")));
    json_decref(j);
    snprintf(path, sizeof(path), "/v1/dlq/%s", id);
    ASSERT_EQ(http(&N, "GET", path, NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_CONTAINS(r.body, "\"dead\"");
    resp_free(&r);
    /* Replay one: it runs again from attempt 1 (and dies again). */
    snprintf(path, sizeof(path), "/v1/dlq/%s/replay", id);
    ASSERT_EQ(http(&N, "POST", path, NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_CONTAINS(r.body, "\"replayed\":1");
    resp_free(&r);
    j = wait_end(id, 30);
    ASSERT_STR_EQ(state_of(j), "dead");
    ASSERT_EQ(json_array_size(json_object_get(j, "attempt_log")), 5);
    json_decref(j);
    /* Purge one, then the rest of the deployment's. */
    snprintf(path, sizeof(path), "/v1/dlq/%s", id);
    ASSERT_EQ(http(&N, "DELETE", path, NULL, NULL, &r), 0);
    ASSERT_CONTAINS(r.body, "\"purged\":1");
    resp_free(&r);
    j = get_job(id, 0, NULL);
    ASSERT_CONTAINS(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                    "not_found");
    json_decref(j);
    ASSERT_EQ(http(&N, "DELETE", "/v1/dlq?deployment=flaky", NULL, NULL, &r), 0);
    ASSERT_CONTAINS(r.body, "\"purged\":2");
    resp_free(&r);
    /* Replay all of a deployment: the poison job comes back. */
    ASSERT_EQ(http(&N, "POST", "/v1/dlq/replay?deployment=pz", NULL, NULL, &r), 0);
    ASSERT_CONTAINS(r.body, "\"replayed\":1");
    resp_free(&r);
    ASSERT_EQ(http(&N, "GET", "/v1/dlq/job_0123456789abcdef0123456789abcdef", NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 404);
    resp_free(&r);
}

static void test_cancel_and_4xx(void)
{
    ASSERT_EQ(
        deployf("{\"name\":\"slow\",\"runtime\":\"exec\",\"command\":[\"%s\"],\"concurrency\":1,"
                "\"scale\":{\"max_instances\":1},\"jobs\":{\"queue_limit\":3}}",
                testfn_path()),
        201);
    char a[64], b[64], c[64];
    ASSERT_EQ(submit("slow", "{\"input\":{\"op\":\"sleep\",\"ms\":1500}}", NULL, a, sizeof(a)),
              202);
    ASSERT_EQ(submit("slow", "{\"input\":{\"op\":\"sleep\",\"ms\":10}}", NULL, b, sizeof(b)), 202);
    ASSERT_EQ(submit("slow", "{\"input\":{\"op\":\"sleep\",\"ms\":10}}", NULL, c, sizeof(c)), 202);
    /* Backpressure: three unfinished is the limit. */
    struct resp r;
    ASSERT_EQ(http(&N, "POST", "/v1/deployments/slow/jobs", "{\"input\":1}", NULL, &r), 0);
    ASSERT_EQ(r.status, 429);
    char ra[16];
    ASSERT(resp_header(&r, "Retry-After", ra, sizeof(ra)) != NULL);
    ASSERT_CONTAINS(r.body, "queue_full");
    resp_free(&r);
    /* Cancel one queued and the running one. */
    long t0 = now_ms();
    while (now_ms() - t0 < 5000) {
        json_t *j = get_job(a, 0, NULL);
        bool running = strcmp(state_of(j), "running") == 0;
        json_decref(j);
        if (running) break;
        sleep_ms(20);
    }
    char path[256];
    snprintf(path, sizeof(path), "/v1/jobs/%s", b);
    ASSERT_EQ(http(&N, "DELETE", path, NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_CONTAINS(r.body, "\"cancelled\"");
    resp_free(&r);
    ASSERT_EQ(http(&N, "DELETE", path, NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 409);
    resp_free(&r);
    snprintf(path, sizeof(path), "/v1/jobs/%s", a);
    ASSERT_EQ(http(&N, "DELETE", path, NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    /* The running one's answer comes later and is not recorded. */
    json_t *j = wait_end(c, 20);
    ASSERT_STR_EQ(state_of(j), "succeeded");
    json_decref(j);
    sleep_ms(300);
    j = get_job(a, 0, NULL);
    ASSERT_STR_EQ(state_of(j), "cancelled");
    ASSERT(json_object_get(j, "result") == NULL);
    json_decref(j);
    /* A job whose deployment is gone fails with its 404, once. */
    ASSERT_EQ(submit("slow", "{\"input\":{\"op\":\"sleep\",\"ms\":800}}", NULL, a, sizeof(a)), 202);
    ASSERT_EQ(submit("slow", "{\"input\":{\"op\":\"pid\"}}", NULL, b, sizeof(b)), 202);
    sleep_ms(200);
    ASSERT_EQ(http(&N, "DELETE", "/v1/deployments/slow", NULL, NULL, &r), 0);
    resp_free(&r);
    j = wait_end(b, 20);
    ASSERT_STR_EQ(state_of(j), "failed");
    ASSERT_EQ(json_integer_value(json_object_get(j, "attempts")), 1);
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(j, "error"), "status")), 404);
    json_decref(j);
}

/* A cancel racing a job's end leaves one final state, the one the DELETE
 * answered for: 200 means cancelled for good (its answer, if it comes, is
 * discarded and it is not retried), 409 means it had ended and keeps its
 * result. Jobs of varying length are cancelled at varying moments, queued,
 * running or done. */
static void test_cancel_races_completion(void)
{
    ASSERT_EQ(
        deployf("{\"name\":\"racy\",\"runtime\":\"exec\",\"command\":[\"%s\"],\"concurrency\":1,"
                "\"scale\":{\"max_instances\":1},\"jobs\":{\"max_attempts\":3}}",
                testfn_path()),
        201);
    enum { N_JOBS = 12 };
    char ids[N_JOBS][64];
    long cancel_status[N_JOBS];
    for (int i = 0; i < N_JOBS; i++) {
        char body[128];
        snprintf(body, sizeof(body), "{\"input\":{\"op\":\"sleep\",\"ms\":%d}}", (i % 4) * 20);
        ASSERT_EQ(submit("racy", body, NULL, ids[i], sizeof(ids[i])), 202);
        sleep_ms((i % 3) * 15); /* not a timing assert: only varies where the cancel lands */
        char path[128];
        snprintf(path, sizeof(path), "/v1/jobs/%.63s", ids[i]);
        struct resp r;
        ASSERT_EQ(http(&N, "DELETE", path, NULL, NULL, &r), 0);
        cancel_status[i] = r.status;
        resp_free(&r);
        ASSERT(cancel_status[i] == 200 || cancel_status[i] == 409);
    }
    /* With one slot, this job runs after every earlier attempt has answered
     * (a cancelled function's slot frees when its late answer comes), so
     * those answers have been dealt with once it has ended. */
    char last[64];
    ASSERT_EQ(submit("racy", "{\"input\":{\"op\":\"pid\"}}", NULL, last, sizeof(last)), 202);
    json_t *j = wait_end(last, 30);
    ASSERT_STR_EQ(state_of(j), "succeeded");
    json_decref(j);
    int n_cancelled = 0;
    for (int i = 0; i < N_JOBS; i++)
        n_cancelled += cancel_status[i] == 200;
    fprintf(stderr, "  %d of %d cancels came before the job's end\n", n_cancelled, N_JOBS);
    for (int i = 0; i < N_JOBS; i++) {
        j = get_job(ids[i], 0, NULL);
        if (cancel_status[i] == 200) {
            ASSERT_STR_EQ(state_of(j), "cancelled");
            ASSERT(json_object_get(j, "result") == NULL);
            ASSERT_CMP(json_integer_value(json_object_get(j, "attempts")), <=, 1);
        } else {
            ASSERT_STR_EQ(state_of(j), "succeeded");
            ASSERT(json_object_get(j, "result") != NULL);
        }
        json_decref(j);
    }
    struct resp r;
    ASSERT_EQ(http(&N, "DELETE", "/v1/deployments/racy", NULL, NULL, &r), 0);
    resp_free(&r);
}

/* A function that itself answers 503 or 429 is failing, not overloaded: its
 * attempts are spent like any other error's (a refunded attempt would keep
 * the job cycling for ever). */
static void test_function_busy_spends_attempts(void)
{
    ASSERT_EQ(deployf("{\"name\":\"busy\",\"runtime\":\"exec\",\"command\":[\"%s\"],"
                      "\"jobs\":{\"max_attempts\":2,\"backoff_base\":\"100ms\","
                      "\"backoff_cap\":\"200ms\"}}",
                      testfn_path()),
              201);
    char id[64];
    ASSERT_EQ(submit("busy",
                     "{\"input\":{\"op\":\"error\",\"message\":\"busy\",\"status\":503,"
                     "\"code\":\"overloaded\"}}",
                     NULL, id, sizeof(id)),
              202);
    json_t *j = wait_end(id, 30);
    ASSERT_STR_EQ(state_of(j), "dead");
    ASSERT_EQ(json_integer_value(json_object_get(j, "attempts")), 2);
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(j, "error"), "status")), 503);
    json_decref(j);
}

static void test_result_ttl(void)
{
    ASSERT_EQ(deployf("{\"name\":\"ttl\",\"runtime\":\"exec\",\"command\":[\"%s\"],"
                      "\"jobs\":{\"result_ttl\":\"1s\"}}",
                      testfn_path()),
              201);
    char id[64];
    ASSERT_EQ(submit("ttl", "{\"input\":{\"secret\":42}}", NULL, id, sizeof(id)), 202);
    json_t *j = wait_end(id, 20);
    ASSERT_STR_EQ(state_of(j), "succeeded");
    json_decref(j);
    sleep_ms(2500);
    long st = 0;
    j = get_job(id, 0, &st);
    ASSERT_EQ(st, 410);
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                  "result_expired");
    json_decref(j);
}

#ifdef TEST_ADMIN_KEY
static long call_as(const char *key, const char *method, const char *path, const char *body,
                    const char *extra_header, struct resp *r)
{
    char auth[200];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
    const char *h[] = {auth, extra_header, NULL};
    http(&N, method, path, body, h, r);
    return r->status;
}

static long status_as(const char *key, const char *method, const char *path, const char *body)
{
    struct resp r;
    long st = call_as(key, method, path, body, NULL, &r);
    resp_free(&r);
    return st;
}

static int make_key(const char *tenant, const char *scopes, char out[128])
{
    char path[128], body[256];
    snprintf(path, sizeof(path), "/v1/tenants/%s/keys", tenant);
    snprintf(body, sizeof(body), "{\"scopes\":%s}", scopes);
    struct resp r;
    http(&N, "POST", path, body, NULL, &r);
    json_t *j = resp_json(&r);
    const char *k = json_string_value(json_object_get(j, "key"));
    int ok = r.status == 201 && k;
    if (ok) snprintf(out, 128, "%s", k);
    json_decref(j);
    resp_free(&r);
    return ok ? 0 : -1;
}

/* Tenants: another tenant's jobs answer 404, listing everything is for
 * admins, scopes apply, and idempotency keys are per tenant. */
static void test_tenants(void)
{
    char ka[128], kb[128], kr[128], m[1024], ida[64], idb[64];
    ASSERT_EQ(status_as(TEST_ADMIN_KEY, "POST", "/v1/tenants", "{\"name\":\"ja\"}"), 201);
    ASSERT_EQ(status_as(TEST_ADMIN_KEY, "POST", "/v1/tenants", "{\"name\":\"jb\"}"), 201);
    ASSERT_EQ(make_key("ja", "[\"deploy\",\"invoke\",\"read\"]", ka), 0);
    ASSERT_EQ(make_key("jb", "[\"deploy\",\"invoke\",\"read\"]", kb), 0);
    ASSERT_EQ(make_key("jb", "[\"read\"]", kr), 0);
    snprintf(m, sizeof(m), "{\"name\":\"a-jobs\",\"runtime\":\"exec\",\"command\":[\"%s\"]}",
             testfn_path());
    ASSERT_EQ(status_as(ka, "POST", "/v1/deployments", m), 201);
    snprintf(m, sizeof(m), "{\"name\":\"b-jobs\",\"runtime\":\"exec\",\"command\":[\"%s\"]}",
             testfn_path());
    ASSERT_EQ(status_as(kb, "POST", "/v1/deployments", m), 201);
    struct resp r;
    ASSERT_EQ(call_as(ka, "POST", "/v1/deployments/a-jobs/jobs", "{\"input\":{\"t\":\"a\"}}",
                      "Idempotency-Key: shared-key", &r),
              202);
    json_t *j = resp_json(&r);
    snprintf(ida, sizeof(ida), "%s", json_string_value(json_object_get(j, "id")));
    json_decref(j);
    resp_free(&r);
    /* The same key in another tenant is another key: no 409, no leak. */
    ASSERT_EQ(call_as(kb, "POST", "/v1/deployments/b-jobs/jobs", "{\"input\":{\"t\":\"b\"}}",
                      "Idempotency-Key: shared-key", &r),
              202);
    j = resp_json(&r);
    snprintf(idb, sizeof(idb), "%s", json_string_value(json_object_get(j, "id")));
    json_decref(j);
    resp_free(&r);
    ASSERT(strcmp(ida, idb) != 0);
    char path[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s", ida);
    ASSERT_EQ(status_as(kb, "GET", path, NULL), 404);
    ASSERT_EQ(status_as(kb, "DELETE", path, NULL), 404);
    ASSERT_EQ(status_as(ka, "GET", path, NULL), 200);
    snprintf(path, sizeof(path), "/v1/jobs/%s?wait=1", ida);
    ASSERT_EQ(status_as(kb, "GET", path, NULL), 404);
    ASSERT_EQ(status_as(kb, "GET", "/v1/jobs", NULL), 403);
    ASSERT_EQ(status_as(kb, "GET", "/v1/jobs?deployment=a-jobs", NULL), 404);
    ASSERT_EQ(status_as(kb, "POST", "/v1/deployments/a-jobs/jobs", "{\"input\":1}"), 404);
    ASSERT_EQ(status_as(kb, "GET", "/v1/dlq?deployment=a-jobs", NULL), 404);
    ASSERT_EQ(status_as(kb, "POST", "/v1/dlq/replay", NULL), 403);
    ASSERT_EQ(status_as(kb, "GET", "/v1/dlq/webhooks", NULL), 403);
    ASSERT_EQ(status_as(kb, "GET", "/v1/jobs?deployment=b-jobs", NULL), 200);
    /* Scopes: a read-only key reads but does not submit or cancel. */
    ASSERT_EQ(status_as(kr, "POST", "/v1/deployments/b-jobs/jobs", "{\"input\":1}"), 403);
    snprintf(path, sizeof(path), "/v1/jobs/%s", idb);
    ASSERT_EQ(status_as(kr, "GET", path, NULL), 200);
    ASSERT_EQ(status_as(kr, "DELETE", path, NULL), 403);
    ASSERT_EQ(status_as(kr, "GET", "/v1/dlq?deployment=b-jobs", NULL), 403);
}
#endif

/* kill -9 with jobs running, then restart: everything queued or leased
 * runs again, and only jobs in flight at the kill ran twice. */
static void test_kill_and_restart(void)
{
    ASSERT_EQ(
        deployf("{\"name\":\"mk\",\"runtime\":\"exec\",\"command\":[\"%s\"],\"concurrency\":2,"
                "\"scale\":{\"max_instances\":1},\"env\":{\"TESTFN_MARKS\":\"%s\"},"
                /* the marks file is the test's record of executions, outside any
                 * instance's temp dir: this trusted function runs unsandboxed */
                "\"sandbox\":false}",
                testfn_path(), marks),
        201);
    char ids[6][64];
    for (int i = 0; i < 6; i++) {
        char body[128];
        snprintf(body, sizeof(body), "{\"input\":{\"op\":\"mark\",\"tag\":\"k%d\"}}", i);
        ASSERT_EQ(submit("mk", body, NULL, ids[i], sizeof(ids[i])), 202);
    }
    json_t *j = wait_end(ids[5], 20);
    json_decref(j);
    /* Slow ones: two in flight at the kill, two queued behind them. */
    ASSERT_EQ(
        submit("mk", "{\"input\":{\"op\":\"sleep\",\"ms\":3000}}", NULL, ids[0], sizeof(ids[0])),
        202);
    ASSERT_EQ(
        submit("mk", "{\"input\":{\"op\":\"sleep\",\"ms\":3000}}", NULL, ids[1], sizeof(ids[1])),
        202);
    ASSERT_EQ(
        submit("mk", "{\"input\":{\"op\":\"mark\",\"tag\":\"q0\"}}", NULL, ids[2], sizeof(ids[2])),
        202);
    ASSERT_EQ(
        submit("mk", "{\"input\":{\"op\":\"mark\",\"tag\":\"q1\"}}", NULL, ids[3], sizeof(ids[3])),
        202);
    sleep_ms(500);
    kill(N.pid, SIGKILL);
    waitpid(N.pid, NULL, 0);
    N.pid = 0;
    ASSERT_EQ(node_start(&N, NULL), 0);
    for (int i = 0; i < 4; i++) {
        j = wait_end(ids[i], 30);
        ASSERT_STR_EQ(state_of(j), "succeeded");
        json_decref(j);
    }
    for (int i = 0; i < 6; i++) {
        char tag[8];
        snprintf(tag, sizeof(tag), "k%d", i);
        ASSERT_EQ(count_marks(tag), 1);
    }
    ASSERT_EQ(count_marks("q0"), 1);
    ASSERT_EQ(count_marks("q1"), 1);
}

/* SIGTERM: running jobs finish (within the drain timeout), the node exits
 * 0, and what was still queued runs after the restart. */
static void test_sigterm(void)
{
    char a[64], b[64], c[64];
    ASSERT_EQ(submit("mk", "{\"input\":{\"op\":\"sleep\",\"ms\":600}}", NULL, a, sizeof(a)), 202);
    ASSERT_EQ(submit("mk", "{\"input\":{\"op\":\"sleep\",\"ms\":600}}", NULL, b, sizeof(b)), 202);
    ASSERT_EQ(submit("mk", "{\"input\":{\"op\":\"mark\",\"tag\":\"after\"}}", NULL, c, sizeof(c)),
              202);
    /* Wait until both are running (under sanitizers the restarted node is slow). */
    for (long t0 = now_ms(); now_ms() - t0 < 10000;) {
        json_t *ja = get_job(a, 0, NULL), *jb = get_job(b, 0, NULL);
        bool both = !strcmp(state_of(ja), "running") && !strcmp(state_of(jb), "running");
        json_decref(ja);
        json_decref(jb);
        if (both) break;
        sleep_ms(10);
    }
    kill(N.pid, SIGTERM);
    int st = 0;
    waitpid(N.pid, &st, 0);
    N.pid = 0;
    ASSERT(WIFEXITED(st));
    ASSERT_EQ(WEXITSTATUS(st), 0);
    ASSERT_EQ(node_start(&N, NULL), 0);
    json_t *j = get_job(a, 0, NULL);
    ASSERT_STR_EQ(state_of(j), "succeeded"); /* finished during the drain */
    json_decref(j);
    j = wait_end(c, 20);
    ASSERT_STR_EQ(state_of(j), "succeeded");
    json_decref(j);
    ASSERT_EQ(count_marks("after"), 1);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (node_start(&N, NULL)) {
        fprintf(stderr, "cannot start node\n");
        return 1;
    }
    snprintf(marks, sizeof(marks), "%s.marks", N.data);
    unlink(marks);
    RUN(test_submit_wait_list);
    RUN(test_bad_submissions);
    RUN(test_idempotency);
    RUN(test_poison_and_backoff);
    RUN(test_dlq);
    RUN(test_cancel_and_4xx);
    RUN(test_cancel_races_completion);
    RUN(test_function_busy_spends_attempts);
    RUN(test_result_ttl);
#ifdef TEST_ADMIN_KEY
    RUN(test_tenants);
#endif
    RUN(test_kill_and_restart);
    RUN(test_sigterm);
    node_cleanup(&N);
    unlink(marks);
    curl_global_cleanup();
    return TEST_REPORT();
}
