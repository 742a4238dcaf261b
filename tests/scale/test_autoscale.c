/* The autoscaler's decision on its own: stable-window sizing, panic on
 * bursts (and no scale-down while panicking), idle_timeout, min and max. */
#include "scale/scale.h"
#include "test.h"

static struct deploy_scale cfg(void)
{
    return (struct deploy_scale){.min_instances = 0,
                                 .max_instances = 10,
                                 .idle_timeout_ms = 60000,
                                 .target_utilization = 0.5,
                                 .stable_window_ms = 60000,
                                 .panic_window_ms = 6000,
                                 .panic_threshold = 2.0};
}

static void test_stable_sizing(void)
{
    struct deploy_scale c = cfg();
    struct autoscale_memory m = {0};
    const char *why;
    /* concurrency 4 per instance at 50% target: 2 in flight per instance. */
    struct autoscale_input in = {.stable_avg = 5.0,
                                 .panic_avg = 5.0,
                                 .current = 3,
                                 .ready = 3,
                                 .now_ms = 1000000,
                                 .last_request_ms = 999000};
    ASSERT_EQ(autoscale_decide(&c, 4, &in, &m, &why), 3); /* ceil(5 / 2) */
    ASSERT(!m.panicking);
    in.stable_avg = in.panic_avg = 4.0;
    ASSERT_EQ(autoscale_decide(&c, 4, &in, &m, &why), 2);
    in.stable_avg = in.panic_avg = 100;
    in.current = in.ready = 20;
    ASSERT_EQ(autoscale_decide(&c, 4, &in, &m, &why), 10); /* max_instances */
    ASSERT_CONTAINS(why, "max_instances");
}

static void test_panic_scales_fast_and_holds(void)
{
    struct deploy_scale c = cfg();
    struct autoscale_memory m = {0};
    const char *why;
    /* A burst: the panic window sees 12 in flight, the stable window 2. */
    struct autoscale_input in = {.stable_avg = 2,
                                 .panic_avg = 12,
                                 .current = 1,
                                 .ready = 1,
                                 .now_ms = 1000000,
                                 .last_request_ms = 1000000};
    ASSERT_EQ(autoscale_decide(&c, 4, &in, &m, &why), 6);
    ASSERT(m.panicking);
    ASSERT_CONTAINS(why, "panic");
    /* The burst ends but panic lasts a stable window: never scale down. */
    in.panic_avg = 0.5;
    in.stable_avg = 1;
    in.current = in.ready = 6;
    in.now_ms += 10000;
    ASSERT_EQ(autoscale_decide(&c, 4, &in, &m, &why), 6);
    ASSERT(m.panicking);
    /* After the stable window the panic ends and the size follows the
     * stable average again. */
    in.now_ms += 60000;
    ASSERT_EQ(autoscale_decide(&c, 4, &in, &m, &why), 1);
    ASSERT(!m.panicking);
}

static void test_never_below_current_demand(void)
{
    struct deploy_scale c = cfg();
    struct autoscale_memory m = {0};
    const char *why;
    /* The windows have not caught up with a sudden queue of 9 requests. */
    struct autoscale_input in = {.stable_avg = 0.1,
                                 .panic_avg = 0.1,
                                 .current = 3,
                                 .ready = 2,
                                 .now_ms = 5000,
                                 .last_request_ms = 5000,
                                 .demand = 9};
    ASSERT_EQ(autoscale_decide(&c, 4, &in, &m, &why), 3);
    ASSERT_CONTAINS(why, "now");
}

static void test_idle_and_min(void)
{
    struct deploy_scale c = cfg();
    struct autoscale_memory m = {0};
    const char *why;
    struct autoscale_input in = {.stable_avg = 0,
                                 .panic_avg = 0,
                                 .current = 1,
                                 .ready = 1,
                                 .now_ms = 100000,
                                 .last_request_ms = 90000};
    ASSERT_EQ(autoscale_decide(&c, 4, &in, &m, &why), 1); /* within idle_timeout */
    ASSERT_CONTAINS(why, "idle_timeout");
    in.last_request_ms = 10000;
    ASSERT_EQ(autoscale_decide(&c, 4, &in, &m, &why), 0); /* idle: may go to standby */
    c.min_instances = 2;
    ASSERT_EQ(autoscale_decide(&c, 4, &in, &m, &why), 2);
    ASSERT_CONTAINS(why, "min_instances");
    in.last_request_ms = 0; /* never used */
    c.min_instances = 0;
    ASSERT_EQ(autoscale_decide(&c, 4, &in, &m, &why), 0);
}

int main(void)
{
    RUN(test_stable_sizing);
    RUN(test_panic_scales_fast_and_holds);
    RUN(test_never_below_current_demand);
    RUN(test_idle_and_min);
    return TEST_REPORT();
}
