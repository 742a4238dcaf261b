/* Usage metering: what each tenant used per UTC day and deployment
 * (requests, failed requests, prompt and completion tokens). Counted in
 * memory on the request path and written to the store's "usage" documents at
 * most every USAGE_FLUSH_MS, so a restart loses at most that much; a day's
 * counts are read back from the store when first touched again. */
#include "access/access_int.h"
#include "obs/obs.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define COLL_USAGE     "usage"
#define USAGE_FLUSH_MS 5000

struct usage_row {
    char deployment[64];
    uint64_t requests, failed, prompt_tokens, completion_tokens;
};

struct usage_day {
    char id[ACCESS_NAME_MAX + 24]; /* "tenant/day": its index name */
    char tenant[ACCESS_NAME_MAX + 1];
    int64_t day; /* days since 1970-01-01 (UTC) */
    struct usage_row *rows;
    size_t n, cap;
    bool dirty;
    int64_t flushed_ms;
};

struct access_usage {
    pthread_mutex_t lock;       /* the days below */
    pthread_mutex_t flush_lock; /* one writer at a time, so writes land in order */
    struct usage_day *days;
    size_t n, cap;
    struct access_index ix; /* days by tenant and day: every request finds its own */
};

/* "tenant/day" into out (ACCESS_NAME_MAX + 24 bytes); by hand, as snprintf
 * cost as much as the rest of recording a request. */
static void day_key(const char *tenant, int64_t day, char *out)
{
    size_t n = strnlen(tenant, ACCESS_NAME_MAX);
    memcpy(out, tenant, n);
    out[n++] = '/';
    char digits[24];
    int k = 0;
    uint64_t v = day < 0 ? 0 : (uint64_t)day; /* days since 1970: never negative here */
    do {
        digits[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (k)
        out[n++] = digits[--k];
    out[n] = 0;
}

static void day_id(const char *tenant, int64_t day, char *out, size_t n)
{
    time_t t = (time_t)(day * 86400);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, n, "%s/%04d-%02d-%02d", tenant, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

static json_t *row_json(const struct usage_row *r)
{
    return json_pack("{s:I, s:I, s:I, s:I}", "requests", (json_int_t)r->requests, "failed",
                     (json_int_t)r->failed, "prompt_tokens", (json_int_t)r->prompt_tokens,
                     "completion_tokens", (json_int_t)r->completion_tokens);
}

static json_t *day_json(const struct usage_day *d)
{
    json_t *deps = json_object();
    struct usage_row total = {0};
    for (size_t i = 0; i < d->n; i++) {
        const struct usage_row *r = &d->rows[i];
        json_object_set_new(deps, r->deployment, row_json(r));
        total.requests += r->requests;
        total.failed += r->failed;
        total.prompt_tokens += r->prompt_tokens;
        total.completion_tokens += r->completion_tokens;
    }
    char id[ACCESS_NAME_MAX + 48];
    day_id(d->tenant, d->day, id, sizeof(id));
    return json_pack("{s:s, s:s, s:o, s:o}", "tenant", d->tenant, "day", strchr(id, '/') + 1,
                     "totals", row_json(&total), "deployments", deps);
}

static struct usage_row *row_for(struct usage_day *d, const char *deployment)
{
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->rows[i].deployment, deployment) == 0) return &d->rows[i];
    if (access_grow((void **)&d->rows, &d->cap, d->n, sizeof(*d->rows))) return NULL;
    struct usage_row *r = &d->rows[d->n++];
    memset(r, 0, sizeof(*r));
    str_copy(r->deployment, deployment, sizeof(r->deployment));
    return r;
}

/* Fills d from its stored document, if there is one. */
static void day_load(struct access *a, struct usage_day *d)
{
    char id[ACCESS_NAME_MAX + 48], *doc = NULL;
    struct thaw_err err = {0};
    day_id(d->tenant, d->day, id, sizeof(id));
    if (store_doc_get(a->store, COLL_USAGE, id, &doc, &err)) return;
    json_t *v = json_loads(doc, 0, NULL);
    free(doc);
    const char *name;
    json_t *r;
    json_object_foreach(json_object_get(v, "deployments"), name, r)
    {
        struct usage_row *row = row_for(d, name);
        if (!row) break;
        row->requests = (uint64_t)json_integer_value(json_object_get(r, "requests"));
        row->failed = (uint64_t)json_integer_value(json_object_get(r, "failed"));
        row->prompt_tokens = (uint64_t)json_integer_value(json_object_get(r, "prompt_tokens"));
        row->completion_tokens =
            (uint64_t)json_integer_value(json_object_get(r, "completion_tokens"));
    }
    json_decref(v);
}

/* With u->lock held. */
static struct usage_day *day_for(struct access *a, const char *tenant, int64_t day)
{
    struct access_usage *u = a->usage;
    char key[ACCESS_NAME_MAX + 24];
    day_key(tenant, day, key);
    long at = access_index_find(&u->ix, u->days, key);
    if (at >= 0) return &u->days[at];
    if (access_grow((void **)&u->days, &u->cap, u->n, sizeof(*u->days))) return NULL;
    struct usage_day *d = &u->days[u->n];
    memset(d, 0, sizeof(*d));
    str_copy(d->id, key, sizeof(d->id));
    str_copy(d->tenant, tenant, sizeof(d->tenant));
    d->day = day;
    if (access_index_put(&u->ix, u->days, (uint32_t)u->n)) return NULL;
    u->n++;
    d->flushed_ms = (int64_t)(time_now_ns() / 1000000);
    day_load(a, d);
    return d;
}

static void day_drop(struct access_usage *u, size_t i)
{
    size_t last = u->n - 1;
    free(u->days[i].rows);
    access_index_del(&u->ix, u->days, u->days[i].id);
    u->days[i] = u->days[last];
    u->n--;
    if (i != last) access_index_moved(&u->ix, u->days, (uint32_t)last, (uint32_t)i);
}

/* Writes every dirty day (all of them when force, else those not written
 * for USAGE_FLUSH_MS) and forgets past days once written. */
static void usage_flush(struct access *a, bool force)
{
    struct access_usage *u = a->usage;
    if (force)
        pthread_mutex_lock(&u->flush_lock);
    else if (pthread_mutex_trylock(&u->flush_lock) != 0)
        return; /* someone is writing */
    int64_t now = (int64_t)(time_now_ns() / 1000000), today = time_wall_ms() / 86400000;
    for (;;) {
        char id[ACCESS_NAME_MAX + 48];
        char *doc = NULL;
        pthread_mutex_lock(&u->lock);
        for (size_t i = 0; i < u->n && !doc; i++) {
            struct usage_day *d = &u->days[i];
            if (!d->dirty && d->day < today) {
                day_drop(u, i--);
                continue;
            }
            if (!d->dirty || (!force && now - d->flushed_ms < USAGE_FLUSH_MS)) continue;
            json_t *v = day_json(d);
            doc = json_dumps(v, JSON_COMPACT);
            json_decref(v);
            day_id(d->tenant, d->day, id, sizeof(id));
            d->dirty = false;
            d->flushed_ms = now;
        }
        pthread_mutex_unlock(&u->lock);
        if (!doc) break;
        struct thaw_err err = {0};
        if (store_doc_put(a->store, COLL_USAGE, id, doc, &err))
            OBS_LOG(LOG_WARN, "usage_write_failed", LOG_S("id", id), LOG_S("error", err.msg));
        free(doc);
    }
    pthread_mutex_unlock(&u->flush_lock);
}

int access_usage_init(struct access *a, struct thaw_err *err)
{
    a->usage = calloc(1, sizeof(*a->usage));
    if (!a->usage) return thaw_errf(err, THAW_ENOMEM, "out of memory");
    pthread_mutex_init(&a->usage->lock, NULL);
    pthread_mutex_init(&a->usage->flush_lock, NULL);
    access_index_init(&a->usage->ix, a->index_key, sizeof(struct usage_day),
                      offsetof(struct usage_day, id));
    return 0;
}

void access_usage_free(struct access *a)
{
    if (!a->usage) return;
    usage_flush(a, true);
    for (size_t i = 0; i < a->usage->n; i++)
        free(a->usage->days[i].rows);
    free(a->usage->days);
    access_index_free(&a->usage->ix);
    pthread_mutex_destroy(&a->usage->lock);
    pthread_mutex_destroy(&a->usage->flush_lock);
    free(a->usage);
    a->usage = NULL;
}

void access_usage_record(struct access *a, const char *tenant, const char *deployment, bool failed,
                         uint64_t prompt_tokens, uint64_t completion_tokens)
{
    struct access_usage *u = a->usage;
    int64_t today = time_wall_ms() / 86400000;
    bool due = false;
    pthread_mutex_lock(&u->lock);
    struct usage_day *d = day_for(a, tenant, today);
    struct usage_row *r = d ? row_for(d, deployment) : NULL;
    if (r) {
        r->requests++;
        r->failed += failed;
        r->prompt_tokens += prompt_tokens;
        r->completion_tokens += completion_tokens;
        d->dirty = true;
        due = (int64_t)(time_now_ns() / 1000000) - d->flushed_ms >= USAGE_FLUSH_MS;
    }
    pthread_mutex_unlock(&u->lock);
    if (due) usage_flush(a, false);
}

void access_usage_flush(struct access *a)
{
    usage_flush(a, true);
}

int access_usage_get(struct access *a, const char *tenant, int64_t day, json_t **out,
                     struct thaw_err *err)
{
    struct access_usage *u = a->usage;
    char key[ACCESS_NAME_MAX + 24];
    day_key(tenant, day, key);
    pthread_mutex_lock(&u->lock);
    long at = access_index_find(&u->ix, u->days, key);
    struct usage_day *d = at >= 0 ? &u->days[at] : NULL;
    if (d) {
        *out = day_json(d);
        pthread_mutex_unlock(&u->lock);
        return *out ? 0 : thaw_errf(err, THAW_ENOMEM, "out of memory");
    }
    pthread_mutex_unlock(&u->lock);
    /* Not in memory: the stored document, or an empty day. */
    struct usage_day tmp = {.day = day};
    str_copy(tmp.tenant, tenant, sizeof(tmp.tenant));
    day_load(a, &tmp);
    *out = day_json(&tmp);
    free(tmp.rows);
    return *out ? 0 : thaw_errf(err, THAW_ENOMEM, "out of memory");
}
