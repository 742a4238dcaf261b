/* Durable asynchronous jobs: submissions committed in groups (one fsync for
 * many submitters) before they are acknowledged, a runner that leases them
 * from the store and invokes them through the scale thread like any request,
 * retries with exponential backoff and full jitter, a dead-letter queue,
 * idempotency keys, result expiry, long-poll waiters and signed webhooks.
 * Execution is at least once; each job keeps exactly one final result. */
#ifndef THAW_JOBS_H
#define THAW_JOBS_H

#include "base/base.h"
#include "registry/registry.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct store;
struct scale;
struct jobs;

/* Sealing of user content at rest (payloads, results, error messages,
 * webhook bodies). seal gets the tenant that submitted the job, whose key
 * it is sealed under; tenant is "" for jobs kept before tenants were, and
 * then deployment says whose (its owner's, as those jobs always were).
 * open must work from the blob alone. Both return 0 and a malloc'd buffer. */
struct jobs_codec {
    int (*seal)(void *ctx, const char *tenant, const char *deployment, const char *in, size_t len,
                char **out, size_t *out_len);
    int (*open)(void *ctx, const char *in, size_t len, char **out, size_t *out_len);
    void *ctx;
};

struct jobs_config {
    struct store *store;             /* borrowed; must outlive the jobs object */
    struct scale *scale;             /* borrowed; NULL runs nothing (tests of submit alone) */
    int64_t idempotency_ttl_ms;      /* 0 = 24 h */
    int64_t tombstone_ms;            /* how long an expired result answers 410; 0 = 7 days */
    const char *webhook_secret;      /* HMAC-SHA256 key (copied); NULL = unsigned */
    const char *webhook_allow;       /* comma-separated CIDRs allowed although internal */
    int webhook_max_attempts;        /* 0 = 5 */
    int64_t webhook_backoff_base_ms; /* 0 = 1 s */
    int64_t webhook_backoff_cap_ms;  /* 0 = 5 min */
    int64_t webhook_timeout_ms;      /* one delivery; 0 = 10 s */
    int self_port;                   /* thaw's own API port, never a webhook target */
    const struct jobs_codec *codec;  /* borrowed; NULL stores content as given */
    /* Metering: called on the runner thread once per attempt that got an
     * answer (a cancelled one too: the tokens it spent before it stopped
     * are still owed), with the submitting tenant ("" for jobs kept before
     * tenants were), whether it failed, and the tokens of the answer's
     * "usage". NULL: jobs are not metered. */
    void (*on_usage)(void *ctx, const char *tenant, const char *key_id, const char *deployment,
                     bool failed, uint64_t prompt_tokens, uint64_t completion_tokens);
    void *usage_ctx;
    /* Called on the runner thread before each attempt starts, with the
     * submitting tenant and key id ("" for jobs kept before they were):
     * 0 lets it run; otherwise the job fails at once (no retry, not
     * metered) with status, code (static) and msg as its error, e.g. a
     * revoked key or a tenant out of daily tokens. NULL: every job runs. */
    int (*may_run)(void *ctx, const char *tenant, const char *key_id, const char *deployment,
                   int *status, const char **code, char *msg, size_t msg_n);
};

/* Creates the object (no threads yet). Returns NULL and fills err. */
struct jobs *jobs_new(const struct jobs_config *cfg, struct thaw_err *err);
/* Returns jobs that were running when the node last stopped to the queue
 * and starts the committer, runner and webhook threads. */
int jobs_start(struct jobs *j, struct thaw_err *err);
/* Stops leasing (SIGTERM); answers every long-poll waiter. Thread-safe. */
void jobs_drain(struct jobs *j);
/* Jobs handed to the scale thread and not yet answered. Thread-safe. */
int jobs_running(struct jobs *j);
/* Returns every running job to the queue without spending its attempt;
 * their answers, if they still come, are ignored. Call before the scale
 * shuts down. Thread-safe. */
void jobs_release_all(struct jobs *j);
/* Stops the threads and frees; NULL is a no-op. Call after scale_free. */
void jobs_free(struct jobs *j);

/* ---- submitting ---- */

#define JOBS_BATCH_MAX 1000
#define JOBS_ID_LEN    36 /* "job_" + 32 hex */

/* One HTTP submission of n inputs. The caller fills the first block and
 * owns the struct; jobs_submit calls done exactly once (possibly before it
 * returns, possibly on another thread) and does not touch r afterwards. */
struct jobs_request {
    char deployment[DEPLOY_NAME_MAX + 1];
    char tenant[64]; /* who submits: the job is theirs alone to see and runs as theirs */
    char key_id[32]; /* the submitting key's id (never its secret): its quotas pay the attempts */
    size_t n;
    char **inputs; /* compact JSON each, borrowed */
    size_t *input_lens;
    const char *webhook;  /* NULL = the deployment's */
    const char *idem_key; /* NULL = none; scoped by the caller ("tenant/key") */
    void (*done)(struct jobs_request *r);
    void *owner;

    /* Filled before done: 202 created, 200 the idempotency key's existing
     * jobs, 400, 404, 409, 429 (retry_after_s), 500 or 503. */
    int status;
    const char *code; /* static, for errors */
    char message[256];
    int retry_after_s;
    char (*ids)[JOBS_ID_LEN + 1]; /* n ids, allocated by jobs_submit, caller frees */
};
void jobs_submit(struct jobs *j, struct jobs_request *r);
/* Whether a client's Idempotency-Key is acceptable: 1-255 printable ASCII
 * characters, no spaces. (The gateway scopes it by tenant before submit.) */
bool jobs_idem_key_valid(const char *key);

/* ---- reading and changing jobs: each returns 0 and a JSON view (caller
 * decrefs) or a status code with err filled ---- */

/* The job with its attempts and result or error. THAW_ENOTFOUND. A job
 * whose result expired comes back with "expired": true. */
int jobs_get(struct jobs *j, const char *id, json_t **out, struct thaw_err *err);
/* Whose the job is, without opening its content: the submitting tenant
 * ("" for jobs kept before tenants were) and its deployment.
 * THAW_ENOTFOUND. */
int jobs_whose(struct jobs *j, const char *id, char tenant[64],
               char deployment[DEPLOY_NAME_MAX + 1], struct thaw_err *err);
/* Calls cb(ctx) exactly once, on any thread: when the job ends, when
 * timeout_ms pass, or when the node drains. */
void jobs_watch(struct jobs *j, const char *id, int64_t timeout_ms, void (*cb)(void *ctx),
                void *ctx);
/* Cancels a job that has not ended. One running here is stopped on its
 * instance too (scale_cancel): an llm generation ends at once with what it
 * produced (metered, then discarded), a held one never starts, a function's
 * answer is dropped. THAW_ENOTFOUND, THAW_ESTATE (ended). */
int jobs_cancel(struct jobs *j, const char *id, json_t **out, struct thaw_err *err);
/* {"jobs":[...], "next": cursor or null}. state may be NULL; THAW_EINVAL
 * for an unknown state name. tenant NULL lists everyone's; otherwise only
 * that tenant's jobs (and those kept before tenants were). */
int jobs_list(struct jobs *j, const char *deployment, const char *tenant, const char *state,
              const char *after, int limit, json_t **out, struct thaw_err *err);

/* Dead-letter queue: replay or purge one job (id) or all of them (id NULL,
 * optionally only deployment's), of tenant's jobs only unless tenant is
 * NULL (as jobs_list). *n says how many. */
int jobs_dlq_replay(struct jobs *j, const char *id, const char *deployment, const char *tenant,
                    int *n, struct thaw_err *err);
int jobs_dlq_purge(struct jobs *j, const char *id, const char *deployment, const char *tenant,
                   int *n, struct thaw_err *err);
/* Webhook deliveries: {"webhooks":[...]}; state "pending", "delivered",
 * "dead" or NULL. replay/purge act on dead ones (id 0 = all). */
int jobs_webhook_list(struct jobs *j, const char *state, int limit, json_t **out,
                      struct thaw_err *err);
int jobs_webhook_replay(struct jobs *j, int64_t id, int *n, struct thaw_err *err);
int jobs_webhook_purge(struct jobs *j, int64_t id, int *n, struct thaw_err *err);

/* ---- pure policy, exposed for tests ---- */

enum jobs_verdict {
    JOBS_SUCCEED, /* the answer is the result */
    JOBS_RETRY,   /* queue again after a backoff */
    JOBS_FAIL,    /* a final error retrying cannot fix (4xx) */
    JOBS_DEAD,    /* out of attempts: to the dead-letter queue */
    JOBS_RELEASE, /* not the job's fault (overloaded, shutting down): again, attempt refunded */
};
/* What to do after attempt (1-based) of max_attempts ended with status/code;
 * by_function: the function itself answered the error (its 429 or 503
 * spends an attempt, or it could keep a job cycling for ever). */
enum jobs_verdict jobs_classify(int status, const char *code, bool by_function, int attempt,
                                int max_attempts);
/* Full-jitter backoff after failed attempt n (1-based): uniform in
 * [0, min(cap, base * 2^(n-1))], drawn from rnd. */
int64_t jobs_backoff_ms(int attempt, int64_t base_ms, int64_t cap_ms, uint64_t rnd);
/* State names: "queued", "running", "succeeded", "failed", "dead",
 * "cancelled"; -1 for anything else. */
const char *jobs_state_name(int state);
int jobs_state_parse(const char *name);
/* The signature header value for a webhook body sent at unix time t:
 * "t=<t>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>". out needs 128 bytes. */
void jobs_webhook_sign(const char *secret, int64_t t, const char *body, size_t len, char out[128]);
/* Whether a webhook may connect to addr (struct sockaddr_in/in6) given the
 * allow-list (comma-separated CIDRs, may be NULL) and thaw's own port. */
bool jobs_webhook_addr_allowed(const void *sockaddr, const char *allow, int self_port);

#endif
