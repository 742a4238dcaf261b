/* fork/exec of instance processes. The child gets its own process group (so
 * everything it starts can be killed together), dies with the node
 * (PR_SET_PDEATHSIG), runs under rlimits in a private temporary directory,
 * and reports a failed exec through a close-on-exec pipe so the node can show
 * the reason. */
#include "instance/instance.h"
#include "security/security.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int set_nonblock_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -errno;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) return -errno;
    return 0;
}

/* Builds the child's environment before fork: only async-signal-safe calls
 * are allowed after it. */
static char **build_env(const struct instance_launch *l, const char *tmpdir)
{
    size_t n_extra = 0;
    for (char *const *e = l->env; e && *e; e++)
        n_extra++;
    char **env = calloc(n_extra + 8, sizeof(char *));
    if (!env) return NULL;
    size_t n = 0;
    struct buf b = {0};
    const char *path = getenv("PATH");
    buf_printf(&b, "PATH=%s", path ? path : "/usr/local/bin:/usr/bin:/bin");
    env[n++] = buf_steal(&b);
    buf_printf(&b, "HOME=%s", tmpdir);
    env[n++] = buf_steal(&b);
    buf_printf(&b, "TMPDIR=%s", tmpdir);
    env[n++] = buf_steal(&b);
    buf_printf(&b, "THAW_DEPLOYMENT=%s", l->deployment ? l->deployment : "");
    env[n++] = buf_steal(&b);
    env[n++] = str_dup("LANG=C.UTF-8");
    for (char *const *e = l->env; e && *e; e++)
        env[n++] = str_dup(*e);
    for (size_t i = 0; i < n; i++) {
        if (!env[i]) {
            for (size_t j = 0; j < n; j++)
                free(env[j]);
            free(env);
            return NULL;
        }
    }
    return env;
}

static void free_env(char **env)
{
    for (char **e = env; e && *e; e++)
        free(*e);
    free(env);
}

/* Sent by the child over the report pipe: once before exec with what the
 * sandbox did, and once more if the exec (or the sandbox) failed. */
struct child_report {
    int error; /* errno of a failed step; 0 = about to exec */
    struct instance_sandbox_report sandbox;
};

static void child_report(int error, const struct security_sandbox_report *sr)
{
    struct child_report r = {.error = error};
    if (sr) {
        r.sandbox.ns_applied = sr->ns_applied;
        r.sandbox.ns_failed = sr->ns_failed;
        r.sandbox.seccomp = sr->seccomp;
        r.sandbox.landlock = sr->landlock;
        str_copy(r.sandbox.msg, sr->msg, sizeof(r.sandbox.msg));
    }
    if (write(3, &r, sizeof(r)) < 0) _exit(127);
}

/* Runs in the child between fork and exec. Descriptors 0 and 1 are the
 * node's socketpair, 2 the stderr pipe and 3 the close-on-exec report pipe.
 * glibc makes malloc safe after fork, which the sandbox's filter building
 * needs; nothing else here takes a lock another thread could hold. */
static void child_exec(const struct instance_launch *l, const struct instance_proc *p,
                       const char *program, char **env, const struct security_seccomp_prog *filter)
{
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int s = 1; s < NSIG; s++)
        signal(s, SIG_DFL);
    /* Anything another thread opened without close-on-exec must not leak. */
    if (syscall(SYS_close_range, 4, ~0U, 0) != 0)
        for (int fd = 4; fd < 65536; fd++)
            close(fd);
    const char *dir = l->workdir ? l->workdir : p->tmpdir;
    if (chdir(dir) != 0) {
        child_report(errno, NULL);
        _exit(127);
    }
    struct security_sandbox_report sr = {0};
    struct security_sandbox sb = {
        .max_address_space = (uint64_t)MAX(l->rlimit_as, 0),
        .max_open_files = (uint64_t)MAX(l->rlimit_nofile, 0),
        .max_cpu_seconds = (uint64_t)MAX(l->rlimit_cpu, 0),
        .profile = l->sandbox ? SECURITY_SECCOMP_EXEC : SECURITY_SECCOMP_NONE,
        .allow_network = l->allow_network,
        .exec_path = program,
        /* The PID namespace keeps the function from seeing or signalling the
         * node and other instances; this process stays outside as the one
         * the node signals and reaps (see security_sandbox_apply). */
        .namespaces = l->sandbox ? (SECURITY_NS_USER | SECURITY_NS_MOUNT |
                                    (l->no_pid_namespace ? 0 : SECURITY_NS_PID) |
                                    (l->allow_network ? 0 : SECURITY_NS_NET))
                                 : 0,
        .write_dirs = l->sandbox ? (const char *const[]){p->tmpdir, dir, NULL} : NULL,
        .report = &sr,
        .compiled = filter,
    };
    struct thaw_err err = {0};
    if (security_sandbox_apply(&sb, &err) != 0) {
        str_copy(sr.msg, err.msg, sizeof(sr.msg));
        child_report(EPERM, &sr);
        _exit(126);
    }
    child_report(0, &sr);
    environ = env;
    execve(program, l->argv, env);
    child_report(errno, &sr);
    _exit(127);
}

/* Finds argv[0] as execvp would, before fork, so the child can execve the
 * exact path the sandbox allows. */
static char *resolve_program(const char *name)
{
    if (strchr(name, '/')) return str_dup(name);
    const char *path = getenv("PATH");
    if (!path) path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *p = path; *p;) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        struct buf b = {0};
        buf_printf(&b, "%.*s/%s", (int)len, p, name);
        if (b.data && access(b.data, X_OK) == 0) return buf_steal(&b);
        buf_free(&b);
        p += len + (colon ? 1 : 0);
    }
    return str_dup(name); /* execve will report ENOENT */
}

int instance_spawn(const struct instance_launch *l, struct instance_proc *out, struct thaw_err *err)
{
    memset(out, 0, sizeof(*out));
    out->pid = -1;
    out->sock = out->err_fd = -1;
    int sv[2] = {-1, -1}, errp[2] = {-1, -1}, rep[2] = {-1, -1};
    char **env = NULL;
    char *program = NULL;
    int rc = 0;

    snprintf(out->tmpdir, sizeof(out->tmpdir), "%s/inst-XXXXXX",
             l->tmp_root ? l->tmp_root : "/tmp");
    if (!mkdtemp(out->tmpdir)) {
        rc = thaw_errf(err, -errno, "cannot create instance temp dir under %s: %s",
                       l->tmp_root ? l->tmp_root : "/tmp", strerror(errno));
        out->tmpdir[0] = 0;
        return rc;
    }
    chmod(out->tmpdir, 0700);
    env = build_env(l, out->tmpdir);
    program = resolve_program(l->argv[0]);
    if (!env || !program) {
        rc = thaw_errf(err, THAW_ENOMEM, "out of memory");
        goto fail;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 || pipe2(errp, O_CLOEXEC) < 0 ||
        pipe2(rep, O_CLOEXEC) < 0) {
        rc = thaw_errf(err, -errno, "cannot create instance pipes: %s", strerror(errno));
        goto fail;
    }
    /* The filter names the exact program pointer the child will execve. */
    struct security_seccomp_prog *filter = NULL;
    if (l->sandbox) {
        struct security_sandbox sb = {.profile = SECURITY_SECCOMP_EXEC,
                                      .allow_network = l->allow_network,
                                      .exec_path = program};
        if ((rc = security_seccomp_compile(&sb, &filter, err))) goto fail;
    }
    pid_t pid = fork();
    if (pid != 0) security_seccomp_prog_free(filter);
    if (pid < 0) {
        rc = thaw_errf(err, -errno, "fork failed: %s", strerror(errno));
        goto fail;
    }
    if (pid == 0) {
        /* The node keeps 0-2 open (node start-up ensures it), so the
         * pipes are all above 2 and these dup2s cannot clobber each other. */
        if (dup2(sv[1], 0) < 0 || dup2(sv[1], 1) < 0 || dup2(errp[1], 2) < 0 ||
            dup2(rep[1], 3) < 0 || fcntl(3, F_SETFD, FD_CLOEXEC) < 0)
            _exit(127);
        child_exec(l, out, program, env, filter);
    }
    out->pid = pid;
    /* Also set here (as shells do) so a group signal sent before the child
     * ran its own setpgid still reaches it and all it forks. */
    setpgid(pid, pid);
    close(sv[1]);
    close(errp[1]);
    close(rep[1]);
    sv[1] = errp[1] = rep[1] = -1;
    /* Read reports until every copy of the pipe closed (at exec). The
     * scale thread waits here, so a child stuck before exec is bounded. */
    struct child_report r, last = {0};
    ssize_t n;
    for (;;) {
        struct pollfd pfd = {rep[0], POLLIN, 0};
        int ready = poll(&pfd, 1, 5000);
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) {
            last.error = ETIMEDOUT;
            instance_signal(out, SIGKILL);
            break;
        }
        n = read(rep[0], &r, sizeof(r));
        if (n < 0 && errno == EINTR) continue;
        if (n != (ssize_t)sizeof(r)) break;
        last = r;
        if (r.error) break;
    }
    close(rep[0]);
    rep[0] = -1;
    out->sandbox = last.sandbox;
    if (last.error) {
        int status;
        waitpid(pid, &status, 0);
        out->pid = -1;
        if (last.sandbox.msg[0] && last.error == EPERM)
            rc = thaw_errf(err, THAW_EIO, "cannot sandbox '%s': %s", l->argv[0], last.sandbox.msg);
        else
            rc = thaw_errf(err, THAW_EIO, "cannot run '%s': %s", l->argv[0], strerror(last.error));
        goto fail;
    }
    out->sock = sv[0];
    out->err_fd = errp[0];
    if ((rc = set_nonblock_cloexec(out->sock)) || (rc = set_nonblock_cloexec(out->err_fd))) {
        instance_signal(out, SIGKILL);
        waitpid(pid, NULL, 0);
        out->pid = -1;
        thaw_errf(err, rc, "cannot configure instance sockets");
        sv[0] = errp[0] = -1;
        goto fail_fds;
    }
    free_env(env);
    free(program);
    return 0;

fail:
    if (sv[0] >= 0) close(sv[0]);
    if (errp[0] >= 0) close(errp[0]);
fail_fds:
    if (sv[1] >= 0) close(sv[1]);
    if (errp[1] >= 0) close(errp[1]);
    if (rep[0] >= 0) close(rep[0]);
    if (rep[1] >= 0) close(rep[1]);
    if (out->sock >= 0) close(out->sock);
    if (out->err_fd >= 0) close(out->err_fd);
    out->sock = out->err_fd = -1;
    free_env(env);
    free(program);
    instance_cleanup(out);
    return rc;
}

int instance_signal(const struct instance_proc *p, int sig)
{
    if (p->pid <= 0) return -ESRCH;
    if (kill(-p->pid, sig) == 0) return 0;
    /* The group may not exist yet if setpgid has not run: signal the child. */
    return kill(p->pid, sig) == 0 ? 0 : -errno;
}

int instance_reap(pid_t pid, int *status)
{
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid) return 1;
    if (r == 0) return 0;
    return -errno;
}

void instance_cleanup(struct instance_proc *p)
{
    if (p->sock >= 0) close(p->sock);
    if (p->err_fd >= 0) close(p->err_fd);
    p->sock = p->err_fd = -1;
    /* The instance may have left symlinks or odd modes: remove with care. */
    if (p->tmpdir[0]) security_tmpdir_remove(p->tmpdir, NULL);
    p->tmpdir[0] = 0;
}

void instance_describe_exit(int status, char *out, size_t n)
{
    if (WIFEXITED(status))
        snprintf(out, n, "exit code %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, n, "signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(out, n, "status %d", status);
}
