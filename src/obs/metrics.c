/* Prometheus metrics: families with label names, series resolved once and
 * updated with atomics, rendered in the text exposition format. */
#include "obs/obs.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define METRIC_MAX_LABELS  4
#define METRIC_MAX_BUCKETS 24

struct metric_series {
    struct metric_series *next;
    const struct metric_family *family;
    char *values[METRIC_MAX_LABELS];
    _Atomic uint64_t value_bits; /* counter/gauge value, or histogram sum, as double bits */
    _Atomic uint64_t count;      /* histogram observations */
    _Atomic uint64_t buckets[METRIC_MAX_BUCKETS];
};

struct metric_family {
    struct metric_family *next;
    char *name;
    char *help;
    enum metric_kind kind;
    int n_labels;
    char *labels[METRIC_MAX_LABELS];
    int n_buckets;
    double bounds[METRIC_MAX_BUCKETS];
    struct metric_series *series;
};

static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static struct metric_family *families;

static uint64_t dbl_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

static double bits_dbl(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

struct metric_family *obs_metric_family(const char *name, const char *help, enum metric_kind kind,
                                        const char *const *labels, const double *buckets,
                                        int n_buckets)
{
    pthread_mutex_lock(&metrics_lock);
    for (struct metric_family *f = families; f; f = f->next) {
        if (strcmp(f->name, name) == 0) {
            pthread_mutex_unlock(&metrics_lock);
            return f;
        }
    }
    struct metric_family *f = calloc(1, sizeof(*f));
    if (!f) goto out;
    f->name = str_dup(name);
    f->help = str_dup(help);
    f->kind = kind;
    for (int i = 0; labels && labels[i] && i < METRIC_MAX_LABELS; i++)
        f->labels[f->n_labels++] = str_dup(labels[i]);
    f->n_buckets = MIN(n_buckets, METRIC_MAX_BUCKETS);
    for (int i = 0; i < f->n_buckets; i++)
        f->bounds[i] = buckets[i];
    f->next = families;
    families = f;
out:
    pthread_mutex_unlock(&metrics_lock);
    return f;
}

struct metric_series *obs_metric_series(struct metric_family *f, const char *const *values)
{
    if (!f) return NULL;
    pthread_mutex_lock(&metrics_lock);
    struct metric_series *s;
    for (s = f->series; s; s = s->next) {
        int same = 1;
        for (int i = 0; i < f->n_labels && same; i++)
            same = strcmp(s->values[i], values[i]) == 0;
        if (same) goto out;
    }
    s = calloc(1, sizeof(*s));
    if (!s) goto out;
    for (int i = 0; i < f->n_labels; i++) {
        s->values[i] = str_dup(values[i]);
        if (!s->values[i]) {
            for (int j = 0; j < i; j++)
                free(s->values[j]);
            free(s);
            s = NULL;
            goto out;
        }
    }
    s->family = f;
    s->next = f->series;
    f->series = s;
out:
    pthread_mutex_unlock(&metrics_lock);
    return s;
}

static void atomic_add_double(_Atomic uint64_t *bits, double v)
{
    uint64_t old = atomic_load_explicit(bits, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(bits, &old, dbl_bits(bits_dbl(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

void obs_metric_add(struct metric_series *s, double v)
{
    if (s) atomic_add_double(&s->value_bits, v);
}

void obs_metric_set(struct metric_series *s, double v)
{
    if (s) atomic_store_explicit(&s->value_bits, dbl_bits(v), memory_order_relaxed);
}

double obs_metric_value(const struct metric_series *s)
{
    return s ? bits_dbl(atomic_load_explicit(&s->value_bits, memory_order_relaxed)) : 0;
}

void obs_metric_observe(struct metric_series *s, double v)
{
    if (!s) return;
    const struct metric_family *f = s->family;
    int i = 0;
    while (i < f->n_buckets && v > f->bounds[i])
        i++;
    if (i < f->n_buckets) atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
    atomic_add_double(&s->value_bits, v);
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
}

static void series_free(struct metric_series *s, int n_labels)
{
    for (int i = 0; i < n_labels; i++)
        free(s->values[i]);
    free(s);
}

void obs_metric_drop(struct metric_family *f, const char *first_label_value)
{
    if (!f || f->n_labels == 0) return;
    pthread_mutex_lock(&metrics_lock);
    struct metric_series **pp = &f->series;
    while (*pp) {
        struct metric_series *s = *pp;
        if (strcmp(s->values[0], first_label_value) == 0) {
            *pp = s->next;
            series_free(s, f->n_labels);
        } else {
            pp = &s->next;
        }
    }
    pthread_mutex_unlock(&metrics_lock);
}

static void render_value(struct buf *out, double v)
{
    if (isinf(v))
        buf_append_str(out, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        buf_printf(out, "%.0f", v);
    else
        buf_printf(out, "%.9g", v);
}

static void render_labels(struct buf *out, const struct metric_family *f,
                          const struct metric_series *s, const char *le)
{
    if (f->n_labels == 0 && !le) return;
    buf_append(out, "{", 1);
    for (int i = 0; i < f->n_labels; i++) {
        if (i) buf_append(out, ",", 1);
        buf_printf(out, "%s=", f->labels[i]);
        buf_append_json_string(out, s->values[i], strlen(s->values[i]));
    }
    if (le) buf_printf(out, "%sle=\"%s\"", f->n_labels ? "," : "", le);
    buf_append(out, "}", 1);
}

static void render_histogram(struct buf *out, const struct metric_family *f,
                             const struct metric_series *s)
{
    uint64_t cumulative = 0;
    char le[32];
    for (int i = 0; i < f->n_buckets; i++) {
        cumulative += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
        snprintf(le, sizeof(le), "%g", f->bounds[i]);
        buf_printf(out, "%s_bucket", f->name);
        render_labels(out, f, s, le);
        buf_printf(out, " %llu\n", (unsigned long long)cumulative);
    }
    uint64_t count = atomic_load_explicit(&s->count, memory_order_relaxed);
    buf_printf(out, "%s_bucket", f->name);
    render_labels(out, f, s, "+Inf");
    buf_printf(out, " %llu\n%s_sum", (unsigned long long)count, f->name);
    render_labels(out, f, s, NULL);
    buf_append(out, " ", 1);
    render_value(out, obs_metric_value(s));
    buf_printf(out, "\n%s_count", f->name);
    render_labels(out, f, s, NULL);
    buf_printf(out, " %llu\n", (unsigned long long)count);
}

int obs_metrics_render(struct buf *out)
{
    static const char *kinds[] = {"counter", "gauge", "histogram"};
    pthread_mutex_lock(&metrics_lock);
    for (const struct metric_family *f = families; f; f = f->next) {
        buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, kinds[f->kind]);
        for (const struct metric_series *s = f->series; s; s = s->next) {
            if (f->kind == METRIC_HISTOGRAM) {
                render_histogram(out, f, s);
                continue;
            }
            buf_append_str(out, f->name);
            render_labels(out, f, s, NULL);
            buf_append(out, " ", 1);
            render_value(out, obs_metric_value(s));
            buf_append(out, "\n", 1);
        }
    }
    pthread_mutex_unlock(&metrics_lock);
    return out->data ? 0 : THAW_ENOMEM;
}

void obs_metrics_reset(void)
{
    pthread_mutex_lock(&metrics_lock);
    while (families) {
        struct metric_family *f = families;
        families = f->next;
        while (f->series) {
            struct metric_series *s = f->series;
            f->series = s->next;
            series_free(s, f->n_labels);
        }
        for (int i = 0; i < f->n_labels; i++)
            free(f->labels[i]);
        free(f->name);
        free(f->help);
        free(f);
    }
    pthread_mutex_unlock(&metrics_lock);
}
