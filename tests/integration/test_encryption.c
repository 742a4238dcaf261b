/* Encryption at rest: job inputs, results and function error messages are
 * sealed under the submitting tenant's data key, and the env values of
 * deployment manifests under the owner's, so a marker sent through every
 * path that persists request content appears nowhere in the data dir (the
 * SQLite file and its WAL included) nor in the log; the API still returns
 * the plaintext and instances still get plain env values, also after a
 * restart; rotating the data key keeps old results readable, and so does
 * rotating the KEK (`thaw keys rewrap`), after which the old KEK is
 * refused. */
#include "harness.h"
#include "test.h"

#include <curl/curl.h>
#include <sys/wait.h>

static struct node N;
#define MARKER "zebra-marker-5821"

static char *submit(const char *input_json)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"input\":%s}", input_json);
    struct resp r;
    http(&N, "POST", "/v1/deployments/enc/jobs", body, NULL, &r);
    json_t *j = resp_json(&r);
    char *id = r.status == 202 ? strdup(json_string_value(json_object_get(j, "id"))) : NULL;
    if (!id) fprintf(stderr, "  submit -> %ld %s\n", r.status, r.body);
    json_decref(j);
    resp_free(&r);
    return id;
}

static json_t *wait_job(const char *id)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s?wait=20", id);
    for (int i = 0; i < 5; i++) {
        struct resp r;
        http(&N, "GET", path, NULL, NULL, &r);
        json_t *j = resp_json(&r);
        resp_free(&r);
        const char *st = json_string_value(json_object_get(j, "state"));
        if (st && strcmp(st, "queued") && strcmp(st, "running")) return j;
        json_decref(j);
    }
    return NULL;
}

static int grep_count(const char *dir_or_file)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd),
             "grep -rac '%s' '%s' 2>/dev/null | awk -F: '{s+=$NF} END {print s+0}'", MARKER,
             dir_or_file);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p && fscanf(p, "%d", &n) != 1) n = -1;
    if (p) pclose(p);
    return n;
}

/* The function of "envfn" answers with its TESTFN_TAG: what the instance
 * got in its environment. */
#define ENV_SECRET "env-" MARKER
static void expect_plain_env(void)
{
    struct resp r;
    ASSERT_EQ(invoke(&N, "envfn", "{}", &r), 0);
    ASSERT_EQ(r.status, 200);
    json_t *j = resp_json(&r);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "tag")), ENV_SECRET);
    json_decref(j);
    resp_free(&r);
}

static char *envfn_manifest(void)
{
    static char m[1024];
    snprintf(m, sizeof(m),
             "{\"name\":\"envfn\",\"runtime\":\"exec\",\"command\":[\"%s\"],"
             "\"env\":{\"TESTFN_TAG\":\"" ENV_SECRET "\",\"EMPTY\":\"\"}}",
             testfn_path());
    return m;
}

/* Env values: sealed in the store, plain for the instance and for the
 * owner's reads; the same manifest twice is still the same version (the
 * digest is of the plain spec), and the versions listing works. */
static void test_env_sealed(void)
{
    struct resp r;
    ASSERT_EQ(http(&N, "POST", "/v1/deployments", envfn_manifest(), NULL, &r), 0);
    ASSERT_EQ(r.status, 201);
    json_t *j = resp_json(&r);
    char digest[128];
    snprintf(digest, sizeof(digest), "%s", json_string_value(json_object_get(j, "digest")));
    json_decref(j);
    resp_free(&r);
    ASSERT_EQ(http(&N, "POST", "/v1/deployments", envfn_manifest(), NULL, &r), 0);
    ASSERT_EQ(r.status, 200);
    j = resp_json(&r);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "digest")), digest);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "version")), "v1");
    ASSERT(json_is_false(json_object_get(j, "new_version")));
    json_decref(j);
    resp_free(&r);
    expect_plain_env();
    ASSERT_EQ(http(&N, "GET", "/v1/deployments/envfn", NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_CONTAINS(r.body, "\"TESTFN_TAG\":\"" ENV_SECRET "\"");
    ASSERT_CONTAINS(r.body, "\"EMPTY\":\"\"");
    resp_free(&r);
    ASSERT_EQ(http(&N, "GET", "/v1/deployments", NULL, NULL, &r), 0);
    ASSERT_CONTAINS(r.body, "\"TESTFN_TAG\":\"" ENV_SECRET "\"");
    resp_free(&r);
    ASSERT_EQ(http(&N, "GET", "/v1/deployments/envfn/versions", NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_CONTAINS(r.body, digest);
    ASSERT(strstr(r.body, "thaw:sealed:") == NULL);
    resp_free(&r);
    /* A manifest may not pose as sealed. */
    char m[1024];
    snprintf(m, sizeof(m),
             "{\"name\":\"envfn2\",\"runtime\":\"exec\",\"command\":[\"%s\"],"
             "\"env\":{\"X\":\"thaw:sealed:v1:abc\"}}",
             testfn_path());
    ASSERT_EQ(http(&N, "POST", "/v1/deployments", m, NULL, &r), 0);
    ASSERT_EQ(r.status, 400);
    ASSERT_CONTAINS(r.body, "env.X");
    resp_free(&r);
    sleep_ms(300);
    ASSERT_EQ(grep_count(N.data), 0);
}

static void test_markers_never_at_rest(void)
{
    char m[1024];
    snprintf(m, sizeof(m), "{\"name\":\"enc\",\"runtime\":\"exec\",\"command\":[\"%s\"]}",
             testfn_path());
    ASSERT_EQ(deploy(&N, m), 201);
    char *ok = submit("{\"secret\":\"" MARKER "\"}");
    char *bad = submit("{\"op\":\"error\",\"message\":\"failed on " MARKER "\"}");
    ASSERT(ok && bad);
    json_t *j = wait_job(ok);
    ASSERT(j != NULL);
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(j, "result"), "secret")),
                  MARKER);
    json_decref(j);
    j = wait_job(bad);
    ASSERT(j != NULL);
    char *dump = json_dumps(j, 0);
    ASSERT_CONTAINS(dump, MARKER); /* the owner reads its error back */
    free(dump);
    json_decref(j);
    struct resp r;
    ASSERT_EQ(invoke(&N, "enc", "{\"sync\":\"" MARKER "\"}", &r), 0);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    sleep_ms(300);
    ASSERT_EQ(grep_count(N.data), 0);
    ASSERT_EQ(grep_count(N.log), 0);
    free(ok);
    free(bad);
}

static void test_rotation_keeps_old_data(void)
{
    char *before = submit("{\"v\":\"before-rotation\"}");
    ASSERT(before != NULL);
    json_t *j = wait_job(before);
    json_decref(j);
    char out[512];
    char cmd[600];
    snprintf(cmd, sizeof(cmd),
             "THAW_KEY=%s %s keys rotate-data root --server http://127.0.0.1:%d 2>&1",
             TEST_ADMIN_KEY, thaw_path(), N.port);
    FILE *p = popen(cmd, "r");
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = 0;
    ASSERT_EQ(WEXITSTATUS(pclose(p)), 0);
    ASSERT_CONTAINS(out, "version 2");
    char *after = submit("{\"v\":\"after-rotation\"}");
    j = wait_job(after);
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(j, "result"), "v")),
                  "after-rotation");
    json_decref(j);
    /* Restart: keys come back from the store, both versions open. */
    ASSERT_EQ(WIFEXITED(node_stop(&N)), 1);
    ASSERT_EQ(node_start(&N, NULL), 0);
    j = wait_job(before);
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(j, "result"), "v")),
                  "before-rotation");
    json_decref(j);
    /* Env values sealed before the rotation open after the restart; the
     * same manifest is still the same version. */
    expect_plain_env();
    struct resp r;
    ASSERT_EQ(http(&N, "POST", "/v1/deployments", envfn_manifest(), NULL, &r), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_CONTAINS(r.body, "\"new_version\":false");
    resp_free(&r);
    free(before);
    free(after);
}

/* Runs a shell command, returning its exit code and output in out. */
static int run(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_kek_rewrap(void)
{
    char *before = submit("{\"v\":\"before-rewrap\"}");
    ASSERT(before != NULL);
    json_decref(wait_job(before));
    /* A tenant key made now must still verify afterwards (its hash is
     * peppered with a secret that moves with the data keys). */
    struct resp r;
    ASSERT_EQ(
        http(&N, "POST", "/v1/tenants/root/keys", "{\"scopes\":[\"invoke\",\"read\"]}", NULL, &r),
        0);
    ASSERT_EQ(r.status, 201);
    json_t *j = resp_json(&r);
    char key[200], auth[240];
    snprintf(key, sizeof(key), "%s", json_string_value(json_object_get(j, "key")));
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
    json_decref(j);
    resp_free(&r);

    char old_kek[300], new_kek[300], cmd[1500], out[1024];
    snprintf(old_kek, sizeof(old_kek), "%s.old-kek", N.data);
    snprintf(new_kek, sizeof(new_kek), "%s.new-kek", N.data);
    FILE *f = fopen(old_kek, "w");
    fprintf(f, "%s\n", TEST_KEK);
    fclose(f);
    f = fopen(new_kek, "w");
    fprintf(f, "%s\n", "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0");
    fclose(f);
    snprintf(cmd, sizeof(cmd), "%s keys rewrap --data %s --old-kek-file %s --new-kek-file %s 2>&1",
             thaw_path(), N.data, old_kek, new_kek);
    /* Not while a node uses the data dir. */
    ASSERT_EQ(run(cmd, out, sizeof(out)), 1);
    ASSERT_CONTAINS(out, "in use by a running thaw node");
    ASSERT_EQ(WIFEXITED(node_stop(&N)), 1);
    ASSERT_EQ(run(cmd, out, sizeof(out)), 0);
    fprintf(stderr, "  %s", out);
    ASSERT_CONTAINS(out, "re-wrapped");
    ASSERT_EQ(run(cmd, out, sizeof(out)), 1); /* done already: says so */
    ASSERT_CONTAINS(out, "already rewrapped");

    /* Restart under the new KEK: old data opens, the key verifies, the
     * audit chain (rewrap recorded) verifies. */
    const char *with_new[] = {"--kek-file", new_kek, NULL};
    ASSERT_EQ(node_start(&N, with_new), 0);
    expect_plain_env();
    j = wait_job(before);
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(j, "result"), "v")),
                  "before-rewrap");
    json_decref(j);
    char path[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s", before);
    const char *hdrs[] = {auth, NULL};
    ASSERT_EQ(http(&N, "GET", path, NULL, hdrs, &r), 0);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    char *after = submit("{\"v\":\"after-rewrap\"}");
    j = wait_job(after);
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(j, "result"), "v")),
                  "after-rewrap");
    json_decref(j);
    ASSERT_EQ(WIFEXITED(node_stop(&N)), 1);
    snprintf(cmd, sizeof(cmd), "%s audit verify --data %s --kek-file %s 2>&1", thaw_path(), N.data,
             new_kek);
    ASSERT_EQ(run(cmd, out, sizeof(out)), 0);
    ASSERT_CONTAINS(out, "intact");
    /* The old KEK is refused with a clear error, by the node and the CLI. */
    ASSERT(node_start(&N, NULL) != 0);
    ASSERT(node_log_count(&N, "does not open this data dir") >= 1);
    snprintf(cmd, sizeof(cmd), "%s audit verify --data %s --kek-file %s 2>&1", thaw_path(), N.data,
             old_kek);
    ASSERT_EQ(run(cmd, out, sizeof(out)), 1);
    ASSERT_CONTAINS(out, "does not open this data dir");
    /* Back under the new KEK for the tests after this one. */
    ASSERT_EQ(node_start(&N, with_new), 0);
    unlink(old_kek);
    unlink(new_kek);
    free(before);
    free(after);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (node_start(&N, NULL)) {
        fprintf(stderr, "cannot start node\n");
        return 1;
    }
    RUN(test_env_sealed);
    RUN(test_markers_never_at_rest);
    RUN(test_rotation_keeps_old_data);
    RUN(test_kek_rewrap);
    node_cleanup(&N);
    curl_global_cleanup();
    return TEST_REPORT();
}
