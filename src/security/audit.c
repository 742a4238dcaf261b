/* Audit hash chain: canonical entry hashing (SHA-256 or HMAC-SHA256) and a
 * verifier that names the first changed, inserted or removed entry. The
 * encoding is documented in security.h. */
#include "security/security.h"
#include "security/security_int.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char domain_tag[] = "thaw.audit.v1";

/* One hashing interface over plain SHA-256 and HMAC-SHA256. */
struct hasher {
    int keyed;
    crypto_hash_sha256_state sha;
    crypto_auth_hmacsha256_state hmac;
};

static void h_init(struct hasher *h, const unsigned char *key, size_t key_len)
{
    h->keyed = key != NULL && key_len > 0;
    if (h->keyed)
        crypto_auth_hmacsha256_init(&h->hmac, key, key_len);
    else
        crypto_hash_sha256_init(&h->sha);
}

static void h_update(struct hasher *h, const void *p, size_t n)
{
    if (h->keyed)
        crypto_auth_hmacsha256_update(&h->hmac, p, n);
    else
        crypto_hash_sha256_update(&h->sha, p, n);
}

static void h_final(struct hasher *h, unsigned char out[SECURITY_AUDIT_HASH_LEN])
{
    if (h->keyed)
        crypto_auth_hmacsha256_final(&h->hmac, out);
    else
        crypto_hash_sha256_final(&h->sha, out);
    sodium_memzero(h, sizeof(*h));
}

static void h_string(struct hasher *h, const char *s)
{
    unsigned char len[4];
    size_t n = s ? strlen(s) : 0;
    /* Audit fields are far below 4 GiB; clamp so the encoding stays
     * well-formed whatever happens. */
    if (n > UINT32_MAX) n = UINT32_MAX;
    sec_put_be32(len, (uint32_t)n);
    h_update(h, len, 4);
    if (n) h_update(h, s, n);
}

int security_audit_hash(const unsigned char *key, size_t key_len,
                        const unsigned char prev[SECURITY_AUDIT_HASH_LEN],
                        const struct security_audit_entry *e,
                        unsigned char out[SECURITY_AUDIT_HASH_LEN])
{
    if (security_init()) return THAW_EUNSUPPORTED;
    static const unsigned char zeros[SECURITY_AUDIT_HASH_LEN];
    struct hasher h;
    unsigned char num[16];
    h_init(&h, key, key_len);
    h_update(&h, domain_tag, sizeof(domain_tag) - 1);
    h_update(&h, prev ? prev : zeros, SECURITY_AUDIT_HASH_LEN);
    sec_put_be64(num, e->seq);
    sec_put_be64(num + 8, (uint64_t)e->time_ms);
    h_update(&h, num, sizeof(num));
    h_string(&h, e->actor);
    h_string(&h, e->action);
    h_string(&h, e->target);
    h_string(&h, e->outcome);
    h_string(&h, e->details);
    h_final(&h, out);
    return 0;
}

int security_audit_seal(const unsigned char *key, size_t key_len,
                        const unsigned char prev[SECURITY_AUDIT_HASH_LEN],
                        struct security_audit_entry *e)
{
    if (prev)
        memcpy(e->prev_hash, prev, SECURITY_AUDIT_HASH_LEN);
    else
        memset(e->prev_hash, 0, SECURITY_AUDIT_HASH_LEN);
    return security_audit_hash(key, key_len, e->prev_hash, e, e->hash);
}

/* --------------------------------------------------------- verifying -- */

static int fail(struct security_audit_verifier *v, enum security_audit_problem p, uint64_t seq,
                const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int fail(struct security_audit_verifier *v, enum security_audit_problem p, uint64_t seq,
                const char *fmt, ...)
{
    v->done = true;
    v->rep->problem = p;
    v->rep->seq = seq;
    v->rep->index = v->index;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->rep->msg, sizeof(v->rep->msg), fmt, ap);
    va_end(ap);
    return THAW_EFORMAT;
}

void security_audit_verify_begin(struct security_audit_verifier *v, const unsigned char *key,
                                 size_t key_len, uint64_t first_seq,
                                 const unsigned char genesis[SECURITY_AUDIT_HASH_LEN],
                                 const struct security_audit_anchor *anchor,
                                 struct security_audit_report *rep)
{
    memset(v, 0, sizeof(*v));
    memset(rep, 0, sizeof(*rep));
    snprintf(rep->msg, sizeof(rep->msg), "ok");
    v->key = key;
    v->key_len = key_len;
    v->anchor = anchor;
    v->rep = rep;
    /* UINT64_MAX marks "take the first entry's seq as given". */
    v->last_seq = first_seq == 0 ? UINT64_MAX : first_seq - 1;
    if (genesis) memcpy(v->prev, genesis, SECURITY_AUDIT_HASH_LEN);
    v->have_prev = genesis != NULL || first_seq == 1; /* seq 1 chains to zeros */
}

/* Checks seq continuity. Returns 0 or the failure. */
static int check_seq(struct security_audit_verifier *v, const struct security_audit_entry *e)
{
    if (v->last_seq == UINT64_MAX) return 0;
    uint64_t want = v->last_seq + 1;
    if (e->seq == want) return 0;
    if (e->seq > want)
        return fail(v, SECURITY_AUDIT_REMOVED, want,
                    "entries %llu..%llu are missing: seq jumps from %llu to %llu",
                    (unsigned long long)want, (unsigned long long)(e->seq - 1),
                    (unsigned long long)v->last_seq, (unsigned long long)e->seq);
    return fail(v, SECURITY_AUDIT_INSERTED, e->seq,
                "entry at position %zu has seq %llu after seq %llu: inserted, duplicated or "
                "reordered",
                v->index, (unsigned long long)e->seq, (unsigned long long)v->last_seq);
}

int security_audit_verify_next(struct security_audit_verifier *v,
                               const struct security_audit_entry *e)
{
    if (v->done) return THAW_EFORMAT;
    int rc = check_seq(v, e);
    if (rc) return rc;
    unsigned char h[SECURITY_AUDIT_HASH_LEN];
    security_audit_hash(v->key, v->key_len, e->prev_hash, e, h);
    if (sodium_memcmp(h, e->hash, SECURITY_AUDIT_HASH_LEN) != 0)
        return fail(v, SECURITY_AUDIT_CHANGED, e->seq,
                    "entry seq %llu was changed: its hash does not match its contents",
                    (unsigned long long)e->seq);
    if (v->have_prev && sodium_memcmp(v->prev, e->prev_hash, SECURITY_AUDIT_HASH_LEN) != 0) {
        if (v->index == 0)
            return fail(v, SECURITY_AUDIT_CHANGED, e->seq,
                        "entry seq %llu does not chain to the expected starting hash",
                        (unsigned long long)e->seq);
        /* The entry is self-consistent but links to something else: the
         * previous entry was rewritten (hash recomputed) or this one was
         * put in its place. */
        return fail(v, SECURITY_AUDIT_CHANGED, v->last_seq,
                    "entry seq %llu was changed or replaced: entry seq %llu recorded a "
                    "different hash for it",
                    (unsigned long long)v->last_seq, (unsigned long long)e->seq);
    }
    if (v->anchor && e->seq == v->anchor->seq) {
        if (sodium_memcmp(e->hash, v->anchor->hash, SECURITY_AUDIT_HASH_LEN) != 0)
            return fail(v, SECURITY_AUDIT_CHANGED, e->seq,
                        "entry seq %llu does not match the anchor: the log up to it was "
                        "rewritten",
                        (unsigned long long)e->seq);
        v->anchor_seen = true;
    }
    memcpy(v->prev, e->hash, SECURITY_AUDIT_HASH_LEN);
    v->have_prev = true;
    v->last_seq = e->seq;
    v->index++;
    v->rep->n_checked++;
    return 0;
}

int security_audit_verify_end(struct security_audit_verifier *v)
{
    if (v->done) return v->rep->problem == SECURITY_AUDIT_OK ? 0 : THAW_EFORMAT;
    if (v->anchor && !v->anchor_seen) {
        uint64_t last = v->last_seq == UINT64_MAX ? 0 : v->last_seq;
        if (last < v->anchor->seq)
            return fail(v, SECURITY_AUDIT_TRUNCATED, last + 1,
                        "entries from seq %llu to the anchor at seq %llu are missing",
                        (unsigned long long)(last + 1), (unsigned long long)v->anchor->seq);
        return fail(v, SECURITY_AUDIT_REMOVED, v->anchor->seq,
                    "the anchor entry seq %llu is not in the log",
                    (unsigned long long)v->anchor->seq);
    }
    v->done = true;
    return 0;
}

int security_audit_verify(const unsigned char *key, size_t key_len,
                          const struct security_audit_entry *entries, size_t n, uint64_t first_seq,
                          const unsigned char genesis[SECURITY_AUDIT_HASH_LEN],
                          const struct security_audit_anchor *anchor,
                          struct security_audit_report *rep)
{
    struct security_audit_verifier v;
    security_audit_verify_begin(&v, key, key_len, first_seq, genesis, anchor, rep);
    for (size_t i = 0; i < n; i++)
        if (security_audit_verify_next(&v, &entries[i])) return THAW_EFORMAT;
    return security_audit_verify_end(&v);
}
