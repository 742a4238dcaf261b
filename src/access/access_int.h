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
    char deployment[ACCESS_NAME_MAX + 1];
    char tenant[ACCESS_NAME_MAX + 1];
};

struct access {
    struct store *store;
    unsigned char pepper[SECURITY_PEPPER_LEN];
    unsigned char audit_key[32];
    pthread_rwlock_t lock; /* tenants, keys, grants */
    unsigned char keycache_key[crypto_shorthash_siphashx24_KEYBYTES]; /* keycache.c */
    _Atomic uint64_t keycache_gen;
    struct access_tenant *tenants;
    size_t n_tenants, cap_tenants;
    struct access_key *keys;
    size_t n_keys, cap_keys;
    struct access_grant *grants;
    size_t n_grants, cap_grants;

    pthread_mutex_t audit_lock;
    uint64_t audit_seq;
    unsigned char audit_prev[32];

    struct security_kek *kek;
    pthread_mutex_t keyring_lock;
    struct tenant_keys *keysets;
    size_t n_keysets, cap_keysets;

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
struct access_tenant *access_find_tenant(struct access *a, const char *name);
struct access_key *access_find_key(struct access *a, const char *id);
int access_limits_from_json(const json_t *j, struct access_limits *out, struct thaw_err *err);
json_t *access_limits_to_json(const struct access_limits *l);

#endif
