/* Versions and traffic end to end, through the real binary: the same
 * manifest is the same version, weights split traffic within statistical
 * tolerance, sticky keys and pins hold, promote and rollback under load
 * fail nothing, GC keeps what any version names, shadow answers are
 * discarded but recorded, and canary analysis rolls back a failing version
 * (audited) and steps a healthy one up. The versions of one deployment
 * differ by their testfn environment: TESTFN_TAG marks each answer with the
 * version's tag, TESTFN_FAIL makes it answer errors.
 * THAW_SPLIT_N sets the split test's request count (default 10000: eight
 * keep-alive connections make it a few seconds, even under sanitizers). */
#include "harness.h"
#include "test.h"

#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <strings.h>

static struct node N;
#define NAME "vt"

static char manifest_a[2048], manifest_b[2048];

static void manifest(char *out, size_t n, const char *name, const char *env_json)
{
    snprintf(out, n,
             "{\"name\":\"%s\",\"runtime\":\"exec\",\"command\":[\"%s\"],\"concurrency\":8,"
             "\"env\":%s,\"scale\":{\"max_instances\":2,\"queue_timeout\":\"30s\"}}",
             name, testfn_path(), env_json);
}

static json_t *post(const char *path, const char *body, long *status)
{
    struct resp r;
    if (http(&N, "POST", path, body ? body : "{}", NULL, &r)) {
        *status = -1;
        return NULL;
    }
    *status = r.status;
    json_t *j = resp_json(&r);
    resp_free(&r);
    return j;
}

static json_t *get(const char *path)
{
    struct resp r;
    if (http(&N, "GET", path, NULL, NULL, &r)) return NULL;
    json_t *j = r.status == 200 ? resp_json(&r) : NULL;
    resp_free(&r);
    return j;
}

static int weight_of(json_t *traffic, const char *v)
{
    return (int)json_integer_value(json_object_get(json_object_get(traffic, "weights"), v));
}

/* ---- a keep-alive load generator ---- */

struct load {
    const char *name;
    int count; /* requests to send; 0 = until stop */
    atomic_bool *stop;
    const char *sticky; /* x-thaw-sticky value, or NULL */
    const char *pin;    /* x-thaw-version value, or NULL */
    /* results */
    int by_version[16];
    int ok, failed, mismatched;
    char first_failure[256];
};

struct sinkbuf {
    char data[8192];
    size_t len;
    char version[16];
};

static size_t load_body(char *d, size_t s, size_t n, void *arg)
{
    struct sinkbuf *b = arg;
    size_t add = s * n;
    if (b->len + add < sizeof(b->data)) {
        memcpy(b->data + b->len, d, add);
        b->len += add;
        b->data[b->len] = 0;
    }
    return add;
}

static size_t load_header(char *d, size_t s, size_t n, void *arg)
{
    struct sinkbuf *b = arg;
    size_t len = s * n;
    if (len > 16 && strncasecmp(d, "x-thaw-version:", 15) == 0) {
        const char *v = d + 15;
        while (*v == ' ')
            v++;
        size_t k = 0;
        while (k + 1 < sizeof(b->version) && v + k < d + len && v[k] != '\r' && v[k] != '\n')
            k++;
        memcpy(b->version, v, k);
        b->version[k] = 0;
    }
    return len;
}

/* The tags the test gives versions: answers carry the serving version's. */
static const char *tag_of_version(int v)
{
    static const char *const tags[] = {"", "a", "b", "c", "d", "e", "f", "g", "h", "i"};
    return v > 0 && v < 10 ? tags[v] : "?";
}

static void *load_main(void *arg)
{
    struct load *l = arg;
    CURL *c = curl_easy_init();
    char url[256], hdr[160], pin[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/deployments/%s/invoke", N.port, l->name);
    struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer " TEST_ADMIN_KEY);
    h = curl_slist_append(h, "Content-Type: application/json");
    if (l->sticky) {
        snprintf(hdr, sizeof(hdr), "x-thaw-sticky: %s", l->sticky);
        h = curl_slist_append(h, hdr);
    }
    if (l->pin) {
        snprintf(pin, sizeof(pin), "x-thaw-version: %s", l->pin);
        h = curl_slist_append(h, pin);
    }
    struct sinkbuf b;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{\"x\":1}");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, load_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, load_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &b);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    for (int i = 0; l->count ? i < l->count : !atomic_load(l->stop); i++) {
        b.len = 0;
        b.data[0] = 0;
        b.version[0] = 0;
        long status = 0;
        CURLcode cc = curl_easy_perform(c);
        if (cc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        int v = b.version[0] == 'v' ? atoi(b.version + 1) : 0;
        if (status != 200 || v <= 0 || v >= 16) {
            if (!l->failed)
                snprintf(l->first_failure, sizeof(l->first_failure), "curl %d status %ld: %.200s",
                         (int)cc, status, b.data);
            l->failed++;
            continue;
        }
        l->ok++;
        l->by_version[v]++;
        /* The header names the version whose instance really answered. */
        char want[32];
        snprintf(want, sizeof(want), "\"tag\":\"%s\"", tag_of_version(v));
        if (!strstr(b.data, want)) l->mismatched++;
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return NULL;
}

/* Runs total requests over threads connections and sums the results. */
static void run_load(const char *name, int total, int threads, const char *pin, struct load *sum)
{
    pthread_t t[16];
    struct load l[16];
    memset(sum, 0, sizeof(*sum));
    for (int i = 0; i < threads; i++) {
        l[i] = (struct load){
            .name = name, .count = total / threads + (i < total % threads), .pin = pin};
        pthread_create(&t[i], NULL, load_main, &l[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        for (int v = 0; v < 16; v++)
            sum->by_version[v] += l[i].by_version[v];
        sum->ok += l[i].ok;
        sum->failed += l[i].failed;
        sum->mismatched += l[i].mismatched;
        if (!sum->first_failure[0]) memcpy(sum->first_failure, l[i].first_failure, 256);
    }
}

static int one(const char *name, const char *const *headers, char *version, size_t vn, char *body,
               size_t bn)
{
    struct resp r;
    if (http(&N, "POST", "/v1/deployments/" NAME "/invoke", "{\"x\":1}", headers, &r)) return -1;
    (void)name;
    int st = (int)r.status;
    if (version && !resp_header(&r, "x-thaw-version", version, vn)) version[0] = 0;
    if (body) snprintf(body, bn, "%s", r.body);
    resp_free(&r);
    return st;
}

/* ---- tests ---- */

static void test_same_manifest_same_version(void)
{
    long st;
    json_t *j = post("/v1/deployments", manifest_a, &st);
    ASSERT_EQ(st, 201);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "version")), "v1");
    ASSERT(json_is_true(json_object_get(j, "new_version")));
    char digest[80];
    snprintf(digest, sizeof(digest), "%s", json_string_value(json_object_get(j, "digest")));
    ASSERT(strncmp(digest, "sha256:", 7) == 0 && strlen(digest) == 71);
    json_decref(j);
    /* The same manifest again: the same version, no new number. */
    j = post("/v1/deployments", manifest_a, &st);
    ASSERT_EQ(st, 200);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "version")), "v1");
    ASSERT(!json_is_true(json_object_get(j, "new_version")));
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "digest")), digest);
    json_decref(j);
    j = post("/v1/deployments", manifest_b, &st);
    ASSERT_EQ(st, 200);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "version")), "v2");
    ASSERT_EQ(weight_of(json_object_get(j, "traffic"), "v2"), 100);
    json_decref(j);
    char v[16], body[512];
    ASSERT_EQ(one(NAME, NULL, v, sizeof(v), body, sizeof(body)), 200);
    ASSERT_STR_EQ(v, "v2");
    ASSERT_CONTAINS(body, "\"tag\":\"b\"");
    /* Deploying v1's manifest again is v1 again, with the traffic. */
    j = post("/v1/deployments", manifest_a, &st);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "version")), "v1");
    ASSERT_EQ(weight_of(json_object_get(j, "traffic"), "v1"), 100);
    json_decref(j);
    ASSERT_EQ(one(NAME, NULL, v, sizeof(v), NULL, 0), 200);
    ASSERT_STR_EQ(v, "v1");
    j = get("/v1/deployments/" NAME "/versions");
    ASSERT(j != NULL);
    ASSERT_EQ(json_array_size(json_object_get(j, "versions")), 2);
    json_t *v1 = json_array_get(json_object_get(j, "versions"), 0);
    ASSERT_STR_EQ(json_string_value(json_object_get(v1, "digest")), digest);
    ASSERT_STR_EQ(json_string_value(json_object_get(v1, "deployed_by")), "0123456789abcdef");
    ASSERT_EQ(json_array_size(json_object_get(j, "history")), 3);
    json_decref(j);
}

static void test_pinning(void)
{
    char v[16], body[512];
    ASSERT_EQ(
        one(NAME, (const char *[]){"x-thaw-version: v2", NULL}, v, sizeof(v), body, sizeof(body)),
        200);
    ASSERT_STR_EQ(v, "v2"); /* no traffic, still reachable */
    ASSERT_CONTAINS(body, "\"tag\":\"b\"");
    ASSERT_EQ(
        one(NAME, (const char *[]){"x-thaw-version: 1", NULL}, v, sizeof(v), body, sizeof(body)),
        200);
    ASSERT_STR_EQ(v, "v1");
    ASSERT_EQ(one(NAME, (const char *[]){"x-thaw-version: v9", NULL}, NULL, 0, body, sizeof(body)),
              404);
    ASSERT_CONTAINS(body, "version_not_found");
    ASSERT_EQ(
        one(NAME, (const char *[]){"x-thaw-version: latest", NULL}, NULL, 0, body, sizeof(body)),
        400);
    ASSERT_CONTAINS(body, "invalid_version");
}

static void test_traffic_errors(void)
{
    long st;
    json_t *j =
        post("/v1/deployments/" NAME "/traffic", "{\"weights\":{\"v1\":60,\"v2\":30}}", &st);
    ASSERT_EQ(st, 400); /* must add up to 100 */
    json_decref(j);
    j = post("/v1/deployments/" NAME "/traffic", "{\"weights\":{\"v1\":50,\"v7\":50}}", &st);
    ASSERT_EQ(st, 404);
    json_decref(j);
    j = post("/v1/deployments/" NAME "/traffic", "{\"weights\":{\"x\":100}}", &st);
    ASSERT_EQ(st, 400);
    json_decref(j);
    j = post("/v1/deployments/" NAME "/traffic", "{\"weights\":{\"v1\":50,\"1\":50}}", &st);
    ASSERT_EQ(st, 400); /* one version named twice */
    json_decref(j);
    j = post("/v1/deployments/" NAME "/promote", "{\"version\":\"v42\"}", &st);
    ASSERT_EQ(st, 404);
    json_decref(j);
    j = post("/v1/deployments/nope/promote", "{\"version\":\"v1\"}", &st);
    ASSERT_EQ(st, 404);
    json_decref(j);
    j = post("/v1/deployments?traffic=101", manifest_a, &st);
    ASSERT_EQ(st, 400);
    json_decref(j);
}

static void test_split(void)
{
    long st;
    json_t *j =
        post("/v1/deployments/" NAME "/traffic", "{\"weights\":{\"v1\":70,\"v2\":30}}", &st);
    ASSERT_EQ(st, 200);
    json_decref(j);
    const char *env = getenv("THAW_SPLIT_N");
    int n = env && atoi(env) > 0 ? atoi(env) : 10000;
    struct load sum;
    run_load(NAME, n, 8, NULL, &sum);
    if (sum.failed) fprintf(stderr, "  first failure: %s\n", sum.first_failure);
    ASSERT_EQ(sum.failed, 0);
    ASSERT_EQ(sum.mismatched, 0);
    ASSERT_EQ(sum.by_version[1] + sum.by_version[2], n);
    /* Binomial: within 5 standard deviations of 30% (a false alarm about
     * once in 1.7 million runs). */
    double p = (double)sum.by_version[2] / n, sd = sqrt(0.3 * 0.7 / n);
    fprintf(stderr, "  split over %d requests: v1 %d, v2 %d (%.2f%%, tolerance +-%.2f%%)\n", n,
            sum.by_version[1], sum.by_version[2], 100 * p, 500 * sd);
    ASSERT_NEAR(p, 0.3, 5 * sd);
}

static int sticky_version(const char *key)
{
    char h[128], v[16];
    snprintf(h, sizeof(h), "x-thaw-sticky: %s", key);
    if (one(NAME, (const char *[]){h, NULL}, v, sizeof(v), NULL, 0) != 200) return -1;
    return v[0] == 'v' ? atoi(v + 1) : -1;
}

static void test_sticky(void)
{
    long st;
    json_t *j =
        post("/v1/deployments/" NAME "/traffic", "{\"weights\":{\"v1\":50,\"v2\":50}}", &st);
    ASSERT_EQ(st, 200);
    json_decref(j);
    enum { KEYS = 40 };
    int first[KEYS], on[3] = {0};
    for (int k = 0; k < KEYS; k++) {
        char key[32];
        snprintf(key, sizeof(key), "user-%d", k);
        first[k] = sticky_version(key);
        ASSERT(first[k] == 1 || first[k] == 2);
        on[first[k]]++;
        for (int rep = 0; rep < 3; rep++)
            ASSERT_EQ(sticky_version(key), first[k]);
    }
    ASSERT(on[1] > 0 && on[2] > 0); /* 50/50 over 40 keys: both get some */
    /* Growing v1's share moves keys only onto v1: none leaves it. */
    j = post("/v1/deployments/" NAME "/traffic", "{\"weights\":{\"v1\":80,\"v2\":20}}", &st);
    ASSERT_EQ(st, 200);
    json_decref(j);
    int moved = 0;
    for (int k = 0; k < KEYS; k++) {
        char key[32];
        snprintf(key, sizeof(key), "user-%d", k);
        int now = sticky_version(key);
        if (first[k] == 1) ASSERT_EQ(now, 1);
        moved += now != first[k];
    }
    fprintf(stderr, "  50/50 -> 80/20: %d of %d keys moved (all from v2 to v1)\n", moved, KEYS);
}

static void *promote_rollback_load(void *arg)
{
    return load_main(arg);
}

static void test_promote_rollback_under_load(void)
{
    atomic_bool stop = false;
    pthread_t t[4];
    struct load l[4];
    for (int i = 0; i < 4; i++) {
        l[i] = (struct load){.name = NAME, .stop = &stop};
        pthread_create(&t[i], NULL, promote_rollback_load, &l[i]);
    }
    long st;
    const char *steps[][2] = {
        {"/v1/deployments/" NAME "/promote", "{\"version\":\"v2\"}"},
        {"/v1/deployments/" NAME "/rollback", NULL},
        {"/v1/deployments/" NAME "/rollback", NULL},
        {"/v1/deployments/" NAME "/traffic", "{\"weights\":{\"v1\":90,\"v2\":10}}"},
        {"/v1/deployments/" NAME "/promote", "{\"version\":\"v1\"}"},
    };
    const char *expect_full[] = {"v2", "v1", "v2", NULL, "v1"};
    for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
        sleep_ms(400);
        json_t *j = post(steps[s][0], steps[s][1], &st);
        ASSERT_EQ(st, 200);
        if (expect_full[s])
            ASSERT_EQ(weight_of(json_object_get(j, "traffic"), expect_full[s]), 100);
        json_decref(j);
    }
    sleep_ms(400);
    atomic_store(&stop, true);
    int ok = 0, failed = 0, mismatched = 0, v[3] = {0};
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        ok += l[i].ok;
        failed += l[i].failed;
        mismatched += l[i].mismatched;
        v[1] += l[i].by_version[1];
        v[2] += l[i].by_version[2];
        if (l[i].failed) fprintf(stderr, "  failure: %s\n", l[i].first_failure);
    }
    fprintf(stderr, "  under load: %d ok (v1 %d, v2 %d), %d failed\n", ok, v[1], v[2], failed);
    ASSERT_EQ(failed, 0);
    ASSERT_EQ(mismatched, 0);
    ASSERT(v[1] > 0 && v[2] > 0);
    /* Every change is in the audit trail. */
    json_t *a = get("/v1/audit?limit=10000");
    ASSERT(a != NULL);
    int promotes = 0, rollbacks = 0, sets = 0;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(a, "entries"), i, e)
    {
        const char *act = json_string_value(json_object_get(e, "action"));
        if (strcmp(json_string_value(json_object_get(e, "target")), NAME)) continue;
        promotes += !strcmp(act, "traffic.promote");
        rollbacks += !strcmp(act, "traffic.rollback");
        sets += !strcmp(act, "traffic.set");
    }
    json_decref(a);
    ASSERT_CMP(promotes, >=, 2);
    ASSERT_CMP(rollbacks, >=, 2);
    ASSERT_CMP(sets, >=, 1);
}

struct slow_call {
    pthread_t t;
    long status;
    char version[16];
};

static void *slow_main(void *arg)
{
    struct slow_call *c = arg;
    struct resp r;
    c->status = -1;
    if (http(&N, "POST", "/v1/deployments/" NAME "/invoke", "{\"op\":\"sleep\",\"ms\":1500}", NULL,
             &r) == 0) {
        c->status = r.status;
        if (!resp_header(&r, "x-thaw-version", c->version, sizeof(c->version))) c->version[0] = 0;
        resp_free(&r);
    }
    return NULL;
}

/* Requests in flight on the old version finish there: it drains. */
static void test_promote_drains_in_flight(void)
{
    struct slow_call c[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&c[i].t, NULL, slow_main, &c[i]);
    sleep_ms(400); /* all four are on v1's instance */
    long st;
    json_t *j = post("/v1/deployments/" NAME "/promote", "{\"version\":\"v2\"}", &st);
    ASSERT_EQ(st, 200);
    json_decref(j);
    char v[16];
    ASSERT_EQ(one(NAME, NULL, v, sizeof(v), NULL, 0), 200);
    ASSERT_STR_EQ(v, "v2"); /* the next request goes to v2 at once */
    for (int i = 0; i < 4; i++) {
        pthread_join(c[i].t, NULL);
        ASSERT_EQ(c[i].status, 200);
        ASSERT_STR_EQ(c[i].version, "v1");
    }
    j = post("/v1/deployments/" NAME "/promote", "{\"version\":\"v1\"}", &st);
    ASSERT_EQ(st, 200);
    json_decref(j);
}

static long artifact_status(const char *digest)
{
    char path[200];
    snprintf(path, sizeof(path), "/v1/artifacts/%s", digest);
    struct resp r;
    if (http(&N, "GET", path, NULL, NULL, &r)) return -1;
    long st = r.status;
    resp_free(&r);
    return st;
}

static void test_gc_keeps_version_artifacts(void)
{
    long st;
    json_t *j = post("/v1/artifacts", "\"weights of version c\"", &st);
    ASSERT_EQ(st, 201);
    char kept[80], gone[80];
    snprintf(kept, sizeof(kept), "%s", json_string_value(json_object_get(j, "digest")));
    json_decref(j);
    j = post("/v1/artifacts", "\"weights nobody names\"", &st);
    snprintf(gone, sizeof(gone), "%s", json_string_value(json_object_get(j, "digest")));
    json_decref(j);
    char env[256], m[2048];
    snprintf(env, sizeof(env), "{\"TESTFN_TAG\":\"c\",\"MODEL\":\"%s\"}", kept);
    manifest(m, sizeof(m), NAME, env);
    j = post("/v1/deployments?traffic=0", m, &st);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "version")), "v3");
    ASSERT_EQ(weight_of(json_object_get(j, "traffic"), "v3"), 0); /* deployed dark */
    ASSERT_EQ(weight_of(json_object_get(j, "traffic"), "v1"), 100);
    json_decref(j);
    /* The deployment's current spec no longer names it; v3 still does. */
    j = post("/v1/deployments", manifest_a, &st);
    json_decref(j);
    j = post("/v1/artifacts/gc?min_age=0s", NULL, &st);
    ASSERT_EQ(st, 200);
    json_decref(j);
    ASSERT_EQ(artifact_status(kept), 200);
    ASSERT_EQ(artifact_status(gone), 404);
}

static void test_shadow(void)
{
    long st;
    /* v3 (tag c) gets a copy of every request; clients only ever see v1. */
    json_t *j =
        post("/v1/deployments/" NAME "/traffic",
             "{\"weights\":{\"v1\":100},\"shadow\":{\"version\":\"v3\",\"percent\":100}}", &st);
    ASSERT_EQ(st, 200);
    json_decref(j);
    struct load sum;
    run_load(NAME, 60, 2, NULL, &sum);
    ASSERT_EQ(sum.failed, 0);
    ASSERT_EQ(sum.by_version[1], 60);
    ASSERT_EQ(sum.mismatched, 0); /* every answer is v1's own */
    /* The copies' outcomes are recorded beside v1's. */
    int shadow = 0;
    for (int i = 0; i < 200 && shadow < 60; i++) {
        j = get("/v1/deployments/" NAME "/versions");
        shadow = (int)json_integer_value(json_object_get(
            json_object_get(json_object_get(json_object_get(j, "stats"), "v3"), "shadow"),
            "requests"));
        json_decref(j);
        if (shadow < 60) sleep_ms(50);
    }
    ASSERT_EQ(shadow, 60);
    struct resp r;
    ASSERT_EQ(http(&N, "GET", "/metrics", NULL, NULL, &r), 0);
    ASSERT_CONTAINS(r.body, "thaw_version_requests_total{deployment=\"vt\",version=\"v3\","
                            "role=\"shadow\",outcome=\"ok\"} 60");
    ASSERT_CONTAINS(r.body, "thaw_version_request_duration_seconds_count{deployment=\"vt\","
                            "version=\"v3\",role=\"shadow\"} 60");
    resp_free(&r);
    j = post("/v1/deployments/" NAME "/traffic", "{\"shadow\":null}", &st);
    ASSERT_EQ(st, 200);
    ASSERT(!json_object_get(json_object_get(j, "traffic"), "shadow"));
    json_decref(j);
}

/* Sends requests until the traffic satisfies done (or a bound passes). */
static json_t *drive_until(bool (*done)(json_t *traffic), int max_rounds)
{
    for (int round = 0; round < max_rounds; round++) {
        struct load sum;
        run_load(NAME, 20, 2, NULL, &sum);
        json_t *j = get("/v1/deployments/" NAME "/traffic");
        if (j && done(json_object_get(j, "traffic"))) return j;
        json_decref(j);
        sleep_ms(100);
    }
    return NULL;
}

static bool canary_ended(json_t *t)
{
    const char *s = json_string_value(json_object_get(json_object_get(t, "canary"), "state"));
    return s && strcmp(s, "running") != 0;
}

static void test_canary_rolls_back_errors(void)
{
    long st;
    char m[2048];
    manifest(m, sizeof(m), NAME, "{\"TESTFN_TAG\":\"d\",\"TESTFN_FAIL\":\"1\"}");
    json_t *j = post("/v1/deployments?traffic=0", m, &st);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "version")), "v4");
    json_decref(j);
    j = post("/v1/deployments/" NAME "/canary",
             "{\"version\":\"v4\",\"steps\":[50,100],\"interval\":\"60s\",\"window\":\"60s\","
             "\"max_error_rate\":0.1,\"min_requests\":5}",
             &st);
    ASSERT_EQ(st, 200);
    ASSERT_EQ(weight_of(json_object_get(j, "traffic"), "v4"), 50);
    ASSERT_EQ(weight_of(json_object_get(j, "traffic"), "v1"), 50);
    json_decref(j);
    j = drive_until(canary_ended, 100);
    ASSERT(j != NULL);
    json_t *t = json_object_get(j, "traffic");
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(t, "canary"), "state")),
                  "rolled_back");
    ASSERT_EQ(weight_of(t, "v1"), 100);
    ASSERT_EQ(weight_of(t, "v4"), 0);
    json_decref(j);
    /* Clients are back on v1 only. */
    struct load sum;
    run_load(NAME, 40, 2, NULL, &sum);
    ASSERT_EQ(sum.failed, 0);
    ASSERT_EQ(sum.by_version[1], 40);
    /* The decision is audited by the node, with its numbers. */
    json_t *a = get("/v1/audit?limit=10000");
    bool found = false;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(a, "entries"), i, e)
    {
        if (!strcmp(json_string_value(json_object_get(e, "action")), "traffic.canary_rollback") &&
            !strcmp(json_string_value(json_object_get(e, "target")), NAME)) {
            found = true;
            ASSERT_STR_EQ(json_string_value(json_object_get(e, "actor")), "node");
            ASSERT_CONTAINS(json_string_value(json_object_get(e, "details")), "error rate");
        }
    }
    json_decref(a);
    ASSERT(found);
    ASSERT_CMP(node_log_count(&N, "\"canary_decision\""), >=, 1);
}

/* A canary much slower than its baseline is rolled back on p95 latency. */
static void test_canary_rolls_back_slow(void)
{
    long st;
    char m[2048];
    manifest(m, sizeof(m), NAME, "{\"TESTFN_TAG\":\"e\",\"TESTFN_DELAY_MS\":\"200\"}");
    json_t *j = post("/v1/deployments?traffic=0", m, &st);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "version")), "v5");
    json_decref(j);
    j = post("/v1/deployments/" NAME "/canary",
             "{\"version\":\"v5\",\"baseline\":\"v1\",\"steps\":[50,100],\"interval\":\"60s\","
             "\"window\":\"60s\",\"max_error_rate\":0.5,\"max_p95_ratio\":3,\"min_requests\":5}",
             &st);
    ASSERT_EQ(st, 200);
    json_decref(j);
    j = drive_until(canary_ended, 100);
    ASSERT(j != NULL);
    json_t *t = json_object_get(j, "traffic");
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(t, "canary"), "state")),
                  "rolled_back");
    ASSERT_EQ(weight_of(t, "v1"), 100);
    json_decref(j);
    json_t *a = get("/v1/audit?limit=10000");
    bool found = false;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(a, "entries"), i, e)
    {
        const char *d = json_string_value(json_object_get(e, "details"));
        found |=
            !strcmp(json_string_value(json_object_get(e, "action")), "traffic.canary_rollback") &&
            d && strstr(d, "p95 latency") && strstr(d, "\"canary\":\"v5\"");
    }
    json_decref(a);
    ASSERT(found);
}

static bool canary_promoted(json_t *t)
{
    return canary_ended(t);
}

static void test_canary_steps_up_healthy(void)
{
    long st;
    json_t *j = post("/v1/deployments/" NAME "/canary",
                     "{\"version\":\"v2\",\"steps\":[20,60,100],\"interval\":\"300ms\","
                     "\"window\":\"10s\",\"max_error_rate\":0.05,\"max_p95_ratio\":0,"
                     "\"min_requests\":5}",
                     &st);
    ASSERT_EQ(st, 200);
    json_decref(j);
    j = drive_until(canary_promoted, 200);
    ASSERT(j != NULL);
    json_t *t = json_object_get(j, "traffic");
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(t, "canary"), "state")),
                  "promoted");
    ASSERT_EQ(weight_of(t, "v2"), 100);
    json_decref(j);
    /* Its history shows each step. */
    j = get("/v1/deployments/" NAME "/versions");
    int steps = 0;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(j, "history"), i, e)
    {
        const char *why = json_string_value(json_object_get(e, "reason"));
        steps += (!strcmp(why, "canary step") || !strcmp(why, "canary promote")) &&
                 !strcmp(json_string_value(json_object_get(e, "actor")), "canary");
    }
    json_decref(j);
    ASSERT_EQ(steps, 2); /* 20 -> 60 -> 100 */
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
    char out[16384];
    ASSERT_EQ(run_cli("traffic " NAME " v1=60 v2=40", out, sizeof(out)), 0);
    ASSERT_CONTAINS(out, "v1=60 v2=40");
    ASSERT_EQ(run_cli("promote " NAME " v1", out, sizeof(out)), 0);
    ASSERT_CONTAINS(out, "v1=100");
    ASSERT_EQ(run_cli("rollback " NAME, out, sizeof(out)), 0);
    ASSERT_CONTAINS(out, "v2=100");
    ASSERT_EQ(run_cli("versions " NAME, out, sizeof(out)), 0);
    ASSERT_CONTAINS(out, "VERSION");
    ASSERT_CONTAINS(out, "traffic history");
    ASSERT_CONTAINS(out, "rollback");
    ASSERT_CONTAINS(out, "0123456789abcdef");
    ASSERT_EQ(run_cli("traffic " NAME " v1=50", out, sizeof(out)), 1);
    ASSERT_CONTAINS(out, "add up to 100");
    ASSERT_EQ(run_cli("promote " NAME " v77", out, sizeof(out)), 3);
    ASSERT_EQ(run_cli("traffic " NAME " v1", out, sizeof(out)), 2);
    /* invoke pins a version or keeps a sticky key (v2 has all the traffic now). */
    ASSERT_EQ(run_cli("invoke " NAME " --version v1 -d '{\"k\":1}'", out, sizeof(out)), 0);
    ASSERT_CONTAINS(out, "\"tag\":\"a\"");
    ASSERT_EQ(run_cli("invoke " NAME " --sticky user-7 -d '{\"k\":1}'", out, sizeof(out)), 0);
    ASSERT_CONTAINS(out, "\"tag\":\"b\"");
    ASSERT_EQ(run_cli("invoke " NAME " --version v99 -d 1", out, sizeof(out)), 3);
}

static void check_rules_after_restart(void);

static void test_restart_keeps_versions(void)
{
    json_t *before = get("/v1/deployments/" NAME "/traffic");
    ASSERT(before != NULL);
    ASSERT_EQ(node_stop(&N), 0);
    ASSERT_EQ(node_start(&N, NULL), 0);
    json_t *after = get("/v1/deployments/" NAME "/traffic");
    ASSERT(after != NULL);
    ASSERT(json_equal(json_object_get(before, "traffic"), json_object_get(after, "traffic")));
    json_decref(before);
    json_decref(after);
    char v[16];
    ASSERT_EQ(one(NAME, NULL, v, sizeof(v), NULL, 0), 200);
    ASSERT_STR_EQ(v, "v2");
    ASSERT_EQ(one(NAME, (const char *[]){"x-thaw-version: v3", NULL}, v, sizeof(v), NULL, 0), 200);
    ASSERT_STR_EQ(v, "v3");
    check_rules_after_restart();
}

/* Jobs run through the same routing: the job names the version that
 * served it, in its record and in x-thaw-version. */
static void test_job_names_version(void)
{
    long st;
    json_t *j = post("/v1/deployments/" NAME "/jobs", "{\"input\":{\"x\":2}}", &st);
    ASSERT_EQ(st, 202);
    char path[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s?wait=30",
             json_string_value(json_object_get(j, "id")));
    json_decref(j);
    struct resp r;
    ASSERT_EQ(http(&N, "GET", path, NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 200);
    char v[16];
    ASSERT_STR_EQ(resp_header(&r, "x-thaw-version", v, sizeof(v)), "v2");
    j = resp_json(&r);
    resp_free(&r);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "state")), "succeeded");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "version")), "v2");
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(j, "result"), "tag")), "b");
    json_decref(j);
}

/* A store written before versions existed (schema 2) is migrated, and its
 * deployment becomes v1 with all the traffic. */
static void test_migrates_old_store(void)
{
    struct node old = {0};
    const char *tmp = getenv("TMPDIR");
    snprintf(old.data, sizeof(old.data), "%s/thaw-it-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ASSERT(mkdtemp(old.data) != NULL);
    char db[400], spec[1024];
    snprintf(db, sizeof(db), "%s/thaw.db", old.data);
    sqlite3 *s = NULL;
    ASSERT_EQ(sqlite3_open(db, &s), SQLITE_OK);
    snprintf(spec, sizeof(spec),
             "{\"name\":\"legacy\",\"runtime\":\"exec\",\"command\":[\"%s\"],\"env\":{"
             "\"TESTFN_TAG\":\"a\"}}",
             testfn_path());
    char *sql = sqlite3_mprintf(
        "CREATE TABLE deployments (name TEXT PRIMARY KEY, spec TEXT NOT NULL, updated_ms "
        "INTEGER NOT NULL, owner TEXT NOT NULL DEFAULT '');"
        "INSERT INTO deployments VALUES ('legacy', %Q, 1, 'root');"
        "PRAGMA user_version=2;",
        spec);
    ASSERT_EQ(sqlite3_exec(s, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_free(sql);
    sqlite3_close(s);
    ASSERT_EQ(node_start(&old, NULL), 0);
    struct resp r;
    ASSERT_EQ(http(&old, "POST", "/v1/deployments/legacy/invoke", "{\"x\":1}", NULL, &r), 0);
    ASSERT_EQ(r.status, 200);
    char v[16];
    ASSERT_STR_EQ(resp_header(&r, "x-thaw-version", v, sizeof(v)), "v1");
    resp_free(&r);
    ASSERT_EQ(http(&old, "GET", "/v1/deployments/legacy/versions", NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_CONTAINS(r.body, "\"deployed_by\":\"node\"");
    resp_free(&r);
    node_cleanup(&old);
}

/* A request is checked against the version that serves it: its input schema
 * and body limit, whether the version was pinned, picked by weight or by a
 * sticky key. v1 wants {"a": integer} in at most 1 KiB; v2 wants
 * {"b": string} in up to 64 KiB. Refusals name the version whose rules
 * refused them. */
static void test_rules_of_serving_version(void)
{
    char m1[2048], m2[2048];
    snprintf(m1, sizeof(m1),
             "{\"name\":\"rules\",\"runtime\":\"exec\",\"command\":[\"%s\"],"
             "\"limits\":{\"max_body_size\":\"1Ki\"},\"input_schema\":{\"type\":\"object\","
             "\"required\":[\"a\"],\"properties\":{\"a\":{\"type\":\"integer\"}}}}",
             testfn_path());
    snprintf(m2, sizeof(m2),
             "{\"name\":\"rules\",\"runtime\":\"exec\",\"command\":[\"%s\"],"
             "\"limits\":{\"max_body_size\":\"64Ki\"},\"input_schema\":{\"type\":\"object\","
             "\"required\":[\"b\"],\"properties\":{\"b\":{\"type\":\"string\"}}}}",
             testfn_path());
    long st;
    json_t *j = post("/v1/deployments", m1, &st);
    ASSERT_EQ(st, 201);
    json_decref(j);
    j = post("/v1/deployments?traffic=0", m2, &st); /* v2 dark: v1 keeps the traffic */
    ASSERT_EQ(st, 200);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "version")), "v2");
    json_decref(j);
    char big[4096];
    int n = snprintf(big, sizeof(big), "{\"a\":1,\"b\":\"");
    memset(big + n, 'x', 2000);
    snprintf(big + n + 2000, sizeof(big) - (size_t)n - 2000, "\"}");
    const char *pin1[] = {"x-thaw-version: v1", NULL}, *pin2[] = {"x-thaw-version: v2", NULL};
    struct {
        const char *const *headers;
        const char *body;
        int status;
        const char *code, *version;
    } cases[] = {
        /* by weight: v1, the latest deployed (v2) notwithstanding */
        {NULL, "{\"a\":1}", 200, NULL, "v1"},
        {NULL, "{\"b\":\"x\"}", 400, "invalid_input", "v1"},
        {pin1, "{\"a\":1}", 200, NULL, "v1"},
        {pin1, "{\"a\":\"one\"}", 400, "invalid_input", "v1"},
        {pin2, "{\"b\":\"x\"}", 200, NULL, "v2"},
        {pin2, "{\"a\":1}", 400, "invalid_input", "v2"},
        {pin1, big, 413, "body_too_large", "v1"},
        {pin2, big, 200, NULL, "v2"},
        {NULL, big, 413, "body_too_large", "v1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct resp r;
        ASSERT_EQ(
            http(&N, "POST", "/v1/deployments/rules/invoke", cases[i].body, cases[i].headers, &r),
            0);
        char v[16] = "";
        resp_header(&r, "x-thaw-version", v, sizeof(v));
        if (r.status != cases[i].status || strcmp(v, cases[i].version))
            fprintf(stderr, "  case %zu: %ld %s: %.200s\n", i, r.status, v, r.body);
        ASSERT_EQ(r.status, cases[i].status);
        ASSERT_STR_EQ(v, cases[i].version);
        if (cases[i].code) ASSERT_CONTAINS(r.body, cases[i].code);
        resp_free(&r);
    }
    /* A job runs on whichever version has traffic when it runs: its input
     * must pass the rules of each (here v1 alone). */
    j = post("/v1/deployments/rules/jobs", "{\"input\":{\"a\":1}}", &st);
    ASSERT_EQ(st, 202);
    json_decref(j);
    j = post("/v1/deployments/rules/jobs", "{\"input\":{\"b\":\"x\"}}", &st);
    ASSERT_EQ(st, 400);
    json_decref(j);
    /* Sticky keys over 50/50: each key's answers follow its own version's
     * rules, every time. */
    j = post("/v1/deployments/rules/traffic", "{\"weights\":{\"v1\":50,\"v2\":50}}", &st);
    ASSERT_EQ(st, 200);
    json_decref(j);
    int on[3] = {0};
    for (int k = 0; k < 24; k++) {
        char h[64];
        snprintf(h, sizeof(h), "x-thaw-sticky: key-%d", k);
        const char *hs[] = {h, NULL};
        char first[16] = "";
        for (int rep = 0; rep < 3; rep++) {
            struct resp r;
            ASSERT_EQ(http(&N, "POST", "/v1/deployments/rules/invoke", "{\"a\":1}", hs, &r), 0);
            char v[16] = "";
            resp_header(&r, "x-thaw-version", v, sizeof(v));
            long status = r.status;
            resp_free(&r);
            ASSERT(strcmp(v, "v1") == 0 || strcmp(v, "v2") == 0);
            ASSERT_EQ(status, strcmp(v, "v1") == 0 ? 200 : 400);
            if (!rep) snprintf(first, sizeof(first), "%s", v);
            ASSERT_STR_EQ(v, first);
        }
        on[first[1] - '0']++;
    }
    ASSERT(on[1] > 0 && on[2] > 0);
    /* By weight over 50/50: the same, request by request. */
    for (int i = 0; i < 40; i++) {
        struct resp r;
        ASSERT_EQ(http(&N, "POST", "/v1/deployments/rules/invoke", "{\"b\":\"x\"}", NULL, &r), 0);
        char v[16] = "";
        resp_header(&r, "x-thaw-version", v, sizeof(v));
        long status = r.status;
        resp_free(&r);
        ASSERT_EQ(status, strcmp(v, "v2") == 0 ? 200 : 400);
    }
    /* Jobs now: v1 and v2 both have traffic, and no input passes both. */
    struct resp r;
    ASSERT_EQ(http(&N, "POST", "/v1/deployments/rules/jobs", "{\"input\":{\"a\":1}}", NULL, &r), 0);
    ASSERT_EQ(r.status, 400);
    ASSERT_CONTAINS(r.body, "(version v2)");
    resp_free(&r);
    /* test_restart_keeps_versions checks the rules again after a restart,
     * then deletes the deployment. */
}

/* After a restart each version still has its own rules. */
static void check_rules_after_restart(void)
{
    const char *pin1[] = {"x-thaw-version: v1", NULL}, *pin2[] = {"x-thaw-version: v2", NULL};
    struct resp r;
    ASSERT_EQ(http(&N, "POST", "/v1/deployments/rules/invoke", "{\"a\":1}", pin1, &r), 0);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    ASSERT_EQ(http(&N, "POST", "/v1/deployments/rules/invoke", "{\"a\":1}", pin2, &r), 0);
    ASSERT_EQ(r.status, 400);
    ASSERT_CONTAINS(r.body, "invalid_input");
    resp_free(&r);
    ASSERT_EQ(http(&N, "POST", "/v1/deployments/rules/invoke", "{\"b\":\"x\"}", pin2, &r), 0);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    ASSERT_EQ(http(&N, "DELETE", "/v1/deployments/rules", NULL, NULL, &r), 0);
    resp_free(&r);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    manifest(manifest_a, sizeof(manifest_a), NAME, "{\"TESTFN_TAG\":\"a\"}");
    manifest(manifest_b, sizeof(manifest_b), NAME, "{\"TESTFN_TAG\":\"b\"}");
    if (node_start(&N, NULL)) {
        fprintf(stderr, "cannot start node\n");
        return 1;
    }
    RUN(test_same_manifest_same_version);
    RUN(test_pinning);
    RUN(test_traffic_errors);
    RUN(test_split);
    RUN(test_sticky);
    RUN(test_rules_of_serving_version);
    RUN(test_promote_rollback_under_load);
    RUN(test_promote_drains_in_flight);
    RUN(test_gc_keeps_version_artifacts);
    RUN(test_shadow);
    RUN(test_canary_rolls_back_errors);
    RUN(test_canary_rolls_back_slow);
    RUN(test_canary_steps_up_healthy);
    RUN(test_cli);
    RUN(test_restart_keeps_versions);
    RUN(test_job_names_version);
    RUN(test_migrates_old_store);
    node_cleanup(&N);
    curl_global_cleanup();
    return TEST_REPORT();
}
