/* Artifact upload benchmark (issue 5): `thaw push` of a large file into a
 * node vs. `cp` of the same file on the same disk, measured in the same run,
 * and the node's memory during the push: VmRSS before, VmHWM (peak) after,
 * for the full size and for an eighth of it on a fresh node, so growth that
 * followed the file size would show.
 * Usage: bench_artifacts [MiB] [dir]   (default 2048 MiB under /tmp; run from
 * the build folder). The files are deleted afterwards. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Incompressible bytes, fast: xorshift over a 4 MiB block, varied per block. */
static int make_file(const char *path, int64_t bytes)
{
    size_t blk = 4 << 20;
    uint64_t *b = malloc(blk);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (!b || fd < 0) return -1;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int64_t off = 0; off < bytes; off += (int64_t)blk) {
        for (size_t i = 0; i < blk / 8; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            b[i] = x;
        }
        size_t n = (size_t)(bytes - off < (int64_t)blk ? bytes - off : (int64_t)blk);
        if (write(fd, b, n) != (ssize_t)n) return -1;
    }
    fsync(fd);
    close(fd);
    free(b);
    return 0;
}

/* Runs argv, returns wall seconds (or -1); stdout goes to out if given. */
static double run(const char *const *argv, const char *out)
{
    double t0 = now_s();
    pid_t pid = fork();
    if (pid == 0) {
        if (out) {
            int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            dup2(fd, 1);
        }
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    double t = now_s() - t0;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? t : -1;
}

static long status_kb(pid_t pid, const char *field)
{
    char p[64], line[256];
    snprintf(p, sizeof(p), "/proc/%d/status", (int)pid);
    FILE *f = fopen(p, "r");
    long v = -1;
    size_t fl = strlen(field);
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, field, fl) && line[fl] == ':') v = atol(line + fl + 1);
    if (f) fclose(f);
    return v;
}

struct push_result {
    double wall, upload; /* upload: the push's own "seconds" (after hashing) */
    long rss_before_kb, hwm_before_kb, hwm_after_kb;
};

static int push_once(const char *file, const char *dir, struct push_result *r)
{
    struct node n = {0};
    const char *flags[] = {"--access-log", "off", NULL};
    if (node_start(&n, flags)) return -1;
    sleep_ms(300); /* let start-up allocations settle */
    r->rss_before_kb = status_kb(n.pid, "VmRSS");
    r->hwm_before_kb = status_kb(n.pid, "VmHWM");
    char server[64], out[600], cache[600];
    snprintf(server, sizeof(server), "http://127.0.0.1:%d", n.port);
    snprintf(out, sizeof(out), "%s/push.json", dir);
    snprintf(cache, sizeof(cache), "%s/cache", dir);
    setenv("THAW_KEY", TEST_ADMIN_KEY, 1);
    setenv("XDG_CACHE_HOME", cache, 1);
    const char *argv[] = {thaw_path(), "push",          file, "--server", server,
                          "--json",    "--no-progress", NULL};
    r->wall = run(argv, out);
    r->hwm_after_kb = status_kb(n.pid, "VmHWM");
    json_t *j = json_load_file(out, JSON_DISABLE_EOF_CHECK, NULL);
    r->upload = json_real_value(json_object_get(j, "seconds"));
    json_decref(j);
    node_cleanup(&n);
    return r->wall < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
    int64_t mib = argc > 1 ? atoll(argv[1]) : 2048;
    const char *base = argc > 2 ? argv[2] : "/tmp";
    if (mib < 8) mib = 8;
    char dir[600], file[700], copy[700], small[700];
    snprintf(dir, sizeof(dir), "%s/thaw-bench-art-XXXXXX", base);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(file, sizeof(file), "%s/blob", dir);
    snprintf(copy, sizeof(copy), "%s/blob.copy", dir);
    snprintf(small, sizeof(small), "%s/small", dir);
    int64_t bytes = mib << 20;
    printf("artifact upload: %lld MiB file under %s (same disk as the node's data dir)\n",
           (long long)mib, base);
    if (make_file(file, bytes) || make_file(small, bytes / 8)) {
        perror("cannot write the test file");
        return 1;
    }
    sync();

    const char *cp[] = {"cp", file, copy, NULL};
    double t_cp = run(cp, NULL);
    const char *sy[] = {"sync", NULL};
    double t_sync = run(sy, NULL);
    unlink(copy);
    sync();

    struct push_result big = {0}, little = {0};
    int rc = push_once(file, dir, &big);
    rc |= push_once(small, dir, &little);
    double mb = (double)bytes / (1 << 20);
    printf("  cp                      %7.2f s  %8.1f MiB/s\n", t_cp, mb / t_cp);
    printf("  cp + sync               %7.2f s  %8.1f MiB/s\n", t_cp + t_sync, mb / (t_cp + t_sync));
    if (rc) {
        printf("  thaw push failed\n");
    } else {
        printf("  thaw push (hash+upload) %7.2f s  %8.1f MiB/s  = %.2fx cp, %.2fx cp+sync\n",
               big.wall, mb / big.wall, t_cp / big.wall, (t_cp + t_sync) / big.wall);
        printf("    upload+verify+fsync   %7.2f s  %8.1f MiB/s  = %.2fx cp, %.2fx cp+sync\n",
               big.upload, mb / big.upload, t_cp / big.upload, (t_cp + t_sync) / big.upload);
        printf("  node memory during the push (VmRSS before -> VmHWM after, growth):\n");
        printf("    %5lld MiB file: %6.1f -> %6.1f MiB  (+%.1f MiB)\n", (long long)mib,
               big.rss_before_kb / 1024.0, big.hwm_after_kb / 1024.0,
               (big.hwm_after_kb - big.rss_before_kb) / 1024.0);
        printf("    %5lld MiB file: %6.1f -> %6.1f MiB  (+%.1f MiB)\n", (long long)mib / 8,
               little.rss_before_kb / 1024.0, little.hwm_after_kb / 1024.0,
               (little.hwm_after_kb - little.rss_before_kb) / 1024.0);
    }
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", dir);
    return rc ? 1 : 0;
}
