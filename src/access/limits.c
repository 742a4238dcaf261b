/* Admission control for a request: the key's and its tenant's rate (GCRA),
 * concurrency and daily request quota. The most restrictive rate limit is
 * what the x-ratelimit-* headers report. */
#include "access/access_int.h"

#include <stdio.h>
#include <string.h>

int access_limits_from_json(const json_t *j, struct access_limits *out, struct thaw_err *err)
{
    memset(out, 0, sizeof(*out));
    if (!j || json_is_null(j)) return 0;
    if (!json_is_object(j)) return thaw_errf(err, THAW_EINVAL, "field 'limits' must be a map");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)j, key, v)
    {
        if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1e12)
            return thaw_errf(err, THAW_EINVAL, "field 'limits.%s' must be a non-negative number",
                             key);
        double d = json_number_value(v);
        if (!strcmp(key, "rps"))
            out->rps = d;
        else if (!strcmp(key, "burst"))
            out->burst = (uint32_t)d;
        else if (!strcmp(key, "concurrency"))
            out->concurrency = (uint32_t)d;
        else if (!strcmp(key, "daily_requests"))
            out->daily_requests = (uint64_t)d;
        else if (!strcmp(key, "daily_tokens"))
            out->daily_tokens = (uint64_t)d;
        else
            return thaw_errf(err, THAW_EINVAL, "unknown field 'limits.%s'", key);
    }
    if (out->rps > 0 && out->burst == 0) out->burst = out->rps < 1 ? 1 : (uint32_t)out->rps;
    return 0;
}

json_t *access_limits_to_json(const struct access_limits *l)
{
    return json_pack("{s:f, s:i, s:i, s:I, s:I}", "rps", l->rps, "burst", (int)l->burst,
                     "concurrency", (int)l->concurrency, "daily_requests",
                     (json_int_t)l->daily_requests, "daily_tokens", (json_int_t)l->daily_tokens);
}

static bool rate_check(struct access *a, const char *key, const struct access_limits *l,
                       uint64_t now, struct access_admission *out)
{
    if (l->rps <= 0) return true;
    struct security_rate_result r;
    if (security_ratelimit_check(a->rate, key, l->rps, l->burst, 1, now, &r)) return true;
    if (!out->has_rate || r.remaining < out->remaining) {
        out->has_rate = true;
        out->limit = r.limit;
        out->remaining = r.remaining;
        out->reset_s = r.reset_s;
    }
    if (!r.allowed) out->retry_after_s = MAX(out->retry_after_s, r.retry_after_s);
    return r.allowed;
}

/* kind ":" name, a limiter table's key ("t:acme", "k:<key id>"); not
 * snprintf, which costs more than the limiter itself on every request. */
static void limiter_key(char *out, size_t cap, char kind, const char *name)
{
    size_t n = strnlen(name, cap - 3);
    out[0] = kind;
    out[1] = ':';
    memcpy(out + 2, name, n);
    out[2 + n] = 0;
}

/* The limits of p's tenant and key, copied (all zero when unset). */
static void limits_of(struct access *a, const struct access_principal *p, struct access_limits *tl,
                      struct access_limits *kl)
{
    *tl = (struct access_limits){0};
    *kl = (struct access_limits){0};
    pthread_rwlock_rdlock(&a->lock);
    struct access_tenant *t = access_find_tenant(a, p->tenant);
    struct access_key *k = access_find_key(a, p->key_id);
    if (t) *tl = t->limits;
    if (k) *kl = k->limits;
    pthread_rwlock_unlock(&a->lock);
}

void access_admit(struct access *a, const struct access_principal *p, struct access_admission *out)
{
    memset(out, 0, sizeof(*out));
    struct access_limits tl, kl;
    limits_of(a, p, &tl, &kl);
    char tkey[80], kkey[40];
    limiter_key(tkey, sizeof(tkey), 't', p->tenant);
    limiter_key(kkey, sizeof(kkey), 'k', p->key_id);
    uint64_t now = time_now_ns();
    /* Check both so the headers describe the tighter one; a denial by either
     * denies. GCRA only spends from a bucket when it allows. */
    bool ok = rate_check(a, kkey, &kl, now, out);
    ok = rate_check(a, tkey, &tl, now, out) && ok;
    if (!ok) {
        out->reason = "rate";
        return;
    }
    if (kl.concurrency) {
        if (security_conc_acquire(a->conc, kkey, kl.concurrency, NULL)) {
            out->reason = "concurrency";
            out->retry_after_s = 1;
            return;
        }
        out->holds_key_slot = true;
    }
    if (tl.concurrency) {
        if (security_conc_acquire(a->conc, tkey, tl.concurrency, NULL)) {
            if (out->holds_key_slot) security_conc_release(a->conc, kkey);
            out->holds_key_slot = false;
            out->reason = "concurrency";
            out->retry_after_s = 1;
            return;
        }
        out->holds_tenant_slot = true;
    }
    struct security_quota_result q;
    int64_t wall_s = time_wall_ms() / 1000;
    const struct access_limits *daily[2] = {&kl, &tl};
    const char *dkeys[2] = {kkey, tkey};
    for (int i = 0; i < 2; i++) {
        if (!daily[i]->daily_requests) continue;
        if (security_quota_consume(a->quota, dkeys[i], daily[i]->daily_requests, 1, wall_s, &q) ||
            !q.allowed) {
            access_release(a, p, out);
            out->holds_key_slot = out->holds_tenant_slot = false;
            out->reason = "daily_requests";
            out->retry_after_s = q.reset_s ? q.reset_s : 60;
            return;
        }
    }
    out->allowed = true;
}

/* Daily token counts of p's key ([0]) and tenant ([1]): amount 0 reads
 * (true while both have tokens left), otherwise adds past the limit (the
 * request already ran). */
static bool tokens_update(struct access *a, const struct access_principal *p, uint64_t amount,
                          uint32_t *retry_after_s)
{
    struct access_limits tl, kl;
    limits_of(a, p, &tl, &kl);
    const uint64_t limits[2] = {kl.daily_tokens, tl.daily_tokens};
    char keys[2][88];
    snprintf(keys[0], sizeof(keys[0]), "tok:k:%s", p->key_id);
    snprintf(keys[1], sizeof(keys[1]), "tok:t:%s", p->tenant);
    int64_t wall_s = time_wall_ms() / 1000;
    bool left = true;
    for (int i = 0; i < 2; i++) {
        struct security_quota_result q;
        if (!limits[i]) continue;
        if (amount) {
            security_quota_add(a->quota, keys[i], limits[i], amount, wall_s, &q);
        } else if (!security_quota_consume(a->quota, keys[i], limits[i], 0, wall_s, &q) &&
                   q.remaining == 0) {
            *retry_after_s = q.reset_s ? q.reset_s : 60;
            left = false;
        }
    }
    return left;
}

bool access_tokens_left(struct access *a, const struct access_principal *p, uint32_t *retry_after_s)
{
    return tokens_update(a, p, 0, retry_after_s);
}

void access_charge_tokens(struct access *a, const struct access_principal *p, uint64_t n)
{
    uint32_t unused;
    if (n) tokens_update(a, p, n, &unused);
}

void access_release(struct access *a, const struct access_principal *p,
                    const struct access_admission *adm)
{
    char key[80];
    if (adm->holds_key_slot) {
        limiter_key(key, sizeof(key), 'k', p->key_id);
        security_conc_release(a->conc, key);
    }
    if (adm->holds_tenant_slot) {
        limiter_key(key, sizeof(key), 't', p->tenant);
        security_conc_release(a->conc, key);
    }
}

bool access_jobs_admit(struct access *a, const struct access_principal *p, uint64_t extra_requests,
                       bool tokens, uint32_t *retry_after_s, const char **reason)
{
    if (extra_requests) {
        struct access_limits tl, kl;
        limits_of(a, p, &tl, &kl);
        char tkey[80], kkey[40];
        limiter_key(tkey, sizeof(tkey), 't', p->tenant);
        limiter_key(kkey, sizeof(kkey), 'k', p->key_id);
        const struct access_limits *daily[2] = {&kl, &tl};
        const char *dkeys[2] = {kkey, tkey};
        int64_t wall_s = time_wall_ms() / 1000;
        for (int i = 0; i < 2; i++) {
            struct security_quota_result q = {0};
            if (!daily[i]->daily_requests) continue;
            /* Reads (amount 0): the jobs are charged once they are stored. */
            if (security_quota_consume(a->quota, dkeys[i], daily[i]->daily_requests, 0, wall_s,
                                       &q) ||
                q.remaining < extra_requests) {
                *reason = "daily_requests";
                *retry_after_s = q.reset_s ? q.reset_s : 60;
                return false;
            }
        }
    }
    if (tokens && !access_tokens_left(a, p, retry_after_s)) {
        *reason = "daily_tokens";
        return false;
    }
    return true;
}

void access_charge_requests(struct access *a, const struct access_principal *p, uint64_t n)
{
    if (!n) return;
    struct access_limits tl, kl;
    limits_of(a, p, &tl, &kl);
    char tkey[80], kkey[40];
    limiter_key(tkey, sizeof(tkey), 't', p->tenant);
    limiter_key(kkey, sizeof(kkey), 'k', p->key_id);
    int64_t wall_s = time_wall_ms() / 1000;
    struct security_quota_result q;
    if (kl.daily_requests) security_quota_add(a->quota, kkey, kl.daily_requests, n, wall_s, &q);
    if (tl.daily_requests) security_quota_add(a->quota, tkey, tl.daily_requests, n, wall_s, &q);
}

int access_job_runnable(struct access *a, const char *tenant, const char *key_id, bool tokens,
                        struct access_principal *p, struct thaw_err *err)
{
    struct access_principal who = {0};
    str_copy(who.tenant, tenant, sizeof(who.tenant));
    int rc = 0;
    if (key_id && key_id[0]) {
        /* The key is checked as a request's would be, minus the secret
         * (the job holds only its id): revoking it, or deleting its
         * tenant, stops the jobs it submitted that have not started. */
        pthread_rwlock_rdlock(&a->lock);
        const struct access_key *k = access_find_key(a, key_id);
        if (!k || k->revoked_ms || strcmp(k->tenant, tenant) != 0)
            rc = thaw_errf(err, THAW_EDENIED, "the API key %s that submitted this job was revoked",
                           key_id);
        else if (k->expires_ms && time_wall_ms() >= k->expires_ms)
            rc = thaw_errf(err, THAW_EDENIED, "the API key %s that submitted this job expired",
                           key_id);
        pthread_rwlock_unlock(&a->lock);
        str_copy(who.key_id, key_id, sizeof(who.key_id));
    }
    uint32_t retry_s = 0;
    if (!rc && tokens && !access_tokens_left(a, &who, &retry_s))
        rc = thaw_errf(err, THAW_EBUSY,
                       "the key or tenant that submitted this job has spent its daily tokens "
                       "(daily_tokens limit)");
    if (!rc && p) *p = who;
    return rc;
}
