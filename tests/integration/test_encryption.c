/* Encryption at rest: job inputs, results and function error messages are
 * sealed under the owning tenant's data key, so a marker sent through every
 * path that persists request content appears nowhere in the data dir (the
 * SQLite file and its WAL included) nor in the log; the API still returns
 * the plaintext; rotating the data key keeps old results readable. */
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
    RUN(test_markers_never_at_rest);
    RUN(test_rotation_keeps_old_data);
    node_cleanup(&N);
    curl_global_cleanup();
    return TEST_REPORT();
}
