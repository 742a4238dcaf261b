/* Status messages, buffers, clocks, durations and randomness shared by every
 * module (see base.h). */
#include "base/base.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

const char *thaw_strerror(int status)
{
    switch (status) {
    case THAW_OK:
        return "ok";
    case THAW_EINVAL:
        return "invalid input";
    case THAW_ENOMEM:
        return "out of memory";
    case THAW_ENOTFOUND:
        return "not found";
    case THAW_EEXIST:
        return "already exists";
    case THAW_EIO:
        return "input/output error";
    case THAW_EFORMAT:
        return "bad format";
    case THAW_ERANGE:
        return "out of range";
    case THAW_EUNSUPPORTED:
        return "not supported";
    case THAW_ETIMEOUT:
        return "timed out";
    case THAW_EBUSY:
        return "busy";
    case THAW_ESTATE:
        return "wrong state";
    case THAW_ECRASH:
        return "process crashed";
    case THAW_EDENIED:
        return "denied";
    case THAW_ECONFLICT:
        return "conflict";
    default:
        if (status < 0 && status > THAW_E_BASE) return strerror(-status);
        return "unknown error";
    }
}

int thaw_errf(struct thaw_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int buf_reserve(struct buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1) return THAW_ENOMEM;
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (!p) return THAW_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int buf_append(struct buf *b, const void *data, size_t len)
{
    if (buf_reserve(b, len)) return THAW_ENOMEM;
    if (len) memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int buf_append_str(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    char small[256];
    int n = vsnprintf(small, sizeof(small), fmt, ap2);
    va_end(ap2);
    if (n < 0) return THAW_EINVAL;
    if ((size_t)n < sizeof(small)) return buf_append(b, small, (size_t)n);
    if (buf_reserve(b, (size_t)n)) return THAW_ENOMEM;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

int buf_append_json_string(struct buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    if (buf_reserve(b, len + 2)) return THAW_ENOMEM;
    b->data[b->len++] = '"';
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        if (buf_append(b, s + start, i - start)) return THAW_ENOMEM;
        start = i + 1;
        char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
        size_t n = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        if (buf_append(b, esc, n)) return THAW_ENOMEM;
    }
    if (buf_append(b, s + start, len - start)) return THAW_ENOMEM;
    return buf_append(b, "\"", 1);
}

void buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    if (b->data) b->data[b->len] = '\0';
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *buf_steal(struct buf *b)
{
    if (!b->data && buf_reserve(b, 0)) return NULL;
    char *p = b->data;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

uint64_t time_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t time_now_us(void)
{
    return time_now_ns() / 1000;
}

int64_t time_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int parse_duration_ms(const char *s, int64_t *out_ms)
{
    if (!s || !*s) return THAW_EINVAL;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0 || v != v) return THAW_EINVAL;
    double mult;
    if (*end == '\0' || strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "m") == 0)
        mult = 60000;
    else if (strcmp(end, "h") == 0)
        mult = 3600000;
    else
        return THAW_EINVAL;
    double ms = v * mult;
    if (ms > 9.0e15) return THAW_EINVAL;
    *out_ms = (int64_t)(ms + 0.5);
    return 0;
}

int random_bytes(void *out, size_t len)
{
    unsigned char *p = out;
    while (len) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

void random_hex_id(char out[33])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[16] = {0};
    if (random_bytes(raw, sizeof(raw)) != 0) {
        /* getrandom cannot fail once the pool is initialised; fall back to
         * the clock so ids still differ rather than aborting. */
        uint64_t t = time_now_ns();
        memcpy(raw, &t, sizeof(t));
    }
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[32] = '\0';
}

char *str_dup(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

size_t str_copy(char *dst, const char *src, size_t n)
{
    size_t len = strlen(src);
    if (n) {
        size_t c = len < n - 1 ? len : n - 1;
        memcpy(dst, src, c);
        dst[c] = '\0';
    }
    return len;
}
