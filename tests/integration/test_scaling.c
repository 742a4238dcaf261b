/* Scaling through the real binary: from zero (cold), from standby, up under
 * concurrent load to max_instances and never beyond, back to standby and
 * zero after the timeouts, min_instances kept warm, and requests held while
 * instances start, then refused with 503 and Retry-After past the queue's
 * limits. */
#include "harness.h"
#include "test.h"

#include <curl/curl.h>
#include <pthread.h>

static struct node N;

static long deployf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static long deployf(const char *fmt, ...)
{
    char m[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof(m), fmt, ap);
    va_end(ap);
    return deploy(&N, m);
}

static const char *start_of(const struct resp *r, char *buf)
{
    return resp_header(r, "x-thaw-start", buf, 32);
}

static void test_cold_start(void)
{
    /* standby_timeout 0: nothing is prewarmed, the first request is cold and
     * pays the function's 300 ms initialisation. */
    ASSERT_EQ(
        deployf(
            "{\"name\":\"cold\",\"runtime\":\"exec\",\"command\":[\"%s\",\"--init-ms\",\"300\"],"
            "\"scale\":{\"standby_timeout\":0}}",
            testfn_path()),
        201);
    sleep_ms(300);
    ASSERT_EQ(instances_in(&N, "cold", "ready") + instances_in(&N, "cold", "parked"), 0);
    struct resp r;
    char st[32];
    long t0 = now_ms();
    ASSERT_EQ(invoke(&N, "cold", "{\"op\":\"pid\"}", &r), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(start_of(&r, st), "cold");
    ASSERT_CMP(now_ms() - t0, >=, 300);
    resp_free(&r);
    ASSERT_EQ(invoke(&N, "cold", "{\"op\":\"pid\"}", &r), 0);
    ASSERT_STR_EQ(start_of(&r, st), "warm");
    resp_free(&r);
}

static void test_standby_hides_init(void)
{
    ASSERT_EQ(
        deployf("{\"name\":\"sb\",\"runtime\":\"exec\",\"command\":[\"%s\",\"--init-ms\",\"500\"]}",
                testfn_path()),
        201);
    /* The prewarmed standby instance initialises, then parks. */
    long deadline = now_ms() + 5000;
    while (instances_in(&N, "sb", "parked") != 1 && now_ms() < deadline)
        sleep_ms(50);
    ASSERT_EQ(instances_in(&N, "sb", "parked"), 1);
    struct resp r;
    char st[32];
    long t0 = now_ms();
    ASSERT_EQ(invoke(&N, "sb", "{\"op\":\"pid\"}", &r), 0);
    long took = now_ms() - t0;
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(start_of(&r, st), "standby");
    ASSERT_CMP(took, <, 400); /* the 500 ms init was paid before the request */
    resp_free(&r);
    ASSERT_EQ(instances_in(&N, "sb", "ready"), 1);
}

struct load {
    const char *name;
    const char *input;
    long status;
    int pid;
};

static void *one_call(void *arg)
{
    struct load *l = arg;
    struct resp r;
    if (invoke(&N, l->name, l->input, &r) == 0) {
        l->status = r.status;
        json_t *j = resp_json(&r);
        l->pid = (int)json_integer_value(json_object_get(j, "pid"));
        json_decref(j);
    }
    resp_free(&r);
    return NULL;
}

static void test_scale_up_to_max_not_beyond(void)
{
    ASSERT_EQ(
        deployf("{\"name\":\"up\",\"runtime\":\"exec\",\"command\":[\"%s\"],\"concurrency\":1,"
                "\"scale\":{\"max_instances\":3,\"queue_limit\":50,\"queue_timeout\":\"20s\"}}",
                testfn_path()),
        201);
    enum { NREQ = 9 };
    pthread_t t[NREQ];
    struct load l[NREQ];
    for (int i = 0; i < NREQ; i++) {
        l[i] = (struct load){"up", "{\"op\":\"sleep\",\"ms\":400}", 0, 0};
        pthread_create(&t[i], NULL, one_call, &l[i]);
    }
    int max_seen = 0;
    for (int k = 0; k < 20; k++) {
        /* Instances that can serve; one being stopped may linger briefly. */
        json_t *st = status_of(&N, "up");
        json_t *in = json_object_get(st, "instances");
        int total = (int)(json_integer_value(json_object_get(in, "ready")) +
                          json_integer_value(json_object_get(in, "starting")) +
                          json_integer_value(json_object_get(in, "parked")));
        json_decref(st);
        if (total > max_seen) max_seen = total;
        sleep_ms(50);
    }
    for (int i = 0; i < NREQ; i++)
        pthread_join(t[i], NULL);
    int pids[NREQ], n_pids = 0;
    for (int i = 0; i < NREQ; i++) {
        ASSERT_EQ(l[i].status, 200);
        int seen = 0;
        for (int j = 0; j < n_pids; j++)
            seen |= pids[j] == l[i].pid;
        if (!seen) pids[n_pids++] = l[i].pid;
    }
    ASSERT_EQ(n_pids, 3);
    ASSERT_EQ(max_seen, 3);
    ASSERT_CMP(node_log_count(&N, "\"direction\":\"up\""), >=, 1);
}

static void test_back_to_standby_then_zero(void)
{
    ASSERT_EQ(deployf("{\"name\":\"down\",\"runtime\":\"exec\",\"command\":[\"%s\"],"
                      "\"scale\":{\"idle_timeout\":\"600ms\",\"standby_timeout\":\"1s\","
                      "\"stable_window\":\"1s\",\"panic_window\":\"200ms\"}}",
                      testfn_path()),
              201);
    struct resp r;
    ASSERT_EQ(invoke(&N, "down", "{\"op\":\"pid\"}", &r), 0);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    ASSERT_EQ(instances_in(&N, "down", "ready"), 1);
    long deadline = now_ms() + 4000;
    while (instances_in(&N, "down", "parked") != 1 && now_ms() < deadline)
        sleep_ms(50);
    ASSERT_EQ(instances_in(&N, "down", "parked"), 1);
    ASSERT_EQ(instances_in(&N, "down", "ready"), 0);
    json_t *st = status_of(&N, "down");
    ASSERT_STR_EQ(json_string_value(json_object_get(st, "state")), "standby");
    json_decref(st);
    deadline = now_ms() + 4000;
    while (instances_in(&N, "down", "parked") != 0 && now_ms() < deadline)
        sleep_ms(50);
    sleep_ms(300);
    st = status_of(&N, "down");
    ASSERT_STR_EQ(json_string_value(json_object_get(st, "state")), "cold");
    ASSERT_EQ(json_integer_value(json_object_get(st, "instances_total")), 0);
    json_decref(st);
    /* Cold again: the next request starts a fresh instance. */
    char s[32];
    ASSERT_EQ(invoke(&N, "down", "{\"op\":\"pid\"}", &r), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(start_of(&r, s), "cold");
    resp_free(&r);
}

static void test_min_instances_stay_warm(void)
{
    ASSERT_EQ(deployf("{\"name\":\"minw\",\"runtime\":\"exec\",\"command\":[\"%s\"],"
                      "\"scale\":{\"min_instances\":2,\"idle_timeout\":\"300ms\","
                      "\"stable_window\":\"1s\",\"panic_window\":\"200ms\"}}",
                      testfn_path()),
              201);
    long deadline = now_ms() + 3000;
    while (instances_in(&N, "minw", "ready") != 2 && now_ms() < deadline)
        sleep_ms(50);
    ASSERT_EQ(instances_in(&N, "minw", "ready"), 2);
    sleep_ms(1800); /* well past idle_timeout and the stable window */
    ASSERT_EQ(instances_in(&N, "minw", "ready"), 2);
    struct resp r;
    char s[32];
    ASSERT_EQ(invoke(&N, "minw", "{\"op\":\"pid\"}", &r), 0);
    ASSERT_STR_EQ(start_of(&r, s), "warm");
    resp_free(&r);
}

static void test_held_then_503(void)
{
    /* One instance, one request at a time, at most one held for 2 s: room
     * for a slow start on a loaded machine (a spawn has taken 0.8 s under
     * sanitizers), while b, held behind a's 4 s request, still times out. */
    ASSERT_EQ(
        deployf("{\"name\":\"q\",\"runtime\":\"exec\",\"command\":[\"%s\",\"--init-ms\",\"200\"],"
                "\"concurrency\":1,\"scale\":{\"max_instances\":1,\"queue_limit\":1,"
                "\"queue_timeout\":\"2s\",\"standby_timeout\":0}}",
                testfn_path()),
        201);
    pthread_t t1, t2;
    struct load a = {"q", "{\"op\":\"sleep\",\"ms\":4000}", 0, 0};
    struct load b = {"q", "{\"op\":\"pid\"}", 0, 0};
    pthread_create(&t1, NULL, one_call, &a); /* held during init, then runs */
    sleep_ms(400);
    pthread_create(&t2, NULL, one_call, &b); /* held behind a, times out */
    sleep_ms(100);
    struct resp r;
    ASSERT_EQ(invoke(&N, "q", "{\"op\":\"pid\"}", &r), 0); /* queue full: at once */
    ASSERT_EQ(r.status, 503);
    char ra[16];
    ASSERT_STR_EQ(resp_header(&r, "Retry-After", ra, sizeof(ra)), "1");
    ASSERT_CONTAINS(r.body, "\"overloaded\"");
    resp_free(&r);
    pthread_join(t2, NULL);
    ASSERT_EQ(b.status, 503); /* past queue_timeout */
    pthread_join(t1, NULL);
    ASSERT_EQ(a.status, 200); /* held while the instance started, then served */
    ASSERT_CMP(node_log_count(&N, "\"direction\":\"up\""), >=, 1);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (node_start(&N, NULL)) {
        fprintf(stderr, "cannot start node\n");
        return 1;
    }
    RUN(test_cold_start);
    RUN(test_standby_hides_init);
    RUN(test_scale_up_to_max_not_beyond);
    RUN(test_back_to_standby_then_zero);
    RUN(test_min_instances_stay_warm);
    RUN(test_held_then_503);
    node_cleanup(&N);
    curl_global_cleanup();
    return TEST_REPORT();
}
