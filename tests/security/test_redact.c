/* Tests for the PII redactor in src/security: positive and negative cases
 * per kind, counts, kind selection, UTF-8 safety, size bound and linear
 * time on hostile input. */
#include "security/security.h"
#include "test.h"

#include <time.h>

static int check_one(const char *in, const char *want, int line)
{
    struct buf out = {0};
    struct security_redact_counts c = {0};
    int n = security_redact(in, strlen(in), SECURITY_REDACT_ALL, &out, &c);
    int ok = n >= 0 && out.data && strcmp(out.data, want) == 0;
    if (!ok)
        fprintf(stderr, "  line %d: redact(\"%s\")\n    got  \"%s\"\n    want \"%s\"\n", line, in,
                out.data ? out.data : "(null)", want);
    if (out.len > security_redact_bound(strlen(in))) {
        fprintf(stderr, "  line %d: output over the bound\n", line);
        ok = 0;
    }
    buf_free(&out);
    return ok;
}

#define SAME(s)    ASSERT(check_one(s, s, __LINE__))
#define MASK(s, w) ASSERT(check_one(s, w, __LINE__))

static void test_email(void)
{
    MASK("contact john.doe@example.com now", "contact [EMAIL] now");
    MASK("a@b.co", "[EMAIL]");
    MASK("<jane+tag@mail.example.org>", "<[EMAIL]>");
    MASK("mailto:x_y%z@sub-domain.example.co.uk.", "mailto:[EMAIL].");
    MASK("email=alice@example.com&x=1", "email=[EMAIL]&x=1");
    MASK("jos\xc3\xa9@exampl\xc3\xa9.com", "[EMAIL]");
    MASK("\"bob@example.com\",\"carol@example.net\"", "\"[EMAIL]\",\"[EMAIL]\"");
    SAME("user@localhost");
    SAME("@example.com");
    SAME("user@");
    SAME("user@example.c");
    SAME("user@example.c0m");
    SAME("a@b@c.com");
    SAME("name @ example.com");
    SAME("user@.com");
    SAME("foo@bar..com");
}

static void test_phone(void)
{
    MASK("call +1 (415) 555-2671 today", "call [PHONE] today");
    MASK("+14155552671", "[PHONE]");
    MASK("+44 20 7946 0958", "[PHONE]");
    MASK("+44 (0)20 7946 0958.", "[PHONE].");
    MASK("+49-30-1234567", "[PHONE]");
    MASK("tel: (555) 123-4567", "tel: [PHONE]");
    MASK("555-123-4567", "[PHONE]");
    MASK("555.123.4567", "[PHONE]");
    MASK("020 7946 0958", "[PHONE]");
    MASK("06 12 34 56 78", "[PHONE]");
    MASK("0171 1234567", "[PHONE]");
    SAME("42");
    SAME("order 12345 shipped");
    SAME("555 1234");
    SAME("5551234567");
    SAME("2024-01-15");
    SAME("2024-01-15 10:30");
    SAME("between 100 200 300");
    SAME("1 2 3 4 5 6 7 8 9");
    SAME("+12");
    SAME("v1.2.3");
    SAME("1.234.567.890");
    SAME("+1234567890123456789");
    SAME("price 3.50-4.25");
}

static void test_card(void)
{
    MASK("card 4111 1111 1111 1111 exp", "card [CARD] exp");
    MASK("4111111111111111", "[CARD]");
    MASK("4111-1111-1111-1111", "[CARD]");
    MASK("5555555555554444,", "[CARD],");
    MASK("amex 378282246310005.", "amex [CARD].");
    MASK("6011111111111117", "[CARD]");
    MASK("4222222222222", "[CARD]");
    SAME("4111 1111 1111 1112"); /* Luhn fails */
    SAME("4111111111111112");
    SAME("1234567812345670");        /* Luhn ok, but no card starts with 1 */
    SAME("1700000000000");           /* a millisecond timestamp */
    SAME("41111111111111111111111"); /* too long */
    SAME("411111111111");            /* too short */
    SAME("4111111111111111.5");
    SAME("x4111111111111111");
    SAME("3.4111111111111111");
}

static void test_iban(void)
{
    MASK("IBAN DE89 3704 0044 0532 0130 00 please", "IBAN [IBAN] please");
    MASK("DE89370400440532013000", "[IBAN]");
    MASK("GB82 WEST 1234 5698 7654 32", "[IBAN]");
    MASK("to GB82WEST12345698765432.", "to [IBAN].");
    MASK("FR14 2004 1010 0505 0001 3M02 606", "[IBAN]");
    MASK("NL91 ABNA 0417 1643 00 EUR", "[IBAN] EUR");
    MASK("DE89 3704 0044 0532 0130 00 ABCD", "[IBAN] ABCD");
    SAME("DE88 3704 0044 0532 0130 00"); /* bad check digits */
    SAME("DE89370400440532013001");
    SAME("GB82");
    SAME("XX00 1234");
    SAME("de89370400440532013000");
}

static void test_ip(void)
{
    MASK("from 192.168.1.20:8080 ok", "from [IP]:8080 ok");
    MASK("10.0.0.1.", "[IP].");
    MASK("0.0.0.0/0", "[IP]/0");
    MASK("peer=255.255.255.255", "peer=[IP]");
    MASK("addr 2001:db8:85a3::8a2e:370:7334 x", "addr [IP] x");
    MASK("[::1]:443", "[[IP]]:443");
    MASK("fe80::1%eth0", "[IP]%eth0");
    MASK("2001:0db8:0000:0000:0000:ff00:0042:8329", "[IP]");
    MASK("::ffff:192.0.2.128", "[IP]");
    MASK("fe80::", "[IP]");
    SAME("256.1.1.1");
    SAME("1.2.3");
    SAME("01.2.3.4");
    SAME("1.2.3.4.5");
    SAME("version 1.2.3.4a");
    SAME("12:30:45");
    SAME("00:1a:2b:3c:4d:5e");
    SAME("std::vector");
    SAME("a:b");
    SAME("::");
    SAME("1::2::3");
    SAME("12345::1");
    SAME("1:2:3:4:5:6:7:8:9");
}

static void test_tokens(void)
{
    MASK("Authorization: Bearer abc.def-123_XYZ", "Authorization: Bearer [TOKEN]");
    MASK("authorization: Basic dXNlcjpwYXNz\nnext", "authorization: Basic [TOKEN]\nnext");
    MASK("Proxy-Authorization: Digest abc123", "Proxy-Authorization: Digest [TOKEN]");
    MASK("{\"Authorization\": \"Bearer eyJhbGciOi.J9\", \"n\": 1}",
         "{\"Authorization\": \"Bearer [TOKEN]\", \"n\": 1}");
    MASK("authorization=s3cr3t&next=1", "authorization=[TOKEN]&next=1");
    MASK("authorization=hunter two", "authorization=[TOKEN] two");
    MASK("Authorization:x", "Authorization:[TOKEN]");
    MASK("x-api-key: abcdef12345", "x-api-key: [TOKEN]");
    MASK("password=hunter2 ok", "password=[TOKEN] ok");
    MASK("used Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc for it", "used Bearer [TOKEN] for it");
    MASK("bearer ABCDEFGHIJKLMNOPQRSTUV", "bearer [TOKEN]");
    SAME("the bearer of bad news");
    SAME("bearer authentication");
    SAME("Bearer short1");
    SAME("authorizations are checked");
    SAME("Authorization:");
    SAME("no authorization needed");
}

static void test_thaw_keys(void)
{
    MASK("key thaw_0123456789abcdef_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq end",
         "key [THAW_KEY] end");
    MASK("Authorization: Bearer thaw_0123456789abcdef_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg-_x",
         "Authorization: Bearer [THAW_KEY]");
    MASK("Bearer thaw_0123456789abcdef_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg-_x.",
         "Bearer [THAW_KEY].");
    MASK("x_thaw_0123456789abcdef_abc", "x_[THAW_KEY]");
    SAME("thaw_0123456789abcdef_");
    SAME("thaw_0123456789ABCDEF_abc");
    SAME("thaw_serve");
}

/* Things common in logs that must survive untouched. */
static void test_log_noise(void)
{
    SAME("request 123e4567-e89b-12d3-a456-426614174000 done");
    SAME("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    SAME("at 2024-01-15T10:30:00.123Z took 1234567890 ns");
    SAME("GET /v1/deployments/summarize HTTP/1.1 200 in 12.5 ms");
    SAME("listening on port 8080, pid 4242, 16 threads");
    SAME("  File \"main.py\", line 1234, in <module>");
    SAME("tokens=4096 max_tokens=512 temperature=0.7 top_p=0.95");
    SAME("thaw_deployment_requests_total{code=\"200\"} 1024");
    SAME("v1.2.3.4 released");
    SAME("0x7ffd5e8a1b20 0xdeadbeef");
    SAME("weights 1.5 GiB, 32 layers, 4096 dims, 151936 vocab");
}

static void test_counts_and_kinds(void)
{
    const char *in = "mail a@b.co or c@d.io, ip 1.2.3.4, card 4111111111111111, "
                     "key thaw_0123456789abcdef_secretsecretsecret";
    struct buf out = {0};
    struct security_redact_counts c = {0};
    ASSERT_EQ(security_redact(in, strlen(in), SECURITY_REDACT_ALL, &out, &c), 5);
    ASSERT_EQ(c.n[SECURITY_REDACT_EMAIL], 2);
    ASSERT_EQ(c.n[SECURITY_REDACT_IP], 1);
    ASSERT_EQ(c.n[SECURITY_REDACT_CARD], 1);
    ASSERT_EQ(c.n[SECURITY_REDACT_THAW_KEY], 1);
    ASSERT_EQ(c.n[SECURITY_REDACT_PHONE], 0);
    /* Counts accumulate over calls. */
    buf_reset(&out);
    ASSERT_EQ(security_redact(in, strlen(in), SECURITY_REDACT_ALL, &out, &c), 5);
    ASSERT_EQ(c.n[SECURITY_REDACT_EMAIL], 4);
    /* Only the selected kinds are masked. */
    buf_reset(&out);
    ASSERT_EQ(security_redact(in, strlen(in), 1u << SECURITY_REDACT_IP, &out, NULL), 1);
    ASSERT_STR_EQ(out.data, "mail a@b.co or c@d.io, ip [IP], card 4111111111111111, "
                            "key thaw_0123456789abcdef_secretsecretsecret");
    buf_reset(&out);
    struct security_redact_counts c2 = {0};
    const char *auth = "Authorization: Bearer thaw_0123456789abcdef_secretsecretsecret";
    ASSERT_EQ(security_redact(auth, strlen(auth), 1u << SECURITY_REDACT_TOKEN, &out, &c2), 1);
    ASSERT_STR_EQ(out.data, "Authorization: Bearer [TOKEN]");
    ASSERT_EQ(c2.n[SECURITY_REDACT_TOKEN], 1);
    buf_reset(&out);
    ASSERT_EQ(security_redact(auth, strlen(auth), 1u << SECURITY_REDACT_THAW_KEY, &out, NULL), 1);
    ASSERT_STR_EQ(out.data, "Authorization: Bearer [THAW_KEY]");
    buf_reset(&out);
    ASSERT_EQ(security_redact(in, strlen(in), 0, &out, NULL), 0);
    ASSERT_STR_EQ(out.data, in);
    /* Appends after existing content; embedded NULs pass through. */
    buf_reset(&out);
    buf_append_str(&out, ">");
    ASSERT_EQ(security_redact("a\0b 1.2.3.4", 11, SECURITY_REDACT_ALL, &out, NULL), 1);
    ASSERT_EQ(out.len, 1 + 4 + 4);
    ASSERT(memcmp(out.data, ">a\0b [IP]", 9) == 0);
    buf_reset(&out);
    ASSERT_EQ(security_redact("", 0, SECURITY_REDACT_ALL, &out, NULL), 0);
    ASSERT_STR_EQ(out.data, "");
    ASSERT_STR_EQ(security_redact_kind_name(SECURITY_REDACT_THAW_KEY), "thaw_key");
    ASSERT_STR_EQ(security_redact_kind_name(99), "unknown");
    buf_free(&out);
}

/* Checks s[0..n) is valid UTF-8 (no overlongs or surrogates checked; what
 * matters here is that no sequence was cut). */
static int utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!k || i + k > n) return 0;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xc0) != 0x80) return 0;
        i += k;
    }
    return 1;
}

static void test_utf8(void)
{
    MASK("\xe2\x80\x9c"
         "a@b.co\xe2\x80\x9d",
         "\xe2\x80\x9c[EMAIL]\xe2\x80\x9d");
    MASK("\xe6\x97\xa5\xe6\x9c\xac 192.168.0.1\xe3\x80\x82",
         "\xe6\x97\xa5\xe6\x9c\xac [IP]\xe3\x80\x82");
    MASK("Bearer abcdefgh1\xc3\xa9", "Bearer [TOKEN]\xc3\xa9");
    MASK("Authorization: \xc3\xa9\xc3\xa9\xc3\xa9\n", "Authorization: [TOKEN]\n");
    SAME("caf\xc3\xa9 4111111111111111x");
    MASK("\xc2\xabjean@exemple.fr\xc2\xbb", "\xc2\xab[EMAIL]\xc2\xbb");
    MASK("\xe3\x83\xa1\xe3\x83\xbc\xe3\x83\xab\xef\xbc\x9a"
         "a@b.co\xe3\x80\x82",
         "\xe3\x83\xa1\xe3\x83\xbc\xe3\x83\xab\xef\xbc\x9a[EMAIL]\xe3\x80\x82");
    MASK("IP\xe2\x80\x94"
         "10.1.2.3\xe2\x80\xa6",
         "IP\xe2\x80\x94[IP]\xe2\x80\xa6");
    SAME("\xc3\xa9"
         "1.2.3.4");
    /* Random mixes of matchable ASCII and multibyte characters stay valid. */
    const char *pieces[] = {"\xc3\xa9",
                            "\xe2\x82\xac",
                            "\xf0\x9f\x98\x80",
                            "a@b.co",
                            " ",
                            "1.2.3.4",
                            "4111111111111111",
                            "Bearer ",
                            "abc123def",
                            ":",
                            "thaw_",
                            "+",
                            "0123456789abcdef_",
                            "@",
                            ".",
                            "-",
                            "DE89",
                            "(",
                            "\n",
                            "authorization:"};
    unsigned seed = 12345;
    for (int iter = 0; iter < 2000; iter++) {
        struct buf in = {0}, out = {0};
        int n = 1 + (int)(seed % 30);
        for (int k = 0; k < n; k++) {
            seed = seed * 1103515245u + 12345u;
            buf_append_str(&in, pieces[(seed >> 16) % ARRAY_LEN(pieces)]);
        }
        ASSERT(security_redact(in.data, in.len, SECURITY_REDACT_ALL, &out, NULL) >= 0);
        ASSERT(utf8_ok((const unsigned char *)out.data, out.len));
        ASSERT_CMP(out.len, <=, security_redact_bound(in.len));
        buf_free(&in);
        buf_free(&out);
    }
}

/* Hostile inputs that would make a backtracking matcher quadratic finish in
 * time proportional to their length. */
static void test_linear_time(void)
{
    const char *units[] = {"a.",      "1.",  "1:",    "a@",    "a@a.",
                           "4 ",      "+1 ", "DE89 ", "1111 ", "thaw_0123456789abcdef",
                           "Bearer ", "a",   "(1) "};
    size_t n = 200000;
    char *s = malloc(n + 1);
    for (size_t u = 0; u < ARRAY_LEN(units); u++) {
        size_t ul = strlen(units[u]);
        for (size_t i = 0; i < n; i++)
            s[i] = units[u][i % ul];
        s[n] = 0;
        struct buf out = {0};
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        ASSERT(security_redact(s, n, SECURITY_REDACT_ALL, &out, NULL) >= 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double sec = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        /* A quadratic scan of 200 KB would take tens of seconds; linear is
         * milliseconds. The bound is generous for sanitizer builds. */
        if (sec > 2.0) fprintf(stderr, "  unit \"%s\": %.3f s\n", units[u], sec);
        ASSERT(sec < 2.0);
        ASSERT_CMP(out.len, <=, security_redact_bound(n));
        buf_free(&out);
    }
    free(s);
}

int main(void)
{
    RUN(test_email);
    RUN(test_phone);
    RUN(test_card);
    RUN(test_iban);
    RUN(test_ip);
    RUN(test_tokens);
    RUN(test_thaw_keys);
    RUN(test_log_noise);
    RUN(test_counts_and_kinds);
    RUN(test_utf8);
    RUN(test_linear_time);
    return TEST_REPORT();
}
