/* Verified API keys, remembered per thread: verifying a presented key is a
 * keyed BLAKE2b (about 1.3 us), paid on every request, for keys that are
 * presented again and again. Each gateway thread keeps a small table of
 * keys that verified, found by and checked against a 128-bit SipHash tag of
 * the whole presented key under a random per-access secret: the table never
 * holds a secret, and a tag tests no guess without that secret. */
#include "access/access_int.h"

#include <sodium.h>
#include <string.h>

#define SLOTS   64 /* per thread; a miss only costs the full verification */
#define TAG_LEN crypto_shorthash_siphashx24_BYTES

struct kc_entry {
    const struct access *owner; /* with gen: which access and which epoch */
    uint64_t gen;
    unsigned char tag[TAG_LEN];
    unsigned char hash[SECURITY_KEY_HASH_LEN]; /* the record's hash when it verified */
};

/* Per thread: gateway threads never share an entry, so no lock. */
static _Thread_local struct kc_entry cache[SLOTS];

void access_keycache_init(struct access *a)
{
    randombytes_buf(a->keycache_key, sizeof(a->keycache_key));
    atomic_store(&a->keycache_gen, 1);
}

void access_keycache_clear(struct access *a)
{
    /* Every thread's entries of this access become stale at once. */
    atomic_fetch_add(&a->keycache_gen, 1);
}

static struct kc_entry *slot_of(struct access *a, const char *key, size_t len,
                                unsigned char tag[TAG_LEN])
{
    crypto_shorthash_siphashx24(tag, (const unsigned char *)key, len, a->keycache_key);
    uint32_t h;
    memcpy(&h, tag, sizeof(h));
    return &cache[h % SLOTS];
}

bool access_keycache_hit(struct access *a, const char *key, size_t len, const struct access_key *k)
{
    unsigned char tag[TAG_LEN];
    struct kc_entry *e = slot_of(a, key, len, tag);
    /* The whole tag in constant time (it derives from the presented
     * secret); then the record's hash, so a key whose record changed since
     * verifies afresh (stored against stored: memcmp tells nothing about
     * the presented key). */
    bool hit = e->owner == a &&
               e->gen == atomic_load_explicit(&a->keycache_gen, memory_order_acquire) &&
               sodium_memcmp(e->tag, tag, TAG_LEN) == 0 &&
               memcmp(e->hash, k->hash, SECURITY_KEY_HASH_LEN) == 0;
    sodium_memzero(tag, sizeof(tag));
    return hit;
}

void access_keycache_put(struct access *a, const char *key, size_t len, const struct access_key *k)
{
    unsigned char tag[TAG_LEN];
    struct kc_entry *e = slot_of(a, key, len, tag);
    e->owner = a;
    e->gen = atomic_load_explicit(&a->keycache_gen, memory_order_acquire);
    memcpy(e->tag, tag, TAG_LEN);
    memcpy(e->hash, k->hash, SECURITY_KEY_HASH_LEN);
    sodium_memzero(tag, sizeof(tag));
}
