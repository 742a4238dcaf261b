/* A hostile exec function tries to open a network socket, ptrace the node,
 * read the node's /proc entry, write outside its temp dir, mount, and exec a
 * shell: every attempt is denied and the node keeps serving. With
 * sandbox: false (an explicit opt-out) the same function can do them,
 * which shows the denials come from the sandbox. */
#include "harness.h"
#include "test.h"

#include <curl/curl.h>
#include <unistd.h>

static struct node N;

static char *attack(const char *dep, const char *what)
{
    char in[512];
    snprintf(in, sizeof(in), "{\"try\":\"%s\",\"pid\":%d,\"path\":\"%s/escaped\"}", what,
             (int)N.pid, N.data);
    struct resp r;
    invoke(&N, dep, in, &r);
    json_t *j = resp_json(&r);
    char *out = strdup(json_is_string(j) ? json_string_value(j) : r.body);
    json_decref(j);
    resp_free(&r);
    return out;
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
