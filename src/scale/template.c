/* llm/embed templates: one process per deployment generation that loaded
 * the model once and forks instances on request (src/runtime/template.c is
 * the other side). Started on the first demand, kept while the deployment
 * is in standby, stopped at standby_timeout or when the deployment changes.
 * Also the reaper of orphans the node inherits as a child subreaper. */
#include "scale/pool.h"

#include "runtime/runtime.h"

#include <errno.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define TMPL_FORK_TIMEOUT_MS 5000

bool pool_tmpl_ready(const struct pool *p)
{
    return p->tmpl && p->tmpl->ready && p->tmpl->generation == p->generation;
}

static void tmpl_free(struct pool *p)
{
    struct tmpl *t = p->tmpl;
    if (!t) return;
    p->tmpl = NULL;
    if (t->ctl_ev) event_free(t->ctl_ev);
    if (t->err_bev) bufferevent_free(t->err_bev);
    if (t->proc.pid > 0 && !t->reaped) {
        instance_signal(&t->proc, SIGKILL);
        while (waitpid(t->proc.pid, NULL, 0) < 0 && errno == EINTR) {
        }
    }
    instance_cleanup(&t->proc);
    buf_free(&t->ctl_in);
    free(t);
}

void pool_tmpl_stop(struct pool *p, const char *reason)
{
    if (!p->tmpl) return;
    OBS_LOG(LOG_INFO, "template_stopping", LOG_S("deployment", p->spec->name),
            LOG_I("pid", p->tmpl->proc.pid), LOG_S("reason", reason));
    tmpl_free(p);
}

/* The template is gone: instances waiting on it cannot start. */
static void tmpl_died(struct pool *p, const char *why)
{
    struct tmpl *t = p->tmpl;
    char how[96] = "unknown status", msg[512];
    int status;
    if (t->reaped)
        instance_describe_exit(t->exit_status, how, sizeof(how));
    else if (t->proc.pid > 0) {
        instance_signal(&t->proc, SIGKILL);
        if (waitpid(t->proc.pid, &status, 0) == t->proc.pid) {
            instance_describe_exit(status, how, sizeof(how));
            t->reaped = true;
        }
    }
    snprintf(msg, sizeof(msg), "the model template exited (%s)%s%s", how,
             t->last_stderr[0] ? ": " : "", t->last_stderr);
    OBS_LOG(t->ready ? LOG_WARN : LOG_ERROR, "template_exited", LOG_S("deployment", p->spec->name),
            LOG_I("pid", t->proc.pid), LOG_S("status", how), LOG_S("reason", why));
    bool was_ready = t->ready;
    tmpl_free(p);
    struct inst *next;
    for (struct inst *in = p->insts; in; in = next) {
        next = in->next;
        if (in->awaiting_template) pool_inst_discard(in);
    }
    /* A template that never loaded is a failed start: held requests get
     * its own words when nothing else can serve them. One that dies after
     * loading only costs the next request a fresh start. */
    if (!was_ready) pool_start_failed(p, msg);
}

/* Forks one instance from the ready template. */
static int tmpl_fork(struct pool *p, struct inst *in)
{
    struct tmpl *t = p->tmpl;
    int sv[2] = {-1, -1}, errp[2] = {-1, -1};
    struct thaw_err err = {0};
    pid_t pid = -1;
    int rc = 0;
    in->awaiting_template = false;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 || pipe2(errp, O_CLOEXEC) < 0)
        rc = thaw_errf(&err, -errno, "cannot create instance pipes: %s", strerror(errno));
    if (!rc)
        rc = runtime_template_fork(t->proc.sock, sv[1], errp[1], TMPL_FORK_TIMEOUT_MS, &pid, &err);
    if (sv[1] >= 0) close(sv[1]);
    if (errp[1] >= 0) close(errp[1]);
    if (!rc && (fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0 || fcntl(errp[0], F_SETFL, O_NONBLOCK) < 0))
        rc = thaw_errf(&err, -errno, "cannot configure instance sockets");
    if (rc) {
        if (sv[0] >= 0) close(sv[0]);
        if (errp[0] >= 0) close(errp[0]);
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
        OBS_LOG(LOG_WARN, "template_fork_failed", LOG_S("deployment", p->spec->name),
                LOG_S("error", err.msg));
        pool_inst_discard(in);
        pool_start_failed(p, err.msg);
        /* A template that cannot fork is of no use: start afresh next time. */
        if (p->tmpl == t) pool_tmpl_stop(p, "fork failed");
        return -1;
    }
    in->proc.pid = pid;
    in->proc.sock = sv[0];
    in->proc.err_fd = errp[0];
    in->proc.sandbox = t->proc.sandbox;
    in->spawned_ms = pool_now_ms(); /* start-up is timed from the fork */
    t->idle_since_ms = 0;
    OBS_LOG(LOG_INFO, "instance_spawned", LOG_S("deployment", p->spec->name), LOG_I("pid", pid),
            LOG_I("template_pid", t->proc.pid),
            LOG_S("purpose", in->park_when_ready ? "standby" : "serve"));
    return pool_inst_attach(in);
}

static void tmpl_became_ready(struct pool *p, const char *line)
{
    struct tmpl *t = p->tmpl;
    t->ready = true;
    p->start_failures = 0;
    OBS_LOG(LOG_INFO, "template_ready", LOG_S("deployment", p->spec->name),
            LOG_I("pid", t->proc.pid), LOG_I("startup_ms", pool_now_ms() - t->started_ms),
            LOG_S("detail", line));
    struct inst *next;
    for (struct inst *in = p->insts; in && p->tmpl == t; in = next) {
        next = in->next;
        if (in->awaiting_template && in->generation == t->generation) tmpl_fork(p, in);
    }
}

/* The control socket: the ready line while loading, then only EOF (fork
 * answers are read synchronously by runtime_template_fork). */
static void ctl_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pool *p = arg;
    struct scale *s = p->scale;
    pthread_mutex_lock(&s->lock);
    struct tmpl *t = p->tmpl;
    char chunk[1024];
    ssize_t n = t ? read(fd, chunk, sizeof(chunk)) : -1;
    if (!t || (n < 0 && (errno == EAGAIN || errno == EINTR))) {
        pthread_mutex_unlock(&s->lock);
        return;
    }
    if (n <= 0) {
        tmpl_died(p, "its control socket closed");
        pthread_mutex_unlock(&s->lock);
        return;
    }
    buf_append(&t->ctl_in, chunk, (size_t)n);
    char *nl;
    while (p->tmpl == t && t->ctl_in.len && (nl = memchr(t->ctl_in.data, '\n', t->ctl_in.len))) {
        *nl = 0;
        if (!t->ready && strstr(t->ctl_in.data, "\"ready\":true"))
            tmpl_became_ready(p, t->ctl_in.data);
        if (p->tmpl == t) buf_consume(&t->ctl_in, (size_t)(nl - t->ctl_in.data) + 1);
    }
    if (p->tmpl == t && t->ctl_in.len > 65536) tmpl_died(p, "it wrote an over-long line");
    pthread_mutex_unlock(&s->lock);
}

/* Like ctl_cb, the stderr callbacks take the scale lock: status readers
 * on other threads read last_stderr. */
static void tmpl_err_cb(struct bufferevent *bev, void *arg)
{
    struct pool *p = arg;
    struct scale *s = p->scale;
    struct evbuffer *input = bufferevent_get_input(bev);
    pthread_mutex_lock(&s->lock);
    for (;;) {
        size_t len;
        char *line = evbuffer_readln(input, &len, EVBUFFER_EOL_LF);
        if (!line) {
            if (evbuffer_get_length(input) > 4096)
                evbuffer_drain(input, evbuffer_get_length(input));
            break;
        }
        if (len > 1000) line[1000] = 0;
        if (p->tmpl) str_copy(p->tmpl->last_stderr, line, sizeof(p->tmpl->last_stderr));
        OBS_LOG(LOG_INFO, "template_stderr", LOG_S("deployment", p->spec->name),
                LOG_S("line", line));
        free(line);
    }
    pthread_mutex_unlock(&s->lock);
}

static void tmpl_err_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct pool *p = arg;
    struct scale *s = p->scale;
    pthread_mutex_lock(&s->lock);
    if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) && p->tmpl && p->tmpl->err_bev == bev) {
        bufferevent_free(bev);
        p->tmpl->err_bev = NULL;
    }
    pthread_mutex_unlock(&s->lock);
}

/* The deployment's spec as the template reads it: canonical JSON with the
 * model path made absolute (the template runs in its own directory). */
static char *tmpl_spec_json(struct pool *p, struct thaw_err *err)
{
    const struct deploy_spec *spec = p->spec;
    char path[PATH_MAX + 100];
    const char *model = spec->model.path;
    if (strncmp(model, "sha256:", 7) == 0) {
        const char *root = p->scale->cfg.artifact_root;
        if (!root || artifact_blob_path(root, model, path, sizeof(path)))
            return thaw_errf(err, THAW_EINVAL, "model %s: this node has no artifact store", model),
                   NULL;
        if (access(path, R_OK) != 0)
            return thaw_errf(err, THAW_ENOTFOUND, "model %s is not stored on this node", model),
                   NULL;
    } else if (!realpath(model, path)) {
        return thaw_errf(err, -errno, "model file %s: %s", model, strerror(errno)), NULL;
    }
    json_t *j = registry_spec_to_json(spec);
    if (!j) return thaw_errf(err, THAW_ENOMEM, "out of memory"), NULL;
    json_object_set_new(j, "model", json_string(path));
    json_object_del(j, "input_schema"); /* checked by the gateway; could be long */
    char *out = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!out) thaw_errf(err, THAW_ENOMEM, "out of memory");
    return out;
}

static int tmpl_start(struct pool *p, struct thaw_err *err)
{
    struct scale *s = p->scale;
    const struct deploy_spec *spec = p->spec;
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) return thaw_errf(err, -errno, "cannot find the thaw binary: %s", strerror(errno));
    self[n] = 0;
    char *json = tmpl_spec_json(p, err);
    if (!json) return err->code ? err->code : THAW_EINVAL;
    char *argv[] = {self, RUNTIME_MODEL_COMMAND, "model", "--spec", json, NULL};
    /* OpenBLAS would start its worker threads at load; the engine runs it
     * single-threaded anyway, and a template forks: it must have one thread. */
    char *env[] = {"OPENBLAS_NUM_THREADS=1", NULL};
    struct instance_launch l = {
        .argv = argv,
        .env = env,
        .tmp_root = s->cfg.tmp_root,
        .deployment = spec->name,
        .rlimit_as = spec->limits.memory_bytes,
        .rlimit_nofile = spec->limits.open_files,
        .rlimit_cpu = spec->limits.cpu_seconds,
        .sandbox = spec->sandbox,
        .allow_network = false,
        .no_pid_namespace = true, /* its forks must reparent to the node */
    };
    struct tmpl *t = calloc(1, sizeof(*t));
    if (!t) {
        free(json);
        return thaw_errf(err, THAW_ENOMEM, "out of memory");
    }
    int rc = instance_spawn(&l, &t->proc, err);
    free(json);
    if (rc) {
        free(t);
        return rc;
    }
    t->generation = p->generation;
    t->started_ms = pool_now_ms();
    p->tmpl = t;
    t->ctl_ev = event_new(s->base, t->proc.sock, EV_READ | EV_PERSIST, ctl_cb, p);
    t->err_bev = bufferevent_socket_new(s->base, t->proc.err_fd, 0);
    if (!t->ctl_ev || !t->err_bev || event_add(t->ctl_ev, NULL)) {
        tmpl_free(p);
        return thaw_errf(err, THAW_ENOMEM, "out of memory");
    }
    bufferevent_setcb(t->err_bev, tmpl_err_cb, NULL, tmpl_err_event_cb, p);
    bufferevent_enable(t->err_bev, EV_READ);
    OBS_LOG(LOG_INFO, "template_spawned", LOG_S("deployment", spec->name),
            LOG_I("pid", t->proc.pid), LOG_S("runtime", spec->runtime),
            LOG_S("model", spec->model.path));
    const struct instance_sandbox_report *sr = &t->proc.sandbox;
    if (spec->sandbox && (sr->ns_failed || !sr->seccomp || !sr->landlock))
        OBS_LOG(LOG_WARN, "sandbox_incomplete", LOG_S("deployment", spec->name),
                LOG_I("pid", t->proc.pid), LOG_I("namespaces_applied", sr->ns_applied),
                LOG_I("namespaces_failed", sr->ns_failed), LOG_I("seccomp", sr->seccomp),
                LOG_I("landlock", sr->landlock), LOG_S("detail", sr->msg));
    return 0;
}

int pool_tmpl_spawn(struct pool *p, struct inst *in)
{
    if (p->tmpl && p->tmpl->generation != p->generation)
        pool_tmpl_stop(p, "replaced by a new version");
    if (!p->tmpl) {
        struct thaw_err err = {0};
        if (tmpl_start(p, &err)) {
            pool_inst_discard(in);
            pool_start_failed(p, err.msg);
            return -1;
        }
    }
    if (!p->tmpl->ready) {
        in->awaiting_template = true;
        return 0;
    }
    return tmpl_fork(p, in);
}

void pool_tmpl_tick(struct pool *p, uint64_t now)
{
    struct tmpl *t = p->tmpl;
    if (!t) return;
    int status;
    if (!t->reaped && t->proc.pid > 0 && instance_reap(t->proc.pid, &status) == 1) {
        t->reaped = true;
        t->exit_status = status;
        tmpl_died(p, "exited");
        return;
    }
    if (!t->ready) {
        /* A template stuck loading would hold every start back for good. */
        if (now - t->started_ms >= (uint64_t)p->spec->scale.startup_timeout_ms) {
            char why[160];
            snprintf(why, sizeof(why), "did not load the model within startup_timeout (%lld ms)",
                     (long long)p->spec->scale.startup_timeout_ms);
            str_copy(t->last_stderr, why, sizeof(t->last_stderr));
            tmpl_died(p, why);
        }
        return;
    }
    bool used = false;
    for (struct inst *in = p->insts; in && !used; in = in->next)
        used = in->generation == t->generation && in->state != INST_STOPPING;
    if (used || p->n_held) {
        t->idle_since_ms = 0;
        return;
    }
    if (!t->idle_since_ms) t->idle_since_ms = now;
    if (now - t->idle_since_ms >= (uint64_t)p->spec->scale.standby_timeout_ms) {
        OBS_LOG(LOG_INFO, "scale_decision", LOG_S("deployment", p->spec->name),
                LOG_S("direction", "down"), LOG_I("pid", t->proc.pid),
                LOG_S("reason", "standby_timeout: standby -> cold"));
        obs_metric_add(p->m_down, 1);
        pool_tmpl_stop(p, "standby_timeout");
    }
}

json_t *pool_tmpl_status(const struct pool *p)
{
    const struct tmpl *t = p->tmpl;
    if (!t) return NULL;
    return json_pack("{s:i, s:s}", "pid", (int)t->proc.pid, "state",
                     t->ready ? "ready" : "loading");
}

static bool pid_known(struct scale *s, pid_t pid)
{
    for (struct pool *p = s->pools; p; p = p->next) {
        if (p->tmpl && p->tmpl->proc.pid == pid) return true;
        for (struct inst *in = p->insts; in; in = in->next)
            if (in->proc.pid == pid) return true;
    }
    return false;
}

void pool_reap_orphans(struct scale *s)
{
    for (int i = 0; i < 1000; i++) {
        siginfo_t si;
        memset(&si, 0, sizeof(si));
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0 || si.si_pid == 0) return;
        /* A known child is its pool's to reap, with its exit status. */
        if (pid_known(s, si.si_pid)) return;
        waitpid(si.si_pid, NULL, WNOHANG);
        OBS_LOG(LOG_DEBUG, "orphan_reaped", LOG_I("pid", si.si_pid));
    }
}
