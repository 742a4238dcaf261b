/* The concurrency-based autoscaler decision, Knative-style: a stable window
 * sets the steady size, a short panic window reacts to bursts and, while
 * panicking, the size never goes down. */
#include "scale/scale.h"

#include <math.h>

static int instances_for(double concurrency, double per_instance)
{
    if (concurrency <= 0) return 0;
    double n = ceil(concurrency / per_instance - 1e-9);
    return n > 1e6 ? 1000000 : (int)n;
}

int autoscale_decide(const struct deploy_scale *cfg, int concurrency,
                     const struct autoscale_input *in, struct autoscale_memory *mem,
                     const char **reason)
{
    double per_instance = concurrency * cfg->target_utilization;
    if (per_instance <= 0) per_instance = 1;
    int stable = instances_for(in->stable_avg, per_instance);
    int panic = instances_for(in->panic_avg, per_instance);
    int base = in->ready > 0 ? in->ready : 1;

    if (!mem->panicking && in->ready > 0 && panic >= cfg->panic_threshold * base) {
        mem->panicking = true;
        mem->panic_until_ms = in->now_ms + (uint64_t)cfg->stable_window_ms;
    } else if (mem->panicking && in->now_ms >= mem->panic_until_ms &&
               panic < cfg->panic_threshold * base) {
        mem->panicking = false;
    }

    int desired;
    if (mem->panicking) {
        desired = MAX(panic, in->current);
        *reason = "panic window: burst above panic threshold, never scaling down";
    } else {
        desired = stable;
        *reason = "stable window average concurrency";
    }
    /* Averages lag; never drop below what is in flight or waiting now. */
    int now_need = in->demand > 0 ? (in->demand + concurrency - 1) / concurrency : 0;
    if (desired < now_need) {
        desired = now_need;
        *reason = "requests in flight or held now";
    }
    bool recent =
        in->last_request_ms && in->now_ms - in->last_request_ms < (uint64_t)cfg->idle_timeout_ms;
    if (desired == 0 && recent) {
        desired = 1;
        *reason = "traffic within idle_timeout";
    }
    if (desired < cfg->min_instances) {
        desired = cfg->min_instances;
        *reason = "min_instances";
    }
    if (desired > cfg->max_instances) {
        desired = cfg->max_instances;
        *reason = "max_instances";
    }
    return desired;
}
