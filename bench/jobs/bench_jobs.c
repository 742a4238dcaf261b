/* Jobs benchmarks, each with its baseline measured in the same run on the
 * same disk:
 *   durable submits/s at 1, 4 and 16 keep-alive clients (single jobs, and
 *     batches of 50); baseline: a raw SQLite loop, one INSERT + COMMIT per
 *     row, WAL with synchronous=FULL (what a naive durable queue pays).
 *   completed jobs/s with a trivial function at 1, 4 and 16 clients
 *     submitting; baseline: synchronous invokes of the same function through
 *     the same gateway (the dispatch path without durability).
 *   queueing delay at low load (one job at a time): p50/p99 of the time from
 *     the job's commit to its start; baseline: p50/p99 of one durable SQLite
 *     commit (the floor a store-backed queue cannot go below).
 * Usage: bench_jobs [seconds per point]   (run from the build folder) */
#include "harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef TEST_ADMIN_KEY
#define AUTH_HEADER ""
#else
#define AUTH_HEADER "Authorization: Bearer " TEST_ADMIN_KEY "\r\n"
#endif

static struct node N;
static double seconds = 3;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof(double), cmp_dbl);
    return v[(int)(p * (n - 1) + 0.5)];
}

/* ---- a keep-alive raw HTTP client ---- */

static int connect_node(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)N.port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

/* One POST; returns the status and copies the body into out. */
static int post(int fd, const char *path, const char *body, char *out, size_t cap)
{
    char req[8192];
    int n = snprintf(req, sizeof(req),
                     "POST %s HTTP/1.1\r\nHost: b\r\n" AUTH_HEADER
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     path, strlen(body), body);
    if (n >= (int)sizeof(req) || send(fd, req, (size_t)n, 0) != n) return -1;
    static _Thread_local char buf[1 << 17];
    size_t got = 0;
    for (;;) {
        ssize_t r = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (r <= 0) return -1;
        got += (size_t)r;
        buf[got] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        char *cl = strcasestr(buf, "Content-Length:");
        if (end && cl && cl < end) {
            size_t len = strtoul(cl + 15, NULL, 10);
            if (got >= (size_t)(end - buf) + 4 + len) {
                if (out) snprintf(out, cap, "%s", end + 4);
                break;
            }
        }
    }
    return atoi(buf + 9);
}

/* ---- load: C clients posting for a while ---- */

struct load {
    const char *path;
    const char *body;
    int per_request; /* jobs per request */
    _Atomic long done;
    _Atomic long errors;
    double until;
    char last_id[64];
};

static void *client(void *arg)
{
    struct load *l = arg;
    int fd = connect_node();
    char out[1 << 16];
    while (fd >= 0 && now_s() < l->until) {
        int st = post(fd, l->path, l->body, out, sizeof(out));
        if (st == 202 || st == 200) {
            atomic_fetch_add(&l->done, l->per_request);
            char *id = strstr(out, "\"id\":\"");
            if (id) snprintf(l->last_id, sizeof(l->last_id), "%.36s", id + 6);
        } else {
            atomic_fetch_add(&l->errors, 1);
            if (st < 0) {
                close(fd);
                fd = connect_node();
            }
        }
    }
    if (fd >= 0) close(fd);
    return NULL;
}

static double run_load(struct load *l, int clients)
{
    pthread_t t[64];
    atomic_store(&l->done, 0);
    atomic_store(&l->errors, 0);
    double t0 = now_s();
    l->until = t0 + seconds;
    for (int i = 0; i < clients; i++)
        pthread_create(&t[i], NULL, client, l);
    for (int i = 0; i < clients; i++)
        pthread_join(t[i], NULL);
    double rate = (double)atomic_load(&l->done) / (now_s() - t0);
    if (atomic_load(&l->errors)) fprintf(stderr, "  (%ld errors)\n", atomic_load(&l->errors));
    return rate;
}

/* ---- baselines ---- */

static double sqlite_loop(double *commit_ms, int *n_commits)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/baseline.db", N.data);
    sqlite3 *db;
    sqlite3_open(path, &db);
    sqlite3_exec(db,
                 "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                 "CREATE TABLE q(id INTEGER PRIMARY KEY, body BLOB)",
                 NULL, NULL, NULL);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "INSERT INTO q(body) VALUES (?1)", -1, &st, NULL);
    const char *body = "{\"input\":{\"op\":\"sleep\",\"ms\":60000}}";
    int n = 0;
    double t0 = now_s(), until = t0 + seconds;
    while (now_s() < until && n < 100000) {
        double c0 = now_s();
        sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
        sqlite3_bind_blob(st, 1, body, (int)strlen(body), SQLITE_STATIC);
        sqlite3_step(st);
        sqlite3_reset(st);
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        commit_ms[n++] = (now_s() - c0) * 1000;
    }
    double rate = n / (now_s() - t0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    *n_commits = n;
    return rate;
}

/* ---- completion: all of a deployment's jobs ended ---- */

static bool any_in(const char *dep, const char *state)
{
    char path[256];
    snprintf(path, sizeof(path), "/v1/jobs?deployment=%s&state=%s&limit=1", dep, state);
    struct resp r;
    if (http(&N, "GET", path, NULL, NULL, &r)) return true;
    bool any = strstr(r.body, "\"id\"") != NULL;
    resp_free(&r);
    return any;
}

static void wait_drained(const char *dep)
{
    while (any_in(dep, "queued") || any_in(dep, "running"))
        sleep_ms(20);
}

static void section(const char *title)
{
    printf("\n%s\n", title);
}

int main(int argc, char **argv)
{
    if (argc > 1) seconds = atof(argv[1]);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (node_start(&N, (const char *[]){"--access-log", "off", NULL})) {
        fprintf(stderr, "cannot start node (run from the build folder)\n");
        return 1;
    }
    char m[2048];
    /* A parked deployment: one slot, jobs that sleep, so the runner stays
     * out of the way of the submit measurements. */
    snprintf(m, sizeof(m),
             "{\"name\":\"parked\",\"runtime\":\"exec\",\"command\":[\"%s\"],\"concurrency\":1,"
             "\"timeout\":\"120s\",\"scale\":{\"max_instances\":1},"
             "\"jobs\":{\"queue_limit\":10000000,\"concurrency\":1}}",
             testfn_path());
    deploy(&N, m);
    snprintf(m, sizeof(m),
             "{\"name\":\"trivial\",\"runtime\":\"exec\",\"command\":[\"%s\"],\"concurrency\":8,"
             "\"scale\":{\"min_instances\":2,\"max_instances\":2},"
             "\"jobs\":{\"queue_limit\":10000000}}",
             testfn_path());
    deploy(&N, m);
    sleep_ms(500);

    double commit_ms[100000];
    int n_commits = 0;
    double base = sqlite_loop(commit_ms, &n_commits);
    section("durable submits (202 only after the commit), single jobs");
    printf("  baseline: SQLite INSERT+COMMIT loop, WAL, synchronous=FULL   %8.0f /s\n", base);
    int cs[] = {1, 4, 16};
    struct load single = {.path = "/v1/deployments/parked/jobs",
                          .body = "{\"input\":{\"op\":\"sleep\",\"ms\":60000}}",
                          .per_request = 1};
    /* 64 clients as well: one commit serves everyone waiting, so the rate
     * grows with the number of concurrent submitters. */
    int cs4[] = {1, 4, 16, 64};
    for (int i = 0; i < 4; i++) {
        double r = run_load(&single, cs4[i]);
        printf("  %2d clients                                                %8.0f /s  (%.1fx "
               "baseline)\n",
               cs4[i], r, r / base);
    }
    static char batch[8192];
    int off = snprintf(batch, sizeof(batch), "{\"inputs\":[");
    for (int i = 0; i < 50; i++)
        off += snprintf(batch + off, sizeof(batch) - (size_t)off,
                        "%s{\"op\":\"sleep\",\"ms\":60000}", i ? "," : "");
    snprintf(batch + off, sizeof(batch) - (size_t)off, "]}");
    struct load batched = {.path = "/v1/deployments/parked/jobs", .body = batch, .per_request = 50};
    section("durable submits, batches of 50 inputs per request");
    for (int i = 0; i < 3; i++) {
        double r = run_load(&batched, cs[i]);
        printf("  %2d clients                                                %8.0f jobs/s  (%.1fx "
               "baseline)\n",
               cs[i], r, r / base);
    }

    section("completed jobs/s, trivial function (2 instances x 8)");
    struct load sync = {
        .path = "/v1/deployments/trivial/invoke", .body = "{\"x\":1}", .per_request = 1};
    struct load jobs = {
        .path = "/v1/deployments/trivial/jobs", .body = "{\"input\":{\"x\":1}}", .per_request = 1};
    for (int i = 0; i < 3; i++) {
        double b = run_load(&sync, cs[i]);
        double t0 = now_s();
        run_load(&jobs, cs[i]);
        wait_drained("trivial");
        double r = (double)atomic_load(&jobs.done) / (now_s() - t0);
        printf("  %2d clients: jobs %8.0f /s   baseline sync invoke %8.0f /s  (%.2fx)\n", cs[i], r,
               b, r / b);
    }

    section("queueing delay at low load (one job at a time, commit -> start)");
    enum { SAMPLES = 200 };
    static double delay[SAMPLES];
    int fd = connect_node(), n = 0;
    for (int i = 0; i < SAMPLES && fd >= 0; i++) {
        char out[4096], path[128];
        if (post(fd, "/v1/deployments/trivial/jobs", "{\"input\":{\"x\":2}}", out, sizeof(out)) !=
            202)
            continue;
        char *id = strstr(out, "\"id\":\"");
        if (!id) continue;
        snprintf(path, sizeof(path), "/v1/jobs/%.36s?wait=10", id + 6);
        struct resp r;
        http(&N, "GET", path, NULL, NULL, &r);
        json_t *j = resp_json(&r);
        resp_free(&r);
        json_t *a0 = json_array_get(json_object_get(j, "attempt_log"), 0);
        if (a0) {
            delay[n++] = (double)(json_integer_value(json_object_get(a0, "started_ms")) -
                                  json_integer_value(json_object_get(j, "created_ms")));
        }
        json_decref(j);
        sleep_ms(5);
    }
    if (fd >= 0) close(fd);
    printf("  jobs:     p50 %6.1f ms   p99 %6.1f ms   (%d samples; millisecond timestamps)\n",
           pct(delay, n, 0.5), pct(delay, n, 0.99), n);
    printf("  baseline: one durable SQLite commit p50 %6.2f ms   p99 %6.2f ms\n",
           pct(commit_ms, n_commits, 0.5), pct(commit_ms, n_commits, 0.99));
    /* The parked job sleeps a minute: no drain. */
    kill(N.pid, SIGKILL);
    node_cleanup(&N);
    curl_global_cleanup();
    return 0;
}
