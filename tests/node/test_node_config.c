/* Node configuration layers: flags over environment over file over defaults,
 * and errors that name the bad setting. */
#include "node/node.h"
#include "test.h"

#include <stdlib.h>
#include <unistd.h>

static char cfg_path[] = "/tmp/thaw-cfg-XXXXXX";

static void write_config(const char *text)
{
    FILE *f = fopen(cfg_path, "w");
    fputs(text, f);
    fclose(f);
}

static void test_defaults(void)
{
    struct node_config c;
    node_config_defaults(&c);
    struct thaw_err err = {0};
    char *argv[] = {"serve", NULL};
    unsetenv("THAW_LISTEN");
    ASSERT_EQ(node_config_load(&c, 1, argv, &err), 0);
    ASSERT_STR_EQ(c.host, "127.0.0.1");
    ASSERT_EQ(c.port, 8080);
    ASSERT_STR_EQ(c.data_dir, "./thaw-data");
    ASSERT_EQ(c.access_log, 1);
}

static void test_precedence(void)
{
    write_config("listen: 10.0.0.1:1000\ndata: /from/file\nthreads: 3\nlog_level: debug\n");
    setenv("THAW_LISTEN", "127.0.0.2:2000", 1);
    setenv("THAW_THREADS", "5", 1);
    struct node_config c;
    node_config_defaults(&c);
    struct thaw_err err = {0};
    char *argv[] = {"serve", "--config", cfg_path, "--threads", "7", "--drain-timeout=2s", NULL};
    ASSERT_EQ(node_config_load(&c, 6, argv, &err), 0);
    ASSERT_STR_EQ(c.data_dir, "/from/file"); /* file only */
    ASSERT_STR_EQ(c.log_level, "debug");
    ASSERT_STR_EQ(c.host, "127.0.0.2"); /* env over file */
    ASSERT_EQ(c.port, 2000);
    ASSERT_EQ(c.threads, 7); /* flag over env */
    ASSERT_EQ(c.drain_timeout_ms, 2000);
    unsetenv("THAW_LISTEN");
    unsetenv("THAW_THREADS");
}

static void expect_bad(int argc, char **argv, const char *needle)
{
    struct node_config c;
    node_config_defaults(&c);
    struct thaw_err err = {0};
    int rc = node_config_load(&c, argc, argv, &err);
    if (rc == 0 || !strstr(err.msg, needle)) {
        fprintf(stderr, "  FAIL: wanted error with '%s', got rc=%d '%s'\n", needle, rc, err.msg);
        test_cur_failed_ = 1;
    }
}

static void test_errors_name_the_setting(void)
{
    expect_bad(3, (char *[]){"serve", "--listen", "nope", NULL}, "flag --listen");
    expect_bad(3, (char *[]){"serve", "--listen", "h:99999", NULL}, "HOST:PORT");
    expect_bad(3, (char *[]){"serve", "--threads", "many", NULL}, "threads");
    expect_bad(3, (char *[]){"serve", "--bogus", "1", NULL}, "unknown setting 'bogus'");
    expect_bad(2, (char *[]){"serve", "--data", NULL}, "needs a value");
    expect_bad(2, (char *[]){"serve", "stray", NULL}, "unexpected argument");
    setenv("THAW_LOG_LEVEL", "loud", 1);
    expect_bad(1, (char *[]){"serve", NULL}, "THAW_LOG_LEVEL");
    unsetenv("THAW_LOG_LEVEL");
    write_config("listen: [unclosed\n");
    expect_bad(3, (char *[]){"serve", "--config", cfg_path, NULL}, "invalid YAML");
    write_config("colour: blue\n");
    expect_bad(3, (char *[]){"serve", "--config", cfg_path, NULL}, "unknown setting 'colour'");
    expect_bad(3, (char *[]){"serve", "--config", "/no/such/file.yaml", NULL},
               "cannot read config");
}

/* security: off only on loopback; anything else is refused by name. */
static void test_security_off_loopback_only(void)
{
    unsetenv("THAW_LISTEN");
    unsetenv("THAW_CONFIG");
    struct node_config c;
    node_config_defaults(&c);
    struct thaw_err err = {0};
    char *ok[] = {"serve", "--security", "off", "--listen", "127.0.0.1:9", NULL};
    ASSERT_EQ(node_config_load(&c, 5, ok, &err), 0);
    ASSERT_EQ(c.security_off, 1);
    node_config_defaults(&c);
    char *v6[] = {"serve", "--listen", "[::1]:9", "--security=off", NULL};
    ASSERT_EQ(node_config_load(&c, 4, v6, &err), 0);
    node_config_defaults(&c);
    char *wide[] = {"serve", "--security", "off", "--listen", ":9", NULL};
    ASSERT_EQ(node_config_load(&c, 5, wide, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "only allowed on a loopback address");
    node_config_defaults(&c);
    char *bad[] = {"serve", "--security", "maybe", NULL};
    ASSERT_EQ(node_config_load(&c, 3, bad, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "security must be on or off");
}

int main(void)
{
    int fd = mkstemp(cfg_path);
    close(fd);
    RUN(test_defaults);
    RUN(test_precedence);
    RUN(test_errors_name_the_setting);
    RUN(test_security_off_loopback_only);
    unlink(cfg_path);
    return TEST_REPORT();
}
