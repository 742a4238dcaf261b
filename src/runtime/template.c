/* The llm/embed template: `thaw __runtime model --spec JSON` loads the model
 * once (mapped, prefaulted), stays single-threaded, and forks instances on
 * request from the node over its control socket (stdin/stdout). Also the
 * node's side of that control protocol (runtime_template_fork). */
#include "runtime/runtime.h"
#include "runtime/runtime_int.h"

#include "security/security.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Control protocol. node -> template: the bytes "fork\n" carrying two
 * descriptors (SCM_RIGHTS): the instance's stdin/stdout socket and its
 * stderr. template -> node: {"ready":true,...} once loaded, then one line
 * per fork request: {"pid":N} or {"error":"..."}. One request at a time. */
#define CTL_FORK "fork\n"

static void ctl_write(const char *line)
{
    size_t n = strlen(line);
    while (n > 0) {
        ssize_t w = write(1, line, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) _exit(0);
        line += w;
        n -= (size_t)w;
    }
}

static void ctl_error(const char *msg)
{
    struct buf b = {0};
    buf_append_str(&b, "{\"error\":");
    rt_json_utf8(&b, msg, strlen(msg));
    buf_append_str(&b, "}\n");
    ctl_write(b.data ? b.data : "{\"error\":\"out of memory\"}\n");
    buf_free(&b);
}

/* Receives one fork request. Returns 1 with the two descriptors, 0 at EOF,
 * -1 on a malformed request (already answered). */
static int ctl_recv(int fds[2])
{
    char data[sizeof(CTL_FORK) - 1];
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(2 * sizeof(int))];
    } ctl;
    struct iovec iov = {data, sizeof(data)};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = ctl.buf,
                        .msg_controllen = sizeof(ctl.buf)};
    ssize_t n;
    do
        n = recvmsg(0, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n <= 0) return 0;
    int got = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int *p = (int *)CMSG_DATA(c);
        for (size_t i = 0; i < k; i++) {
            if (got < 2)
                fds[got++] = p[i];
            else
                close(p[i]);
        }
    }
    if ((size_t)n != sizeof(data) || memcmp(data, CTL_FORK, sizeof(data)) != 0 || got != 2 ||
        (mh.msg_flags & MSG_CTRUNC)) {
        for (int i = 0; i < got; i++)
            close(fds[i]);
        ctl_error("malformed control request (want \"fork\\n\" with two descriptors)");
        return -1;
    }
    return 1;
}

/* ---- the instance side of a fork ---- */

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* Runs in the grandchild. Its parent (the intermediate) exits at once, so
 * it is reparented to the node, the nearest subreaper, which reaps it like
 * any instance. */
static void instance_main(struct rt_model *m, int fds[2], pid_t intermediate)
{
    setpgid(0, 0); /* the node signals the instance's group */
    /* A parent-death signal set while the intermediate lives would fire when
     * it exits: wait for the reparenting first. */
    for (int i = 0; i < 20000 && getppid() == intermediate; i++)
        sleep_us(50);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (dup2(fds[0], 0) < 0 || dup2(fds[0], 1) < 0 || dup2(fds[1], 2) < 0) _exit(127);
    if (syscall(SYS_close_range, 3, ~0U, 0) != 0)
        for (int fd = 3; fd < 65536; fd++)
            close(fd);
    signal(SIGPIPE, SIG_DFL);
    engine_model_prefault(m->model);
    int code = rt_serve(m);
    if (m->sandboxed) _exit(code); /* see runtime_model_main's end */
    tokenizer_free(m->tok);
    engine_model_free(m->model);
    registry_spec_free(m->spec);
    exit(code);
}

/* Double fork: answers the pid of an instance the node can reap. */
static void do_fork(struct rt_model *m, int fds[2])
{
    int pp[2];
    if (pipe2(pp, O_CLOEXEC) < 0) {
        ctl_error("cannot create a pipe");
        return;
    }
    pid_t mid = fork();
    if (mid == 0) {
        pid_t me = getpid();
        close(pp[0]);
        pid_t gc = fork();
        if (gc == 0) {
            close(pp[1]);
            instance_main(m, fds, me);
        }
        ssize_t w = write(pp[1], &gc, sizeof(gc));
        _exit(w == (ssize_t)sizeof(gc) && gc > 0 ? 0 : 1);
    }
    close(pp[1]);
    close(fds[0]);
    close(fds[1]);
    if (mid < 0) {
        close(pp[0]);
        ctl_error(strerror(errno));
        return;
    }
    pid_t gc = -1;
    ssize_t r;
    do
        r = read(pp[0], &gc, sizeof(gc));
    while (r < 0 && errno == EINTR);
    close(pp[0]);
    while (waitpid(mid, NULL, 0) < 0 && errno == EINTR) {
    }
    if (r != (ssize_t)sizeof(gc) || gc <= 0) {
        ctl_error("fork failed");
        return;
    }
    char line[64];
    snprintf(line, sizeof(line), "{\"pid\":%d}\n", (int)gc);
    ctl_write(line);
}

/* ---- loading ---- */

static bool under_seccomp(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return false;
    char line[256];
    bool on = false;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "Seccomp:", 8) == 0) on = atoi(line + 8) != 0;
    fclose(f);
    return on;
}

static int load(struct rt_model *m, const char *spec_json, struct thaw_err *err)
{
    json_error_t jerr;
    json_t *j = json_loads(spec_json, 0, &jerr);
    if (!j) return thaw_errf(err, THAW_EINVAL, "--spec is not JSON: %s", jerr.text);
    int rc = registry_spec_from_json(j, &m->spec, err);
    json_decref(j);
    if (rc) return rc;
    if (!registry_runtime_is_model(m->spec))
        return thaw_errf(err, THAW_EINVAL, "runtime %s is not served by the engine",
                         m->spec->runtime);
    m->embed = strcmp(m->spec->runtime, "embed") == 0;
    /* Deployments that asked for the sandbox also get the builtin profile on
     * top of the exec one the node applied: no exec, no sockets, before a
     * byte of the (untrusted) model file is parsed. */
    if (m->spec->sandbox) {
        struct security_sandbox sb = {.profile = SECURITY_SECCOMP_BUILTIN};
        if ((rc = security_sandbox_apply(&sb, err))) return rc;
    }
    m->sandboxed = under_seccomp();
    if ((rc = engine_model_load(m->spec->model.path, &m->model, err))) return rc;
    if ((rc = tokenizer_from_gguf(engine_model_gguf(m->model), &m->tok, err))) return rc;
    if (m->embed) return 0;
    struct thaw_err ferr = {0};
    const char *tmpl = NULL;
    size_t len = 0;
    if (m->spec->model.chat_template) {
        rc = chat_family_from_name(m->spec->model.chat_template, &m->family, &ferr);
    } else {
        gguf_get_str(engine_model_gguf(m->model), "tokenizer.chat_template", &tmpl, &len);
        rc = chat_family_detect(tmpl, len, &m->family, &ferr);
    }
    if (rc) {
        m->family = CHAT_NONE;
        snprintf(m->family_why, sizeof(m->family_why),
                 "this deployment cannot serve op chat: %s (set chat_template in its manifest)",
                 ferr.msg);
    }
    return 0;
}

int runtime_model_main(int argc, char **argv)
{
    const char *spec = NULL;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--spec") == 0) spec = argv[++i];
    if (!spec) {
        fprintf(stderr, "usage: thaw %s model --spec JSON (started by the node)\n",
                RUNTIME_MODEL_COMMAND);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rt_model m = {0};
    struct thaw_err err = {0};
    uint64_t t0 = time_now_ns();
    if (load(&m, spec, &err)) {
        fprintf(stderr, "thaw runtime: %s\n", err.msg);
        tokenizer_free(m.tok);
        engine_model_free(m.model);
        registry_spec_free(m.spec);
        if (m.sandboxed) _exit(1); /* as at the end: no exit-time leak check */
        return 1;
    }
    const struct engine_model_info *hp = engine_model_info(m.model);
    char line[512];
    snprintf(
        line, sizeof(line),
        "{\"ready\":true,\"load_ms\":%.1f,\"arch\":\"%s\",\"n_ctx_train\":%d,\"chat\":\"%s\"}\n",
        (time_now_ns() - t0) / 1e6, hp->arch, (int)hp->n_ctx_train, chat_family_name(m.family));
    ctl_write(line);
    for (;;) {
        int fds[2];
        int rc = ctl_recv(fds);
        if (rc == 0) break;
        if (rc > 0) do_fork(&m, fds);
    }
    /* EOF: the node let the template go. LeakSanitizer's exit-time check
     * needs ptrace, which the seccomp filter denies: when filtered, leave
     * without it (everything is freed first all the same). */
    tokenizer_free(m.tok);
    engine_model_free(m.model);
    bool sandboxed = m.sandboxed;
    registry_spec_free(m.spec);
    if (sandboxed) _exit(0);
    return 0;
}

/* ---- node side ---- */

int runtime_template_fork(int ctl, int sock, int err_fd, int timeout_ms, pid_t *pid,
                          struct thaw_err *err)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(2 * sizeof(int))];
    } cm;
    memset(&cm, 0, sizeof(cm));
    struct iovec iov = {(void *)CTL_FORK, sizeof(CTL_FORK) - 1};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof(cm.buf)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(2 * sizeof(int));
    memcpy(CMSG_DATA(c), (int[]){sock, err_fd}, 2 * sizeof(int));
    ssize_t n;
    do
        n = sendmsg(ctl, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)iov.iov_len)
        return thaw_errf(err, THAW_EIO, "the template did not take a fork request: %s",
                         n < 0 ? strerror(errno) : "short write");
    /* The answer is one short line; the template writes nothing else. */
    char line[512];
    size_t len = 0;
    uint64_t deadline = time_now_ns() / 1000000 + (uint64_t)timeout_ms;
    while (len < sizeof(line) - 1) {
        uint64_t now = time_now_ns() / 1000000;
        if (now >= deadline)
            return thaw_errf(err, THAW_ETIMEOUT, "the template did not answer within %d ms",
                             timeout_ms);
        struct pollfd pfd = {ctl, POLLIN, 0};
        int r = poll(&pfd, 1, (int)(deadline - now));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) continue;
        n = read(ctl, line + len, 1);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) return thaw_errf(err, THAW_EIO, "the template exited");
        if (line[len] == '\n') break;
        len++;
    }
    line[len] = 0;
    json_t *j = json_loads(line, 0, NULL);
    json_t *p = json_object_get(j, "pid");
    int rc = 0;
    if (json_is_integer(p) && json_integer_value(p) > 0)
        *pid = (pid_t)json_integer_value(p);
    else
        rc = thaw_errf(err, THAW_EIO, "the template could not fork: %s",
                       json_string_value(json_object_get(j, "error"))
                           ? json_string_value(json_object_get(j, "error"))
                           : "unexpected answer");
    json_decref(j);
    return rc;
}
