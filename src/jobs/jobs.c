/* The jobs object's life, the per-deployment settings read from the store,
 * the seal/open hook for user content, the retry policy, and the API that
 * reads and changes jobs (views, cancel, dead letters, webhook letters). */
#include "jobs/jobs_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- small helpers ---- */

int64_t jobs_wall_ms(void)
{
    return time_wall_ms();
}

uint64_t jobs_random(struct jobs *j)
{
    /* xorshift64*, seeded from the kernel; called with the lock held. */
    uint64_t x = j->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    j->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* ---- policy ---- */

enum jobs_verdict jobs_classify(int status, const char *code, bool by_function, int attempt,
                                int max_attempts)
{
    if (status >= 200 && status < 300) return JOBS_SUCCEED;
    if (status == 503 || status == 429) {
        if (!by_function) return JOBS_RELEASE;
        return attempt < max_attempts ? JOBS_RETRY : JOBS_DEAD;
    }
    if (status >= 400 && status < 500) return JOBS_FAIL;
    return attempt < max_attempts ? JOBS_RETRY : JOBS_DEAD;
}

int64_t jobs_backoff_ms(int attempt, int64_t base_ms, int64_t cap_ms, uint64_t rnd)
{
    if (attempt < 1) attempt = 1;
    if (base_ms <= 0 || cap_ms <= 0) return 0;
    int64_t ceiling = base_ms;
    for (int i = 1; i < attempt && ceiling < cap_ms; i++)
        ceiling = ceiling > INT64_MAX / 2 ? INT64_MAX : ceiling * 2;
    if (ceiling > cap_ms) ceiling = cap_ms;
    return (int64_t)(rnd % ((uint64_t)ceiling + 1));
}

static const char *const state_names[] = {"queued", "running", "succeeded",
                                          "failed", "dead",    "cancelled"};

const char *jobs_state_name(int state)
{
    return state >= 0 && state < (int)ARRAY_LEN(state_names) ? state_names[state] : "unknown";
}

int jobs_state_parse(const char *name)
{
    for (int i = 0; name && i < (int)ARRAY_LEN(state_names); i++)
        if (strcmp(state_names[i], name) == 0) return i;
    return -1;
}

/* ---- seal/open: the codec's (per-tenant keys), identity without one ---- */

static int copy_bytes(const char *in, size_t len, char **out, size_t *out_len)
{
    *out = malloc(len + 1);
    if (!*out) return THAW_ENOMEM;
    if (len) memcpy(*out, in, len);
    (*out)[len] = 0;
    *out_len = len;
    return 0;
}

int jobs_seal(struct jobs *j, const char *tenant, const char *deployment, const char *in,
              size_t len, char **out, size_t *out_len)
{
    const struct jobs_codec *c = j->cfg.codec;
    if (c) return c->seal(c->ctx, tenant ? tenant : "", deployment, in, len, out, out_len);
    return copy_bytes(in, len, out, out_len);
}

int jobs_open(struct jobs *j, const char *deployment, const char *in, size_t len, char **out,
              size_t *out_len)
{
    const struct jobs_codec *c = j->cfg.codec;
    if (c && in && len) return c->open(c->ctx, in, len, out, out_len);
    return copy_bytes(in ? in : "", in ? len : 0, out, out_len);
}

/* ---- deployments ---- */

static void dep_refresh(struct jobs *j, struct jdep *d)
{
    char *spec_json = NULL;
    struct deploy_spec *spec = NULL;
    d->fetched_ms = time_now_ns() / 1000000;
    if (store_deployment_get(j->cfg.store, d->name, &spec_json, NULL) == 0) {
        json_t *v = json_loads(spec_json, 0, NULL);
        if (v) registry_spec_from_json(v, &spec, NULL);
        json_decref(v);
    }
    free(spec_json);
    d->exists = spec != NULL;
    if (!spec) return;
    d->cfg = spec->jobs;
    d->webhook_buf[0] = 0;
    if (spec->jobs.webhook) str_copy(d->webhook_buf, spec->jobs.webhook, sizeof(d->webhook_buf));
    d->cfg.webhook = d->webhook_buf[0] ? d->webhook_buf : NULL;
    int64_t cap = spec->jobs.concurrency > 0
                      ? spec->jobs.concurrency
                      : (int64_t)spec->scale.max_instances * spec->concurrency;
    d->capacity = (int)MAX(1, MIN(cap, 100000));
    registry_spec_free(spec);
}

struct jdep *jobs_dep(struct jobs *j, const char *name)
{
    struct jdep *d;
    for (d = j->deps; d; d = d->next)
        if (strcmp(d->name, name) == 0) break;
    if (!d) {
        d = calloc(1, sizeof(*d));
        if (!d) return NULL;
        str_copy(d->name, name, sizeof(d->name));
        d->next = j->deps;
        j->deps = d;
    }
    if (d->fetched_ms == 0 || time_now_ns() / 1000000 >= d->fetched_ms + 1000) dep_refresh(j, d);
    return d;
}

/* ---- waiters ---- */

void jobs_fire_waiters(struct jobs *j, const char *id, int64_t now_ms)
{
    struct jwaiter *fire = NULL;
    pthread_mutex_lock(&j->wait_lock);
    for (struct jwaiter **pw = &j->waiters; *pw;) {
        struct jwaiter *w = *pw;
        bool hit = id ? strcmp(w->id, id) == 0 : (now_ms == 0 || w->deadline_ms <= now_ms);
        if (hit) {
            *pw = w->next;
            w->next = fire;
            fire = w;
        } else {
            pw = &w->next;
        }
    }
    pthread_mutex_unlock(&j->wait_lock);
    while (fire) {
        struct jwaiter *w = fire;
        fire = w->next;
        w->cb(w->ctx);
        free(w);
    }
}

static bool state_final(int st)
{
    return st >= STORE_JOB_SUCCEEDED;
}

void jobs_watch(struct jobs *j, const char *id, int64_t timeout_ms, void (*cb)(void *ctx),
                void *ctx)
{
    struct jwaiter *w = calloc(1, sizeof(*w));
    if (!w) {
        cb(ctx);
        return;
    }
    str_copy(w->id, id, sizeof(w->id));
    w->deadline_ms = jobs_wall_ms() + timeout_ms;
    w->cb = cb;
    w->ctx = ctx;
    pthread_mutex_lock(&j->wait_lock);
    /* Checked under the lock the runner fires waiters under, so an end
     * committed after this read is sure to find the waiter. */
    struct store_job job;
    bool now = atomic_load(&j->draining_flag);
    if (!now && store_job_get(j->cfg.store, id, false, &job, NULL) == 0) {
        now = state_final(job.state);
        store_job_clear(&job);
    } else {
        now = true;
    }
    if (!now) {
        w->next = j->waiters;
        j->waiters = w;
    }
    pthread_mutex_unlock(&j->wait_lock);
    if (now) {
        cb(ctx);
        free(w);
    }
}

/* ---- views ---- */

static json_t *ms_or_null(int64_t ms)
{
    return ms > 0 ? json_integer(ms) : json_null();
}

static json_t *opened_json(struct jobs *j, const char *dep, const char *data, size_t len,
                           bool as_text)
{
    char *plain = NULL;
    size_t n = 0;
    if (!data || jobs_open(j, dep, data, len, &plain, &n)) return json_null();
    json_t *v = as_text ? NULL : json_loadb(plain, n, JSON_DECODE_ANY, NULL);
    if (!v) v = json_stringn(plain, n);
    free(plain);
    return v ? v : json_null();
}

static json_t *attempt_view(struct jobs *j, const struct store_job *job,
                            const struct store_job_attempt *a)
{
    json_t *o =
        json_pack("{s:i, s:I, s:I, s:i}", "attempt", a->n, "started_ms", (json_int_t)a->started_ms,
                  "ended_ms", (json_int_t)a->ended_ms, "status", a->status);
    if (o && a->version > 0) {
        char v[16];
        snprintf(v, sizeof(v), "v%d", a->version);
        json_object_set_new(o, "version", json_string(v));
    }
    if (o && a->code[0])
        json_object_set_new(
            o, "error",
            json_pack("{s:s, s:o}", "code", a->code, "message",
                      opened_json(j, job->deployment, a->message, a->message_len, true)));
    return o;
}

static json_t *job_view(struct jobs *j, const struct store_job *job, bool with_data)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:i, s:I, s:I, s:o, s:o, s:b, s:o}", "id", job->id,
                          "deployment", job->deployment, "state", jobs_state_name(job->state),
                          "attempts", job->attempts, "max_attempts", job->max_attempts,
                          "created_ms", (json_int_t)job->created_ms, "updated_ms",
                          (json_int_t)job->updated_ms, "finished_ms", ms_or_null(job->finished_ms),
                          "expires_ms", ms_or_null(job->expires_ms), "expired", job->expired,
                          "webhook", job->webhook ? json_string(job->webhook) : json_null());
    if (!o) return NULL;
    if (job->state == STORE_JOB_QUEUED && job->run_at_ms > jobs_wall_ms())
        json_object_set_new(o, "next_attempt_ms", json_integer(job->run_at_ms));
    if (!with_data) return o;
    json_t *log = json_array();
    for (size_t i = 0; i < job->n_attempt_log; i++)
        json_array_append_new(log, attempt_view(j, job, &job->attempt_log[i]));
    json_object_set_new(o, "attempt_log", log);
    /* The version that served the job: its last attempt's. */
    const struct store_job_attempt *last_a =
        job->n_attempt_log ? &job->attempt_log[job->n_attempt_log - 1] : NULL;
    if (last_a && last_a->version > 0) {
        char v[16];
        snprintf(v, sizeof(v), "v%d", last_a->version);
        json_object_set_new(o, "version", json_string(v));
    }
    if (job->state == STORE_JOB_SUCCEEDED && job->result)
        json_object_set_new(o, "result",
                            opened_json(j, job->deployment, job->result, job->result_len, false));
    if ((job->state == STORE_JOB_FAILED || job->state == STORE_JOB_DEAD) && job->n_attempt_log) {
        const struct store_job_attempt *last = &job->attempt_log[job->n_attempt_log - 1];
        json_t *e = attempt_view(j, job, last);
        json_t *err = json_incref(json_object_get(e, "error"));
        if (err) json_object_set_new(err, "status", json_integer(last->status));
        json_decref(e);
        json_object_set_new(o, "error", err ? err : json_null());
    }
    return o;
}

int jobs_get(struct jobs *j, const char *id, json_t **out, struct thaw_err *err)
{
    struct store_job job;
    int rc = store_job_get(j->cfg.store, id, true, &job, err);
    if (rc) return rc;
    *out = job_view(j, &job, true);
    store_job_clear(&job);
    return *out ? 0 : thaw_errf(err, THAW_ENOMEM, "out of memory");
}

int jobs_whose(struct jobs *j, const char *id, char tenant[64],
               char deployment[DEPLOY_NAME_MAX + 1], struct thaw_err *err)
{
    struct store_job job;
    int rc = store_job_get(j->cfg.store, id, false, &job, err);
    if (rc) return rc;
    str_copy(tenant, job.tenant, 64);
    str_copy(deployment, job.deployment, DEPLOY_NAME_MAX + 1);
    store_job_clear(&job);
    return 0;
}

int jobs_cancel(struct jobs *j, const char *id, json_t **out, struct thaw_err *err)
{
    struct store_job job;
    int rc = store_job_get(j->cfg.store, id, false, &job, err);
    if (rc) return rc;
    pthread_mutex_lock(&j->lock);
    struct jdep *d = jobs_dep(j, job.deployment);
    int64_t ttl = d && d->exists ? d->cfg.result_ttl_ms : 86400000;
    pthread_mutex_unlock(&j->lock);
    int64_t now = jobs_wall_ms();
    int prev = 0;
    rc = store_job_cancel(j->cfg.store, id, now, now + ttl, &prev, err);
    if (!rc) {
        /* The store says cancelled first, so whatever the attempt answers
         * from here on loses its lease and is discarded: one final state
         * however the answer and the cancel race. Then the attempt is
         * stopped, so the instance's slot is free at once rather than when
         * a long generation would have ended. The run stays in the list
         * (not freed) until the runner flushes its answer, which needs this
         * lock: it is safe to hand to scale_cancel here. */
        int stopped = 0;
        pthread_mutex_lock(&j->lock);
        if ((d = jobs_dep(j, job.deployment)) && d->active > 0) d->active--;
        if (now + ttl < j->expire_due_ms) j->expire_due_ms = now + ttl;
        for (struct jrun *r = j->running; r && j->cfg.scale; r = r->next) {
            if (r->released || strcmp(r->id, id) != 0) continue;
            if (r->submitted)
                scale_cancel(j->cfg.scale, &r->inv, SCALE_CANCEL_JOB_CANCELLED);
            else
                r->cancel_wanted = true;
            stopped++;
        }
        if (prev == STORE_JOB_RUNNING && !stopped && j->cfg.scale) {
            unsigned k = j->n_unlisted_cancels++ % ARRAY_LEN(j->unlisted_cancels);
            str_copy(j->unlisted_cancels[k].id, id, sizeof(j->unlisted_cancels[k].id));
        }
        pthread_mutex_unlock(&j->lock);
        const char *was = jobs_state_name(prev);
        if (j->f_cancelled)
            obs_metric_add(obs_metric_series(j->f_cancelled,
                                             (const char *[]){job.deployment, was ? was : "?"}),
                           1);
        OBS_LOG(LOG_INFO, "job_cancelled", LOG_S("job", id), LOG_S("deployment", job.deployment),
                LOG_S("was", was), LOG_I("stopped", stopped));
        jobs_fire_waiters(j, id, 0);
    }
    store_job_clear(&job);
    if (rc) return rc;
    return jobs_get(j, id, out, err);
}

struct list_ctx {
    struct jobs *j;
    json_t *arr;
    char last[STORE_JOB_ID_MAX + 1];
    int n;
};

static int list_cb(void *arg, const struct store_job *job)
{
    struct list_ctx *c = arg;
    json_t *v = job_view(c->j, job, false);
    if (v) json_array_append_new(c->arr, v);
    str_copy(c->last, job->id, sizeof(c->last));
    c->n++;
    return 0;
}

int jobs_list(struct jobs *j, const char *deployment, const char *tenant, const char *state,
              const char *after, int limit, json_t **out, struct thaw_err *err)
{
    int st = -1;
    if (state && (st = jobs_state_parse(state)) < 0)
        return thaw_errf(err, THAW_EINVAL,
                         "unknown state '%s' (queued, running, succeeded, failed, dead, "
                         "cancelled)",
                         state);
    if (limit <= 0 || limit > 1000) limit = 100;
    struct list_ctx c = {j, json_array(), "", 0};
    struct store_job_filter f = {deployment, st, after, limit, tenant};
    int rc = store_job_list(j->cfg.store, &f, list_cb, &c, err);
    if (rc) {
        json_decref(c.arr);
        return rc;
    }
    *out = json_pack("{s:o, s:o}", "jobs", c.arr, "next",
                     c.n == limit ? json_string(c.last) : json_null());
    return *out ? 0 : thaw_errf(err, THAW_ENOMEM, "out of memory");
}

struct names {
    char (*v)[DEPLOY_NAME_MAX + 1];
    size_t n, cap;
};

static void replayed(void *arg, const char *deployment)
{
    struct names *ns = arg;
    if (ns->n == ns->cap) {
        size_t cap = ns->cap ? ns->cap * 2 : 16;
        void *p = realloc(ns->v, cap * sizeof(*ns->v));
        if (!p) return;
        ns->v = p;
        ns->cap = cap;
    }
    str_copy(ns->v[ns->n++], deployment, sizeof(ns->v[0]));
}

int jobs_dlq_replay(struct jobs *j, const char *id, const char *deployment, const char *tenant,
                    int *n, struct thaw_err *err)
{
    struct names ns = {0};
    int rc = store_job_replay(j->cfg.store, id, deployment, tenant, jobs_wall_ms(), replayed, &ns,
                              n, err);
    pthread_mutex_lock(&j->lock);
    for (size_t i = 0; i < ns.n; i++) {
        struct jdep *d = jobs_dep(j, ns.v[i]);
        if (d) {
            d->active++;
            d->kick = true;
        }
    }
    pthread_cond_signal(&j->runner_cv);
    pthread_mutex_unlock(&j->lock);
    free(ns.v);
    return rc;
}

int jobs_dlq_purge(struct jobs *j, const char *id, const char *deployment, const char *tenant,
                   int *n, struct thaw_err *err)
{
    return store_job_purge(j->cfg.store, id, deployment, tenant, n, err);
}

static const char *const hook_states[] = {"pending", "delivered", "dead"};

static int hook_cb(void *arg, const struct store_webhook *w)
{
    json_t *v = json_pack("{s:I, s:s, s:s, s:s, s:i, s:I, s:I, s:s}", "id", (json_int_t)w->id,
                          "job_id", w->job_id, "url", w->url ? w->url : "", "state",
                          w->state >= 0 && w->state <= 2 ? hook_states[w->state] : "unknown",
                          "attempts", w->attempts, "next_ms", (json_int_t)w->next_ms, "created_ms",
                          (json_int_t)w->created_ms, "last_error", w->last_error);
    if (v) json_array_append_new(arg, v);
    return 0;
}

int jobs_webhook_list(struct jobs *j, const char *state, int limit, json_t **out,
                      struct thaw_err *err)
{
    int st = -1;
    for (int i = 0; state && i < 3; i++)
        if (strcmp(state, hook_states[i]) == 0) st = i;
    if (state && st < 0)
        return thaw_errf(err, THAW_EINVAL, "unknown state '%s' (pending, delivered, dead)", state);
    json_t *arr = json_array();
    int rc = store_webhook_list(j->cfg.store, st, limit, hook_cb, arr, err);
    if (rc) {
        json_decref(arr);
        return rc;
    }
    *out = json_pack("{s:o}", "webhooks", arr);
    return 0;
}

int jobs_webhook_replay(struct jobs *j, int64_t id, int *n, struct thaw_err *err)
{
    int rc = store_webhook_replay(j->cfg.store, id, jobs_wall_ms(), n, err);
    pthread_mutex_lock(&j->lock);
    j->hook_kick = true;
    pthread_cond_signal(&j->hook_cv);
    pthread_mutex_unlock(&j->lock);
    return rc;
}

int jobs_webhook_purge(struct jobs *j, int64_t id, int *n, struct thaw_err *err)
{
    return store_webhook_purge(j->cfg.store, id, n, err);
}

/* ---- life ---- */

struct jobs *jobs_new(const struct jobs_config *cfg, struct thaw_err *err)
{
    struct jobs *j = calloc(1, sizeof(*j));
    if (!j) {
        thaw_errf(err, THAW_ENOMEM, "out of memory");
        return NULL;
    }
    j->cfg = *cfg;
    if (j->cfg.idempotency_ttl_ms <= 0) j->cfg.idempotency_ttl_ms = 86400000;
    if (j->cfg.tombstone_ms <= 0) j->cfg.tombstone_ms = 7LL * 86400000;
    if (j->cfg.webhook_max_attempts <= 0) j->cfg.webhook_max_attempts = 5;
    if (j->cfg.webhook_backoff_base_ms <= 0) j->cfg.webhook_backoff_base_ms = 1000;
    if (j->cfg.webhook_backoff_cap_ms <= 0) j->cfg.webhook_backoff_cap_ms = 300000;
    if (j->cfg.webhook_timeout_ms <= 0) j->cfg.webhook_timeout_ms = 10000;
    j->secret = cfg->webhook_secret ? str_dup(cfg->webhook_secret) : NULL;
    j->allow = cfg->webhook_allow ? str_dup(cfg->webhook_allow) : NULL;
    j->cfg.webhook_secret = j->secret;
    j->cfg.webhook_allow = j->allow;
    pthread_mutex_init(&j->lock, NULL);
    pthread_mutex_init(&j->wait_lock, NULL);
    pthread_cond_init(&j->runner_cv, NULL);
    pthread_cond_init(&j->commit_cv, NULL);
    pthread_cond_init(&j->hook_cv, NULL);
    if (random_bytes(&j->rng, sizeof(j->rng)) || j->rng == 0) j->rng = 0x9E3779B97F4A7C15ULL;
    j->f_unfinished =
        obs_metric_family("thaw_jobs_unfinished", "Jobs queued or running.", METRIC_GAUGE,
                          (const char *[]){"deployment", NULL}, NULL, 0);
    j->f_running = obs_metric_family("thaw_jobs_running", "Jobs handed to instances.", METRIC_GAUGE,
                                     (const char *[]){"deployment", NULL}, NULL, 0);
    j->f_attempts =
        obs_metric_family("thaw_job_attempts_total",
                          "Job attempts by outcome (succeeded, retry, failed, dead, released).",
                          METRIC_COUNTER, (const char *[]){"deployment", "outcome", NULL}, NULL, 0);
    j->f_webhooks =
        obs_metric_family("thaw_webhook_deliveries_total", "Webhook delivery attempts by outcome.",
                          METRIC_COUNTER, (const char *[]){"outcome", NULL}, NULL, 0);
    j->f_cancelled = obs_metric_family(
        "thaw_jobs_cancelled_total", "Jobs cancelled, by the state they were in (queued, running).",
        METRIC_COUNTER, (const char *[]){"deployment", "state", NULL}, NULL, 0);
    return j;
}

static void count_cb(void *arg, const char *deployment, int n)
{
    struct jobs *j = arg;
    struct jdep *d = jobs_dep(j, deployment);
    if (d) {
        d->active = n;
        d->kick = true;
    }
}

int jobs_start(struct jobs *j, struct thaw_err *err)
{
    int n = store_job_recover(j->cfg.store, jobs_wall_ms(), err);
    if (n < 0) return n;
    pthread_mutex_lock(&j->lock);
    int rc = store_job_active_counts(j->cfg.store, count_cb, j, err);
    pthread_mutex_unlock(&j->lock);
    if (rc) return rc;
    if (pthread_create(&j->committer, NULL, jobs_committer_main, j))
        return thaw_errf(err, THAW_EIO, "cannot start the job committer");
    if (pthread_create(&j->runner, NULL, jobs_runner_main, j)) {
        pthread_mutex_lock(&j->lock);
        j->stopping = true;
        pthread_cond_broadcast(&j->commit_cv);
        pthread_mutex_unlock(&j->lock);
        pthread_join(j->committer, NULL);
        return thaw_errf(err, THAW_EIO, "cannot start the job runner");
    }
    if (pthread_create(&j->hooker, NULL, jobs_webhook_main, j)) {
        pthread_mutex_lock(&j->lock);
        j->stopping = true;
        pthread_cond_broadcast(&j->commit_cv);
        pthread_cond_broadcast(&j->runner_cv);
        pthread_mutex_unlock(&j->lock);
        pthread_join(j->committer, NULL);
        pthread_join(j->runner, NULL);
        return thaw_errf(err, THAW_EIO, "cannot start the webhook sender");
    }
    j->started = true;
    return 0;
}

void jobs_drain(struct jobs *j)
{
    pthread_mutex_lock(&j->lock);
    j->draining = true;
    atomic_store(&j->draining_flag, true);
    pthread_cond_broadcast(&j->runner_cv);
    pthread_mutex_unlock(&j->lock);
    jobs_fire_waiters(j, NULL, 0);
}

int jobs_running(struct jobs *j)
{
    return atomic_load(&j->n_running);
}

void jobs_free(struct jobs *j)
{
    if (!j) return;
    pthread_mutex_lock(&j->lock);
    j->stopping = true;
    j->draining = true;
    atomic_store(&j->draining_flag, true);
    pthread_cond_broadcast(&j->runner_cv);
    pthread_cond_broadcast(&j->commit_cv);
    pthread_cond_broadcast(&j->hook_cv);
    pthread_mutex_unlock(&j->lock);
    if (j->started) {
        pthread_join(j->committer, NULL);
        pthread_join(j->runner, NULL);
        pthread_join(j->hooker, NULL);
    }
    /* Answers that came after the runner stopped are recorded; jobs with no
     * answer go back to the queue. */
    jobs_runner_flush(j);
    jobs_release_all(j);
    jobs_fire_waiters(j, NULL, 0);
    pthread_mutex_lock(&j->lock);
    while (j->done_head) {
        struct jrun *r = j->done_head;
        j->done_head = r->next_done;
        free(r->payload);
        free(r->webhook);
        free(r->inv.input);
        free(r);
    }
    pthread_mutex_unlock(&j->lock);
    while (j->deps) {
        struct jdep *d = j->deps;
        j->deps = d->next;
        free(d);
    }
    free(j->pending);
    free(j->secret);
    free(j->allow);
    pthread_mutex_destroy(&j->lock);
    pthread_mutex_destroy(&j->wait_lock);
    pthread_cond_destroy(&j->runner_cv);
    pthread_cond_destroy(&j->commit_cv);
    pthread_cond_destroy(&j->hook_cv);
    free(j);
}
