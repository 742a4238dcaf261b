/* Instance processes: spawning a sandboxable child connected to the node by
 * a socketpair (its stdin and stdout) and a pipe (its stderr), signalling its
 * whole process group, and reaping it. Knows nothing of what the child
 * speaks; src/runtime frames the bytes. */
#ifndef THAW_INSTANCE_H
#define THAW_INSTANCE_H

#include "base/base.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct instance_launch {
    char *const *argv;    /* argv[0] is the program; searched in PATH if it has no '/' */
    char *const *env;     /* extra "KEY=VALUE" entries, NULL-terminated, may be NULL */
    const char *workdir;  /* NULL: the private temporary directory */
    const char *tmp_root; /* parent of the per-instance temporary directory */
    const char *deployment;
    int64_t rlimit_as;     /* bytes; 0 = unlimited */
    int64_t rlimit_nofile; /* 0 = inherit */
    int64_t rlimit_cpu;    /* seconds; 0 = unlimited */
    /* Confinement (src/security's sandbox): seccomp "exec" profile, Landlock
     * writes limited to the temp dir (and workdir), and user, mount, PID and
     * (unless allow_network) network namespaces when the kernel allows. */
    bool sandbox;
    bool allow_network;
    /* With sandbox, the child also gets a PID namespace (it cannot see or
     * signal the node or other instances) unless this is set: a template
     * whose double-forked instances must reparent to the node (a subreaper)
     * rather than to the namespace's init. */
    bool no_pid_namespace;
};

/* What the sandbox managed to apply in the child, for the node to log. */
struct instance_sandbox_report {
    unsigned ns_applied, ns_failed;
    bool seccomp, landlock;
    char msg[200];
};

struct instance_proc {
    pid_t pid;        /* also the process group id */
    int sock;         /* node end of the child's stdin/stdout; non-blocking, close-on-exec */
    int err_fd;       /* read end of the child's stderr; non-blocking, close-on-exec */
    char tmpdir[256]; /* private temporary directory, removed by instance_cleanup */
    struct instance_sandbox_report sandbox;
};

/* Starts the child and returns once it has exec'd (or failed to). On error
 * nothing is left behind and err says why (e.g. "cannot run ./fn: No such
 * file or directory"). */
int instance_spawn(const struct instance_launch *l, struct instance_proc *out,
                   struct thaw_err *err);
/* Sends sig to the child's whole process group. Returns 0 or -errno. */
int instance_signal(const struct instance_proc *p, int sig);
/* Reaps the child if it has exited: returns 1 and *status, 0 if still
 * running, or -errno. */
int instance_reap(pid_t pid, int *status);
/* Closes the descriptors and removes the temporary directory. Safe to call
 * once the child is dead or being killed. */
void instance_cleanup(struct instance_proc *p);
/* "exit code 3" or "signal 9 (Killed)". */
void instance_describe_exit(int status, char *out, size_t n);

#endif
