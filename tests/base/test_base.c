/* Unit tests for src/base: buffers, JSON string escaping, durations, ids. */
#include "base/base.h"
#include "test.h"

static void test_buf_append_and_printf(void)
{
    struct buf b = {0};
    ASSERT_EQ(buf_append_str(&b, "hello"), 0);
    ASSERT_EQ(buf_printf(&b, " %d %s", 42, "world"), 0);
    ASSERT_STR_EQ(b.data, "hello 42 world");
    char big[1000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    ASSERT_EQ(buf_printf(&b, "%s", big), 0);
    ASSERT_EQ(b.len, 14 + 999);
    buf_consume(&b, 6);
    ASSERT_EQ(b.len, 8 + 999);
    ASSERT_EQ(strncmp(b.data, "42 world", 8), 0);
    char *s = buf_steal(&b);
    ASSERT(s != NULL);
    ASSERT_EQ(b.len, 0);
    free(s);
    buf_free(&b);
}

static void test_json_string_escape(void)
{
    struct buf b = {0};
    const char in[] = "a\"b\\c\n\x01";
    ASSERT_EQ(buf_append_json_string(&b, in, sizeof(in) - 1), 0);
    ASSERT_STR_EQ(b.data, "\"a\\\"b\\\\c\\n\\u0001\"");
    buf_free(&b);
}

static void test_durations(void)
{
    int64_t ms = -1;
    ASSERT_EQ(parse_duration_ms("250ms", &ms), 0);
    ASSERT_EQ(ms, 250);
    ASSERT_EQ(parse_duration_ms("30s", &ms), 0);
    ASSERT_EQ(ms, 30000);
    ASSERT_EQ(parse_duration_ms("1.5", &ms), 0);
    ASSERT_EQ(ms, 1500);
    ASSERT_EQ(parse_duration_ms("5m", &ms), 0);
    ASSERT_EQ(ms, 300000);
    ASSERT_EQ(parse_duration_ms("1h", &ms), 0);
    ASSERT_EQ(ms, 3600000);
    ASSERT_EQ(parse_duration_ms("", &ms), THAW_EINVAL);
    ASSERT_EQ(parse_duration_ms("-1s", &ms), THAW_EINVAL);
    ASSERT_EQ(parse_duration_ms("10 parsecs", &ms), THAW_EINVAL);
    ASSERT_EQ(parse_duration_ms("nan", &ms), THAW_EINVAL);
    ASSERT_EQ(parse_duration_ms("1e300", &ms), THAW_EINVAL);
}

static void test_ids_differ(void)
{
    char a[33], b[33];
    random_hex_id(a);
    random_hex_id(b);
    ASSERT_EQ(strlen(a), 32);
    ASSERT(strcmp(a, b) != 0);
}

static void test_errf(void)
{
    struct thaw_err err = {0};
    ASSERT_EQ(thaw_errf(&err, THAW_EINVAL, "field %s", "name"), THAW_EINVAL);
    ASSERT_STR_EQ(err.msg, "field name");
    ASSERT_EQ(thaw_errf(NULL, THAW_EIO, "ignored"), THAW_EIO);
    ASSERT_STR_EQ(thaw_strerror(-2), "No such file or directory");
    ASSERT_STR_EQ(thaw_strerror(THAW_ETIMEOUT), "timed out");
}

int main(void)
{
    RUN(test_buf_append_and_printf);
    RUN(test_json_string_escape);
    RUN(test_durations);
    RUN(test_ids_differ);
    RUN(test_errf);
    return TEST_REPORT();
}
