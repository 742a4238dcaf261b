/* Observability: structured JSON log lines and Prometheus metrics.
 * Logs never carry request or response bodies: callers pass only ids,
 * names, codes and timings as fields. */
#ifndef THAW_OBS_H
#define THAW_OBS_H

#include "base/base.h"

#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

enum log_field_type { LOG_FIELD_STR, LOG_FIELD_INT, LOG_FIELD_DBL };

struct log_field {
    const char *key;
    enum log_field_type type;
    const char *s; /* for LOG_FIELD_STR; NULL logs as null */
    long long i;
    double d;
};

#define LOG_S(k, v) ((struct log_field){.key = (k), .type = LOG_FIELD_STR, .s = (v)})
#define LOG_I(k, v) ((struct log_field){.key = (k), .type = LOG_FIELD_INT, .i = (long long)(v)})
#define LOG_D(k, v) ((struct log_field){.key = (k), .type = LOG_FIELD_DBL, .d = (double)(v)})

/* Writes one line {"ts":..,"level":..,"event":..,<fields>} to the log fd
 * (stderr unless obs_log_set_fd) with a single write. Thread-safe. */
void obs_log_fields(enum log_level level, const char *event, const struct log_field *fields,
                    int n_fields);
#define OBS_LOG(level, event, ...)                                                                 \
    obs_log_fields(                                                                                \
        (level), (event), (const struct log_field[]){__VA_ARGS__},                                 \
        (int)(sizeof((const struct log_field[]){__VA_ARGS__}) / sizeof(struct log_field)))

void obs_log_set_level(enum log_level level);
enum log_level obs_log_level(void);
void obs_log_set_fd(int fd);
/* Parses "debug", "info", "warn", "error"; returns 0 or THAW_EINVAL. */
int obs_log_parse_level(const char *s, enum log_level *out);

/* Metrics. Families are created once (at start-up) and never freed before
 * obs_metrics_reset; series are found or created by label values and stay at
 * the same address, so hot paths resolve them once and update them with
 * atomics only. */
enum metric_kind { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

struct metric_family;
struct metric_series;

/* labels: up to 4 label names, NULL-terminated list. buckets (histograms
 * only): ascending upper bounds, n_buckets of them; +Inf is implicit. */
struct metric_family *obs_metric_family(const char *name, const char *help, enum metric_kind kind,
                                        const char *const *labels, const double *buckets,
                                        int n_buckets);
/* Finds or creates the series for these label values (as many as the family
 * has labels). Returns NULL only on allocation failure. */
struct metric_series *obs_metric_series(struct metric_family *f, const char *const *values);
void obs_metric_add(struct metric_series *s, double v);
void obs_metric_set(struct metric_series *s, double v);
void obs_metric_observe(struct metric_series *s, double v);
double obs_metric_value(const struct metric_series *s);
/* Removes every series of f whose first label equals value (a deployment
 * that was deleted). Pointers to those series become invalid. */
void obs_metric_drop(struct metric_family *f, const char *first_label_value);
/* Appends every family in Prometheus text format 0.0.4. */
int obs_metrics_render(struct buf *out);
/* Frees every family and series (tests and shutdown). */
void obs_metrics_reset(void);

#endif
