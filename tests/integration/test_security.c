/* Access control through the real binary: keys on every route (401), scopes
 * (403), tenants isolated from each other (404, never the data), grants,
 * jobs seen only by their submitting tenant, revoked and expired keys
 * refused at once, jobs spending their submitting key's and tenant's daily
 * requests and tokens (refused as an invoke is; queued ones failing once the
 * quota is spent or the key revoked), rate limits with their headers, the
 * audit trail whose
 * tampering `thaw audit verify` detects, and a node with security: off
 * (benchmarks) serving without keys on loopback only.
 * `test_security --rate-seconds N` runs only the rate-limit check, over N
 * seconds (the 10 s run is in the `long` label). */
#include "harness.h"
#include "test.h"

#include <curl/curl.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

static struct node N;
static char key_a[128], key_a_read[128], key_b[128], key_g[128];

static long call_as(const char *key, const char *method, const char *path, const char *body,
                    struct resp *r)
{
    char auth[200];
    snprintf(auth, sizeof(auth), "Authorization: %s%s", key ? "Bearer " : "", key ? key : "");
    const char *h[] = {auth, NULL};
    http(&N, method, path, body, h, r);
    return r->status;
}

static long status_as(const char *key, const char *method, const char *path, const char *body)
{
    struct resp r;
    long st = call_as(key, method, path, body, &r);
    resp_free(&r);
    return st;
}

/* Creates a key for tenant with scopes; copies the key string into out. */
static int make_key(const char *tenant, const char *scopes_json, const char *extra, char *out)
{
    char path[128], body[256];
    snprintf(path, sizeof(path), "/v1/tenants/%s/keys", tenant);
    snprintf(body, sizeof(body), "{\"scopes\":%s%s}", scopes_json, extra ? extra : "");
    struct resp r;
    http(&N, "POST", path, body, NULL, &r);
    json_t *j = resp_json(&r);
    const char *k = json_string_value(json_object_get(j, "key"));
    int ok = r.status == 201 && k;
    if (ok)
        snprintf(out, 128, "%s", k);
    else
        fprintf(stderr, "  make_key -> %ld %s\n", r.status, r.body);
    json_decref(j);
    resp_free(&r);
    return ok ? 0 : -1;
}

static void test_setup_tenants(void)
{
    ASSERT_EQ(status_as(TEST_ADMIN_KEY, "POST", "/v1/tenants", "{\"name\":\"acme\"}"), 201);
    ASSERT_EQ(status_as(TEST_ADMIN_KEY, "POST", "/v1/tenants", "{\"name\":\"beta\"}"), 201);
    ASSERT_EQ(status_as(TEST_ADMIN_KEY, "POST", "/v1/tenants",
                        "{\"name\":\"gamma\",\"limits\":{\"rps\":20,\"burst\":5}}"),
              201);
    ASSERT_EQ(status_as(TEST_ADMIN_KEY, "POST", "/v1/tenants", "{\"name\":\"acme\"}"), 409);
    ASSERT_EQ(status_as(TEST_ADMIN_KEY, "POST", "/v1/tenants", "{\"name\":\"Bad Name\"}"), 400);
    ASSERT_EQ(make_key("acme", "[\"deploy\",\"invoke\"]", NULL, key_a), 0);
    ASSERT_EQ(make_key("acme", "[\"read\"]", NULL, key_a_read), 0);
    ASSERT_EQ(make_key("beta", "[\"admin\"]", NULL, key_b), 0);
    ASSERT_EQ(make_key("gamma", "[\"read\"]", NULL, key_g), 0);
    char m[1024];
    snprintf(m, sizeof(m),
             "{\"name\":\"a-fn\",\"runtime\":\"exec\",\"command\":[\"%s\"],"
             "\"env\":{\"API_TOKEN\":\"acme-secret-token\"}}",
             testfn_path());
    struct resp r;
    ASSERT_EQ(call_as(key_a, "POST", "/v1/deployments", m, &r), 201);
    resp_free(&r);
}

static void test_every_route_needs_a_key(void)
{
    static const char *routes[][2] = {
        {"GET", "/v1/deployments"},
        {"POST", "/v1/deployments"},
        {"GET", "/v1/deployments/a-fn"},
        {"DELETE", "/v1/deployments/a-fn"},
        {"POST", "/v1/deployments/a-fn/invoke"},
        {"GET", "/v1/deployments/a-fn/grants"},
        {"GET", "/v1/tenants"},
        {"POST", "/v1/tenants"},
        {"GET", "/v1/tenants/acme/keys"},
        {"DELETE", "/v1/keys/0123456789abcdef"},
        {"GET", "/v1/audit"},
        {"GET", "/metrics"},
        {"GET", "/v1/jobs"},
        {"GET", "/v1/usage"},
        {"GET", "/v1/models"},
        {"POST", "/v1/chat/completions"},
        {"POST", "/v1/completions"},
        {"POST", "/v1/embeddings"},
        {"GET", "/no/such/route"},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        struct resp r;
        long st = call_as(NULL, routes[i][0], routes[i][1], "{}", &r);
        char www[64];
        if (st != 401 || !strstr(r.body, "\"unauthorized\"") ||
            !resp_header(&r, "WWW-Authenticate", www, sizeof(www))) {
            fprintf(stderr, "  FAIL: %s %s without a key -> %ld\n", routes[i][0], routes[i][1], st);
            test_cur_failed_ = 1;
        }
        resp_free(&r);
        st = status_as("thaw_0123456789abcdef_wrongwrongwrongwrongwrongwrongwrongwrong12",
                       routes[i][0], routes[i][1], "{}");
        if (st != 401) {
            fprintf(stderr, "  FAIL: %s %s with a bad key -> %ld\n", routes[i][0], routes[i][1],
                    st);
            test_cur_failed_ = 1;
        }
    }
    ASSERT_EQ(status_as("not-a-key", "GET", "/v1/deployments", NULL), 401);
    ASSERT_EQ(status_as(NULL, "GET", "/healthz", NULL), 200);
    ASSERT_EQ(status_as(NULL, "GET", "/readyz", NULL), 200);
}

static void test_scopes(void)
{
    /* read-only key: may look, not deploy or invoke. */
    ASSERT_EQ(status_as(key_a_read, "GET", "/v1/deployments/a-fn", NULL), 200);
    ASSERT_EQ(status_as(key_a_read, "POST", "/v1/deployments/a-fn/invoke", "{}"), 403);
    ASSERT_EQ(status_as(key_a_read, "DELETE", "/v1/deployments/a-fn", NULL), 403);
    ASSERT_EQ(status_as(key_a_read, "POST", "/v1/deployments", "{\"name\":\"x\"}"), 403);
    /* deploy+invoke key without admin: no tenant or key management. */
    ASSERT_EQ(status_as(key_a, "POST", "/v1/tenants", "{\"name\":\"evil\"}"), 403);
    ASSERT_EQ(status_as(key_a, "POST", "/v1/tenants/acme/keys", "{\"scopes\":[\"admin\"]}"), 403);
    ASSERT_EQ(status_as(key_a, "GET", "/v1/audit", NULL), 403);
    ASSERT_EQ(status_as(key_a, "GET", "/metrics", NULL), 403);
    ASSERT_EQ(status_as(key_a, "POST", "/v1/deployments/a-fn/invoke", "{\"k\":1}"), 200);
    /* A tenant admin cannot mint keys with more than it has, for others. */
    ASSERT_EQ(status_as(key_b, "POST", "/v1/tenants/acme/keys", "{\"scopes\":[\"read\"]}"), 403);
}

static void test_tenants_are_isolated(void)
{
    struct resp r;
    /* beta sees nothing of acme's: not in lists, 404 by name. */
    ASSERT_EQ(call_as(key_b, "GET", "/v1/deployments", NULL, &r), 200);
    ASSERT(strstr(r.body, "a-fn") == NULL);
    resp_free(&r);
    ASSERT_EQ(status_as(key_b, "GET", "/v1/deployments/a-fn", NULL), 404);
    ASSERT_EQ(status_as(key_b, "POST", "/v1/deployments/a-fn/invoke", "{}"), 404);
    ASSERT_EQ(status_as(key_b, "DELETE", "/v1/deployments/a-fn", NULL), 404);
    ASSERT_EQ(status_as(key_b, "GET", "/v1/tenants/acme/keys", NULL), 403);
    char m[1024];
    snprintf(m, sizeof(m), "{\"name\":\"a-fn\",\"runtime\":\"exec\",\"command\":[\"/bin/cat\"]}");
    ASSERT_EQ(call_as(key_b, "POST", "/v1/deployments", m, &r), 403); /* cannot take the name */
    ASSERT(strstr(r.body, "acme") == NULL);
    resp_free(&r);
    /* A tenant sees itself in the tenant list, and no one else. */
    ASSERT_EQ(call_as(key_a, "GET", "/v1/tenants", NULL, &r), 200);
    ASSERT_CONTAINS(r.body, "\"acme\"");
    ASSERT(strstr(r.body, "beta") == NULL);
    resp_free(&r);
    /* acme's key ids are not revocable by beta, nor even confirmed. */
    char id[17];
    memcpy(id, key_a + 5, 16);
    id[16] = 0;
    char path[64];
    snprintf(path, sizeof(path), "/v1/keys/%s", id);
    ASSERT_EQ(status_as(key_b, "DELETE", path, NULL), 404);
    ASSERT_EQ(status_as(key_a, "POST", "/v1/deployments/a-fn/invoke", "{}"), 200);
}

static void test_grants(void)
{
    ASSERT_EQ(status_as(key_b, "POST", "/v1/deployments/a-fn/invoke", "{}"), 404);
    ASSERT_EQ(status_as(key_b, "POST", "/v1/deployments/a-fn/grants", "{\"tenant\":\"beta\"}"),
              404);
    ASSERT_EQ(status_as(key_a, "POST", "/v1/deployments/a-fn/grants", "{\"tenant\":\"beta\"}"),
              201);
    ASSERT_EQ(status_as(key_b, "POST", "/v1/deployments/a-fn/invoke", "{\"via\":\"grant\"}"), 200);
    /* A grantee uses the deployment but does not read its env values; the
     * owner's keys and the platform admin do (the store has them sealed). */
    struct resp r;
    ASSERT_EQ(call_as(key_b, "GET", "/v1/deployments/a-fn", NULL, &r), 200);
    ASSERT_CONTAINS(r.body, "\"API_TOKEN\":\"(hidden)\"");
    ASSERT(strstr(r.body, "acme-secret-token") == NULL);
    resp_free(&r);
    ASSERT_EQ(call_as(key_b, "GET", "/v1/deployments", NULL, &r), 200);
    ASSERT_CONTAINS(r.body, "\"API_TOKEN\":\"(hidden)\"");
    ASSERT(strstr(r.body, "acme-secret-token") == NULL);
    resp_free(&r);
    ASSERT_EQ(call_as(key_a_read, "GET", "/v1/deployments/a-fn", NULL, &r), 200);
    ASSERT_CONTAINS(r.body, "\"API_TOKEN\":\"acme-secret-token\"");
    resp_free(&r);
    ASSERT_EQ(call_as(key_a_read, "GET", "/v1/deployments", NULL, &r), 200);
    ASSERT_CONTAINS(r.body, "\"API_TOKEN\":\"acme-secret-token\"");
    resp_free(&r);
    ASSERT_EQ(call_as(TEST_ADMIN_KEY, "GET", "/v1/deployments/a-fn", NULL, &r), 200);
    ASSERT_CONTAINS(r.body, "\"API_TOKEN\":\"acme-secret-token\"");
    resp_free(&r);
    ASSERT_EQ(call_as(key_b, "GET", "/v1/deployments/a-fn/versions", NULL, &r), 200);
    ASSERT(strstr(r.body, "acme-secret-token") == NULL);
    resp_free(&r);
    ASSERT_EQ(status_as(key_b, "DELETE", "/v1/deployments/a-fn", NULL), 403); /* use, not own */
    ASSERT_EQ(status_as(key_a, "DELETE", "/v1/deployments/a-fn/grants/beta", NULL), 200);
    ASSERT_EQ(status_as(key_b, "POST", "/v1/deployments/a-fn/invoke", "{}"), 404);
}

/* Usage is metered per tenant: beta's call through its grant counts for
 * beta, and neither tenant reads the other's. */
static void test_usage_is_per_tenant(void)
{
    struct resp r;
    ASSERT_EQ(call_as(key_b, "GET", "/v1/usage", NULL, &r), 200);
    json_t *j = resp_json(&r);
    resp_free(&r);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "tenant")), "beta");
    json_t *d = json_object_get(json_object_get(j, "deployments"), "a-fn");
    ASSERT_EQ(json_integer_value(json_object_get(d, "requests")), 1);
    json_decref(j);
    ASSERT_EQ(call_as(key_a, "GET", "/v1/usage", NULL, &r), 200);
    j = resp_json(&r);
    resp_free(&r);
    d = json_object_get(json_object_get(j, "deployments"), "a-fn");
    ASSERT_CMP(json_integer_value(json_object_get(d, "requests")), >=, 2);
    json_decref(j);
    ASSERT_EQ(status_as(key_b, "GET", "/v1/usage?tenant=acme", NULL), 403);
    ASSERT_EQ(status_as(key_a, "GET", "/v1/usage?tenant=beta", NULL), 403);
    ASSERT_EQ(status_as(TEST_ADMIN_KEY, "GET", "/v1/usage?tenant=beta", NULL), 200);
    ASSERT_EQ(status_as(TEST_ADMIN_KEY, "GET", "/v1/usage?tenant=nobody", NULL), 404);
}

/* The instance that answers "pid" for key (its per-process id), or -1. */
static long pid_as(const char *key, const char *name)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/deployments/%s/invoke", name);
    struct resp r;
    long st = call_as(key, "POST", path, "{\"op\":\"pid\"}", &r);
    json_t *j = st == 200 ? resp_json(&r) : NULL;
    long id = j ? (long)json_integer_value(json_object_get(j, "pid")) : -1;
    if (st != 200) fprintf(stderr, "  %s as %.12s -> %ld %s\n", name, key, st, r.body);
    json_decref(j);
    resp_free(&r);
    return id;
}

static void deploy_for_tenants(const char *name, int max_instances, bool shared)
{
    char m[1024], path[128];
    snprintf(m, sizeof(m),
             "{\"name\":\"%s\",\"runtime\":\"exec\",\"command\":[\"%s\"],\"concurrency\":4,"
             "\"shared\":%s,\"scale\":{\"max_instances\":%d}}",
             name, testfn_path(), shared ? "true" : "false", max_instances);
    ASSERT_EQ(status_as(key_a, "POST", "/v1/deployments", m), 201);
    snprintf(path, sizeof(path), "/v1/deployments/%s/grants", name);
    ASSERT_EQ(status_as(key_a, "POST", path, "{\"tenant\":\"beta\"}"), 201);
}

/* An instance serves one tenant unless the deployment is shared: acme and
 * beta (through a grant) never reach the same process, even when there is
 * room for only one instance at a time. */
static void test_instances_serve_one_tenant(void)
{
    deploy_for_tenants("iso", 2, false);
    long a1 = pid_as(key_a, "iso"), b1 = pid_as(key_b, "iso");
    long a2 = pid_as(key_a, "iso"), b2 = pid_as(key_b, "iso");
    ASSERT(a1 > 0 && b1 > 0);
    ASSERT_NE(a1, b1);
    ASSERT_EQ(a2, a1); /* each tenant keeps its own warm instance */
    ASSERT_EQ(b2, b1);
    /* Room for one: the idle instance of the other tenant makes way. */
    deploy_for_tenants("iso-one", 1, false);
    long x1 = pid_as(key_a, "iso-one"), y1 = pid_as(key_b, "iso-one");
    long x2 = pid_as(key_a, "iso-one");
    ASSERT(x1 > 0 && y1 > 0 && x2 > 0);
    ASSERT_NE(x1, y1);
    ASSERT_NE(y1, x2);
    /* shared: true lets one instance serve both. */
    deploy_for_tenants("shr", 1, true);
    long s1 = pid_as(key_a, "shr"), s2 = pid_as(key_b, "shr");
    ASSERT(s1 > 0);
    ASSERT_EQ(s1, s2);
}

/* A job is its submitter's (issue 3): acme owns the deployment and grants
 * beta and delta; beta's job is sealed under beta's key and seen only by
 * beta and the platform admin. The owner and the other grantee get 404 for
 * it everywhere (get, long-poll, cancel, dead letters) and never see it in a
 * list, whose query filters by tenant. */
#define JOB_MARKER "beta-job-marker-4417"

static void test_jobs_are_the_submitters(void)
{
    char key_d[128], path[256], id[64] = "";
    ASSERT_EQ(status_as(TEST_ADMIN_KEY, "POST", "/v1/tenants", "{\"name\":\"delta\"}"), 201);
    ASSERT_EQ(make_key("delta", "[\"deploy\",\"invoke\",\"read\"]", NULL, key_d), 0);
    char m[1024];
    snprintf(m, sizeof(m), "{\"name\":\"jobs-fn\",\"runtime\":\"exec\",\"command\":[\"%s\"]}",
             testfn_path());
    ASSERT_EQ(status_as(key_a, "POST", "/v1/deployments", m), 201);
    ASSERT_EQ(status_as(key_a, "POST", "/v1/deployments/jobs-fn/grants", "{\"tenant\":\"beta\"}"),
              201);
    ASSERT_EQ(status_as(key_a, "POST", "/v1/deployments/jobs-fn/grants", "{\"tenant\":\"delta\"}"),
              201);
    struct resp r;
    ASSERT_EQ(call_as(key_b, "POST", "/v1/deployments/jobs-fn/jobs",
                      "{\"input\":{\"secret\":\"" JOB_MARKER "\"}}", &r),
              202);
    json_t *j = resp_json(&r);
    resp_free(&r);
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(j, "id")));
    json_decref(j);
    ASSERT(id[0]);

    /* beta waits for its result; it ran and was stored as beta's. */
    snprintf(path, sizeof(path), "/v1/jobs/%s?wait=30", id);
    ASSERT_EQ(call_as(key_b, "GET", path, NULL, &r), 200);
    ASSERT_CONTAINS(r.body, "\"succeeded\"");
    ASSERT_CONTAINS(r.body, JOB_MARKER);
    resp_free(&r);

    /* The owner (acme) and the other grantee (delta): 404 and no data. */
    const char *others[] = {key_a_read, key_d};
    snprintf(path, sizeof(path), "/v1/jobs/%s", id);
    char waitp[256], dlqp[256];
    snprintf(waitp, sizeof(waitp), "/v1/jobs/%s?wait=1", id);
    snprintf(dlqp, sizeof(dlqp), "/v1/dlq/%s", id);
    for (size_t i = 0; i < 2; i++) {
        const char *k = others[i];
        ASSERT_EQ(call_as(k, "GET", path, NULL, &r), 404);
        ASSERT(strstr(r.body, JOB_MARKER) == NULL);
        resp_free(&r);
        ASSERT_EQ(call_as(k, "GET", waitp, NULL, &r), 404);
        ASSERT(strstr(r.body, JOB_MARKER) == NULL);
        resp_free(&r);
        ASSERT_EQ(call_as(k, "GET", "/v1/jobs?deployment=jobs-fn", NULL, &r), 200);
        ASSERT(strstr(r.body, id) == NULL);
        ASSERT(strstr(r.body, JOB_MARKER) == NULL);
        resp_free(&r);
    }
    ASSERT_EQ(status_as(key_a, "DELETE", path, NULL), 404);
    ASSERT_EQ(status_as(key_d, "DELETE", path, NULL), 404);
    ASSERT_EQ(status_as(key_d, "GET", dlqp, NULL), 404);
    ASSERT_EQ(status_as(key_a, "GET", dlqp, NULL), 404);

    /* beta and the platform admin see it; beta's cancel reaches it (ended). */
    ASSERT_EQ(call_as(key_b, "GET", "/v1/jobs?deployment=jobs-fn", NULL, &r), 200);
    ASSERT_CONTAINS(r.body, id);
    resp_free(&r);
    ASSERT_EQ(status_as(key_b, "DELETE", path, NULL), 409);
    ASSERT_EQ(call_as(TEST_ADMIN_KEY, "GET", path, NULL, &r), 200);
    ASSERT_CONTAINS(r.body, JOB_MARKER);
    resp_free(&r);
    ASSERT_EQ(call_as(TEST_ADMIN_KEY, "GET", "/v1/jobs?deployment=jobs-fn", NULL, &r), 200);
    ASSERT_CONTAINS(r.body, id);
    resp_free(&r);

    /* At rest: the row names beta, and its input is sealed under beta's
     * key (a sealed blob starts with its tenant's name). */
    char db[400];
    snprintf(db, sizeof(db), "%s/thaw.db", N.data);
    sqlite3 *s;
    sqlite3_stmt *st;
    ASSERT_EQ(sqlite3_open(db, &s), SQLITE_OK);
    ASSERT_EQ(sqlite3_prepare_v2(s, "SELECT tenant, input, result FROM jobs WHERE id = ?1", -1, &st,
                                 NULL),
              SQLITE_OK);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
    ASSERT_STR_EQ((const char *)sqlite3_column_text(st, 0), "beta");
    for (int c = 1; c <= 2; c++) {
        const unsigned char *b = sqlite3_column_blob(st, c);
        ASSERT(b && sqlite3_column_bytes(st, c) > 5);
        ASSERT(b[0] == 4 && memcmp(b + 1, "beta", 4) == 0);
    }
    sqlite3_finalize(st);
    sqlite3_close(s);
}

/* ---- jobs spend the submitting key's and tenant's quotas ---- */

/* Submits input as a job of name with key; 202 copies its id into id. */
static long submit_job(const char *key, const char *name, const char *body, char *id, size_t n)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/deployments/%s/jobs", name);
    struct resp r;
    long st = call_as(key, "POST", path, body, &r);
    if (st == 202 && id) {
        json_t *j = resp_json(&r);
        const char *s = json_string_value(json_object_get(j, "id"));
        snprintf(id, n, "%s", s ? s : "");
        json_decref(j);
    }
    resp_free(&r);
    return st;
}

/* The ended job id, read (and long-polled) with the admin key so that no
 * request of the key under test is spent; NULL if it never ends. */
static json_t *job_end(const char *id)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s?wait=30", id);
    for (int i = 0; i < 10; i++) {
        struct resp r;
        json_t *j = NULL;
        if (call_as(TEST_ADMIN_KEY, "GET", path, NULL, &r) == 200) j = resp_json(&r);
        resp_free(&r);
        const char *st = json_string_value(json_object_get(j, "state"));
        if (st && strcmp(st, "queued") && strcmp(st, "running")) return j;
        json_decref(j);
    }
    return NULL;
}

static const char *job_state(const json_t *j)
{
    return json_string_value(json_object_get(j, "state"));
}

static const char *job_error_code(const json_t *j)
{
    return json_string_value(json_object_get(json_object_get(j, "error"), "code"));
}

/* tenant's tokens (prompt + completion) for deployment today, as the admin
 * reads /v1/usage, once they reach want (bounded: the runner records an
 * attempt's usage after its answer). */
static long usage_tokens(const char *tenant, const char *deployment, const char *field, long want)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/usage?tenant=%s", tenant);
    long v = -1;
    for (int i = 0; i < 200; i++) {
        struct resp r;
        if (call_as(TEST_ADMIN_KEY, "GET", path, NULL, &r) == 200) {
            json_t *j = resp_json(&r);
            json_t *d = json_object_get(json_object_get(j, "deployments"), deployment);
            v = field ? (long)json_integer_value(json_object_get(d, field))
                      : (long)(json_integer_value(json_object_get(d, "prompt_tokens")) +
                               json_integer_value(json_object_get(d, "completion_tokens")));
            json_decref(j);
        }
        resp_free(&r);
        if (v >= want) break;
        sleep_ms(50);
    }
    return v;
}

static char qmodel[300];

/* An llm deployment of a generated model, usable by tenants; jobs one at a
 * time, so each attempt is checked after the previous one was charged. */
static void deploy_quota_llm(void)
{
    char cmd[1024];
    snprintf(qmodel, sizeof(qmodel), "/tmp/thaw-test-security-%d.gguf", (int)getpid());
    snprintf(cmd, sizeof(cmd), "%s model gen --preset tiny --type F32 --seed 11 -o %s >/dev/null",
             thaw_path(), qmodel);
    ASSERT_EQ(system(cmd), 0);
    char m[1024];
    snprintf(m, sizeof(m),
             "{\"name\":\"q-llm\",\"runtime\":\"llm\",\"model\":\"%s\",\"parallel\":1,"
             "\"sampling\":{\"temperature\":0},\"scale\":{\"max_instances\":4},"
             "\"jobs\":{\"concurrency\":1}}",
             qmodel);
    ASSERT_EQ(status_as(TEST_ADMIN_KEY, "POST", "/v1/deployments", m), 201);
}

#define QUOTA_JOB "{\"input\":{\"op\":\"complete\",\"prompt\":\"Hello\",\"max_tokens\":6}}"

/* llm jobs, one by one, until the tenant's daily_tokens are spent: the
 * submission that follows gets the invoke route's 429 (same code and
 * message), the tokens are in usage and in the key's count, and a
 * synchronous call is refused too. */
static void test_job_tokens_spend_daily_tokens(void)
{
    deploy_quota_llm();
    ASSERT_EQ(status_as(TEST_ADMIN_KEY, "POST", "/v1/tenants",
                        "{\"name\":\"qtok\",\"limits\":{\"daily_tokens\":30}}"),
              201);
    ASSERT_EQ(
        status_as(TEST_ADMIN_KEY, "POST", "/v1/deployments/q-llm/grants", "{\"tenant\":\"qtok\"}"),
        201);
    char k[128], id[64];
    ASSERT_EQ(make_key("qtok", "[\"invoke\",\"read\"]", NULL, k), 0);
    long spent = 0;
    int ran = 0;
    long st = 0;
    for (int i = 0; i < 30; i++) {
        st = submit_job(k, "q-llm", QUOTA_JOB, id, sizeof(id));
        if (st != 202) break;
        json_t *j = job_end(id);
        ASSERT(j != NULL);
        ASSERT_STR_EQ(job_state(j), "succeeded");
        json_t *u = json_object_get(json_object_get(j, "result"), "usage");
        long t = (long)(json_integer_value(json_object_get(u, "prompt_tokens")) +
                        json_integer_value(json_object_get(u, "completion_tokens")));
        ASSERT_CMP(t, >, 0);
        spent += t;
        ran++;
        json_decref(j);
        /* the runner charges after it recorded the answer */
        ASSERT_EQ(usage_tokens("qtok", "q-llm", NULL, spent), spent);
    }
    ASSERT_EQ(st, 429);
    ASSERT_CMP(ran, >=, 1);
    ASSERT_CMP(spent, >=, 30);
    ASSERT_CMP(spent - 30, <, spent / ran + 1); /* refused once the limit was reached */
    struct resp rj, ri;
    ASSERT_EQ(call_as(k, "POST", "/v1/deployments/q-llm/jobs", QUOTA_JOB, &rj), 429);
    char ra[32];
    ASSERT(resp_header(&rj, "Retry-After", ra, sizeof(ra)) != NULL);
    ASSERT_EQ(call_as(k, "POST", "/v1/deployments/q-llm/invoke",
                      "{\"op\":\"complete\",\"prompt\":\"Hello\",\"max_tokens\":6}", &ri),
              429);
    ASSERT_CONTAINS(rj.body, "\"code\":\"rate_limited\"");
    ASSERT_STR_EQ(rj.body, ri.body); /* the same error as the synchronous call */
    resp_free(&rj);
    resp_free(&ri);
    /* a batch of the same is refused as a whole; usage counted every job */
    ASSERT_EQ(submit_job(k, "q-llm", "{\"inputs\":[1,2]}", NULL, 0), 429);
    ASSERT_EQ(usage_tokens("qtok", "q-llm", "requests", ran), ran);
    ASSERT_EQ(usage_tokens("qtok", "q-llm", NULL, spent), spent);
    /* The key's own limit counts job tokens too (another key of the
     * tenant is stopped by the tenant's limit, this one by its own). */
    ASSERT_EQ(status_as(TEST_ADMIN_KEY, "POST", "/v1/tenants", "{\"name\":\"qkey\"}"), 201);
    ASSERT_EQ(
        status_as(TEST_ADMIN_KEY, "POST", "/v1/deployments/q-llm/grants", "{\"tenant\":\"qkey\"}"),
        201);
    char k1[128], k2[128];
    ASSERT_EQ(make_key("qkey", "[\"invoke\"]", ",\"limits\":{\"daily_tokens\":1}", k1), 0);
    ASSERT_EQ(make_key("qkey", "[\"invoke\"]", NULL, k2), 0);
    ASSERT_EQ(submit_job(k1, "q-llm", QUOTA_JOB, id, sizeof(id)), 202);
    json_t *j = job_end(id);
    ASSERT_STR_EQ(job_state(j), "succeeded");
    json_decref(j);
    ASSERT_CMP(usage_tokens("qkey", "q-llm", NULL, 1), >=, 1);
    ASSERT_EQ(submit_job(k1, "q-llm", QUOTA_JOB, NULL, 0), 429);
    ASSERT_EQ(submit_job(k2, "q-llm", QUOTA_JOB, id, sizeof(id)), 202);
    j = job_end(id);
    ASSERT_STR_EQ(job_state(j), "succeeded");
    json_decref(j);
}

/* A queue of llm jobs whose tenant runs out of tokens part way: the jobs
 * that start after that fail at once with the 429's code and reason (not
 * retried, not metered); those before succeeded. */
static void test_queued_jobs_fail_when_tokens_run_out(void)
{
    ASSERT_EQ(status_as(TEST_ADMIN_KEY, "POST", "/v1/tenants",
                        "{\"name\":\"qbatch\",\"limits\":{\"daily_tokens\":12}}"),
              201);
    ASSERT_EQ(status_as(TEST_ADMIN_KEY, "POST", "/v1/deployments/q-llm/grants",
                        "{\"tenant\":\"qbatch\"}"),
              201);
    char k[128];
    ASSERT_EQ(make_key("qbatch", "[\"invoke\"]", NULL, k), 0);
    struct resp r;
    const char *in = "{\"op\":\"complete\",\"prompt\":\"Hello\",\"max_tokens\":6}";
    char body[1024];
    snprintf(body, sizeof(body), "{\"inputs\":[%s,%s,%s,%s,%s]}", in, in, in, in, in);
    ASSERT_EQ(call_as(k, "POST", "/v1/deployments/q-llm/jobs", body, &r), 202);
    json_t *whole = resp_json(&r);
    json_t *doc = json_incref(json_object_get(whole, "jobs"));
    json_decref(whole);
    resp_free(&r);
    ASSERT_EQ(json_array_size(doc), 5);
    int ok = 0, refused = 0;
    long spent = 0;
    for (size_t i = 0; i < json_array_size(doc); i++) {
        const char *id = json_string_value(json_object_get(json_array_get(doc, i), "id"));
        json_t *j = job_end(id);
        ASSERT(j != NULL);
        if (!strcmp(job_state(j), "succeeded")) {
            json_t *u = json_object_get(json_object_get(j, "result"), "usage");
            spent += (long)(json_integer_value(json_object_get(u, "prompt_tokens")) +
                            json_integer_value(json_object_get(u, "completion_tokens")));
            ok++;
        } else {
            ASSERT_STR_EQ(job_state(j), "failed");
            ASSERT_STR_EQ(job_error_code(j), "rate_limited");
            ASSERT_EQ(json_integer_value(json_object_get(json_object_get(j, "error"), "status")),
                      429);
            ASSERT_CONTAINS(
                json_string_value(json_object_get(json_object_get(j, "error"), "message")),
                "daily_tokens");
            ASSERT_EQ(json_integer_value(json_object_get(j, "attempts")), 1);
            refused++;
        }
        json_decref(j);
    }
    json_decref(doc);
    ASSERT_CMP(ok, >=, 1);
    ASSERT_CMP(refused, >=, 1);
    ASSERT_CMP(spent, >=, 12);
    /* only the jobs that ran are in usage */
    ASSERT_EQ(usage_tokens("qbatch", "q-llm", "requests", ok), ok);
    ASSERT_EQ(usage_tokens("qbatch", "q-llm", NULL, spent), spent);
}

/* A batch of n jobs counts n daily requests of the key (exec jobs: no
 * tokens): one that does not fit is refused whole, with the invoke route's
 * 429 code; what fits is accepted. */
static void test_jobs_spend_daily_requests(void)
{
    char k[128], id[64];
    ASSERT_EQ(make_key("acme", "[\"invoke\"]", ",\"limits\":{\"daily_requests\":6}", k), 0);
    ASSERT_EQ(submit_job(k, "jobs-fn", "{\"input\":{\"n\":1}}", id, sizeof(id)), 202); /* 1 */
    ASSERT_EQ(submit_job(k, "jobs-fn", "{\"inputs\":[2,3,4]}", NULL, 0), 202);         /* 4 */
    struct resp r;
    ASSERT_EQ(call_as(k, "POST", "/v1/deployments/jobs-fn/jobs", "{\"inputs\":[5,6,7]}", &r),
              429); /* 5: needs 2 more */
    ASSERT_CONTAINS(r.body, "\"code\":\"rate_limited\"");
    ASSERT_CONTAINS(r.body, "daily_requests");
    resp_free(&r);
    ASSERT_EQ(submit_job(k, "jobs-fn", "{\"input\":{\"n\":8}}", NULL, 0), 202); /* 6 */
    ASSERT_EQ(call_as(k, "POST", "/v1/deployments/jobs-fn/invoke", "{\"n\":9}", &r), 429);
    ASSERT_CONTAINS(r.body, "daily_requests");
    resp_free(&r);
    json_t *j = job_end(id);
    ASSERT_STR_EQ(job_state(j), "succeeded");
    json_decref(j);
}

/* Jobs of a key revoked after they were submitted: those that had not
 * started fail with the 401 a request with that key gets (not retried,
 * nothing run or metered); one running at the revocation finishes its
 * attempt, and a retry of it is refused the same way. */
static void test_revoked_key_stops_its_queued_jobs(void)
{
    char m[1024];
    snprintf(m, sizeof(m),
             "{\"name\":\"q-fn\",\"runtime\":\"exec\",\"command\":[\"%s\"],\"timeout\":\"1s\","
             "\"scale\":{\"max_instances\":1},"
             "\"jobs\":{\"concurrency\":1,\"max_attempts\":3,\"backoff_base\":\"10ms\"}}",
             testfn_path());
    ASSERT_EQ(status_as(key_a, "POST", "/v1/deployments", m), 201);
    char k[128], first[64], ids[4][64];
    ASSERT_EQ(make_key("acme", "[\"invoke\"]", NULL, k), 0);
    /* The first never answers: it holds the only slot until it times out. */
    ASSERT_EQ(submit_job(k, "q-fn", "{\"input\":{\"op\":\"hang\"}}", first, sizeof(first)), 202);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(submit_job(k, "q-fn", "{\"input\":{\"n\":1}}", ids[i], sizeof(ids[i])), 202);
    /* Until it is on the instance (past the runner's check of its key). */
    int in_flight = 0;
    for (int i = 0; i < 1200 && in_flight < 1; i++) {
        json_t *st = status_of(&N, "q-fn");
        in_flight = (int)json_integer_value(json_object_get(st, "in_flight"));
        json_decref(st);
        if (in_flight < 1) sleep_ms(25);
    }
    ASSERT_EQ(in_flight, 1);
    char path[128];
    struct resp r;
    snprintf(path, sizeof(path), "/v1/keys/%.16s", k + 5);
    ASSERT_EQ(status_as(TEST_ADMIN_KEY, "DELETE", path, NULL), 200);
    ASSERT_EQ(call_as(k, "POST", "/v1/deployments/q-fn/jobs", "{\"input\":1}", &r), 401);
    resp_free(&r);
    for (int i = 0; i < 4; i++) {
        json_t *j = job_end(ids[i]);
        ASSERT(j != NULL);
        ASSERT_STR_EQ(job_state(j), "failed");
        ASSERT_STR_EQ(job_error_code(j), "unauthorized");
        ASSERT_EQ(json_integer_value(json_object_get(json_object_get(j, "error"), "status")), 401);
        ASSERT_CONTAINS(json_string_value(json_object_get(json_object_get(j, "error"), "message")),
                        "revoked");
        ASSERT_EQ(json_integer_value(json_object_get(j, "attempts")), 1);
        json_decref(j);
    }
    json_t *j = job_end(first);
    ASSERT(j != NULL);
    ASSERT_STR_EQ(job_state(j), "failed");
    ASSERT_STR_EQ(job_error_code(j), "unauthorized");
    json_t *log = json_object_get(j, "attempt_log");
    ASSERT_CMP(json_array_size(log), >=, 1);
    /* its first attempt ran (and timed out); the retry was refused */
    ASSERT_EQ(json_integer_value(json_object_get(json_array_get(log, 0), "status")), 504);
    json_decref(j);
    /* nothing of the refused jobs was metered: only the hung attempt */
    ASSERT_EQ(usage_tokens("acme", "q-fn", "requests", 1), 1);
}

static void test_revoked_and_expired_keys(void)
{
    char k[128], rotated[128];
    ASSERT_EQ(make_key("acme", "[\"read\"]", NULL, k), 0);
    /* Used a few times first, so every gateway thread has it as a verified
     * key: revocation must still stop it on the very next request. */
    for (int i = 0; i < 6; i++)
        ASSERT_EQ(status_as(k, "GET", "/v1/deployments", NULL), 200);
    char path[64];
    snprintf(path, sizeof(path), "/v1/keys/%.16s", k + 5);
    ASSERT_EQ(status_as(TEST_ADMIN_KEY, "DELETE", path, NULL), 200);
    struct resp r;
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(call_as(k, "GET", "/v1/deployments", NULL, &r), 401);
        ASSERT_CONTAINS(r.body, "revoked");
        resp_free(&r);
    }
    /* Rotation: the new key works, the old one stops at once. */
    ASSERT_EQ(make_key("acme", "[\"read\"]", NULL, k), 0);
    for (int i = 0; i < 6; i++)
        ASSERT_EQ(status_as(k, "GET", "/v1/deployments", NULL), 200);
    snprintf(path, sizeof(path), "/v1/keys/%.16s/rotate", k + 5);
    ASSERT_EQ(call_as(TEST_ADMIN_KEY, "POST", path, NULL, &r), 200);
    json_t *j = resp_json(&r);
    snprintf(rotated, sizeof(rotated), "%s", json_string_value(json_object_get(j, "key")));
    json_decref(j);
    resp_free(&r);
    ASSERT_EQ(status_as(rotated, "GET", "/v1/deployments", NULL), 200);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(status_as(k, "GET", "/v1/deployments", NULL), 401);
    /* Expiry. */
    ASSERT_EQ(make_key("acme", "[\"read\"]", ",\"expires_in\":\"1s\"", k), 0);
    ASSERT_EQ(status_as(k, "GET", "/v1/deployments", NULL), 200);
    sleep_ms(1200);
    ASSERT_EQ(call_as(k, "GET", "/v1/deployments", NULL, &r), 401);
    ASSERT_CONTAINS(r.body, "expired");
    resp_free(&r);
}

static int rate_seconds = 3;

static void test_rate_limit(void)
{
    /* gamma: 20 requests/s with a burst of 5. Over rate_seconds of
     * hammering, the allowed count is 5 + 20 x seconds within 5%. */
    int ok = 0, limited = 0;
    long t0 = now_ms();
    char ra[16] = "", lim[16] = "";
    int ok_with_headers = 0;
    while (now_ms() - t0 < rate_seconds * 1000L) {
        struct resp r;
        long st = call_as(key_g, "GET", "/v1/deployments", NULL, &r);
        if (st == 200) ok++;
        /* An allowed request carries the headers once half the burst is
         * spent (so after the first few, here every one). */
        char rem[16] = "", l2[16] = "";
        if (st == 200 && resp_header(&r, "x-ratelimit-remaining", rem, sizeof(rem))) {
            ok_with_headers++;
            ASSERT(resp_header(&r, "x-ratelimit-limit", l2, sizeof(l2)) != NULL);
            ASSERT_CMP(atoi(rem) * 2, <, atoi(l2));
        }
        if (st == 429) {
            limited++;
            resp_header(&r, "Retry-After", ra, sizeof(ra));
            resp_header(&r, "x-ratelimit-limit", lim, sizeof(lim));
        }
        resp_free(&r);
    }
    double elapsed = (now_ms() - t0) / 1000.0;
    double expected = 5 + 20 * elapsed;
    fprintf(stderr, "  rate limit: %d allowed, %d limited in %.2fs (expected %.0f)\n", ok, limited,
            elapsed, expected);
    ASSERT_CMP(limited, >, 0);
    ASSERT_CMP(ok_with_headers, >, 0);
    ASSERT_NEAR(ok, expected, expected * 0.05 + 1);
    ASSERT_STR_EQ(ra, "1");
    ASSERT_STR_EQ(lim, "5");
    /* acme has no limit. */
    ASSERT_EQ(status_as(key_a, "GET", "/v1/deployments", NULL), 200);
}

static void test_audit_trail(void)
{
    struct resp r;
    ASSERT_EQ(http(&N, "GET", "/v1/audit", NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_CONTAINS(r.body, "\"tenant.create\"");
    ASSERT_CONTAINS(r.body, "\"key.revoke\"");
    ASSERT_CONTAINS(r.body, "\"deployment.create\"");
    ASSERT_CONTAINS(r.body, "\"grant.add\"");
    /* No key material in the trail or the log. */
    ASSERT(strstr(r.body, key_a + 22) == NULL);
    resp_free(&r);
    ASSERT_EQ(node_log_count(&N, key_a + 22), 0);
    ASSERT_EQ(node_log_count(&N, key_b + 22), 0);

    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "THAW_KEK=%s %s audit verify --data %s >/dev/null 2>&1", TEST_KEK,
             thaw_path(), N.data);
    int st = system(cmd);
    ASSERT_EQ(WEXITSTATUS(st), 0);
    /* Edit one entry behind the node's back: verify names it. */
    char db[400];
    snprintf(db, sizeof(db), "%s/thaw.db", N.data);
    sqlite3 *s;
    ASSERT_EQ(sqlite3_open(db, &s), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(s, "UPDATE audit SET target = 'forged' WHERE seq = 3", NULL, NULL, NULL),
              SQLITE_OK);
    sqlite3_close(s);
    snprintf(cmd, sizeof(cmd), "THAW_KEK=%s %s audit verify --data %s 2>&1", TEST_KEK, thaw_path(),
             N.data);
    FILE *p = popen(cmd, "r");
    char out[1024] = "";
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = 0;
    st = pclose(p);
    ASSERT_NE(WEXITSTATUS(st), 0);
    ASSERT_CONTAINS(out, "entry 3");
    /* Deleting an entry is caught too. */
    ASSERT_EQ(sqlite3_open(db, &s), SQLITE_OK);
    sqlite3_exec(s,
                 "UPDATE audit SET target = (SELECT target FROM audit WHERE seq = 4) WHERE seq = 3",
                 NULL, NULL, NULL);
    ASSERT_EQ(sqlite3_exec(s, "DELETE FROM audit WHERE seq = 5", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(s);
    p = popen(cmd, "r");
    n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = 0;
    st = pclose(p);
    ASSERT_NE(WEXITSTATUS(st), 0);
}

static void test_tenant_delete_revokes_keys(void)
{
    ASSERT_EQ(status_as(key_b, "GET", "/v1/deployments", NULL), 200);
    ASSERT_EQ(status_as(TEST_ADMIN_KEY, "DELETE", "/v1/tenants/beta", NULL), 200);
    ASSERT_EQ(status_as(key_b, "GET", "/v1/deployments", NULL), 401);
    ASSERT_EQ(status_as(TEST_ADMIN_KEY, "DELETE", "/v1/tenants/root", NULL), 400);
}

/* security: off serves without keys (as the root admin) and says so loudly
 * in the log; the same node refuses to listen beyond loopback with it. */
static void test_security_off(void)
{
    struct node off = {0};
    const char *flags[] = {"--security", "off", NULL};
    ASSERT_EQ(node_start(&off, flags), 0);
    const char *none[] = {"Authorization:", NULL};
    struct resp r;
    ASSERT_EQ(http(&off, "GET", "/v1/deployments", NULL, none, &r), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT(strstr(r.headers, "x-ratelimit") == NULL);
    resp_free(&r);
    ASSERT_EQ(node_log_count(&off, "\"security_off\""), 1);
    node_cleanup(&off);
    struct node wide = {0};
    const char *flags_wide[] = {"--security", "off", "--listen", "0.0.0.0:0", NULL};
    ASSERT(node_start(&wide, flags_wide) != 0);
    ASSERT_EQ(node_log_count(&wide, "only allowed on a loopback address"), 1);
    node_cleanup(&wide);
}

int main(int argc, char **argv)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (node_start(&N, NULL)) {
        fprintf(stderr, "cannot start node\n");
        return 1;
    }
    if (argc == 3 && !strcmp(argv[1], "--rate-seconds")) {
        rate_seconds = atoi(argv[2]);
        RUN(test_setup_tenants);
        RUN(test_rate_limit);
        node_cleanup(&N);
        curl_global_cleanup();
        return TEST_REPORT();
    }
    RUN(test_setup_tenants);
    RUN(test_every_route_needs_a_key);
    RUN(test_scopes);
    RUN(test_tenants_are_isolated);
    RUN(test_grants);
    RUN(test_usage_is_per_tenant);
    RUN(test_instances_serve_one_tenant);
    RUN(test_jobs_are_the_submitters);
    RUN(test_revoked_and_expired_keys);
    RUN(test_job_tokens_spend_daily_tokens);
    RUN(test_queued_jobs_fail_when_tokens_run_out);
    RUN(test_jobs_spend_daily_requests);
    RUN(test_revoked_key_stops_its_queued_jobs);
    RUN(test_rate_limit);
    RUN(test_audit_trail);
    RUN(test_tenant_delete_revokes_keys);
    RUN(test_security_off);
    node_cleanup(&N);
    if (qmodel[0]) unlink(qmodel);
    curl_global_cleanup();
    return TEST_REPORT();
}
