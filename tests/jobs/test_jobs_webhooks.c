/* Webhooks through the real binary: a receiver verifies each delivery's
 * HMAC-SHA256 signature over "<t>.<body>"; a failing receiver is retried
 * with backoff and then dead-lettered (listed, replayed, purged); thaw's own
 * API is never a target even when loopback is allowed. */
#include "harness.h"
#include "test.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#define SECRET "whsec-test-0123"

static struct node N;

/* ---- a tiny receiver ---- */

struct hit {
    char path[64];
    char sig[160];
    char job[64];
    char body[2048];
};

static struct hit hits[64];
static _Atomic int n_hits;
static int recv_fd, recv_port;
static pthread_t recv_thread;

static void header_value(const char *head, const char *name, char *out, size_t n)
{
    out[0] = 0;
    const char *p = strcasestr(head, name);
    if (!p) return;
    p += strlen(name);
    while (*p == ' ')
        p++;
    size_t len = strcspn(p, "\r\n");
    if (len >= n) len = n - 1;
    memcpy(out, p, len);
    out[len] = 0;
}

static void *receiver(void *arg)
{
    for (;;) {
        int c = accept(recv_fd, NULL, NULL);
        if (c < 0) return NULL;
        char buf[8192];
        size_t got = 0;
        char *end = NULL;
        while (got + 1 < sizeof(buf)) {
            ssize_t r = recv(c, buf + got, sizeof(buf) - 1 - got, 0);
            if (r <= 0) break;
            got += (size_t)r;
            buf[got] = 0;
            if ((end = strstr(buf, "\r\n\r\n"))) {
                char cl[32];
                header_value(buf, "Content-Length:", cl, sizeof(cl));
                size_t want = (size_t)(end + 4 - buf) + (size_t)atoi(cl);
                if (got >= want) break;
            }
        }
        int i = atomic_load(&n_hits);
        if (end && i < 64) {
            struct hit *h = &hits[i];
            sscanf(buf, "POST %63s", h->path);
            header_value(buf, "Thaw-Signature:", h->sig, sizeof(h->sig));
            header_value(buf, "Thaw-Job:", h->job, sizeof(h->job));
            snprintf(h->body, sizeof(h->body), "%s", end + 4);
            atomic_store(&n_hits, i + 1);
        }
        const char *resp = strstr(buf, "POST /ok") ? "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
                                                     "Connection: close\r\n\r\n"
                                                   : "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n"
                                                     "Connection: close\r\n\r\n";
        send(c, resp, strlen(resp), MSG_NOSIGNAL);
        close(c);
    }
}

static int start_receiver(void)
{
    recv_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    socklen_t len = sizeof(a);
    if (bind(recv_fd, (struct sockaddr *)&a, sizeof(a)) || listen(recv_fd, 16) ||
        getsockname(recv_fd, (struct sockaddr *)&a, &len))
        return -1;
    recv_port = ntohs(a.sin_port);
    return pthread_create(&recv_thread, NULL, receiver, NULL);
}

static int hits_for(const char *job, const char *path)
{
    int n = 0;
    for (int i = 0; i < atomic_load(&n_hits); i++)
        n += strcmp(hits[i].job, job) == 0 && strcmp(hits[i].path, path) == 0;
    return n;
}

/* What a receiver does: recompute the MAC over "<t>.<body>" and compare. */
static bool signature_ok(const struct hit *h)
{
    long long t = 0;
    char v1[65];
    if (sscanf(h->sig, "t=%lld,v1=%64s", &t, v1) != 2) return false;
    char ts[32];
    snprintf(ts, sizeof(ts), "%lld.", t);
    unsigned char mac[32];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)SECRET, strlen(SECRET));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)ts, strlen(ts));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)h->body, strlen(h->body));
    crypto_auth_hmacsha256_final(&st, mac);
    char hex[65];
    sodium_bin2hex(hex, sizeof(hex), mac, sizeof(mac));
    long long skew = (long long)time(NULL) - t;
    return strcmp(hex, v1) == 0 && skew >= -5 && skew <= 60;
}

static long submit(const char *dep, const char *body, char *id, size_t n)
{
    char path[256];
    snprintf(path, sizeof(path), "/v1/deployments/%s/jobs", dep);
    struct resp r;
    if (http(&N, "POST", path, body, NULL, &r)) return -1;
    json_t *j = resp_json(&r);
    const char *s = json_string_value(json_object_get(j, "id"));
    snprintf(id, n, "%s", s ? s : "");
    json_decref(j);
    long st = r.status;
    resp_free(&r);
    return st;
}

static bool wait_for(int (*count)(void *), void *arg, int want, int ms)
{
    long deadline = now_ms() + ms;
    while (now_ms() < deadline) {
        if (count(arg) >= want) return true;
        sleep_ms(20);
    }
    return count(arg) >= want;
}

struct q {
    const char *job, *path;
};

static int count_q(void *arg)
{
    struct q *q = arg;
    return hits_for(q->job, q->path);
}

static void test_signed_delivery(void)
{
    char m[1024];
    snprintf(m, sizeof(m),
             "{\"name\":\"hook\",\"runtime\":\"exec\",\"command\":[\"%s\"],"
             "\"jobs\":{\"webhook\":\"http://127.0.0.1:%d/ok\"}}",
             testfn_path(), recv_port);
    ASSERT_EQ(deploy(&N, m), 201);
    char id[64];
    ASSERT_EQ(submit("hook", "{\"input\":{\"hello\":\"world\"}}", id, sizeof(id)), 202);
    struct q q = {id, "/ok"};
    ASSERT(wait_for(count_q, &q, 1, 10000));
    const struct hit *h = NULL;
    for (int i = 0; i < atomic_load(&n_hits); i++)
        if (!strcmp(hits[i].job, id)) h = &hits[i];
    ASSERT(h != NULL);
    ASSERT(signature_ok(h));
    json_t *body = json_loads(h->body, 0, NULL);
    ASSERT_STR_EQ(json_string_value(json_object_get(body, "id")), id);
    ASSERT_STR_EQ(json_string_value(json_object_get(body, "state")), "succeeded");
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(body, "result"), "hello")),
                  "world");
    json_decref(body);
    /* A tampered body no longer verifies. */
    struct hit forged = *h;
    forged.body[strlen(forged.body) - 2] ^= 1;
    ASSERT(!signature_ok(&forged));
    /* Delivered exactly once. */
    sleep_ms(300);
    ASSERT_EQ(hits_for(id, "/ok"), 1);
}

static void test_failing_receiver_dead_letters(void)
{
    char id[64], body[256];
    snprintf(body, sizeof(body), "{\"input\":1,\"webhook\":\"http://127.0.0.1:%d/fail\"}",
             recv_port);
    ASSERT_EQ(submit("hook", body, id, sizeof(id)), 202);
    struct q q = {id, "/fail"};
    ASSERT(wait_for(count_q, &q, 3, 10000)); /* THAW_WEBHOOK_MAX_ATTEMPTS=3 */
    sleep_ms(500);
    ASSERT_EQ(hits_for(id, "/fail"), 3);
    for (int i = 0; i < atomic_load(&n_hits); i++)
        if (!strcmp(hits[i].job, id)) ASSERT(signature_ok(&hits[i]));
    /* Its own dead letter, with why. */
    struct resp r;
    ASSERT_EQ(http(&N, "GET", "/v1/dlq/webhooks", NULL, NULL, &r), 0);
    ASSERT_EQ(r.status, 200);
    json_t *j = resp_json(&r);
    resp_free(&r);
    json_t *list = json_object_get(j, "webhooks");
    ASSERT_EQ(json_array_size(list), 1);
    json_t *w = json_array_get(list, 0);
    ASSERT_STR_EQ(json_string_value(json_object_get(w, "job_id")), id);
    ASSERT_EQ(json_integer_value(json_object_get(w, "attempts")), 3);
    ASSERT_CONTAINS(json_string_value(json_object_get(w, "last_error")), "500");
    long long wid = json_integer_value(json_object_get(w, "id"));
    json_decref(j);
    /* Replay: delivered (and failed) again. */
    char path[128];
    snprintf(path, sizeof(path), "/v1/dlq/webhooks/%lld/replay", wid);
    ASSERT_EQ(http(&N, "POST", path, NULL, NULL, &r), 0);
    ASSERT_CONTAINS(r.body, "\"replayed\":1");
    resp_free(&r);
    ASSERT(wait_for(count_q, &q, 6, 10000));
    sleep_ms(300);
    ASSERT_EQ(http(&N, "DELETE", "/v1/dlq/webhooks", NULL, NULL, &r), 0);
    ASSERT_CONTAINS(r.body, "\"purged\":1");
    resp_free(&r);
}

static void test_own_api_is_refused(void)
{
    char id[64], body[256];
    snprintf(body, sizeof(body),
             "{\"input\":1,\"webhook\":\"http://127.0.0.1:%d/v1/deployments/hook/jobs\"}", N.port);
    ASSERT_EQ(submit("hook", body, id, sizeof(id)), 202);
    long deadline = now_ms() + 10000;
    bool dead = false;
    while (!dead && now_ms() < deadline) {
        struct resp r;
        http(&N, "GET", "/v1/dlq/webhooks", NULL, NULL, &r);
        dead = strstr(r.body, id) && strstr(r.body, "blocked");
        resp_free(&r);
        sleep_ms(50);
    }
    ASSERT(dead);
    /* Refused at once, not retried, and no second job was created. */
    struct resp r;
    ASSERT_EQ(http(&N, "GET", "/v1/jobs?deployment=hook", NULL, NULL, &r), 0);
    json_t *j = resp_json(&r);
    resp_free(&r);
    ASSERT_EQ(json_array_size(json_object_get(j, "jobs")), 3);
    json_decref(j);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (sodium_init() < 0 || start_receiver()) return 1;
    setenv("THAW_WEBHOOK_SECRET", SECRET, 1);
    setenv("THAW_WEBHOOK_ALLOW", "127.0.0.1", 1);
    setenv("THAW_WEBHOOK_BACKOFF", "100ms", 1);
    setenv("THAW_WEBHOOK_MAX_ATTEMPTS", "3", 1);
    if (node_start(&N, NULL)) {
        fprintf(stderr, "cannot start node\n");
        return 1;
    }
    RUN(test_signed_delivery);
    RUN(test_failing_receiver_dead_letters);
    RUN(test_own_api_is_refused);
    node_cleanup(&N);
    shutdown(recv_fd, SHUT_RDWR);
    close(recv_fd);
    pthread_join(recv_thread, NULL);
    curl_global_cleanup();
    return TEST_REPORT();
}
