/* Private to src/access: the in-memory view of tenants, keys and grants
 * (the store is the source of truth; this mirrors it for every request). */
#ifndef THAW_ACCESS_INT_H
#define THAW_ACCESS_INT_H

#include "access/access.h"
#include "store/store.h"

#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>

struct access_tenant {
    char name[ACCESS_NAME_MAX + 1];
    int64_t created_ms;
    struct access_limits limits;
};

struct access_key {
    char id[SECURITY_KEY_ID_LEN + 1];
    char tenant[ACCESS_NAME_MAX + 1];
    unsigned char hash[SECURITY_KEY_HASH_LEN];
    unsigned scopes;
    int64_t created_ms, expires_ms, revoked_ms; /* 0 = never */
    struct access_limits limits;
};

struct access_grant {
    char id[2 * ACCESS_NAME_MAX + 2]; /* "deployment/tenant": its index name */
    char deployment[ACCESS_NAME_MAX + 1];
    char tenant[ACCESS_NAME_MAX + 1];
};

/* Name -> position in one of the arrays below (index.c): elements of stride
 * bytes whose NUL-terminated name sits at name_off. Callers hold the lock
 * of the array. */
struct access_index {
    uint32_t *slots; /* position + 1; 0 = empty */
    uint32_t mask;   /* slots - 1 (a power of two) */
    uint32_t n;
    const unsigned char *hash_key; /* crypto_shorthash key, the access's */
    size_t stride, name_off;
};
void access_index_init(struct access_index *ix, const unsigned char *hash_key, size_t stride,
                       size_t name_off);
void access_index_free(struct access_index *ix);
/* Indexes element i of base (replacing an entry of the same name).
 * THAW_ENOMEM leaves the index as it was. */
int access_index_put(struct access_index *ix, const void *base, uint32_t i);
/* The position of the element named name, or -1. */
long access_index_find(const struct access_index *ix, const void *base, const char *name);
/* Forgets name; call while the element is still in base. */
void access_index_del(struct access_index *ix, const void *base, const char *name);
/* The element at from now sits at to (moved into a deleted one's place). */
void access_index_moved(struct access_index *ix, const void *base, uint32_t from, uint32_t to);

struct access {
    struct store *store;
    unsigned char pepper[SECURITY_PEPPER_LEN];
    unsigned char audit_key[32];
    pthread_rwlock_t lock; /* tenants, keys, grants */
    unsigned char keycache_key[crypto_shorthash_siphashx24_KEYBYTES]; /* keycache.c */
    _Atomic uint64_t keycache_gen;
    unsigned char index_key[crypto_shorthash_KEYBYTES]; /* index.c, random per access */
    struct access_tenant *tenants;
    size_t n_tenants, cap_tenants;
    struct access_index tenant_ix; /* by name */
    struct access_key *keys;
    size_t n_keys, cap_keys;
    struct access_index key_ix; /* by key id */
    struct access_grant *grants;
    size_t n_grants, cap_grants;
    struct access_index grant_ix; /* by "deployment/tenant" */

    pthread_mutex_t audit_lock;
    uint64_t audit_seq;
    unsigned char audit_prev[32];

    struct security_kek *kek;
    pthread_mutex_t keyring_lock;
    struct tenant_keys *keysets;
    size_t n_keysets, cap_keysets;
    struct access_index keyset_ix; /* by tenant, under keyring_lock */

    struct security_ratelimiter *rate;
    struct security_conclimiter *conc;
    struct security_quota *quota;
    struct access_usage *usage; /* usage.c */
};

int access_usage_init(struct access *a, struct thaw_err *err);
/* Writes what is unwritten, then frees. */
void access_usage_free(struct access *a);

void access_keyring_free(struct access *a);

/* Keys that verified, per thread (keycache.c). A hit replaces only the hash
 * check: the caller still checks the live record (revoked, expired). clear
 * (revoke, rotate, tenant delete) forgets every entry of a. */
void access_keycache_init(struct access *a);
void access_keycache_clear(struct access *a);
bool access_keycache_hit(struct access *a, const char *key, size_t len, const struct access_key *k);
void access_keycache_put(struct access *a, const char *key, size_t len, const struct access_key *k);

/* Grows an array of elem_size elements to hold one more. */
int access_grow(void **arr, size_t *cap, size_t n, size_t elem_size);
/* By name, through the indexes; with a->lock held (read is enough). The
 * pointers last until the arrays change (an insert may move them). */
struct access_tenant *access_find_tenant(struct access *a, const char *name);
struct access_key *access_find_key(struct access *a, const char *id);
int access_limits_from_json(const json_t *j, struct access_limits *out, struct thaw_err *err);
json_t *access_limits_to_json(const struct access_limits *l);

#endif
