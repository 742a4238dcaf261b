/* libFuzzer target: API key and scope-list parsing must reject any bad input
 * with a message (never crash, never read out of bounds) and anything it
 * accepts must verify against its own hash. */
#include "security/security.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static const unsigned char pepper[SECURITY_PEPPER_LEN] = {42};
    struct security_apikey k;
    struct thaw_err err = {0};
    /* Exact-size heap copy so ASan catches any read past the end. */
    char *s = malloc(size ? size : 1);
    if (!s) return 0;
    memcpy(s, data, size);
    int rc = security_apikey_parse(s, size, &k, &err);
    if (rc == 0) {
        unsigned char h[SECURITY_KEY_HASH_LEN];
        if (k.secret < s || k.secret + k.secret_len != s + size) abort();
        if (strlen(k.id) != SECURITY_KEY_ID_LEN) abort();
        security_apikey_hash(pepper, &k, h);
        if (security_apikey_verify(pepper, &k, h) != 0) abort();
    } else if (rc != THAW_EINVAL || err.msg[0] == '\0') {
        abort();
    }
    /* The same bytes as an Authorization header value. */
    if (security_apikey_from_authorization(s, size, &k, &err) == 0 &&
        (k.secret < s || k.secret + k.secret_len != s + size))
        abort();
    free(s);

    char *z = malloc(size + 1);
    if (!z) return 0;
    memcpy(z, data, size);
    z[size] = '\0';
    unsigned mask = 0;
    if (security_scopes_parse(z, &mask, &err) == 0) {
        char out[64];
        if (mask == 0 || (mask & ~SECURITY_SCOPE_ALL)) abort();
        if (security_scopes_format(mask, false, out, sizeof(out)) <= 0) abort();
    }
    unsigned char secret[32];
    security_secret32_parse(z, size, secret, &err);
    free(z);
    return 0;
}
