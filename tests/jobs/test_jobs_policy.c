/* The jobs module's pure parts: which answers retry, the full-jitter
 * backoff bounds, state names, webhook signatures and the address
 * allow-list that keeps webhooks off internal networks. */
#include "jobs/jobs.h"
#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sodium.h>

static void test_classify(void)
{
    ASSERT_EQ(jobs_classify(200, NULL, false, 1, 3), JOBS_SUCCEED);
    /* 5xx: timeouts, crashes, function errors retry until the last attempt. */
    ASSERT_EQ(jobs_classify(504, "timeout", false, 1, 3), JOBS_RETRY);
    ASSERT_EQ(jobs_classify(502, "instance_crashed", false, 2, 3), JOBS_RETRY);
    ASSERT_EQ(jobs_classify(500, "function_error", false, 3, 3), JOBS_DEAD);
    ASSERT_EQ(jobs_classify(502, "instance_crashed", false, 1, 1), JOBS_DEAD);
    /* 4xx never retry. */
    ASSERT_EQ(jobs_classify(404, "not_found", false, 1, 3), JOBS_FAIL);
    ASSERT_EQ(jobs_classify(400, "invalid", false, 1, 3), JOBS_FAIL);
    /* Overload and shutdown are not the job's fault. */
    ASSERT_EQ(jobs_classify(503, "overloaded", false, 3, 3), JOBS_RELEASE);
    ASSERT_EQ(jobs_classify(503, "shutting_down", false, 1, 3), JOBS_RELEASE);
    ASSERT_EQ(jobs_classify(429, "rate_limited", false, 1, 3), JOBS_RELEASE);
    /* The same statuses from the function itself spend attempts. */
    ASSERT_EQ(jobs_classify(503, "overloaded", true, 1, 3), JOBS_RETRY);
    ASSERT_EQ(jobs_classify(429, "slow_down", true, 3, 3), JOBS_DEAD);
    ASSERT_EQ(jobs_classify(500, "function_error", true, 1, 3), JOBS_RETRY);
}

static void test_backoff_bounds(void)
{
    /* Ceiling doubles from base and stops at cap; draws cover [0, ceiling]. */
    const int64_t base = 100, cap = 1000;
    const int64_t ceilings[] = {100, 200, 400, 800, 1000, 1000, 1000};
    for (int a = 1; a <= 7; a++) {
        int64_t lo = INT64_MAX, hi = -1;
        for (uint64_t r = 0; r < 5000; r++) {
            uint64_t rnd = r * 0x9E3779B97F4A7C15ULL;
            int64_t d = jobs_backoff_ms(a, base, cap, rnd);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        ASSERT_EQ(lo, 0);
        ASSERT_CMP(hi, <=, ceilings[a - 1]);
        ASSERT_CMP(hi, >=, ceilings[a - 1] * 9 / 10);
    }
    /* Exact values at the edges of the draw. */
    ASSERT_EQ(jobs_backoff_ms(3, 100, 1000, 400), 400);
    ASSERT_EQ(jobs_backoff_ms(3, 100, 1000, 401), 0);
    /* Huge attempt numbers do not overflow. */
    ASSERT_CMP(jobs_backoff_ms(100, 1000, 300000, UINT64_MAX), <=, 300000);
    ASSERT_EQ(jobs_backoff_ms(1, 0, 0, 12345), 0);
}

static void test_backoff_mean(void)
{
    /* Full jitter: uniform, so the mean sits near half the ceiling. */
    double sum = 0;
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        sum += (double)jobs_backoff_ms(2, 500, 60000, x);
    }
    ASSERT_NEAR(sum / 20000, 500.0, 15.0);
}

static void test_state_names(void)
{
    const char *names[] = {"queued", "running", "succeeded", "failed", "dead", "cancelled"};
    for (int i = 0; i < 6; i++) {
        ASSERT_STR_EQ(jobs_state_name(i), names[i]);
        ASSERT_EQ(jobs_state_parse(names[i]), i);
    }
    ASSERT_EQ(jobs_state_parse("done"), -1);
    ASSERT_EQ(jobs_state_parse(NULL), -1);
    ASSERT_STR_EQ(jobs_state_name(17), "unknown");
}

static void test_signature(void)
{
    char sig[128];
    const char *body = "{\"id\":\"job_1\"}";
    jobs_webhook_sign("s3cret", 1700000000, body, strlen(body), sig);
    /* Recompute independently: HMAC-SHA256(key, "1700000000." + body). */
    unsigned char mac[32];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)"s3cret", 6);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)"1700000000.", 11);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, strlen(body));
    crypto_auth_hmacsha256_final(&st, mac);
    char hex[65], want[128];
    sodium_bin2hex(hex, sizeof(hex), mac, sizeof(mac));
    snprintf(want, sizeof(want), "t=1700000000,v1=%s", hex);
    ASSERT_STR_EQ(sig, want);
    /* Any change of time, body or key changes it. */
    char other[128];
    jobs_webhook_sign("s3cret", 1700000001, body, strlen(body), other);
    ASSERT(strcmp(sig, other) != 0);
    jobs_webhook_sign("s3cres", 1700000000, body, strlen(body), other);
    ASSERT(strcmp(sig, other) != 0);
    jobs_webhook_sign("s3cret", 1700000000, body, strlen(body) - 1, other);
    ASSERT(strcmp(sig, other) != 0);
}

static struct sockaddr_in v4(const char *ip, int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

static struct sockaddr_in6 v6(const char *ip, int port)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    inet_pton(AF_INET6, ip, &a.sin6_addr);
    return a;
}

static bool ok4(const char *ip, int port, const char *allow, int self)
{
    struct sockaddr_in a = v4(ip, port);
    return jobs_webhook_addr_allowed(&a, allow, self);
}

static bool ok6(const char *ip, int port, const char *allow, int self)
{
    struct sockaddr_in6 a = v6(ip, port);
    return jobs_webhook_addr_allowed(&a, allow, self);
}

static void test_allow_list(void)
{
    /* Public addresses pass; internal ones do not by default. */
    ASSERT(ok4("93.184.216.34", 443, NULL, 8080));
    ASSERT(ok6("2606:2800:220:1:248:1893:25c8:1946", 443, NULL, 8080));
    const char *internal4[] = {"127.0.0.1",   "10.1.2.3",        "172.16.0.1", "172.31.255.255",
                               "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
                               "224.0.0.1",   "255.255.255.255"};
    for (size_t i = 0; i < ARRAY_LEN(internal4); i++) {
        if (ok4(internal4[i], 80, NULL, 8080)) TEST_FAIL_("%s should be refused", internal4[i]);
    }
    ASSERT(ok4("172.32.0.1", 80, NULL, 8080)); /* just outside 172.16/12 */
    const char *internal6[] = {"::1",
                               "::",
                               "fd00::1",
                               "fe80::1",
                               "ff02::1",
                               "::ffff:127.0.0.1",
                               "::ffff:10.0.0.1",
                               "64:ff9b::a00:1"};
    for (size_t i = 0; i < ARRAY_LEN(internal6); i++) {
        if (ok6(internal6[i], 80, NULL, 8080)) TEST_FAIL_("%s should be refused", internal6[i]);
    }
    /* The operator may allow some, by address or prefix... */
    ASSERT(ok4("127.0.0.1", 9000, "127.0.0.1", 8080));
    ASSERT(ok4("10.9.8.7", 80, "192.168.0.0/16, 10.0.0.0/8", 8080));
    ASSERT(!ok4("10.9.8.7", 80, "10.0.0.0/16", 8080));
    ASSERT(ok6("::ffff:127.0.0.1", 9000, "127.0.0.1/32", 8080));
    ASSERT(ok6("fd00::5", 80, "fd00::/8", 8080));
    /* ...but never thaw's own port on a local address. */
    ASSERT(!ok4("127.0.0.1", 8080, "127.0.0.0/8", 8080));
    ASSERT(!ok6("::1", 8080, "::1", 8080));
    ASSERT(!ok4("0.0.0.0", 8080, "0.0.0.0/0", 8080));
    /* Garbage in the list is ignored, not a crash. */
    ASSERT(!ok4("127.0.0.1", 80, "nonsense,/,300.1.1.1/8,127.0.0.1/99,", 8080));
    /* Other families are refused. */
    struct sockaddr un = {.sa_family = AF_UNIX};
    ASSERT(!jobs_webhook_addr_allowed(&un, NULL, 0));
}

int main(void)
{
    RUN(test_classify);
    RUN(test_backoff_bounds);
    RUN(test_backoff_mean);
    RUN(test_state_names);
    RUN(test_signature);
    RUN(test_allow_list);
    return TEST_REPORT();
}
