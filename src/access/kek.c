/* The node's key-encryption key (KEK) against a data dir: checking that a KEK
 * is the one the data was wrapped under, the node secrets kept beside the
 * data keys (key-hash pepper, audit key), and KEK rotation (rewrap).
 * Document "kek/node": {"v":1,"dek":hex(wrapped node DEK),"secrets":hex(sealed)}. */
#include "access/access_int.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define COLL_KEK  "kek"
#define COLL_DEKS "deks"
/* Not a valid tenant name (they cannot start with '@'), so no clash. */
#define NODE_KEY_OWNER  "@node"
#define SECRETS_PURPOSE "node.secrets"

static int wrong_kek(struct thaw_err *err, const char *which)
{
    return thaw_errf(err, THAW_EDENIED,
                     "the %skey-encryption key does not open this data dir (wrong --kek-file or "
                     "THAW_KEK, or the KEK was replaced by `thaw keys rewrap`)",
                     which);
}

static int make_kek(const unsigned char raw[32], struct security_kek **out, struct thaw_err *err)
{
    char hex[65];
    sodium_bin2hex(hex, sizeof(hex), raw, 32);
    int rc = security_kek_from_text(hex, 64, 1, out, err);
    sodium_memzero(hex, sizeof(hex));
    return rc;
}

static int hex_field(json_t *doc, const char *name, unsigned char *out, size_t cap, size_t *len)
{
    const char *hex = json_string_value(json_object_get(doc, name));
    *len = 0;
    return hex && sodium_hex2bin(out, cap, hex, strlen(hex), NULL, len, NULL) == 0 ? 0 : -1;
}

/* The secrets a KEK from before the "kek/node" document derived directly;
 * kept for those data dirs (their API key hashes and audit chain use them). */
static void legacy_secrets(const unsigned char kek32[32], unsigned char pepper[32],
                           unsigned char audit_key[32])
{
    crypto_kdf_derive_from_key(pepper, 32, 1, "thawacc1", kek32);
    crypto_kdf_derive_from_key(audit_key, 32, 2, "thawacc1", kek32);
}

/* Opens a "kek/node" document with kek into pepper||audit_key (64 bytes). */
static int open_node_doc(const char *doc_s, const struct security_kek *kek, unsigned char sec[64],
                         struct thaw_err *err)
{
    json_t *doc = json_loads(doc_s, 0, NULL);
    unsigned char wrapped[SECURITY_WRAPPED_DEK_LEN], sealed[64 + SECURITY_SEAL_OVERHEAD];
    size_t wl = 0, sl = 0;
    int rc = 0;
    if (!doc || hex_field(doc, "dek", wrapped, sizeof(wrapped), &wl) ||
        hex_field(doc, "secrets", sealed, sizeof(sealed), &sl))
        rc = thaw_errf(err, THAW_EFORMAT, "store: the node key document is damaged");
    json_decref(doc);
    struct security_dek *dek = NULL;
    if (!rc && security_dek_unwrap(kek, NODE_KEY_OWNER, wrapped, wl, &dek, NULL)) rc = THAW_EDENIED;
    struct buf pt = {0};
    struct security_ad ad = {NODE_KEY_OWNER, SECRETS_PURPOSE, ""};
    if (!rc && security_open(dek, &ad, sealed, sl, &pt, NULL)) rc = THAW_EDENIED;
    if (!rc && pt.len != 64) rc = thaw_errf(err, THAW_EFORMAT, "store: node secrets damaged");
    if (!rc) memcpy(sec, pt.data, 64);
    if (pt.data) sodium_memzero(pt.data, pt.len);
    buf_free(&pt);
    security_dek_free(dek);
    return rc;
}

/* A fresh "kek/node" document sealing sec (pepper||audit_key) under kek. */
static char *make_node_doc(const struct security_kek *kek, const unsigned char sec[64],
                           struct thaw_err *err)
{
    struct security_dek *dek = NULL;
    unsigned char wrapped[SECURITY_WRAPPED_DEK_LEN];
    struct buf sealed = {0};
    struct security_ad ad = {NODE_KEY_OWNER, SECRETS_PURPOSE, ""};
    char *out = NULL;
    if (!security_dek_generate(1, &dek, err) &&
        !security_dek_wrap(kek, dek, NODE_KEY_OWNER, wrapped, err) &&
        !security_seal(dek, &ad, sec, 64, &sealed, err)) {
        char whex[2 * SECURITY_WRAPPED_DEK_LEN + 1], *shex = malloc(2 * sealed.len + 1);
        sodium_bin2hex(whex, sizeof(whex), wrapped, sizeof(wrapped));
        if (shex) {
            sodium_bin2hex(shex, 2 * sealed.len + 1, (unsigned char *)sealed.data, sealed.len);
            json_t *doc = json_pack("{s:i, s:s, s:s}", "v", 1, "dek", whex, "secrets", shex);
            out = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
            json_decref(doc);
            free(shex);
        }
        if (!out) thaw_errf(err, THAW_ENOMEM, "out of memory");
    }
    security_dek_free(dek);
    buf_free(&sealed);
    return out;
}

struct dek_walk {
    const struct security_kek *old_kek, *new_kek; /* new_kek NULL: check only */
    struct store_doc_write *writes;
    size_t n, cap;
    size_t keys;
    int rc;
    struct thaw_err *err;
};

/* Checks (and with new_kek, rewraps) every version of one tenant's keys. */
static int dek_cb(void *ctx, const char *tenant, const char *json)
{
    struct dek_walk *w = ctx;
    json_t *doc = json_loads(json, 0, NULL);
    json_t *versions = json_object_get(doc, "versions");
    if (!json_is_array(versions)) {
        json_decref(doc);
        w->rc =
            thaw_errf(w->err, THAW_EFORMAT, "store: data keys of tenant '%s' are damaged", tenant);
        return 1;
    }
    size_t i;
    json_t *v;
    json_array_foreach(versions, i, v)
    {
        unsigned char wrapped[SECURITY_WRAPPED_DEK_LEN], out[SECURITY_WRAPPED_DEK_LEN];
        size_t len = 0;
        if (hex_field(v, "wrapped", wrapped, sizeof(wrapped), &len)) {
            w->rc = thaw_errf(w->err, THAW_EFORMAT, "store: a data key of tenant '%s' is damaged",
                              tenant);
            break;
        }
        struct security_dek *dek = NULL;
        if (security_dek_unwrap(w->old_kek, tenant, wrapped, len, &dek, NULL)) {
            w->rc = THAW_EDENIED;
            break;
        }
        security_dek_free(dek);
        w->keys++;
        if (!w->new_kek) continue;
        if (security_dek_rewrap(w->old_kek, w->new_kek, tenant, wrapped, len, out, w->err)) {
            w->rc = w->err && w->err->code ? w->err->code : THAW_EIO;
            break;
        }
        char hex[2 * SECURITY_WRAPPED_DEK_LEN + 1];
        sodium_bin2hex(hex, sizeof(hex), out, sizeof(out));
        json_object_set_new(v, "wrapped", json_string(hex));
    }
    if (!w->rc && w->new_kek) {
        char *s = json_dumps(doc, JSON_COMPACT);
        char *id = str_dup(tenant);
        if (!s || !id || access_grow((void **)&w->writes, &w->cap, w->n, sizeof(*w->writes))) {
            free(s);
            free(id);
            w->rc = thaw_errf(w->err, THAW_ENOMEM, "out of memory");
        } else {
            w->writes[w->n++] = (struct store_doc_write){COLL_DEKS, id, s};
        }
    }
    json_decref(doc);
    return w->rc ? 1 : 0;
}

static void walk_free(struct dek_walk *w)
{
    for (size_t i = 0; i < w->n; i++) {
        free((char *)w->writes[i].id);
        free((char *)w->writes[i].json);
    }
    free(w->writes);
}

/* Reads the node secrets for kek32; see access_node_secrets. */
static int node_secrets(struct store *s, const unsigned char kek32[32],
                        const struct security_kek *kek, bool create, unsigned char sec[64],
                        struct thaw_err *err)
{
    char *doc_s = NULL;
    int rc = store_doc_get(s, COLL_KEK, "node", &doc_s, NULL);
    if (rc == 0) {
        rc = open_node_doc(doc_s, kek, sec, err);
        free(doc_s);
        return rc == THAW_EDENIED ? wrong_kek(err, "") : rc;
    }
    /* No document yet: a new data dir, or one from before it existed. Its
     * data keys tell whether this KEK is the one they were wrapped under. */
    struct dek_walk w = {.old_kek = kek, .err = err};
    rc = store_doc_list(s, COLL_DEKS, dek_cb, &w, err);
    if (w.rc) rc = w.rc;
    if (rc) return rc == THAW_EDENIED ? wrong_kek(err, "") : rc;
    legacy_secrets(kek32, sec, sec + 32);
    if (!create) return 0;
    char *doc = make_node_doc(kek, sec, err);
    rc = doc ? store_doc_put(s, COLL_KEK, "node", doc, err) : THAW_ENOMEM;
    free(doc);
    return rc;
}

int access_node_secrets(struct store *s, const unsigned char kek32[32], bool create,
                        unsigned char pepper[32], unsigned char audit_key[32], struct thaw_err *err)
{
    struct security_kek *kek = NULL;
    int rc = make_kek(kek32, &kek, err);
    unsigned char sec[64];
    if (!rc) rc = node_secrets(s, kek32, kek, create, sec, err);
    if (!rc) {
        memcpy(pepper, sec, 32);
        memcpy(audit_key, sec + 32, 32);
    }
    sodium_memzero(sec, sizeof(sec));
    security_kek_free(kek);
    return rc;
}

int access_rewrap(struct store *s, const unsigned char old32[32], const unsigned char new32[32],
                  size_t *n_keys, struct thaw_err *err)
{
    if (sodium_memcmp(old32, new32, 32) == 0)
        return thaw_errf(err, THAW_EINVAL, "the new key-encryption key is the same as the old one");
    struct security_kek *old_kek = NULL, *new_kek = NULL;
    unsigned char sec[64];
    int rc = make_kek(old32, &old_kek, err);
    if (!rc) rc = make_kek(new32, &new_kek, err);
    /* The pepper and audit key do not change (API key hashes and the audit
     * chain stay valid); they move under the new KEK with the data keys. */
    if (!rc) {
        rc = node_secrets(s, old32, old_kek, false, sec, err);
        if (rc == THAW_EDENIED && node_secrets(s, new32, new_kek, false, sec, NULL) == 0)
            rc = thaw_errf(err, THAW_EDENIED,
                           "the old key-encryption key does not open this data dir, the new one "
                           "does: it was already rewrapped");
        else if (rc == THAW_EDENIED)
            rc = wrong_kek(err, "old ");
    }
    struct dek_walk w = {.old_kek = old_kek, .new_kek = new_kek, .err = err};
    if (!rc) rc = store_doc_list(s, COLL_DEKS, dek_cb, &w, err);
    if (!rc && w.rc) rc = w.rc == THAW_EDENIED ? wrong_kek(err, "old ") : w.rc;
    char *node_doc = rc ? NULL : make_node_doc(new_kek, sec, err);
    if (!rc && !node_doc) rc = err && err->code ? err->code : THAW_ENOMEM;
    if (!rc && access_grow((void **)&w.writes, &w.cap, w.n, sizeof(*w.writes)))
        rc = thaw_errf(err, THAW_ENOMEM, "out of memory");
    if (!rc) {
        w.writes[w.n++] = (struct store_doc_write){COLL_KEK, str_dup("node"), node_doc};
        node_doc = NULL;
        /* One transaction: a crash leaves every key under the old KEK or
         * every key under the new one. */
        rc = store_doc_put_all(s, w.writes, w.n, err);
    }
    free(node_doc);
    if (!rc && n_keys) *n_keys = w.keys;
    walk_free(&w);
    sodium_memzero(sec, sizeof(sec));
    security_kek_free(old_kek);
    security_kek_free(new_kek);
    return rc;
}
