/* Tenants, API keys and grants: loading them from the store into memory,
 * bootstrapping the first admin key, authenticating requests, and the
 * audited changes. Writes go to the store first, then to memory, so what a
 * request sees was durable before it was visible. */
#include "access/access_int.h"

#include <ctype.h>
#include <stddef.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define COLL_TENANTS "tenants"
#define COLL_KEYS    "keys"
#define COLL_GRANTS  "grants"

int access_grow(void **arr, size_t *cap, size_t n, size_t elem_size)
{
    if (n < *cap) return 0;
    size_t c = *cap ? *cap * 2 : 16;
    void *p = realloc(*arr, c * elem_size);
    if (!p) return THAW_ENOMEM;
    *arr = p;
    *cap = c;
    return 0;
}

struct access_tenant *access_find_tenant(struct access *a, const char *name)
{
    long i = access_index_find(&a->tenant_ix, a->tenants, name);
    return i < 0 ? NULL : &a->tenants[i];
}

struct access_key *access_find_key(struct access *a, const char *id)
{
    long i = access_index_find(&a->key_ix, a->keys, id);
    return i < 0 ? NULL : &a->keys[i];
}

/* Counts the element just written at a->tenants[n_tenants] (or keys) once
 * its index entry is in; ENOMEM leaves both as they were. */
static int tenant_commit(struct access *a)
{
    if (access_index_put(&a->tenant_ix, a->tenants, (uint32_t)a->n_tenants)) return THAW_ENOMEM;
    a->n_tenants++;
    return 0;
}

/* The same for a->grants[n_grants], whose fields are filled here. */
static int grant_commit(struct access *a, const char *deployment, const char *tenant)
{
    struct access_grant *g = &a->grants[a->n_grants];
    str_copy(g->deployment, deployment, sizeof(g->deployment));
    str_copy(g->tenant, tenant, sizeof(g->tenant));
    snprintf(g->id, sizeof(g->id), "%s/%s", g->deployment, g->tenant);
    if (access_index_put(&a->grant_ix, a->grants, (uint32_t)a->n_grants)) return THAW_ENOMEM;
    a->n_grants++;
    return 0;
}

/* Removes grant i, filling its place with the last one. */
static void grant_drop(struct access *a, size_t i)
{
    size_t last = a->n_grants - 1;
    access_index_del(&a->grant_ix, a->grants, a->grants[i].id);
    a->grants[i] = a->grants[last];
    a->n_grants--;
    if (i != last) access_index_moved(&a->grant_ix, a->grants, (uint32_t)last, (uint32_t)i);
}

static int key_commit(struct access *a)
{
    if (access_index_put(&a->key_ix, a->keys, (uint32_t)a->n_keys)) return THAW_ENOMEM;
    a->n_keys++;
    return 0;
}

static bool name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > ACCESS_NAME_MAX || !isalnum((unsigned char)s[0])) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(islower(c) || isdigit(c) || c == '-' || c == '_' || c == '.')) return false;
    }
    return true;
}

/* ---- persistence ---- */

static json_t *key_json(const struct access_key *k)
{
    char hex[SECURITY_KEY_HASH_LEN * 2 + 1];
    sodium_bin2hex(hex, sizeof(hex), k->hash, sizeof(k->hash));
    return json_pack("{s:s, s:s, s:i, s:I, s:I, s:I, s:o}", "tenant", k->tenant, "hash", hex,
                     "scopes", (int)k->scopes, "created_ms", (json_int_t)k->created_ms,
                     "expires_ms", (json_int_t)k->expires_ms, "revoked_ms",
                     (json_int_t)k->revoked_ms, "limits", access_limits_to_json(&k->limits));
}

static int save_doc(struct access *a, const char *coll, const char *id, json_t *v,
                    struct thaw_err *err)
{
    char *s = v ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(v);
    if (!s) return thaw_errf(err, THAW_ENOMEM, "out of memory");
    int rc = store_doc_put(a->store, coll, id, s, err);
    free(s);
    return rc;
}

static int load_tenant(void *ctx, const char *id, const char *json)
{
    struct access *a = ctx;
    json_t *j = json_loads(json, 0, NULL);
    if (!j ||
        access_grow((void **)&a->tenants, &a->cap_tenants, a->n_tenants, sizeof(*a->tenants))) {
        json_decref(j);
        return j ? THAW_ENOMEM : 0;
    }
    struct access_tenant *t = &a->tenants[a->n_tenants];
    memset(t, 0, sizeof(*t));
    str_copy(t->name, id, sizeof(t->name));
    t->created_ms = json_integer_value(json_object_get(j, "created_ms"));
    access_limits_from_json(json_object_get(j, "limits"), &t->limits, NULL);
    json_decref(j);
    return tenant_commit(a);
}

static int load_key(void *ctx, const char *id, const char *json)
{
    struct access *a = ctx;
    json_t *j = json_loads(json, 0, NULL);
    const char *hex = json_string_value(json_object_get(j, "hash"));
    const char *tenant = json_string_value(json_object_get(j, "tenant"));
    if (!j || !hex || !tenant ||
        access_grow((void **)&a->keys, &a->cap_keys, a->n_keys, sizeof(*a->keys))) {
        json_decref(j);
        return 0; /* a damaged record grants nothing */
    }
    struct access_key *k = &a->keys[a->n_keys];
    memset(k, 0, sizeof(*k));
    size_t bin_len = 0;
    if (sodium_hex2bin(k->hash, sizeof(k->hash), hex, strlen(hex), NULL, &bin_len, NULL) == 0 &&
        bin_len == sizeof(k->hash)) {
        str_copy(k->id, id, sizeof(k->id));
        str_copy(k->tenant, tenant, sizeof(k->tenant));
        k->scopes = (unsigned)json_integer_value(json_object_get(j, "scopes"));
        k->created_ms = json_integer_value(json_object_get(j, "created_ms"));
        k->expires_ms = json_integer_value(json_object_get(j, "expires_ms"));
        k->revoked_ms = json_integer_value(json_object_get(j, "revoked_ms"));
        access_limits_from_json(json_object_get(j, "limits"), &k->limits, NULL);
        if (key_commit(a)) {
            json_decref(j);
            return THAW_ENOMEM;
        }
    }
    json_decref(j);
    return 0;
}

static int load_grant(void *ctx, const char *id, const char *json)
{
    struct access *a = ctx;
    const char *slash = strchr(id, '/');
    if (!slash || access_grow((void **)&a->grants, &a->cap_grants, a->n_grants, sizeof(*a->grants)))
        return 0;
    char deployment[ACCESS_NAME_MAX + 1];
    size_t dl = (size_t)(slash - id);
    if (dl > ACCESS_NAME_MAX) return 0;
    memcpy(deployment, id, dl);
    deployment[dl] = 0;
    return grant_commit(a, deployment, slash + 1);
}

int access_audit_load_tail(struct access *a, struct thaw_err *err);

int access_open(struct store *store, const unsigned char secret32[32], struct access **out,
                struct thaw_err *err)
{
    if (security_init()) return thaw_errf(err, THAW_EUNSUPPORTED, "libsodium cannot initialise");
    struct access *a = calloc(1, sizeof(*a));
    if (!a) return thaw_errf(err, THAW_ENOMEM, "out of memory");
    a->store = store;
    randombytes_buf(a->index_key, sizeof(a->index_key));
    access_index_init(&a->tenant_ix, a->index_key, sizeof(struct access_tenant),
                      offsetof(struct access_tenant, name));
    access_index_init(&a->key_ix, a->index_key, sizeof(struct access_key),
                      offsetof(struct access_key, id));
    access_index_init(&a->grant_ix, a->index_key, sizeof(struct access_grant),
                      offsetof(struct access_grant, id));
    pthread_rwlock_init(&a->lock, NULL);
    access_keycache_init(a);
    pthread_mutex_init(&a->audit_lock, NULL);
    pthread_mutex_init(&a->keyring_lock, NULL);
    char kek_hex[65];
    sodium_bin2hex(kek_hex, sizeof(kek_hex), secret32, 32);
    int krc = security_kek_from_text(kek_hex, 64, 1, &a->kek, err);
    sodium_memzero(kek_hex, sizeof(kek_hex));
    if (krc) {
        access_free(a);
        return krc;
    }
    /* Checks the KEK against the data dir (a wrong one is refused here, not
     * discovered later as data that will not open). */
    int rc = access_node_secrets(store, secret32, true, a->pepper, a->audit_key, err);
    if (!rc) rc = security_ratelimiter_new(100000, &a->rate, err);
    if (!rc) rc = security_conclimiter_new(100000, &a->conc, err);
    if (!rc) rc = security_quota_new(100000, &a->quota, err);
    if (!rc) rc = access_usage_init(a, err);
    if (!rc) rc = store_doc_list(store, COLL_TENANTS, load_tenant, a, err);
    if (!rc) rc = store_doc_list(store, COLL_KEYS, load_key, a, err);
    if (!rc) rc = store_doc_list(store, COLL_GRANTS, load_grant, a, err);
    if (!rc) rc = access_audit_load_tail(a, err);
    if (rc) {
        access_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

void access_free(struct access *a)
{
    if (!a) return;
    access_usage_free(a);
    access_keyring_free(a);
    security_kek_free(a->kek);
    pthread_mutex_destroy(&a->keyring_lock);
    security_ratelimiter_free(a->rate);
    security_conclimiter_free(a->conc);
    security_quota_free(a->quota);
    free(a->tenants);
    access_index_free(&a->tenant_ix);
    sodium_memzero(a->keys, a->n_keys * sizeof(*a->keys));
    free(a->keys);
    access_index_free(&a->key_ix);
    free(a->grants);
    access_index_free(&a->grant_ix);
    sodium_memzero(a->pepper, sizeof(a->pepper));
    sodium_memzero(a->audit_key, sizeof(a->audit_key));
    pthread_rwlock_destroy(&a->lock);
    pthread_mutex_destroy(&a->audit_lock);
    free(a);
}

/* ---- tenants ---- */

static int tenant_insert(struct access *a, const char *name, const struct access_limits *limits,
                         struct thaw_err *err)
{
    if (access_grow((void **)&a->tenants, &a->cap_tenants, a->n_tenants, sizeof(*a->tenants)))
        return thaw_errf(err, THAW_ENOMEM, "out of memory");
    struct access_tenant t = {.created_ms = time_wall_ms(), .limits = *limits};
    str_copy(t.name, name, sizeof(t.name));
    json_t *doc = json_pack("{s:I, s:o}", "created_ms", (json_int_t)t.created_ms, "limits",
                            access_limits_to_json(limits));
    a->tenants[a->n_tenants] = t;
    if (tenant_commit(a)) {
        json_decref(doc);
        return thaw_errf(err, THAW_ENOMEM, "out of memory");
    }
    int rc = save_doc(a, COLL_TENANTS, name, doc, err);
    if (rc) {
        access_index_del(&a->tenant_ix, a->tenants, name);
        a->n_tenants--;
    }
    return rc;
}

static json_t *tenant_json(const struct access_tenant *t)
{
    return json_pack("{s:s, s:I, s:o}", "name", t->name, "created_ms", (json_int_t)t->created_ms,
                     "limits", access_limits_to_json(&t->limits));
}

bool access_tenant_exists(struct access *a, const char *name)
{
    pthread_rwlock_rdlock(&a->lock);
    bool ok = access_find_tenant(a, name) != NULL;
    pthread_rwlock_unlock(&a->lock);
    return ok;
}

int access_tenant_create(struct access *a, const struct access_principal *actor, const char *name,
                         const json_t *limits, json_t **out, struct thaw_err *err)
{
    if (!actor->platform_admin)
        return thaw_errf(err, THAW_EDENIED,
                         "creating tenants needs an admin key of the root tenant");
    if (!name || !name_valid(name))
        return thaw_errf(err, THAW_EINVAL,
                         "field 'name' must be 1-63 characters of a-z, 0-9, '-', '_' or '.'");
    struct access_limits l = {0};
    int rc = access_limits_from_json(limits, &l, err);
    if (rc) return rc;
    pthread_rwlock_wrlock(&a->lock);
    if (access_find_tenant(a, name))
        rc = thaw_errf(err, THAW_EEXIST, "tenant '%s' exists", name);
    else
        rc = tenant_insert(a, name, &l, err);
    if (!rc) *out = tenant_json(access_find_tenant(a, name));
    pthread_rwlock_unlock(&a->lock);
    access_audit(a, actor, "tenant.create", name, rc ? "error" : "ok", NULL);
    return rc;
}

int access_tenant_delete(struct access *a, const struct access_principal *actor, const char *name,
                         struct thaw_err *err)
{
    if (!actor->platform_admin)
        return thaw_errf(err, THAW_EDENIED,
                         "deleting tenants needs an admin key of the root tenant");
    if (!strcmp(name, ACCESS_ROOT_TENANT))
        return thaw_errf(err, THAW_EINVAL, "the root tenant cannot be deleted");
    int rc = 0;
    pthread_rwlock_wrlock(&a->lock);
    struct access_tenant *t = access_find_tenant(a, name);
    if (!t) rc = thaw_errf(err, THAW_ENOTFOUND, "tenant '%s' not found", name);
    if (!rc) rc = store_doc_delete(a->store, COLL_TENANTS, name, err);
    if (!rc) {
        uint32_t at = (uint32_t)(t - a->tenants), last = (uint32_t)(a->n_tenants - 1);
        access_index_del(&a->tenant_ix, a->tenants, name);
        *t = a->tenants[last];
        a->n_tenants--;
        if (at != last) access_index_moved(&a->tenant_ix, a->tenants, last, at);
        /* Its keys stop working at once. */
        int64_t now = time_wall_ms();
        for (size_t i = 0; i < a->n_keys; i++) {
            struct access_key *k = &a->keys[i];
            if (strcmp(k->tenant, name) || k->revoked_ms) continue;
            k->revoked_ms = now;
            save_doc(a, COLL_KEYS, k->id, key_json(k), NULL);
        }
        access_keycache_clear(a);
    }
    pthread_rwlock_unlock(&a->lock);
    access_audit(a, actor, "tenant.delete", name, rc ? "error" : "ok", NULL);
    return rc;
}

json_t *access_tenant_list(struct access *a, const struct access_principal *actor)
{
    json_t *arr = json_array();
    pthread_rwlock_rdlock(&a->lock);
    for (size_t i = 0; i < a->n_tenants; i++)
        if (actor->platform_admin || !strcmp(a->tenants[i].name, actor->tenant))
            json_array_append_new(arr, tenant_json(&a->tenants[i]));
    pthread_rwlock_unlock(&a->lock);
    return arr;
}

/* ---- keys ---- */

static int key_insert(struct access *a, const char *key_str, const char *tenant, unsigned scopes,
                      int64_t expires_ms, const struct access_limits *limits, struct thaw_err *err)
{
    struct security_apikey parsed;
    int rc = security_apikey_parse(key_str, strlen(key_str), &parsed, err);
    if (rc) return rc;
    if (access_grow((void **)&a->keys, &a->cap_keys, a->n_keys, sizeof(*a->keys)))
        return thaw_errf(err, THAW_ENOMEM, "out of memory");
    struct access_key k = {
        .scopes = scopes, .created_ms = time_wall_ms(), .expires_ms = expires_ms};
    if (limits) k.limits = *limits;
    str_copy(k.id, parsed.id, sizeof(k.id));
    str_copy(k.tenant, tenant, sizeof(k.tenant));
    security_apikey_hash(a->pepper, &parsed, k.hash);
    a->keys[a->n_keys] = k;
    if (key_commit(a)) {
        sodium_memzero(&k, sizeof(k));
        return thaw_errf(err, THAW_ENOMEM, "out of memory");
    }
    rc = save_doc(a, COLL_KEYS, k.id, key_json(&k), err);
    if (rc) {
        access_index_del(&a->key_ix, a->keys, k.id);
        a->n_keys--;
    }
    sodium_memzero(&k, sizeof(k));
    return rc;
}

int access_bootstrap(struct access *a, const char *admin_key, char generated[SECURITY_KEY_STR_SIZE],
                     bool *was_generated, struct thaw_err *err)
{
    *was_generated = false;
    int rc = 0;
    struct access_limits none = {0};
    pthread_rwlock_wrlock(&a->lock);
    if (!access_find_tenant(a, ACCESS_ROOT_TENANT))
        rc = tenant_insert(a, ACCESS_ROOT_TENANT, &none, err);
    if (!rc && admin_key) {
        struct security_apikey parsed;
        rc = security_apikey_parse(admin_key, strlen(admin_key), &parsed, err);
        struct access_key *k = rc ? NULL : access_find_key(a, parsed.id);
        if (!rc && !k)
            rc = key_insert(a, admin_key, ACCESS_ROOT_TENANT, SECURITY_SCOPE_ALL, 0, NULL, err);
        else if (!rc && (k->revoked_ms || strcmp(k->tenant, ACCESS_ROOT_TENANT)))
            rc = thaw_errf(err, THAW_EDENIED, "the bootstrap admin key %s was revoked", k->id);
    } else if (!rc && a->n_keys == 0) {
        char id[SECURITY_KEY_ID_LEN + 1];
        rc = security_apikey_generate(generated, id, err);
        if (!rc)
            rc = key_insert(a, generated, ACCESS_ROOT_TENANT, SECURITY_SCOPE_ALL, 0, NULL, err);
        *was_generated = rc == 0;
    }
    pthread_rwlock_unlock(&a->lock);
    if (*was_generated) access_audit(a, NULL, "key.bootstrap", ACCESS_ROOT_TENANT, "ok", NULL);
    return rc;
}

int access_authenticate(struct access *a, const char *authorization, struct access_principal *p,
                        struct thaw_err *err)
{
    if (!authorization || !*authorization)
        return thaw_errf(err, THAW_EDENIED, "missing API key: send Authorization: Bearer thaw_...");
    if (strncasecmp(authorization, "Bearer ", 7) != 0)
        return thaw_errf(err, THAW_EDENIED, "the Authorization header must be 'Bearer <key>'");
    const char *key = authorization + 7;
    size_t key_len = strlen(key);
    struct security_apikey parsed;
    struct thaw_err perr = {0};
    if (security_apikey_parse(key, key_len, &parsed, &perr))
        return thaw_errf(err, THAW_EDENIED, "malformed API key: %s", perr.msg);
    int rc = 0;
    pthread_rwlock_rdlock(&a->lock);
    struct access_key *k = access_find_key(a, parsed.id);
    int64_t now = time_wall_ms();
    /* A key this thread verified before skips the hash, never the checks
     * of the live record below: revocation and expiry apply at once. */
    bool cached = k && access_keycache_hit(a, key, key_len, k);
    if (!k || (!cached && security_apikey_verify(a->pepper, &parsed, k->hash) != 0))
        rc = thaw_errf(err, THAW_EDENIED, "unknown API key");
    else if (k->revoked_ms)
        rc = thaw_errf(err, THAW_EDENIED, "API key %s was revoked", k->id);
    else if (k->expires_ms && now >= k->expires_ms)
        rc = thaw_errf(err, THAW_EDENIED, "API key %s expired", k->id);
    if (!rc) {
        if (!cached) access_keycache_put(a, key, key_len, k);
        str_copy(p->key_id, k->id, sizeof(p->key_id));
        str_copy(p->tenant, k->tenant, sizeof(p->tenant));
        p->scopes = security_scopes_effective(k->scopes);
        p->platform_admin =
            !strcmp(k->tenant, ACCESS_ROOT_TENANT) && (k->scopes & SECURITY_SCOPE_ADMIN);
    }
    pthread_rwlock_unlock(&a->lock);
    return rc;
}

/* The actor may manage keys of tenant: the platform admin, or an admin of it. */
static int may_manage(const struct access_principal *actor, const char *tenant,
                      struct thaw_err *err)
{
    if (actor->platform_admin) return 0;
    if ((actor->scopes & SECURITY_SCOPE_ADMIN) && !strcmp(actor->tenant, tenant)) return 0;
    return thaw_errf(err, THAW_EDENIED, "managing keys of tenant '%s' needs an admin key of it",
                     tenant);
}

static json_t *key_info(const struct access_key *k)
{
    char scopes[64] = "";
    security_scopes_format(k->scopes, false, scopes, sizeof(scopes));
    json_t *arr = json_array();
    for (char *tok = strtok(scopes, ","); tok; tok = strtok(NULL, ","))
        json_array_append_new(arr, json_string(tok));
    return json_pack("{s:s, s:s, s:o, s:I, s:o, s:b}", "id", k->id, "tenant", k->tenant, "scopes",
                     arr, "created_ms", (json_int_t)k->created_ms, "expires_ms",
                     k->expires_ms ? json_integer(k->expires_ms) : json_null(), "revoked",
                     k->revoked_ms != 0);
}

static int parse_scopes(const json_t *v, unsigned *out, struct thaw_err *err)
{
    if (!json_is_array(v) || json_array_size(v) == 0)
        return thaw_errf(err, THAW_EINVAL,
                         "field 'scopes' must be a list like [\"invoke\",\"read\"]");
    char *s = json_dumps(v, JSON_COMPACT);
    int rc = s ? security_scopes_parse(s, out, err) : THAW_ENOMEM;
    free(s);
    if (rc) return thaw_errf(err, THAW_EINVAL, "field 'scopes': %s", err ? err->msg : "invalid");
    return 0;
}

int access_key_create(struct access *a, const struct access_principal *actor, const char *tenant,
                      const json_t *body, char key_out[SECURITY_KEY_STR_SIZE], json_t **info,
                      struct thaw_err *err)
{
    int rc = may_manage(actor, tenant, err);
    if (rc) return rc;
    unsigned scopes = 0;
    if ((rc = parse_scopes(json_object_get(body, "scopes"), &scopes, err))) return rc;
    /* Nobody hands out more than they hold. */
    if (!actor->platform_admin && (security_scopes_effective(scopes) & ~actor->scopes))
        return thaw_errf(err, THAW_EDENIED, "a key cannot grant scopes its creator lacks");
    int64_t expires = 0;
    json_t *exp = json_object_get(body, "expires_in");
    if (exp) {
        int64_t ms;
        if (json_is_string(exp)
                ? parse_duration_ms(json_string_value(exp), &ms)
                : !json_is_integer(exp) || (ms = json_integer_value(exp) * 1000) <= 0)
            return thaw_errf(
                err, THAW_EINVAL,
                "field 'expires_in' must be a duration like \"30d\"... e.g. \"720h\" or seconds");
        expires = time_wall_ms() + ms;
    }
    struct access_limits limits = {0};
    if ((rc = access_limits_from_json(json_object_get(body, "limits"), &limits, err))) return rc;
    char id[SECURITY_KEY_ID_LEN + 1];
    if ((rc = security_apikey_generate(key_out, id, err))) return rc;
    pthread_rwlock_wrlock(&a->lock);
    if (!access_find_tenant(a, tenant))
        rc = thaw_errf(err, THAW_ENOTFOUND, "tenant '%s' not found", tenant);
    if (!rc) rc = key_insert(a, key_out, tenant, scopes, expires, &limits, err);
    if (!rc) *info = key_info(access_find_key(a, id));
    pthread_rwlock_unlock(&a->lock);
    access_audit(a, actor, "key.create", id, rc ? "error" : "ok", NULL);
    if (rc) sodium_memzero(key_out, SECURITY_KEY_STR_SIZE);
    return rc;
}

/* Finds the key and checks the actor may manage it, under the write lock. */
static struct access_key *managed_key(struct access *a, const struct access_principal *actor,
                                      const char *key_id, struct thaw_err *err)
{
    struct access_key *k = access_find_key(a, key_id);
    if (!k) {
        thaw_errf(err, THAW_ENOTFOUND, "key '%s' not found", key_id);
        return NULL;
    }
    if (may_manage(actor, k->tenant, err)) {
        /* Do not reveal another tenant's keys exist. */
        thaw_errf(err, THAW_ENOTFOUND, "key '%s' not found", key_id);
        return NULL;
    }
    return k;
}

int access_key_revoke(struct access *a, const struct access_principal *actor, const char *key_id,
                      struct thaw_err *err)
{
    int rc = 0;
    pthread_rwlock_wrlock(&a->lock);
    struct access_key *k = managed_key(a, actor, key_id, err);
    if (!k)
        rc = err ? err->code : THAW_ENOTFOUND;
    else if (!k->revoked_ms) {
        struct access_key copy = *k;
        copy.revoked_ms = time_wall_ms();
        rc = save_doc(a, COLL_KEYS, k->id, key_json(&copy), err);
        if (!rc) *k = copy;
        access_keycache_clear(a);
    }
    pthread_rwlock_unlock(&a->lock);
    access_audit(a, actor, "key.revoke", key_id, rc ? "error" : "ok", NULL);
    return rc;
}

int access_key_rotate(struct access *a, const struct access_principal *actor, const char *key_id,
                      char key_out[SECURITY_KEY_STR_SIZE], json_t **info, struct thaw_err *err)
{
    int rc = 0;
    char new_id[SECURITY_KEY_ID_LEN + 1] = "";
    pthread_rwlock_wrlock(&a->lock);
    struct access_key *k = managed_key(a, actor, key_id, err);
    if (!k)
        rc = err ? err->code : THAW_ENOTFOUND;
    else if (k->revoked_ms)
        rc = thaw_errf(err, THAW_ESTATE, "key '%s' is revoked", key_id);
    /* A rotation issues a new key with the same tenant, scopes, expiry and
     * limits, and revokes the old one in the same step. */
    if (!rc) rc = security_apikey_generate(key_out, new_id, err);
    if (!rc) {
        struct access_key old = *k;
        rc = key_insert(a, key_out, old.tenant, old.scopes, old.expires_ms, &old.limits, err);
        if (!rc) {
            k = access_find_key(a, key_id); /* the array may have moved */
            k->revoked_ms = time_wall_ms();
            rc = save_doc(a, COLL_KEYS, k->id, key_json(k), err);
            access_keycache_clear(a);
        }
    }
    if (!rc) *info = key_info(access_find_key(a, new_id));
    pthread_rwlock_unlock(&a->lock);
    access_audit(a, actor, "key.rotate", key_id, rc ? "error" : "ok", new_id[0] ? new_id : NULL);
    if (rc) sodium_memzero(key_out, SECURITY_KEY_STR_SIZE);
    return rc;
}

int access_key_list(struct access *a, const struct access_principal *actor, const char *tenant,
                    json_t **out, struct thaw_err *err)
{
    int rc = may_manage(actor, tenant, err);
    if (rc) return rc;
    json_t *arr = json_array();
    pthread_rwlock_rdlock(&a->lock);
    if (!access_find_tenant(a, tenant))
        rc = thaw_errf(err, THAW_ENOTFOUND, "tenant '%s' not found", tenant);
    for (size_t i = 0; !rc && i < a->n_keys; i++)
        if (!strcmp(a->keys[i].tenant, tenant)) json_array_append_new(arr, key_info(&a->keys[i]));
    pthread_rwlock_unlock(&a->lock);
    if (rc)
        json_decref(arr);
    else
        *out = arr;
    return rc;
}

/* ---- grants ---- */

/* The position of the grant of deployment to tenant, or -1. */
static long grant_find(struct access *a, const char *deployment, const char *tenant)
{
    char id[2 * ACCESS_NAME_MAX + 2];
    if (strlen(deployment) > ACCESS_NAME_MAX || strlen(tenant) > ACCESS_NAME_MAX) return -1;
    snprintf(id, sizeof(id), "%s/%s", deployment, tenant);
    return access_index_find(&a->grant_ix, a->grants, id);
}

static bool granted_locked(struct access *a, const char *deployment, const char *tenant)
{
    return grant_find(a, deployment, tenant) >= 0;
}

bool access_can_use(struct access *a, const struct access_principal *p, const char *deployment,
                    const char *owner)
{
    if (p->platform_admin || !strcmp(p->tenant, owner)) return true;
    pthread_rwlock_rdlock(&a->lock);
    bool ok = granted_locked(a, deployment, p->tenant);
    pthread_rwlock_unlock(&a->lock);
    return ok;
}

static int may_grant(const struct access_principal *actor, const char *owner, struct thaw_err *err)
{
    if (actor->platform_admin) return 0;
    if (!strcmp(actor->tenant, owner) &&
        (actor->scopes & (SECURITY_SCOPE_ADMIN | SECURITY_SCOPE_DEPLOY)))
        return 0;
    return thaw_errf(err, THAW_EDENIED,
                     "only the owner's deploy or admin keys may grant this deployment");
}

int access_grant_add(struct access *a, const struct access_principal *actor, const char *deployment,
                     const char *owner, const char *tenant, struct thaw_err *err)
{
    int rc = may_grant(actor, owner, err);
    if (rc) return rc;
    char id[2 * ACCESS_NAME_MAX + 2];
    snprintf(id, sizeof(id), "%s/%s", deployment, tenant);
    pthread_rwlock_wrlock(&a->lock);
    if (!access_find_tenant(a, tenant))
        rc = thaw_errf(err, THAW_ENOTFOUND, "tenant '%s' not found", tenant);
    else if (!granted_locked(a, deployment, tenant)) {
        if (access_grow((void **)&a->grants, &a->cap_grants, a->n_grants, sizeof(*a->grants)))
            rc = thaw_errf(err, THAW_ENOMEM, "out of memory");
        if (!rc) rc = save_doc(a, COLL_GRANTS, id, json_object(), err);
        if (!rc && grant_commit(a, deployment, tenant))
            rc = thaw_errf(err, THAW_ENOMEM, "out of memory");
    }
    pthread_rwlock_unlock(&a->lock);
    access_audit(a, actor, "grant.add", id, rc ? "error" : "ok", NULL);
    return rc;
}

int access_grant_remove(struct access *a, const struct access_principal *actor,
                        const char *deployment, const char *owner, const char *tenant,
                        struct thaw_err *err)
{
    int rc = may_grant(actor, owner, err);
    if (rc) return rc;
    char id[2 * ACCESS_NAME_MAX + 2];
    snprintf(id, sizeof(id), "%s/%s", deployment, tenant);
    pthread_rwlock_wrlock(&a->lock);
    rc = THAW_ENOTFOUND;
    long i = grant_find(a, deployment, tenant);
    if (i >= 0) {
        rc = store_doc_delete(a->store, COLL_GRANTS, id, err);
        if (!rc) grant_drop(a, (size_t)i);
    }
    if (rc == THAW_ENOTFOUND) thaw_errf(err, rc, "no grant of '%s' to '%s'", deployment, tenant);
    pthread_rwlock_unlock(&a->lock);
    access_audit(a, actor, "grant.remove", id, rc ? "error" : "ok", NULL);
    return rc;
}

json_t *access_grant_list(struct access *a, const char *deployment)
{
    json_t *arr = json_array();
    pthread_rwlock_rdlock(&a->lock);
    for (size_t i = 0; i < a->n_grants; i++)
        if (!strcmp(a->grants[i].deployment, deployment))
            json_array_append_new(arr, json_string(a->grants[i].tenant));
    pthread_rwlock_unlock(&a->lock);
    return arr;
}

void access_grants_forget(struct access *a, const char *deployment)
{
    pthread_rwlock_wrlock(&a->lock);
    for (size_t i = 0; i < a->n_grants;) {
        if (strcmp(a->grants[i].deployment, deployment)) {
            i++;
            continue;
        }
        store_doc_delete(a->store, COLL_GRANTS, a->grants[i].id, NULL);
        grant_drop(a, i);
    }
    pthread_rwlock_unlock(&a->lock);
}
