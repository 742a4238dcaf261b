/* Foundations every thaw module shares: status codes with messages, a
 * growable byte buffer, monotonic time and small string helpers. Nothing here
 * allocates behind the caller's back or knows about HTTP, processes or models. */
#ifndef THAW_BASE_H
#define THAW_BASE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Status codes: 0 is success, negative is failure. System errors are passed
 * through as -errno; thaw's own codes live below THAW_E_BASE so they never
 * collide with an errno value. */
enum thaw_status {
    THAW_OK = 0,
    THAW_E_BASE = -10000,
    THAW_EINVAL = -10001, /* bad input: a parser or validator said no */
    THAW_ENOMEM = -10002, /* allocation failed */
    THAW_ENOTFOUND = -10003,
    THAW_EEXIST = -10004,
    THAW_EIO = -10005,     /* a file or stream failed or ended early */
    THAW_EFORMAT = -10006, /* a file is not what it claims to be */
    THAW_ERANGE = -10007,  /* a count, size or offset is out of bounds */
    THAW_EUNSUPPORTED = -10008,
    THAW_ETIMEOUT = -10009,
    THAW_EBUSY = -10010,  /* overloaded or queue full */
    THAW_ESTATE = -10011, /* the object is in the wrong state for this call */
    THAW_ECRASH = -10012, /* a child process died */
    THAW_EDENIED = -10013,
    THAW_ECONFLICT = -10014,
};

/* Returns a static, human-readable name for a status code (never NULL). */
const char *thaw_strerror(int status);

/* A place for a message the caller can show. Functions that can fail take a
 * `struct thaw_err *err` (which may be NULL) and fill it on failure. */
struct thaw_err {
    int code;
    char msg[512];
};

/* Sets err (if not NULL) to code and a formatted message; returns code, so
 * `return thaw_errf(err, THAW_EINVAL, "bad %s", what);` reads naturally. */
int thaw_errf(struct thaw_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Growable byte buffer. Always NUL-terminated after any successful append so
 * data can be used as a C string; len excludes the terminator. */
struct buf {
    char *data;
    size_t len;
    size_t cap;
};

/* Ensures room for `extra` more bytes. Returns 0 or THAW_ENOMEM. */
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *data, size_t len);
int buf_append_str(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Appends s as a JSON string literal, quotes included. */
int buf_append_json_string(struct buf *b, const char *s, size_t len);
/* Drops the first n bytes. */
void buf_consume(struct buf *b, size_t n);
void buf_reset(struct buf *b);
/* Frees the storage; the struct itself is the caller's. Safe on a zeroed buf. */
void buf_free(struct buf *b);
/* Hands the storage to the caller (free() it) and empties b. Never NULL
 * unless allocation fails. */
char *buf_steal(struct buf *b);

/* Monotonic clock. */
uint64_t time_now_ns(void);
uint64_t time_now_us(void);
/* Wall clock, milliseconds since the epoch. */
int64_t time_wall_ms(void);

/* Parses a duration: "250ms", "30s", "5m", "1h", or a bare number of seconds
 * (fractions allowed). Returns 0 and sets *out_ms, or THAW_EINVAL. */
int parse_duration_ms(const char *s, int64_t *out_ms);

/* Random bytes from the kernel; returns 0 or -errno. */
int random_bytes(void *out, size_t len);
/* Writes a 32-hex-digit random id plus NUL into out (33 bytes). */
void random_hex_id(char out[33]);

/* Duplicates a string; NULL in, NULL out. Returns NULL on allocation failure. */
char *str_dup(const char *s);
/* Copies src into dst of size n, always terminating; returns strlen(src). */
size_t str_copy(char *dst, const char *src, size_t n);

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b)    ((a) < (b) ? (a) : (b))
#define MAX(a, b)    ((a) > (b) ? (a) : (b))

#endif
