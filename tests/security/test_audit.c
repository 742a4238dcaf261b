/* Tests for the audit hash chain in src/security: building, verifying, and
 * naming the first changed, inserted, removed or cut-off entry. */
#include "security/security.h"
#include "test.h"

#include <sodium.h>

#define N 10

static char details[N][32];

/* Builds seq 1..N chained from zeros. */
static void build(struct security_audit_entry *e, const unsigned char *key, size_t key_len)
{
    const unsigned char *prev = NULL;
    for (int i = 0; i < N; i++) {
        memset(&e[i], 0, sizeof(e[i]));
        snprintf(details[i], sizeof(details[i]), "{\"n\":%d}", i);
        e[i].seq = (uint64_t)i + 1;
        e[i].time_ms = 1700000000000LL + i * 1000;
        e[i].actor = "0123456789abcdef";
        e[i].action = i % 2 ? "deployment.create" : "key.revoke";
        e[i].target = "summarize";
        e[i].outcome = "ok";
        e[i].details = details[i];
        security_audit_seal(key, key_len, prev, &e[i]);
        prev = e[i].hash;
    }
}

static void test_intact(void)
{
    struct security_audit_entry e[N];
    struct security_audit_report r;
    build(e, NULL, 0);
    ASSERT_EQ(security_audit_verify(NULL, 0, e, N, 1, NULL, NULL, &r), 0);
    ASSERT_EQ(r.problem, SECURITY_AUDIT_OK);
    ASSERT_EQ(r.n_checked, N);
    /* A window from the middle, anchored on the hash before it. */
    ASSERT_EQ(security_audit_verify(NULL, 0, e + 4, N - 4, 5, e[3].hash, NULL, &r), 0);
    /* ...or trusting the first entry's recorded link. */
    ASSERT_EQ(security_audit_verify(NULL, 0, e + 4, N - 4, 0, NULL, NULL, &r), 0);
    ASSERT_EQ(security_audit_verify(NULL, 0, e, 0, 1, NULL, NULL, &r), 0);
    /* Hashes chain: every entry differs, and the first links to zeros. */
    static const unsigned char zeros[32];
    ASSERT(memcmp(e[0].prev_hash, zeros, 32) == 0);
    for (int i = 1; i < N; i++)
        ASSERT(memcmp(e[i].prev_hash, e[i - 1].hash, 32) == 0);
    /* The encoding is unambiguous: moving bytes between fields changes the
     * hash; NULL equals empty. */
    struct security_audit_entry a = {.seq = 1, .actor = "ab", .action = "c"};
    struct security_audit_entry b = {.seq = 1, .actor = "a", .action = "bc"};
    unsigned char ha[32], hb[32];
    security_audit_hash(NULL, 0, NULL, &a, ha);
    security_audit_hash(NULL, 0, NULL, &b, hb);
    ASSERT(memcmp(ha, hb, 32) != 0);
    b.actor = "ab";
    b.action = "c";
    b.target = "";
    security_audit_hash(NULL, 0, NULL, &b, hb);
    ASSERT(memcmp(ha, hb, 32) == 0);
    /* Plain SHA-256 of the documented encoding, computed independently. */
    unsigned char enc[256], want[32];
    size_t n = 0;
    memcpy(enc, "thaw.audit.v1", 13), n = 13;
    memset(enc + n, 0, 32), n += 32;
    memset(enc + n, 0, 16), enc[n + 7] = 1, n += 16;
    const char *f[5] = {"ab", "c", "", "", ""};
    for (int k = 0; k < 5; k++) {
        size_t l = strlen(f[k]);
        enc[n] = enc[n + 1] = enc[n + 2] = 0, enc[n + 3] = (unsigned char)l, n += 4;
        memcpy(enc + n, f[k], l), n += l;
    }
    crypto_hash_sha256(want, enc, n);
    ASSERT(memcmp(ha, want, 32) == 0);
}

static void test_changed(void)
{
    struct security_audit_entry e[N];
    struct security_audit_report r;
    build(e, NULL, 0);
    /* An edited field, hash left alone. */
    e[4].outcome = "denied";
    ASSERT_EQ(security_audit_verify(NULL, 0, e, N, 1, NULL, NULL, &r), THAW_EFORMAT);
    ASSERT_EQ(r.problem, SECURITY_AUDIT_CHANGED);
    ASSERT_EQ(r.seq, 5);
    ASSERT_EQ(r.index, 4);
    ASSERT_EQ(r.n_checked, 4);
    ASSERT_CONTAINS(r.msg, "seq 5 was changed");
    /* An edited field with its hash recomputed: the next link gives it away. */
    security_audit_seal(NULL, 0, e[3].hash, &e[4]);
    ASSERT_EQ(security_audit_verify(NULL, 0, e, N, 1, NULL, NULL, &r), THAW_EFORMAT);
    ASSERT_EQ(r.problem, SECURITY_AUDIT_CHANGED);
    ASSERT_EQ(r.seq, 5);
    ASSERT_CONTAINS(r.msg, "seq 6 recorded");
    /* Every field and the time are covered. */
    const char *orig;
    build(e, NULL, 0);
    const char **fields[] = {&e[2].actor, &e[2].action, &e[2].target, &e[2].outcome, &e[2].details};
    for (size_t k = 0; k < ARRAY_LEN(fields); k++) {
        orig = *fields[k];
        *fields[k] = "X";
        ASSERT_EQ(security_audit_verify(NULL, 0, e, N, 1, NULL, NULL, &r), THAW_EFORMAT);
        ASSERT_EQ(r.seq, 3);
        *fields[k] = orig;
    }
    e[2].time_ms++;
    ASSERT_EQ(security_audit_verify(NULL, 0, e, N, 1, NULL, NULL, &r), THAW_EFORMAT);
    ASSERT_EQ(r.seq, 3);
    e[2].time_ms--;
    e[2].hash[31] ^= 1;
    ASSERT_EQ(security_audit_verify(NULL, 0, e, N, 1, NULL, NULL, &r), THAW_EFORMAT);
    ASSERT_EQ(r.seq, 3);
    e[2].hash[31] ^= 1;
    /* The first entry must chain to the genesis given. */
    unsigned char g[32] = {1};
    ASSERT_EQ(security_audit_verify(NULL, 0, e, N, 1, g, NULL, &r), THAW_EFORMAT);
    ASSERT_EQ(r.seq, 1);
    ASSERT_EQ(security_audit_verify(NULL, 0, e, N, 1, NULL, NULL, &r), 0);
}

static void test_removed_inserted(void)
{
    struct security_audit_entry e[N], g[N + 1];
    struct security_audit_report r;
    build(e, NULL, 0);
    /* Remove seq 6. */
    memcpy(g, e, 5 * sizeof(e[0]));
    memcpy(g + 5, e + 6, 4 * sizeof(e[0]));
    ASSERT_EQ(security_audit_verify(NULL, 0, g, N - 1, 1, NULL, NULL, &r), THAW_EFORMAT);
    ASSERT_EQ(r.problem, SECURITY_AUDIT_REMOVED);
    ASSERT_EQ(r.seq, 6);
    ASSERT_CONTAINS(r.msg, "6..6 are missing");
    /* Remove the first entry. */
    ASSERT_EQ(security_audit_verify(NULL, 0, e + 1, N - 1, 1, NULL, NULL, &r), THAW_EFORMAT);
    ASSERT_EQ(r.problem, SECURITY_AUDIT_REMOVED);
    ASSERT_EQ(r.seq, 1);
    /* Remove seq 6 and renumber the rest: the link breaks at the new 6. */
    for (int i = 5; i < N - 1; i++)
        g[i].seq--;
    ASSERT_EQ(security_audit_verify(NULL, 0, g, N - 1, 1, NULL, NULL, &r), THAW_EFORMAT);
    ASSERT_EQ(r.problem, SECURITY_AUDIT_CHANGED);
    ASSERT_EQ(r.seq, 6);
    /* Insert a forged, well-chained seq 4 before the real seq 4. */
    memcpy(g, e, 3 * sizeof(e[0]));
    g[3] = e[3];
    g[3].details = "forged";
    security_audit_seal(NULL, 0, e[2].hash, &g[3]);
    memcpy(g + 4, e + 3, 7 * sizeof(e[0]));
    ASSERT_EQ(security_audit_verify(NULL, 0, g, N + 1, 1, NULL, NULL, &r), THAW_EFORMAT);
    ASSERT_EQ(r.problem, SECURITY_AUDIT_INSERTED);
    ASSERT_EQ(r.index, 4);
    ASSERT_CONTAINS(r.msg, "inserted");
    /* Swapped entries. */
    memcpy(g, e, sizeof(e));
    g[3] = e[4];
    g[4] = e[3];
    ASSERT_EQ(security_audit_verify(NULL, 0, g, N, 1, NULL, NULL, &r), THAW_EFORMAT);
    ASSERT_EQ(r.index, 3);
}

static void test_key_and_anchor(void)
{
    static const unsigned char key[32] = {7, 7, 7};
    struct security_audit_entry e[N];
    struct security_audit_report r;
    build(e, key, sizeof(key));
    ASSERT_EQ(security_audit_verify(key, sizeof(key), e, N, 1, NULL, NULL, &r), 0);
    /* Without the key the chain does not verify. */
    ASSERT_EQ(security_audit_verify(NULL, 0, e, N, 1, NULL, NULL, &r), THAW_EFORMAT);
    /* An attacker without the key rewrites entry 5 and everything after it
     * with plain hashes: caught at 5. */
    e[4].details = "rewritten";
    for (int i = 4; i < N; i++)
        security_audit_seal(NULL, 0, e[i - 1].hash, &e[i]);
    ASSERT_EQ(security_audit_verify(key, sizeof(key), e, N, 1, NULL, NULL, &r), THAW_EFORMAT);
    ASSERT_EQ(r.seq, 5);

    /* Unkeyed: a full rewrite of the tail is only caught by an anchor. */
    build(e, NULL, 0);
    struct security_audit_anchor anchor = {.seq = 8};
    memcpy(anchor.hash, e[7].hash, 32);
    ASSERT_EQ(security_audit_verify(NULL, 0, e, N, 1, NULL, &anchor, &r), 0);
    e[4].details = "rewritten";
    for (int i = 4; i < N; i++)
        security_audit_seal(NULL, 0, e[i - 1].hash, &e[i]);
    ASSERT_EQ(security_audit_verify(NULL, 0, e, N, 1, NULL, NULL, &r), 0);
    ASSERT_EQ(security_audit_verify(NULL, 0, e, N, 1, NULL, &anchor, &r), THAW_EFORMAT);
    ASSERT_EQ(r.problem, SECURITY_AUDIT_CHANGED);
    ASSERT_EQ(r.seq, 8);
    ASSERT_CONTAINS(r.msg, "anchor");
    /* Cutting entries off the end. */
    build(e, NULL, 0);
    ASSERT_EQ(security_audit_verify(NULL, 0, e, 6, 1, NULL, &anchor, &r), THAW_EFORMAT);
    ASSERT_EQ(r.problem, SECURITY_AUDIT_TRUNCATED);
    ASSERT_EQ(r.seq, 7);
    ASSERT_CONTAINS(r.msg, "7 to the anchor at seq 8");
    ASSERT_EQ(security_audit_verify(NULL, 0, e, 0, 1, NULL, &anchor, &r), THAW_EFORMAT);
    ASSERT_EQ(r.problem, SECURITY_AUDIT_TRUNCATED);
}

static void test_streaming(void)
{
    struct security_audit_entry e[N];
    struct security_audit_report r;
    struct security_audit_verifier v;
    build(e, NULL, 0);
    security_audit_verify_begin(&v, NULL, 0, 1, NULL, NULL, &r);
    for (int i = 0; i < N; i++)
        ASSERT_EQ(security_audit_verify_next(&v, &e[i]), 0);
    ASSERT_EQ(security_audit_verify_end(&v), 0);
    e[6].target = "other";
    security_audit_verify_begin(&v, NULL, 0, 1, NULL, NULL, &r);
    int first_bad = -1;
    for (int i = 0; i < N; i++)
        if (security_audit_verify_next(&v, &e[i]) && first_bad < 0) first_bad = i;
    ASSERT_EQ(first_bad, 6);
    ASSERT_EQ(security_audit_verify_end(&v), THAW_EFORMAT);
    ASSERT_EQ(r.seq, 7);
    ASSERT_EQ(r.n_checked, 6);
}

int main(void)
{
    RUN(test_intact);
    RUN(test_changed);
    RUN(test_removed_inserted);
    RUN(test_key_and_anchor);
    RUN(test_streaming);
    return TEST_REPORT();
}
