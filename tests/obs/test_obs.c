/* Unit tests for src/obs: JSON log lines and Prometheus rendering. */
#include "obs/obs.h"
#include "test.h"

#include <jansson.h>
#include <unistd.h>

static void test_log_line_is_json(void)
{
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    obs_log_set_fd(fds[1]);
    OBS_LOG(LOG_INFO, "request", LOG_S("rid", "abc\"\n"), LOG_I("status", 200), LOG_D("ms", 1.5),
            LOG_S("none", NULL));
    OBS_LOG(LOG_DEBUG, "hidden", LOG_I("x", 1));
    obs_log_set_fd(2);
    close(fds[1]);
    char line[4096];
    ssize_t n = read(fds[0], line, sizeof(line) - 1);
    close(fds[0]);
    ASSERT_CMP(n, >, 0);
    line[n] = 0;
    ASSERT_EQ(line[n - 1], '\n');
    ASSERT(strchr(line, '\n') == line + n - 1); /* debug line filtered out */
    json_error_t jerr;
    json_t *j = json_loads(line, 0, &jerr);
    ASSERT(j != NULL);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "event")), "request");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "rid")), "abc\"\n");
    ASSERT_EQ(json_integer_value(json_object_get(j, "status")), 200);
    ASSERT(json_is_null(json_object_get(j, "none")));
    json_decref(j);
}

static void test_metrics_render(void)
{
    const char *labels[] = {"deployment", "code", NULL};
    struct metric_family *c =
        obs_metric_family("t_requests_total", "Requests.", METRIC_COUNTER, labels, NULL, 0);
    struct metric_series *s = obs_metric_series(c, (const char *[]){"echo", "200"});
    ASSERT(s == obs_metric_series(c, (const char *[]){"echo", "200"}));
    obs_metric_add(s, 1);
    obs_metric_add(s, 2);
    double bounds[] = {0.1, 1};
    const char *hl[] = {"deployment", NULL};
    struct metric_family *h =
        obs_metric_family("t_seconds", "Latency.", METRIC_HISTOGRAM, hl, bounds, 2);
    struct metric_series *hs = obs_metric_series(h, (const char *[]){"echo"});
    obs_metric_observe(hs, 0.05);
    obs_metric_observe(hs, 0.5);
    obs_metric_observe(hs, 5);
    struct buf out = {0};
    ASSERT_EQ(obs_metrics_render(&out), 0);
    ASSERT_CONTAINS(out.data, "# TYPE t_requests_total counter\n");
    ASSERT_CONTAINS(out.data, "t_requests_total{deployment=\"echo\",code=\"200\"} 3\n");
    ASSERT_CONTAINS(out.data, "t_seconds_bucket{deployment=\"echo\",le=\"0.1\"} 1\n");
    ASSERT_CONTAINS(out.data, "t_seconds_bucket{deployment=\"echo\",le=\"1\"} 2\n");
    ASSERT_CONTAINS(out.data, "t_seconds_bucket{deployment=\"echo\",le=\"+Inf\"} 3\n");
    ASSERT_CONTAINS(out.data, "t_seconds_count{deployment=\"echo\"} 3\n");
    obs_metric_drop(c, "echo");
    buf_reset(&out);
    obs_metrics_render(&out);
    ASSERT(strstr(out.data, "t_requests_total{") == NULL);
    buf_free(&out);
    obs_metrics_reset();
}

int main(void)
{
    RUN(test_log_line_is_json);
    RUN(test_metrics_render);
    return TEST_REPORT();
}
