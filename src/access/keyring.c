/* Encryption at rest for user content: one keyset of data keys per tenant,
 * each DEK stored only wrapped by the node's KEK (documents "deks/<tenant>"),
 * created on first use and rotated on request. Sealed blobs name their
 * tenant in the clear (it is bound into the AEAD's associated data), so they
 * open without the caller knowing whose they are:
 *   u8 tenant_len | tenant | security_keyset_seal output */
#include "access/access_int.h"

#include <sodium.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define COLL_DEKS "deks"

struct tenant_keys {
    char tenant[ACCESS_NAME_MAX + 1];
    struct security_keyset *ks;
};

static int save_versions(struct access *a, const char *tenant, json_t *versions,
                         struct thaw_err *err)
{
    json_t *doc = json_pack("{s:O}", "versions", versions);
    char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    int rc = s ? store_doc_put(a->store, COLL_DEKS, tenant, s, err) : THAW_ENOMEM;
    free(s);
    return rc;
}

/* Adds a new DEK version to ks and persists the whole list first. */
static int rotate_locked(struct access *a, const char *tenant, struct security_keyset *ks,
                         uint32_t *version, struct thaw_err *err)
{
    char *old = NULL;
    json_t *doc = store_doc_get(a->store, COLL_DEKS, tenant, &old, NULL) == 0
                      ? json_loads(old, 0, NULL)
                      : NULL;
    free(old);
    json_t *versions = json_incref(json_object_get(doc, "versions"));
    json_decref(doc);
    if (!json_is_array(versions)) {
        json_decref(versions);
        versions = json_array();
    }
    unsigned char wrapped[SECURITY_WRAPPED_DEK_LEN];
    char hex[2 * SECURITY_WRAPPED_DEK_LEN + 1];
    uint32_t v = 0;
    int rc = security_keyset_rotate(ks, a->kek, &v, wrapped, err);
    if (!rc) {
        sodium_bin2hex(hex, sizeof(hex), wrapped, sizeof(wrapped));
        json_array_append_new(versions, json_pack("{s:i, s:s}", "v", (int)v, "wrapped", hex));
        rc = save_versions(a, tenant, versions, err);
    }
    json_decref(versions);
    if (!rc && version) *version = v;
    return rc;
}

/* The keyset of tenant, loaded from the store or created. Lock held. */
static struct security_keyset *keyset_locked(struct access *a, const char *tenant, bool create,
                                             struct thaw_err *err)
{
    if (!a->keyset_ix.stride)
        access_index_init(&a->keyset_ix, a->index_key, sizeof(struct tenant_keys),
                          offsetof(struct tenant_keys, tenant));
    long at = access_index_find(&a->keyset_ix, a->keysets, tenant);
    if (at >= 0) return a->keysets[at].ks;
    struct security_keyset *ks = NULL;
    if (security_keyset_new(tenant, &ks, err)) return NULL;
    char *doc_s = NULL;
    json_t *doc = store_doc_get(a->store, COLL_DEKS, tenant, &doc_s, NULL) == 0
                      ? json_loads(doc_s, 0, NULL)
                      : NULL;
    free(doc_s);
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(doc, "versions"), i, v)
    {
        const char *hex = json_string_value(json_object_get(v, "wrapped"));
        unsigned char wrapped[SECURITY_WRAPPED_DEK_LEN];
        size_t n = 0;
        if (hex && !sodium_hex2bin(wrapped, sizeof(wrapped), hex, strlen(hex), NULL, &n, NULL))
            security_keyset_add_wrapped(ks, a->kek, wrapped, n, NULL);
    }
    json_decref(doc);
    if (security_keyset_current(ks) == 0 && (!create || rotate_locked(a, tenant, ks, NULL, err))) {
        security_keyset_free(ks);
        if (!create) thaw_errf(err, THAW_ENOTFOUND, "no data key for tenant '%s'", tenant);
        return NULL;
    }
    if (access_grow((void **)&a->keysets, &a->cap_keysets, a->n_keysets, sizeof(*a->keysets))) {
        security_keyset_free(ks);
        thaw_errf(err, THAW_ENOMEM, "out of memory");
        return NULL;
    }
    struct tenant_keys *tk = &a->keysets[a->n_keysets];
    str_copy(tk->tenant, tenant, sizeof(tk->tenant));
    tk->ks = ks;
    if (access_index_put(&a->keyset_ix, a->keysets, (uint32_t)a->n_keysets)) {
        security_keyset_free(ks);
        thaw_errf(err, THAW_ENOMEM, "out of memory");
        return NULL;
    }
    a->n_keysets++;
    return ks;
}

int access_seal(struct access *a, const char *tenant, const char *purpose, const void *pt,
                size_t len, struct buf *out, struct thaw_err *err)
{
    size_t tl = strlen(tenant);
    if (tl == 0 || tl > ACCESS_NAME_MAX)
        return thaw_errf(err, THAW_EINVAL, "bad tenant for sealing");
    pthread_mutex_lock(&a->keyring_lock);
    struct security_keyset *ks = keyset_locked(a, tenant, true, err);
    int rc = ks ? 0 : (err && err->code ? err->code : THAW_EIO);
    unsigned char tlen = (unsigned char)tl;
    if (!rc) rc = buf_append(out, &tlen, 1) || buf_append(out, tenant, tl) ? THAW_ENOMEM : 0;
    pthread_mutex_unlock(&a->keyring_lock);
    /* The keyset is thread-safe; seal outside the ring's lock. */
    if (!rc) rc = security_keyset_seal(ks, purpose, "", pt, len, out, err);
    return rc;
}

int access_unseal(struct access *a, const char *purpose, const void *blob, size_t len,
                  struct buf *out, struct thaw_err *err)
{
    const unsigned char *p = blob;
    if (len < 1 || (size_t)p[0] + 1 > len || p[0] == 0 || p[0] > ACCESS_NAME_MAX)
        return thaw_errf(err, THAW_EFORMAT, "sealed data is damaged");
    char tenant[ACCESS_NAME_MAX + 1];
    memcpy(tenant, p + 1, p[0]);
    tenant[p[0]] = 0;
    pthread_mutex_lock(&a->keyring_lock);
    struct security_keyset *ks = keyset_locked(a, tenant, false, err);
    pthread_mutex_unlock(&a->keyring_lock);
    if (!ks) return err && err->code ? err->code : THAW_ENOTFOUND;
    return security_keyset_open(ks, purpose, "", p + 1 + p[0], len - 1 - p[0], out, err);
}

int access_seal_hook(void *access, const char *tenant, const char *purpose, const void *pt,
                     size_t len, struct buf *out, struct thaw_err *err)
{
    return access_seal(access, tenant, purpose, pt, len, out, err);
}

int access_unseal_hook(void *access, const char *purpose, const void *blob, size_t len,
                       struct buf *out, struct thaw_err *err)
{
    return access_unseal(access, purpose, blob, len, out, err);
}

int access_rotate_data_key(struct access *a, const struct access_principal *actor,
                           const char *tenant, uint32_t *version, struct thaw_err *err)
{
    if (!actor->platform_admin &&
        !((actor->scopes & SECURITY_SCOPE_ADMIN) && !strcmp(actor->tenant, tenant)))
        return thaw_errf(err, THAW_EDENIED, "rotating data keys needs an admin key of the tenant");
    if (!access_tenant_exists(a, tenant))
        return thaw_errf(err, THAW_ENOTFOUND, "tenant '%s' not found", tenant);
    pthread_mutex_lock(&a->keyring_lock);
    struct security_keyset *ks = keyset_locked(a, tenant, true, err);
    int rc = ks ? rotate_locked(a, tenant, ks, version, err) : THAW_EIO;
    pthread_mutex_unlock(&a->keyring_lock);
    access_audit(a, actor, "datakey.rotate", tenant, rc ? "error" : "ok", NULL);
    return rc;
}

void access_keyring_free(struct access *a)
{
    for (size_t i = 0; i < a->n_keysets; i++)
        security_keyset_free(a->keysets[i].ks);
    free(a->keysets);
    a->keysets = NULL;
    a->n_keysets = 0;
    access_index_free(&a->keyset_ix);
}
