/* The scale object: its inbox from other threads, the periodic tick that
 * runs timeouts and the autoscaler, deployment apply/remove, status and
 * shutdown. */
#include "scale/pool.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static struct pool *pool_find(struct scale *s, const char *name)
{
    for (struct pool *p = s->pools; p; p = p->next)
        if (!p->removed && strcmp(p->spec->name, name) == 0) return p;
    return NULL;
}

static struct metric_series *series2(struct metric_family *f, const char *a, const char *b)
{
    return obs_metric_series(f, (const char *[]){a, b});
}

static struct pool *pool_new(struct scale *s, struct deploy_spec *spec)
{
    struct pool *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->scale = s;
    p->spec = spec;
    const char *n = spec->name;
    for (int st = 0; st < INST_N_STATES; st++)
        p->m_instances[st] = series2(s->f_instances, n, pool_state_name((enum inst_state)st));
    p->m_held = obs_metric_series(s->f_held, (const char *[]){n});
    p->m_cold = series2(s->f_cold, n, "cold");
    p->m_standby = series2(s->f_cold, n, "standby");
    p->m_up = series2(s->f_decisions, n, "up");
    p->m_down = series2(s->f_decisions, n, "down");
    p->area_since_ms = pool_now_ms();
    p->next = s->pools;
    s->pools = p;
    return p;
}

static void pool_free(struct scale *s, struct pool *p)
{
    for (struct pool **pp = &s->pools; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    const char *name = p->spec->name;
    /* Another pool of the same name (re-created) shares the series. */
    bool shared = false;
    for (struct pool *q = s->pools; q; q = q->next)
        shared |= strcmp(q->spec->name, name) == 0;
    if (!shared) {
        obs_metric_drop(s->f_instances, name);
        obs_metric_drop(s->f_held, name);
    }
    registry_spec_free(p->spec);
    free(p);
}

/* ---- the autoscaler ---- */

static double window_avg(const struct pool *p, int64_t window_ms, int64_t tick_ms)
{
    uint64_t n = (uint64_t)((window_ms + tick_ms - 1) / tick_ms);
    if (n > SAMPLE_RING) n = SAMPLE_RING;
    if (n > p->n_samples) n = p->n_samples;
    if (n == 0) return 0;
    double sum = 0;
    for (uint64_t i = 0; i < n; i++)
        sum += p->samples[(p->n_samples - 1 - i) % SAMPLE_RING];
    return sum / (double)n;
}

static void log_decision(struct pool *p, const char *direction, int from, int to, const char *why)
{
    OBS_LOG(LOG_INFO, "scale_decision", LOG_S("deployment", p->spec->name),
            LOG_S("direction", direction), LOG_I("from", from), LOG_I("to", to),
            LOG_S("reason", why));
    obs_metric_add(strcmp(direction, "up") == 0 ? p->m_up : p->m_down, 1);
}

/* Stops surplus instances, idle ones first; at zero, parks one as standby. */
static void scale_down(struct pool *p, int surplus, bool to_zero)
{
    /* llm/embed park nothing: their standby is the template. */
    bool want_standby = to_zero && p->spec->scale.standby_timeout_ms > 0 &&
                        pool_count(p, INST_PARKED, true) == 0 &&
                        !registry_runtime_is_model(p->spec);
    for (int pass = 0; pass < 3 && surplus > 0; pass++) {
        for (struct inst *in = p->insts, *next; in && surplus > 0; in = next) {
            next = in->next;
            if (in->generation != p->generation) continue;
            bool match = pass == 0   ? in->state == INST_STARTING && in->park_when_ready
                         : pass == 1 ? in->state == INST_READY && in->inflight == 0
                                     : in->state == INST_READY || in->state == INST_STARTING;
            if (!match) continue;
            surplus--;
            if (want_standby && in->state == INST_READY && in->inflight == 0 && surplus == 0) {
                pool_inst_park(in, "idle_timeout: warm -> standby");
                want_standby = false;
            } else {
                pool_inst_stop(in, to_zero ? "idle_timeout" : "autoscaler: surplus");
            }
        }
    }
}

static void autoscale(struct pool *p, uint64_t now, int64_t tick_ms)
{
    pool_account(p, now);
    p->samples[p->n_samples % SAMPLE_RING] = p->area / (double)tick_ms;
    p->n_samples++;
    p->area = 0;
    const struct deploy_scale *cfg = &p->spec->scale;
    int ready = pool_count(p, INST_READY, true), starting = pool_count(p, INST_STARTING, true);
    int current = ready + starting;
    struct autoscale_input in = {
        .stable_avg = window_avg(p, cfg->stable_window_ms, tick_ms),
        .panic_avg = window_avg(p, cfg->panic_window_ms, tick_ms),
        .current = current,
        .ready = ready,
        .now_ms = now,
        .last_request_ms = p->last_request_ms,
        .demand = p->inflight + p->n_held,
    };
    const char *why;
    bool was_panicking = p->mem.panicking;
    p->desired = autoscale_decide(cfg, p->spec->concurrency, &in, &p->mem, &why);
    if (p->mem.panicking != was_panicking)
        OBS_LOG(LOG_INFO, "scale_panic", LOG_S("deployment", p->spec->name),
                LOG_I("panicking", p->mem.panicking), LOG_D("panic_avg", in.panic_avg));
    /* A prewarming standby instance counts as current but not as serving. */
    int prewarm = 0;
    for (struct inst *i = p->insts; i; i = i->next)
        prewarm +=
            i->state == INST_STARTING && i->park_when_ready && i->generation == p->generation;
    int serving = current - prewarm;
    if (p->desired > serving) {
        /* After failed starts only held requests (the activator) retry. */
        if (now < p->next_start_ms || p->start_failures > 0) return;
        int n = p->desired - serving;
        for (struct inst *i = p->insts; i && n > 0; i = i->next) {
            if (i->state == INST_STARTING && i->park_when_ready) {
                i->park_when_ready = false;
                n--;
            }
        }
        /* Never past max_instances, parked standbys included. */
        n = MIN(n, cfg->max_instances - current - pool_count(p, INST_PARKED, true));
        if (n > 0) log_decision(p, "up", serving, p->desired, why);
        for (int i = 0; i < n; i++)
            if (!pool_spawn(p, false)) break;
    } else if (p->desired < serving && !p->mem.panicking) {
        log_decision(p, "down", serving, p->desired, why);
        scale_down(p, serving - p->desired, p->desired == 0);
    }
}

/* A freshly deployed (or restarted) deployment with min_instances 0 starts
 * one standby instance, so its first request pays a resume, not a cold
 * start. Once that standby has timed out the deployment stays cold. */
static void keep_standby(struct pool *p, uint64_t now)
{
    if (p->spec->scale.standby_timeout_ms <= 0 || p->spec->scale.min_instances > 0) return;
    /* llm/embed: the template (their standby) starts on the first demand,
     * not at deploy time: it maps the whole model. */
    if (registry_runtime_is_model(p->spec)) return;
    if (p->insts || now < p->next_start_ms || p->prewarmed) return;
    p->prewarmed = true;
    pool_spawn(p, true);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct scale *s = arg;
    pthread_mutex_lock(&s->lock);
    uint64_t now = pool_now_ms();
    struct pool *next;
    for (struct pool *p = s->pools; p; p = next) {
        next = p->next;
        pool_reap(p);
        pool_tmpl_tick(p, now);
        pool_check_timeouts(p, now);
        if (!p->removed && !s->shutting_down) {
            autoscale(p, now, s->cfg.tick_ms);
            keep_standby(p, now);
        }
        if (p->removed && !p->insts && !p->tmpl) pool_free(s, p);
    }
    pool_reap_orphans(s);
    if (s->shutting_down && !s->pools && s->shutdown_done) {
        void (*done)(void *) = s->shutdown_done;
        s->shutdown_done = NULL;
        pthread_mutex_unlock(&s->lock);
        done(s->shutdown_arg);
        return;
    }
    pthread_mutex_unlock(&s->lock);
}

static void sigchld_cb(evutil_socket_t fd, short what, void *arg)
{
    struct scale *s = arg;
    pthread_mutex_lock(&s->lock);
    uint64_t now = pool_now_ms();
    for (struct pool *p = s->pools; p; p = p->next) {
        pool_reap(p);
        pool_tmpl_tick(p, now);
    }
    pool_reap_orphans(s);
    pthread_mutex_unlock(&s->lock);
}

/* ---- deployment changes ---- */

static void stop_all(struct pool *p, const char *why)
{
    pool_tmpl_stop(p, why);
    for (struct inst *in = p->insts, *next; in; in = next) {
        next = in->next;
        pool_inst_stop(in, why);
    }
}

static void fail_held(struct pool *p, int status, const char *code, const char *msg)
{
    while (p->held_head) {
        struct invocation *inv = pool_unhold(p);
        if (!inv->start_state) inv->start_state = "cold";
        inv->on_event(inv, INV_FAIL, status, code, str_dup(msg));
    }
}

static void do_apply(struct scale *s, struct deploy_spec *spec)
{
    struct pool *p = pool_find(s, spec->name);
    if (!p) {
        p = pool_new(s, spec);
        if (!p) {
            registry_spec_free(spec);
            return;
        }
        OBS_LOG(LOG_INFO, "deployment_applied", LOG_S("deployment", spec->name),
                LOG_S("change", "created"));
    } else {
        /* New instances use the new spec; old ones drain. */
        registry_spec_free(p->spec);
        p->spec = spec;
        p->generation++;
        p->start_failures = 0;
        p->next_start_ms = 0;
        p->prewarmed = false;
        stop_all(p, "replaced by a new version");
        OBS_LOG(LOG_INFO, "deployment_applied", LOG_S("deployment", spec->name),
                LOG_S("change", "updated"));
    }
    for (int i = pool_count(p, INST_READY, true); i < spec->scale.min_instances; i++)
        if (!pool_spawn(p, false)) break;
    pool_dispatch_held(p);
    keep_standby(p, pool_now_ms());
}

static void do_remove(struct scale *s, const char *name)
{
    struct pool *p = pool_find(s, name);
    if (!p) return;
    p->removed = true;
    fail_held(p, 404, "not_found", "the deployment was deleted");
    stop_all(p, "deployment deleted");
    OBS_LOG(LOG_INFO, "deployment_removed", LOG_S("deployment", name));
}

static void do_submit(struct scale *s, struct invocation *inv)
{
    struct pool *p = pool_find(s, inv->deployment);
    if (s->shutting_down) {
        inv->start_state = "warm";
        inv->retry_after_s = 1;
        inv->on_event(inv, INV_FAIL, 503, "shutting_down", str_dup("the node is shutting down"));
        return;
    }
    if (!p) {
        struct buf b = {0};
        buf_printf(&b, "deployment '%s' not found", inv->deployment);
        inv->start_state = "cold";
        inv->on_event(inv, INV_FAIL, 404, "not_found", buf_steal(&b));
        return;
    }
    pool_submit(p, inv);
}

static void do_shutdown(struct scale *s, void (*done)(void *), void *arg)
{
    s->shutting_down = true;
    s->shutdown_done = done;
    s->shutdown_arg = arg;
    for (struct pool *p = s->pools; p; p = p->next) {
        p->removed = true;
        fail_held(p, 503, "shutting_down", "the node is shutting down");
        stop_all(p, "node shutting down");
    }
}

static void inbox_cb(evutil_socket_t fd, short what, void *arg)
{
    struct scale *s = arg;
    pthread_mutex_lock(&s->inbox_lock);
    struct inbox_msg *m = s->inbox_head;
    s->inbox_head = s->inbox_tail = NULL;
    pthread_mutex_unlock(&s->inbox_lock);
    pthread_mutex_lock(&s->lock);
    while (m) {
        struct inbox_msg *next = m->next;
        switch (m->type) {
        case MSG_SUBMIT:
            do_submit(s, m->inv);
            break;
        case MSG_APPLY:
            do_apply(s, m->spec);
            break;
        case MSG_REMOVE:
            do_remove(s, m->name);
            break;
        case MSG_SHUTDOWN:
            do_shutdown(s, m->done, m->done_arg);
            break;
        }
        free(m);
        m = next;
    }
    pthread_mutex_unlock(&s->lock);
}

static void post(struct scale *s, struct inbox_msg *m)
{
    pthread_mutex_lock(&s->inbox_lock);
    if (s->inbox_tail)
        s->inbox_tail->next = m;
    else
        s->inbox_head = m;
    s->inbox_tail = m;
    pthread_mutex_unlock(&s->inbox_lock);
    event_active(s->inbox_ev, EV_READ, 0);
}

void scale_submit(struct scale *s, struct invocation *inv)
{
    /* The message is embedded-free: one allocation per request is the price
     * of a clean hand-over; it is freed on the scale thread. */
    struct inbox_msg *m = calloc(1, sizeof(*m));
    if (!m) {
        inv->start_state = "warm";
        inv->on_event(inv, INV_FAIL, 503, "overloaded", str_dup("out of memory"));
        return;
    }
    m->type = MSG_SUBMIT;
    m->inv = inv;
    post(s, m);
}

void scale_apply(struct scale *s, struct deploy_spec *spec)
{
    struct inbox_msg *m = calloc(1, sizeof(*m));
    if (!m) {
        registry_spec_free(spec);
        return;
    }
    m->type = MSG_APPLY;
    m->spec = spec;
    post(s, m);
}

void scale_remove(struct scale *s, const char *name)
{
    struct inbox_msg *m = calloc(1, sizeof(*m));
    if (!m) return;
    m->type = MSG_REMOVE;
    str_copy(m->name, name, sizeof(m->name));
    post(s, m);
}

void scale_shutdown(struct scale *s, void (*done)(void *arg), void *arg)
{
    struct inbox_msg *m = calloc(1, sizeof(*m));
    if (!m) return;
    m->type = MSG_SHUTDOWN;
    m->done = done;
    m->done_arg = arg;
    post(s, m);
}

/* ---- status ---- */

static json_t *pool_status(const struct pool *p)
{
    json_t *inst = json_object();
    int total = 0;
    for (int st = 0; st < INST_N_STATES; st++) {
        int n = pool_count(p, (enum inst_state)st, false);
        total += n;
        json_object_set_new(inst, pool_state_name((enum inst_state)st), json_integer(n));
    }
    int ready = pool_count(p, INST_READY, false), parked = pool_count(p, INST_PARKED, false);
    bool tmpl = pool_tmpl_ready(p);
    const char *state = ready > 0 ? "warm" : parked > 0 || tmpl ? "standby" : "cold";
    if (ready == 0 && parked == 0 && pool_count(p, INST_STARTING, false) > 0) state = "starting";
    json_t *t = pool_tmpl_status(p);
    json_t *o = json_pack("{s:s, s:s, s:o, s:i, s:i, s:i, s:i, s:b, s:i}", "name", p->spec->name,
                          "state", state, "instances", inst, "instances_total", total, "in_flight",
                          p->inflight, "held", p->n_held, "desired", p->desired, "panicking",
                          p->mem.panicking, "generation", p->generation);
    if (o && t) json_object_set(o, "template", t);
    json_decref(t);
    return o;
}

json_t *scale_status(struct scale *s, const char *name)
{
    pthread_mutex_lock(&s->lock);
    json_t *out = NULL;
    if (name) {
        struct pool *p = pool_find(s, name);
        if (p) out = pool_status(p);
    } else {
        out = json_object();
        for (struct pool *p = s->pools; p; p = p->next)
            if (!p->removed) json_object_set_new(out, p->spec->name, pool_status(p));
    }
    pthread_mutex_unlock(&s->lock);
    return out;
}

/* ---- life ---- */

struct scale *scale_new(struct event_base *base, const struct scale_config *cfg,
                        struct thaw_err *err)
{
    struct scale *s = calloc(1, sizeof(*s));
    if (!s) {
        thaw_errf(err, THAW_ENOMEM, "out of memory");
        return NULL;
    }
    s->base = base;
    s->cfg = *cfg;
    s->tmp_root = str_dup(cfg->tmp_root ? cfg->tmp_root : "/tmp");
    s->cfg.tmp_root = s->tmp_root;
    s->artifact_root = cfg->artifact_root ? str_dup(cfg->artifact_root) : NULL;
    s->cfg.artifact_root = s->artifact_root;
    if (s->cfg.tick_ms <= 0) s->cfg.tick_ms = 100;
    if (s->cfg.max_line_bytes == 0) s->cfg.max_line_bytes = 64u << 20;
    if (s->cfg.stop_grace_ms <= 0) s->cfg.stop_grace_ms = 5000;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->inbox_lock, NULL);
    s->f_instances = obs_metric_family("thaw_instances", "Instances by state.", METRIC_GAUGE,
                                       (const char *[]){"deployment", "state", NULL}, NULL, 0);
    s->f_held =
        obs_metric_family("thaw_held_requests", "Requests held while no instance can take them.",
                          METRIC_GAUGE, (const char *[]){"deployment", NULL}, NULL, 0);
    s->f_cold = obs_metric_family(
        "thaw_cold_starts_total", "Requests that found no warm instance, by what they found.",
        METRIC_COUNTER, (const char *[]){"deployment", "from", NULL}, NULL, 0);
    s->f_decisions = obs_metric_family("thaw_scale_decisions_total",
                                       "Autoscaler and activator decisions.", METRIC_COUNTER,
                                       (const char *[]){"deployment", "direction", NULL}, NULL, 0);
    struct metric_family *f_red = obs_metric_family(
        "thaw_redactions_total", "Sensitive values masked in function output that reaches logs.",
        METRIC_COUNTER, (const char *[]){"kind", NULL}, NULL, 0);
    for (int k = 0; k < SECURITY_REDACT_N_KINDS; k++)
        s->m_redactions[k] =
            obs_metric_series(f_red, (const char *[]){security_redact_kind_name(k)});
    struct timeval tv = {s->cfg.tick_ms / 1000, (s->cfg.tick_ms % 1000) * 1000};
    s->tick_ev = event_new(base, -1, EV_PERSIST, tick_cb, s);
    s->inbox_ev = event_new(base, -1, EV_READ, inbox_cb, s);
    s->sigchld_ev = evsignal_new(base, SIGCHLD, sigchld_cb, s);
    if (!s->tmp_root || !s->tick_ev || !s->inbox_ev || !s->sigchld_ev ||
        event_add(s->tick_ev, &tv) || event_add(s->sigchld_ev, NULL)) {
        thaw_errf(err, THAW_ENOMEM, "cannot create scale events");
        scale_free(s);
        return NULL;
    }
    return s;
}

void scale_free(struct scale *s)
{
    if (!s) return;
    while (s->pools) {
        struct pool *p = s->pools;
        while (p->insts) {
            p->insts->state = INST_STOPPING;
            pool_inst_died(p->insts, "node exiting");
        }
        pool_tmpl_stop(p, "node exiting");
        fail_held(p, 503, "shutting_down", "the node is shutting down");
        pool_free(s, p);
    }
    pthread_mutex_lock(&s->inbox_lock);
    while (s->inbox_head) {
        struct inbox_msg *m = s->inbox_head;
        s->inbox_head = m->next;
        if (m->type == MSG_APPLY) registry_spec_free(m->spec);
        free(m);
    }
    pthread_mutex_unlock(&s->inbox_lock);
    if (s->tick_ev) event_free(s->tick_ev);
    if (s->inbox_ev) event_free(s->inbox_ev);
    if (s->sigchld_ev) event_free(s->sigchld_ev);
    buf_free(&s->line);
    free(s->tmp_root);
    free(s->artifact_root);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->inbox_lock);
    free(s);
}
