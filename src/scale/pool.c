/* A deployment's pool of instances: spawning and stopping them, reading their
 * answers, routing requests to free capacity, holding requests while
 * instances start, and the timeouts of all of these. Runs on the scale
 * thread with the scale lock held. */
#include "scale/pool.h"

#include "runtime/runtime.h"

#include <errno.h>
#include <event2/buffer.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *state_names[INST_N_STATES] = {"starting", "ready", "parked", "draining",
                                                 "stopping"};

const char *pool_state_name(enum inst_state st)
{
    return state_names[st];
}

uint64_t pool_now_ms(void)
{
    return time_now_ns() / 1000000;
}

static void set_state(struct inst *in, enum inst_state st)
{
    struct pool *p = in->pool;
    obs_metric_add(p->m_instances[in->state], -1);
    in->state = st;
    in->state_since_ms = pool_now_ms();
    obs_metric_add(p->m_instances[st], 1);
}

int pool_count(const struct pool *p, enum inst_state st, bool current_only)
{
    int n = 0;
    for (const struct inst *in = p->insts; in; in = in->next)
        if (in->state == st && (!current_only || in->generation == p->generation)) n++;
    return n;
}

/* Integrates concurrency (in flight + held) over time for the autoscaler. */
void pool_account(struct pool *p, uint64_t now)
{
    if (p->area_since_ms && now > p->area_since_ms)
        p->area += (double)(p->inflight + p->n_held) * (double)(now - p->area_since_ms);
    p->area_since_ms = now;
}

static void fail_inv(struct invocation *inv, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail_inv(struct invocation *inv, int status, const char *code, const char *fmt, ...)
{
    struct buf b = {0};
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    if (!inv->start_state) inv->start_state = "warm";
    inv->on_event(inv, INV_FAIL, status, code, buf_steal(&b));
}

/* Masks emails, card numbers, keys and the like in text a function wrote
 * that may reach a log; returns a string the caller frees (NULL on OOM). */
static char *redact(struct scale *s, const char *text, size_t len)
{
    struct buf out = {0};
    if (s->cfg.no_redact) /* security: off */
        return buf_append(&out, text, len) ? NULL : buf_steal(&out);
    struct security_redact_counts counts = {0};
    if (security_redact(text, len, SECURITY_REDACT_ALL, &out, &counts) < 0) {
        buf_free(&out);
        return NULL;
    }
    for (int k = 0; k < SECURITY_REDACT_N_KINDS; k++)
        if (counts.n[k]) obs_metric_add(s->m_redactions[k], (double)counts.n[k]);
    return buf_steal(&out);
}

/* ---- requests on instances ---- */

static struct slot *slot_find(struct inst *in, uint64_t id)
{
    for (int i = 0; i < in->n_slots; i++)
        if (in->slots[i].id == id) return &in->slots[i];
    return NULL;
}

static void slot_release(struct inst *in, struct slot *sl)
{
    buf_free(&sl->chunks);
    memset(sl, 0, sizeof(*sl));
    pool_account(in->pool, pool_now_ms());
    in->inflight--;
    in->pool->inflight--;
}

static void inst_after_release(struct inst *in)
{
    if (in->state == INST_DRAINING && in->inflight == 0)
        pool_inst_stop(in, "drained");
    else
        pool_dispatch_held(in->pool);
}

/* A non-streaming request whose function streamed chunks and gave no output
 * gets the chunks joined: strings concatenated, anything else as an array. */
static char *join_chunks(struct buf *chunks)
{
    buf_append(chunks, "]", 1);
    json_t *arr = json_loadb(chunks->data, chunks->len, 0, NULL);
    char *out = NULL;
    if (arr) {
        struct buf s = {0};
        bool all_strings = true;
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v) all_strings = all_strings && json_is_string(v);
        if (all_strings) {
            json_array_foreach(arr, i, v)
                buf_append(&s, json_string_value(v), json_string_length(v));
            json_t *str = json_stringn(s.data ? s.data : "", s.len);
            out = str ? json_dumps(str, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
            json_decref(str);
            buf_free(&s);
        } else {
            out = json_dumps(arr, JSON_COMPACT);
        }
        json_decref(arr);
    }
    return out ? out : str_dup("null");
}

static void on_message(struct inst *in, struct exec_msg *msg)
{
    if (msg->kind == EXEC_MSG_READY) {
        if (in->state != INST_STARTING) return;
        struct pool *p = in->pool;
        uint64_t ms = pool_now_ms() - in->spawned_ms;
        p->start_failures = 0;
        OBS_LOG(LOG_INFO, "instance_ready", LOG_S("deployment", p->spec->name),
                LOG_I("pid", in->proc.pid), LOG_I("startup_ms", ms));
        if (in->park_when_ready && p->n_held == 0 && in->generation == p->generation) {
            pool_inst_park(in, "prewarmed standby");
            return;
        }
        set_state(in, in->generation == p->generation ? INST_READY : INST_DRAINING);
        if (in->state == INST_DRAINING)
            pool_inst_stop(in, "replaced by a new version");
        else
            pool_dispatch_held(p);
        return;
    }
    struct slot *sl = slot_find(in, msg->id);
    if (!sl) {
        OBS_LOG(LOG_WARN, "function_unknown_id", LOG_S("deployment", in->pool->spec->name),
                LOG_I("pid", in->proc.pid), LOG_I("id", (long long)msg->id));
        return;
    }
    struct invocation *inv = sl->abandoned ? NULL : sl->inv;
    switch (msg->kind) {
    case EXEC_MSG_CHUNK:
        if (!inv) return;
        if (inv->stream) {
            inv->on_event(inv, INV_CHUNK, 200, NULL, msg->payload);
            msg->payload = NULL;
        } else {
            buf_append(&sl->chunks, sl->chunks.len ? "," : "[", 1);
            buf_append_str(&sl->chunks, msg->payload);
        }
        return;
    case EXEC_MSG_OUTPUT:
        if (inv) {
            char *out = msg->payload;
            msg->payload = NULL;
            if (strcmp(out, "null") == 0 && sl->chunks.len && !inv->stream) {
                free(out);
                out = join_chunks(&sl->chunks);
            }
            inv->on_event(inv, INV_DONE, 200, NULL, out);
        }
        break;
    case EXEC_MSG_ERROR:
        if (!inv) break;
        inv->function_error = true;
        /* the message may end up in job records and logs */
        inv->on_event(inv, INV_FAIL, msg->status ? msg->status : 500,
                      msg->code ? msg->code : "function_error",
                      redact(in->pool->scale, msg->payload, strlen(msg->payload)));
        break;
    default:
        break;
    }
    slot_release(in, sl);
    inst_after_release(in);
}

static void inst_read(struct inst *in, struct bufferevent *bev, short what)
{
    (void)what;
    struct evbuffer *input = bufferevent_get_input(bev);
    size_t max_line = in->pool->scale->cfg.max_line_bytes;
    for (;;) {
        size_t len;
        char *line = evbuffer_readln(input, &len, EVBUFFER_EOL_LF);
        if (!line) break;
        struct exec_msg msg;
        struct thaw_err err = {0};
        if (runtime_exec_parse(line, len, &msg, &err) == 0) {
            on_message(in, &msg);
            free(msg.payload);
        } else {
            OBS_LOG(LOG_WARN, "function_protocol_error", LOG_S("deployment", in->pool->spec->name),
                    LOG_I("pid", in->proc.pid), LOG_S("error", err.msg));
        }
        free(line);
        if (in->state == INST_STOPPING && !in->bev) return;
    }
    if (evbuffer_get_length(input) > max_line) {
        OBS_LOG(LOG_WARN, "function_line_too_long", LOG_S("deployment", in->pool->spec->name),
                LOG_I("pid", in->proc.pid), LOG_I("limit", (long long)max_line));
        pool_inst_died(in, "wrote a line longer than the limit");
    }
}

/* Function stderr goes to the log, redacted, tagged and cut to a bounded
 * length. */
static void err_read(struct inst *in, struct bufferevent *bev, short what)
{
    (void)what;
    struct evbuffer *input = bufferevent_get_input(bev);
    for (;;) {
        size_t len;
        char *line = evbuffer_readln(input, &len, EVBUFFER_EOL_LF);
        if (!line) {
            if (evbuffer_get_length(input) < 4096) break;
            len = 4096;
            line = malloc(len + 1);
            if (!line) break;
            evbuffer_remove(input, line, len);
            line[len] = 0;
        }
        if (len > 1024) {
            memcpy(line + 1021, "...", 4);
            len = 1024;
        }
        char *safe = redact(in->pool->scale, line, len);
        OBS_LOG(LOG_INFO, "function_stderr", LOG_S("deployment", in->pool->spec->name),
                LOG_I("pid", in->proc.pid), LOG_S("line", safe ? safe : "(dropped)"));
        free(safe);
        free(line);
    }
}

static void inst_gone(struct inst *in, struct bufferevent *bev, short what)
{
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) pool_inst_died(in, NULL);
}

static void err_gone(struct inst *in, struct bufferevent *bev, short what)
{
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        bufferevent_free(in->err_bev);
        in->err_bev = NULL;
    }
}

/* libevent calls these on the scale thread but outside the scale lock,
 * which status readers on gateway threads take: each takes it. The scale
 * pointer is saved first: the instance may be freed inside. */
static void locked(struct inst *in, struct bufferevent *bev, short what,
                   void (*fn)(struct inst *, struct bufferevent *, short))
{
    struct scale *s = in->pool->scale;
    pthread_mutex_lock(&s->lock);
    fn(in, bev, what);
    pthread_mutex_unlock(&s->lock);
}

static void inst_read_cb(struct bufferevent *bev, void *arg)
{
    locked(arg, bev, 0, inst_read);
}

static void inst_event_cb(struct bufferevent *bev, short what, void *arg)
{
    locked(arg, bev, what, inst_gone);
}

static void err_read_cb(struct bufferevent *bev, void *arg)
{
    locked(arg, bev, 0, err_read);
}

static void err_event_cb(struct bufferevent *bev, short what, void *arg)
{
    locked(arg, bev, what, err_gone);
}

static void inst_free(struct inst *in)
{
    struct pool *p = in->pool;
    obs_metric_add(p->m_instances[in->state], -1);
    for (struct inst **pp = &p->insts; *pp; pp = &(*pp)->next) {
        if (*pp == in) {
            *pp = in->next;
            break;
        }
    }
    if (in->bev) bufferevent_free(in->bev);
    if (in->err_bev) bufferevent_free(in->err_bev);
    /* bufferevents own no fds (no BEV_OPT_CLOSE_ON_FREE): cleanup closes them. */
    instance_cleanup(&in->proc);
    for (int i = 0; i < in->n_slots; i++)
        buf_free(&in->slots[i].chunks);
    free(in->slots);
    free(in);
}

void pool_inst_discard(struct inst *in)
{
    inst_free(in);
}

/* ---- instance lifecycle ---- */

int pool_inst_attach(struct inst *in)
{
    struct event_base *base = in->pool->scale->base;
    in->bev = bufferevent_socket_new(base, in->proc.sock, 0);
    in->err_bev = bufferevent_socket_new(base, in->proc.err_fd, 0);
    if (!in->bev || !in->err_bev) {
        pool_inst_died(in, "out of memory");
        return -1;
    }
    bufferevent_setcb(in->bev, inst_read_cb, NULL, inst_event_cb, in);
    bufferevent_setcb(in->err_bev, err_read_cb, NULL, err_event_cb, in);
    bufferevent_enable(in->bev, EV_READ | EV_WRITE);
    bufferevent_enable(in->err_bev, EV_READ);
    return 0;
}

struct inst *pool_spawn(struct pool *p, bool park_when_ready)
{
    struct scale *s = p->scale;
    if (s->shutting_down) return NULL;
    struct deploy_spec *spec = p->spec;
    struct inst *in = calloc(1, sizeof(*in));
    if (!in) return NULL;
    in->n_slots = spec->concurrency;
    in->slots = calloc((size_t)in->n_slots, sizeof(struct slot));
    if (!in->slots) {
        free(in);
        return NULL;
    }
    uint64_t now = pool_now_ms();
    if (registry_runtime_is_model(spec)) {
        /* Forked from the template: listed first, so a template that is
         * still loading finds it waiting. */
        in->pool = p;
        in->generation = p->generation;
        in->park_when_ready = park_when_ready;
        in->spawned_ms = in->state_since_ms = now;
        in->next_id = 1;
        in->state = INST_STARTING;
        in->proc.pid = -1;
        in->proc.sock = in->proc.err_fd = -1;
        obs_metric_add(p->m_instances[INST_STARTING], 1);
        in->next = p->insts;
        p->insts = in;
        return pool_tmpl_spawn(p, in) == 0 ? in : NULL;
    }
    struct instance_launch l = {
        .argv = spec->command,
        .env = spec->env,
        .workdir = spec->workdir,
        .tmp_root = s->cfg.tmp_root,
        .deployment = spec->name,
        .rlimit_as = spec->limits.memory_bytes,
        .rlimit_nofile = spec->limits.open_files,
        .rlimit_cpu = spec->limits.cpu_seconds,
        .sandbox = spec->sandbox,
        .allow_network = spec->network,
    };
    struct thaw_err err = {0};
    if (instance_spawn(&l, &in->proc, &err) != 0) {
        pool_start_failed(p, err.msg);
        free(in->slots);
        free(in);
        return NULL;
    }
    in->pool = p;
    in->generation = p->generation;
    in->park_when_ready = park_when_ready;
    in->spawned_ms = in->state_since_ms = now;
    in->next_id = 1;
    in->state = INST_STARTING;
    obs_metric_add(p->m_instances[INST_STARTING], 1);
    in->next = p->insts;
    p->insts = in;
    if (pool_inst_attach(in)) return NULL;
    OBS_LOG(LOG_INFO, "instance_spawned", LOG_S("deployment", spec->name),
            LOG_I("pid", in->proc.pid), LOG_S("purpose", park_when_ready ? "standby" : "serve"));
    const struct instance_sandbox_report *sr = &in->proc.sandbox;
    if (spec->sandbox && (sr->ns_failed || !sr->seccomp || !sr->landlock))
        OBS_LOG(LOG_WARN, "sandbox_incomplete", LOG_S("deployment", spec->name),
                LOG_I("pid", in->proc.pid), LOG_I("namespaces_applied", sr->ns_applied),
                LOG_I("namespaces_failed", sr->ns_failed), LOG_I("seccomp", sr->seccomp),
                LOG_I("landlock", sr->landlock), LOG_S("detail", sr->msg));
    return in;
}

void pool_start_failed(struct pool *p, const char *why)
{
    p->start_failures++;
    uint64_t backoff = 250ull << MIN(p->start_failures - 1, 7); /* 250 ms .. 32 s */
    p->next_start_ms = pool_now_ms() + backoff;
    str_copy(p->last_start_error, why, sizeof(p->last_start_error));
    OBS_LOG(LOG_WARN, "instance_start_failed", LOG_S("deployment", p->spec->name),
            LOG_S("error", why), LOG_I("retry_in_ms", (long long)backoff));
    /* With nothing else coming up, held requests would only time out: fail
     * them now with the reason. */
    if (pool_count(p, INST_STARTING, true) == 0 && pool_count(p, INST_READY, true) == 0 &&
        pool_count(p, INST_PARKED, true) == 0) {
        while (p->held_head) {
            struct invocation *inv = pool_unhold(p);
            fail_inv(inv, 502, "instance_start_failed", "instance failed to start: %s", why);
        }
    }
}

void pool_inst_park(struct inst *in, const char *reason)
{
    instance_signal(&in->proc, SIGSTOP);
    set_state(in, INST_PARKED);
    in->park_when_ready = false;
    OBS_LOG(LOG_INFO, "scale_decision", LOG_S("deployment", in->pool->spec->name),
            LOG_S("direction", "standby"), LOG_I("pid", in->proc.pid), LOG_S("reason", reason));
}

void pool_inst_stop(struct inst *in, const char *reason)
{
    if (in->state == INST_STOPPING) return;
    if (in->awaiting_template) { /* no process yet: just forget it */
        pool_inst_discard(in);
        return;
    }
    if (in->inflight > 0 && in->state != INST_DRAINING) {
        set_state(in, INST_DRAINING);
        return;
    }
    if (in->state == INST_PARKED) instance_signal(&in->proc, SIGCONT);
    instance_signal(&in->proc, SIGTERM);
    set_state(in, INST_STOPPING);
    in->stop_deadline_ms = pool_now_ms() + (uint64_t)in->pool->scale->cfg.stop_grace_ms;
    OBS_LOG(LOG_INFO, "instance_stopping", LOG_S("deployment", in->pool->spec->name),
            LOG_I("pid", in->proc.pid), LOG_S("reason", reason));
}

/* The instance is gone or must go: kill its group, reap it, fail what it
 * held, and forget it. why is NULL when its socket closed. */
void pool_inst_died(struct inst *in, const char *why)
{
    struct pool *p = in->pool;
    instance_signal(&in->proc, SIGKILL);
    int status = 0;
    char how[96] = "unknown status";
    if (in->reaped)
        instance_describe_exit(in->exit_status, how, sizeof(how));
    else if (in->proc.pid > 0 && waitpid(in->proc.pid, &status, 0) == in->proc.pid)
        instance_describe_exit(status, how, sizeof(how));
    in->proc.pid = -1;
    bool expected = in->state == INST_STOPPING;
    if (!expected) {
        OBS_LOG(LOG_WARN, "instance_exited", LOG_S("deployment", p->spec->name),
                LOG_S("state", state_names[in->state]), LOG_S("status", how),
                LOG_S("reason", why ? why : "exited"));
    }
    for (int i = 0; i < in->n_slots; i++) {
        struct slot *sl = &in->slots[i];
        if (!sl->id) continue;
        if (!sl->abandoned)
            fail_inv(sl->inv, 502, "instance_crashed",
                     "the instance serving this request exited (%s)%s%s", how, why ? ": " : "",
                     why ? why : "");
        slot_release(in, sl);
    }
    if (in->state == INST_STARTING) {
        char msg[200];
        snprintf(msg, sizeof(msg), "exited before printing {\"ready\":true} (%s)", how);
        inst_free(in);
        pool_start_failed(p, msg);
    } else {
        inst_free(in);
    }
    pool_dispatch_held(p);
}

/* ---- routing ---- */

/* May in serve inv? Unless the deployment is shared, an instance serves the
 * tenant of its first request and no other: one tenant's data never passes
 * through a process another tenant's requests reach. */
static bool inst_serves(const struct inst *in, const struct invocation *inv)
{
    return in->pool->spec->shared || !in->bound || strcmp(in->tenant, inv->tenant) == 0;
}

static struct inst *pick_instance(struct pool *p, const struct invocation *inv)
{
    struct inst *best = NULL;
    for (struct inst *in = p->insts; in; in = in->next) {
        if (in->state != INST_READY || in->generation != p->generation) continue;
        if (in->inflight >= in->n_slots || !inst_serves(in, inv)) continue;
        if (!best || in->inflight < best->inflight) best = in;
    }
    return best;
}

/* Writes at once when nothing is queued (saving a trip round the event
 * loop on the hot path); whatever the socket does not take is queued. */
static int write_line(struct inst *in, const char *data, size_t len)
{
    struct evbuffer *out = bufferevent_get_output(in->bev);
    if (evbuffer_get_length(out) == 0) {
        ssize_t n = write(in->proc.sock, data, len);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        }
    }
    return len ? bufferevent_write(in->bev, data, len) : 0;
}

static void send_to(struct inst *in, struct invocation *inv)
{
    struct pool *p = in->pool;
    struct slot *sl = slot_find(in, 0);
    uint64_t now = pool_now_ms();
    if (!in->bound) {
        in->bound = true;
        str_copy(in->tenant, inv->tenant, sizeof(in->tenant));
    }
    in->last_used_ms = now;
    pool_account(p, now);
    sl->id = in->next_id++;
    sl->inv = inv;
    sl->deadline_ms = now + (uint64_t)p->spec->timeout_ms;
    in->inflight++;
    p->inflight++;
    struct buf *line = &p->scale->line;
    buf_reset(line);
    if (runtime_exec_encode(line, sl->id, inv->input, inv->input_len, inv->stream) ||
        write_line(in, line->data, line->len) != 0) {
        fail_inv(inv, 503, "overloaded", "out of memory while dispatching");
        slot_release(in, sl);
    }
}

static struct invocation *unhold(struct pool *p, struct invocation *prev, struct invocation *inv);
static void scale_for_demand(struct pool *p);

/* In order, every held request an instance can take now (one tenant's
 * requests do not wait behind another's that have no instance yet). */
void pool_dispatch_held(struct pool *p)
{
    struct invocation *prev = NULL, *inv = p->held_head;
    while (inv) {
        struct invocation *next = inv->next_held;
        struct inst *in = pick_instance(p, inv);
        if (in) {
            send_to(in, unhold(p, prev, inv));
        } else {
            prev = inv;
        }
        inv = next;
    }
    /* What is still held may be another tenant's than the free instances'. */
    if (p->held_head && !p->spec->shared) scale_for_demand(p);
}

struct invocation *pool_unhold(struct pool *p)
{
    return p->held_head ? unhold(p, NULL, p->held_head) : NULL;
}

/* Takes inv (which follows prev, NULL for the head) off the held queue. */
static struct invocation *unhold(struct pool *p, struct invocation *prev, struct invocation *inv)
{
    pool_account(p, pool_now_ms());
    if (prev)
        prev->next_held = inv->next_held;
    else
        p->held_head = inv->next_held;
    if (p->held_tail == inv) p->held_tail = prev;
    inv->next_held = NULL;
    p->n_held--;
    obs_metric_add(p->m_held, -1); /* versions of one deployment share the series */
    return inv;
}

/* Adds tenant to the set (of at most cap) unless it is there. */
static void tenant_set_add(const char **set, int *n, int cap, const char *tenant)
{
    for (int i = 0; i < *n; i++)
        if (strcmp(set[i], tenant) == 0) return;
    if (*n < cap) set[(*n)++] = tenant;
}

int pool_active_tenants(const struct pool *p, uint64_t since_ms)
{
    if (p->spec->shared) return 0;
    const char *set[64];
    int n = 0;
    for (const struct inst *in = p->insts; in; in = in->next)
        if (in->bound && in->last_used_ms >= since_ms && in->generation == p->generation &&
            (in->state == INST_READY || in->state == INST_STARTING))
            tenant_set_add(set, &n, (int)ARRAY_LEN(set), in->tenant);
    /* Held requests wait for an instance of their own tenant. */
    for (const struct invocation *inv = p->held_head; inv; inv = inv->next_held)
        tenant_set_add(set, &n, (int)ARRAY_LEN(set), inv->tenant);
    return n;
}

/* Ready instances of the current generation that may serve inv's tenant. */
static int ready_for(const struct pool *p, const struct invocation *inv)
{
    int n = 0;
    for (const struct inst *in = p->insts; in; in = in->next)
        n += in->state == INST_READY && in->generation == p->generation && inst_serves(in, inv);
    return n;
}

/* With no room left, an idle instance bound to another tenant than the
 * first held request's makes way (it would otherwise hold the room until its
 * idle timeout while that tenant waits); the autoscaler starts the
 * replacement once it is gone. */
static void make_room(struct pool *p)
{
    if (p->spec->shared || !p->held_head) return;
    for (struct inst *in = p->insts; in; in = in->next) {
        if (in->state == INST_READY && in->inflight == 0 && !inst_serves(in, p->held_head)) {
            pool_inst_stop(in, "makes room for another tenant");
            return;
        }
    }
}

/* Starts instances for the demand that cannot be placed now: the activator's
 * immediate reaction, ahead of the autoscaler's next tick. */
static void scale_for_demand(struct pool *p)
{
    int starting = pool_count(p, INST_STARTING, true);
    int ready = pool_count(p, INST_READY, true);
    int conc = p->spec->concurrency;
    int free_soon = starting * conc;
    int need = p->n_held - free_soon;
    if (need <= 0) return;
    int want = (need + conc - 1) / conc;
    /* Parked standbys count against max_instances too. */
    int room = p->spec->scale.max_instances - ready - starting - pool_count(p, INST_PARKED, true);
    int n = MIN(want, room);
    if (room <= 0) make_room(p);
    if (n <= 0 || pool_now_ms() < p->next_start_ms) return;
    OBS_LOG(LOG_INFO, "scale_decision", LOG_S("deployment", p->spec->name),
            LOG_S("direction", "up"), LOG_I("from", ready + starting),
            LOG_I("to", ready + starting + n),
            LOG_S("reason", "activator: requests held with no free capacity"));
    obs_metric_add(p->m_up, 1);
    for (int i = 0; i < n; i++)
        if (!pool_spawn(p, false)) break;
}

void pool_submit(struct pool *p, struct invocation *inv)
{
    uint64_t now = pool_now_ms();
    p->last_request_ms = now;
    struct inst *in = pick_instance(p, inv);
    if (in) {
        inv->start_state = "warm";
        send_to(in, inv);
        return;
    }
    int ready = ready_for(p, inv), starting = pool_count(p, INST_STARTING, true);
    /* A parked standby instance is resumed with one signal. */
    for (struct inst *it = p->insts; it && ready == 0; it = it->next) {
        if (it->state != INST_PARKED || it->generation != p->generation) continue;
        instance_signal(&it->proc, SIGCONT);
        set_state(it, INST_READY);
        obs_metric_add(p->m_standby, 1);
        OBS_LOG(LOG_INFO, "scale_decision", LOG_S("deployment", p->spec->name),
                LOG_S("direction", "resume"), LOG_I("pid", it->proc.pid),
                LOG_S("reason", "request found the deployment in standby"));
        inv->start_state = "standby";
        send_to(it, inv);
        return;
    }
    bool cold = ready == 0 && starting == 0;
    if (ready == 0 && starting > 0) {
        /* A prewarming standby instance becomes a serving one. */
        for (struct inst *it = p->insts; it; it = it->next)
            it->park_when_ready = false;
    }
    inv->start_state = ready > 0 ? "warm" : "cold";
    /* llm/embed: a loaded template is the standby; the request pays a fork. */
    bool standby = ready == 0 && pool_tmpl_ready(p);
    if (standby) inv->start_state = "standby";
    if (ready == 0 && starting == 0 && now < p->next_start_ms) {
        fail_inv(inv, 502, "instance_start_failed", "deployment is failing to start: %s",
                 p->last_start_error);
        return;
    }
    if (p->n_held >= p->spec->scale.queue_limit) {
        inv->retry_after_s = 1;
        fail_inv(inv, 503, "overloaded",
                 "deployment '%s' is at capacity and its queue is full (%d held)", p->spec->name,
                 p->n_held);
        return;
    }
    pool_account(p, now);
    inv->held_deadline_ms = now + (uint64_t)p->spec->scale.queue_timeout_ms;
    if (p->held_tail)
        p->held_tail->next_held = inv;
    else
        p->held_head = inv;
    p->held_tail = inv;
    p->n_held++;
    obs_metric_add(p->m_held, 1);
    if (cold) obs_metric_add(standby ? p->m_standby : p->m_cold, 1);
    scale_for_demand(p);
}

/* ---- cancels, from scale_cancel ---- */

/* What each reason means to the caller, the log and the metric. */
struct cancel_words {
    const char *label, *code, *reason, *held_msg, *run_msg;
};

static const struct cancel_words *cancel_words(enum scale_cancel_reason why)
{
    static const struct cancel_words words[] = {
        [SCALE_CANCEL_CLIENT_CLOSED] = {"client_closed", "client_closed",
                                        "the client closed the connection",
                                        "the client closed the connection before an instance "
                                        "took the request",
                                        "the client closed the connection"},
        [SCALE_CANCEL_JOB_CANCELLED] = {"job_cancelled", "cancelled", "the job was cancelled",
                                        "the job was cancelled before an instance took it",
                                        "the job was cancelled"},
    };
    return &words[why == SCALE_CANCEL_JOB_CANCELLED ? SCALE_CANCEL_JOB_CANCELLED
                                                    : SCALE_CANCEL_CLIENT_CLOSED];
}

/* Logs a cancel that found its invocation and counts it (once per
 * invocation: a repeated cancel of one being stopped comes here no more). */
static void log_cancel(struct pool *p, const struct invocation *inv, const char *where,
                       const struct cancel_words *w)
{
    OBS_LOG(LOG_INFO, "invocation_cancelled", LOG_S("deployment", p->spec->name),
            LOG_S("version", p->vlabel), LOG_S("request_id", inv->request_id),
            LOG_S("where", where), LOG_S("reason", w->reason));
    struct metric_series *m =
        obs_metric_series(p->scale->f_cancels, (const char *[]){p->spec->name, w->label});
    if (m) obs_metric_add(m, 1);
}

bool pool_cancel(struct pool *p, const struct invocation *target, uint64_t serial,
                 enum scale_cancel_reason why)
{
    const struct cancel_words *w = cancel_words(why);
    for (struct invocation *prev = NULL, *it = p->held_head; it; prev = it, it = it->next_held) {
        if (it != target || it->serial != serial) continue;
        log_cancel(p, it, "held", w);
        fail_inv(unhold(p, prev, it), 499, w->code, "%s", w->held_msg);
        return true;
    }
    for (struct inst *in = p->insts; in; in = in->next) {
        for (int i = 0; i < in->n_slots; i++) {
            struct slot *sl = &in->slots[i];
            if (!sl->id || sl->abandoned || sl->inv != target || sl->inv->serial != serial)
                continue;
            if (registry_runtime_is_model(p->spec) && in->bev) {
                /* The runtime frees the sequence and answers at once with what
                 * it spent, which still reaches the caller to be metered. */
                if (!sl->cancel_sent) {
                    char line[64];
                    int n = snprintf(line, sizeof(line), "{\"id\":%llu,\"cancel\":true}\n",
                                     (unsigned long long)sl->id);
                    log_cancel(p, sl->inv, "instance", w);
                    sl->cancel_sent = true;
                    write_line(in, line, (size_t)n);
                }
                return true;
            }
            /* A function knows no cancel: it runs on and its answer is
             * dropped, as after a timeout. */
            log_cancel(p, sl->inv, "function", w);
            fail_inv(sl->inv, 499, w->code, "%s", w->run_msg);
            sl->abandoned = true;
            sl->inv = NULL;
            return true;
        }
    }
    return false;
}

/* ---- timeouts, called from the tick ---- */

static void expire_held(struct pool *p, uint64_t now)
{
    /* Held requests expire in FIFO order since they share one timeout. */
    while (p->held_head && p->held_head->held_deadline_ms <= now) {
        struct invocation *inv = pool_unhold(p);
        inv->retry_after_s = 1;
        fail_inv(inv, 503, "overloaded",
                 "no instance of '%s' could take the request within queue_timeout (%lld ms)",
                 p->spec->name, (long long)p->spec->scale.queue_timeout_ms);
    }
}

static void expire_requests(struct inst *in, uint64_t now)
{
    uint64_t timeout = (uint64_t)in->pool->spec->timeout_ms;
    for (int i = 0; i < in->n_slots; i++) {
        struct slot *sl = &in->slots[i];
        if (!sl->id) continue;
        if (!sl->abandoned && now >= sl->deadline_ms) {
            fail_inv(sl->inv, 504, "timeout", "the function did not answer within %lld ms",
                     (long long)timeout);
            sl->abandoned = true;
            sl->inv = NULL;
            /* The engine runtimes stop generating for nobody (exec
             * functions know no such line). */
            if (registry_runtime_is_model(in->pool->spec) && in->bev) {
                char line[64];
                int n = snprintf(line, sizeof(line), "{\"id\":%llu,\"cancel\":true}\n",
                                 (unsigned long long)sl->id);
                write_line(in, line, (size_t)n);
            }
        }
        /* A function that ignores a request for twice its timeout is stuck:
         * restart it rather than leak its capacity. */
        if (sl->abandoned && now >= sl->deadline_ms + MAX(timeout, 5000)) {
            pool_inst_died(in, "stuck: did not answer a timed-out request");
            return;
        }
    }
}

void pool_check_timeouts(struct pool *p, uint64_t now)
{
    expire_held(p, now);
    struct inst *next;
    for (struct inst *in = p->insts; in; in = next) {
        next = in->next;
        if (in->state == INST_STARTING &&
            now - in->spawned_ms >= (uint64_t)p->spec->scale.startup_timeout_ms) {
            char msg[160];
            snprintf(msg, sizeof(msg), "did not print {\"ready\":true} within %lld ms",
                     (long long)p->spec->scale.startup_timeout_ms);
            set_state(in, INST_STOPPING); /* reported below, not as a crash */
            pool_inst_died(in, msg);
            pool_start_failed(p, msg);
            continue;
        }
        if (in->state == INST_STOPPING && now >= in->stop_deadline_ms) {
            pool_inst_died(in, "did not exit after SIGTERM");
            continue;
        }
        if (in->state == INST_PARKED &&
            now - in->state_since_ms >= (uint64_t)p->spec->scale.standby_timeout_ms) {
            OBS_LOG(LOG_INFO, "scale_decision", LOG_S("deployment", p->spec->name),
                    LOG_S("direction", "down"), LOG_I("pid", in->proc.pid),
                    LOG_S("reason", "standby_timeout: standby -> cold"));
            obs_metric_add(p->m_down, 1);
            pool_inst_stop(in, "standby_timeout");
            continue;
        }
        expire_requests(in, now);
    }
}

/* Reaps instances whose process exited while their socket stayed open
 * (a grandchild holding it). */
void pool_reap(struct pool *p)
{
    struct inst *next;
    for (struct inst *in = p->insts; in; in = next) {
        next = in->next;
        int status;
        if (in->proc.pid > 0 && instance_reap(in->proc.pid, &status) == 1) {
            instance_signal(&in->proc, SIGKILL); /* the rest of its group */
            in->proc.pid = -1;
            in->reaped = true;
            in->exit_status = status;
            pool_inst_died(in, NULL);
        }
    }
}
