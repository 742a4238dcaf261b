/* Failures through the real binary: an instance that crashes mid-request, a
 * function that never prints ready, one that cannot even start, a request
 * that times out, and SIGTERM with requests in flight. */
#include "harness.h"
#include "test.h"

#include <curl/curl.h>
#include <dirent.h>
#include <unistd.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

static struct node N;

/* Processes whose working directory is under dir: the node's instances run
 * in private temp dirs below its data dir. */
static int processes_in(const char *dir)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char link[300], target[1024];
        snprintf(link, sizeof(link), "/proc/%s/cwd", e->d_name);
        ssize_t len = readlink(link, target, sizeof(target) - 1);
        if (len <= 0) continue;
        target[len] = 0;
        n += strncmp(target, dir, strlen(dir)) == 0;
    }
    if (d) closedir(d);
    return n;
}

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

struct call {
    const char *name;
    const char *input;
    long status;
    char body[512];
};

static void *one_call(void *arg)
{
    struct call *c = arg;
    struct resp r;
    if (invoke(&N, c->name, c->input, &r) == 0) {
        c->status = r.status;
        snprintf(c->body, sizeof(c->body), "%s", r.body);
    }
    resp_free(&r);
    return NULL;
}

static void test_crash_mid_request(void)
{
    ASSERT_EQ(
        deployf("{\"name\":\"crashy\",\"runtime\":\"exec\",\"command\":[\"%s\"],\"concurrency\":4}",
                testfn_path()),
        201);
    /* A slow request shares the instance with the one that crashes it: both
     * get a 502 naming the exit, at once. */
    struct call slow = {"crashy", "{\"op\":\"sleep\",\"ms\":3000}", 0, ""};
    pthread_t t;
    pthread_create(&t, NULL, one_call, &slow);
    sleep_ms(200);
    struct resp r;
    long t0 = now_ms();
    ASSERT_EQ(invoke(&N, "crashy", "{\"op\":\"crash\"}", &r), 0);
    ASSERT_EQ(r.status, 502);
    ASSERT_CONTAINS(r.body, "\"instance_crashed\"");
    ASSERT_CONTAINS(r.body, "exit code 3");
    resp_free(&r);
    pthread_join(t, NULL);
    ASSERT_EQ(slow.status, 502);
    ASSERT_CMP(now_ms() - t0, <, 2000);
    /* The deployment recovers with a new instance. */
    ASSERT_EQ(invoke(&N, "crashy", "{\"op\":\"pid\"}", &r), 0);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
}

static void test_never_ready(void)
{
    ASSERT_EQ(
        deployf("{\"name\":\"mute\",\"runtime\":\"exec\",\"command\":[\"%s\",\"--never-ready\"],"
                "\"scale\":{\"startup_timeout\":\"500ms\",\"standby_timeout\":0}}",
                testfn_path()),
        201);
    struct resp r;
    long t0 = now_ms();
    ASSERT_EQ(invoke(&N, "mute", "{}", &r), 0);
    long took = now_ms() - t0;
    ASSERT_EQ(r.status, 502);
    ASSERT_CONTAINS(r.body, "\"instance_start_failed\"");
    ASSERT_CONTAINS(r.body, "ready");
    ASSERT_CMP(took, >=, 450);
    ASSERT_CMP(took, <, 3000);
    resp_free(&r);
    /* Nothing is left running for it. */
    sleep_ms(300);
    ASSERT_EQ(instances_in(&N, "mute", "starting"), 0);
}

static void test_cannot_start(void)
{
    ASSERT_EQ(deploy(&N,
                     "{\"name\":\"ghost\",\"runtime\":\"exec\",\"command\":[\"/no/such/program\"],"
                     "\"scale\":{\"standby_timeout\":0}}"),
              201);
    struct resp r;
    ASSERT_EQ(invoke(&N, "ghost", "{}", &r), 0);
    ASSERT_EQ(r.status, 502);
    ASSERT_CONTAINS(r.body, "/no/such/program");
    ASSERT_CONTAINS(r.body, "No such file");
    resp_free(&r);
    /* It exits during start-up: the same clear error, no crash loop. */
    ASSERT_EQ(
        deployf(
            "{\"name\":\"quitter\",\"runtime\":\"exec\",\"command\":[\"%s\",\"--exit-at-start\"],"
            "\"scale\":{\"standby_timeout\":0}}",
            testfn_path()),
        201);
    ASSERT_EQ(invoke(&N, "quitter", "{}", &r), 0);
    ASSERT_EQ(r.status, 502);
    ASSERT_CONTAINS(r.body, "exit code 7");
    resp_free(&r);
}

static void test_request_timeout(void)
{
    ASSERT_EQ(
        deployf(
            "{\"name\":\"slowfn\",\"runtime\":\"exec\",\"command\":[\"%s\"],\"timeout\":\"500ms\"}",
            testfn_path()),
        201);
    struct resp r;
    long t0 = now_ms();
    ASSERT_EQ(invoke(&N, "slowfn", "{\"op\":\"hang\"}", &r), 0);
    ASSERT_EQ(r.status, 504);
    ASSERT_CONTAINS(r.body, "\"timeout\"");
    ASSERT_CMP(now_ms() - t0, <, 2000);
    resp_free(&r);
    ASSERT_EQ(invoke(&N, "slowfn", "{\"op\":\"pid\"}", &r), 0);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
}

static void test_update_replaces_instances(void)
{
    ASSERT_EQ(
        deployf(
            "{\"name\":\"ver\",\"runtime\":\"exec\",\"command\":[\"%s\"],\"env\":{\"V\":\"1\"}}",
            testfn_path()),
        201);
    struct resp r;
    ASSERT_EQ(invoke(&N, "ver", "{\"op\":\"pid\"}", &r), 0);
    json_t *j = resp_json(&r);
    int pid1 = (int)json_integer_value(json_object_get(j, "pid"));
    json_decref(j);
    resp_free(&r);
    ASSERT_EQ(
        deployf(
            "{\"name\":\"ver\",\"runtime\":\"exec\",\"command\":[\"%s\"],\"env\":{\"V\":\"2\"}}",
            testfn_path()),
        200);
    ASSERT_EQ(invoke(&N, "ver", "{\"op\":\"pid\"}", &r), 0);
    ASSERT_EQ(r.status, 200);
    j = resp_json(&r);
    ASSERT_NE(json_integer_value(json_object_get(j, "pid")), pid1);
    json_decref(j);
    resp_free(&r);
}

static void test_sigterm_drains_in_flight(void)
{
    ASSERT_EQ(
        deployf("{\"name\":\"drain\",\"runtime\":\"exec\",\"command\":[\"%s\"],\"concurrency\":8}",
                testfn_path()),
        201);
    struct resp r;
    ASSERT_EQ(invoke(&N, "drain", "{\"op\":\"pid\"}", &r), 0);
    resp_free(&r);
    enum { NREQ = 6 };
    pthread_t t[NREQ];
    struct call c[NREQ];
    for (int i = 0; i < NREQ; i++) {
        c[i] = (struct call){"drain", "{\"op\":\"sleep\",\"ms\":800}", 0, ""};
        pthread_create(&t[i], NULL, one_call, &c[i]);
    }
    sleep_ms(300);
    kill(N.pid, SIGTERM);
    for (int i = 0; i < NREQ; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < NREQ; i++)
        ASSERT_EQ(c[i].status, 200);
    int st = 0;
    long deadline = now_ms() + 10000;
    while (waitpid(N.pid, &st, WNOHANG) != N.pid && now_ms() < deadline)
        sleep_ms(20);
    ASSERT(WIFEXITED(st));
    ASSERT_EQ(WEXITSTATUS(st), 0);
    N.pid = 0;
    ASSERT_EQ(node_log_count(&N, "\"node_draining\""), 1);
    ASSERT_EQ(node_log_count(&N, "\"node_stopped\""), 1);
    /* No instance outlives the node. */
    ASSERT_EQ(processes_in(N.data), 0);
}

/* A second SIGTERM while draining stops the node at once: what is still in
 * flight is failed and freed in order (under ASan a use after free or a
 * leak would make the exit status non-zero), and no instance outlives it. */
static void test_forced_stop_in_flight(void)
{
    node_cleanup(&N);
    memset(&N, 0, sizeof(N));
    ASSERT_EQ(node_start(&N, NULL), 0);
    ASSERT_EQ(deployf("{\"name\":\"stuck\",\"runtime\":\"exec\",\"command\":[\"%s\"],"
                      "\"concurrency\":2,\"scale\":{\"max_instances\":1}}",
                      testfn_path()),
              201);
    enum { NREQ = 4 }; /* two running, two held */
    pthread_t t[NREQ];
    struct call c[NREQ];
    for (int i = 0; i < NREQ; i++) {
        c[i] = (struct call){"stuck", "{\"op\":\"sleep\",\"ms\":20000}", 0, ""};
        pthread_create(&t[i], NULL, one_call, &c[i]);
    }
    long deadline = now_ms() + 10000;
    while (node_log_count(&N, "\"instance_ready\"") < 1 && now_ms() < deadline)
        sleep_ms(20);
    sleep_ms(300);
    kill(N.pid, SIGTERM);
    sleep_ms(200);
    kill(N.pid, SIGTERM);
    int st = 0;
    deadline = now_ms() + 20000;
    while (waitpid(N.pid, &st, WNOHANG) != N.pid && now_ms() < deadline)
        sleep_ms(20);
    ASSERT(WIFEXITED(st));
    ASSERT_EQ(WEXITSTATUS(st), 0);
    N.pid = 0;
    for (int i = 0; i < NREQ; i++) {
        pthread_join(t[i], NULL);
        ASSERT(c[i].status != 200); /* answered 503 or cut off, never left hanging */
    }
    ASSERT_EQ(node_log_count(&N, "\"node_forced_stop\""), 1);
    /* SIGKILLed instances may take a moment to be gone. */
    deadline = now_ms() + 5000;
    while (processes_in(N.data) > 0 && now_ms() < deadline)
        sleep_ms(20);
    ASSERT_EQ(processes_in(N.data), 0);
}

/* `--data ./dir` (what `make run` uses): instances start in their own
 * directories, so every path the node hands them must be absolute. */
static void test_relative_data_dir(void)
{
    node_cleanup(&N);
    memset(&N, 0, sizeof(N));
    N.relative_data = true;
    ASSERT_EQ(node_start(&N, NULL), 0);
    ASSERT_EQ(
        deployf("{\"name\":\"rel\",\"runtime\":\"exec\",\"command\":[\"%s\"]}", testfn_path()),
        201);
    struct resp r;
    ASSERT_EQ(invoke(&N, "rel", "{\"op\":\"pid\"}", &r), 0);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (node_start(&N, (const char *[]){"--stop-grace", "2s", NULL})) {
        fprintf(stderr, "cannot start node\n");
        return 1;
    }
    RUN(test_crash_mid_request);
    RUN(test_never_ready);
    RUN(test_cannot_start);
    RUN(test_request_timeout);
    RUN(test_update_replaces_instances);
    RUN(test_sigterm_drains_in_flight);
    RUN(test_forced_stop_in_flight);
    RUN(test_relative_data_dir);
    node_cleanup(&N);
    curl_global_cleanup();
    return TEST_REPORT();
}
