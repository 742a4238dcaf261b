/* Instance sandbox, child side: namespaces, rlimits, no-new-privs, Landlock
 * and a libseccomp filter with the builtin and exec profiles described in
 * security.h. Everything here runs after fork in a single-threaded child. */
#include "security/security.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/landlock.h>
#include <sched.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif

/* Appends a note to the report's message. */
static void note(struct security_sandbox_report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void note(struct security_sandbox_report *r, const char *fmt, ...)
{
    size_t len = strlen(r->msg);
    if (len + 3 >= sizeof(r->msg)) return;
    if (len) {
        memcpy(r->msg + len, "; ", 3);
        len += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg + len, sizeof(r->msg) - len, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------- namespaces -- */

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    ssize_t n = write(fd, text, strlen(text));
    int rc = n == (ssize_t)strlen(text) ? 0 : (n < 0 ? -errno : -EIO);
    close(fd);
    return rc;
}

static int enter_user_ns(void)
{
    uid_t uid = getuid();
    gid_t gid = getgid();
    if (unshare(CLONE_NEWUSER) != 0) return -errno;
    char map[64];
    int rc = write_file("/proc/self/setgroups", "deny");
    if (rc && rc != -ENOENT) return rc;
    snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)uid, (unsigned)uid);
    if ((rc = write_file("/proc/self/uid_map", map))) return rc;
    snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)gid, (unsigned)gid);
    return write_file("/proc/self/gid_map", map);
}

static int enter_mount_ns(void)
{
    if (unshare(CLONE_NEWNS) != 0) return -errno;
    /* Nothing mounted here may propagate back to the node's namespace. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return -errno;
    return 0;
}

static void try_ns(struct security_sandbox_report *r, unsigned bit, const char *name, int rc)
{
    if (rc == 0) {
        r->ns_applied |= bit;
    } else {
        r->ns_failed |= bit;
        note(r, "%s namespace not applied: %s", name, strerror(-rc));
    }
}

/* --------------------------------------------------------- PID namespace --
 * Three processes: the relay (the process the caller forked, outside the
 * namespace: its pid is the one the node knows, signals and reaps), an init
 * (PID 1 inside) and the function (PID 2, the process that returns). The
 * function must not be PID 1 itself: PID 1 ignores signals it has no handler
 * for (so a plain SIGTERM would not stop it) and inherits every orphan it
 * would never reap. All three stay in the caller's process group, so the
 * node's group signals (SIGTERM, SIGSTOP/SIGCONT for parking, SIGKILL) reach
 * the function directly and exactly once; SIGKILL also kills the init, and
 * with it everything left in the namespace. */

static const int relayed[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
#define N_RELAYED (sizeof(relayed) / sizeof(relayed[0]))

static volatile sig_atomic_t pidns_fn; /* the init's function (pid inside), 0 until forked */

/* The init's handler. The node signals the whole process group, so the
 * function normally gets a signal directly and the init forwards only what
 * it cannot have got that way: one the relay passed on (sigqueue from
 * outside the namespace: si_pid reads 0 there), or one for a function that
 * left the group (setsid). Inside the namespace the node's group is not
 * visible, so getpgrp() and getpgid() of a member both read 0. */
static void pidns_forward(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    int saved = errno;
    pid_t fn = (pid_t)pidns_fn;
    if (fn > 0 && ((si->si_code == SI_QUEUE && si->si_pid == 0) || getpgid(fn) != getpgrp()))
        kill(fn, sig);
    errno = saved;
}

static void pidns_handlers(void (*handler)(int, siginfo_t *, void *))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    if (handler) {
        sa.sa_sigaction = handler;
        sa.sa_flags = SA_SIGINFO | SA_RESTART;
    } else {
        sa.sa_handler = SIG_IGN;
    }
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < N_RELAYED; i++)
        sigaction(relayed[i], &sa, NULL);
}

/* Takes the pending relayed signals (all blocked) and sends each to pid:
 * sigqueue from the relay (so the init knows the function missed it), kill
 * from the init. */
static void pidns_pass_pending(const sigset_t *set, pid_t pid, bool queue)
{
    struct timespec zero = {0, 0};
    siginfo_t si;
    int sig;
    while ((sig = sigtimedwait(set, &si, &zero)) > 0) {
        if (queue)
            sigqueue(pid, sig, (union sigval){.sival_int = 0});
        else
            kill(pid, sig);
    }
}

/* Closes every descriptor from `from` up except keep (-1: none). */
static void close_from(int from, int keep)
{
    if (keep >= from) {
        if (keep > from && syscall(SYS_close_range, from, keep - 1, 0) != 0)
            for (int fd = from; fd < keep; fd++)
                close(fd);
        from = keep + 1;
    }
    if (syscall(SYS_close_range, from, ~0U, 0) != 0)
        for (int fd = from; fd < 65536; fd++)
            close(fd);
}

/* Ends the relay the way the function ended: same exit code, or death by
 * the same signal (with core dumps off: the relay's memory is the node's). */
static void __attribute__((noreturn)) pidns_mirror(int status)
{
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        struct rlimit none = {0, 0};
        setrlimit(RLIMIT_CORE, &none);
        signal(sig, SIG_DFL);
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        sigprocmask(SIG_UNBLOCK, &one, NULL);
        raise(sig);
        _exit(128 + sig); /* a signal whose default is not to terminate */
    }
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 125);
}

/* The relay (outside the namespace): waits for the init and exits with the
 * function's status, which the init sends over status_fd (the init itself
 * cannot die by a signal: the kernel protects a namespace's PID 1). It keeps
 * stdin, stdout and stderr open until then, so the node sees the
 * instance's socket close only once this process has its final status. */
static void __attribute__((noreturn)) pidns_relay(pid_t init, int status_fd)
{
    close_from(3, status_fd);
    int st = 0;
    while (waitpid(init, &st, 0) < 0)
        if (errno != EINTR) _exit(125);
    int fn_status;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
        read(status_fd, &fn_status, sizeof(fn_status)) == (ssize_t)sizeof(fn_status))
        st = fn_status;
    pidns_mirror(st);
}

/* The init (PID 1 inside): reaps every process of the namespace until the
 * function exits, then reports its status and exits, which makes the kernel
 * kill whatever the function left behind. */
static void __attribute__((noreturn)) pidns_init(int status_fd)
{
    pid_t fn = (pid_t)pidns_fn;
    for (;;) {
        int st = 0;
        pid_t r = waitpid(-1, &st, 0);
        if (r == fn) {
            if (write(status_fd, &st, sizeof(st)) != (ssize_t)sizeof(st)) _exit(125);
            _exit(0);
        }
        if (r < 0 && errno != EINTR) _exit(125);
    }
}

/* Returns 0 in the function process (PID 2 of a new PID namespace, /proc
 * remounted there when mount_ns), or a negative code when the namespace
 * could not be made (the caller carries on without it). The relay and the
 * init never return. Relayed signals stay blocked from before the first
 * fork until each process has its dispositions, so none is lost: what
 * reached the relay before the init existed, or the init before the
 * function existed, is passed on. */
static int enter_pid_ns(bool mount_ns, struct security_sandbox_report *r)
{
    sigset_t block, old;
    sigemptyset(&block);
    for (size_t i = 0; i < N_RELAYED; i++)
        sigaddset(&block, relayed[i]);
    struct sigaction orig[N_RELAYED];
    for (size_t i = 0; i < N_RELAYED; i++)
        sigaction(relayed[i], NULL, &orig[i]);
    int sp[2];
    if (pipe2(sp, O_CLOEXEC) != 0) return -errno;
    if (unshare(CLONE_NEWPID) != 0) {
        int e = errno;
        close(sp[0]);
        close(sp[1]);
        return -e;
    }
    sigprocmask(SIG_BLOCK, &block, &old);
    pid_t init = fork();
    if (init < 0) {
        int e = errno;
        sigprocmask(SIG_SETMASK, &old, NULL);
        close(sp[0]);
        close(sp[1]);
        return -e;
    }
    if (init > 0) {
        /* The relay survives the signals meant for the function (they reach
         * it through the group) until it can mirror its status. */
        close(sp[1]);
        pidns_pass_pending(&block, init, true);
        pidns_handlers(NULL);
        sigprocmask(SIG_SETMASK, &old, NULL);
        pidns_relay(init, sp[0]);
    }
    /* The init. If the relay dies (the node killed it), so does the init,
     * and with it the namespace. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(sp[0]);
    pidns_fn = 0;
    pidns_handlers(pidns_forward);
    /* Mounted from inside: a proc mount shows the namespace of its mounter. */
    if (mount_ns) {
        if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0)
            r->proc_remounted = true;
        else
            note(r, "/proc not remounted for the pid namespace: %s", strerror(errno));
    }
    pid_t fn = fork();
    if (fn < 0) {
        dprintf(STDERR_FILENO, "thaw: cannot start the instance in its PID namespace: %s\n",
                strerror(errno));
        _exit(126);
    }
    if (fn > 0) {
        pidns_fn = fn;
        close(STDIN_FILENO);
        close(STDOUT_FILENO);
        close_from(3, sp[1]);
        pidns_pass_pending(&block, fn, false);
        sigprocmask(SIG_SETMASK, &old, NULL);
        pidns_init(sp[1]);
    }
    /* The function: the caller's dispositions and mask, none of the
     * relay's plumbing. */
    close(sp[1]);
    for (size_t i = 0; i < N_RELAYED; i++)
        sigaction(relayed[i], &orig[i], NULL);
    sigprocmask(SIG_SETMASK, &old, NULL);
    return 0;
}

static void apply_namespaces(const struct security_sandbox *cfg, struct security_sandbox_report *r)
{
    unsigned want = cfg->namespaces;
    if (want & SECURITY_NS_USER) try_ns(r, SECURITY_NS_USER, "user", enter_user_ns());
    if (want & SECURITY_NS_MOUNT) try_ns(r, SECURITY_NS_MOUNT, "mount", enter_mount_ns());
    if (want & SECURITY_NS_NET)
        try_ns(r, SECURITY_NS_NET, "network", unshare(CLONE_NEWNET) ? -errno : 0);
    /* Last: it forks, and the new /proc needs the mount namespace. */
    if (want & SECURITY_NS_PID)
        try_ns(r, SECURITY_NS_PID, "pid",
               enter_pid_ns((r->ns_applied & SECURITY_NS_MOUNT) != 0, r));
    if ((r->ns_failed & SECURITY_NS_PID))
        note(r, "the instance can see and signal other processes of its user");
}

/* ------------------------------------------------------------- rlimits -- */

static int set_limit(int resource, const char *name, uint64_t soft, uint64_t hard,
                     struct thaw_err *err)
{
    struct rlimit rl = {(rlim_t)soft, (rlim_t)hard};
    if (setrlimit(resource, &rl) != 0)
        return thaw_errf(err, -errno, "sandbox: cannot set %s to %llu: %s", name,
                         (unsigned long long)soft, strerror(errno));
    return 0;
}

static int apply_rlimits(const struct security_sandbox *cfg, struct thaw_err *err)
{
    int rc = set_limit(RLIMIT_CORE, "RLIMIT_CORE", 0, 0, err);
    if (!rc && cfg->max_address_space)
        rc = set_limit(RLIMIT_AS, "RLIMIT_AS", cfg->max_address_space, cfg->max_address_space, err);
    if (!rc && cfg->max_open_files)
        rc = set_limit(RLIMIT_NOFILE, "RLIMIT_NOFILE", cfg->max_open_files, cfg->max_open_files,
                       err);
    if (!rc && cfg->max_cpu_seconds)
        rc = set_limit(RLIMIT_CPU, "RLIMIT_CPU", cfg->max_cpu_seconds, cfg->max_cpu_seconds + 1,
                       err);
    if (!rc && cfg->max_processes)
        rc = set_limit(RLIMIT_NPROC, "RLIMIT_NPROC", cfg->max_processes, cfg->max_processes, err);
    if (!rc && cfg->max_file_size)
        rc = set_limit(RLIMIT_FSIZE, "RLIMIT_FSIZE", cfg->max_file_size, cfg->max_file_size, err);
    return rc;
}

static int apply_ids(const struct security_sandbox *cfg, struct thaw_err *err)
{
    if (!cfg->set_ids) return 0;
    if (setgroups(0, NULL) != 0 && errno != EPERM)
        return thaw_errf(err, -errno, "sandbox: setgroups: %s", strerror(errno));
    if (setresgid(cfg->gid, cfg->gid, cfg->gid) != 0)
        return thaw_errf(err, -errno, "sandbox: cannot switch to gid %u: %s", cfg->gid,
                         strerror(errno));
    if (setresuid(cfg->uid, cfg->uid, cfg->uid) != 0)
        return thaw_errf(err, -errno, "sandbox: cannot switch to uid %u: %s", cfg->uid,
                         strerror(errno));
    return 0;
}

/* ------------------------------------------------------------ landlock -- */

#define LL_READ                                                                                    \
    (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR)
#define LL_WRITE_V1                                                                                \
    (LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR |                               \
     LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR | \
     LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO |   \
     LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SYM)
/* Accesses that make sense on a single file rather than a directory. */
#define LL_FILE                                                                                    \
    (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE |   \
     LANDLOCK_ACCESS_FS_TRUNCATE)

static int ll_add(int ruleset, const char *path, uint64_t access, uint64_t handled,
                  struct thaw_err *err)
{
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0)
        return thaw_errf(err, -errno, "sandbox: Landlock path %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode)) access &= LL_FILE;
    struct landlock_path_beneath_attr pb = {.allowed_access = access & handled, .parent_fd = fd};
    long rc = syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
    int e = errno;
    close(fd);
    if (rc != 0) return thaw_errf(err, -e, "sandbox: Landlock rule for %s: %s", path, strerror(e));
    return 0;
}

static int apply_landlock(const struct security_sandbox *cfg, struct security_sandbox_report *r,
                          struct thaw_err *err)
{
    if (!cfg->write_dirs && !cfg->read_dirs) return 0;
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    if (abi < 1) {
        if (cfg->require_landlock)
            return thaw_errf(err, THAW_EUNSUPPORTED, "sandbox: Landlock is not available: %s",
                             strerror(errno));
        note(r, "Landlock not available (%s): filesystem writes are not confined", strerror(errno));
        return 0;
    }
    uint64_t write = LL_WRITE_V1;
    if (abi >= 2) write |= LANDLOCK_ACCESS_FS_REFER;
    if (abi >= 3) write |= LANDLOCK_ACCESS_FS_TRUNCATE;
    uint64_t handled = write | (cfg->read_dirs ? LL_READ : 0);
    struct landlock_ruleset_attr attr = {.handled_access_fs = handled};
    int rs = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0);
    if (rs < 0) return thaw_errf(err, -errno, "sandbox: Landlock ruleset: %s", strerror(errno));
    int rc = ll_add(rs, "/dev/null", LL_FILE, handled, err);
    for (const char *const *d = cfg->write_dirs; !rc && d && *d; d++)
        rc = ll_add(rs, *d, handled, handled, err);
    for (const char *const *d = cfg->read_dirs; !rc && d && *d; d++)
        rc = ll_add(rs, *d, LL_READ, handled, err);
    if (!rc && syscall(SYS_landlock_restrict_self, rs, 0) != 0)
        rc = thaw_errf(err, -errno, "sandbox: Landlock restrict: %s", strerror(errno));
    close(rs);
    if (!rc) r->landlock = true;
    return rc;
}

/* ------------------------------------------------------------- seccomp -- */

static const int denied_always[] = {
    SCMP_SYS(ptrace),
    SCMP_SYS(process_vm_readv),
    SCMP_SYS(process_vm_writev),
    SCMP_SYS(mount),
    SCMP_SYS(umount2),
    SCMP_SYS(pivot_root),
    SCMP_SYS(chroot),
    SCMP_SYS(swapon),
    SCMP_SYS(swapoff),
    SCMP_SYS(reboot),
    SCMP_SYS(kexec_load),
    SCMP_SYS(kexec_file_load),
    SCMP_SYS(init_module),
    SCMP_SYS(finit_module),
    SCMP_SYS(delete_module),
    SCMP_SYS(bpf),
    SCMP_SYS(perf_event_open),
    SCMP_SYS(keyctl),
    SCMP_SYS(add_key),
    SCMP_SYS(request_key),
    SCMP_SYS(setns),
    SCMP_SYS(unshare),
    SCMP_SYS(userfaultfd),
    SCMP_SYS(open_by_handle_at),
    SCMP_SYS(name_to_handle_at),
    SCMP_SYS(syslog),
    SCMP_SYS(acct),
    SCMP_SYS(settimeofday),
    SCMP_SYS(clock_settime),
    SCMP_SYS(clock_adjtime),
    SCMP_SYS(adjtimex),
    SCMP_SYS(iopl),
    SCMP_SYS(ioperm),
    SCMP_SYS(quotactl),
    SCMP_SYS(lookup_dcookie),
    SCMP_SYS(vhangup),
    SCMP_SYS(fanotify_init),
    SCMP_SYS(move_mount),
    SCMP_SYS(fsopen),
    SCMP_SYS(fsconfig),
    SCMP_SYS(fsmount),
    SCMP_SYS(fspick),
    SCMP_SYS(open_tree),
    SCMP_SYS(mount_setattr),
    SCMP_SYS(kcmp),
    SCMP_SYS(pidfd_getfd),
    SCMP_SYS(process_madvise),
    SCMP_SYS(io_uring_setup),
    SCMP_SYS(io_uring_enter),
    SCMP_SYS(io_uring_register),
};

static const unsigned long ns_flags[] = {CLONE_NEWUSER, CLONE_NEWNS,  CLONE_NEWPID,   CLONE_NEWNET,
                                         CLONE_NEWUTS,  CLONE_NEWIPC, CLONE_NEWCGROUP};

#define EPERM_ACT SCMP_ACT_ERRNO(EPERM)

/* A comparison on the first argument (libseccomp's own macro leaves fields
 * implicit, which clang's -Wmissing-field-initializers rejects). */
static struct scmp_arg_cmp arg0(enum scmp_compare op, scmp_datum_t a, scmp_datum_t b)
{
    struct scmp_arg_cmp c = {.arg = 0, .op = op, .datum_a = a, .datum_b = b};
    return c;
}

/* Denies socket families outside `allowed` (a bitmask over AF_* below 64).
 * The kernel reads the family as a 32-bit int, so only the low 32 bits of
 * the argument are compared (a masked compare, so high garbage bits cannot
 * slip a family past the filter). */
static int deny_families(scmp_filter_ctx ctx, int syscall_nr, uint64_t allowed)
{
    for (int fam = 0; fam < AF_MAX && fam < 64; fam++) {
        if (allowed & (1ull << fam)) continue;
        int rc = seccomp_rule_add(ctx, EPERM_ACT, syscall_nr, 1,
                                  arg0(SCMP_CMP_MASKED_EQ, 0xffffffffu, (scmp_datum_t)fam));
        if (rc) return rc;
    }
    return 0;
}

static int add_common_rules(scmp_filter_ctx ctx)
{
    int rc = 0;
    for (size_t i = 0; !rc && i < sizeof(denied_always) / sizeof(denied_always[0]); i++)
        rc = seccomp_rule_add(ctx, EPERM_ACT, denied_always[i], 0);
    for (size_t i = 0; !rc && i < sizeof(ns_flags) / sizeof(ns_flags[0]); i++)
        rc = seccomp_rule_add(ctx, EPERM_ACT, SCMP_SYS(clone), 1,
                              arg0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]));
    /* clone3 passes its flags in memory the filter cannot read: ENOSYS
     * makes libc fall back to clone. */
    if (!rc) rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    return rc;
}

static int add_profile_rules(scmp_filter_ctx ctx, const struct security_sandbox *cfg)
{
    int rc = add_common_rules(ctx);
    if (rc) return rc;
    const uint64_t unix_only = 1ull << AF_UNIX;
    if (cfg->profile == SECURITY_SECCOMP_BUILTIN) {
        if ((rc = seccomp_rule_add(ctx, EPERM_ACT, SCMP_SYS(execve), 0))) return rc;
        if ((rc = seccomp_rule_add(ctx, EPERM_ACT, SCMP_SYS(execveat), 0))) return rc;
        if ((rc = seccomp_rule_add(ctx, EPERM_ACT, SCMP_SYS(socket), 0))) return rc;
        return deny_families(ctx, SCMP_SYS(socketpair), unix_only);
    }
    if ((rc = seccomp_rule_add(ctx, EPERM_ACT, SCMP_SYS(execveat), 0))) return rc;
    if (!cfg->allow_exec_children) {
        rc = cfg->exec_path
                 ? seccomp_rule_add(ctx, EPERM_ACT, SCMP_SYS(execve), 1,
                                    arg0(SCMP_CMP_NE, (scmp_datum_t)(uintptr_t)cfg->exec_path, 0))
                 : seccomp_rule_add(ctx, EPERM_ACT, SCMP_SYS(execve), 0);
        if (rc) return rc;
    }
    uint64_t allowed = unix_only;
    if (cfg->allow_network) allowed |= 1ull << AF_INET | 1ull << AF_INET6 | 1ull << AF_NETLINK;
    if ((rc = deny_families(ctx, SCMP_SYS(socket), allowed))) return rc;
    return deny_families(ctx, SCMP_SYS(socketpair), unix_only);
}

struct security_seccomp_prog {
    struct sock_fprog fprog;
};

int security_seccomp_compile(const struct security_sandbox *cfg, struct security_seccomp_prog **out,
                             struct thaw_err *err)
{
    *out = NULL;
    if (cfg->profile != SECURITY_SECCOMP_BUILTIN && cfg->profile != SECURITY_SECCOMP_EXEC)
        return thaw_errf(err, THAW_EINVAL, "sandbox: no seccomp profile to compile");
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) return thaw_errf(err, THAW_ENOMEM, "sandbox: seccomp_init failed");
    int rc = add_profile_rules(ctx, cfg);
    int fd = rc ? -1 : memfd_create("thaw-seccomp", MFD_CLOEXEC);
    if (!rc && fd < 0) rc = -errno;
    if (!rc) rc = seccomp_export_bpf(ctx, fd);
    seccomp_release(ctx);
    off_t size = rc ? 0 : lseek(fd, 0, SEEK_END);
    struct security_seccomp_prog *p = NULL;
    if (!rc && (size <= 0 || size % (off_t)sizeof(struct sock_filter) ||
                size > (off_t)(sizeof(struct sock_filter) * 65535)))
        rc = -EINVAL;
    if (!rc && !(p = calloc(1, sizeof(*p) + (size_t)size))) rc = -ENOMEM;
    if (!rc) {
        p->fprog.len = (unsigned short)(size / (off_t)sizeof(struct sock_filter));
        p->fprog.filter = (struct sock_filter *)(p + 1);
        if (pread(fd, p->fprog.filter, (size_t)size, 0) != size) rc = -EIO;
    }
    if (fd >= 0) close(fd);
    if (rc) {
        free(p);
        return thaw_errf(err, rc, "sandbox: compiling the seccomp filter: %s", strerror(-rc));
    }
    *out = p;
    return 0;
}

void security_seccomp_prog_free(struct security_seccomp_prog *p)
{
    free(p);
}

static int apply_seccomp(const struct security_sandbox *cfg, struct security_sandbox_report *r,
                         struct thaw_err *err)
{
    if (cfg->profile == SECURITY_SECCOMP_NONE) return 0;
    if (cfg->compiled) {
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &cfg->compiled->fprog) != 0)
            return thaw_errf(err, -errno, "sandbox: loading the seccomp filter: %s",
                             strerror(errno));
        r->seccomp = true;
        return 0;
    }
    if (cfg->profile != SECURITY_SECCOMP_BUILTIN && cfg->profile != SECURITY_SECCOMP_EXEC)
        return thaw_errf(err, THAW_EINVAL, "sandbox: unknown seccomp profile %d", cfg->profile);
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) return thaw_errf(err, THAW_ENOMEM, "sandbox: seccomp_init failed");
    int rc = add_profile_rules(ctx, cfg);
    if (rc) {
        seccomp_release(ctx);
        return thaw_errf(err, THAW_EUNSUPPORTED, "sandbox: building the seccomp filter: %s",
                         strerror(-rc));
    }
    rc = seccomp_load(ctx);
    seccomp_release(ctx);
    if (rc) return thaw_errf(err, rc, "sandbox: loading the seccomp filter: %s", strerror(-rc));
    r->seccomp = true;
    return 0;
}

/* ---------------------------------------------------------------- main -- */

int security_sandbox_apply(const struct security_sandbox *cfg, struct thaw_err *err)
{
    struct security_sandbox_report local, *r = cfg->report ? cfg->report : &local;
    memset(r, 0, sizeof(*r));
    if (cfg->profile == SECURITY_SECCOMP_EXEC && !cfg->exec_path && !cfg->allow_exec_children)
        return thaw_errf(err, THAW_EINVAL,
                         "sandbox: the exec profile needs exec_path (or allow_exec_children)");
    apply_namespaces(cfg, r);
    int rc = apply_rlimits(cfg, err);
    if (!rc) rc = apply_ids(cfg, err);
    if (!rc && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        rc = thaw_errf(err, -errno, "sandbox: PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
    if (!rc) r->no_new_privs = true;
    if (!rc) rc = apply_landlock(cfg, r, err);
    if (!rc) rc = apply_seccomp(cfg, r, err);
    return rc;
}
