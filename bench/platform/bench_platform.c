/* Platform benchmarks (issue "Platform core"), all baselines measured in the
 * same run:
 *   cold start: time to the first byte of a request that finds a deployment
 *     cold, standby or warm, for a trivial C function and for one that
 *     sleeps 500 ms in its initialisation; baseline: spawning the same
 *     function directly and waiting for its {"ready":true}.
 *   gateway overhead: one keep-alive HTTP client calling the trivial function
 *     through thaw vs. the same function driven directly over its pipe.
 * Usage: bench_platform [trials]   (run from the build folder; see bench/run.sh) */
#include "harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct node N;

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof(double), cmp_dbl);
    int i = (int)(p * (n - 1) + 0.5);
    return v[i];
}

/* ---- a keep-alive raw HTTP client: request out, response in ---- */

static int connect_node(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)N.port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a))) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

/* Sends one invoke and returns microseconds to the first byte of the
 * answer; reads the whole response (Content-Length). -1 on error. */
static double timed_invoke(int fd, const char *name, const char *body, int *status)
{
    char req[1024], buf[65536];
    int n = snprintf(req, sizeof(req),
                     "POST /v1/deployments/%s/invoke HTTP/1.1\r\nHost: b\r\n"
                     "Authorization: Bearer " TEST_ADMIN_KEY "\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     name, strlen(body), body);
    double t0 = now_us(), first = -1;
    if (send(fd, req, (size_t)n, 0) != n) return -1;
    size_t got = 0;
    for (;;) {
        ssize_t r = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (r <= 0) return -1;
        if (first < 0) first = now_us() - t0;
        got += (size_t)r;
        buf[got] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        char *cl = strcasestr(buf, "Content-Length:");
        if (end && cl && cl < end) {
            size_t len = strtoul(cl + 15, NULL, 10);
            if (got >= (size_t)(end - buf) + 4 + len) break;
        }
    }
    *status = atoi(buf + 9);
    return first;
}

/* ---- the baseline: the function driven directly ---- */

struct direct {
    pid_t pid;
    FILE *in, *out;
};

static double direct_start(struct direct *d, const char *const *argv)
{
    int to[2], from[2];
    if (pipe(to) || pipe(from)) return -1;
    double t0 = now_us();
    d->pid = fork();
    if (d->pid == 0) {
        dup2(to[0], 0);
        dup2(from[1], 1);
        close(to[1]);
        close(from[0]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    d->in = fdopen(to[1], "w");
    d->out = fdopen(from[0], "r");
    char line[256];
    if (!fgets(line, sizeof(line), d->out)) return -1;
    return now_us() - t0;
}

static void direct_stop(struct direct *d)
{
    fclose(d->in);
    fclose(d->out);
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
}

static double direct_call(struct direct *d, uint64_t id)
{
    char line[4096];
    double t0 = now_us();
    fprintf(d->in, "{\"id\":%llu,\"input\":{\"n\":1}}\n", (unsigned long long)id);
    fflush(d->in);
    if (!fgets(line, sizeof(line), d->out)) return -1;
    return now_us() - t0;
}

/* ---- cold start ---- */

static void report(const char *what, double *v, int n, double base_p50)
{
    double p50 = pct(v, n, 0.5), p99 = pct(v, n, 0.99);
    printf("  %-34s p50 %9.1f us  p99 %9.1f us", what, p50, p99);
    if (base_p50 > 0) printf("  (p50 %.2fx baseline)", p50 / base_p50);
    printf("\n");
}

static void cold_start_bench(const char *label, const char *cmd_json, const char *const *argv,
                             int trials)
{
    printf("\ncold start, %s (%d trials each)\n", label, trials);
    double *base = calloc((size_t)trials, sizeof(double));
    for (int i = 0; i < trials; i++) {
        struct direct d;
        base[i] = direct_start(&d, argv);
        direct_stop(&d);
    }
    double base_p50 = pct(base, trials, 0.5);
    report("baseline: spawn directly to ready", base, trials, 0);

    double *cold = calloc((size_t)trials, sizeof(double));
    double *standby = calloc((size_t)trials, sizeof(double));
    double *warm = calloc((size_t)trials, sizeof(double));
    char m[2048], name[64];
    int status, fd = connect_node();
    for (int i = 0; i < trials; i++) {
        snprintf(name, sizeof(name), "c%d-%d", i, getpid());
        snprintf(m, sizeof(m),
                 "{\"name\":\"%s\",\"runtime\":\"exec\",\"command\":%s,\"scale\":{\"standby_"
                 "timeout\":0}}",
                 name, cmd_json);
        deploy(&N, m);
        cold[i] = timed_invoke(fd, name, "{\"n\":1}", &status);
        if (status != 200) fprintf(stderr, "cold request failed: %d\n", status);
        warm[i] = timed_invoke(fd, name, "{\"n\":1}", &status);
        struct resp r;
        char path[128];
        snprintf(path, sizeof(path), "/v1/deployments/%s", name);
        http(&N, "DELETE", path, NULL, NULL, &r);
        resp_free(&r);
    }
    /* Standby: fresh deployments prewarm one parked instance each. */
    const int batch = 10;
    for (int i = 0; i < trials; i += batch) {
        int nb = trials - i < batch ? trials - i : batch;
        for (int k = 0; k < nb; k++) {
            snprintf(name, sizeof(name), "s%d-%d", i + k, getpid());
            snprintf(m, sizeof(m), "{\"name\":\"%s\",\"runtime\":\"exec\",\"command\":%s}", name,
                     cmd_json);
            deploy(&N, m);
        }
        for (int k = 0; k < nb; k++) {
            snprintf(name, sizeof(name), "s%d-%d", i + k, getpid());
            long deadline = now_ms() + 10000;
            while (instances_in(&N, name, "parked") != 1 && now_ms() < deadline)
                sleep_ms(20);
        }
        for (int k = 0; k < nb; k++) {
            snprintf(name, sizeof(name), "s%d-%d", i + k, getpid());
            standby[i + k] = timed_invoke(fd, name, "{\"n\":1}", &status);
            if (status != 200) fprintf(stderr, "standby request failed: %d\n", status);
            struct resp r;
            char path[128];
            snprintf(path, sizeof(path), "/v1/deployments/%s", name);
            http(&N, "DELETE", path, NULL, NULL, &r);
            resp_free(&r);
        }
    }
    close(fd);
    report("through thaw: cold", cold, trials, base_p50);
    report("through thaw: standby", standby, trials, base_p50);
    report("through thaw: warm", warm, trials, base_p50);
    free(base);
    free(cold);
    free(standby);
    free(warm);
}

/* ---- gateway overhead ---- */

static void overhead_bench(int n)
{
    printf("\ngateway overhead, trivial C function, %d sequential requests each\n", n);
    const char *argv[] = {NULL, NULL};
    char echo[1024];
    snprintf(echo, sizeof(echo), "%s/thaw-echo", getenv("THAW_BUILD_DIR"));
    argv[0] = echo;
    struct direct d;
    direct_start(&d, argv);
    double *dv = calloc((size_t)n, sizeof(double)), *tv = calloc((size_t)n, sizeof(double));
    for (int i = 0; i < n / 10; i++)
        direct_call(&d, (uint64_t)i + 1); /* warm up */
    for (int i = 0; i < n; i++)
        dv[i] = direct_call(&d, (uint64_t)i + 1000);
    direct_stop(&d);
    char m[1200];
    snprintf(m, sizeof(m),
             "{\"name\":\"ovh\",\"runtime\":\"exec\",\"command\":[\"%s\"],\"concurrency\":16,"
             "\"scale\":{\"min_instances\":1,\"max_instances\":1}}",
             echo);
    deploy(&N, m);
    int fd = connect_node(), status;
    for (int i = 0; i < n / 10; i++)
        timed_invoke(fd, "ovh", "{\"n\":1}", &status);
    for (int i = 0; i < n; i++)
        tv[i] = timed_invoke(fd, "ovh", "{\"n\":1}", &status);
    close(fd);
    double dp50 = pct(dv, n, 0.5), dp99 = pct(dv, n, 0.99);
    double tp50 = pct(tv, n, 0.5), tp99 = pct(tv, n, 0.99);
    printf("  direct over its pipe            p50 %8.1f us  p99 %8.1f us\n", dp50, dp99);
    printf("  through thaw (HTTP keep-alive)  p50 %8.1f us  p99 %8.1f us\n", tp50, tp99);
    printf("  thaw adds                       p50 %8.1f us  p99 %8.1f us  (ratio p50 %.2fx)\n",
           tp50 - dp50, tp99 - dp99, tp50 / dp50);
    free(dv);
    free(tv);
}

int main(int argc, char **argv)
{
    int trials = argc > 1 ? atoi(argv[1]) : 100;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!getenv("THAW_BUILD_DIR")) setenv("THAW_BUILD_DIR", ".", 1);
    if (!getenv("THAW_BIN")) setenv("THAW_BIN", "./thaw", 1);
    if (node_start(&N, (const char *[]){"--access-log", "off", "--threads",
                                        getenv("BENCH_THREADS") ? getenv("BENCH_THREADS") : "2",
                                        NULL})) {
        fprintf(stderr, "cannot start node\n");
        return 1;
    }
    char echo[1024], fn[1024], echo_json[1100], fn_json[1200];
    snprintf(echo, sizeof(echo), "%s/thaw-echo", getenv("THAW_BUILD_DIR"));
    snprintf(fn, sizeof(fn), "%s/thaw-testfn", getenv("THAW_BUILD_DIR"));
    snprintf(echo_json, sizeof(echo_json), "[\"%s\"]", echo);
    snprintf(fn_json, sizeof(fn_json), "[\"%s\",\"--init-ms\",\"500\"]", fn);
    overhead_bench(trials * 20);
    cold_start_bench("trivial C function", echo_json, (const char *[]){echo, NULL}, trials);
    cold_start_bench("function with 500 ms init", fn_json,
                     (const char *[]){fn, "--init-ms", "500", NULL}, trials);
    printf("\nthroughput: run bench/run.sh for wrk at 64 connections\n");
    node_cleanup(&N);
    return 0;
}
