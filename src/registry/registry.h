/* Deployments as users describe them: manifests (JSON or YAML) parsed and
 * validated into a deploy_spec, and the spec's canonical JSON form that the
 * store keeps. Every validation error names the offending field. */
#ifndef THAW_REGISTRY_H
#define THAW_REGISTRY_H

#include "base/base.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define DEPLOY_NAME_MAX 63

struct deploy_scale {
    int min_instances;
    int max_instances;
    int64_t idle_timeout_ms;    /* warm -> standby after this long without requests */
    int64_t standby_timeout_ms; /* standby -> cold */
    int queue_limit;            /* requests held while no instance can take them */
    int64_t queue_timeout_ms;
    double target_utilization; /* fraction of concurrency the autoscaler aims for */
    int64_t stable_window_ms;
    int64_t panic_window_ms;
    double panic_threshold;     /* panic when desired >= threshold x ready */
    int64_t startup_timeout_ms; /* an instance that is not ready by then is killed */
};

struct deploy_limits {
    int64_t memory_bytes;   /* RLIMIT_AS, 0 = unlimited */
    int64_t open_files;     /* RLIMIT_NOFILE, 0 = default */
    int64_t cpu_seconds;    /* RLIMIT_CPU, 0 = unlimited */
    int64_t max_body_bytes; /* largest request body accepted */
};

/* Asynchronous jobs (the manifest's `jobs:` block). */
struct deploy_jobs {
    int max_attempts;        /* 1 = no retries */
    int64_t backoff_base_ms; /* retry n waits rand(0, min(cap, base * 2^(n-1))) */
    int64_t backoff_cap_ms;
    int64_t visibility_timeout_ms; /* a lease not renewed for this long returns the job */
    int64_t result_ttl_ms;         /* results are deleted this long after the job ends */
    int queue_limit;               /* unfinished jobs past which submits get 429 */
    int concurrency;               /* jobs in flight at once; 0 = max_instances x concurrency */
    char *webhook;                 /* URL called when a job ends; NULL = none */
};

struct deploy_spec {
    char name[DEPLOY_NAME_MAX + 1];
    char *runtime;  /* "exec" */
    char **command; /* argv, NULL-terminated */
    char **env;     /* "KEY=VALUE" strings, NULL-terminated */
    char *workdir;  /* NULL = the node's data dir */
    int concurrency;
    int64_t timeout_ms;
    struct deploy_scale scale;
    struct deploy_limits limits;
    struct deploy_jobs jobs;
};

/* Parses a manifest. content_type selects YAML ("yaml" anywhere in it) or
 * JSON; NULL sniffs: a body starting with '{' is JSON. On success *out is the
 * caller's (registry_spec_free). On error returns THAW_EINVAL and err says
 * which field is wrong and why. */
int registry_spec_parse(const char *body, size_t len, const char *content_type,
                        struct deploy_spec **out, struct thaw_err *err);
/* Validates an already parsed JSON object (the same rules). */
int registry_spec_from_json(const json_t *obj, struct deploy_spec **out, struct thaw_err *err);
/* The canonical JSON of a spec, every field explicit. Caller owns the
 * reference (json_decref). */
json_t *registry_spec_to_json(const struct deploy_spec *spec);
void registry_spec_free(struct deploy_spec *spec);
/* Deployment names: 1-63 chars of [a-z0-9-_.], starting with a letter or digit. */
bool registry_name_valid(const char *name);

/* Converts a YAML document into JSON (jansson). Anchors and aliases are
 * refused, nesting is bounded. Caller owns the result. */
int registry_yaml_to_json(const char *text, size_t len, json_t **out, struct thaw_err *err);

#endif
