/* The crash test: clients submit CRASH_JOBS jobs with idempotency keys,
 * retrying each submission until it is answered, while the node is killed
 * with SIGKILL at random moments CRASH_KILLS times and restarted. At the end
 * every acknowledged job has exactly one final result (its own), no
 * submission made two jobs, and a job ran more than once only when a kill
 * interrupted it: the extra executions the test function recorded are at
 * most the jobs that can be in flight at once, per kill. The normal suite
 * runs a small one; tests/jobs builds the full size under the long label. */
#include "harness.h"
#include "test.h"

#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CRASH_JOBS
#define CRASH_JOBS 300
#endif
#ifndef CRASH_KILLS
#define CRASH_KILLS 2
#endif
#define CLIENTS  4
#define CAPACITY 8 /* concurrency 4 x max_instances 2: most jobs in flight at once */

static struct node N;
static _Atomic int port;
static _Atomic int acked, retries;
static char ids[CRASH_JOBS][64];
static char marks[300];

/* Submits job i until the node answers 202 or 200. */
static void submit_until_answered(int i)
{
    char body[128], key[64];
    snprintf(body, sizeof(body), "{\"input\":{\"op\":\"mark\",\"tag\":\"t%d\"}}", i);
    snprintf(key, sizeof(key), "Idempotency-Key: crash-%d", i);
    const char *h[] = {key, NULL};
    for (;;) {
        struct node n = N;
        n.port = atomic_load(&port);
        struct resp r;
        int rc = http(&n, "POST", "/v1/deployments/crashy/jobs", body, h, &r);
        if (rc == 0 && (r.status == 202 || r.status == 200)) {
            json_t *j = resp_json(&r);
            snprintf(ids[i], sizeof(ids[i]), "%s", json_string_value(json_object_get(j, "id")));
            json_decref(j);
            resp_free(&r);
            atomic_fetch_add(&acked, 1);
            return;
        }
        resp_free(&r);
        atomic_fetch_add(&retries, 1);
        sleep_ms(20);
    }
}

static void *client(void *arg)
{
    int c = (int)(intptr_t)arg;
    for (int i = c; i < CRASH_JOBS; i += CLIENTS)
        submit_until_answered(i);
    return NULL;
}

static int restart(void)
{
    kill(N.pid, SIGKILL);
    waitpid(N.pid, NULL, 0);
    N.pid = 0;
    atomic_store(&port, 0);
    if (node_start(&N, NULL)) return -1;
    atomic_store(&port, N.port);
    return 0;
}

static int count_tag(int *counts)
{
    FILE *f = fopen(marks, "r");
    if (!f) return -1;
    char line[64];
    while (fgets(line, sizeof(line), f)) {
        int i = -1;
        if (sscanf(line, "t%d", &i) == 1 && i >= 0 && i < CRASH_JOBS) counts[i]++;
    }
    fclose(f);
    return 0;
}

/* How many jobs of the deployment exist, walking the list's pages. */
static int jobs_in_store(void)
{
    int n = 0;
    char after[64] = "", path[256];
    for (;;) {
        snprintf(path, sizeof(path), "/v1/jobs?deployment=crashy&limit=1000%s%s",
                 after[0] ? "&after=" : "", after);
        struct resp r;
        if (http(&N, "GET", path, NULL, NULL, &r) || r.status != 200) {
            resp_free(&r);
            return -1;
        }
        json_t *j = resp_json(&r);
        resp_free(&r);
        n += (int)json_array_size(json_object_get(j, "jobs"));
        const char *next = json_string_value(json_object_get(j, "next"));
        if (next) snprintf(after, sizeof(after), "%s", next);
        json_decref(j);
        if (!next) return n;
    }
}

static void test_crash(void)
{
    char m[1024];
    snprintf(m, sizeof(m),
             "{\"name\":\"crashy\",\"runtime\":\"exec\",\"command\":[\"%s\"],\"concurrency\":4,"
             "\"env\":{\"TESTFN_MARKS\":\"%s\"},\"sandbox\":false,\"scale\":{\"max_instances\":2},"
             "\"jobs\":{\"max_attempts\":20,\"backoff_base\":\"50ms\",\"backoff_cap\":\"200ms\"}}",
             testfn_path(), marks);
    ASSERT_EQ(deploy(&N, m), 201);
    atomic_store(&port, N.port);
    pthread_t t[CLIENTS];
    for (int c = 0; c < CLIENTS; c++)
        pthread_create(&t[c], NULL, client, (void *)(intptr_t)c);
    unsigned seed = (unsigned)now_ms();
    for (int k = 0; k < CRASH_KILLS; k++) {
        /* Spread the kills over the submissions and the processing. */
        long wait = 150 + rand_r(&seed) % 600;
        while (wait > 0 && atomic_load(&acked) < CRASH_JOBS * (k + 1) / (CRASH_KILLS + 1)) {
            sleep_ms(10);
            wait -= 10;
        }
        sleep_ms(rand_r(&seed) % 200);
        if (restart()) TEST_FAIL_("the node did not restart after kill %d", k + 1);
    }
    for (int c = 0; c < CLIENTS; c++)
        pthread_join(t[c], NULL);
    fprintf(stderr, "  %d acknowledged after %d retried submissions and %d kills\n",
            atomic_load(&acked), atomic_load(&retries), CRASH_KILLS);
    ASSERT_EQ(atomic_load(&acked), CRASH_JOBS);

    /* Every acknowledged job ends with its own result. */
    long deadline = now_ms() + 120000;
    for (int i = 0; i < CRASH_JOBS; i++) {
        char path[128];
        snprintf(path, sizeof(path), "/v1/jobs/%s?wait=10", ids[i]);
        json_t *j = NULL;
        const char *state = "";
        while (now_ms() < deadline) {
            struct resp r;
            http(&N, "GET", path, NULL, NULL, &r);
            json_decref(j);
            j = resp_json(&r);
            resp_free(&r);
            state = json_string_value(json_object_get(j, "state"));
            if (state && strcmp(state, "queued") && strcmp(state, "running")) break;
        }
        if (!state || strcmp(state, "succeeded")) {
            json_decref(j);
            TEST_FAIL_("job %d (%s) ended %s", i, ids[i], state ? state : "(unknown)");
        }
        char tag[16];
        snprintf(tag, sizeof(tag), "t%d", i);
        const char *got = json_string_value(json_object_get(json_object_get(j, "result"), "tag"));
        if (!got || strcmp(got, tag)) {
            json_decref(j);
            TEST_FAIL_("job %d has result %s", i, got ? got : "(none)");
        }
        json_decref(j);
    }
    /* One job per submission, however often it was retried. */
    ASSERT_EQ(jobs_in_store(), CRASH_JOBS);
    for (int i = 1; i < CRASH_JOBS; i++)
        ASSERT(strcmp(ids[i], ids[i - 1]) != 0);

    /* Each ran at least once; the re-runs are bounded by the kills. */
    static int counts[CRASH_JOBS];
    ASSERT_EQ(count_tag(counts), 0);
    int extra = 0;
    for (int i = 0; i < CRASH_JOBS; i++) {
        if (counts[i] < 1) TEST_FAIL_("job %d never ran", i);
        extra += counts[i] - 1;
    }
    fprintf(stderr, "  %d re-executions (bound %d)\n", extra, CRASH_KILLS * CAPACITY);
    ASSERT_CMP(extra, <=, CRASH_KILLS * CAPACITY);
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
    RUN(test_crash);
    node_cleanup(&N);
    unlink(marks);
    curl_global_cleanup();
    return TEST_REPORT();
}
