/* Tests for the GCRA rate limiter, concurrency limiter and daily quotas in
 * src/security, on simulated time. */
#include "security/security.h"
#include "test.h"

#include <pthread.h>

#define MS  1000000ull
#define SEC 1000000000ull
#define T0  (1000 * SEC)

static void test_burst_exact(void)
{
    struct security_ratelimiter *rl = NULL;
    ASSERT_EQ(security_ratelimiter_new(1000, &rl, NULL), 0);
    struct security_rate_result r;
    for (uint32_t i = 0; i < 5; i++) {
        ASSERT_EQ(security_ratelimit_check(rl, "k", 10, 5, 1, T0, &r), 0);
        ASSERT(r.allowed);
        ASSERT_EQ(r.limit, 5);
        ASSERT_EQ(r.remaining, 4 - i);
        ASSERT_EQ(r.reset_ns, (i + 1) * 100 * MS);
        ASSERT_EQ(r.retry_after_ns, 0);
    }
    ASSERT_EQ(security_ratelimit_check(rl, "k", 10, 5, 1, T0, &r), 0);
    ASSERT(!r.allowed);
    ASSERT_EQ(r.remaining, 0);
    ASSERT_EQ(r.retry_after_ns, 100 * MS);
    ASSERT_EQ(r.retry_after_s, 1);
    ASSERT_EQ(r.reset_ns, 500 * MS);
    ASSERT_EQ(r.reset_s, 1);
    /* One nanosecond early is still denied; at retry_after it passes. */
    ASSERT_EQ(security_ratelimit_check(rl, "k", 10, 5, 1, T0 + 100 * MS - 1, &r), 0);
    ASSERT(!r.allowed);
    ASSERT_EQ(r.retry_after_ns, 1);
    ASSERT_EQ(r.retry_after_s, 1);
    ASSERT_EQ(security_ratelimit_check(rl, "k", 10, 5, 1, T0 + 100 * MS, &r), 0);
    ASSERT(r.allowed);
    ASSERT_EQ(r.remaining, 0);
    /* Other keys are independent. */
    ASSERT_EQ(security_ratelimit_check(rl, "other", 10, 5, 1, T0, &r), 0);
    ASSERT(r.allowed);
    ASSERT_EQ(r.remaining, 4);
    /* After a full second of silence the whole burst is back. */
    for (int i = 0; i < 5; i++) {
        ASSERT_EQ(security_ratelimit_check(rl, "k", 10, 5, 1, T0 + 1600 * MS, &r), 0);
        ASSERT(r.allowed);
    }
    ASSERT_EQ(security_ratelimit_check(rl, "k", 10, 5, 1, T0 + 1600 * MS, &r), 0);
    ASSERT(!r.allowed);
    security_ratelimiter_free(rl);
}

static void test_cost_and_params(void)
{
    uint64_t tat = 0;
    struct security_rate_result r;
    ASSERT_EQ(security_gcra(&tat, 100, 10, 4, T0, &r), 0);
    ASSERT(r.allowed);
    ASSERT_EQ(r.remaining, 6);
    ASSERT_EQ(security_gcra(&tat, 100, 10, 4, T0, &r), 0);
    ASSERT_EQ(r.remaining, 2);
    ASSERT_EQ(security_gcra(&tat, 100, 10, 4, T0, &r), 0);
    ASSERT(!r.allowed);
    ASSERT_EQ(r.remaining, 2);
    ASSERT_EQ(r.retry_after_ns, 20 * MS);
    ASSERT_EQ(security_gcra(&tat, 100, 10, 2, T0, &r), 0);
    ASSERT(r.allowed);
    ASSERT_EQ(r.remaining, 0);
    /* Lowering the limit mid-flight denies until the debt is paid. */
    ASSERT_EQ(security_gcra(&tat, 100, 2, 1, T0, &r), 0);
    ASSERT(!r.allowed);
    ASSERT_EQ(r.remaining, 0);
    ASSERT_EQ(r.retry_after_ns, 90 * MS);
    ASSERT_EQ(security_gcra(&tat, 0, 1, 1, T0, &r), THAW_EINVAL);
    ASSERT_EQ(security_gcra(&tat, -1, 1, 1, T0, &r), THAW_EINVAL);
    ASSERT_EQ(security_gcra(&tat, 0.0 / 0.0, 1, 1, T0, &r), THAW_EINVAL);
    ASSERT_EQ(security_gcra(&tat, 10, 0, 1, T0, &r), THAW_EINVAL);
    ASSERT_EQ(security_gcra(&tat, 10, 5, 0, T0, &r), THAW_EINVAL);
    ASSERT_EQ(security_gcra(&tat, 10, 5, 6, T0, &r), THAW_EINVAL);
    ASSERT_EQ(security_gcra(&tat, 2e9, 5, 1, T0, &r), THAW_EINVAL);
    ASSERT_EQ(security_gcra(&tat, 1e-6, UINT32_MAX, 1, T0, &r), THAW_EINVAL);
    struct security_ratelimiter *rl = NULL;
    ASSERT_EQ(security_ratelimiter_new(10, &rl, NULL), 0);
    ASSERT_EQ(security_ratelimit_check(rl, "", 1, 1, 1, T0, &r), THAW_EINVAL);
    ASSERT_EQ(security_ratelimit_check(rl, NULL, 1, 1, 1, T0, &r), THAW_EINVAL);
    char big[SECURITY_LIMIT_KEY_MAX + 2];
    memset(big, 'k', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    ASSERT_EQ(security_ratelimit_check(rl, big, 1, 1, 1, T0, &r), THAW_EINVAL);
    big[SECURITY_LIMIT_KEY_MAX] = 0;
    ASSERT_EQ(security_ratelimit_check(rl, big, 1, 1, 1, T0, &r), 0);
    security_ratelimiter_free(rl);
    struct thaw_err err = {0};
    ASSERT_EQ(security_ratelimiter_new(0, &rl, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "rate limiter");
    security_ratelimiter_free(NULL);
}

/* Offers requests far faster than the rate for 10 simulated seconds with
 * uneven gaps; counts what passes. */
static uint64_t run_10s(struct security_ratelimiter *rl, const char *key, double rate,
                        uint32_t burst, uint64_t gap_ns)
{
    uint64_t allowed = 0, t = T0, end = T0 + 10 * SEC, i = 0;
    struct security_rate_result r;
    while (t < end) {
        if (security_ratelimit_check(rl, key, rate, burst, 1, t, &r) == 0 && r.allowed) allowed++;
        t += gap_ns / 2 + (i++ * 7919) % gap_ns; /* mean gap_ns, deterministic jitter */
    }
    return allowed;
}

static void test_accuracy_10s(void)
{
    struct security_ratelimiter *rl = NULL;
    ASSERT_EQ(security_ratelimiter_new(1000, &rl, NULL), 0);
    /* Offered load is `load` times the rate. With burst 1 there is no slack
     * to absorb how late after the bucket refills the next request comes, so
     * those cases offer finer-grained arrivals. */
    struct {
        double rate;
        uint32_t burst, load;
    } cases[] = {{1, 1, 200},  {3, 2, 8},    {10, 5, 8},    {50, 1, 400},
                 {100, 20, 8}, {333, 10, 8}, {1000, 50, 8}, {5000, 100, 8}};
    char key[32];
    for (size_t c = 0; c < ARRAY_LEN(cases); c++) {
        snprintf(key, sizeof(key), "acc-%zu", c);
        double rate = cases[c].rate;
        uint64_t gap = (uint64_t)(1e9 / rate / cases[c].load);
        uint64_t got = run_10s(rl, key, rate, cases[c].burst, gap);
        double ideal = rate * 10 + cases[c].burst;
        /* Never more than rate * time + burst (+1 for the request at t=0
         * boundary), and within 1% of it. */
        ASSERT_CMP(got, <=, (uint64_t)ideal + 1);
        ASSERT_NEAR((double)got, ideal, ideal * 0.01 + 1);
    }
    /* A client pacing itself exactly at the rate is never denied. */
    struct security_rate_result r;
    for (uint64_t t = T0; t < T0 + 10 * SEC; t += 10 * MS) {
        ASSERT_EQ(security_ratelimit_check(rl, "paced", 100, 1, 1, t, &r), 0);
        ASSERT(r.allowed);
    }
    /* One that always waits Retry-After gets exactly the rate. */
    uint64_t t = T0, n = 0;
    while (t < T0 + 10 * SEC) {
        ASSERT_EQ(security_ratelimit_check(rl, "polite", 20, 4, 1, t, &r), 0);
        if (r.allowed) {
            n++;
        } else {
            t += r.retry_after_ns;
        }
    }
    /* The burst at T0, then one every 50 ms up to (not including) 10 s. */
    ASSERT_EQ(n, 4 + 10 * 20 - 1);
    security_ratelimiter_free(rl);
}

static void test_bounded_memory(void)
{
    struct security_ratelimiter *rl = NULL;
    ASSERT_EQ(security_ratelimiter_new(64, &rl, NULL), 0);
    struct security_rate_result r;
    char key[32];
    /* Keys that go idle are dropped to make room. */
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        ASSERT_EQ(security_ratelimit_check(rl, key, 100, 1, 1, T0 + (uint64_t)i * SEC, &r), 0);
        ASSERT(r.allowed);
        ASSERT_CMP(security_ratelimiter_size(rl), <=, 64);
    }
    /* Keys that are all busy still fit the budget. */
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "busy%d", i);
        ASSERT_EQ(security_ratelimit_check(rl, key, 0.001, 1, 1, T0 * 2, &r), 0);
        ASSERT_CMP(security_ratelimiter_size(rl), <=, 64);
    }
    /* A recently used key survives a wave of idle-key churn: its state is
     * kept, so it is still denied. */
    security_ratelimiter_free(rl);
    ASSERT_EQ(security_ratelimiter_new(64, &rl, NULL), 0);
    ASSERT_EQ(security_ratelimit_check(rl, "hot", 1, 1, 1, T0, &r), 0);
    ASSERT(r.allowed);
    for (int i = 0; i < 500; i++) {
        snprintf(key, sizeof(key), "cold%d", i);
        ASSERT_EQ(security_ratelimit_check(rl, key, 1000, 1, 1, T0 + 2 * MS * (uint64_t)i, &r), 0);
    }
    ASSERT_EQ(security_ratelimit_check(rl, "hot", 1, 1, 1, T0 + 999 * MS, &r), 0);
    ASSERT(!r.allowed);
    security_ratelimiter_free(rl);
}

struct hammer {
    struct security_ratelimiter *rl;
    struct security_conclimiter *cl;
    int allowed;
    int conc_errors;
};

static void *hammer_fn(void *arg)
{
    struct hammer *h = arg;
    struct security_rate_result r;
    for (int i = 0; i < 2000; i++) {
        if (security_ratelimit_check(h->rl, "shared", 10, 50, 1, T0, &r) == 0 && r.allowed)
            __atomic_fetch_add(&h->allowed, 1, __ATOMIC_RELAXED);
        uint32_t n = 0;
        if (security_conc_acquire(h->cl, "c", 1000, &n) != 0 || n == 0 ||
            security_conc_release(h->cl, "c") != 0)
            __atomic_fetch_add(&h->conc_errors, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void test_threads(void)
{
    struct hammer h = {0};
    ASSERT_EQ(security_ratelimiter_new(100, &h.rl, NULL), 0);
    ASSERT_EQ(security_conclimiter_new(100, &h.cl, NULL), 0);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, hammer_fn, &h);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    ASSERT_EQ(h.allowed, 50);
    ASSERT_EQ(h.conc_errors, 0);
    ASSERT_EQ(security_conc_in_flight(h.cl, "c"), 0);
    security_ratelimiter_free(h.rl);
    security_conclimiter_free(h.cl);
}

static void test_concurrency(void)
{
    struct security_conclimiter *cl = NULL;
    /* Roomy: in a 16-entry table (one per shard) two keys share a shard
     * one time in 16 and the second would be refused as busy. */
    ASSERT_EQ(security_conclimiter_new(1024, &cl, NULL), 0);
    uint32_t n = 0;
    for (uint32_t i = 1; i <= 3; i++) {
        ASSERT_EQ(security_conc_acquire(cl, "tenant-a", 3, &n), 0);
        ASSERT_EQ(n, i);
    }
    ASSERT_EQ(security_conc_acquire(cl, "tenant-a", 3, &n), THAW_EBUSY);
    ASSERT_EQ(n, 3);
    ASSERT_EQ(security_conc_acquire(cl, "tenant-b", 3, &n), 0);
    ASSERT_EQ(security_conc_in_flight(cl, "tenant-a"), 3);
    ASSERT_EQ(security_conc_release(cl, "tenant-a"), 0);
    ASSERT_EQ(security_conc_acquire(cl, "tenant-a", 3, &n), 0);
    /* A lowered limit applies to new acquisitions. */
    ASSERT_EQ(security_conc_acquire(cl, "tenant-a", 2, &n), THAW_EBUSY);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(security_conc_release(cl, "tenant-a"), 0);
    ASSERT_EQ(security_conc_release(cl, "tenant-a"), THAW_ENOTFOUND);
    ASSERT_EQ(security_conc_in_flight(cl, "tenant-a"), 0);
    ASSERT_EQ(security_conc_release(cl, "tenant-b"), 0);
    ASSERT_EQ(security_conc_acquire(cl, "x", 0, &n), THAW_EINVAL);
    ASSERT_EQ(security_conc_acquire(cl, "", 1, &n), THAW_EINVAL);
    security_conclimiter_free(cl);
    ASSERT_EQ(security_conclimiter_new(16, &cl, NULL), 0);
    /* Entries live only while in flight: many keys come and go in a small
     * table; when every slot is held the table says busy, never evicts. */
    char key[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        ASSERT_EQ(security_conc_acquire(cl, key, 1, NULL), 0);
        ASSERT_EQ(security_conc_release(cl, key), 0);
    }
    int held = 0, busy = 0;
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "h%d", i);
        int rc = security_conc_acquire(cl, key, 1, NULL);
        if (rc == 0)
            held++;
        else if (rc == THAW_EBUSY)
            busy++;
    }
    ASSERT_CMP(held, <=, 16);
    ASSERT_CMP(held, >=, 1);
    ASSERT_EQ(held + busy, 200);
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "h%d", i);
        if (security_conc_in_flight(cl, key) == 1) ASSERT_EQ(security_conc_release(cl, key), 0);
    }
    security_conclimiter_free(cl);
    security_conclimiter_free(NULL);
}

static void test_quota(void)
{
    struct security_quota *q = NULL;
    ASSERT_EQ(security_quota_new(32, &q, NULL), 0);
    struct security_quota_result r;
    int64_t day = 20000LL * 86400; /* a UTC midnight */
    int64_t t = day + 3600;
    for (int i = 1; i <= 3; i++) {
        ASSERT_EQ(security_quota_consume(q, "t", 3, 1, t, &r), 0);
        ASSERT(r.allowed);
        ASSERT_EQ(r.used, i);
        ASSERT_EQ(r.remaining, 3 - i);
        ASSERT_EQ(r.reset_s, 86400 - 3600);
    }
    ASSERT_EQ(security_quota_consume(q, "t", 3, 1, t + 10, &r), 0);
    ASSERT(!r.allowed);
    ASSERT_EQ(r.used, 3);
    ASSERT_EQ(r.reset_s, 86400 - 3610);
    /* Tokens: a big amount that does not fit is not counted... */
    ASSERT_EQ(security_quota_consume(q, "tok", 1000, 600, t, &r), 0);
    ASSERT(r.allowed);
    ASSERT_EQ(security_quota_consume(q, "tok", 1000, 600, t, &r), 0);
    ASSERT(!r.allowed);
    ASSERT_EQ(r.used, 600);
    /* ...but usage known afterwards is, and then it is over. */
    ASSERT_EQ(security_quota_add(q, "tok", 1000, 600, t, &r), 0);
    ASSERT_EQ(r.used, 1200);
    ASSERT_EQ(r.remaining, 0);
    ASSERT_EQ(security_quota_consume(q, "tok", 1000, 0, t, &r), 0);
    ASSERT(!r.allowed);
    /* The next UTC day starts from zero. */
    ASSERT_EQ(security_quota_consume(q, "t", 3, 1, day + 86400, &r), 0);
    ASSERT(r.allowed);
    ASSERT_EQ(r.used, 1);
    ASSERT_EQ(r.reset_s, 86400);
    ASSERT_EQ(security_quota_consume(q, "t", 3, 1, day + 86400 - 1, &r), 0);
    ASSERT_EQ(r.used, 1);
    ASSERT_EQ(r.reset_s, 1);
    ASSERT_EQ(security_quota_consume(q, "t", 3, 1, -1, &r), THAW_EINVAL);
    /* Live keys are never evicted: a full table answers busy; yesterday's
     * keys make room. */
    char key[32];
    int busy = 0;
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        int rc = security_quota_consume(q, key, 10, 1, t, &r);
        if (rc == THAW_EBUSY)
            busy++;
        else
            ASSERT_EQ(rc, 0);
    }
    ASSERT_CMP(busy, >, 0);
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "n%d", i);
        ASSERT_EQ(security_quota_consume(q, key, 10, 1, t + 2 * 86400 + i * 86400, &r), 0);
        ASSERT(r.allowed);
    }
    security_quota_free(q);
    security_quota_free(NULL);
}

int main(void)
{
    RUN(test_burst_exact);
    RUN(test_cost_and_params);
    RUN(test_accuracy_10s);
    RUN(test_bounded_memory);
    RUN(test_threads);
    RUN(test_concurrency);
    RUN(test_quota);
    return TEST_REPORT();
}
