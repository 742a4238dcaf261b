/* Rate limiting (GCRA), concurrency limits and daily quotas for the gateway,
 * on one small sharded hash table with a fixed entry budget. Time comes in as
 * a parameter so decisions are deterministic under test. */
#include "security/security.h"

#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define N_SHARDS     16
#define NS_PER_S     1000000000ull
#define SECS_PER_DAY 86400

/* -------------------------------------------------------------- GCRA -- */

static uint32_t ceil_seconds(uint64_t ns)
{
    uint64_t s = ns / NS_PER_S + (ns % NS_PER_S != 0);
    return s > UINT32_MAX ? UINT32_MAX : (uint32_t)s;
}

static uint32_t clamp32(uint64_t v)
{
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* The bucket is measured in time: tau = burst * T is how far the theoretical
 * arrival time may run ahead of now; each request pushes it by cost * T. */
int security_gcra(uint64_t *tat, double rate, uint32_t burst, uint32_t cost, uint64_t now_ns,
                  struct security_rate_result *out)
{
    if (!(rate >= 1e-6 && rate <= 1e9) || burst == 0 || cost == 0 || cost > burst)
        return THAW_EINVAL;
    uint64_t t = (uint64_t)llround(1e9 / rate), tau;
    if (t == 0) t = 1;
    if (__builtin_mul_overflow(t, (uint64_t)burst, &tau) || tau > UINT64_MAX / 4 ||
        now_ns > UINT64_MAX / 2)
        return THAW_EINVAL;
    uint64_t inc = t * cost;
    uint64_t base = *tat > now_ns ? *tat : now_ns;
    uint64_t used = base - now_ns; /* may exceed tau if the limit was lowered */
    memset(out, 0, sizeof(*out));
    out->limit = burst;
    if (used > tau || inc > tau - used) {
        out->allowed = false;
        out->remaining = used >= tau ? 0 : clamp32((tau - used) / t);
        out->reset_ns = used;
        out->retry_after_ns = used + inc - tau;
        out->retry_after_s = ceil_seconds(out->retry_after_ns);
        if (out->retry_after_s == 0) out->retry_after_s = 1;
    } else {
        *tat = base + inc;
        used += inc;
        out->allowed = true;
        out->remaining = clamp32((tau - used) / t);
        out->reset_ns = used;
    }
    out->reset_s = ceil_seconds(out->reset_ns);
    return 0;
}

/* ------------------------------------------------------- shared table -- */

struct entry {
    struct entry *next;
    uint64_t hash;
    uint64_t a, b; /* rate: a = tat; concurrency: a = count; quota: a = day, b = used */
    size_t klen;
    char key[];
};

struct shard {
    pthread_mutex_t mu;
    struct entry **buckets;
    size_t mask, count, max;
} __attribute__((aligned(64)));

struct table {
    struct shard shards[N_SHARDS];
    unsigned char sipkey[crypto_shorthash_KEYBYTES];
    size_t max_entries;
};

/* Eviction policy: idle entries go first; otherwise the lowest score, unless
 * every score is UINT64_MAX (never evict). */
struct policy {
    int (*idle)(const struct entry *e, uint64_t now);
    uint64_t (*score)(const struct entry *e);
};

static int table_init(struct table *t, size_t max_entries)
{
    if (security_init()) return THAW_EUNSUPPORTED;
    if (max_entries == 0 || max_entries > (SIZE_MAX >> 8)) return THAW_EINVAL;
    crypto_shorthash_keygen(t->sipkey);
    t->max_entries = max_entries;
    size_t per = (max_entries + N_SHARDS - 1) / N_SHARDS, nb = 1;
    while (nb < per)
        nb <<= 1;
    for (int i = 0; i < N_SHARDS; i++) {
        struct shard *s = &t->shards[i];
        pthread_mutex_init(&s->mu, NULL);
        s->max = per;
        s->mask = nb - 1;
        s->buckets = calloc(nb, sizeof(*s->buckets));
        if (!s->buckets) return THAW_ENOMEM;
    }
    return 0;
}

static void table_destroy(struct table *t)
{
    for (int i = 0; i < N_SHARDS; i++) {
        struct shard *s = &t->shards[i];
        if (!s->buckets) continue;
        for (size_t b = 0; b <= s->mask; b++) {
            for (struct entry *e = s->buckets[b], *n; e; e = n) {
                n = e->next;
                free(e);
            }
        }
        free(s->buckets);
        pthread_mutex_destroy(&s->mu);
    }
}

static int key_ok(const char *key, size_t *klen)
{
    if (!key) return 0;
    *klen = strnlen(key, SECURITY_LIMIT_KEY_MAX + 1);
    return *klen > 0 && *klen <= SECURITY_LIMIT_KEY_MAX;
}

static struct shard *table_shard(struct table *t, const char *key, size_t klen, uint64_t *hash)
{
    unsigned char h[crypto_shorthash_BYTES];
    crypto_shorthash(h, (const unsigned char *)key, klen, t->sipkey);
    uint64_t v;
    memcpy(&v, h, sizeof(v));
    *hash = v;
    return &t->shards[v >> 60];
}

/* Returns the link that points at key's entry (or the NULL link at the end
 * of its chain). Called with the shard locked. */
static struct entry **shard_link(struct shard *s, uint64_t hash, const char *key, size_t klen)
{
    struct entry **l = &s->buckets[hash & s->mask];
    while (*l && !((*l)->hash == hash && (*l)->klen == klen && memcmp((*l)->key, key, klen) == 0))
        l = &(*l)->next;
    return l;
}

static void shard_unlink(struct shard *s, struct entry **l)
{
    struct entry *e = *l;
    *l = e->next;
    free(e);
    s->count--;
}

/* Frees every idle entry, or failing that the lowest-scored one. Returns 0
 * when there is room now, THAW_EBUSY otherwise. Linear in the shard, but a
 * sweep clears all idle entries at once, so it is rare. */
static int shard_make_room(struct shard *s, uint64_t now, const struct policy *p)
{
    struct entry **victim = NULL;
    uint64_t best = UINT64_MAX;
    for (size_t b = 0; b <= s->mask; b++) {
        struct entry **l = &s->buckets[b];
        while (*l) {
            if (p->idle(*l, now)) {
                shard_unlink(s, l);
                continue;
            }
            uint64_t sc = p->score(*l);
            if (sc < best) best = sc, victim = l;
            l = &(*l)->next;
        }
    }
    if (s->count < s->max) return 0;
    if (!victim) return THAW_EBUSY;
    /* The sweep may have moved what victim points at; find it again. */
    for (size_t b = 0; b <= s->mask; b++)
        for (struct entry **l = &s->buckets[b]; *l; l = &(*l)->next)
            if (p->score(*l) == best) {
                shard_unlink(s, l);
                return 0;
            }
    return THAW_EBUSY;
}

/* Finds or creates key's entry (zeroed a and b when new). Called with the
 * shard locked; *out is NULL on error. */
static int shard_get(struct shard *s, uint64_t hash, const char *key, size_t klen, uint64_t now,
                     const struct policy *p, struct entry **out)
{
    *out = NULL;
    struct entry **l = shard_link(s, hash, key, klen);
    if (*l) {
        *out = *l;
        return 0;
    }
    if (s->count >= s->max) {
        int rc = shard_make_room(s, now, p);
        if (rc) return rc;
    }
    struct entry *e = malloc(sizeof(*e) + klen);
    if (!e) return THAW_ENOMEM;
    e->hash = hash;
    e->a = e->b = 0;
    e->klen = klen;
    memcpy(e->key, key, klen);
    struct entry **head = &s->buckets[hash & s->mask];
    e->next = *head;
    *head = e;
    s->count++;
    *out = e;
    return 0;
}

static size_t table_size(struct table *t)
{
    size_t n = 0;
    for (int i = 0; i < N_SHARDS; i++) {
        pthread_mutex_lock(&t->shards[i].mu);
        n += t->shards[i].count;
        pthread_mutex_unlock(&t->shards[i].mu);
    }
    return n;
}

/* Each public table type wraps one struct table; they share constructor and
 * destructor logic here. */
static int table_new(size_t max_entries, struct table **out, const char *what, struct thaw_err *err)
{
    struct table *t = calloc(1, sizeof(*t));
    if (!t) return thaw_errf(err, THAW_ENOMEM, "out of memory for the %s", what);
    int rc = table_init(t, max_entries);
    if (rc) {
        table_destroy(t);
        free(t);
        return thaw_errf(err, rc, "cannot create the %s with %zu entries: %s", what, max_entries,
                         thaw_strerror(rc));
    }
    *out = t;
    return 0;
}

static void table_free(struct table *t)
{
    if (!t) return;
    table_destroy(t);
    free(t);
}

/* ------------------------------------------------------- rate limiter -- */

struct security_ratelimiter {
    struct table t;
};

static int rate_idle(const struct entry *e, uint64_t now)
{
    return e->a <= now;
}

static uint64_t rate_score(const struct entry *e)
{
    return e->a;
}

static const struct policy rate_policy = {rate_idle, rate_score};

int security_ratelimiter_new(size_t max_entries, struct security_ratelimiter **out,
                             struct thaw_err *err)
{
    struct table *t = NULL;
    int rc = table_new(max_entries, &t, "rate limiter", err);
    /* t is the first member, so the pointer converts both ways. */
    if (rc == 0) *out = (struct security_ratelimiter *)t;
    return rc;
}

void security_ratelimiter_free(struct security_ratelimiter *rl)
{
    table_free(rl ? &rl->t : NULL);
}

int security_ratelimit_check(struct security_ratelimiter *rl, const char *key, double rate,
                             uint32_t burst, uint32_t cost, uint64_t now_ns,
                             struct security_rate_result *out)
{
    size_t klen;
    if (!key_ok(key, &klen)) return THAW_EINVAL;
    uint64_t hash;
    struct shard *s = table_shard(&rl->t, key, klen, &hash);
    pthread_mutex_lock(&s->mu);
    struct entry *e;
    int rc = shard_get(s, hash, key, klen, now_ns, &rate_policy, &e);
    if (rc == 0) rc = security_gcra(&e->a, rate, burst, cost, now_ns, out);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

size_t security_ratelimiter_size(struct security_ratelimiter *rl)
{
    return table_size(&rl->t);
}

/* ------------------------------------------------ concurrency limiter -- */

struct security_conclimiter {
    struct table t;
};

static int never_idle(const struct entry *e, uint64_t now)
{
    return 0;
}

static uint64_t never_evict(const struct entry *e)
{
    return UINT64_MAX;
}

static const struct policy conc_policy = {never_idle, never_evict};

int security_conclimiter_new(size_t max_entries, struct security_conclimiter **out,
                             struct thaw_err *err)
{
    struct table *t = NULL;
    int rc = table_new(max_entries, &t, "concurrency limiter", err);
    /* t is the first member, so the pointer converts both ways. */
    if (rc == 0) *out = (struct security_conclimiter *)t;
    return rc;
}

void security_conclimiter_free(struct security_conclimiter *cl)
{
    table_free(cl ? &cl->t : NULL);
}

int security_conc_acquire(struct security_conclimiter *cl, const char *key, uint32_t limit,
                          uint32_t *in_flight)
{
    size_t klen;
    if (!key_ok(key, &klen) || limit == 0) return THAW_EINVAL;
    uint64_t hash;
    struct shard *s = table_shard(&cl->t, key, klen, &hash);
    pthread_mutex_lock(&s->mu);
    struct entry *e;
    int rc = shard_get(s, hash, key, klen, 0, &conc_policy, &e);
    if (rc == 0) {
        if (e->a >= limit) {
            rc = THAW_EBUSY;
        } else {
            e->a++;
        }
        if (in_flight) *in_flight = (uint32_t)e->a;
        if (e->a == 0) shard_unlink(s, shard_link(s, hash, key, klen));
    } else if (in_flight) {
        *in_flight = 0;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int security_conc_release(struct security_conclimiter *cl, const char *key)
{
    size_t klen;
    if (!key_ok(key, &klen)) return THAW_EINVAL;
    uint64_t hash;
    struct shard *s = table_shard(&cl->t, key, klen, &hash);
    pthread_mutex_lock(&s->mu);
    struct entry **l = shard_link(s, hash, key, klen);
    int rc = *l ? 0 : THAW_ENOTFOUND;
    if (*l && --(*l)->a == 0) shard_unlink(s, l);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

uint32_t security_conc_in_flight(struct security_conclimiter *cl, const char *key)
{
    size_t klen;
    if (!key_ok(key, &klen)) return 0;
    uint64_t hash;
    struct shard *s = table_shard(&cl->t, key, klen, &hash);
    pthread_mutex_lock(&s->mu);
    struct entry **l = shard_link(s, hash, key, klen);
    uint32_t n = *l ? (uint32_t)(*l)->a : 0;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ------------------------------------------------------- daily quotas -- */

struct security_quota {
    struct table t;
};

/* Quota entries store day + 1 in a so that a fresh entry (a = 0) reads as
 * "no day yet". */
static int quota_idle(const struct entry *e, uint64_t today_plus1)
{
    return e->a != today_plus1;
}

static const struct policy quota_policy = {quota_idle, never_evict};

int security_quota_new(size_t max_entries, struct security_quota **out, struct thaw_err *err)
{
    struct table *t = NULL;
    int rc = table_new(max_entries, &t, "quota table", err);
    /* t is the first member, so the pointer converts both ways. */
    if (rc == 0) *out = (struct security_quota *)t;
    return rc;
}

void security_quota_free(struct security_quota *q)
{
    table_free(q ? &q->t : NULL);
}

static int quota_update(struct security_quota *q, const char *key, uint64_t limit, uint64_t amount,
                        int64_t wall_s, bool force, struct security_quota_result *out)
{
    size_t klen;
    if (!key_ok(key, &klen) || wall_s < 0) return THAW_EINVAL;
    uint64_t day1 = (uint64_t)(wall_s / SECS_PER_DAY) + 1;
    uint64_t hash;
    struct shard *s = table_shard(&q->t, key, klen, &hash);
    pthread_mutex_lock(&s->mu);
    struct entry *e;
    int rc = shard_get(s, hash, key, klen, day1, &quota_policy, &e);
    if (rc == 0) {
        if (e->a != day1) e->a = day1, e->b = 0;
        bool fits = e->b <= limit && amount <= limit - e->b;
        out->allowed = fits;
        if (fits || force) e->b = e->b + amount < e->b ? UINT64_MAX : e->b + amount;
        out->limit = limit;
        out->used = e->b;
        out->remaining = e->b >= limit ? 0 : limit - e->b;
        out->reset_s = (uint32_t)((int64_t)day1 * SECS_PER_DAY - wall_s);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int security_quota_consume(struct security_quota *q, const char *key, uint64_t limit,
                           uint64_t amount, int64_t wall_s, struct security_quota_result *out)
{
    return quota_update(q, key, limit, amount, wall_s, false, out);
}

int security_quota_add(struct security_quota *q, const char *key, uint64_t limit, uint64_t amount,
                       int64_t wall_s, struct security_quota_result *out)
{
    return quota_update(q, key, limit, amount, wall_s, true, out);
}
