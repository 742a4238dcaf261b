/* One-time libsodium initialisation and parsing of 32-byte secrets (KEK,
 * pepper) from the text an operator puts in a file or environment variable. */
#include "security/security.h"

#include <pthread.h>
#include <sodium.h>
#include <string.h>

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc;

static void init_sodium(void)
{
    init_rc = sodium_init() < 0 ? THAW_EUNSUPPORTED : 0;
}

int security_init(void)
{
    pthread_once(&init_once, init_sodium);
    return init_rc;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int all_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789abcdefABCDEF", s[i]) || !s[i]) return 0;
    return 1;
}

/* Base64 in any of the four libsodium variants; only exactly 32 bytes out
 * counts. */
static int try_base64(const char *s, size_t n, unsigned char out[32])
{
    static const int variants[] = {
        sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
        sodium_base64_VARIANT_URLSAFE, sodium_base64_VARIANT_URLSAFE_NO_PADDING};
    for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
        size_t got = 0;
        const char *end = NULL;
        if (sodium_base642bin(out, 32, s, n, NULL, &got, &end, variants[v]) == 0 && end == s + n &&
            got == 32)
            return 1;
    }
    return 0;
}

int security_secret32_parse(const char *text, size_t len, unsigned char out[32],
                            struct thaw_err *err)
{
    if (security_init()) return thaw_errf(err, THAW_EUNSUPPORTED, "libsodium failed to start");
    if (!text) return thaw_errf(err, THAW_EINVAL, "key is missing");
    while (len && is_space(text[0]))
        text++, len--;
    while (len && is_space(text[len - 1]))
        len--;
    if (len == 0) return thaw_errf(err, THAW_EINVAL, "key is empty");
    if (len == 64 && all_hex(text, len)) {
        if (sodium_hex2bin(out, 32, text, len, NULL, NULL, NULL) == 0) return 0;
    }
    if (len >= 43 && len <= 44 && try_base64(text, len, out)) return 0;
    sodium_memzero(out, 32);
    if (all_hex(text, len))
        return thaw_errf(err, THAW_EINVAL,
                         "key has %zu hex digits; expected 64 (32 bytes), e.g. from "
                         "`openssl rand -hex 32`",
                         len);
    return thaw_errf(err, THAW_EINVAL,
                     "key is not 32 bytes written as 64 hex digits or base64 (%zu characters "
                     "given; base64 of 32 bytes is 43 or 44)",
                     len);
}
