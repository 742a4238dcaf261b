/* libFuzzer target: raw bytes as an HTTP request to the real gateway (evhttp,
 * route dispatch, authentication, limits, JSON bodies of every route) served
 * in-process over loopback, with a real SQLite store and access control.
 * Input: byte 0 picks whether the harness adds a valid admin Authorization
 * header after the request line (so routes behind the key are reached); the
 * rest is sent as is, then the write side is shut. The scale is a stub (the
 * scale_* functions the gateway calls) that fails every invocation, so no
 * process is ever started; jobs are off.
 * State (tenants, deployments) accumulates across inputs like a live node. */
#include "access/access.h"
#include "gateway/gateway.h"
#include "obs/obs.h"
#include "scale/scale.h"
#include "store/store.h"

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ADMIN_KEY "thaw_0123456789abcdef_fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzz12345"

/* ---- the scale, stubbed: the gateway is what is under test ---- */

void scale_submit(struct scale *s, struct invocation *inv)
{
    (void)s;
    inv->on_event(inv, INV_FAIL, 503, "no_instances", strdup("fuzz: no instances"));
}

void scale_apply_version(struct scale *s, struct deploy_spec *spec, int version)
{
    (void)s;
    (void)version;
    registry_spec_free(spec);
}

void scale_set_traffic(struct scale *s, const char *name, const struct registry_traffic *t,
                       int64_t rev)
{
    (void)s;
    (void)name;
    (void)t;
    (void)rev;
}

json_t *scale_version_stats(struct scale *s, const char *name, int64_t window_ms)
{
    (void)s;
    (void)name;
    (void)window_ms;
    return json_object();
}

void scale_remove(struct scale *s, const char *name)
{
    (void)s;
    (void)name;
}

json_t *scale_status(struct scale *s, const char *name)
{
    (void)s;
    (void)name;
    return json_object();
}

/* ---- one gateway for the whole run ---- */

static struct event_base *base;
static struct gateway *gw;
static int port;

static void die(const char *what, const struct thaw_err *err)
{
    fprintf(stderr, "fuzz_http_gateway: %s: %s\n", what, err ? err->msg : strerror(errno));
    abort();
}

static void setup(void)
{
    struct thaw_err err = {0};
    obs_log_set_level(LOG_ERROR);
    char dir[] = "/dev/shm/thaw-fuzz-XXXXXX", db[64];
    if (!mkdtemp(dir)) die("mkdtemp", NULL);
    snprintf(db, sizeof(db), "%s/thaw.db", dir);
    struct store *store = NULL;
    struct access *access = NULL;
    unsigned char kek[32] = {7};
    char generated[SECURITY_KEY_STR_SIZE];
    bool was_generated = false;
    if (store_open_sqlite(db, &store, &err)) die("store", &err);
    if (access_open(store, kek, &access, &err)) die("access", &err);
    if (access_bootstrap(access, ADMIN_KEY, generated, &was_generated, &err))
        die("bootstrap", &err);
    base = event_base_new();
    static int dummy_scale;
    struct gateway_config gc = {
        .host = "127.0.0.1",
        .port = 0,
        .threads = 1,
        .max_header_bytes = 16 << 10,
        .max_body_bytes = 1 << 20,
        .read_timeout_s = 5,
        .access_log = 0,
        .shared_base = base,
    };
    gw = gw_new(&gc, store, (struct scale *)&dummy_scale, access, &err);
    if (!gw || gw_start(gw, &err)) die("gateway", &err);
    gw_set_ready(gw, 1);
    port = gw_port(gw);
}

/* The request with the admin header after its first line (or prepended
 * when there is no line end). */
static char *with_auth(const unsigned char *data, size_t size, size_t *out_len)
{
    static const char hdr[] = "Authorization: Bearer " ADMIN_KEY "\r\n";
    const unsigned char *nl = memchr(data, '\n', size);
    size_t cut = nl ? (size_t)(nl - data) + 1 : 0;
    char *s = malloc(size + sizeof(hdr));
    if (!s) return NULL;
    memcpy(s, data, cut);
    memcpy(s + cut, hdr, sizeof(hdr) - 1);
    memcpy(s + cut + sizeof(hdr) - 1, data + cut, size - cut);
    *out_len = size + sizeof(hdr) - 1;
    return s;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (!gw) setup();
    if (size < 1 || size > (256 << 10)) return 0;
    bool auth = data[0] & 1;
    data++, size--;
    size_t len = size;
    char *req = auth ? with_auth(data, size, &len) : NULL;
    const char *bytes = req ? req : (const char *)data;

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    /* Closed with a reset: thousands of connections a second would
     * otherwise use up the ephemeral ports in TIME_WAIT. */
    struct linger lg = {1, 0};
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) != 0 ||
        connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        /* EINTR: libFuzzer's -timeout alarm; the input is just skipped. */
        if (errno != EADDRNOTAVAIL && errno != EAGAIN && errno != EINTR) die("connect", NULL);
        if (fd >= 0) close(fd);
        free(req);
        return 0;
    }
    /* Write what the socket takes while serving the loop in between, so a
     * large body cannot deadlock against an unread server. */
    size_t off = 0;
    char sink[16384];
    int idle = 0;
    for (int spins = 0; spins < 20000 && idle < 50; spins++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        if (off < len) {
            ssize_t n = send(fd, bytes + off, len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0) off += (size_t)n;
            if (n < 0 && errno != EAGAIN) off = len;
            if (off == len) shutdown(fd, SHUT_WR);
            continue;
        }
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 1) <= 0) {
            idle++;
            continue;
        }
        idle = 0;
        ssize_t n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN)) break;
    }
    close(fd);
    /* Let the server see the close and free the connection. */
    for (int i = 0; i < 4; i++)
        event_base_loop(base, EVLOOP_NONBLOCK);
    free(req);
    return 0;
}
