/* Submissions: checked at once (deployment, queue limit), then committed by
 * one thread in groups, so one fsync makes many concurrent submissions
 * durable before any of them is acknowledged. */
#include "jobs/jobs_int.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PENDING_ITEMS_MAX 200000

static void finish(struct jobs_request *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void finish(struct jobs_request *r, int status, const char *code, const char *fmt, ...)
{
    r->status = status;
    r->code = code;
    r->message[0] = 0;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->message, sizeof(r->message), fmt, ap);
        va_end(ap);
    }
    r->done(r);
}

bool jobs_idem_key_valid(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > 255) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] < 0x21 || (unsigned char)k[i] > 0x7e) return false;
    return true;
}

static bool url_valid(const char *u)
{
    size_t n = strlen(u);
    if (n > 2048 || (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)u[i] <= ' ' || u[i] == 0x7f) return false;
    return true;
}

/* The identity of a submission for its idempotency key: what it asks for,
 * not how it was spelled on the wire beyond the compact inputs. */
static void request_hash(const struct jobs_request *r, const char *webhook, uint8_t out[32])
{
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const unsigned char *)r->deployment, strlen(r->deployment) + 1);
    const char *w = webhook ? webhook : "";
    crypto_hash_sha256_update(&st, (const unsigned char *)w, strlen(w) + 1);
    for (size_t i = 0; i < r->n; i++) {
        uint64_t len = r->input_lens[i];
        crypto_hash_sha256_update(&st, (const unsigned char *)&len, sizeof(len));
        crypto_hash_sha256_update(&st, (const unsigned char *)r->inputs[i], r->input_lens[i]);
    }
    crypto_hash_sha256_final(&st, out);
}

void jobs_submit(struct jobs *j, struct jobs_request *r)
{
    r->ids = NULL;
    r->retry_after_s = 0;
    if (r->n == 0 || r->n > JOBS_BATCH_MAX)
        return finish(r, 400, "invalid_request", "a submission holds 1 to %d inputs",
                      JOBS_BATCH_MAX);
    if (r->idem_key && strlen(r->idem_key) > 512)
        return finish(r, 400, "invalid_idempotency_key", "Idempotency-Key is too long");
    if (r->webhook && !url_valid(r->webhook))
        return finish(r, 400, "invalid_webhook",
                      "webhook must be an http:// or https:// URL of at most 2048 characters");
    r->ids = calloc(r->n, sizeof(*r->ids));
    if (!r->ids) return finish(r, 503, "overloaded", "out of memory");
    for (size_t i = 0; i < r->n; i++) {
        char hex[33];
        random_hex_id(hex);
        snprintf(r->ids[i], sizeof(r->ids[i]), "job_%s", hex);
    }
    pthread_mutex_lock(&j->lock);
    struct jdep *d = jobs_dep(j, r->deployment);
    int status = 0, limit = 0;
    if (!d)
        status = 503;
    else if (!d->exists)
        status = 404;
    else if (d->active + (int64_t)r->n > d->cfg.queue_limit)
        status = 429;
    else if (j->stopping || j->pending_items + r->n > PENDING_ITEMS_MAX)
        status = 503;
    if (status == 0) {
        d->active += (int)r->n;
        if (j->n_pending == j->cap_pending) {
            size_t cap = j->cap_pending ? j->cap_pending * 2 : 64;
            struct jobs_request **p = realloc(j->pending, cap * sizeof(*p));
            if (p) {
                j->pending = p;
                j->cap_pending = cap;
            }
        }
        if (j->n_pending < j->cap_pending) {
            j->pending[j->n_pending++] = r;
            j->pending_items += r->n;
            pthread_cond_signal(&j->commit_cv);
        } else {
            d->active -= (int)r->n;
            status = 503;
        }
    }
    if (d) limit = d->cfg.queue_limit;
    pthread_mutex_unlock(&j->lock);
    if (status == 0) return;
    r->retry_after_s = 1;
    if (status == 404)
        finish(r, 404, "not_found", "deployment '%s' not found", r->deployment);
    else if (status == 429)
        finish(r, 429, "queue_full", "deployment '%s' has %d unfinished jobs, its limit",
               r->deployment, limit);
    else
        finish(r, 503, "overloaded", "the job queue is not accepting submissions right now");
}

/* ---- the committer ---- */

struct batch {
    struct jobs_request **reqs;
    size_t n_reqs;
    struct store_job_submit *subs;
    char **keys;
    char **sealed;
    size_t n_subs;
};

static int batch_build(struct jobs *j, struct batch *b, int64_t now)
{
    size_t total = 0;
    for (size_t i = 0; i < b->n_reqs; i++)
        total += b->reqs[i]->n;
    b->subs = calloc(total, sizeof(*b->subs));
    b->keys = calloc(total, sizeof(char *));
    b->sealed = calloc(total, sizeof(char *));
    if (!b->subs || !b->keys || !b->sealed) return THAW_ENOMEM;
    for (size_t i = 0; i < b->n_reqs; i++) {
        struct jobs_request *r = b->reqs[i];
        pthread_mutex_lock(&j->lock);
        struct jdep *d = jobs_dep(j, r->deployment);
        int max_attempts = d ? d->cfg.max_attempts : 3;
        pthread_mutex_unlock(&j->lock);
        uint8_t hash[32] = {0};
        if (r->idem_key) request_hash(r, r->webhook, hash);
        for (size_t k = 0; k < r->n; k++) {
            size_t s = b->n_subs++;
            struct store_job_submit *sub = &b->subs[s];
            sub->group_start = k == 0;
            str_copy(sub->id, r->ids[k], sizeof(sub->id));
            sub->deployment = r->deployment;
            sub->tenant = r->tenant;
            sub->key_id = r->key_id;
            if (jobs_seal(j, r->tenant, r->deployment, r->inputs[k], r->input_lens[k],
                          &b->sealed[s], &sub->input_len))
                return THAW_ENOMEM;
            sub->input = b->sealed[s];
            sub->webhook = r->webhook;
            sub->max_attempts = max_attempts;
            memcpy(sub->body_hash, hash, 32);
            sub->idem_expires_ms = now + j->cfg.idempotency_ttl_ms;
            if (r->idem_key) {
                struct buf kb = {0};
                if (r->n == 1)
                    buf_append_str(&kb, r->idem_key);
                else
                    buf_printf(&kb, "%s#%zu", r->idem_key, k);
                if (!kb.data) return THAW_ENOMEM;
                b->keys[s] = buf_steal(&kb);
                sub->idem_key = b->keys[s];
            }
        }
    }
    return 0;
}

static void batch_free(struct batch *b)
{
    for (size_t i = 0; i < b->n_subs; i++) {
        free(b->keys[i]);
        free(b->sealed[i]);
    }
    free(b->subs);
    free(b->keys);
    free(b->sealed);
    free(b->reqs);
}

/* Sets a request's status from its items' outcomes; returns how many of
 * its reserved queue places were not used. */
static int request_outcome(struct jobs_request *r, struct store_job_submit *subs)
{
    size_t created = 0, existing = 0, conflicts = 0;
    for (size_t k = 0; k < r->n; k++) {
        if (subs[k].outcome == THAW_ECONFLICT)
            conflicts++;
        else if (subs[k].outcome == THAW_EEXIST) {
            existing++;
            str_copy(r->ids[k], subs[k].existing_id, sizeof(r->ids[k]));
        } else
            created++;
    }
    r->code = NULL;
    r->message[0] = 0;
    if (conflicts) {
        r->status = 409;
        r->code = "idempotency_conflict";
        snprintf(r->message, sizeof(r->message),
                 "Idempotency-Key was already used for a different request");
        return (int)r->n;
    }
    r->status = created ? 202 : 200;
    return (int)existing;
}

static void commit_batch(struct jobs *j, struct batch *b)
{
    struct thaw_err err = {0};
    int64_t now = jobs_wall_ms();
    int rc = batch_build(j, b, now);
    if (!rc)
        rc = store_job_submit(j->cfg.store, b->subs, b->n_subs, now, &err);
    else
        thaw_errf(&err, rc, "out of memory");
    pthread_mutex_lock(&j->lock);
    size_t off = 0;
    for (size_t i = 0; i < b->n_reqs; i++) {
        struct jobs_request *r = b->reqs[i];
        int unused = (int)r->n;
        if (!rc) unused = request_outcome(r, &b->subs[off]);
        off += r->n;
        struct jdep *d = jobs_dep(j, r->deployment);
        if (d) {
            d->active -= unused;
            if (d->active < 0) d->active = 0;
            if (unused < (int)r->n) d->kick = true;
        }
    }
    j->pending_items -= off <= j->pending_items ? off : j->pending_items;
    pthread_cond_signal(&j->runner_cv);
    pthread_mutex_unlock(&j->lock);
    for (size_t i = 0; i < b->n_reqs; i++) {
        struct jobs_request *r = b->reqs[i];
        if (rc) {
            r->status = 503;
            r->code = "store_failed";
            r->retry_after_s = 1;
            str_copy(r->message, err.msg, sizeof(r->message));
        }
        r->done(r);
    }
}

void *jobs_committer_main(void *arg)
{
    struct jobs *j = arg;
    pthread_mutex_lock(&j->lock);
    for (;;) {
        while (!j->n_pending && !j->stopping)
            pthread_cond_wait(&j->commit_cv, &j->lock);
        if (!j->n_pending && j->stopping) break;
        struct batch b = {.reqs = j->pending, .n_reqs = j->n_pending};
        j->pending = NULL;
        j->n_pending = j->cap_pending = 0;
        pthread_mutex_unlock(&j->lock);
        commit_batch(j, &b);
        batch_free(&b);
        pthread_mutex_lock(&j->lock);
    }
    pthread_mutex_unlock(&j->lock);
    return NULL;
}
