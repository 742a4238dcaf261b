/* JSON log lines: one event per line, written with one write(2) so lines from
 * several threads never interleave. */
#include "obs/obs.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_level_ = LOG_INFO;
static _Atomic int log_fd_ = 2;

void obs_log_set_level(enum log_level level)
{
    atomic_store(&log_level_, (int)level);
}

enum log_level obs_log_level(void)
{
    return (enum log_level)atomic_load(&log_level_);
}

void obs_log_set_fd(int fd)
{
    atomic_store(&log_fd_, fd);
}

int obs_log_parse_level(const char *s, enum log_level *out)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return THAW_EINVAL;
}

static void append_timestamp(struct buf *b)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    buf_printf(b, "\"%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ\"", tm.tm_year + 1900, tm.tm_mon + 1,
               tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000);
}

static void append_field(struct buf *b, const struct log_field *f)
{
    buf_append(b, ",", 1);
    buf_append_json_string(b, f->key, strlen(f->key));
    buf_append(b, ":", 1);
    switch (f->type) {
    case LOG_FIELD_STR:
        if (f->s)
            buf_append_json_string(b, f->s, strlen(f->s));
        else
            buf_append_str(b, "null");
        break;
    case LOG_FIELD_INT:
        buf_printf(b, "%lld", f->i);
        break;
    case LOG_FIELD_DBL:
        if (isfinite(f->d))
            buf_printf(b, "%.6g", f->d);
        else
            buf_append_str(b, "null");
        break;
    }
}

void obs_log_fields(enum log_level level, const char *event, const struct log_field *fields,
                    int n_fields)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if ((int)level < atomic_load(&log_level_)) return;
    struct buf line = {0};
    struct buf *out = &line;
    buf_append_str(out, "{\"ts\":");
    append_timestamp(out);
    buf_printf(out, ",\"level\":\"%s\",\"event\":", names[level & 3]);
    buf_append_json_string(out, event, strlen(event));
    for (int i = 0; i < n_fields; i++)
        append_field(out, &fields[i]);
    buf_append(out, "}\n", 2);

    if (out->data) {
        const char *p = out->data;
        size_t left = out->len;
        int fd = atomic_load(&log_fd_);
        while (left) {
            ssize_t n = write(fd, p, left);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            p += n;
            left -= (size_t)n;
        }
    }
    buf_free(&line);
}
