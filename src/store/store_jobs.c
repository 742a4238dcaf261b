/* Dispatch of the store's jobs section to the implementation, and the
 * helpers that free what the store hands out. */
#include "store/store_int.h"

#include <stdlib.h>

#define JOBS_OPS(s, err)                                                                           \
    do {                                                                                           \
        if (!(s)->jobs_ops) return thaw_errf(err, THAW_EUNSUPPORTED, "store keeps no jobs");       \
    } while (0)

void store_job_clear(struct store_job *j)
{
    if (!j) return;
    free(j->input);
    free(j->result);
    free(j->webhook);
    for (size_t i = 0; i < j->n_attempt_log; i++)
        free(j->attempt_log[i].message);
    free(j->attempt_log);
    j->input = j->result = j->webhook = NULL;
    j->attempt_log = NULL;
    j->n_attempt_log = 0;
}

void store_webhook_clear(struct store_webhook *w)
{
    if (!w) return;
    free(w->url);
    free(w->body);
    w->url = w->body = NULL;
}

int store_job_submit(struct store *s, struct store_job_submit *subs, size_t n, int64_t now_ms,
                     struct thaw_err *err)
{
    JOBS_OPS(s, err);
    return s->jobs_ops->submit(s, subs, n, now_ms, err);
}

int store_job_lease(struct store *s, const char *deployment, int64_t now_ms, int64_t lease_until_ms,
                    struct store_job_lease *out, int max, struct thaw_err *err)
{
    JOBS_OPS(s, err);
    return s->jobs_ops->lease(s, deployment, now_ms, lease_until_ms, out, max, err);
}

int store_job_renew(struct store *s, const char *const *ids, const int *attempts,
                    const int64_t *until_ms, size_t n, struct thaw_err *err)
{
    JOBS_OPS(s, err);
    return s->jobs_ops->renew(s, ids, attempts, until_ms, n, err);
}

int store_job_complete(struct store *s, struct store_job_outcome *o, size_t n, struct thaw_err *err)
{
    JOBS_OPS(s, err);
    return s->jobs_ops->complete(s, o, n, err);
}

int store_job_get(struct store *s, const char *id, bool with_data, struct store_job *out,
                  struct thaw_err *err)
{
    JOBS_OPS(s, err);
    return s->jobs_ops->get(s, id, with_data, out, err);
}

int store_job_list(struct store *s, const struct store_job_filter *f, store_job_cb cb, void *ctx,
                   struct thaw_err *err)
{
    JOBS_OPS(s, err);
    return s->jobs_ops->list(s, f, cb, ctx, err);
}

int store_job_cancel(struct store *s, const char *id, int64_t now_ms, int64_t expires_ms,
                     int *prev_state, struct thaw_err *err)
{
    JOBS_OPS(s, err);
    return s->jobs_ops->cancel(s, id, now_ms, expires_ms, prev_state, err);
}

int store_job_replay(struct store *s, const char *id, const char *deployment, const char *tenant,
                     int64_t now_ms, void (*cb)(void *ctx, const char *deployment), void *ctx,
                     int *n, struct thaw_err *err)
{
    JOBS_OPS(s, err);
    return s->jobs_ops->replay(s, id, deployment, tenant, now_ms, cb, ctx, n, err);
}

int store_job_purge(struct store *s, const char *id, const char *deployment, const char *tenant,
                    int *n, struct thaw_err *err)
{
    JOBS_OPS(s, err);
    return s->jobs_ops->purge(s, id, deployment, tenant, n, err);
}

int store_job_recover(struct store *s, int64_t now_ms, struct thaw_err *err)
{
    JOBS_OPS(s, err);
    return s->jobs_ops->recover(s, now_ms, err);
}

int store_job_active_counts(struct store *s, void (*cb)(void *ctx, const char *deployment, int n),
                            void *ctx, struct thaw_err *err)
{
    JOBS_OPS(s, err);
    return s->jobs_ops->active_counts(s, cb, ctx, err);
}

int store_job_expire(struct store *s, int64_t now_ms, int64_t tombstone_ms, struct thaw_err *err)
{
    JOBS_OPS(s, err);
    return s->jobs_ops->expire(s, now_ms, tombstone_ms, err);
}

int store_webhook_due(struct store *s, int64_t now_ms, struct store_webhook *out, int max,
                      struct thaw_err *err)
{
    JOBS_OPS(s, err);
    return s->jobs_ops->webhook_due(s, now_ms, out, max, err);
}

int store_webhook_update(struct store *s, int64_t id, int state, int attempts, int64_t next_ms,
                         const char *last_error, struct thaw_err *err)
{
    JOBS_OPS(s, err);
    return s->jobs_ops->webhook_update(s, id, state, attempts, next_ms, last_error, err);
}

int store_webhook_next(struct store *s, int64_t *next_ms, struct thaw_err *err)
{
    JOBS_OPS(s, err);
    return s->jobs_ops->webhook_next(s, next_ms, err);
}

int store_webhook_list(struct store *s, int state, int limit, store_webhook_cb cb, void *ctx,
                       struct thaw_err *err)
{
    JOBS_OPS(s, err);
    return s->jobs_ops->webhook_list(s, state, limit, cb, ctx, err);
}

int store_webhook_replay(struct store *s, int64_t id, int64_t now_ms, int *n, struct thaw_err *err)
{
    JOBS_OPS(s, err);
    return s->jobs_ops->webhook_replay(s, id, now_ms, n, err);
}

int store_webhook_purge(struct store *s, int64_t id, int *n, struct thaw_err *err)
{
    JOBS_OPS(s, err);
    return s->jobs_ops->webhook_purge(s, id, n, err);
}
