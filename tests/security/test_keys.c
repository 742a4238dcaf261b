/* Tests for API keys (generate, parse, hash, verify), scopes and 32-byte
 * secret parsing in src/security. */
#include "security/security.h"
#include "test.h"

#include <sodium.h>

static const unsigned char pepper[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};

static void test_generate_and_parse(void)
{
    char key[SECURITY_KEY_STR_SIZE], id[SECURITY_KEY_ID_LEN + 1];
    ASSERT_EQ(security_apikey_generate(key, id, NULL), 0);
    ASSERT_EQ(strlen(key), SECURITY_KEY_STR_SIZE - 1);
    ASSERT_EQ(strncmp(key, "thaw_", 5), 0);
    struct security_apikey k;
    struct thaw_err err = {0};
    ASSERT_EQ(security_apikey_parse(key, strlen(key), &k, &err), 0);
    ASSERT_STR_EQ(k.id, id);
    ASSERT_EQ(k.secret_len, SECURITY_KEY_SECRET_LEN);
    ASSERT(k.secret == key + 22);
    char key2[SECURITY_KEY_STR_SIZE];
    ASSERT_EQ(security_apikey_generate(key2, NULL, NULL), 0);
    ASSERT(strcmp(key, key2) != 0);
}

static void test_hash_verify(void)
{
    char key[SECURITY_KEY_STR_SIZE];
    ASSERT_EQ(security_apikey_generate(key, NULL, NULL), 0);
    struct security_apikey k;
    ASSERT_EQ(security_apikey_parse(key, strlen(key), &k, NULL), 0);
    unsigned char h[32], h2[32];
    ASSERT_EQ(security_apikey_hash(pepper, &k, h), 0);
    ASSERT_EQ(security_apikey_verify(pepper, &k, h), 0);
    /* A different pepper gives a different hash. */
    unsigned char pepper2[32] = {9};
    ASSERT_EQ(security_apikey_hash(pepper2, &k, h2), 0);
    ASSERT(memcmp(h, h2, 32) != 0);
    ASSERT_EQ(security_apikey_verify(pepper2, &k, h), THAW_EDENIED);
    /* One changed secret character fails. */
    char bad[SECURITY_KEY_STR_SIZE];
    memcpy(bad, key, sizeof(bad));
    bad[30] = bad[30] == 'A' ? 'B' : 'A';
    struct security_apikey kb;
    ASSERT_EQ(security_apikey_parse(bad, strlen(bad), &kb, NULL), 0);
    ASSERT_EQ(security_apikey_verify(pepper, &kb, h), THAW_EDENIED);
    /* Same secret under another id fails: the id is bound into the hash. */
    memcpy(bad, key, sizeof(bad));
    bad[5] = bad[5] == '0' ? '1' : '0';
    ASSERT_EQ(security_apikey_parse(bad, strlen(bad), &kb, NULL), 0);
    ASSERT_EQ(security_apikey_verify(pepper, &kb, h), THAW_EDENIED);
}

/* Each malformed key is rejected with a message containing `want`, and the
 * message never contains the secret part. */
static int check_bad(const char *s, size_t len, const char *want)
{
    struct security_apikey k;
    struct thaw_err err = {0};
    int rc = security_apikey_parse(s, len, &k, &err);
    if (rc != THAW_EINVAL) {
        fprintf(stderr, "  accepted: %.*s\n", (int)len, s);
        return 0;
    }
    if (!strstr(err.msg, want)) {
        fprintf(stderr, "  message for %.*s: %s (want %s)\n", (int)len, s, err.msg, want);
        return 0;
    }
    if (strstr(err.msg, "ABCDEFGHIJKLMNOP")) {
        fprintf(stderr, "  message echoes the secret: %s\n", err.msg);
        return 0;
    }
    return 1;
}

#define SECRET "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq"

static void test_parse_errors(void)
{
    ASSERT(check_bad("", 0, "empty"));
    ASSERT(check_bad(NULL, 0, "empty"));
    ASSERT(check_bad("thaw", 4, "does not start"));
    ASSERT(check_bad("tha_0123456789abcdef_" SECRET, 64, "does not start"));
    ASSERT(check_bad("THAW_0123456789abcdef_" SECRET, 65, "lowercase"));
    ASSERT(check_bad("Bearer thaw_0123456789abcdef_" SECRET, 72, "Bearer"));
    ASSERT(check_bad(" thaw_0123456789abcdef_" SECRET, 66, "whitespace"));
    ASSERT(check_bad("thaw_", 5, "id has 0"));
    ASSERT(check_bad("thaw_0123", 9, "id has 4"));
    ASSERT(check_bad("thaw_0123456789abcde_" SECRET, 64, "id has 15"));
    ASSERT(check_bad("thaw_0123456789abcdef0_" SECRET, 66, "more than 16"));
    ASSERT(check_bad("thaw_0123456789ABCDEF_" SECRET, 65, "uppercase"));
    ASSERT(check_bad("thaw_0123456789abcdeg_" SECRET, 65, "position 20"));
    ASSERT(check_bad("thaw_0123456789abcdef", 21, "no secret"));
    ASSERT(check_bad("thaw_0123456789abcdef_", 22, "too short"));
    ASSERT(check_bad("thaw_0123456789abcdef_ABCDEFGHIJKLMNOPQRSTUVWXYZabcde", 53, "too short"));
    ASSERT(check_bad("thaw_0123456789abcdef_" SECRET "=", 66, "padding"));
    ASSERT(check_bad("thaw_0123456789abcdef_" SECRET "\n", 66, "line break"));
    ASSERT(check_bad("thaw_0123456789abcdef_" SECRET " ", 66, "whitespace"));
    ASSERT(check_bad("thaw_0123456789abcdef_ABCDEFGHIJKLMNOP+RSTUVWXYZabcdefghijklmnopq", 65,
                     "standard base64"));
    ASSERT(check_bad("thaw_0123456789abcdef_ABCDEFGHIJKLMNOP\xc3\xa9RSTUVWXYZabcdefghijklmnopq", 66,
                     "non-ASCII"));
    char nul[65];
    memcpy(nul, "thaw_0123456789abcdef_" SECRET, 65);
    nul[40] = '\0';
    ASSERT(check_bad(nul, 65, "NUL"));
    char longk[300];
    memset(longk, 'A', sizeof(longk));
    memcpy(longk, "thaw_0123456789abcdef_", 22);
    ASSERT(check_bad(longk, 22 + 129, "too long"));
    ASSERT(check_bad(longk, sizeof(longk), "too long"));
    /* The boundaries are accepted. */
    struct security_apikey k;
    ASSERT_EQ(security_apikey_parse(longk, 22 + 128, &k, NULL), 0);
    ASSERT_EQ(security_apikey_parse(longk, 22 + 32, &k, NULL), 0);
    ASSERT_EQ(k.secret_len, 32);
    /* '_' and '-' are secret characters: the id is fixed-width. */
    memset(longk + 22, '_', 40);
    longk[30] = '-';
    ASSERT_EQ(security_apikey_parse(longk, 62, &k, NULL), 0);
    ASSERT_EQ(k.secret_len, 40);
}

static void test_authorization_header(void)
{
    char key[SECURITY_KEY_STR_SIZE], hdr[128];
    ASSERT_EQ(security_apikey_generate(key, NULL, NULL), 0);
    struct security_apikey k;
    struct thaw_err err = {0};
    snprintf(hdr, sizeof(hdr), "Bearer %s", key);
    ASSERT_EQ(security_apikey_from_authorization(hdr, strlen(hdr), &k, &err), 0);
    ASSERT(k.secret == hdr + 7 + 22);
    snprintf(hdr, sizeof(hdr), "bearer   %s", key);
    ASSERT_EQ(security_apikey_from_authorization(hdr, strlen(hdr), &k, &err), 0);
    ASSERT_EQ(security_apikey_from_authorization("", 0, &k, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "missing");
    snprintf(hdr, sizeof(hdr), "Basic %s", key);
    ASSERT_EQ(security_apikey_from_authorization(hdr, strlen(hdr), &k, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "Bearer scheme (got \"Basic\")");
    ASSERT(!strstr(err.msg, key + 22));
    ASSERT_EQ(security_apikey_from_authorization(key, strlen(key), &k, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "Bearer scheme");
    ASSERT(!strstr(err.msg, key + 22));
    ASSERT_EQ(security_apikey_from_authorization("Bearer ", 7, &k, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "empty");
    snprintf(hdr, sizeof(hdr), "Bearer %s ", key);
    ASSERT_EQ(security_apikey_from_authorization(hdr, strlen(hdr), &k, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "whitespace");
}

static void test_scopes(void)
{
    unsigned m = 0;
    struct thaw_err err = {0};
    ASSERT_EQ(security_scopes_parse("invoke,read", &m, NULL), 0);
    ASSERT_EQ(m, SECURITY_SCOPE_INVOKE | SECURITY_SCOPE_READ);
    ASSERT_EQ(security_scopes_parse(" read , invoke ", &m, NULL), 0);
    ASSERT_EQ(m, SECURITY_SCOPE_INVOKE | SECURITY_SCOPE_READ);
    ASSERT_EQ(security_scopes_parse("[\"deploy\", \"admin\"]", &m, NULL), 0);
    ASSERT_EQ(m, SECURITY_SCOPE_DEPLOY | SECURITY_SCOPE_ADMIN);
    ASSERT_EQ(security_scopes_parse(" [ \"read\" ] ", &m, NULL), 0);
    ASSERT_EQ(m, SECURITY_SCOPE_READ);
    ASSERT_EQ(security_scopes_parse("", &m, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "empty");
    ASSERT_EQ(security_scopes_parse("[]", &m, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "empty");
    ASSERT_EQ(security_scopes_parse("read,,invoke", &m, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "empty item");
    ASSERT_EQ(security_scopes_parse("read,", &m, &err), THAW_EINVAL);
    ASSERT_EQ(security_scopes_parse("root", &m, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "unknown scope \"root\"");
    ASSERT_EQ(security_scopes_parse("Read", &m, &err), THAW_EINVAL);
    ASSERT_EQ(security_scopes_parse("read,read", &m, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "twice");
    ASSERT_EQ(security_scopes_parse("read invoke", &m, &err), THAW_EINVAL);
    ASSERT_EQ(security_scopes_parse("[\"read\"", &m, &err), THAW_EINVAL);
    ASSERT_EQ(security_scopes_parse("[\"read", &m, &err), THAW_EINVAL);
    ASSERT_EQ(security_scopes_parse("[read]", &m, &err), THAW_EINVAL);
    ASSERT_EQ(security_scopes_parse("[\"read\"] x", &m, &err), THAW_EINVAL);
    ASSERT_EQ(security_scopes_parse("[\"re\\u0061d\"]", &m, &err), THAW_EINVAL);

    char out[64];
    ASSERT_EQ(security_scopes_format(SECURITY_SCOPE_READ | SECURITY_SCOPE_INVOKE, false, out,
                                     sizeof(out)),
              11);
    ASSERT_STR_EQ(out, "invoke,read");
    ASSERT_EQ(security_scopes_format(SECURITY_SCOPE_ALL, true, out, sizeof(out)), 34);
    ASSERT_STR_EQ(out, "[\"admin\",\"deploy\",\"invoke\",\"read\"]");
    ASSERT_EQ(security_scopes_format(0, true, out, sizeof(out)), 2);
    ASSERT_STR_EQ(out, "[]");
    ASSERT_EQ(security_scopes_format(SECURITY_SCOPE_ALL, false, out, 10), THAW_ERANGE);
    ASSERT_EQ(security_scopes_format(0x10, false, out, sizeof(out)), THAW_EINVAL);
    /* Round trip of every mask. */
    for (unsigned mask = 1; mask <= SECURITY_SCOPE_ALL; mask++) {
        ASSERT(security_scopes_format(mask, mask & 1, out, sizeof(out)) > 0);
        ASSERT_EQ(security_scopes_parse(out, &m, NULL), 0);
        ASSERT_EQ(m, mask);
    }

    ASSERT(
        security_scopes_allow(SECURITY_SCOPE_ADMIN, SECURITY_SCOPE_DEPLOY | SECURITY_SCOPE_READ));
    ASSERT(security_scopes_allow(SECURITY_SCOPE_ADMIN, SECURITY_SCOPE_INVOKE));
    ASSERT(security_scopes_allow(SECURITY_SCOPE_DEPLOY, SECURITY_SCOPE_READ));
    ASSERT(!security_scopes_allow(SECURITY_SCOPE_DEPLOY, SECURITY_SCOPE_INVOKE));
    ASSERT(!security_scopes_allow(SECURITY_SCOPE_INVOKE, SECURITY_SCOPE_READ));
    ASSERT(!security_scopes_allow(SECURITY_SCOPE_READ, SECURITY_SCOPE_INVOKE));
    ASSERT(!security_scopes_allow(SECURITY_SCOPE_READ, SECURITY_SCOPE_ADMIN));
    ASSERT(
        !security_scopes_allow(SECURITY_SCOPE_ALL & ~SECURITY_SCOPE_ADMIN, SECURITY_SCOPE_ADMIN));
    ASSERT(security_scopes_allow(SECURITY_SCOPE_INVOKE | SECURITY_SCOPE_READ,
                                 SECURITY_SCOPE_INVOKE | SECURITY_SCOPE_READ));
    ASSERT(!security_scopes_allow(0, SECURITY_SCOPE_READ));
    ASSERT_EQ(security_scopes_effective(SECURITY_SCOPE_ADMIN), SECURITY_SCOPE_ALL);
}

static void test_secret32(void)
{
    unsigned char raw[32], out[32];
    for (int i = 0; i < 32; i++)
        raw[i] = (unsigned char)(i * 7 + 250);
    char hex[65], b64[45], b64u[45];
    sodium_bin2hex(hex, sizeof(hex), raw, 32);
    sodium_bin2base64(b64, sizeof(b64), raw, 32, sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(b64u, sizeof(b64u), raw, 32, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    struct thaw_err err = {0};
    ASSERT_EQ(security_secret32_parse(hex, 64, out, &err), 0);
    ASSERT(memcmp(out, raw, 32) == 0);
    ASSERT_EQ(security_secret32_parse(b64, strlen(b64), out, &err), 0);
    ASSERT(memcmp(out, raw, 32) == 0);
    ASSERT_EQ(security_secret32_parse(b64u, strlen(b64u), out, &err), 0);
    ASSERT(memcmp(out, raw, 32) == 0);
    char withnl[70];
    snprintf(withnl, sizeof(withnl), "  %s\n", hex);
    ASSERT_EQ(security_secret32_parse(withnl, strlen(withnl), out, &err), 0);
    ASSERT(memcmp(out, raw, 32) == 0);
    /* Uppercase hex is fine too. */
    for (char *p = hex; *p; p++)
        if (*p >= 'a' && *p <= 'f') *p = (char)(*p - 32);
    ASSERT_EQ(security_secret32_parse(hex, 64, out, &err), 0);
    ASSERT(memcmp(out, raw, 32) == 0);

    ASSERT_EQ(security_secret32_parse("", 0, out, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "empty");
    ASSERT_EQ(security_secret32_parse(" \n", 2, out, &err), THAW_EINVAL);
    ASSERT_EQ(security_secret32_parse(hex, 62, out, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "62 hex digits");
    ASSERT_EQ(security_secret32_parse("00112233", 8, out, &err), THAW_EINVAL);
    char hex66[67];
    memset(hex66, 'a', 66);
    hex66[66] = 0;
    ASSERT_EQ(security_secret32_parse(hex66, 66, out, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "66 hex digits");
    ASSERT_EQ(security_secret32_parse("hunter2", 7, out, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "not 32 bytes");
    b64u[10] = '!';
    ASSERT_EQ(security_secret32_parse(b64u, strlen(b64u), out, &err), THAW_EINVAL);
    /* base64 of 31 or 33 bytes is refused. */
    char b31[60];
    sodium_bin2base64(b31, sizeof(b31), raw, 31, sodium_base64_VARIANT_ORIGINAL);
    ASSERT_EQ(security_secret32_parse(b31, strlen(b31), out, &err), THAW_EINVAL);
    sodium_bin2base64(b31, sizeof(b31), raw, 33, sodium_base64_VARIANT_ORIGINAL);
    ASSERT_EQ(security_secret32_parse(b31, strlen(b31), out, &err), THAW_EINVAL);
    hex[20] = 'g';
    ASSERT_EQ(security_secret32_parse(hex, 64, out, &err), THAW_EINVAL);
    /* An embedded NUL is not silently accepted. */
    char z[64];
    memset(z, '0', 64);
    z[5] = 0;
    ASSERT_EQ(security_secret32_parse(z, 64, out, &err), THAW_EINVAL);
}

int main(void)
{
    RUN(test_generate_and_parse);
    RUN(test_hash_verify);
    RUN(test_parse_errors);
    RUN(test_authorization_header);
    RUN(test_scopes);
    RUN(test_secret32);
    return TEST_REPORT();
}
