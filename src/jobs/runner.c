/* The runner: leases due jobs per deployment up to its capacity, invokes
 * them through the scale thread like any request (held invocations are the
 * autoscaler's demand, so queue depth scales the deployment, from zero
 * too), renews leases while they run, and records each answer: a result, a
 * retry after a backoff, a final error or a dead letter. */
#include "jobs/jobs_int.h"
#include "obs/obs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LEASE_BATCH     256
#define POLL_MS         100 /* how often a deployment with jobs waiting is looked at anyway */
#define EXPIRE_EVERY_MS 1000

/* Runs on the scale thread: hand the answer to the runner. */
static void on_event(struct invocation *inv, enum inv_event_kind kind, int status, const char *code,
                     char *payload)
{
    if (kind == INV_CHUNK) {
        free(payload);
        return;
    }
    struct jrun *r = (struct jrun *)inv;
    struct jobs *j = r->jobs;
    pthread_mutex_lock(&j->lock);
    r->status = kind == INV_DONE ? 200 : status;
    r->version = inv->version;
    r->code = kind == INV_DONE ? NULL : code;
    r->payload = payload;
    r->next_done = NULL;
    if (j->done_tail)
        j->done_tail->next_done = r;
    else
        j->done_head = r;
    j->done_tail = r;
    pthread_cond_signal(&j->runner_cv);
    pthread_mutex_unlock(&j->lock);
}

static void run_free(struct jrun *r)
{
    if (!r) return;
    free(r->inv.input);
    free(r->payload);
    free(r->webhook);
    free(r);
}

/* Unlinks r from the in-flight list; with the lock held. */
static void run_unlink(struct jobs *j, struct jrun *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else if (j->running == r)
        j->running = r->next;
    if (r->next) r->next->prev = r->prev;
    r->next = r->prev = NULL;
    atomic_fetch_sub(&j->n_running, 1);
    struct jdep *d = jobs_dep(j, r->inv.deployment);
    if (d && d->inflight > 0) d->inflight--;
}

/* ---- recording answers ---- */

struct settings {
    int64_t base, cap, ttl;
    char webhook[2049];
};

static struct settings dep_settings(struct jobs *j, const char *name)
{
    struct settings s = {1000, 300000, 86400000, ""};
    pthread_mutex_lock(&j->lock);
    struct jdep *d = jobs_dep(j, name);
    if (d && d->exists) {
        s.base = d->cfg.backoff_base_ms;
        s.cap = d->cfg.backoff_cap_ms;
        s.ttl = d->cfg.result_ttl_ms;
        if (d->cfg.webhook) str_copy(s.webhook, d->cfg.webhook, sizeof(s.webhook));
    }
    pthread_mutex_unlock(&j->lock);
    return s;
}

/* The body POSTed to a webhook when a job ends. */
static char *webhook_body(const struct jrun *r, int state, int64_t now)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:I}", "id", r->id, "deployment", r->inv.deployment,
                          "state", jobs_state_name(state), "attempts", r->attempt, "finished_ms",
                          (json_int_t)now);
    if (!o) return NULL;
    if (state == STORE_JOB_SUCCEEDED) {
        json_t *res = json_loads(r->payload ? r->payload : "null", JSON_DECODE_ANY, NULL);
        json_object_set_new(o, "result", res ? res : json_null());
    } else {
        json_object_set_new(o, "error",
                            json_pack("{s:i, s:s, s:s}", "status", r->status, "code",
                                      r->code ? r->code : "error", "message",
                                      r->payload ? r->payload : ""));
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(o);
    return s;
}

struct pending_outcome {
    struct store_job_outcome o;
    struct jrun *run;
    enum jobs_verdict verdict;
    char *sealed_result, *sealed_msg, *sealed_hook;
};

static void build_outcome(struct jobs *j, struct pending_outcome *p, int64_t now)
{
    struct jrun *r = p->run;
    struct settings s = dep_settings(j, r->inv.deployment);
    enum jobs_verdict v = r->refused ? JOBS_FAIL
                                     : jobs_classify(r->status, r->code, r->inv.function_error,
                                                     r->attempt, r->max_attempts);
    p->verdict = v;
    struct store_job_outcome *o = &p->o;
    memset(o, 0, sizeof(*o));
    o->id = r->id;
    o->attempt = r->attempt;
    o->started_ms = r->started_ms;
    o->ended_ms = now;
    o->status = r->status;
    o->version = r->version;
    o->code = r->code;
    const char *payload = r->payload ? r->payload : "";
    size_t plen = strlen(payload);
    switch (v) {
    case JOBS_SUCCEED:
        o->new_state = STORE_JOB_SUCCEEDED;
        break;
    case JOBS_FAIL:
        o->new_state = STORE_JOB_FAILED;
        break;
    case JOBS_DEAD:
        o->new_state = STORE_JOB_DEAD;
        break;
    case JOBS_RETRY:
        o->new_state = STORE_JOB_QUEUED;
        pthread_mutex_lock(&j->lock);
        o->run_at_ms = now + jobs_backoff_ms(r->attempt, s.base, s.cap, jobs_random(j));
        pthread_mutex_unlock(&j->lock);
        break;
    case JOBS_RELEASE:
        o->new_state = STORE_JOB_QUEUED;
        o->release = true;
        o->run_at_ms = now + (int64_t)MAX(0, r->inv.retry_after_s) * 1000;
        break;
    }
    if (v == JOBS_SUCCEED) {
        o->code = NULL;
        if (!jobs_seal(j, r->inv.tenant, r->inv.deployment, payload, plen, &p->sealed_result,
                       &o->result_len))
            o->result = p->sealed_result;
    } else if (!jobs_seal(j, r->inv.tenant, r->inv.deployment, payload, plen, &p->sealed_msg,
                          &o->message_len)) {
        o->message = p->sealed_msg;
    }
    o->expires_ms = now + s.ttl;
    const char *url = r->webhook ? r->webhook : s.webhook[0] ? s.webhook : NULL;
    if (url && o->new_state >= STORE_JOB_SUCCEEDED) {
        char *body = webhook_body(r, o->new_state, now);
        size_t blen = 0;
        if (body && !jobs_seal(j, r->inv.tenant, r->inv.deployment, body, strlen(body),
                               &p->sealed_hook, &blen)) {
            o->webhook_url = url == s.webhook ? NULL : url;
            o->webhook_body = p->sealed_hook;
            o->webhook_body_len = blen;
        }
        free(body);
        /* The deployment's URL lives in s, which goes out of scope: copy. */
        if (o->webhook_body && !o->webhook_url) {
            free(r->webhook);
            r->webhook = str_dup(s.webhook);
            o->webhook_url = r->webhook;
        }
    }
}

static void log_outcome(struct jobs *j, const struct pending_outcome *p)
{
    static const char *const names[] = {"succeeded", "retry", "failed", "dead", "released"};
    if (p->o.outcome) return;
    if (j->f_attempts)
        obs_metric_add(obs_metric_series(j->f_attempts, (const char *[]){p->run->inv.deployment,
                                                                         names[p->verdict]}),
                       1);
    if (p->verdict == JOBS_SUCCEED) return;
    OBS_LOG(p->verdict == JOBS_DEAD ? LOG_WARN : LOG_INFO, "job_attempt", LOG_S("job", p->run->id),
            LOG_S("deployment", p->run->inv.deployment), LOG_I("attempt", p->run->attempt),
            LOG_I("status", p->run->status), LOG_S("code", p->run->code),
            LOG_S("outcome", names[p->verdict]));
}

static void gauges(struct jobs *j);

/* Records the answers in runs (a next_done list) in one transaction. */
static void record(struct jobs *j, struct jrun *runs)
{
    size_t n = 0;
    for (struct jrun *r = runs; r; r = r->next_done)
        n++;
    if (!n) return;
    struct pending_outcome *ps = calloc(n, sizeof(*ps));
    struct store_job_outcome *os = calloc(n, sizeof(*os));
    int64_t now = jobs_wall_ms();
    size_t i = 0;
    for (struct jrun *r = runs; r && ps && os; r = r->next_done, i++) {
        ps[i].run = r;
        build_outcome(j, &ps[i], now);
        os[i] = ps[i].o;
    }
    struct thaw_err err = {0};
    int rc = ps && os ? store_job_complete(j->cfg.store, os, n, &err) : THAW_ENOMEM;
    if (rc) {
        /* The leases stay: they expire and the jobs run again. */
        OBS_LOG(LOG_ERROR, "job_record_failed", LOG_S("error", err.msg), LOG_I("jobs", (int)n));
    }
    bool hooks = false;
    pthread_mutex_lock(&j->lock);
    for (i = 0; !rc && i < n; i++) {
        ps[i].o.outcome = os[i].outcome;
        if (os[i].outcome) continue;
        struct jdep *d = jobs_dep(j, ps[i].run->inv.deployment);
        if (!d) continue;
        if (os[i].new_state >= STORE_JOB_SUCCEEDED) {
            if (d->active > 0) d->active--;
            hooks |= os[i].webhook_body != NULL;
            if (os[i].new_state != STORE_JOB_DEAD && os[i].expires_ms < j->expire_due_ms)
                j->expire_due_ms = os[i].expires_ms;
        } else if (os[i].run_at_ms <= now) {
            d->kick = true;
        } else if (d->next_due_ms == 0 || os[i].run_at_ms < d->next_due_ms) {
            d->next_due_ms = os[i].run_at_ms;
        }
    }
    if (hooks) {
        j->hook_kick = true;
        pthread_cond_signal(&j->hook_cv);
    }
    pthread_mutex_unlock(&j->lock);
    /* The gauges first: a waiter told its job ended may read them next. */
    gauges(j);
    for (i = 0; ps && i < n; i++) {
        if (!rc) log_outcome(j, &ps[i]);
        if (!rc && !os[i].outcome && os[i].new_state >= STORE_JOB_SUCCEEDED)
            jobs_fire_waiters(j, ps[i].run->id, 0);
        free(ps[i].sealed_result);
        free(ps[i].sealed_msg);
        free(ps[i].sealed_hook);
    }
    free(ps);
    free(os);
}

/* Meters an attempt that reached an instance: a request (failed or not)
 * and the tokens of its answer. Whether the answer is then recorded does not
 * matter: an attempt of a job cancelled meanwhile spent them all the same. */
static void meter(struct jobs *j, const struct jrun *r)
{
    if (!j->cfg.on_usage || !r->submitted) return;
    json_int_t p = 0, c = 0;
    if (r->status == 200 && r->payload && strstr(r->payload, "\"usage\"")) {
        json_t *out = json_loads(r->payload, JSON_DECODE_ANY, NULL);
        json_t *u = json_object_get(out, "usage");
        p = json_integer_value(json_object_get(u, "prompt_tokens"));
        c = json_integer_value(json_object_get(u, "completion_tokens"));
        json_decref(out);
    }
    j->cfg.on_usage(j->cfg.usage_ctx, r->inv.tenant, r->key_id, r->inv.deployment, r->status != 200,
                    p > 0 ? (uint64_t)p : 0, c > 0 ? (uint64_t)c : 0);
}

/* Takes the answers that arrived, drops those of released jobs, records
 * the rest. */
void jobs_runner_flush(struct jobs *j)
{
    pthread_mutex_lock(&j->lock);
    struct jrun *r = j->done_head, *keep = NULL, **tail = &keep;
    j->done_head = j->done_tail = NULL;
    while (r) {
        struct jrun *next = r->next_done;
        if (r->released) {
            run_free(r);
        } else {
            run_unlink(j, r);
            r->next_done = NULL;
            *tail = r;
            tail = &r->next_done;
        }
        r = next;
    }
    pthread_mutex_unlock(&j->lock);
    record(j, keep);
    while (keep) {
        struct jrun *next = keep->next_done;
        meter(j, keep);
        run_free(keep);
        keep = next;
    }
}

void jobs_release_all(struct jobs *j)
{
    pthread_mutex_lock(&j->lock);
    size_t n = 0;
    for (struct jrun *r = j->running; r; r = r->next)
        n++;
    struct store_job_outcome *os = n ? calloc(n, sizeof(*os)) : NULL;
    char(*ids)[STORE_JOB_ID_MAX + 1] = n ? calloc(n, sizeof(*ids)) : NULL;
    int64_t now = jobs_wall_ms();
    size_t i = 0;
    while (j->running && os && ids) {
        struct jrun *r = j->running;
        run_unlink(j, r);
        r->released = true;
        str_copy(ids[i], r->id, sizeof(ids[i]));
        os[i] = (struct store_job_outcome){.id = ids[i],
                                           .attempt = r->attempt,
                                           .new_state = STORE_JOB_QUEUED,
                                           .release = true,
                                           .run_at_ms = now,
                                           .ended_ms = now};
        i++;
    }
    pthread_mutex_unlock(&j->lock);
    if (i) {
        struct thaw_err err = {0};
        if (store_job_complete(j->cfg.store, os, i, &err))
            OBS_LOG(LOG_ERROR, "job_release_failed", LOG_S("error", err.msg));
        else
            OBS_LOG(LOG_INFO, "jobs_released", LOG_I("jobs", (int)i));
    }
    free(os);
    free(ids);
}

/* ---- leasing ---- */

struct want {
    char name[DEPLOY_NAME_MAX + 1];
    int n;
    int64_t vis_ms;
};

/* Which deployments to lease for, and how many; with the lock held. */
static size_t wants(struct jobs *j, int64_t now, struct want *out, size_t max)
{
    size_t n = 0;
    for (struct jdep *d = j->deps; d && n < max; d = d->next) {
        /* Idle deployments are not re-read every second. */
        if (d->active == 0) continue;
        jobs_dep(j, d->name); /* refresh a stale spec */
        /* Jobs of a deleted deployment still run: scale answers 404 and
         * they fail instead of waiting forever. */
        if (!d->exists) d->capacity = 16;
        if (d->active <= d->inflight || d->inflight >= d->capacity) continue;
        bool due = d->kick || now >= d->next_poll_ms || (d->next_due_ms && now >= d->next_due_ms);
        if (!due) continue;
        d->kick = false;
        d->next_poll_ms = now + POLL_MS;
        if (d->next_due_ms && now >= d->next_due_ms) d->next_due_ms = 0;
        str_copy(out[n].name, d->name, sizeof(out[n].name));
        out[n].n = MIN(d->capacity - d->inflight, LEASE_BATCH);
        out[n].vis_ms = d->cfg.visibility_timeout_ms;
        n++;
    }
    return n;
}

static void start_run(struct jobs *j, const char *dep, struct store_job_lease *l, int64_t now,
                      int64_t vis_ms, struct jrun **lost)
{
    struct jrun *r = calloc(1, sizeof(*r));
    if (!r) {
        free(l->input);
        free(l->webhook);
        return; /* the lease expires and the job runs later */
    }
    r->jobs = j;
    str_copy(r->id, l->id, sizeof(r->id));
    r->attempt = l->attempt;
    r->max_attempts = l->max_attempts;
    r->started_ms = now;
    r->vis_ms = vis_ms;
    r->leased_until_ms = now + vis_ms;
    r->renew_at_ms = now + vis_ms / 3;
    r->webhook = l->webhook;
    str_copy(r->inv.deployment, dep, sizeof(r->inv.deployment));
    str_copy(r->inv.request_id, l->id, sizeof(r->inv.request_id));
    /* The submitter's: an instance bound to another tenant never runs it
     * ("" for jobs kept before tenants were). */
    str_copy(r->inv.tenant, l->tenant, sizeof(r->inv.tenant));
    str_copy(r->key_id, l->key_id, sizeof(r->key_id));
    r->inv.on_event = on_event;
    r->inv.owner = j;
    size_t len = 0;
    int rc = jobs_open(j, dep, l->input, l->input_len, &r->inv.input, &len);
    free(l->input);
    r->inv.input_len = len;
    pthread_mutex_lock(&j->lock);
    for (size_t k = 0; k < ARRAY_LEN(j->unlisted_cancels); k++) {
        if (strcmp(j->unlisted_cancels[k].id, r->id) != 0) continue;
        j->unlisted_cancels[k].id[0] = 0;
        r->cancel_wanted = true; /* cancelled between its lease and now */
    }
    r->next = j->running;
    if (j->running) j->running->prev = r;
    j->running = r;
    atomic_fetch_add(&j->n_running, 1);
    struct jdep *d = jobs_dep(j, dep);
    if (d) d->inflight++;
    pthread_mutex_unlock(&j->lock);
    /* The submitter may no longer run it (a revoked key, a tenant out of
     * its daily tokens): it fails now, with the reason as its error. */
    char why[256] = "";
    int refused_status = 0;
    const char *refused_code = NULL;
    if (!rc && r->attempt <= r->max_attempts && j->cfg.may_run &&
        j->cfg.may_run(j->cfg.usage_ctx, l->tenant, l->key_id, dep, &refused_status, &refused_code,
                       why, sizeof(why)))
        r->refused = true;
    if (rc || r->attempt > r->max_attempts || r->refused) {
        if (r->refused) {
            r->status = refused_status ? refused_status : 403;
            r->code = refused_code ? refused_code : "forbidden";
            r->payload = str_dup(why);
        } else {
            /* Its last attempt was lost with a lease that expired. */
            r->status = 504;
            r->code = rc ? "unreadable" : "lease_expired";
            r->payload = str_dup(rc ? "the job's input could not be read"
                                    : "the job's last attempt was lost when its lease expired");
        }
        r->next_done = *lost;
        *lost = r;
        return;
    }
    scale_submit(j->cfg.scale, &r->inv);
    /* r is freed only by this thread (flush), so it is still here, though
     * its answer may already have come. */
    pthread_mutex_lock(&j->lock);
    r->submitted = true;
    bool cancel = r->cancel_wanted;
    pthread_mutex_unlock(&j->lock);
    if (cancel) scale_cancel(j->cfg.scale, &r->inv, SCALE_CANCEL_JOB_CANCELLED);
}

static void lease_due(struct jobs *j, int64_t now)
{
    struct want w[64];
    pthread_mutex_lock(&j->lock);
    size_t nw = j->draining || !j->cfg.scale ? 0 : wants(j, now, w, ARRAY_LEN(w));
    pthread_mutex_unlock(&j->lock);
    static _Thread_local struct store_job_lease leases[LEASE_BATCH];
    for (size_t i = 0; i < nw; i++) {
        struct thaw_err err = {0};
        int n =
            store_job_lease(j->cfg.store, w[i].name, now, now + w[i].vis_ms, leases, w[i].n, &err);
        if (n < 0) {
            OBS_LOG(LOG_ERROR, "job_lease_failed", LOG_S("deployment", w[i].name),
                    LOG_S("error", err.msg));
            continue;
        }
        struct jrun *lost = NULL;
        for (int k = 0; k < n; k++) {
            /* A run whose removal from the list happens in flush: unlinked there. */
            start_run(j, w[i].name, &leases[k], now, w[i].vis_ms, &lost);
        }
        if (lost) {
            pthread_mutex_lock(&j->lock);
            for (struct jrun *r = lost, *next; r; r = next) {
                next = r->next_done;
                r->next_done = NULL;
                if (j->done_tail)
                    j->done_tail->next_done = r;
                else
                    j->done_head = r;
                j->done_tail = r;
            }
            pthread_mutex_unlock(&j->lock);
        }
        if (n == w[i].n) {
            pthread_mutex_lock(&j->lock);
            struct jdep *d = jobs_dep(j, w[i].name);
            if (d) d->kick = true; /* there may be more */
            pthread_mutex_unlock(&j->lock);
        }
    }
}

/* ---- lease renewal and expiry ---- */

static void renew(struct jobs *j, int64_t now)
{
    enum { MAX_RENEW = 1024 };
    static _Thread_local char ids[MAX_RENEW][STORE_JOB_ID_MAX + 1];
    static _Thread_local const char *idp[MAX_RENEW];
    static _Thread_local int attempts[MAX_RENEW];
    static _Thread_local int64_t until[MAX_RENEW];
    size_t n = 0;
    pthread_mutex_lock(&j->lock);
    for (struct jrun *r = j->running; r && n < MAX_RENEW; r = r->next) {
        if (now < r->renew_at_ms) continue;
        int64_t vis = r->vis_ms;
        str_copy(ids[n], r->id, sizeof(ids[n]));
        idp[n] = ids[n];
        attempts[n] = r->attempt;
        until[n] = now + vis;
        r->renew_at_ms = now + vis / 3;
        r->leased_until_ms = now + vis;
        n++;
    }
    pthread_mutex_unlock(&j->lock);
    struct thaw_err err = {0};
    if (n && store_job_renew(j->cfg.store, idp, attempts, until, n, &err))
        OBS_LOG(LOG_ERROR, "job_renew_failed", LOG_S("error", err.msg));
}

/* Expiry passes run when a result is due to expire (and every ten minutes
 * for tombstones and keys), not on every tick: an idle node stays idle. */
static void maintain(struct jobs *j, int64_t now)
{
    if (now < j->next_expire_ms) return;
    pthread_mutex_lock(&j->lock);
    bool due = now >= j->expire_due_ms;
    if (due) j->expire_due_ms = now + 600000;
    pthread_mutex_unlock(&j->lock);
    if (!due) return;
    j->next_expire_ms = now + EXPIRE_EVERY_MS;
    struct thaw_err err = {0};
    int n = store_job_expire(j->cfg.store, now, j->cfg.tombstone_ms, &err);
    if (n < 0)
        OBS_LOG(LOG_ERROR, "job_expire_failed", LOG_S("error", err.msg));
    else if (n > 0)
        OBS_LOG(LOG_INFO, "job_results_expired", LOG_I("jobs", n));
}

/* Queue depth and in-flight per deployment, for /metrics. */
static void gauges(struct jobs *j)
{
    if (!j->f_unfinished || !j->f_running) return;
    pthread_mutex_lock(&j->lock);
    for (struct jdep *d = j->deps; d; d = d->next) {
        const char *l[] = {d->name};
        obs_metric_set(obs_metric_series(j->f_unfinished, l), d->active);
        obs_metric_set(obs_metric_series(j->f_running, l), d->inflight);
    }
    pthread_mutex_unlock(&j->lock);
}

void *jobs_runner_main(void *arg)
{
    struct jobs *j = arg;
    for (;;) {
        jobs_runner_flush(j);
        int64_t now = jobs_wall_ms();
        lease_due(j, now);
        renew(j, now);
        maintain(j, now);
        gauges(j);
        jobs_fire_waiters(j, NULL, now);
        pthread_mutex_lock(&j->lock);
        if (j->stopping) {
            pthread_mutex_unlock(&j->lock);
            break;
        }
        bool kicked = false;
        for (struct jdep *d = j->deps; d && !kicked; d = d->next)
            kicked = d->kick && d->active > d->inflight && d->inflight < d->capacity;
        if (!j->done_head && (!kicked || j->draining)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 50 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&j->runner_cv, &j->lock, &ts);
        }
        pthread_mutex_unlock(&j->lock);
    }
    return NULL;
}
