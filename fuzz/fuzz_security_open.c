/* libFuzzer target for the envelope-encryption parsers: arbitrary bytes as
 * sealed data or a wrapped data key must be refused cleanly (they can never
 * authenticate), and any input sealed as plaintext must open to itself. */
#include "security/security.h"

#include <stdlib.h>
#include <string.h>

static struct security_keyset *ks;
static struct security_kek *kek;

static void setup(void)
{
    static const char hex[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    unsigned char w[SECURITY_WRAPPED_DEK_LEN];
    if (security_kek_from_text(hex, sizeof(hex) - 1, 1, &kek, NULL) ||
        security_keyset_new("tenant", &ks, NULL) ||
        security_keyset_rotate(ks, kek, NULL, w, NULL) ||
        security_keyset_rotate(ks, kek, NULL, w, NULL))
        abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (!ks) setup();
    unsigned char *in = malloc(size ? size : 1); /* exact size for ASan */
    if (!in) return 0;
    memcpy(in, data, size);
    struct buf out = {0};
    struct thaw_err err = {0};
    uint32_t v = 0, kid = 0;
    if (security_keyset_open(ks, "p", "r", in, size, &out, &err) == 0) abort();
    if (out.len != 0) abort();
    security_sealed_version(in, size, &v, &err);
    struct security_dek *d = NULL;
    security_wrapped_info(in, size, &kid, &v, &err);
    if (security_dek_unwrap(kek, "tenant", in, size, &d, &err) == 0) abort();
    struct buf ct = {0};
    if (security_keyset_seal(ks, "p", "r", in, size, &ct, &err) != 0) abort();
    if (security_keyset_open(ks, "p", "r", ct.data, ct.len, &out, &err) != 0) abort();
    if (out.len != size || (size && memcmp(out.data, in, size) != 0)) abort();
    buf_free(&ct);
    buf_free(&out);
    free(in);
    return 0;
}
