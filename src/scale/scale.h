/* Scaling: the dispatcher/activator and autoscaler. One scale object runs on
 * one event loop thread and owns a pool of instances per deployment version:
 * picking the version a request goes to (traffic weights, a pinned version
 * or a sticky key; shadow copies; canary analysis),
 * routing requests to instances with free capacity, holding them while
 * instances start, scaling from zero to warm under load and back to standby
 * and zero when idle. Other threads talk to it only through the calls marked
 * thread-safe. */
#ifndef THAW_SCALE_H
#define THAW_SCALE_H

#include "base/base.h"
#include "registry/registry.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct scale;

struct scale_config {
    const char *tmp_root;      /* parent folder of instances' private temp dirs (copied) */
    int64_t stop_grace_ms;     /* SIGTERM -> SIGKILL */
    int64_t tick_ms;           /* autoscaler period; 0 = 100 ms */
    size_t max_line_bytes;     /* longest line an instance may write; 0 = 64 MiB */
    const char *artifact_root; /* where "sha256:..." models are stored (copied); NULL: none */
    /* Canary analysis decided to step a canary's weight up, promote it or
     * roll it back: t is the new traffic, based on revision base_rev.
     * Called on the scale thread without the scale lock; the callee
     * persists it (which may fail if traffic changed meanwhile) and answers
     * with scale_set_traffic. NULL: decisions apply in memory only. */
    void (*on_canary)(void *ctx, const char *deployment, const struct registry_traffic *t,
                      int64_t base_rev, const char *decision, const char *details);
    void *canary_ctx;
    bool no_redact; /* security: off: function stderr and errors go out as written */
};

enum inv_event_kind {
    INV_CHUNK, /* a streamed piece: payload is compact JSON */
    INV_DONE,  /* the final answer: payload is compact JSON */
    INV_FAIL,  /* failure: status and code say what, payload is a message */
};

/* One synchronous invocation, shared between the gateway thread that made it
 * and the scale thread. The gateway fills the first block, submits it, and
 * keeps ownership; scale calls on_event (on the scale thread) zero or more
 * times with INV_CHUNK and exactly once with INV_DONE or INV_FAIL, and does
 * not touch the invocation after that. */
struct invocation {
    char deployment[DEPLOY_NAME_MAX + 1];
    char request_id[65];
    /* Whose request: an instance of a deployment that is not `shared` serves
     * one tenant only ("" for job runs, which get instances of their own). */
    char tenant[64];
    char *input; /* compact JSON, owned by the invocation */
    size_t input_len;
    bool stream;
    /* In: the version asked for (0 = by traffic). Out (before the first
     * event): the version that serves it, 0 when none was chosen. */
    int version;
    bool sticky; /* pick the version by sticky_hash (consistent hashing) */
    /* version was picked by traffic before submitting (scale_route), not
     * pinned by the caller: it still gets shadow copies, and a version gone
     * meanwhile is "no traffic" rather than "no such version". */
    bool routed;
    uint64_t sticky_hash;
    /* payload ownership passes to the callee; code is a static string. */
    void (*on_event)(struct invocation *inv, enum inv_event_kind kind, int status, const char *code,
                     char *payload);
    void *owner;

    /* Set by scale before the first event. */
    const char *start_state; /* "warm", "standby" or "cold" */
    int retry_after_s;       /* for 503s */
    /* The failure is the function's own error line, not the platform's
     * refusal: a function that answers 503 is failing, not overloaded. */
    bool function_error;

    /* Private to scale. */
    uint64_t serial; /* set by scale_submit: tells this invocation from a later one at the same
                        address */
    struct invocation *next_held;
    uint64_t held_deadline_ms;
    void (*user_on_event)(struct invocation *, enum inv_event_kind, int, const char *, char *);
    struct pool *stat_pool; /* the version's pool, for its outcome statistics */
    uint64_t submit_ns;
    bool shadow; /* a copy for a shadow version; its answer is discarded */
};

/* Creates the scale object on base (which must run on one thread, the scale
 * thread). Returns NULL and fills err on failure. */
struct scale *scale_new(struct event_base *base, const struct scale_config *cfg,
                        struct thaw_err *err);
/* Frees everything; instances must have been stopped (scale_shutdown). */
void scale_free(struct scale *s);

/* Thread-safe. Queues inv for the scale thread. */
void scale_submit(struct scale *s, struct invocation *inv);
/* Why a caller stops an invocation: it picks the failure's code, the log
 * line's reason and the label of thaw_calls_cancelled_total. */
enum scale_cancel_reason {
    SCALE_CANCEL_CLIENT_CLOSED, /* the HTTP client closed its connection: 499 client_closed */
    SCALE_CANCEL_JOB_CANCELLED, /* DELETE /v1/jobs/{id} of a running job: 499 cancelled */
};
/* Thread-safe. The caller of a submitted inv went away (its client closed
 * the connection, or the job it runs was cancelled): stop spending on it.
 * A held request fails at once; one on an llm/embed instance is cancelled
 * there ({"id":N,"cancel":true}), and the runtime's prompt answer (as far
 * as it got, with usage, or a 499) is the final event, so its sequence is
 * free again and its tokens are still counted; one on a function, which
 * knows no cancel, fails at once and its late answer is discarded.
 * Failures are 499 with the reason's code. The final event still comes,
 * exactly once; a cancel that arrives after it (or for an invocation never
 * submitted) does nothing. The caller must still own inv (not freed after
 * its final event) and have seen scale_submit return: inv->serial is read
 * here. */
void scale_cancel(struct scale *s, struct invocation *inv, enum scale_cancel_reason why);
/* Thread-safe. Makes version `version` of spec->name known (a pool that
 * starts no instance until traffic, a pin or a shadow copy reaches it);
 * takes ownership of spec. Versions are immutable: a version already known
 * is kept as it is. */
void scale_apply_version(struct scale *s, struct deploy_spec *spec, int version);
/* Thread-safe. Replaces a deployment's traffic (revision rev) for the next
 * request; requests in flight finish where they are, and versions left
 * without traffic drain and scale to zero. */
void scale_set_traffic(struct scale *s, const char *name, const struct registry_traffic *t,
                       int64_t rev);
/* Thread-safe. The version a request to deployment name goes to under its
 * traffic as last set (scale_set_traffic): by sticky_hash when sticky,
 * otherwise a weighted random pick. The caller checks the request against
 * that version's rules and submits it with version set and routed true.
 * 0: no such deployment, or no version with traffic (submitting unrouted
 * then answers why). */
int scale_route(struct scale *s, const char *name, bool sticky, uint64_t sticky_hash);
/* Thread-safe. The versions with traffic (weight > 0) of deployment name,
 * up to max of them into out; returns how many (0: unknown or none). A
 * job may run on any of them. */
int scale_route_versions(struct scale *s, const char *name, int *out, int max);
/* Picks a version by weight for a sticky key's hash: weighted rendezvous
 * hashing, so a key keeps its version while the weights stay, and a weight
 * change only moves keys to or from the version that changed. */
int scale_pick_sticky(const struct registry_traffic *t, uint64_t key_hash);
/* Thread-safe. Outcome statistics per version over the last window_ms:
 * {"v3":{"primary":{requests, errors, error_rate, p50_ms, p95_ms},
 * "shadow":{...}}, ...}; NULL when the deployment is unknown. */
json_t *scale_version_stats(struct scale *s, const char *name, int64_t window_ms);
/* Thread-safe. Drains and stops a deployment's instances, then forgets it. */
void scale_remove(struct scale *s, const char *name);
/* Thread-safe. Status of one deployment (NULL if unknown) or, with name
 * NULL, an object of all of them. Caller owns the reference. */
json_t *scale_status(struct scale *s, const char *name);
/* Thread-safe. Stops every instance (SIGTERM, then SIGKILL after the grace
 * period) and calls done on the scale thread once all have exited. */
void scale_shutdown(struct scale *s, void (*done)(void *arg), void *arg);

/* The autoscaler's decision, a pure function (unit-tested on its own). */
struct autoscale_memory {
    bool panicking;
    uint64_t panic_until_ms;
};

struct autoscale_input {
    double stable_avg; /* average concurrency (in flight + held) over the stable window */
    double panic_avg;  /* the same over the panic window */
    int current;       /* instances ready or starting */
    int ready;
    uint64_t now_ms;
    uint64_t last_request_ms; /* 0: never */
    int demand;               /* requests in flight or held right now */
};

/* Returns the desired number of instances (clamped to min/max; 0 means the
 * deployment may go to standby) and sets *reason to a static explanation. */
int autoscale_decide(const struct deploy_scale *cfg, int concurrency,
                     const struct autoscale_input *in, struct autoscale_memory *mem,
                     const char **reason);

#endif
