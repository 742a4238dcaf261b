/* Webhooks: deliveries queued in the store when a job ends are POSTed by
 * one thread with libcurl, signed with HMAC-SHA256 over "<unix time>.<body>",
 * retried with backoff and dead-lettered after their last attempt. Every
 * connection's address is checked as the socket opens (so DNS cannot
 * rebind around it): internal addresses and thaw's own port are refused
 * unless the operator's allow-list names them; proxies are never used. */
#include "jobs/jobs_int.h"
#include "obs/obs.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

void jobs_webhook_sign(const char *secret, int64_t t, const char *body, size_t len, char out[128])
{
    crypto_auth_hmacsha256_state st;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    char ts[32], hex[2 * crypto_auth_hmacsha256_BYTES + 1];
    snprintf(ts, sizeof(ts), "%lld.", (long long)t);
    const char *key = secret ? secret : "";
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)key, strlen(key));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)ts, strlen(ts));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, len);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_bin2hex(hex, sizeof(hex), mac, sizeof(mac));
    snprintf(out, 128, "t=%lld,v1=%s", (long long)t, hex);
}

/* ---- the allow-list ---- */

/* An address as 16 bytes (IPv4 as ::ffff:a.b.c.d) and its port. */
static bool addr_bytes(const void *sa, uint8_t out[16], int *port)
{
    const struct sockaddr *s = sa;
    if (s->sa_family == AF_INET) {
        const struct sockaddr_in *in = sa;
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &in->sin_addr, 4);
        *port = ntohs(in->sin_port);
        return true;
    }
    if (s->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = sa;
        memcpy(out, &in6->sin6_addr, 16);
        *port = ntohs(in6->sin6_port);
        return true;
    }
    return false;
}

static bool prefix_match(const uint8_t *a, const uint8_t *net, int bits)
{
    int full = bits / 8, rest = bits % 8;
    if (memcmp(a, net, (size_t)full) != 0) return false;
    if (!rest) return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (net[full] & mask);
}

/* Parses "a.b.c.d[/n]" or "x:y::z[/n]" into 16 bytes and a prefix length. */
static bool cidr_parse(const char *s, size_t len, uint8_t net[16], int *bits)
{
    char text[64];
    if (len == 0 || len >= sizeof(text)) return false;
    memcpy(text, s, len);
    text[len] = 0;
    char *slash = strchr(text, '/');
    int n = -1;
    if (slash) {
        *slash = 0;
        char *end;
        long v = strtol(slash + 1, &end, 10);
        if (*end || end == slash + 1 || v < 0 || v > 128) return false;
        n = (int)v;
    }
    struct in_addr a4;
    if (inet_pton(AF_INET, text, &a4) == 1) {
        if (n > 32) return false;
        memset(net, 0, 10);
        net[10] = net[11] = 0xff;
        memcpy(net + 12, &a4, 4);
        *bits = 96 + (n < 0 ? 32 : n);
        return true;
    }
    if (inet_pton(AF_INET6, text, net) == 1) {
        *bits = n < 0 ? 128 : n;
        return true;
    }
    return false;
}

static bool in_list(const uint8_t a[16], const char *list)
{
    for (const char *p = list; p && *p;) {
        while (*p == ',' || *p == ' ')
            p++;
        size_t len = strcspn(p, ", ");
        uint8_t net[16];
        int bits;
        if (len && cidr_parse(p, len, net, &bits) && prefix_match(a, net, bits)) return true;
        p += len;
    }
    return false;
}

/* Loopback, private, link-local, shared, multicast, reserved and the like;
 * IPv4 entries match IPv4 and IPv4-mapped IPv6 alike. */
static const char *const internal_nets =
    "0.0.0.0/8,10.0.0.0/8,100.64.0.0/10,127.0.0.0/8,169.254.0.0/16,172.16.0.0/12,"
    "192.0.0.0/24,192.168.0.0/16,198.18.0.0/15,224.0.0.0/4,240.0.0.0/4,"
    "::/128,::1/128,fc00::/7,fe80::/10,ff00::/8,64:ff9b::/96";

static bool is_local(const uint8_t a[16])
{
    return in_list(a, "127.0.0.0/8,0.0.0.0/32,::1/128,::/128");
}

bool jobs_webhook_addr_allowed(const void *sockaddr, const char *allow, int self_port)
{
    uint8_t a[16];
    int port;
    if (!addr_bytes(sockaddr, a, &port)) return false;
    if (self_port > 0 && port == self_port && is_local(a)) return false;
    if (allow && in_list(a, allow)) return true;
    return !in_list(a, internal_nets);
}

/* ---- delivery ---- */

struct delivery {
    struct jobs *j;
    bool blocked;
    char blocked_addr[64];
};

static curl_socket_t open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *addr)
{
    struct delivery *dl = arg;
    if (!jobs_webhook_addr_allowed(&addr->addr, dl->j->cfg.webhook_allow, dl->j->cfg.self_port)) {
        dl->blocked = true;
        uint8_t a[16];
        int port = 0;
        char text[INET6_ADDRSTRLEN] = "?";
        if (addr_bytes(&addr->addr, a, &port)) {
            if (addr->family == AF_INET)
                inet_ntop(AF_INET, &((struct sockaddr_in *)&addr->addr)->sin_addr, text,
                          sizeof(text));
            else
                inet_ntop(AF_INET6, a, text, sizeof(text));
        }
        snprintf(dl->blocked_addr, sizeof(dl->blocked_addr), "%s port %d", text, port);
        return CURL_SOCKET_BAD;
    }
    return socket(addr->family, addr->socktype, addr->protocol);
}

static int progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    struct delivery *dl = arg;
    pthread_mutex_lock(&dl->j->lock);
    bool stop = dl->j->stopping;
    pthread_mutex_unlock(&dl->j->lock);
    return stop ? 1 : 0;
}

static size_t discard(char *p, size_t s, size_t n, void *arg)
{
    return s * n;
}

/* Sends one delivery. Returns 0 (delivered), 1 (failed, retry) or 2
 * (blocked: never retried), with why filled on failure. */
static int deliver(struct jobs *j, const struct store_webhook *w, const char *body, size_t len,
                   char *why, size_t why_n)
{
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(why, why_n, "out of memory");
        return 1;
    }
    struct delivery dl = {.j = j};
    char sig[128], h_sig[160], h_id[96], h_job[96];
    jobs_webhook_sign(j->cfg.webhook_secret, time(NULL), body, len, sig);
    snprintf(h_sig, sizeof(h_sig), "Thaw-Signature: %s", sig);
    snprintf(h_id, sizeof(h_id), "Thaw-Delivery: %lld", (long long)w->id);
    snprintf(h_job, sizeof(h_job), "Thaw-Job: %s", w->job_id);
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, h_sig);
    h = curl_slist_append(h, h_id);
    h = curl_slist_append(h, h_job);
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, w->url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "thaw-webhook/1");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)j->cfg.webhook_timeout_ms);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &dl);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &dl);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    CURLcode cc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (dl.blocked) {
        snprintf(why, why_n, "blocked: %s is an internal address not on the allow-list",
                 dl.blocked_addr);
        return 2;
    }
    if (cc != CURLE_OK) {
        snprintf(why, why_n, "%s", curl_easy_strerror(cc));
        return 1;
    }
    if (status < 200 || status > 299) {
        snprintf(why, why_n, "the receiver answered %ld", status);
        return 1;
    }
    return 0;
}

static void handle(struct jobs *j, struct store_webhook *w)
{
    char *body = NULL, why[256] = "";
    size_t len = 0;
    int res = 1;
    if (jobs_open(j, NULL, w->body, w->body_len, &body, &len))
        snprintf(why, sizeof(why), "out of memory");
    else
        res = deliver(j, w, body, len, why, sizeof(why));
    free(body);
    int attempts = w->attempts + 1;
    int64_t now = jobs_wall_ms(), next = now;
    int state = 0;
    if (res == 0)
        state = 1;
    else if (res == 2 || attempts >= j->cfg.webhook_max_attempts)
        state = 2;
    else {
        pthread_mutex_lock(&j->lock);
        next = now + jobs_backoff_ms(attempts, j->cfg.webhook_backoff_base_ms,
                                     j->cfg.webhook_backoff_cap_ms, jobs_random(j));
        pthread_mutex_unlock(&j->lock);
    }
    if (j->f_webhooks) {
        const char *outcome = res == 0 ? "delivered" : state == 2 ? "dead" : "retry";
        obs_metric_add(obs_metric_series(j->f_webhooks, (const char *[]){outcome}), 1);
    }
    struct thaw_err err = {0};
    if (store_webhook_update(j->cfg.store, w->id, state, attempts, next, res ? why : NULL, &err))
        OBS_LOG(LOG_ERROR, "webhook_record_failed", LOG_S("error", err.msg));
    if (res)
        OBS_LOG(state == 2 ? LOG_WARN : LOG_INFO, "webhook_failed", LOG_S("job", w->job_id),
                LOG_I("delivery", w->id), LOG_I("attempt", attempts), LOG_S("error", why),
                LOG_S("outcome", state == 2 ? "dead" : "retry"));
}

/* Waits for the next due delivery or a kick (a new delivery), at most a
 * minute: an idle node does not poll the store every second. */
static void wait_until(struct jobs *j, int64_t wall_ms)
{
    int64_t now = jobs_wall_ms();
    int64_t ms = wall_ms - now;
    if (ms > 60000) ms = 60000;
    if (ms <= 0) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&j->lock);
    if (!j->stopping && !j->hook_kick) pthread_cond_timedwait(&j->hook_cv, &j->lock, &ts);
    j->hook_kick = false;
    pthread_mutex_unlock(&j->lock);
}

void *jobs_webhook_main(void *arg)
{
    struct jobs *j = arg;
    struct store_webhook due[16];
    for (;;) {
        pthread_mutex_lock(&j->lock);
        bool stop = j->stopping;
        pthread_mutex_unlock(&j->lock);
        if (stop) break;
        struct thaw_err err = {0};
        int n = store_webhook_due(j->cfg.store, jobs_wall_ms(), due, (int)ARRAY_LEN(due), &err);
        for (int i = 0; i < n; i++) {
            handle(j, &due[i]);
            store_webhook_clear(&due[i]);
        }
        if (n > 0) continue;
        pthread_mutex_lock(&j->lock);
        j->hook_kick = false; /* everything queued until now was looked at */
        pthread_mutex_unlock(&j->lock);
        int64_t next = INT64_MAX;
        if (store_webhook_next(j->cfg.store, &next, &err)) next = jobs_wall_ms() + 1000;
        wait_until(j, next);
    }
    return NULL;
}
