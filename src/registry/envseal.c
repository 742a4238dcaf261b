/* Sealed env values: manifests carry secrets (tokens, passwords) in env, so
 * what the store keeps of a spec has each env value sealed by the caller's
 * sealer (the owning tenant's data key) as REGISTRY_SEALED_PREFIX + base64.
 * Digests are taken of the plain spec before sealing, so the same manifest
 * is still the same version; sealing uses a fresh nonce each time. */
#include "registry/registry.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING

bool registry_env_value_sealed(const char *v)
{
    return v && strncmp(v, REGISTRY_SEALED_PREFIX, strlen(REGISTRY_SEALED_PREFIX)) == 0;
}

/* Each value is bound to its deployment and variable, so a sealed value
 * copied into another deployment or variable does not open. */
static int env_purpose(struct buf *p, const char *deployment, const char *key)
{
    buf_reset(p);
    return buf_printf(p, "deployment.env/%s/%s", deployment, key);
}

int registry_env_seal(const struct registry_sealer *s, const char *owner, json_t *spec,
                      struct thaw_err *err)
{
    json_t *env = json_object_get(spec, "env");
    if (!s || !json_object_size(env)) return 0;
    const char *name = json_string_value(json_object_get(spec, "name"));
    if (!name || !owner || !*owner)
        return thaw_errf(err, THAW_EINVAL, "cannot seal env values without a name and an owner");
    struct buf purpose = {0}, sealed = {0}, out = {0};
    int rc = 0;
    const char *k;
    json_t *v;
    /* Replacing the value of an existing key does not disturb the walk. */
    json_object_foreach(env, k, v)
    {
        const char *pt = json_string_value(v);
        if (!pt) continue; /* the canonical form has strings only */
        buf_reset(&sealed);
        buf_reset(&out);
        if (env_purpose(&purpose, name, k)) rc = thaw_errf(err, THAW_ENOMEM, "out of memory");
        if (!rc) rc = s->seal(s->ctx, owner, purpose.data, pt, json_string_length(v), &sealed, err);
        size_t cap = sodium_base64_encoded_len(sealed.len, B64);
        if (!rc && (buf_append_str(&out, REGISTRY_SEALED_PREFIX) || buf_reserve(&out, cap)))
            rc = thaw_errf(err, THAW_ENOMEM, "out of memory");
        if (rc) break;
        sodium_bin2base64(out.data + out.len, cap, (const unsigned char *)sealed.data, sealed.len,
                          B64);
        if (json_object_set_new(env, k, json_string(out.data))) {
            rc = thaw_errf(err, THAW_ENOMEM, "out of memory");
            break;
        }
    }
    buf_free(&purpose);
    buf_free(&sealed);
    buf_free(&out);
    return rc;
}

int registry_env_open(const struct registry_sealer *s, json_t *spec, bool reveal,
                      struct thaw_err *err)
{
    json_t *env = json_object_get(spec, "env");
    if (!json_object_size(env)) return 0;
    const char *name = json_string_value(json_object_get(spec, "name"));
    struct buf purpose = {0}, pt = {0};
    unsigned char *bin = NULL;
    int rc = 0;
    const char *k;
    json_t *v;
    json_object_foreach(env, k, v)
    {
        const char *sv = json_string_value(v);
        if (!registry_env_value_sealed(sv)) continue; /* stored before sealing existed */
        if (!reveal) {
            if (json_object_set_new(env, k, json_string("(hidden)")))
                rc = thaw_errf(err, THAW_ENOMEM, "out of memory");
            if (rc) break;
            continue;
        }
        if (!s || !name) {
            rc = thaw_errf(err, THAW_ESTATE, "env.%s is sealed and there is no key to open it", k);
            break;
        }
        const char *b64 = sv + strlen(REGISTRY_SEALED_PREFIX);
        size_t b64_len = strlen(b64), bin_len = 0;
        free(bin);
        bin = malloc(b64_len + 1);
        buf_reset(&pt);
        if (!bin || env_purpose(&purpose, name, k)) {
            rc = thaw_errf(err, THAW_ENOMEM, "out of memory");
            break;
        }
        if (sodium_base642bin(bin, b64_len + 1, b64, b64_len, NULL, &bin_len, NULL, B64)) {
            rc = thaw_errf(err, THAW_EFORMAT, "the sealed value of env.%s is damaged", k);
            break;
        }
        rc = s->open(s->ctx, purpose.data, bin, bin_len, &pt, err);
        if (!rc && json_object_set_new(env, k, json_stringn(pt.data ? pt.data : "", pt.len)))
            rc = thaw_errf(err, THAW_ENOMEM, "out of memory");
        if (pt.data) sodium_memzero(pt.data, pt.len);
        if (rc) break;
    }
    if (rc) {
        /* Never half-opened: whatever was opened is hidden again. */
        json_object_foreach(env, k, v) json_object_set_new(env, k, json_string("(hidden)"));
    }
    free(bin);
    buf_free(&purpose);
    buf_free(&pt);
    return rc;
}
