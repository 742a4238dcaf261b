/* Start-up and memory of the llm runtime (issue 4), on a generated model of
 * TinyLlama-1.1B's shape in Q4_K, page cache warm, baselines from the same run:
 *   cold start: template start (exec, map + prefault the weights) to the first
 *     token of a forked instance, against loading the model in one process
 *     and computing the same first token (what any process-per-instance
 *     runtime pays);
 *   standby: fork from a loaded template to the first token;
 *   memory: PSS (smaps_rollup) added by each extra instance of the same
 *     model, against its KV cache and the 16 MiB target.
 *   standby after idle (--idle S): the same after the template sat S seconds
 *     untouched (this kind of machine reclaims memory idle for about a minute).
 * Usage: bench_llm [--dir D] [--type Q4_K|Q4_K_M|Q8_0] [--context N] [--trials N]
 *                  [--idle S]  (from the build folder) */
#include "engine/engine.h"
#include "runtime/runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_dbl);
    return n ? v[n / 2] : 0;
}

/* Reads one line (without the newline) within timeout_ms; -1 on EOF/timeout. */
static int read_line(int fd, char *out, size_t cap, int timeout_ms)
{
    size_t len = 0;
    double end = now_ms() + timeout_ms;
    while (len + 1 < cap) {
        struct pollfd p = {fd, POLLIN, 0};
        int left = (int)(end - now_ms());
        if (left <= 0 || poll(&p, 1, left) <= 0) return -1;
        ssize_t n = read(fd, out + len, 1);
        if (n <= 0) return -1;
        if (out[len] == '\n') break;
        len++;
    }
    out[len] = 0;
    return (int)len;
}

static const char *model_path;
static int context = 2048;

/* Starts `thaw __runtime model` on a socketpair, unsandboxed (the sandbox
 * costs the same whatever the runtime). Returns its pid and the control end. */
static pid_t start_template(int *ctl)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) return -1;
    char spec[2048];
    snprintf(spec, sizeof(spec),
             "{\"name\":\"bench\",\"runtime\":\"llm\",\"model\":\"%s\",\"threads\":1,"
             "\"context\":%d,\"parallel\":1,\"sandbox\":false,\"sampling\":{\"temperature\":0}}",
             model_path, context);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(sv[1], 0);
        dup2(sv[1], 1);
        setenv("OPENBLAS_NUM_THREADS", "1", 1);
        const char *bin = getenv("THAW_BIN") ? getenv("THAW_BIN") : "./thaw";
        execl(bin, bin, RUNTIME_MODEL_COMMAND, "model", "--spec", spec, (char *)NULL);
        _exit(127);
    }
    close(sv[1]);
    *ctl = sv[0];
    return pid;
}

struct inst {
    pid_t pid;
    int sock;
    long long kv_bytes;
};

/* Forks an instance and waits for its ready line. */
static int fork_instance(int ctl, struct inst *in)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) return -1;
    struct thaw_err err = {0};
    int rc = runtime_template_fork(ctl, sv[1], 2, 10000, &in->pid, &err);
    close(sv[1]);
    if (rc) {
        fprintf(stderr, "fork: %s\n", err.msg);
        close(sv[0]);
        return -1;
    }
    in->sock = sv[0];
    char line[512];
    if (read_line(in->sock, line, sizeof(line), 60000) < 0) return -1;
    const char *kv = strstr(line, "\"kv_bytes\":");
    in->kv_bytes = kv ? atoll(kv + 11) : 0;
    return 0;
}

/* Sends a completion and waits for its first token (stream) or its end. */
static double request(struct inst *in, int max_tokens, bool first_only)
{
    static int id = 0;
    char req[256], line[65536];
    snprintf(req, sizeof(req),
             "{\"id\":%d,\"stream\":true,\"input\":{\"op\":\"complete\",\"prompt\":\"Once upon a "
             "time\",\"max_tokens\":%d}}\n",
             ++id, max_tokens);
    double t0 = now_ms();
    if (write(in->sock, req, strlen(req)) != (ssize_t)strlen(req)) return -1;
    double first = -1;
    for (;;) {
        if (read_line(in->sock, line, sizeof(line), 120000) < 0) return -1;
        if (first < 0) first = now_ms() - t0;
        if (strstr(line, "\"output\"") || strstr(line, "\"error\"")) break;
        if (first_only && strstr(line, "\"chunk\"")) {
            /* drain the rest so the next request starts clean */
            while (read_line(in->sock, line, sizeof(line), 120000) >= 0 &&
                   !strstr(line, "\"output\"") && !strstr(line, "\"error\""))
                ;
            break;
        }
    }
    return first;
}

static void stop_instance(struct inst *in)
{
    close(in->sock);
    waitpid(in->pid, NULL, 0); /* we are the subreaper */
}

/* kB of a field of /proc/pid/smaps_rollup. */
static long long rollup_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long long v = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, n) == 0 && line[n] == ':') v = atoll(line + n + 1);
    fclose(f);
    return v;
}

/* The baseline: one process loads the model and computes the first token. */
static double in_process_first_token(void)
{
    double t0 = now_ms();
    struct engine_model *m = NULL;
    struct engine_tokenizer *tok = NULL;
    struct engine_ctx *c = NULL;
    struct thaw_err err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    struct engine_ctx_params cp = {.n_ctx = context, .n_seq_max = 1, .n_threads = 1};
    int rc = engine_model_load(model_path, &m, &err);
    if (!rc) rc = tokenizer_from_gguf(engine_model_gguf(m), &tok, &err);
    if (!rc) rc = tokenizer_encode(tok, "Once upon a time", 16, true, true, &ids, &n, &err);
    if (!rc) rc = engine_ctx_new(m, &cp, &c, &err);
    if (!rc) rc = engine_feed(c, 0, ids, (int32_t)n, &err);
    double t = now_ms() - t0;
    if (rc) fprintf(stderr, "baseline: %s\n", err.msg);
    free(ids);
    engine_ctx_free(c);
    tokenizer_free(tok);
    engine_model_free(m);
    return rc ? -1 : t;
}

/* The file bench_engine makes for the same shape and type (shared cache). */
static int ensure_model(const char *dir, const char *type, char *path, size_t n)
{
    snprintf(path, n, "%s/thaw_bench_tinyllama-1.1b_%s.gguf", dir, type);
    if (access(path, R_OK) == 0) return 0;
    struct engine_gen_params p;
    struct thaw_err err = {0};
    if (engine_gen_preset("tinyllama-1.1b", &p, &err)) return -1;
    if (!strcmp(type, "Q4_K_M"))
        p.type = GGML_TYPE_Q4_K, p.q4_k_m = true;
    else if (!strcmp(type, "Q8_0"))
        p.type = GGML_TYPE_Q8_0;
    else if (!strcmp(type, "Q4_K"))
        p.type = GGML_TYPE_Q4_K;
    else
        return fprintf(stderr, "--type: Q4_K, Q4_K_M or Q8_0\n"), -1;
    fprintf(stderr, "generating %s ...\n", path);
    if (engine_gen_write(&p, path, NULL, &err)) return fprintf(stderr, "%s\n", err.msg), -1;
    return 0;
}

/* Reads the file through once so every figure sees a warm page cache. */
static void warm_cache(const char *path)
{
    int fd = open(path, O_RDONLY);
    static char buf[1 << 20];
    while (fd >= 0 && read(fd, buf, sizeof(buf)) > 0) {
    }
    if (fd >= 0) close(fd);
}

/* Standby after the template sat idle: this kind of machine pages out
 * memory left untouched for about a minute, the page cache included. */
static void standby_after_idle(int ctl, int idle_s, double warm_ms)
{
    sleep((unsigned)idle_s);
    struct inst in;
    double t0 = now_ms();
    if (fork_instance(ctl, &in)) return;
    double t = now_ms() - t0 + request(&in, 1, true);
    stop_instance(&in);
    printf("  standby after %d s idle: fork to first token     %8.1f ms  (%.1f ms over warm)\n",
           idle_s, t, t - warm_ms);
}

int main(int argc, char **argv)
{
    const char *dir = "/tmp", *type = "Q4_K";
    int trials = 5, idle_s = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--dir"))
            dir = argv[i + 1];
        else if (!strcmp(argv[i], "--context"))
            context = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--trials"))
            trials = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--type"))
            type = argv[i + 1];
        else if (!strcmp(argv[i], "--idle"))
            idle_s = atoi(argv[i + 1]);
    }
    if (trials < 1 || trials > 100) trials = 5;
    static char path[1024];
    if (ensure_model(dir, type, path, sizeof(path))) return 1;
    model_path = path;
    /* Instances are reparented to us when the template's intermediate exits. */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    signal(SIGPIPE, SIG_IGN);
    warm_cache(path);
    printf("llm runtime start-up and memory: %s (TinyLlama-1.1B shape, %s), context %d, "
           "1 thread, page cache warm (file just read), median of %d\n",
           path, type, context, trials);

    double base[100], cold[100], cold_load[100], standby[100], fork_ms[100], warm[100];
    for (int t = 0; t < trials; t++)
        base[t] = in_process_first_token();
    for (int t = 0; t < trials; t++) {
        int ctl;
        char line[512];
        double t0 = now_ms();
        pid_t tp = start_template(&ctl);
        if (tp < 0 || read_line(ctl, line, sizeof(line), 120000) < 0) return 1;
        cold_load[t] = now_ms() - t0;
        struct inst in;
        if (fork_instance(ctl, &in)) return 1;
        double t_req = now_ms() - t0;
        cold[t] = t_req + request(&in, 1, true); /* template start .. first token */
        stop_instance(&in);
        close(ctl);
        waitpid(tp, NULL, 0);
    }
    double mb = median(base, trials), mc = median(cold, trials), ml = median(cold_load, trials);
    printf("  baseline: load + first token in one process     %8.1f ms\n", mb);
    printf("  cold: template start to first token             %8.1f ms  (%.2fx baseline; "
           "template ready after %.1f ms)\n",
           mc, mc / mb, ml);

    int ctl;
    char line[512];
    pid_t tp = start_template(&ctl);
    if (tp < 0 || read_line(ctl, line, sizeof(line), 120000) < 0) return 1;
    for (int t = 0; t < trials; t++) {
        struct inst in;
        double t0 = now_ms();
        if (fork_instance(ctl, &in)) return 1;
        fork_ms[t] = now_ms() - t0;
        standby[t] = fork_ms[t] + request(&in, 1, true);
        warm[t] = request(&in, 1, true); /* the floor: the same token, instance running */
        stop_instance(&in);
    }
    double ms = median(standby, trials), mf = median(fork_ms, trials), mw = median(warm, trials);
    printf("  standby: fork to first token                    %8.1f ms  (%.3fx cold, %.3fx "
           "baseline)\n",
           ms, ms / mc, ms / mb);
    printf("  warm: first token on a running instance         %8.1f ms  (the floor: prompt + one "
           "token)\n",
           mw);
    printf("  standby overhead over warm                      %8.1f ms  (fork request to "
           "instance ready %.1f ms)\n",
           ms - mw, mf);
    if (idle_s > 0) standby_after_idle(ctl, idle_s, mw);

    /* Memory: instances that served a request (KV and scratch touched). */
    struct inst insts[4];
    long long pss_before = rollup_kb(tp, "Pss");
    printf("  memory: template Rss %lld kB, Pss %lld kB\n", rollup_kb(tp, "Rss"), pss_before);
    long long prev = pss_before;
    for (int k = 0; k < 4; k++) {
        if (fork_instance(ctl, &insts[k])) return 1;
        request(&insts[k], 32, false);
        long long total = rollup_kb(tp, "Pss");
        for (int j = 0; j <= k; j++)
            total += rollup_kb(insts[j].pid, "Pss");
        long long priv =
            rollup_kb(insts[k].pid, "Private_Clean") + rollup_kb(insts[k].pid, "Private_Dirty");
        long long kv_kb = insts[k].kv_bytes / 1024;
        printf("  instance %d: Rss %lld kB, private %lld kB; Pss of template + instances %lld kB, "
               "+%lld kB (KV cache %lld kB allocated; target <= KV + 16 MiB: %s)\n",
               k + 1, rollup_kb(insts[k].pid, "Rss"), priv, total, total - prev, kv_kb,
               total - prev <= kv_kb + 16384 ? "met" : "MISSED");
        prev = total;
    }
    for (int k = 0; k < 4; k++)
        stop_instance(&insts[k]);
    close(ctl);
    waitpid(tp, NULL, 0);
    return 0;
}
