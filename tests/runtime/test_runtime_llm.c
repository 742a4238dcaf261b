/* The llm/embed runtime process on its own: the real `thaw __runtime model`
 * driven over real sockets, unsandboxed so LeakSanitizer checks it at exit.
 * Bad lines, bad inputs, more requests than sequences, streaming with stop
 * strings and logprobs, embeddings, a malformed control request, and clean
 * exits on EOF. */
#include "engine/engine.h"
#include "runtime/runtime.h"
#include "test.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char model[300];

static pid_t start_template(const char *runtime, int parallel, int *ctl)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) return -1;
    char spec[1024];
    snprintf(spec, sizeof(spec),
             "{\"name\":\"t\",\"runtime\":\"%s\",\"model\":\"%s\",\"parallel\":%d,"
             "\"context\":128,\"sandbox\":false%s}",
             runtime, model, parallel,
             strcmp(runtime, "llm") == 0 ? ",\"chat_template\":\"chatml\",\"max_output_tokens\":64,"
                                           "\"sampling\":{\"temperature\":0}"
                                         : "");
    pid_t pid = fork();
    if (pid == 0) {
        dup2(sv[1], 0);
        dup2(sv[1], 1);
        const char *bin = getenv("THAW_BIN");
        execl(bin, bin, RUNTIME_MODEL_COMMAND, "model", "--spec", spec, (char *)NULL);
        _exit(127);
    }
    close(sv[1]);
    *ctl = sv[0];
    return pid;
}

/* Reads one line into a static buffer (NULL on EOF or after 60 s). */
static const char *line_of(int fd)
{
    static char buf[1 << 16];
    size_t len = 0;
    while (len + 1 < sizeof(buf)) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 60000) <= 0) return NULL;
        ssize_t n = read(fd, buf + len, 1);
        if (n <= 0) return NULL;
        if (buf[len] == '\n') break;
        len++;
    }
    buf[len] = 0;
    return buf;
}

static json_t *json_line(int fd)
{
    const char *l = line_of(fd);
    return l ? json_loads(l, 0, NULL) : NULL;
}

static void send_str(int fd, const char *s)
{
    size_t n = strlen(s);
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

/* Forks an instance; returns its socket (stderr goes to ours). */
static int fork_instance(int ctl, pid_t *pid)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) return -1;
    struct thaw_err err = {0};
    int rc = runtime_template_fork(ctl, sv[1], 2, 10000, pid, &err);
    close(sv[1]);
    if (rc) {
        fprintf(stderr, "  fork: %s\n", err.msg);
        close(sv[0]);
        return -1;
    }
    json_t *ready = json_line(sv[0]);
    int ok = json_is_true(json_object_get(ready, "ready"));
    json_decref(ready);
    if (!ok) {
        close(sv[0]);
        return -1;
    }
    return sv[0];
}

static int wait_exit(pid_t pid)
{
    int st = -1;
    for (int i = 0; i < 3000; i++) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return st;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

static void test_llm_bad_input_and_batching(void)
{
    int ctl;
    pid_t tp = start_template("llm", 2, &ctl);
    ASSERT(tp > 0);
    json_t *ready = json_line(ctl);
    ASSERT(json_is_true(json_object_get(ready, "ready")));
    ASSERT_STR_EQ(json_string_value(json_object_get(ready, "chat")), "chatml");
    json_decref(ready);
    pid_t ip;
    int s = fork_instance(ctl, &ip);
    ASSERT(s >= 0);
    /* lines nobody can answer are skipped; the rest get errors by id */
    send_str(s, "not json\n{}\n[1,2]\n{\"id\":\"x\",\"input\":{}}\n{\"id\":-1}\n\n");
    static const struct {
        const char *input, *code;
    } bad[] = {
        {"\"text\"", "invalid_request"},
        {"{\"op\":\"complete\"}", "invalid_request"},
        {"{\"op\":\"complete\",\"prompt\":7}", "invalid_request"},
        {"{\"op\":\"complete\",\"prompt\":\"x\",\"top_p\":0}", "invalid_request"},
        {"{\"op\":\"complete\",\"prompt\":\"x\",\"top_k\":1.5}", "invalid_request"},
        {"{\"op\":\"complete\",\"prompt\":\"x\",\"seed\":-1}", "invalid_request"},
        {"{\"op\":\"complete\",\"prompt\":\"x\",\"logprobs\":99}", "invalid_request"},
        {"{\"op\":\"complete\",\"prompt\":\"x\",\"stop\":{}}", "invalid_request"},
        {"{\"op\":\"complete\",\"prompt\":\"x\",\"max_tokens\":0}", "invalid_request"},
        {"{\"op\":\"complete\",\"prompt\":\"x\",\"max_tokens\":65}", "max_tokens_too_large"},
        {"{\"op\":\"chat\",\"messages\":\"hi\"}", "invalid_request"},
        {"{\"op\":\"chat\",\"messages\":[{\"role\":\"user\"}]}", "invalid_request"},
        {"{\"op\":\"chat\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}",
         "invalid_request"},
        {"{\"op\":\"embed\",\"input\":[\"x\"]}", "invalid_request"},
        {"{\"op\":null}", "invalid_request"},
    };
    char req[512];
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        snprintf(req, sizeof(req), "{\"id\":%zu,\"input\":%s}\n", i + 1, bad[i].input);
        send_str(s, req);
        json_t *j = json_line(s);
        if (json_integer_value(json_object_get(j, "id")) != (json_int_t)(i + 1) ||
            !json_object_get(j, "error"))
            fprintf(stderr, "  %s -> %s\n", bad[i].input, j ? "wrong answer" : "no answer");
        ASSERT_EQ(json_integer_value(json_object_get(j, "id")), i + 1);
        ASSERT_EQ(json_integer_value(json_object_get(j, "status")), 400);
        ASSERT_STR_EQ(json_string_value(json_object_get(j, "code")), bad[i].code);
        json_decref(j);
    }
    /* a prompt past the context (128) */
    struct buf big = {0};
    buf_append_str(&big, "{\"id\":100,\"input\":{\"op\":\"complete\",\"prompt\":\"");
    for (int i = 0; i < 2000; i++)
        buf_append_str(&big, "xy ");
    buf_append_str(&big, "\"}}\n");
    send_str(s, big.data);
    buf_free(&big);
    json_t *j = json_line(s);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "code")), "context_length_exceeded");
    json_decref(j);

    /* five requests for two sequences: queued, all answered, greedy texts
     * equal for equal prompts whatever they were batched with */
    for (int i = 0; i < 5; i++) {
        snprintf(req, sizeof(req),
                 "{\"id\":%d,\"stream\":%s,\"input\":{\"op\":\"complete\",\"prompt\":\"%s\","
                 "\"max_tokens\":20%s}}\n",
                 200 + i, i == 4 ? "true" : "false", i % 2 ? "abc" : "Hello",
                 i == 4 ? ",\"logprobs\":1" : "");
        send_str(s, req);
    }
    char *texts[5] = {0};
    struct buf streamed = {0};
    int finals = 0, chunks = 0;
    while (finals < 5) {
        j = json_line(s);
        ASSERT(j != NULL);
        int id = (int)json_integer_value(json_object_get(j, "id")) - 200;
        ASSERT(id >= 0 && id < 5);
        json_t *chunk = json_object_get(j, "chunk"), *out = json_object_get(j, "output");
        if (chunk) {
            ASSERT_EQ(id, 4);
            ASSERT_EQ(json_array_size(json_object_get(chunk, "logprobs")) > 0, 1);
            buf_append_str(&streamed, json_string_value(json_object_get(chunk, "text")));
            chunks++;
        } else {
            ASSERT(out != NULL);
            texts[id] = strdup(json_string_value(json_object_get(out, "text")));
            ASSERT_STR_EQ(json_string_value(json_object_get(out, "finish_reason")), "length");
            ASSERT_EQ(json_integer_value(
                          json_object_get(json_object_get(out, "usage"), "completion_tokens")),
                      20);
            if (id != 4) ASSERT(json_object_get(out, "logprobs") == NULL);
            finals++;
        }
        json_decref(j);
    }
    ASSERT_CMP(chunks, >, 0);
    ASSERT_STR_EQ(texts[0], texts[2]);
    ASSERT_STR_EQ(texts[0], texts[4]);
    ASSERT_STR_EQ(texts[1], texts[3]);
    ASSERT_STR_EQ(streamed.data ? streamed.data : "", texts[4]);
    /* a stop string cut from the text: answered before it, reason "stop" */
    size_t cut = strlen(texts[0]) / 2;
    while (cut > 0 && ((unsigned char)texts[0][cut] & 0xc0) == 0x80)
        cut--;
    if (cut > 0 && texts[0][cut] != '"' && texts[0][cut] != '\\' &&
        (unsigned char)texts[0][cut] >= 0x20 && (unsigned char)texts[0][cut] < 0x80) {
        snprintf(
            req, sizeof(req),
            "{\"id\":300,\"input\":{\"op\":\"complete\",\"prompt\":\"Hello\",\"max_tokens\":20,"
            "\"stop\":\"%c\"}}\n",
            texts[0][cut]);
        send_str(s, req);
        j = json_line(s);
        const char *t = json_string_value(json_object_get(json_object_get(j, "output"), "text"));
        ASSERT(t != NULL);
        ASSERT_EQ(strlen(t), (size_t)(strchr(texts[0], texts[0][cut]) - texts[0]));
        ASSERT_STR_EQ(
            json_string_value(json_object_get(json_object_get(j, "output"), "finish_reason")),
            "stop");
        json_decref(j);
    }
    for (int i = 0; i < 5; i++)
        free(texts[i]);
    buf_free(&streamed);
    /* a cancel for a request not yet started (same read): one error answer,
     * and a cancel for an unknown id is ignored */
    send_str(
        s, "{\"id\":400,\"input\":{\"op\":\"complete\",\"prompt\":\"Hello\",\"max_tokens\":60}}\n"
           "{\"id\":400,\"cancel\":true}\n{\"id\":999,\"cancel\":true}\n"
           "{\"id\":401,\"input\":{\"op\":\"complete\",\"prompt\":\"Hello\",\"max_tokens\":2}}\n");
    j = json_line(s);
    ASSERT_EQ(json_integer_value(json_object_get(j, "id")), 400);
    ASSERT(strstr(json_string_value(json_object_get(j, "error")), "cancelled") != NULL);
    ASSERT_EQ(json_integer_value(json_object_get(j, "status")), 499);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "code")), "cancelled");
    json_decref(j);
    j = json_line(s);
    ASSERT_EQ(json_integer_value(json_object_get(j, "id")), 401);
    ASSERT(json_object_get(j, "output") != NULL);
    json_decref(j);
    /* a cancel for a running request: its final answer as far as it got,
     * with usage (the node meters it). The instance is stopped while the
     * cancel is written, so it sees it at its next step; should it have
     * finished the request already, another one is tried. */
    bool seen = false;
    for (int attempt = 0; attempt < 5 && !seen; attempt++) {
        int id = 410 + attempt;
        snprintf(req, sizeof(req),
                 "{\"id\":%d,\"stream\":true,\"input\":{\"op\":\"complete\",\"prompt\":"
                 "\"Hello\",\"max_tokens\":60}}\n",
                 id);
        send_str(s, req);
        j = json_line(s);
        ASSERT_EQ(json_integer_value(json_object_get(j, "id")), id);
        bool done = json_object_get(j, "chunk") == NULL;
        json_decref(j);
        if (done) { /* over in one token: try again */
            fprintf(stderr, "  attempt %d: no chunk\n", attempt);
            continue;
        }
        kill(ip, SIGSTOP);
        snprintf(req, sizeof(req), "{\"id\":%d,\"cancel\":true}\n", id);
        send_str(s, req);
        kill(ip, SIGCONT);
        for (;;) {
            j = json_line(s);
            ASSERT(j != NULL);
            ASSERT_EQ(json_integer_value(json_object_get(j, "id")), id);
            json_t *out = json_object_get(j, "output");
            if (out) {
                const char *fr = json_string_value(json_object_get(out, "finish_reason"));
                json_t *u = json_object_get(out, "usage");
                seen = fr && strcmp(fr, "cancelled") == 0;
                if (!seen)
                    fprintf(stderr, "  attempt %d finished (%s) before the cancel\n", attempt,
                            fr ? fr : "?");
                if (seen) {
                    ASSERT_CMP(json_integer_value(json_object_get(u, "completion_tokens")), >=, 1);
                    ASSERT_CMP(json_integer_value(json_object_get(u, "completion_tokens")), <, 60);
                    ASSERT_CMP(json_integer_value(json_object_get(u, "prompt_tokens")), >=, 1);
                }
                json_decref(j);
                break;
            }
            json_decref(j);
        }
    }
    ASSERT(seen);
    /* the sequence is free: a request after it is served */
    send_str(
        s, "{\"id\":420,\"input\":{\"op\":\"complete\",\"prompt\":\"Hello\",\"max_tokens\":2}}\n");
    j = json_line(s);
    ASSERT_EQ(json_integer_value(json_object_get(j, "id")), 420);
    ASSERT(json_object_get(j, "output") != NULL);
    json_decref(j);
    /* EOF: the instance exits 0 (LeakSanitizer found nothing) */
    close(s);
    int st = wait_exit(ip);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* a malformed control request is answered, not fatal */
    send_str(ctl, "fork\n");
    j = json_line(ctl);
    ASSERT(json_object_get(j, "error") != NULL);
    json_decref(j);
    close(ctl);
    st = wait_exit(tp);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_embed_runtime(void)
{
    int ctl;
    pid_t tp = start_template("embed", 2, &ctl);
    json_t *ready = json_line(ctl);
    ASSERT(json_is_true(json_object_get(ready, "ready")));
    json_decref(ready);
    pid_t ip;
    int s = fork_instance(ctl, &ip);
    ASSERT(s >= 0);
    send_str(s, "{\"id\":1,\"input\":{\"op\":\"embed\",\"input\":\"one\"}}\n"
                "{\"id\":2,\"input\":{\"op\":\"embed\",\"input\":[]}}\n"
                "{\"id\":3,\"input\":{\"op\":\"embed\",\"input\":[\"a\",7]}}\n"
                "{\"id\":4,\"input\":{\"op\":\"complete\",\"prompt\":\"x\"}}\n"
                "{\"id\":5,\"input\":{\"op\":\"embed\",\"input\":\"x\",\"extra\":[1]}}\n");
    json_t *j = json_line(s);
    ASSERT_EQ(json_array_size(json_object_get(json_object_get(j, "output"), "data")), 1);
    json_decref(j);
    for (int id = 2; id <= 4; id++) {
        j = json_line(s);
        ASSERT_EQ(json_integer_value(json_object_get(j, "id")), id);
        ASSERT_EQ(json_integer_value(json_object_get(j, "status")), 400);
        json_decref(j);
    }
    j = json_line(s); /* unknown fields are ignored, as the gateway may add some */
    ASSERT_EQ(json_integer_value(json_object_get(j, "id")), 5);
    ASSERT(json_object_get(j, "output") != NULL);
    json_decref(j);
    close(s);
    int st = wait_exit(ip);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(ctl);
    st = wait_exit(tp);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_bad_spec(void)
{
    /* no --spec, bad JSON, an exec spec: usage errors, never a crash */
    const char *bin = getenv("THAW_BIN");
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "'%s' __runtime model >/dev/null 2>&1", bin);
    ASSERT_EQ(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof(cmd), "'%s' __runtime model --spec '{' </dev/null >/dev/null 2>&1", bin);
    ASSERT_EQ(WEXITSTATUS(system(cmd)), 1);
    snprintf(
        cmd, sizeof(cmd),
        "'%s' __runtime model --spec '{\"name\":\"x\",\"runtime\":\"exec\",\"command\":[\"x\"]}' "
        "</dev/null >/dev/null 2>&1",
        bin);
    ASSERT_EQ(WEXITSTATUS(system(cmd)), 1);
}

int main(void)
{
    /* instances are reparented to us when the template's intermediate exits */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    signal(SIGPIPE, SIG_IGN);
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(model, sizeof(model), "%s/thaw-rt-%d.gguf", tmp, (int)getpid());
    struct engine_gen_params gp;
    struct thaw_err err = {0};
    if (engine_gen_preset("tiny", &gp, &err)) return 1;
    gp.type = GGML_TYPE_F32; /* batched and alone agree to rounding: greedy texts compare */
    if (engine_gen_write(&gp, model, NULL, &err)) {
        fprintf(stderr, "gen: %s\n", err.msg);
        return 1;
    }
    RUN(test_llm_bad_input_and_batching);
    RUN(test_embed_runtime);
    RUN(test_bad_spec);
    unlink(model);
    return TEST_REPORT();
}
