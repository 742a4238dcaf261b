/* A hostile exec function tries to open a network socket, ptrace the node,
 * read the node's /proc entry, write outside its temp dir, mount, exec a
 * shell, and see or signal the node and another instance (its PID namespace
 * hides them): every attempt is denied and the node keeps serving. With
 * sandbox: false (an explicit opt-out) the same function can do them,
 * which shows the denials come from the sandbox. */
#include "harness.h"
#include "test.h"

#include <curl/curl.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct node N;

static char *attack_pid(const char *dep, const char *what, pid_t pid)
{
    char in[512];
    snprintf(in, sizeof(in), "{\"try\":\"%s\",\"pid\":%d,\"path\":\"%s/escaped\"}", what, (int)pid,
             N.data);
    struct resp r;
    invoke(&N, dep, in, &r);
    json_t *j = resp_json(&r);
    char *out = strdup(json_is_string(j) ? json_string_value(j) : r.body);
    json_decref(j);
    resp_free(&r);
    return out;
}

static char *attack(const char *dep, const char *what)
{
    return attack_pid(dep, what, N.pid);
}

/* The node's descendants running the hostile function, seen from outside
 * (host pids): the instances other functions must not reach. */
static int hostile_pids(pid_t *out, int cap)
{
    int n = 0;
    DIR *d = opendir("/proc");
    if (!d) return 0;
    for (struct dirent *e; (e = readdir(d)) && n < cap;) {
        pid_t p = (pid_t)atoi(e->d_name);
        if (p <= 0) continue;
        char path[64], cmd[512] = {0};
        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)p);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t len = fread(cmd, 1, sizeof(cmd) - 1, f);
        fclose(f);
        cmd[len] = 0;
        if (!strstr(cmd, "thaw-hostilefn")) continue;
        /* Descends from this test's node (relay, init, function). */
        pid_t up = p;
        for (int depth = 0; depth < 5 && up > 1 && up != N.pid; depth++) {
            snprintf(path, sizeof(path), "/proc/%d/stat", (int)up);
            f = fopen(path, "r");
            if (!f) break;
            int pp = 0;
            if (fscanf(f, "%*d (%*[^)]) %*c %d", &pp) != 1) pp = 0;
            fclose(f);
            up = pp;
        }
        if (up == N.pid) out[n++] = p;
    }
    closedir(d);
    return n;
}

static void deploy_hostile(const char *name, bool sandbox)
{
    char m[1024], path[600];
    snprintf(path, sizeof(path), "%s/thaw-hostilefn", getenv("THAW_BUILD_DIR"));
    snprintf(m, sizeof(m),
             "{\"name\":\"%s\",\"runtime\":\"exec\",\"command\":[\"%s\"],\"sandbox\":%s}", name,
             path, sandbox ? "true" : "false");
    if (deploy(&N, m) != 201) test_cur_failed_ = 1;
}

static void test_attacks_are_denied(void)
{
    deploy_hostile("evil", true);
    const char *attacks[] = {"socket", "ptrace", "proc", "write", "mount", "exec"};
    for (size_t i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++) {
        char *res = attack("evil", attacks[i]);
        fprintf(stderr, "  %s: %s\n", attacks[i], res);
        if (strncmp(res, "denied", 6) != 0) {
            fprintf(stderr, "  FAIL: %s was not denied\n", attacks[i]);
            test_cur_failed_ = 1;
        }
        free(res);
    }
    /* Neither the node nor another instance is visible or signallable. */
    const char *peeks[] = {"see", "kill"};
    for (size_t i = 0; i < 2; i++) {
        char *res = attack("evil", peeks[i]);
        fprintf(stderr, "  %s node: %s\n", peeks[i], res);
        ASSERT(strncmp(res, "denied", 6) == 0);
        free(res);
    }
    deploy_hostile("evil2", true);
    free(attack("evil2", "see")); /* starts an instance of evil2 */
    pid_t others[16];
    int n = hostile_pids(others, 16);
    ASSERT(n >= 2);
    for (int k = 0; k < n; k++) {
        for (size_t i = 0; i < 2; i++) {
            char *res = attack_pid("evil", peeks[i], others[k]);
            if (strncmp(res, "denied", 6) != 0) {
                fprintf(stderr, "  FAIL: %s of instance pid %d: %s\n", peeks[i], (int)others[k],
                        res);
                test_cur_failed_ = 1;
            }
            free(res);
        }
    }
    fprintf(stderr, "  %d instance processes checked\n", n);
    char escaped[400];
    snprintf(escaped, sizeof(escaped), "%s/escaped", N.data);
    ASSERT(access(escaped, F_OK) != 0);
    struct resp r;
    ASSERT_EQ(http(&N, "GET", "/healthz", NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
}

static void test_opt_out_shows_the_difference(void)
{
    deploy_hostile("trusted", false);
    char *res = attack("trusted", "socket");
    ASSERT_STR_EQ(res, "allowed");
    free(res);
    res = attack("trusted", "exec");
    ASSERT_STR_EQ(res, "allowed");
    free(res);
    res = attack("trusted", "see");
    ASSERT_STR_EQ(res, "allowed");
    free(res);
    res = attack("trusted", "kill");
    ASSERT_STR_EQ(res, "allowed");
    free(res);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (node_start(&N, NULL)) {
        fprintf(stderr, "cannot start node\n");
        return 1;
    }
    RUN(test_attacks_are_denied);
    RUN(test_opt_out_shows_the_difference);
    node_cleanup(&N);
    curl_global_cleanup();
    return TEST_REPORT();
}
