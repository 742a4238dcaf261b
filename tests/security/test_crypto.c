/* Tests for envelope encryption in src/security: KEK loading, DEK wrapping,
 * seal/open with associated data, tampering, rotation and rewrapping. */
#include "security/security.h"
#include "test.h"

#include <pthread.h>
#include <sodium.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEK1_HEX "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define KEK2_HEX "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1eff"

static struct security_kek *kek(const char *hex, uint32_t id)
{
    struct security_kek *k = NULL;
    if (security_kek_from_text(hex, strlen(hex), id, &k, NULL) != 0) return NULL;
    return k;
}

static void test_seal_open_roundtrip(void)
{
    struct security_dek *d = NULL;
    ASSERT_EQ(security_dek_generate(1, &d, NULL), 0);
    struct security_ad ad = {"tenant-a", "job.payload", "job-1"};
    size_t sizes[] = {0, 1, 15, 16, 17, 63, 64, 1000, 100000};
    for (size_t s = 0; s < ARRAY_LEN(sizes); s++) {
        size_t n = sizes[s];
        unsigned char *pt = malloc(n + 1);
        randombytes_buf(pt, n);
        struct buf ct = {0}, back = {0};
        ASSERT_EQ(security_seal(d, &ad, pt, n, &ct, NULL), 0);
        ASSERT_EQ(ct.len, n + SECURITY_SEAL_OVERHEAD);
        uint32_t v = 0;
        ASSERT_EQ(security_sealed_version(ct.data, ct.len, &v, NULL), 0);
        ASSERT_EQ(v, 1);
        ASSERT_EQ(security_open(d, &ad, ct.data, ct.len, &back, NULL), 0);
        ASSERT_EQ(back.len, n);
        ASSERT(n == 0 || memcmp(back.data, pt, n) == 0);
        /* Appending: the plaintext lands after what the buffer held. */
        struct buf pre = {0};
        buf_append_str(&pre, "xy");
        ASSERT_EQ(security_open(d, &ad, ct.data, ct.len, &pre, NULL), 0);
        ASSERT_EQ(pre.len, n + 2);
        ASSERT(memcmp(pre.data, "xy", 2) == 0);
        free(pt);
        buf_free(&ct);
        buf_free(&back);
        buf_free(&pre);
    }
    /* The same plaintext seals differently each time (random nonce). */
    struct buf a = {0}, b = {0};
    security_seal(d, &ad, "same", 4, &a, NULL);
    security_seal(d, &ad, "same", 4, &b, NULL);
    ASSERT(memcmp(a.data, b.data, a.len) != 0);
    buf_free(&a);
    buf_free(&b);
    security_dek_free(d);
}

static void test_tamper_every_byte(void)
{
    struct security_dek *d = NULL;
    ASSERT_EQ(security_dek_generate(3, &d, NULL), 0);
    struct security_ad ad = {"t", "result", "r9"};
    const char msg[] = "the quick brown fox";
    struct buf ct = {0};
    ASSERT_EQ(security_seal(d, &ad, msg, sizeof(msg) - 1, &ct, NULL), 0);
    int detected = 0;
    for (size_t i = 0; i < ct.len; i++) {
        for (int bit = 0; bit < 8; bit += 7) {
            ct.data[i] ^= (char)(1 << bit);
            struct buf out = {0};
            struct thaw_err err = {0};
            int rc = security_open(d, &ad, ct.data, ct.len, &out, &err);
            if (rc != 0 && out.len == 0) detected++;
            ct.data[i] ^= (char)(1 << bit);
            buf_free(&out);
        }
    }
    ASSERT_EQ(detected, (int)ct.len * 2);
    /* Truncation and extension fail too. */
    struct buf out = {0};
    for (size_t cut = 0; cut < ct.len; cut++)
        ASSERT(security_open(d, &ad, ct.data, cut, &out, NULL) != 0);
    buf_append(&ct, "x", 1);
    ASSERT_EQ(security_open(d, &ad, ct.data, ct.len, &out, NULL), THAW_EDENIED);
    ASSERT_EQ(out.len, 0);
    buf_free(&out);
    buf_free(&ct);
    security_dek_free(d);
}

static void test_wrong_ad_and_key(void)
{
    struct security_dek *d = NULL, *d2 = NULL;
    ASSERT_EQ(security_dek_generate(1, &d, NULL), 0);
    ASSERT_EQ(security_dek_generate(1, &d2, NULL), 0);
    struct security_ad ad = {"tenant-a", "job.payload", "job-1"};
    struct buf ct = {0}, out = {0};
    struct thaw_err err = {0};
    ASSERT_EQ(security_seal(d, &ad, "secret", 6, &ct, NULL), 0);
    struct security_ad bad[] = {
        {"tenant-b", "job.payload", "job-1"},
        {"tenant-a", "result", "job-1"},
        {"tenant-a", "job.payload", "job-2"},
        {NULL, "job.payload", "job-1"},
        /* Moving bytes between fields must not collide (length prefixes). */
        {"tenant-aj", "ob.payload", "job-1"},
        {"tenant-a", "job.payloadjob-1", ""},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        ASSERT_EQ(security_open(d, &bad[i], ct.data, ct.len, &out, &err), THAW_EDENIED);
        ASSERT_EQ(out.len, 0);
    }
    ASSERT_CONTAINS(err.msg, "does not open");
    ASSERT_EQ(security_open(d2, &ad, ct.data, ct.len, &out, &err), THAW_EDENIED);
    ASSERT_EQ(security_open(d, NULL, ct.data, ct.len, &out, &err), THAW_EDENIED);
    /* NULL AD fields equal empty strings. */
    struct buf ct2 = {0};
    struct security_ad empty = {"", "", ""};
    ASSERT_EQ(security_seal(d, NULL, "x", 1, &ct2, NULL), 0);
    ASSERT_EQ(security_open(d, &empty, ct2.data, ct2.len, &out, NULL), 0);
    ASSERT_STR_EQ(out.data, "x");
    /* Malformed headers are named. */
    ASSERT_EQ(security_open(d, &ad, ct.data, 10, &out, &err), THAW_EFORMAT);
    ASSERT_CONTAINS(err.msg, "too short");
    ct.data[0] = 'x';
    ASSERT_EQ(security_open(d, &ad, ct.data, ct.len, &out, &err), THAW_EFORMAT);
    ASSERT_CONTAINS(err.msg, "magic");
    ct.data[0] = 't';
    ct.data[2] = 9;
    ASSERT_EQ(security_open(d, &ad, ct.data, ct.len, &out, &err), THAW_EUNSUPPORTED);
    ct.data[2] = 1;
    ct.data[7] = 2;
    ASSERT_EQ(security_open(d, &ad, ct.data, ct.len, &out, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "version 2");
    buf_free(&ct);
    buf_free(&ct2);
    buf_free(&out);
    security_dek_free(d);
    security_dek_free(d2);
}

static void test_wrap_unwrap(void)
{
    struct security_kek *k1 = kek(KEK1_HEX, 1), *k2 = kek(KEK2_HEX, 2), *k1b = kek(KEK2_HEX, 1);
    ASSERT(k1 && k2 && k1b);
    struct security_dek *d = NULL, *u = NULL;
    ASSERT_EQ(security_dek_generate(7, &d, NULL), 0);
    unsigned char w[SECURITY_WRAPPED_DEK_LEN], w2[SECURITY_WRAPPED_DEK_LEN];
    ASSERT_EQ(security_dek_wrap(k1, d, "tenant-a", w, NULL), 0);
    uint32_t kid = 0, ver = 0;
    ASSERT_EQ(security_wrapped_info(w, sizeof(w), &kid, &ver, NULL), 0);
    ASSERT_EQ(kid, 1);
    ASSERT_EQ(ver, 7);
    ASSERT_EQ(security_dek_unwrap(k1, "tenant-a", w, sizeof(w), &u, NULL), 0);
    ASSERT_EQ(security_dek_version(u), 7);
    /* The unwrapped key opens what the original sealed. */
    struct buf ct = {0}, out = {0};
    struct security_ad ad = {"tenant-a", "p", "r"};
    ASSERT_EQ(security_seal(d, &ad, "hello", 5, &ct, NULL), 0);
    ASSERT_EQ(security_open(u, &ad, ct.data, ct.len, &out, NULL), 0);
    ASSERT_STR_EQ(out.data, "hello");
    security_dek_free(u);
    u = NULL;

    struct thaw_err err = {0};
    ASSERT_EQ(security_dek_unwrap(k1, "tenant-b", w, sizeof(w), &u, &err), THAW_EDENIED);
    ASSERT_EQ(security_dek_unwrap(k2, "tenant-a", w, sizeof(w), &u, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "KEK id 1");
    ASSERT_EQ(security_dek_unwrap(k1b, "tenant-a", w, sizeof(w), &u, &err), THAW_EDENIED);
    ASSERT_EQ(security_dek_unwrap(k1, "tenant-a", w, sizeof(w) - 1, &u, &err), THAW_EFORMAT);
    for (size_t i = 0; i < sizeof(w); i++) {
        memcpy(w2, w, sizeof(w));
        w2[i] ^= 0x20;
        ASSERT(security_dek_unwrap(k1, "tenant-a", w2, sizeof(w2), &u, NULL) != 0);
    }
    ASSERT(u == NULL);
    /* Rewrap under a new KEK: same DEK, new KEK id. */
    ASSERT_EQ(security_dek_rewrap(k1, k2, "tenant-a", w, sizeof(w), w2, NULL), 0);
    ASSERT_EQ(security_wrapped_info(w2, sizeof(w2), &kid, &ver, NULL), 0);
    ASSERT_EQ(kid, 2);
    ASSERT_EQ(ver, 7);
    ASSERT_EQ(security_dek_unwrap(k2, "tenant-a", w2, sizeof(w2), &u, NULL), 0);
    buf_reset(&out);
    ASSERT_EQ(security_open(u, &ad, ct.data, ct.len, &out, NULL), 0);
    ASSERT_STR_EQ(out.data, "hello");
    ASSERT_EQ(security_dek_rewrap(k2, k1, "tenant-a", w, sizeof(w), w2, &err), THAW_EINVAL);
    buf_free(&ct);
    buf_free(&out);
    security_dek_free(u);
    security_dek_free(d);
    security_kek_free(k1);
    security_kek_free(k2);
    security_kek_free(k1b);
}

static void test_keyset_rotation(void)
{
    struct security_kek *k1 = kek(KEK1_HEX, 1), *k2 = kek(KEK2_HEX, 2);
    struct security_keyset *ks = NULL;
    struct thaw_err err = {0};
    ASSERT_EQ(security_keyset_new("tenant-a", &ks, NULL), 0);
    struct buf ct1 = {0}, ct2 = {0}, out = {0};
    ASSERT_EQ(security_keyset_seal(ks, "p", "r1", "one", 3, &ct1, &err), THAW_ESTATE);
    unsigned char w1[SECURITY_WRAPPED_DEK_LEN], w2[SECURITY_WRAPPED_DEK_LEN];
    uint32_t v = 0;
    ASSERT_EQ(security_keyset_rotate(ks, k1, &v, w1, NULL), 0);
    ASSERT_EQ(v, 1);
    ASSERT_EQ(security_keyset_seal(ks, "p", "r1", "one", 3, &ct1, NULL), 0);
    ASSERT_EQ(security_keyset_rotate(ks, k1, &v, w2, NULL), 0);
    ASSERT_EQ(v, 2);
    ASSERT_EQ(security_keyset_current(ks), 2);
    ASSERT_EQ(security_keyset_seal(ks, "p", "r2", "two", 3, &ct2, NULL), 0);
    uint32_t sv = 0;
    ASSERT_EQ(security_sealed_version(ct2.data, ct2.len, &sv, NULL), 0);
    ASSERT_EQ(sv, 2);
    ASSERT_EQ(security_keyset_open(ks, "p", "r1", ct1.data, ct1.len, &out, NULL), 0);
    ASSERT_STR_EQ(out.data, "one");
    buf_reset(&out);
    ASSERT_EQ(security_keyset_open(ks, "p", "r2", ct2.data, ct2.len, &out, NULL), 0);
    ASSERT_STR_EQ(out.data, "two");
    ASSERT_EQ(security_keyset_open(ks, "p", "r1", ct2.data, ct2.len, &out, NULL), THAW_EDENIED);
    security_keyset_free(ks);

    /* A restart: rewrap both stored keys under KEK 2, load in reverse order,
     * old data still opens. */
    unsigned char r1[SECURITY_WRAPPED_DEK_LEN], r2[SECURITY_WRAPPED_DEK_LEN];
    ASSERT_EQ(security_dek_rewrap(k1, k2, "tenant-a", w1, sizeof(w1), r1, NULL), 0);
    ASSERT_EQ(security_dek_rewrap(k1, k2, "tenant-a", w2, sizeof(w2), r2, NULL), 0);
    ASSERT_EQ(security_keyset_new("tenant-a", &ks, NULL), 0);
    ASSERT_EQ(security_keyset_add_wrapped(ks, k2, r2, sizeof(r2), NULL), 0);
    ASSERT_EQ(security_keyset_add_wrapped(ks, k2, r1, sizeof(r1), NULL), 0);
    ASSERT_EQ(security_keyset_add_wrapped(ks, k2, r1, sizeof(r1), &err), THAW_EEXIST);
    ASSERT_EQ(security_keyset_add_wrapped(ks, k1, w1, sizeof(w1), &err), THAW_EEXIST);
    ASSERT_EQ(security_keyset_current(ks), 2);
    buf_reset(&out);
    ASSERT_EQ(security_keyset_open(ks, "p", "r1", ct1.data, ct1.len, &out, NULL), 0);
    ASSERT_STR_EQ(out.data, "one");
    security_keyset_free(ks);

    /* Another tenant's keyset cannot load tenant-a's key. */
    ASSERT_EQ(security_keyset_new("tenant-b", &ks, NULL), 0);
    ASSERT_EQ(security_keyset_add_wrapped(ks, k2, r1, sizeof(r1), &err), THAW_EDENIED);
    /* A keyset missing the old version says so. */
    unsigned char w3[SECURITY_WRAPPED_DEK_LEN];
    ASSERT_EQ(security_keyset_rotate(ks, k2, &v, w3, NULL), 0);
    ASSERT_EQ(security_keyset_open(ks, "p", "r2", ct2.data, ct2.len, &out, &err), THAW_ENOTFOUND);
    ASSERT_CONTAINS(err.msg, "version 2");
    ASSERT_EQ(security_keyset_new("", &ks, &err), THAW_EINVAL);
    security_keyset_free(ks);
    buf_free(&ct1);
    buf_free(&ct2);
    buf_free(&out);
    security_kek_free(k1);
    security_kek_free(k2);
    security_keyset_free(NULL);
    security_kek_free(NULL);
    security_dek_free(NULL);
}

struct race {
    struct security_keyset *ks;
    struct security_kek *k;
    int failures;
};

static void *sealer(void *arg)
{
    struct race *r = arg;
    for (int i = 0; i < 300; i++) {
        struct buf ct = {0}, out = {0};
        if (security_keyset_seal(r->ks, "p", "r", "data", 4, &ct, NULL) ||
            security_keyset_open(r->ks, "p", "r", ct.data, ct.len, &out, NULL) ||
            strcmp(out.data, "data") != 0)
            __atomic_fetch_add(&r->failures, 1, __ATOMIC_RELAXED);
        buf_free(&ct);
        buf_free(&out);
    }
    return NULL;
}

static void test_keyset_threads(void)
{
    struct race r = {0};
    r.k = kek(KEK1_HEX, 1);
    ASSERT_EQ(security_keyset_new("t", &r.ks, NULL), 0);
    unsigned char w[SECURITY_WRAPPED_DEK_LEN];
    ASSERT_EQ(security_keyset_rotate(r.ks, r.k, NULL, w, NULL), 0);
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, sealer, &r);
    for (int i = 0; i < 50; i++)
        ASSERT_EQ(security_keyset_rotate(r.ks, r.k, NULL, w, NULL), 0);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    ASSERT_EQ(r.failures, 0);
    ASSERT_EQ(security_keyset_current(r.ks), 51);
    security_keyset_free(r.ks);
    security_kek_free(r.k);
}

static void test_kek_loading(void)
{
    struct security_kek *k = NULL;
    struct thaw_err err = {0};
    char path[] = "/tmp/thaw-kek-XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    ASSERT(write(fd, KEK1_HEX "\n", 65) == 65);
    close(fd);
    ASSERT_EQ(security_kek_load_file(path, 5, &k, &err), 0);
    ASSERT_EQ(security_kek_id(k), 5);
    /* Same bytes as from text: a key wrapped with one unwraps with the other. */
    struct security_kek *t = kek(KEK1_HEX, 5);
    struct security_dek *d = NULL, *u = NULL;
    unsigned char w[SECURITY_WRAPPED_DEK_LEN];
    security_dek_generate(1, &d, NULL);
    ASSERT_EQ(security_dek_wrap(k, d, "x", w, NULL), 0);
    ASSERT_EQ(security_dek_unwrap(t, "x", w, sizeof(w), &u, NULL), 0);
    security_dek_free(d);
    security_dek_free(u);
    security_kek_free(t);
    security_kek_free(k);
    k = NULL;

    fd = open(path, O_WRONLY | O_TRUNC);
    ASSERT(write(fd, "not a key\n", 10) == 10);
    close(fd);
    ASSERT_EQ(security_kek_load_file(path, 1, &k, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, path);
    ASSERT(!strstr(err.msg, "not a key"));
    fd = open(path, O_WRONLY | O_TRUNC);
    ASSERT(write(fd, "", 0) == 0);
    close(fd);
    ASSERT_EQ(security_kek_load_file(path, 1, &k, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "empty");
    fd = open(path, O_WRONLY | O_TRUNC);
    char big[5000];
    memset(big, 'a', sizeof(big));
    ASSERT(write(fd, big, sizeof(big)) == (ssize_t)sizeof(big));
    close(fd);
    ASSERT_EQ(security_kek_load_file(path, 1, &k, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "too large");
    unlink(path);
    ASSERT_EQ(security_kek_load_file(path, 1, &k, &err), -ENOENT);
    ASSERT_CONTAINS(err.msg, path);
    ASSERT_EQ(security_kek_load_file("/tmp", 1, &k, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "regular file");
    ASSERT_EQ(security_kek_load_file("", 1, &k, &err), THAW_EINVAL);
    ASSERT(k == NULL);

    setenv("THAW_TEST_KEK", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", 1);
    ASSERT_EQ(security_kek_from_env("THAW_TEST_KEK", 1, &k, &err), 0);
    security_kek_free(k);
    setenv("THAW_TEST_KEK", "short", 1);
    ASSERT_EQ(security_kek_from_env("THAW_TEST_KEK", 1, &k, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "THAW_TEST_KEK");
    unsetenv("THAW_TEST_KEK");
    ASSERT_EQ(security_kek_from_env("THAW_TEST_KEK", 1, &k, &err), THAW_ENOTFOUND);
    ASSERT_CONTAINS(err.msg, "not set");
}

int main(void)
{
    RUN(test_seal_open_roundtrip);
    RUN(test_tamper_every_byte);
    RUN(test_wrong_ad_and_key);
    RUN(test_wrap_unwrap);
    RUN(test_keyset_rotation);
    RUN(test_keyset_threads);
    RUN(test_kek_loading);
    return TEST_REPORT();
}
