/* Envelope encryption: KEK loading, per-tenant data keys wrapped by the KEK,
 * XChaCha20-Poly1305 sealing with tenant/purpose/record bound as associated
 * data, and versioned keysets for rotation. Formats are in security.h. */
#include "security/security.h"
#include "security/security_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_LEN      32
#define NONCE_LEN    crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_LEN      crypto_aead_xchacha20poly1305_ietf_ABYTES
#define FORMAT_V1    1
#define ALG_XCHACHA  1
#define WRAP_HDR_LEN 12
#define KEK_FILE_MAX 4096

struct security_kek {
    unsigned char key[KEY_LEN];
    uint32_t id;
};

struct security_dek {
    unsigned char key[KEY_LEN];
    uint32_t version;
};

_Static_assert(SECURITY_WRAPPED_DEK_LEN == WRAP_HDR_LEN + NONCE_LEN + KEY_LEN + TAG_LEN,
               "wrapped key layout");
_Static_assert(SECURITY_SEAL_HEADER_LEN == 8 + NONCE_LEN, "sealed header layout");

/* ------------------------------------------------------------------ KEK -- */

int security_kek_from_text(const char *text, size_t len, uint32_t id, struct security_kek **out,
                           struct thaw_err *err)
{
    struct security_kek *k = malloc(sizeof(*k));
    if (!k) return thaw_errf(err, THAW_ENOMEM, "out of memory for the KEK");
    int rc = security_secret32_parse(text, len, k->key, err);
    if (rc) {
        security_kek_free(k);
        return rc;
    }
    k->id = id;
    *out = k;
    return 0;
}

static int read_small_file(int fd, const char *path, char *data, size_t cap, size_t *len,
                           struct thaw_err *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return thaw_errf(err, -errno, "KEK file %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return thaw_errf(err, THAW_EINVAL, "KEK file %s is not a regular file", path);
    if (st.st_size > (off_t)cap)
        return thaw_errf(err, THAW_EINVAL,
                         "KEK file %s is too large (%lld bytes; a key is 64 hex "
                         "digits or 44 base64 characters)",
                         path, (long long)st.st_size);
    size_t n = 0;
    while (n < cap) {
        ssize_t r = read(fd, data + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return thaw_errf(err, -errno, "KEK file %s: %s", path, strerror(errno));
        if (r == 0) break;
        n += (size_t)r;
    }
    *len = n;
    return 0;
}

int security_kek_load_file(const char *path, uint32_t id, struct security_kek **out,
                           struct thaw_err *err)
{
    if (!path || !*path) return thaw_errf(err, THAW_EINVAL, "no KEK file given");
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return thaw_errf(err, -errno, "KEK file %s: %s", path, strerror(errno));
    char data[KEK_FILE_MAX];
    size_t len = 0;
    int rc = read_small_file(fd, path, data, sizeof(data), &len, err);
    close(fd);
    if (rc == 0) {
        struct thaw_err perr = {0};
        rc = security_kek_from_text(data, len, id, out, &perr);
        if (rc) thaw_errf(err, rc, "KEK file %s: %s", path, perr.msg);
    }
    sodium_memzero(data, sizeof(data));
    return rc;
}

int security_kek_from_env(const char *name, uint32_t id, struct security_kek **out,
                          struct thaw_err *err)
{
    const char *v = name ? getenv(name) : NULL;
    if (!v)
        return thaw_errf(err, THAW_ENOTFOUND, "environment variable %s is not set",
                         name ? name : "(null)");
    struct thaw_err perr = {0};
    int rc = security_kek_from_text(v, strlen(v), id, out, &perr);
    if (rc) thaw_errf(err, rc, "environment variable %s: %s", name, perr.msg);
    return rc;
}

uint32_t security_kek_id(const struct security_kek *kek)
{
    return kek->id;
}

void security_kek_free(struct security_kek *kek)
{
    if (!kek) return;
    sodium_memzero(kek, sizeof(*kek));
    free(kek);
}

/* ------------------------------------------------------------------ DEK -- */

int security_dek_generate(uint32_t version, struct security_dek **out, struct thaw_err *err)
{
    if (security_init()) return thaw_errf(err, THAW_EUNSUPPORTED, "libsodium failed to start");
    if (version == 0) return thaw_errf(err, THAW_EINVAL, "data key versions start at 1");
    struct security_dek *d = malloc(sizeof(*d));
    if (!d) return thaw_errf(err, THAW_ENOMEM, "out of memory for a data key");
    crypto_aead_xchacha20poly1305_ietf_keygen(d->key);
    d->version = version;
    *out = d;
    return 0;
}

uint32_t security_dek_version(const struct security_dek *dek)
{
    return dek->version;
}

void security_dek_free(struct security_dek *dek)
{
    if (!dek) return;
    sodium_memzero(dek, sizeof(*dek));
    free(dek);
}

/* Associated data = fixed header bytes, then length-prefixed strings. The
 * strings are fed through a small stack buffer when they fit and the heap
 * otherwise. */
struct ad_buf {
    unsigned char small[512];
    unsigned char *p;
    size_t len;
};

static int ad_build(struct ad_buf *ad, const unsigned char *hdr, size_t hdr_len,
                    const char *const *parts, size_t n_parts)
{
    size_t need = hdr_len;
    for (size_t i = 0; i < n_parts; i++) {
        size_t l = parts[i] ? strlen(parts[i]) : 0;
        if (l > UINT32_MAX) return THAW_ERANGE;
        need += 4 + l;
    }
    ad->p = need <= sizeof(ad->small) ? ad->small : malloc(need);
    if (!ad->p) return THAW_ENOMEM;
    memcpy(ad->p, hdr, hdr_len);
    size_t off = hdr_len;
    for (size_t i = 0; i < n_parts; i++) {
        size_t l = parts[i] ? strlen(parts[i]) : 0;
        sec_put_be32(ad->p + off, (uint32_t)l);
        if (l) memcpy(ad->p + off + 4, parts[i], l);
        off += 4 + l;
    }
    ad->len = need;
    return 0;
}

static void ad_free(struct ad_buf *ad)
{
    if (ad->p != ad->small) free(ad->p);
}

int security_wrapped_info(const unsigned char *wrapped, size_t len, uint32_t *kek_id,
                          uint32_t *dek_version, struct thaw_err *err)
{
    if (!wrapped || len != SECURITY_WRAPPED_DEK_LEN)
        return thaw_errf(err, THAW_EFORMAT, "wrapped data key has %zu bytes; expected %d", len,
                         SECURITY_WRAPPED_DEK_LEN);
    if (wrapped[0] != 't' || wrapped[1] != 'k')
        return thaw_errf(err, THAW_EFORMAT, "not a wrapped thaw data key (bad magic)");
    if (wrapped[2] != FORMAT_V1 || wrapped[3] != ALG_XCHACHA)
        return thaw_errf(err, THAW_EFORMAT, "wrapped data key has unknown format %u/%u", wrapped[2],
                         wrapped[3]);
    if (kek_id) *kek_id = sec_get_be32(wrapped + 4);
    if (dek_version) *dek_version = sec_get_be32(wrapped + 8);
    return 0;
}

int security_dek_wrap(const struct security_kek *kek, const struct security_dek *dek,
                      const char *tenant, unsigned char out[SECURITY_WRAPPED_DEK_LEN],
                      struct thaw_err *err)
{
    if (security_init()) return thaw_errf(err, THAW_EUNSUPPORTED, "libsodium failed to start");
    out[0] = 't';
    out[1] = 'k';
    out[2] = FORMAT_V1;
    out[3] = ALG_XCHACHA;
    sec_put_be32(out + 4, kek->id);
    sec_put_be32(out + 8, dek->version);
    unsigned char *nonce = out + WRAP_HDR_LEN;
    randombytes_buf(nonce, NONCE_LEN);
    struct ad_buf ad;
    const char *parts[] = {tenant};
    if (ad_build(&ad, out, WRAP_HDR_LEN, parts, 1))
        return thaw_errf(err, THAW_ENOMEM, "out of memory wrapping a data key");
    crypto_aead_xchacha20poly1305_ietf_encrypt(nonce + NONCE_LEN, NULL, dek->key, KEY_LEN, ad.p,
                                               ad.len, NULL, nonce, kek->key);
    ad_free(&ad);
    return 0;
}

int security_dek_unwrap(const struct security_kek *kek, const char *tenant,
                        const unsigned char *wrapped, size_t len, struct security_dek **out,
                        struct thaw_err *err)
{
    uint32_t kek_id = 0, version = 0;
    int rc = security_wrapped_info(wrapped, len, &kek_id, &version, err);
    if (rc) return rc;
    if (kek_id != kek->id)
        return thaw_errf(err, THAW_EINVAL, "data key is wrapped under KEK id %u, not %u", kek_id,
                         kek->id);
    if (version == 0) return thaw_errf(err, THAW_EFORMAT, "wrapped data key has version 0");
    struct security_dek *d = malloc(sizeof(*d));
    if (!d) return thaw_errf(err, THAW_ENOMEM, "out of memory for a data key");
    struct ad_buf ad;
    const char *parts[] = {tenant};
    if (ad_build(&ad, wrapped, WRAP_HDR_LEN, parts, 1)) {
        free(d);
        return thaw_errf(err, THAW_ENOMEM, "out of memory unwrapping a data key");
    }
    const unsigned char *nonce = wrapped + WRAP_HDR_LEN;
    int bad = crypto_aead_xchacha20poly1305_ietf_decrypt(
        d->key, NULL, NULL, nonce + NONCE_LEN, KEY_LEN + TAG_LEN, ad.p, ad.len, nonce, kek->key);
    ad_free(&ad);
    if (bad) {
        security_dek_free(d);
        return thaw_errf(err, THAW_EDENIED,
                         "data key version %u does not unwrap: wrong KEK, wrong tenant or "
                         "tampered bytes",
                         version);
    }
    d->version = version;
    *out = d;
    return 0;
}

int security_dek_rewrap(const struct security_kek *old_kek, const struct security_kek *new_kek,
                        const char *tenant, const unsigned char *in, size_t len,
                        unsigned char out[SECURITY_WRAPPED_DEK_LEN], struct thaw_err *err)
{
    struct security_dek *d = NULL;
    int rc = security_dek_unwrap(old_kek, tenant, in, len, &d, err);
    if (rc) return rc;
    rc = security_dek_wrap(new_kek, d, tenant, out, err);
    security_dek_free(d);
    return rc;
}

/* ------------------------------------------------------- seal and open -- */

static int seal_ad(struct ad_buf *ad, const unsigned char *hdr, const struct security_ad *a)
{
    const char *parts[] = {a ? a->tenant : NULL, a ? a->purpose : NULL, a ? a->record : NULL};
    return ad_build(ad, hdr, SECURITY_SEAL_HEADER_LEN, parts, 3);
}

int security_seal(const struct security_dek *dek, const struct security_ad *ad, const void *pt,
                  size_t len, struct buf *out, struct thaw_err *err)
{
    if (security_init()) return thaw_errf(err, THAW_EUNSUPPORTED, "libsodium failed to start");
    if (len > SIZE_MAX - SECURITY_SEAL_OVERHEAD - 1 ||
        len > crypto_aead_xchacha20poly1305_ietf_MESSAGEBYTES_MAX)
        return thaw_errf(err, THAW_ERANGE, "data too large to seal (%zu bytes)", len);
    if (buf_reserve(out, len + SECURITY_SEAL_OVERHEAD))
        return thaw_errf(err, THAW_ENOMEM, "out of memory sealing %zu bytes", len);
    unsigned char *hdr = (unsigned char *)out->data + out->len;
    hdr[0] = 't';
    hdr[1] = 's';
    hdr[2] = FORMAT_V1;
    hdr[3] = ALG_XCHACHA;
    sec_put_be32(hdr + 4, dek->version);
    randombytes_buf(hdr + 8, NONCE_LEN);
    struct ad_buf a;
    if (seal_ad(&a, hdr, ad)) return thaw_errf(err, THAW_ENOMEM, "out of memory sealing");
    crypto_aead_xchacha20poly1305_ietf_encrypt(hdr + SECURITY_SEAL_HEADER_LEN, NULL, pt, len, a.p,
                                               a.len, NULL, hdr + 8, dek->key);
    ad_free(&a);
    out->len += len + SECURITY_SEAL_OVERHEAD;
    out->data[out->len] = '\0';
    return 0;
}

static int parse_sealed(const unsigned char *c, size_t len, uint32_t *version, struct thaw_err *err)
{
    if (!c || len < SECURITY_SEAL_OVERHEAD)
        return thaw_errf(err, THAW_EFORMAT, "sealed data too short (%zu bytes; at least %d)", len,
                         SECURITY_SEAL_OVERHEAD);
    if (c[0] != 't' || c[1] != 's')
        return thaw_errf(err, THAW_EFORMAT, "not thaw sealed data (bad magic)");
    if (c[2] != FORMAT_V1 || c[3] != ALG_XCHACHA)
        return thaw_errf(err, THAW_EUNSUPPORTED, "sealed data has unknown format %u/%u", c[2],
                         c[3]);
    *version = sec_get_be32(c + 4);
    return 0;
}

int security_sealed_version(const void *ct, size_t len, uint32_t *dek_version, struct thaw_err *err)
{
    uint32_t v = 0;
    int rc = parse_sealed(ct, len, &v, err);
    if (rc) return rc == THAW_EUNSUPPORTED ? rc : THAW_EFORMAT;
    *dek_version = v;
    return 0;
}

int security_open(const struct security_dek *dek, const struct security_ad *ad, const void *ct,
                  size_t len, struct buf *out, struct thaw_err *err)
{
    if (security_init()) return thaw_errf(err, THAW_EUNSUPPORTED, "libsodium failed to start");
    const unsigned char *c = ct;
    uint32_t version = 0;
    int rc = parse_sealed(c, len, &version, err);
    if (rc) return rc;
    if (version != dek->version)
        return thaw_errf(err, THAW_EINVAL, "sealed under data key version %u, not %u", version,
                         dek->version);
    size_t pt_len = len - SECURITY_SEAL_OVERHEAD;
    if (buf_reserve(out, pt_len)) return thaw_errf(err, THAW_ENOMEM, "out of memory opening");
    struct ad_buf a;
    if (seal_ad(&a, c, ad)) return thaw_errf(err, THAW_ENOMEM, "out of memory opening");
    unsigned char *dst = (unsigned char *)out->data + out->len;
    int bad = crypto_aead_xchacha20poly1305_ietf_decrypt(
        dst, NULL, NULL, c + SECURITY_SEAL_HEADER_LEN, len - SECURITY_SEAL_HEADER_LEN, a.p, a.len,
        c + 8, dek->key);
    ad_free(&a);
    if (bad) {
        sodium_memzero(dst, pt_len);
        out->data[out->len] = '\0';
        return thaw_errf(err, THAW_EDENIED,
                         "sealed data does not open: tampered, wrong key, or another "
                         "tenant/purpose/record");
    }
    out->len += pt_len;
    out->data[out->len] = '\0';
    return 0;
}

/* --------------------------------------------------------------- keyset -- */

struct security_keyset {
    pthread_rwlock_t lock;
    char *tenant;
    struct security_dek **deks; /* sorted by version, ascending */
    size_t n_deks;
};

int security_keyset_new(const char *tenant, struct security_keyset **out, struct thaw_err *err)
{
    if (!tenant || !*tenant) return thaw_errf(err, THAW_EINVAL, "keyset needs a tenant id");
    struct security_keyset *ks = calloc(1, sizeof(*ks));
    if (!ks || !(ks->tenant = str_dup(tenant))) {
        free(ks);
        return thaw_errf(err, THAW_ENOMEM, "out of memory for a keyset");
    }
    pthread_rwlock_init(&ks->lock, NULL);
    *out = ks;
    return 0;
}

void security_keyset_free(struct security_keyset *ks)
{
    if (!ks) return;
    for (size_t i = 0; i < ks->n_deks; i++)
        security_dek_free(ks->deks[i]);
    free(ks->deks);
    free(ks->tenant);
    pthread_rwlock_destroy(&ks->lock);
    free(ks);
}

static struct security_dek *keyset_find(struct security_keyset *ks, uint32_t version)
{
    for (size_t i = ks->n_deks; i-- > 0;)
        if (ks->deks[i]->version == version) return ks->deks[i];
    return NULL;
}

/* Inserts keeping the array sorted; takes ownership of d on success. Called
 * with the write lock held. */
static int keyset_insert(struct security_keyset *ks, struct security_dek *d, struct thaw_err *err)
{
    if (keyset_find(ks, d->version))
        return thaw_errf(err, THAW_EEXIST, "data key version %u is already loaded", d->version);
    struct security_dek **n = realloc(ks->deks, (ks->n_deks + 1) * sizeof(*n));
    if (!n) return thaw_errf(err, THAW_ENOMEM, "out of memory adding a data key");
    ks->deks = n;
    size_t i = ks->n_deks;
    while (i > 0 && ks->deks[i - 1]->version > d->version) {
        ks->deks[i] = ks->deks[i - 1];
        i--;
    }
    ks->deks[i] = d;
    ks->n_deks++;
    return 0;
}

int security_keyset_add_wrapped(struct security_keyset *ks, const struct security_kek *kek,
                                const unsigned char *wrapped, size_t len, struct thaw_err *err)
{
    struct security_dek *d = NULL;
    int rc = security_dek_unwrap(kek, ks->tenant, wrapped, len, &d, err);
    if (rc) return rc;
    pthread_rwlock_wrlock(&ks->lock);
    rc = keyset_insert(ks, d, err);
    pthread_rwlock_unlock(&ks->lock);
    if (rc) security_dek_free(d);
    return rc;
}

int security_keyset_rotate(struct security_keyset *ks, const struct security_kek *kek,
                           uint32_t *out_version,
                           unsigned char out_wrapped[SECURITY_WRAPPED_DEK_LEN],
                           struct thaw_err *err)
{
    pthread_rwlock_wrlock(&ks->lock);
    uint32_t cur = ks->n_deks ? ks->deks[ks->n_deks - 1]->version : 0;
    struct security_dek *d = NULL;
    int rc = cur == UINT32_MAX ? thaw_errf(err, THAW_ERANGE, "data key versions exhausted")
                               : security_dek_generate(cur + 1, &d, err);
    if (rc == 0) rc = security_dek_wrap(kek, d, ks->tenant, out_wrapped, err);
    if (rc == 0) rc = keyset_insert(ks, d, err);
    pthread_rwlock_unlock(&ks->lock);
    if (rc) {
        security_dek_free(d);
        return rc;
    }
    if (out_version) *out_version = cur + 1;
    return 0;
}

uint32_t security_keyset_current(struct security_keyset *ks)
{
    pthread_rwlock_rdlock(&ks->lock);
    uint32_t v = ks->n_deks ? ks->deks[ks->n_deks - 1]->version : 0;
    pthread_rwlock_unlock(&ks->lock);
    return v;
}

int security_keyset_seal(struct security_keyset *ks, const char *purpose, const char *record,
                         const void *pt, size_t len, struct buf *out, struct thaw_err *err)
{
    struct security_ad ad = {ks->tenant, purpose, record};
    pthread_rwlock_rdlock(&ks->lock);
    int rc = ks->n_deks ? security_seal(ks->deks[ks->n_deks - 1], &ad, pt, len, out, err)
                        : thaw_errf(err, THAW_ESTATE, "tenant %s has no data key yet", ks->tenant);
    pthread_rwlock_unlock(&ks->lock);
    return rc;
}

int security_keyset_open(struct security_keyset *ks, const char *purpose, const char *record,
                         const void *ct, size_t len, struct buf *out, struct thaw_err *err)
{
    uint32_t version = 0;
    int rc = parse_sealed(ct, len, &version, err);
    if (rc) return rc;
    struct security_ad ad = {ks->tenant, purpose, record};
    pthread_rwlock_rdlock(&ks->lock);
    struct security_dek *d = keyset_find(ks, version);
    rc = d ? security_open(d, &ad, ct, len, out, err)
           : thaw_errf(err, THAW_ENOTFOUND, "data key version %u of tenant %s is not loaded",
                       version, ks->tenant);
    pthread_rwlock_unlock(&ks->lock);
    return rc;
}
