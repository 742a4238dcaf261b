/* The scale object: its inbox from other threads, the periodic tick that
 * runs timeouts and the autoscaler, deployment apply/remove, status and
 * shutdown. */
#include "scale/pool.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static struct pool *pool_find_v(struct scale *s, const char *name, int version)
{
    for (struct pool *p = s->pools; p; p = p->next)
        if (!p->removed && p->version == version && strcmp(p->spec->name, name) == 0) return p;
    return NULL;
}

static struct route *route_find(struct scale *s, const char *name)
{
    for (struct route *r = s->routes; r; r = r->next)
        if (!r->removed && strcmp(r->name, name) == 0) return r;
    return NULL;
}

static uint64_t rng_next(struct scale *s)
{
    /* xorshift64*: only the scale thread draws, so no lock and no contention. */
    uint64_t x = s->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [0, 1). */
static double rng_unit(struct scale *s)
{
    return (double)(rng_next(s) >> 11) / 9007199254740992.0;
}

static struct metric_series *series2(struct metric_family *f, const char *a, const char *b)
{
    return obs_metric_series(f, (const char *[]){a, b});
}

static struct pool *pool_new(struct scale *s, struct deploy_spec *spec, int version)
{
    struct pool *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->scale = s;
    p->spec = spec;
    p->version = version;
    snprintf(p->vlabel, sizeof(p->vlabel), "v%d", version);
    const char *n = spec->name;
    static const char *const roles[2] = {"primary", "shadow"};
    for (int r = 0; r < 2; r++) {
        p->m_vdur[r] = obs_metric_series(s->f_vdur, (const char *[]){n, p->vlabel, roles[r]});
        for (int e = 0; e < 2; e++)
            p->m_vreq[r][e] = obs_metric_series(
                s->f_vreq, (const char *[]){n, p->vlabel, roles[r], e ? "error" : "ok"});
    }
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
        obs_metric_drop(s->f_vreq, name);
        obs_metric_drop(s->f_vdur, name);
    }
    free(p->stats[0].ring);
    free(p->stats[1].ring);
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
static void scale_down(struct pool *p, int surplus, bool to_zero, uint64_t recent_ms)
{
    /* llm/embed park nothing: their standby is the template. */
    bool want_standby = to_zero && p->spec->scale.standby_timeout_ms > 0 &&
                        pool_count(p, INST_PARKED, true) == 0 &&
                        !registry_runtime_is_model(p->spec);
    /* First prewarming standbys, then idle instances nobody used lately,
     * then any idle one, then any. */
    for (int pass = 0; pass < 4 && surplus > 0; pass++) {
        for (struct inst *in = p->insts, *next; in && surplus > 0; in = next) {
            next = in->next;
            if (in->generation != p->generation) continue;
            bool idle = in->state == INST_READY && in->inflight == 0;
            bool match = pass == 0   ? in->state == INST_STARTING && in->park_when_ready
                         : pass == 1 ? idle && in->last_used_ms < recent_ms
                         : pass == 2 ? idle
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
    /* A version without traffic keeps no warm pool: it scales to zero like
     * an idle one, and pinned requests start it on demand. */
    struct deploy_scale scfg = p->spec->scale;
    if (!p->active) scfg.min_instances = 0;
    const struct deploy_scale *cfg = &scfg;
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
    /* Instances serve one tenant each: concurrency alone would fold two
     * tenants' light traffic into one instance that only one may use. */
    uint64_t recent = now - (uint64_t)MIN((int64_t)now, cfg->stable_window_ms);
    int tenants = p->desired > 0 ? pool_active_tenants(p, recent) : 0;
    if (tenants > p->desired) {
        p->desired = MIN(tenants, cfg->max_instances);
        why = "one instance per active tenant";
    }
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
        scale_down(p, serving - p->desired, p->desired == 0, recent);
    }
}

/* A freshly deployed (or restarted) deployment with min_instances 0 starts
 * one standby instance, so its first request pays a resume, not a cold
 * start. Once that standby has timed out the deployment stays cold. */
static void keep_standby(struct pool *p, uint64_t now)
{
    if (!p->active || p->spec->scale.standby_timeout_ms <= 0 || p->spec->scale.min_instances > 0)
        return;
    /* llm/embed: the template (their standby) starts on the first demand,
     * not at deploy time: it maps the whole model. */
    if (registry_runtime_is_model(p->spec)) return;
    if (p->insts || now < p->next_start_ms || p->prewarmed) return;
    p->prewarmed = true;
    pool_spawn(p, true);
}

/* A decision waiting to be persisted once the scale lock is released. */
struct canary_decision {
    char name[DEPLOY_NAME_MAX + 1];
    struct registry_traffic t;
    int64_t base_rev;
    const char *decision;
    char details[320];
};

static bool canary_analyse(struct scale *s, struct route *r, uint64_t now, float *scratch,
                           struct canary_decision *d);

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct scale *s = arg;
    pthread_mutex_lock(&s->lock);
    uint64_t now = pool_now_ms();
    /* Canary analysis; decisions are persisted after the lock is released,
     * so status readers on other threads do not wait for the store's fsync
     * (this loop does, once per decision: decisions are rare). */
    struct canary_decision decisions[4];
    int n_dec = 0;
    float *scratch = NULL;
    for (struct route *r = s->routes; r && n_dec < (int)ARRAY_LEN(decisions); r = r->next) {
        if (!r->t.canary.version || s->shutting_down) continue;
        if (!scratch && !(scratch = malloc(OUTCOME_RING * sizeof(float)))) break;
        if (canary_analyse(s, r, now, scratch, &decisions[n_dec])) n_dec++;
    }
    free(scratch);
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
    for (int i = 0; i < n_dec && s->cfg.on_canary; i++)
        s->cfg.on_canary(s->cfg.canary_ctx, decisions[i].name, &decisions[i].t,
                         decisions[i].base_rev, decisions[i].decision, decisions[i].details);
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

static void do_apply(struct scale *s, struct deploy_spec *spec, int version)
{
    struct pool *p = pool_find_v(s, spec->name, version);
    if (p) {
        /* Versions are immutable: the one known is the one asked for. */
        registry_spec_free(spec);
        return;
    }
    p = pool_new(s, spec, version);
    if (!p) {
        registry_spec_free(spec);
        return;
    }
    struct route *r = route_find(s, spec->name);
    p->active =
        r && (registry_traffic_weight(&r->t, version) > 0 || r->t.shadow_version == version);
    OBS_LOG(LOG_INFO, "deployment_applied", LOG_S("deployment", spec->name),
            LOG_S("version", p->vlabel), LOG_S("change", "version added"));
    if (p->active)
        for (int i = pool_count(p, INST_READY, true); i < spec->scale.min_instances; i++)
            if (!pool_spawn(p, false)) break;
    keep_standby(p, pool_now_ms());
}

/* Marks which versions get requests; versions that lost theirs drain (busy
 * instances finish what they hold, idle ones stop now). */
static void apply_activity(struct scale *s, struct route *r)
{
    for (struct pool *p = s->pools; p; p = p->next) {
        if (p->removed || strcmp(p->spec->name, r->name) != 0) continue;
        bool active =
            registry_traffic_weight(&r->t, p->version) > 0 || r->t.shadow_version == p->version;
        if (active == p->active) continue;
        p->active = active;
        if (!active) {
            stop_all(p, "version has no traffic"); /* an llm template too */
        } else {
            p->prewarmed = false;
            for (int i = pool_count(p, INST_READY, true); i < p->spec->scale.min_instances; i++)
                if (!pool_spawn(p, false)) break;
            keep_standby(p, pool_now_ms());
        }
    }
}

static void do_set_traffic(struct scale *s, const char *name, const struct registry_traffic *t,
                           int64_t rev)
{
    struct route *r = route_find(s, name);
    if (!r) {
        r = calloc(1, sizeof(*r));
        if (!r) return;
        str_copy(r->name, name, sizeof(r->name));
        r->next = s->routes;
        s->routes = r;
    }
    uint64_t now = pool_now_ms();
    bool new_step = t->canary.version != r->t.canary.version ||
                    t->canary.step != r->t.canary.step ||
                    strcmp(t->canary.state, r->t.canary.state) != 0;
    r->t = *t;
    r->rev = rev;
    r->pending = false;
    if (new_step) r->step_since_ms = now;
    apply_activity(s, r);
    OBS_LOG(LOG_INFO, "traffic_applied", LOG_S("deployment", name), LOG_I("rev", (long long)rev),
            LOG_I("versions", t->n), LOG_I("shadow", t->shadow_version),
            LOG_I("canary", t->canary.version));
}

static void do_remove(struct scale *s, const char *name)
{
    bool found = false;
    for (struct pool *p = s->pools; p; p = p->next) {
        if (p->removed || strcmp(p->spec->name, name) != 0) continue;
        p->removed = true;
        found = true;
        fail_held(p, 404, "not_found", "the deployment was deleted");
        stop_all(p, "deployment deleted");
    }
    for (struct route **rp = &s->routes; *rp;) {
        struct route *r = *rp;
        if (strcmp(r->name, name) == 0) {
            *rp = r->next;
            free(r);
        } else {
            rp = &r->next;
        }
    }
    if (found) OBS_LOG(LOG_INFO, "deployment_removed", LOG_S("deployment", name));
}

/* ---- routing between versions ---- */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

int scale_pick_sticky(const struct registry_traffic *t, uint64_t key_hash)
{
    /* Weighted rendezvous hashing: each version scores w / -ln(u) with u a
     * uniform hash of (key, version); the highest wins. A version is chosen
     * with probability w / sum(w), and changing one weight moves only keys
     * to or from that version. */
    int best = 0;
    double best_score = -1;
    for (int i = 0; i < t->n; i++) {
        if (t->w[i].weight <= 0) continue;
        uint64_t h = mix64(key_hash ^ mix64((uint64_t)t->w[i].version * 0x9E3779B97F4A7C15ULL));
        double u = ((double)(h >> 11) + 0.5) / 9007199254740992.0; /* (0, 1) */
        double score = (double)t->w[i].weight / -log(u);
        if (score > best_score) {
            best_score = score;
            best = t->w[i].version;
        }
    }
    return best;
}

/* The version at u (uniform in [0, 1)) along the weights; 0 when none has
 * any. */
static int pick_at(const struct registry_traffic *t, double u)
{
    int total = 0;
    for (int i = 0; i < t->n; i++)
        total += MAX(t->w[i].weight, 0);
    if (total <= 0) return 0;
    int x = (int)(u * total);
    for (int i = 0; i < t->n; i++) {
        x -= MAX(t->w[i].weight, 0);
        if (x < 0) return t->w[i].version;
    }
    return t->w[t->n - 1].version;
}

static int pick_weighted(struct scale *s, const struct registry_traffic *t)
{
    return pick_at(t, rng_unit(s));
}

/* ---- traffic published for other threads ---- */

static struct route_pub *pub_find(struct scale *s, const char *name)
{
    for (struct route_pub *e = s->pubs; e; e = e->next)
        if (strcmp(e->name, name) == 0) return e;
    return NULL;
}

/* With pub_lock held. Without memory the deployment is routed on the scale
 * thread as before (scale_route answers 0). */
static void pub_set(struct scale *s, const char *name, const struct registry_traffic *t)
{
    struct route_pub *e = pub_find(s, name);
    if (!e && (e = calloc(1, sizeof(*e)))) {
        str_copy(e->name, name, sizeof(e->name));
        e->next = s->pubs;
        s->pubs = e;
    }
    if (e) e->t = *t;
}

static void pub_drop(struct scale *s, const char *name)
{
    for (struct route_pub **pp = &s->pubs; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->name, name) == 0) {
            struct route_pub *e = *pp;
            *pp = e->next;
            free(e);
            return;
        }
    }
}

int scale_route(struct scale *s, const char *name, bool sticky, uint64_t sticky_hash)
{
    /* Each calling thread draws from its own generator: no shared state
     * but the traffic, read under a lock held for a few comparisons. */
    static _Thread_local uint64_t rng;
    if (!rng && (random_bytes(&rng, sizeof(rng)) || !rng)) rng = (uint64_t)time_now_ns() | 1;
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    double u = (double)((rng * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
    int v = 0;
    pthread_mutex_lock(&s->pub_lock);
    struct route_pub *e = pub_find(s, name);
    if (e) v = sticky ? scale_pick_sticky(&e->t, sticky_hash) : pick_at(&e->t, u);
    pthread_mutex_unlock(&s->pub_lock);
    return v;
}

int scale_route_versions(struct scale *s, const char *name, int *out, int max)
{
    int n = 0;
    pthread_mutex_lock(&s->pub_lock);
    struct route_pub *e = pub_find(s, name);
    for (int i = 0; e && i < e->t.n && n < max; i++)
        if (e->t.w[i].weight > 0) out[n++] = e->t.w[i].version;
    pthread_mutex_unlock(&s->pub_lock);
    return n;
}

static void outcome_record(struct pool *p, int role, uint64_t now_ms, double ms, bool error,
                           bool warm)
{
    struct outcomes *o = &p->stats[role];
    if (!o->ring) o->ring = calloc(OUTCOME_RING, sizeof(*o->ring));
    if (o->ring) o->ring[o->n++ % OUTCOME_RING] = (struct outcome){now_ms, (float)ms, error, warm};
    obs_metric_add(p->m_vreq[role][error], 1);
    obs_metric_observe(p->m_vdur[role], ms / 1000.0);
}

/* Wraps every routed invocation's callback: the final answer is recorded
 * for its version (latency, 5xx) before it goes on to the caller. */
static void stats_on_event(struct invocation *inv, enum inv_event_kind kind, int status,
                           const char *code, char *payload)
{
    void (*user)(struct invocation *, enum inv_event_kind, int, const char *, char *) =
        inv->user_on_event;
    if (kind != INV_CHUNK) {
        uint64_t now = time_now_ns();
        /* A cold start is the platform's latency, not the version's: a canary
         * started on demand must not be judged by it. */
        bool warm = !inv->start_state || strcmp(inv->start_state, "warm") == 0;
        if (inv->stat_pool)
            outcome_record(inv->stat_pool, inv->shadow, now / 1000000,
                           (double)(now - inv->submit_ns) / 1e6, kind == INV_FAIL && status >= 500,
                           warm);
        inv->on_event = user; /* the invocation may be freed by the callee */
    }
    user(inv, kind, status, code, payload);
}

static void shadow_done(struct invocation *inv, enum inv_event_kind kind, int status,
                        const char *code, char *payload)
{
    /* The shadow's answer is discarded: only its outcome was recorded. */
    (void)status;
    (void)code;
    free(payload);
    if (kind == INV_CHUNK) return;
    free(inv->input);
    free(inv);
}

static void route_to(struct pool *p, struct invocation *inv, bool shadow)
{
    inv->version = p->version;
    inv->shadow = shadow;
    inv->stat_pool = p;
    inv->submit_ns = time_now_ns();
    inv->user_on_event = inv->on_event;
    inv->on_event = stats_on_event;
    pool_submit(p, inv);
}

/* Sends a copy to the shadow version; takes ownership of input. */
static void send_shadow(struct scale *s, struct pool *p, const char *rid, const char *tenant,
                        char *input, size_t len)
{
    struct invocation *sh = calloc(1, sizeof(*sh));
    if (!sh) {
        free(input); /* a shadow copy is best effort; the client never waits for it */
        return;
    }
    str_copy(sh->deployment, p->spec->name, sizeof(sh->deployment));
    snprintf(sh->request_id, sizeof(sh->request_id), "%.56s-shadow", rid);
    str_copy(sh->tenant, tenant, sizeof(sh->tenant));
    sh->input = input;
    sh->input_len = len;
    sh->on_event = shadow_done;
    sh->owner = s;
    route_to(p, sh, true);
}

static void do_submit(struct scale *s, struct invocation *inv)
{
    if (s->shutting_down) {
        inv->start_state = "warm";
        inv->retry_after_s = 1;
        inv->on_event(inv, INV_FAIL, 503, "shutting_down", str_dup("the node is shutting down"));
        return;
    }
    struct route *r = route_find(s, inv->deployment);
    struct buf b = {0};
    if (!r) {
        buf_printf(&b, "deployment '%s' not found", inv->deployment);
        inv->start_state = "cold";
        inv->version = 0;
        inv->on_event(inv, INV_FAIL, 404, "not_found", buf_steal(&b));
        return;
    }
    bool pinned = inv->version > 0 && !inv->routed;
    int v = inv->version > 0 ? inv->version
            : inv->sticky    ? scale_pick_sticky(&r->t, inv->sticky_hash)
                             : pick_weighted(s, &r->t);
    struct pool *p = v ? pool_find_v(s, inv->deployment, v) : NULL;
    if (!p) {
        if (pinned)
            buf_printf(&b, "deployment '%s' has no version v%d", inv->deployment, v);
        else
            buf_printf(&b, "deployment '%s' has no version with traffic", inv->deployment);
        inv->start_state = "cold";
        inv->version = 0;
        inv->on_event(inv, INV_FAIL, pinned ? 404 : 503,
                      pinned ? "version_not_found" : "no_traffic", buf_steal(&b));
        return;
    }
    /* The shadow copy is made before the original is handed over (which may
     * answer and free it at once), and sent after it, so the client's
     * request is never queued behind its own copy. */
    struct pool *sp = NULL;
    if (!pinned && r->t.shadow_version && r->t.shadow_version != v &&
        rng_unit(s) * 100.0 < r->t.shadow_percent)
        sp = pool_find_v(s, inv->deployment, r->t.shadow_version);
    char *copy = NULL, rid[65], tenant[sizeof(inv->tenant)];
    size_t copy_len = inv->input_len;
    if (sp && (copy = malloc(copy_len + 1))) {
        memcpy(copy, inv->input, copy_len);
        copy[copy_len] = 0;
        str_copy(rid, inv->request_id, sizeof(rid));
        str_copy(tenant, inv->tenant, sizeof(tenant));
    }
    route_to(p, inv, false);
    if (copy) send_shadow(s, sp, rid, tenant, copy, copy_len);
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
            do_apply(s, m->spec, m->version);
            break;
        case MSG_TRAFFIC:
            do_set_traffic(s, m->name, &m->traffic, m->rev);
            break;
        case MSG_REMOVE:
            do_remove(s, m->name);
            break;
        case MSG_SHUTDOWN:
            do_shutdown(s, m->done, m->done_arg);
            break;
        case MSG_CANCEL:
            for (struct pool *p = s->pools; p; p = p->next)
                if (pool_cancel(p, m->inv, m->serial, m->why)) break;
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
    inv->serial = atomic_fetch_add(&s->next_serial, 1) + 1;
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

void scale_cancel(struct scale *s, struct invocation *inv, enum scale_cancel_reason why)
{
    /* The caller may free inv as soon as its final event arrives, possibly
     * before this message is read, and a new invocation may take its
     * address: the serial tells them apart. */
    struct inbox_msg *m = calloc(1, sizeof(*m));
    if (!m) return; /* the request then runs to its end, as it would have */
    m->type = MSG_CANCEL;
    m->inv = inv;
    m->serial = inv->serial;
    m->why = why;
    post(s, m);
}

void scale_apply_version(struct scale *s, struct deploy_spec *spec, int version)
{
    struct inbox_msg *m = calloc(1, sizeof(*m));
    if (!m) {
        registry_spec_free(spec);
        return;
    }
    m->type = MSG_APPLY;
    m->spec = spec;
    m->version = version;
    post(s, m);
}

void scale_set_traffic(struct scale *s, const char *name, const struct registry_traffic *t,
                       int64_t rev)
{
    struct inbox_msg *m = calloc(1, sizeof(*m));
    if (!m) return;
    m->type = MSG_TRAFFIC;
    str_copy(m->name, name, sizeof(m->name));
    m->traffic = *t;
    m->rev = rev;
    /* Published and queued under one lock: two callers' changes reach
     * scale_route and the scale thread in the same order. */
    pthread_mutex_lock(&s->pub_lock);
    pub_set(s, name, t);
    post(s, m);
    pthread_mutex_unlock(&s->pub_lock);
}

void scale_remove(struct scale *s, const char *name)
{
    struct inbox_msg *m = calloc(1, sizeof(*m));
    if (!m) return;
    m->type = MSG_REMOVE;
    str_copy(m->name, name, sizeof(m->name));
    pthread_mutex_lock(&s->pub_lock);
    pub_drop(s, name);
    post(s, m);
    pthread_mutex_unlock(&s->pub_lock);
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

/* One deployment's pools summed (the shape callers knew before versions),
 * with each version's own numbers under "versions". */
static json_t *deployment_status(struct scale *s, const char *name)
{
    int counts[INST_N_STATES] = {0};
    int inflight = 0, held = 0, desired = 0, generation = 0;
    bool panicking = false, any = false, tmpl_ready = false;
    json_t *versions = json_object();
    json_t *tmpl = NULL; /* llm/embed: the template of a version with traffic, else any */
    bool tmpl_active = false;
    for (const struct pool *p = s->pools; p; p = p->next) {
        if (p->removed || strcmp(p->spec->name, name) != 0) continue;
        any = true;
        tmpl_ready |= pool_tmpl_ready(p);
        json_t *t = pool_tmpl_status(p);
        if (t && (!tmpl || (p->active && !tmpl_active))) {
            json_decref(tmpl);
            tmpl = json_incref(t);
            tmpl_active = p->active;
        }
        json_t *inst = json_object();
        int total = 0;
        for (int st = 0; st < INST_N_STATES; st++) {
            int n = pool_count(p, (enum inst_state)st, false);
            counts[st] += n;
            total += n;
            json_object_set_new(inst, pool_state_name((enum inst_state)st), json_integer(n));
        }
        inflight += p->inflight;
        held += p->n_held;
        desired += p->desired;
        panicking |= p->mem.panicking;
        generation += p->generation;
        json_t *vo = json_pack("{s:o, s:i, s:i, s:i, s:i, s:b}", "instances", inst,
                               "instances_total", total, "in_flight", p->inflight, "held",
                               p->n_held, "desired", p->desired, "active", p->active);
        if (vo && t) json_object_set(vo, "template", t);
        json_decref(t);
        json_object_set_new(versions, p->vlabel, vo);
    }
    if (!any) {
        json_decref(versions);
        json_decref(tmpl);
        return NULL;
    }
    json_t *inst = json_object();
    int total = 0;
    for (int st = 0; st < INST_N_STATES; st++) {
        total += counts[st];
        json_object_set_new(inst, pool_state_name((enum inst_state)st), json_integer(counts[st]));
    }
    int ready = counts[INST_READY], parked = counts[INST_PARKED];
    const char *state = ready > 0 ? "warm" : parked > 0 || tmpl_ready ? "standby" : "cold";
    if (ready == 0 && parked == 0 && counts[INST_STARTING] > 0) state = "starting";
    json_t *o = json_pack("{s:s, s:s, s:o, s:i, s:i, s:i, s:i, s:b, s:i, s:o}", "name", name,
                          "state", state, "instances", inst, "instances_total", total, "in_flight",
                          inflight, "held", held, "desired", desired, "panicking", panicking,
                          "generation", generation, "versions", versions);
    if (o && tmpl) json_object_set(o, "template", tmpl);
    json_decref(tmpl);
    return o;
}

json_t *scale_status(struct scale *s, const char *name)
{
    pthread_mutex_lock(&s->lock);
    json_t *out = NULL;
    if (name) {
        out = deployment_status(s, name);
    } else {
        out = json_object();
        for (struct pool *p = s->pools; p; p = p->next)
            if (!p->removed && !json_object_get(out, p->spec->name))
                json_object_set_new(out, p->spec->name, deployment_status(s, p->spec->name));
    }
    pthread_mutex_unlock(&s->lock);
    return out;
}

/* ---- outcome statistics and canary analysis ---- */

struct window_stats {
    int requests, errors;
    double p50_ms, p95_ms; /* of warm answers */
};

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

static void window_of(const struct outcomes *o, uint64_t since_ms, struct window_stats *w,
                      float *scratch)
{
    memset(w, 0, sizeof(*w));
    if (!o->ring) return;
    uint64_t n = MIN(o->n, (uint64_t)OUTCOME_RING);
    int k = 0;
    for (uint64_t i = 0; i < n; i++) {
        const struct outcome *e = &o->ring[(o->n - 1 - i) % OUTCOME_RING];
        if (e->t_ms < since_ms) break;
        if (e->warm) scratch[k++] = e->ms;
        w->errors += e->error;
        w->requests++;
    }
    if (!k) return;
    qsort(scratch, (size_t)k, sizeof(float), cmp_float);
    w->p50_ms = scratch[(k - 1) / 2];
    w->p95_ms = scratch[(int)((k - 1) * 0.95 + 0.5)];
}

static json_t *window_json(const struct window_stats *w)
{
    return json_pack("{s:i, s:i, s:f, s:f, s:f}", "requests", w->requests, "errors", w->errors,
                     "error_rate", w->requests ? (double)w->errors / w->requests : 0.0, "p50_ms",
                     w->p50_ms, "p95_ms", w->p95_ms);
}

json_t *scale_version_stats(struct scale *s, const char *name, int64_t window_ms)
{
    float *scratch = malloc(OUTCOME_RING * sizeof(float));
    if (!scratch) return NULL;
    pthread_mutex_lock(&s->lock);
    uint64_t now = pool_now_ms();
    uint64_t since = window_ms > 0 && (uint64_t)window_ms < now ? now - (uint64_t)window_ms : 0;
    json_t *out = NULL;
    /* In version order (the pool list is newest first). */
    for (int last = 0;;) {
        const struct pool *p = NULL;
        for (const struct pool *q = s->pools; q; q = q->next)
            if (!q->removed && q->version > last && strcmp(q->spec->name, name) == 0 &&
                (!p || q->version < p->version))
                p = q;
        if (!p) break;
        last = p->version;
        if (!out) out = json_object();
        struct window_stats w[2];
        window_of(&p->stats[0], since, &w[0], scratch);
        window_of(&p->stats[1], since, &w[1], scratch);
        json_object_set_new(
            out, p->vlabel,
            json_pack("{s:o, s:o}", "primary", window_json(&w[0]), "shadow", window_json(&w[1])));
    }
    pthread_mutex_unlock(&s->lock);
    free(scratch);
    return out;
}

/* Compares the canary's window with its baseline's. Returns true with d
 * filled when the traffic should change. */
static bool canary_analyse(struct scale *s, struct route *r, uint64_t now, float *scratch,
                           struct canary_decision *d)
{
    struct registry_canary *c = &r->t.canary;
    if (!c->version || strcmp(c->state, "running") != 0 || r->pending) return false;
    if (now - r->checked_ms < 250) return false; /* analysis is cheap, but not free */
    r->checked_ms = now;
    struct pool *cp = pool_find_v(s, r->name, c->version);
    struct pool *bp = pool_find_v(s, r->name, c->baseline);
    if (!cp || !bp) return false;
    uint64_t since = now > (uint64_t)c->window_ms ? now - (uint64_t)c->window_ms : 0;
    /* Outcomes from before the analysis began say nothing about it. */
    if (c->step == 0 && since < r->step_since_ms) since = r->step_since_ms;
    struct window_stats cw, bw;
    window_of(&cp->stats[0], since, &cw, scratch);
    window_of(&bp->stats[0], since, &bw, scratch);
    double cer = cw.requests ? (double)cw.errors / cw.requests : 0;
    double ber = bw.requests ? (double)bw.errors / bw.requests : 0;
    double ratio = bw.p95_ms > 0 ? cw.p95_ms / bw.p95_ms : 0;
    bool enough = cw.requests >= c->min_requests;
    const char *why = NULL;
    if (enough && cer - ber > c->max_error_rate)
        why = "error rate";
    else if (enough && bw.requests >= c->min_requests && bw.p95_ms > 0 && c->max_p95_ratio > 0 &&
             ratio > c->max_p95_ratio)
        why = "p95 latency";
    snprintf(d->details, sizeof(d->details),
             "{\"canary\":\"v%d\",\"baseline\":\"v%d\",\"canary_requests\":%d,"
             "\"canary_error_rate\":%.4f,\"baseline_requests\":%d,\"baseline_error_rate\":%.4f,"
             "\"canary_p95_ms\":%.2f,\"baseline_p95_ms\":%.2f%s%s%s}",
             c->version, c->baseline, cw.requests, cer, bw.requests, ber, cw.p95_ms, bw.p95_ms,
             why ? ",\"reason\":\"" : "", why ? why : "", why ? "\"" : "");
    d->t = r->t;
    d->base_rev = r->rev;
    str_copy(d->name, r->name, sizeof(d->name));
    struct registry_canary *dc = &d->t.canary;
    if (why) {
        registry_traffic_set(&d->t, c->baseline, 100);
        str_copy(dc->state, "rolled_back", sizeof(dc->state));
        d->decision = "rollback";
    } else if (now - r->step_since_ms >= (uint64_t)c->interval_ms && enough) {
        dc->step++;
        int w = dc->steps[dc->step];
        registry_traffic_set(&d->t, c->version, w);
        if (w >= 100) str_copy(dc->state, "promoted", sizeof(dc->state));
        d->decision = w >= 100 ? "promote" : "step";
    } else {
        return false;
    }
    OBS_LOG(LOG_INFO, "canary_decision", LOG_S("deployment", r->name),
            LOG_S("decision", d->decision), LOG_I("canary", c->version),
            LOG_I("weight", registry_traffic_weight(&d->t, c->version)),
            LOG_D("canary_error_rate", cer), LOG_D("baseline_error_rate", ber),
            LOG_D("canary_p95_ms", cw.p95_ms), LOG_D("baseline_p95_ms", bw.p95_ms),
            LOG_I("canary_requests", cw.requests));
    obs_metric_add(obs_metric_series(s->f_canary, (const char *[]){r->name, d->decision}), 1);
    /* Route by the decision at once; the store write follows. */
    r->t = d->t;
    pthread_mutex_lock(&s->pub_lock);
    pub_set(s, r->name, &r->t);
    pthread_mutex_unlock(&s->pub_lock);
    r->pending = s->cfg.on_canary != NULL;
    r->step_since_ms = now;
    apply_activity(s, r);
    return true;
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
    pthread_mutex_init(&s->pub_lock, NULL);
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
    s->f_vreq = obs_metric_family(
        "thaw_version_requests_total",
        "Answers by deployment version and role (primary traffic or shadow copies).",
        METRIC_COUNTER, (const char *[]){"deployment", "version", "role", "outcome", NULL}, NULL,
        0);
    static const double vbuckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                      0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                      1,      2.5,     5,      10,    30,     60};
    s->f_vdur =
        obs_metric_family("thaw_version_request_duration_seconds",
                          "Time from routing to the final answer, by deployment version and role.",
                          METRIC_HISTOGRAM, (const char *[]){"deployment", "version", "role", NULL},
                          vbuckets, (int)ARRAY_LEN(vbuckets));
    s->f_canary = obs_metric_family("thaw_canary_decisions_total",
                                    "Automatic canary analysis decisions.", METRIC_COUNTER,
                                    (const char *[]){"deployment", "decision", NULL}, NULL, 0);
    s->f_cancels = obs_metric_family(
        "thaw_calls_cancelled_total",
        "Invocations stopped before their end, by reason (client_closed: the HTTP client left; "
        "job_cancelled: the job was cancelled).",
        METRIC_COUNTER, (const char *[]){"deployment", "reason", NULL}, NULL, 0);
    random_bytes(&s->rng, sizeof(s->rng));
    s->rng |= 1; /* xorshift must not start at zero */
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
    /* After a forced stop requests may still be held: failed first, and
     * nothing starts (a dying instance's freed slot would otherwise start
     * another for them, for ever). */
    s->shutting_down = true;
    while (s->pools) {
        struct pool *p = s->pools;
        fail_held(p, 503, "shutting_down", "the node is shutting down");
        while (p->insts) {
            p->insts->state = INST_STOPPING;
            pool_inst_died(p->insts, "node exiting");
        }
        pool_tmpl_stop(p, "node exiting");
        pool_free(s, p);
    }
    while (s->routes) {
        struct route *r = s->routes;
        s->routes = r->next;
        free(r);
    }
    while (s->pubs) {
        struct route_pub *e = s->pubs;
        s->pubs = e->next;
        free(e);
    }
    pthread_mutex_lock(&s->inbox_lock);
    while (s->inbox_head) {
        struct inbox_msg *m = s->inbox_head;
        s->inbox_head = m->next;
        if (m->type == MSG_APPLY) registry_spec_free(m->spec);
        if (m->type == MSG_SUBMIT) /* its owner waits for a last event */
            m->inv->on_event(m->inv, INV_FAIL, 503, "shutting_down",
                             str_dup("the node is shutting down"));
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
    pthread_mutex_destroy(&s->pub_lock);
    free(s);
}
