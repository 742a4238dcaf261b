/* thaw push FILE: uploads an artifact through a resumable upload session,
 * skipping it when the server already has the digest, with a progress bar
 * on a terminal. An interrupted push resumes where the server says it got
 * to: the session id is kept in a small state file keyed by the file's
 * path, size and mtime (under $XDG_CACHE_HOME/thaw/push or ~/.cache). */
#include "base/base.h"
#include "cli/cli.h"
#include "cli/cli_cmds.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATE_PATH_MAX 1200
#define MAX_RETRIES    5
#define DEFAULT_CHUNK  (16LL << 20)

struct push {
    const char *server;
    bool json, progress;
    const char *file;
    int fd;
    int64_t size;
    char digest[80];
    char session[40];
    char state_path[STATE_PATH_MAX];
    int64_t chunk_max, chunk_want, rate;
    CURL *curl;
    /* progress */
    const char *phase;
    int64_t done_base; /* bytes done before the current request */
    int64_t run_start; /* offset where this run started sending */
    double t0, last_draw;
};

struct reply {
    long status;
    struct buf body;
    int64_t upload_offset; /* -1 when absent */
    char error[CURL_ERROR_SIZE];
};

static double now_s(void)
{
    return (double)time_now_ns() / 1e9;
}

/* ---- progress ---- */

static void human(double bytes, char *out, size_t n)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4)
        bytes /= 1024, u++;
    snprintf(out, n, u ? "%.2f %s" : "%.0f %s", bytes, unit[u]);
}

static void draw(struct push *p, int64_t done, bool final)
{
    double t = now_s();
    if (!p->progress || (!final && t - p->last_draw < 0.1)) return;
    p->last_draw = t;
    double el = t - p->t0, frac = p->size ? (double)done / (double)p->size : 1;
    double rate = el > 0 ? (double)(done - p->run_start) / el : 0;
    char bar[31], a[24], b[24], r[24], eta[24] = "--:--";
    int fill = (int)(frac * 30);
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    human((double)done, a, sizeof(a));
    human((double)p->size, b, sizeof(b));
    human(rate, r, sizeof(r));
    if (rate > 0 && done < p->size) {
        long s = (long)((double)(p->size - done) / rate + 0.5);
        snprintf(eta, sizeof(eta), "%ld:%02ld", s / 60, s % 60);
    } else if (done >= p->size) {
        snprintf(eta, sizeof(eta), "0:00");
    }
    fprintf(stderr, "\r%-9s [%s] %s / %s  %s/s  ETA %s\033[K", p->phase, bar, a, b, r, eta);
    if (final) fputc('\n', stderr);
    fflush(stderr);
}

static int xferinfo(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                    curl_off_t ulnow)
{
    struct push *p = arg;
    draw(p, p->done_base + (int64_t)ulnow, false);
    return 0;
}

/* ---- HTTP ---- */

struct upload_src {
    int fd;
    int64_t off, left;
};

static size_t read_cb(char *out, size_t size, size_t n, void *arg)
{
    struct upload_src *s = arg;
    size_t want = size * n;
    if ((int64_t)want > s->left) want = (size_t)s->left;
    if (want == 0) return 0;
    ssize_t r;
    do
        r = pread(s->fd, out, want, (off_t)s->off);
    while (r < 0 && errno == EINTR);
    if (r <= 0) return CURL_READFUNC_ABORT; /* the file shrank or failed */
    s->off += r;
    s->left -= r;
    return (size_t)r;
}

static size_t body_cb(char *d, size_t size, size_t n, void *arg)
{
    struct reply *r = arg;
    return buf_append(&r->body, d, size * n) ? 0 : size * n;
}

static size_t header_cb(char *d, size_t size, size_t n, void *arg)
{
    struct reply *r = arg;
    size_t len = size * n;
    if (len > 14 && strncasecmp(d, "Upload-Offset:", 14) == 0) {
        char v[32] = "";
        size_t vl = MIN(len - 14, sizeof(v) - 1);
        memcpy(v, d + 14, vl);
        char *end;
        long long o = strtoll(v, &end, 10);
        if (end != v && o >= 0) r->upload_offset = o;
    }
    return len;
}

/* One request on the push's keep-alive handle. With src, the body is that
 * range of the file, streamed. Returns 0 when an answer came back. */
static int request(struct push *p, const char *method, const char *path, const char *json,
                   struct upload_src *src, struct reply *r)
{
    memset(r, 0, sizeof(*r));
    r->upload_offset = -1;
    CURL *c = p->curl;
    curl_easy_reset(c); /* keeps the live connection */
    struct buf url = {0}, h1 = {0};
    buf_printf(&url, "%s%s", p->server, path);
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    const char *key = getenv("THAW_KEY");
    if (key && *key) {
        buf_printf(&h1, "Authorization: Bearer %s", key);
        h = curl_slist_append(h, h1.data);
    }
    curl_easy_setopt(c, CURLOPT_URL, url.data);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->error);
    if (!strcmp(method, "HEAD"))
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    char off_hdr[64];
    if (src) {
        snprintf(off_hdr, sizeof(off_hdr), "Upload-Offset: %lld", (long long)src->off);
        h = curl_slist_append(h, off_hdr);
        h = curl_slist_append(h, "Content-Type: application/offset+octet-stream");
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
        curl_easy_setopt(c, CURLOPT_READDATA, src);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)src->left);
        curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, 2L << 20); /* fewer, larger reads */
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, xferinfo);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, p);
        if (p->rate > 0) curl_easy_setopt(c, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)p->rate);
    } else if (json) {
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(json));
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    CURLcode cc = curl_easy_perform(c);
    if (cc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    else if (!r->error[0])
        snprintf(r->error, sizeof(r->error), "%s", curl_easy_strerror(cc));
    curl_slist_free_all(h);
    buf_free(&url);
    buf_free(&h1);
    return cc == CURLE_OK ? 0 : -1;
}

static json_t *reply_json(const struct reply *r)
{
    return r->body.data ? json_loadb(r->body.data, r->body.len, 0, NULL) : NULL;
}

/* Prints the server's error (or the transport's) and returns an exit code. */
static int fail(struct push *p, const struct reply *r, const char *what)
{
    if (p->progress) fputc('\n', stderr);
    if (r->status == 0) {
        fprintf(stderr, "thaw push: %s: cannot reach %s: %s\n", what, p->server, r->error);
        return CLI_EXIT_UNREACHABLE;
    }
    json_t *j = reply_json(r);
    const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    fprintf(stderr, "thaw push: %s: %s (HTTP %ld)\n", what, msg ? msg : "request failed",
            r->status);
    json_decref(j);
    return r->status == 404 ? CLI_EXIT_NOTFOUND : CLI_EXIT_ERROR;
}

/* ---- state file ---- */

static int state_dir(char *out, size_t n)
{
    const char *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int w;
    if (x && *x)
        w = snprintf(out, n, "%s/thaw", x);
    else if (home && *home)
        w = snprintf(out, n, "%s/.cache/thaw", home);
    else
        return -1;
    if (w < 0 || (size_t)w + 40 >= n) return -1;
    for (char *s = out + 1; *s; s++) { /* mkdir -p */
        if (*s != '/') continue;
        *s = 0;
        mkdir(out, 0700);
        *s = '/';
    }
    mkdir(out, 0700);
    strcat(out, "/push");
    mkdir(out, 0700);
    return 0;
}

/* The state file for this file on this server: a hash of the server, the
 * file's real path, its size and mtime, so a changed file starts afresh. */
static void state_path(struct push *p, const struct stat *st)
{
    char dir[STATE_PATH_MAX - 80], real[PATH_MAX];
    p->state_path[0] = 0;
    if (state_dir(dir, sizeof(dir)) || !realpath(p->file, real)) return;
    struct buf key = {0};
    buf_printf(&key, "%s\n%s\n%lld\n%lld.%09ld", p->server, real, (long long)st->st_size,
               (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
    unsigned char md[32];
    unsigned int len = 0;
    EVP_Digest(key.data, key.len, md, &len, EVP_sha256(), NULL);
    buf_free(&key);
    char hex[33];
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    snprintf(p->state_path, sizeof(p->state_path), "%s/%s.json", dir, hex);
}

static void state_load(struct push *p)
{
    if (!p->state_path[0]) return;
    json_t *j = json_load_file(p->state_path, 0, NULL);
    const char *d = json_string_value(json_object_get(j, "digest"));
    const char *s = json_string_value(json_object_get(j, "session"));
    if (d && strlen(d) == 71 && !strncmp(d, "sha256:", 7))
        str_copy(p->digest, d, sizeof(p->digest));
    if (s && strlen(s) == 32 && strspn(s, "0123456789abcdef") == 32)
        str_copy(p->session, s, sizeof(p->session));
    json_decref(j);
}

/* Written to a temporary name and renamed, so a kill never leaves half. */
static void state_save(struct push *p)
{
    if (!p->state_path[0]) return;
    json_t *j = json_pack("{s:s, s:s, s:I}", "file", p->file, "digest", p->digest, "size",
                          (json_int_t)p->size);
    if (p->session[0]) json_object_set_new(j, "session", json_string(p->session));
    char tmp[STATE_PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", p->state_path);
    if (j && json_dump_file(j, tmp, JSON_COMPACT) == 0) rename(tmp, p->state_path);
    json_decref(j);
}

static void state_remove(struct push *p)
{
    if (p->state_path[0]) unlink(p->state_path);
}

/* ---- steps ---- */

static int hash_file(struct push *p)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    size_t cap = 4 << 20;
    char *b = malloc(cap);
    int rc = md && b && EVP_DigestInit_ex(md, EVP_sha256(), NULL) ? 0 : -ENOMEM;
    p->phase = "hashing";
    p->t0 = now_s();
    p->run_start = 0;
    int64_t off = 0;
    while (!rc && off < p->size) {
        ssize_t n = pread(p->fd, b, cap, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0)
            rc = n < 0 ? -errno : -EIO; /* shorter than fstat said */
        else if (!EVP_DigestUpdate(md, b, (size_t)n))
            rc = -ENOMEM;
        else
            off += n;
        draw(p, off, false);
    }
    unsigned char d[32];
    unsigned int len = 0;
    if (!rc && !EVP_DigestFinal_ex(md, d, &len)) rc = -ENOMEM;
    if (!rc) {
        strcpy(p->digest, "sha256:");
        for (int i = 0; i < 32; i++)
            snprintf(p->digest + 7 + 2 * i, 3, "%02x", d[i]);
        draw(p, off, true);
    }
    EVP_MD_CTX_free(md);
    free(b);
    return rc;
}

/* Asks the server where a remembered session is; false when it is gone. */
static bool session_resume(struct push *p, int64_t *offset)
{
    struct buf path = {0};
    buf_printf(&path, "/v1/artifacts/uploads/%s", p->session);
    struct reply r;
    request(p, "GET", path.data, NULL, NULL, &r);
    buf_free(&path);
    json_t *j = r.status == 200 ? reply_json(&r) : NULL;
    bool ok = json_is_integer(json_object_get(j, "offset"));
    if (ok) {
        *offset = json_integer_value(json_object_get(j, "offset"));
        p->chunk_max = json_integer_value(json_object_get(j, "chunk_max"));
    }
    json_decref(j);
    buf_free(&r.body);
    return ok && *offset >= 0 && *offset <= p->size && p->chunk_max > 0;
}

/* Starts a session, or learns that the server has the blob (*exists). */
static int session_start(struct push *p, bool *exists)
{
    *exists = false;
    char body[200];
    snprintf(body, sizeof(body), "{\"size\":%lld,\"digest\":\"%s\"}", (long long)p->size,
             p->digest);
    struct reply r;
    request(p, "POST", "/v1/artifacts/uploads", body, NULL, &r);
    json_t *j = reply_json(&r);
    int rc = 0;
    if (r.status == 200 && json_is_true(json_object_get(j, "exists"))) {
        *exists = true;
    } else if (r.status == 201 && json_string_value(json_object_get(j, "id"))) {
        str_copy(p->session, json_string_value(json_object_get(j, "id")), sizeof(p->session));
        p->chunk_max = json_integer_value(json_object_get(j, "chunk_max"));
        if (p->chunk_max <= 0) p->chunk_max = 1 << 20;
        state_save(p);
    } else {
        rc = fail(p, &r, "cannot start the upload");
    }
    json_decref(j);
    buf_free(&r.body);
    return rc;
}

/* Sends [offset, size) chunk by chunk. Transport errors are retried (the
 * server is asked where it got to); a lost session returns -1. */
static int send_chunks(struct push *p, int64_t *offset)
{
    struct buf path = {0};
    buf_printf(&path, "/v1/artifacts/uploads/%s", p->session);
    /* The node holds a whole chunk in memory while it arrives: 16 MiB keeps
     * that small and is as fast as larger ones (bench/artifacts). */
    int64_t want = p->chunk_want > 0 ? p->chunk_want : DEFAULT_CHUNK;
    int64_t chunk = MIN(want, p->chunk_max);
    int retries = 0, rc = 0;
    while (*offset < p->size && !rc) {
        struct upload_src src = {p->fd, *offset, MIN(chunk, p->size - *offset)};
        struct reply r;
        p->done_base = *offset;
        request(p, "PATCH", path.data, NULL, &src, &r);
        json_t *j = reply_json(&r);
        json_t *off = r.status == 409 ? json_object_get(json_object_get(j, "error"), "offset")
                                      : json_object_get(j, "offset");
        if ((r.status == 200 || r.status == 409) && json_is_integer(off)) {
            *offset = json_integer_value(off); /* 409: the server says where to go on */
            retries = r.status == 200 ? 0 : retries + 1;
            if (retries > MAX_RETRIES) rc = fail(p, &r, "upload keeps conflicting");
        } else if (r.status == 404) {
            rc = -1;
        } else if (r.status == 0 && ++retries <= MAX_RETRIES) {
            sleep((unsigned)retries);
            if (!session_resume(p, offset)) rc = -1;
        } else {
            rc = fail(p, &r, "upload failed");
        }
        json_decref(j);
        buf_free(&r.body);
        draw(p, *offset, false);
    }
    buf_free(&path);
    return rc;
}

static int complete(struct push *p, bool *created)
{
    struct buf path = {0};
    buf_printf(&path, "/v1/artifacts/uploads/%s/complete", p->session);
    char body[120];
    snprintf(body, sizeof(body), "{\"digest\":\"%s\"}", p->digest);
    struct reply r;
    request(p, "POST", path.data, body, NULL, &r);
    buf_free(&path);
    int rc = 0;
    if (r.status == 200 || r.status == 201) {
        *created = r.status == 201;
    } else {
        if (r.status == 400) state_remove(p); /* a mismatch ends the session */
        rc = fail(p, &r, "cannot complete the upload");
    }
    buf_free(&r.body);
    return rc;
}

/* ---- command ---- */

static int parse_bytes(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    int64_t mul = 1;
    if (*end == 'k' || *end == 'K')
        mul = 1 << 10, end++;
    else if (*end == 'm' || *end == 'M')
        mul = 1 << 20, end++;
    else if (*end == 'g' || *end == 'G')
        mul = 1 << 30, end++;
    if (*end == 'i') end++;
    if (*end == 'B' || *end == 'b') end++;
    if (errno || end == s || *end || v <= 0 || v * (double)mul > 1e15) return -1;
    *out = (int64_t)(v * (double)mul);
    return 0;
}

static int usage(void)
{
    fputs("usage: thaw push FILE [--server URL] [--json] [--chunk-size BYTES]\n"
          "                      [--limit-rate BYTES/s] [--no-progress]\n"
          "--chunk-size defaults to 16M (at most what the server allows).\n"
          "Uploads FILE as an artifact and prints its digest (sha256:...). An interrupted\n"
          "push resumes where it stopped when run again.\n",
          stderr);
    return CLI_EXIT_USAGE;
}

static void report(const struct push *p, bool existed, int64_t resumed_from, double secs)
{
    if (p->json) {
        json_t *j = json_pack("{s:s, s:I, s:b, s:I, s:I, s:f}", "digest", p->digest, "size",
                              (json_int_t)p->size, "existed", existed, "resumed_from",
                              (json_int_t)resumed_from, "uploaded_bytes",
                              (json_int_t)(existed ? 0 : p->size - resumed_from), "seconds", secs);
        char *s = json_dumps(j, JSON_COMPACT);
        if (s) puts(s);
        free(s);
        json_decref(j);
        return;
    }
    puts(p->digest);
    if (!isatty(2)) return;
    char sz[24], r[24];
    human((double)p->size, sz, sizeof(sz));
    human(secs > 0 ? (double)(p->size - resumed_from) / secs : 0, r, sizeof(r));
    if (existed)
        fprintf(stderr, "already on the server (%s)\n", sz);
    else
        fprintf(stderr, "pushed %s in %.1f s (%s/s)%s\n", sz, secs, r,
                resumed_from ? ", resumed" : "");
}

static int run(struct push *p)
{
    struct stat st;
    if (fstat(p->fd, &st) || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "thaw push: %s is not a regular file\n", p->file);
        return CLI_EXIT_USAGE;
    }
    p->size = (int64_t)st.st_size;
    state_path(p, &st);
    state_load(p);
    int rc;
    if (!p->digest[0] && (rc = hash_file(p))) {
        fprintf(stderr, "thaw push: cannot read %s: %s\n", p->file, strerror(-rc));
        return CLI_EXIT_ERROR;
    }
    double t0 = now_s();
    int64_t offset = 0, resumed_from = 0;
    bool existed = false, created = false;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (p->session[0] && session_resume(p, &offset)) {
            resumed_from = offset;
        } else {
            p->session[0] = 0;
            offset = resumed_from = 0;
            if ((rc = session_start(p, &existed))) return rc;
            if (existed) break;
        }
        p->phase = "uploading";
        p->t0 = now_s();
        p->run_start = offset;
        rc = send_chunks(p, &offset);
        if (rc > 0) return rc;
        if (rc == 0) break;
        p->session[0] = 0; /* the session vanished (expired?): once more from scratch */
    }
    if (!existed) {
        if (offset < p->size) {
            fprintf(stderr, "thaw push: the upload session keeps disappearing\n");
            return CLI_EXIT_ERROR;
        }
        draw(p, offset, true);
        if ((rc = complete(p, &created))) return rc;
    }
    state_remove(p);
    report(p, existed, resumed_from, now_s() - t0);
    return CLI_EXIT_OK;
}

int cli_cmd_push(int argc, char **argv)
{
    struct push p = {.fd = -1, .progress = isatty(2)};
    const char *env = getenv("THAW_SERVER");
    p.server = env && *env ? env : "http://127.0.0.1:8080";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--server") && i + 1 < argc)
            p.server = argv[++i];
        else if (!strncmp(a, "--server=", 9))
            p.server = a + 9;
        else if (!strcmp(a, "--json"))
            p.json = true;
        else if (!strcmp(a, "--no-progress"))
            p.progress = false;
        else if (!strcmp(a, "--chunk-size") && i + 1 < argc) {
            if (parse_bytes(argv[++i], &p.chunk_want)) return usage();
        } else if (!strcmp(a, "--limit-rate") && i + 1 < argc) {
            if (parse_bytes(argv[++i], &p.rate)) return usage();
        } else if (a[0] == '-' && a[1])
            return usage();
        else if (!p.file)
            p.file = a;
        else
            return usage();
    }
    if (!p.file) return usage();
    p.fd = open(p.file, O_RDONLY | O_CLOEXEC);
    if (p.fd < 0) {
        fprintf(stderr, "thaw push: cannot open %s: %s\n", p.file, strerror(errno));
        return CLI_EXIT_USAGE;
    }
    p.curl = curl_easy_init();
    int rc = p.curl ? run(&p) : CLI_EXIT_ERROR;
    if (p.curl) curl_easy_cleanup(p.curl);
    close(p.fd);
    return rc;
}
