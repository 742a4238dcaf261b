/* API keys (`thaw_<id>_<secret>`): generation, strict parsing, peppered
 * BLAKE2b hashing and constant-time verification; scope lists and the rule
 * of which scope implies which. */
#include "security/security.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define KEY_PREFIX     "thaw_"
#define KEY_PREFIX_LEN 5

int security_apikey_generate(char out[SECURITY_KEY_STR_SIZE], char out_id[SECURITY_KEY_ID_LEN + 1],
                             struct thaw_err *err)
{
    if (security_init()) return thaw_errf(err, THAW_EUNSUPPORTED, "libsodium failed to start");
    unsigned char id_raw[SECURITY_KEY_ID_LEN / 2], secret_raw[32];
    randombytes_buf(id_raw, sizeof(id_raw));
    randombytes_buf(secret_raw, sizeof(secret_raw));
    char *p = out;
    memcpy(p, KEY_PREFIX, KEY_PREFIX_LEN);
    p += KEY_PREFIX_LEN;
    sodium_bin2hex(p, SECURITY_KEY_ID_LEN + 1, id_raw, sizeof(id_raw));
    p += SECURITY_KEY_ID_LEN;
    *p++ = '_';
    sodium_bin2base64(p, SECURITY_KEY_SECRET_LEN + 1, secret_raw, sizeof(secret_raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(secret_raw, sizeof(secret_raw));
    if (out_id) {
        memcpy(out_id, out + KEY_PREFIX_LEN, SECURITY_KEY_ID_LEN);
        out_id[SECURITY_KEY_ID_LEN] = '\0';
    }
    return 0;
}

static int is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static int is_b64url(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* Names a byte for an error message without echoing secret material: only
 * the class of a bad character is shown. */
static const char *char_class(unsigned char c)
{
    if (c == ' ' || c == '\t') return "whitespace";
    if (c == '\r' || c == '\n') return "a line break";
    if (c == '\0') return "a NUL byte";
    if (c == '=') return "'=' (base64 padding is not used)";
    if (c == '+' || c == '/') return "standard base64 ('+' or '/'; keys use '-' and '_')";
    if (c >= 0x80) return "a non-ASCII byte";
    if (c < 0x20 || c == 0x7f) return "a control character";
    if (c >= 'A' && c <= 'Z') return "an uppercase letter";
    return "a punctuation character";
}

static int parse_prefix(const char *s, size_t len, struct thaw_err *err)
{
    if (len >= KEY_PREFIX_LEN && memcmp(s, KEY_PREFIX, KEY_PREFIX_LEN) == 0) return 0;
    if (len && (s[0] == ' ' || s[0] == '\t' || s[0] == '\r' || s[0] == '\n'))
        return thaw_errf(err, THAW_EINVAL, "API key starts with whitespace");
    if (len >= KEY_PREFIX_LEN && strncasecmp(s, KEY_PREFIX, KEY_PREFIX_LEN) == 0)
        return thaw_errf(err, THAW_EINVAL, "API key prefix must be lowercase \"thaw_\"");
    if (len >= 7 && strncasecmp(s, "bearer ", 7) == 0)
        return thaw_errf(err, THAW_EINVAL,
                         "API key includes the \"Bearer \" scheme; pass the key alone");
    return thaw_errf(err, THAW_EINVAL, "API key does not start with \"thaw_\"");
}

static int parse_id(const char *s, size_t len, struct security_apikey *out, struct thaw_err *err)
{
    size_t i = 0;
    while (i < len && i <= SECURITY_KEY_ID_LEN && s[i] != '_') {
        if (!is_lower_hex(s[i]))
            return thaw_errf(err, THAW_EINVAL,
                             "API key id has %s at position %zu; ids are 16 lowercase hex digits",
                             char_class((unsigned char)s[i]), KEY_PREFIX_LEN + i);
        i++;
    }
    if (i != SECURITY_KEY_ID_LEN)
        return thaw_errf(err, THAW_EINVAL, "API key id has %s%zu characters; expected 16",
                         i > SECURITY_KEY_ID_LEN ? "more than " : "", MIN(i, SECURITY_KEY_ID_LEN));
    if (i == len) return thaw_errf(err, THAW_EINVAL, "API key has no secret after its id");
    memcpy(out->id, s, SECURITY_KEY_ID_LEN);
    out->id[SECURITY_KEY_ID_LEN] = '\0';
    return 0;
}

static int parse_secret(const char *s, size_t len, size_t offset, struct thaw_err *err)
{
    for (size_t i = 0; i < len; i++) {
        if (!is_b64url(s[i]))
            return thaw_errf(err, THAW_EINVAL, "API key secret has %s at position %zu",
                             char_class((unsigned char)s[i]), offset + i);
    }
    if (len < SECURITY_KEY_SECRET_MIN)
        return thaw_errf(err, THAW_EINVAL,
                         "API key secret is too short (%zu characters; at least %d)", len,
                         SECURITY_KEY_SECRET_MIN);
    if (len > SECURITY_KEY_SECRET_MAX)
        return thaw_errf(err, THAW_EINVAL,
                         "API key secret is too long (%zu characters; at most %d)", len,
                         SECURITY_KEY_SECRET_MAX);
    return 0;
}

int security_apikey_parse(const char *s, size_t len, struct security_apikey *out,
                          struct thaw_err *err)
{
    if (!s || len == 0) return thaw_errf(err, THAW_EINVAL, "API key is empty");
    if (!out) return thaw_errf(err, THAW_EINVAL, "no place for the parsed key");
    if (len > KEY_PREFIX_LEN + SECURITY_KEY_ID_LEN + 1 + SECURITY_KEY_SECRET_MAX)
        return thaw_errf(err, THAW_EINVAL, "API key is too long (%zu bytes)", len);
    int rc = parse_prefix(s, len, err);
    if (rc) return rc;
    rc = parse_id(s + KEY_PREFIX_LEN, len - KEY_PREFIX_LEN, out, err);
    if (rc) return rc;
    size_t off = KEY_PREFIX_LEN + SECURITY_KEY_ID_LEN + 1;
    rc = parse_secret(s + off, len - off, off, err);
    if (rc) return rc;
    out->secret = s + off;
    out->secret_len = len - off;
    return 0;
}

int security_apikey_from_authorization(const char *header, size_t len, struct security_apikey *out,
                                       struct thaw_err *err)
{
    if (!header || len == 0) return thaw_errf(err, THAW_EINVAL, "missing Authorization header");
    if (len < 7 || strncasecmp(header, "bearer", 6) != 0 || header[6] != ' ') {
        size_t w = 0;
        while (w < len && w < 16 && header[w] != ' ' && (unsigned char)header[w] > 0x20 &&
               (unsigned char)header[w] < 0x7f)
            w++;
        return thaw_errf(err, THAW_EINVAL,
                         "Authorization must use the Bearer scheme (got \"%.*s\")", (int)w, header);
    }
    size_t p = 6;
    while (p < len && header[p] == ' ')
        p++;
    return security_apikey_parse(header + p, len - p, out, err);
}

int security_apikey_hash(const unsigned char pepper[SECURITY_PEPPER_LEN],
                         const struct security_apikey *key,
                         unsigned char out[SECURITY_KEY_HASH_LEN])
{
    if (security_init()) return THAW_EUNSUPPORTED;
    crypto_generichash_state st;
    crypto_generichash_init(&st, pepper, SECURITY_PEPPER_LEN, SECURITY_KEY_HASH_LEN);
    crypto_generichash_update(&st, (const unsigned char *)key->id, SECURITY_KEY_ID_LEN);
    crypto_generichash_update(&st, (const unsigned char *)key->secret, key->secret_len);
    crypto_generichash_final(&st, out, SECURITY_KEY_HASH_LEN);
    sodium_memzero(&st, sizeof(st));
    return 0;
}

int security_apikey_verify(const unsigned char pepper[SECURITY_PEPPER_LEN],
                           const struct security_apikey *key,
                           const unsigned char stored[SECURITY_KEY_HASH_LEN])
{
    unsigned char h[SECURITY_KEY_HASH_LEN];
    if (security_apikey_hash(pepper, key, h)) return THAW_EUNSUPPORTED;
    int same = sodium_memcmp(h, stored, SECURITY_KEY_HASH_LEN) == 0;
    sodium_memzero(h, sizeof(h));
    return same ? 0 : THAW_EDENIED;
}

/* ------------------------------------------------------------- scopes -- */

static const struct {
    const char *name;
    unsigned bit;
} scope_names[] = {
    {"admin", SECURITY_SCOPE_ADMIN},
    {"deploy", SECURITY_SCOPE_DEPLOY},
    {"invoke", SECURITY_SCOPE_INVOKE},
    {"read", SECURITY_SCOPE_READ},
};

static int scope_add(const char *name, size_t n, unsigned *mask, struct thaw_err *err)
{
    if (n == 0) return thaw_errf(err, THAW_EINVAL, "scope list has an empty item");
    for (size_t i = 0; i < sizeof(scope_names) / sizeof(scope_names[0]); i++) {
        if (strlen(scope_names[i].name) != n || memcmp(scope_names[i].name, name, n) != 0) continue;
        if (*mask & scope_names[i].bit)
            return thaw_errf(err, THAW_EINVAL, "scope \"%s\" is listed twice", scope_names[i].name);
        *mask |= scope_names[i].bit;
        return 0;
    }
    return thaw_errf(err, THAW_EINVAL,
                     "unknown scope \"%.*s\" (expected admin, deploy, invoke or read)",
                     (int)MIN(n, 32), name);
}

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* Grammar: '[' ws ( '"' name '"' ws ( ',' ws '"' name '"' ws )* )? ']' ws.
 * Scope names never need JSON escapes, so a backslash is an error. */
static int parse_json_scopes(const char *p, unsigned *mask, struct thaw_err *err)
{
    p = skip_ws(p + 1);
    if (*p == ']') return thaw_errf(err, THAW_EINVAL, "scope list is empty");
    for (;;) {
        if (*p != '"') return thaw_errf(err, THAW_EINVAL, "scope array items must be strings");
        const char *name = ++p;
        while (*p && *p != '"' && *p != '\\')
            p++;
        if (*p != '"') return thaw_errf(err, THAW_EINVAL, "scope array has an unterminated string");
        int rc = scope_add(name, (size_t)(p - name), mask, err);
        if (rc) return rc;
        p = skip_ws(p + 1);
        if (*p == ']') break;
        if (*p != ',') return thaw_errf(err, THAW_EINVAL, "scope array expects ',' or ']'");
        p = skip_ws(p + 1);
    }
    if (*skip_ws(p + 1)) return thaw_errf(err, THAW_EINVAL, "text after the scope array");
    return 0;
}

static int parse_csv_scopes(const char *p, unsigned *mask, struct thaw_err *err)
{
    for (;;) {
        p = skip_ws(p);
        const char *name = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            p++;
        int rc = scope_add(name, (size_t)(p - name), mask, err);
        if (rc) return rc;
        p = skip_ws(p);
        if (!*p) return 0;
        if (*p != ',')
            return thaw_errf(err, THAW_EINVAL, "scope list items must be comma-separated");
        p++;
    }
}

int security_scopes_parse(const char *s, unsigned *out, struct thaw_err *err)
{
    if (!s || !*skip_ws(s)) return thaw_errf(err, THAW_EINVAL, "scope list is empty");
    unsigned mask = 0;
    const char *p = skip_ws(s);
    int rc = *p == '[' ? parse_json_scopes(p, &mask, err) : parse_csv_scopes(p, &mask, err);
    if (rc) return rc;
    *out = mask;
    return 0;
}

int security_scopes_format(unsigned mask, bool json, char *out, size_t n)
{
    if (mask & ~SECURITY_SCOPE_ALL) return THAW_EINVAL;
    size_t len = 0;
    int first = 1;
    char tmp[64];
    tmp[0] = '\0';
    if (json) len += (size_t)snprintf(tmp + len, sizeof(tmp) - len, "[");
    for (size_t i = 0; i < sizeof(scope_names) / sizeof(scope_names[0]); i++) {
        if (!(mask & scope_names[i].bit)) continue;
        len += (size_t)snprintf(tmp + len, sizeof(tmp) - len, json ? "%s\"%s\"" : "%s%s",
                                first ? "" : ",", scope_names[i].name);
        first = 0;
    }
    if (json) len += (size_t)snprintf(tmp + len, sizeof(tmp) - len, "]");
    if (len + 1 > n) return THAW_ERANGE;
    memcpy(out, tmp, len + 1);
    return (int)len;
}

unsigned security_scopes_effective(unsigned mask)
{
    if (mask & SECURITY_SCOPE_ADMIN) mask |= SECURITY_SCOPE_ALL;
    if (mask & SECURITY_SCOPE_DEPLOY) mask |= SECURITY_SCOPE_READ;
    return mask & SECURITY_SCOPE_ALL;
}

bool security_scopes_allow(unsigned have, unsigned need)
{
    return (security_scopes_effective(have) & need) == need;
}
