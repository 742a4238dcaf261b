/* Measures the per-request cost of the security primitives on the gateway's
 * hot path: API key parse+verify, GCRA checks, seal/open and redaction of
 * short and long texts. Prints ns/op and, where it makes sense, the ratio to
 * a baseline measured in the same run (a copy of the same bytes).
 * usage: bench_security [iterations-scale] */
#include "security/security.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static volatile size_t sink;

#define BENCH(label, iters, body)                                                                  \
    ({                                                                                             \
        double t0_ = now_s();                                                                      \
        for (long i_ = 0; i_ < (iters); i_++) {                                                    \
            body;                                                                                  \
        }                                                                                          \
        double ns_ = (now_s() - t0_) * 1e9 / (double)(iters);                                      \
        printf("  %-44s %10.1f ns/op\n", label, ns_);                                              \
        ns_;                                                                                       \
    })

static void bench_keys(long n)
{
    unsigned char pepper[SECURITY_PEPPER_LEN] = {1}, stored[SECURITY_KEY_HASH_LEN];
    char key[SECURITY_KEY_STR_SIZE];
    security_apikey_generate(key, NULL, NULL);
    struct security_apikey k;
    security_apikey_parse(key, strlen(key), &k, NULL);
    security_apikey_hash(pepper, &k, stored);
    size_t len = strlen(key);
    printf("API keys\n");
    BENCH("parse", n, {
        security_apikey_parse(key, len, &k, NULL);
        sink += k.secret_len;
    });
    BENCH("parse + verify (keyed BLAKE2b + sodium_memcmp)", n, {
        security_apikey_parse(key, len, &k, NULL);
        sink += (size_t)security_apikey_verify(pepper, &k, stored);
    });
}

static void bench_limits(long n)
{
    struct security_ratelimiter *rl = NULL;
    security_ratelimiter_new(100000, &rl, NULL);
    struct security_rate_result r;
    uint64_t t = 1000000000000ull;
    printf("rate limiting\n");
    BENCH("GCRA check, one key", n, {
        security_ratelimit_check(rl, "tenant-0123456789abcdef", 1e6, 1000, 1, t + (uint64_t)i_, &r);
        sink += r.allowed;
    });
    char keys[1024][24];
    for (int i = 0; i < 1024; i++)
        snprintf(keys[i], sizeof(keys[i]), "key-%016x", i * 7919);
    BENCH("GCRA check, 1024 keys round robin", n, {
        security_ratelimit_check(rl, keys[i_ & 1023], 100, 10, 1, t + (uint64_t)i_ * 1000, &r);
        sink += r.allowed;
    });
    struct security_conclimiter *cl = NULL;
    security_conclimiter_new(100000, &cl, NULL);
    BENCH("concurrency acquire + release", n, {
        security_conc_acquire(cl, "tenant-0123456789abcdef", 100, NULL);
        security_conc_release(cl, "tenant-0123456789abcdef");
    });
    security_ratelimiter_free(rl);
    security_conclimiter_free(cl);
}

static void bench_crypto(long n)
{
    struct security_dek *d = NULL;
    security_dek_generate(1, &d, NULL);
    struct security_ad ad = {"tenant-a", "result", "job-0123456789"};
    char pt[1024];
    memset(pt, 'x', sizeof(pt));
    struct buf ct = {0}, out = {0};
    printf("envelope encryption (1 KiB payload)\n");
    BENCH("seal", n / 10, {
        buf_reset(&ct);
        security_seal(d, &ad, pt, sizeof(pt), &ct, NULL);
    });
    BENCH("open", n / 10, {
        buf_reset(&out);
        security_open(d, &ad, ct.data, ct.len, &out, NULL);
    });
    buf_free(&ct);
    buf_free(&out);
    security_dek_free(d);
}

static void bench_redact_text(const char *label, const char *text, long n)
{
    size_t len = strlen(text);
    struct buf out = {0};
    char *copy = malloc(len + 1);
    char l1[80], l2[80];
    snprintf(l1, sizeof(l1), "%s: copy baseline (%zu B)", label, len);
    snprintf(l2, sizeof(l2), "%s: redact", label);
    double base = BENCH(l1, n, {
        memcpy(copy, text, len);
        sink += (size_t)copy[len / 2];
    });
    double red = BENCH(l2, n, {
        buf_reset(&out);
        security_redact(text, len, SECURITY_REDACT_ALL, &out, NULL);
        sink += out.len;
    });
    printf("  %-44s %10.1f MB/s (%.0fx the copy)\n", "", (double)len / red * 1e3, red / base);
    free(copy);
    buf_free(&out);
}

static void bench_redact(long n)
{
    printf("redaction\n");
    bench_redact_text("short, clean", "request 7f3a finished in 12 ms with status ok", n);
    bench_redact_text("short, PII", "user john@example.com from 10.1.2.3 paid 4111 1111 1111 1111",
                      n);
    static char big[4096 + 1];
    const char *para = "The quick brown fox jumps over the lazy dog; call +44 20 7946 0958 or "
                       "mail ops@example.org. Version 3.2 released on 2024-01-15, 12 items. ";
    size_t pl = strlen(para), off = 0;
    while (off + pl < sizeof(big)) {
        memcpy(big + off, para, pl);
        off += pl;
    }
    big[off] = 0;
    bench_redact_text("4 KiB prose", big, n / 40);
}

static void bench_audit(long n)
{
    struct security_audit_entry e = {.seq = 1,
                                     .time_ms = 1700000000000LL,
                                     .actor = "0123456789abcdef",
                                     .action = "deployment.create",
                                     .target = "summarize",
                                     .outcome = "ok",
                                     .details = "{\"version\":3}"};
    unsigned char prev[32] = {0};
    printf("audit chain\n");
    BENCH("seal one entry (SHA-256)", n / 10, {
        security_audit_seal(NULL, 0, prev, &e);
        prev[0] = e.hash[0];
    });
}

int main(int argc, char **argv)
{
    long n = 1000000;
    if (argc > 1) n = (long)(atof(argv[1]) * (double)n);
    if (n < 1000) n = 1000;
    security_init();
    bench_keys(n);
    bench_limits(n);
    bench_crypto(n);
    bench_redact(n);
    bench_audit(n);
    return sink == 42 ? 1 : 0;
}
