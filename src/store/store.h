/* The store: where a node keeps what must survive a restart. One interface,
 * implemented by the embedded SQLite store (a single node) and, later, by
 * Redis (many nodes). Values are opaque strings to the store; the modules
 * that own them give them meaning. All calls are thread-safe. */
#ifndef THAW_STORE_H
#define THAW_STORE_H

#include "base/base.h"

struct store;

/* Opens (creating if needed) the SQLite store in file path, in WAL mode with
 * full synchronous commits. On error returns a code and fills err. */
int store_open_sqlite(const char *path, struct store **out, struct thaw_err *err);
/* Closes the store; NULL is a no-op. */
void store_close(struct store *s);

/* Deployments: name -> spec (canonical JSON) and the tenant that owns it.
 * put inserts or replaces. */
int store_deployment_put(struct store *s, const char *name, const char *spec_json,
                         const char *owner, struct thaw_err *err);
/* *spec_json is the caller's to free(); THAW_ENOTFOUND when absent. */
int store_deployment_get(struct store *s, const char *name, char **spec_json,
                         struct thaw_err *err);
/* THAW_ENOTFOUND when absent. */
int store_deployment_delete(struct store *s, const char *name, struct thaw_err *err);
/* Calls cb for each deployment in name order; a non-zero return from cb stops
 * the walk and is returned. The strings are valid only during the call. */
typedef int (*store_deployment_cb)(void *ctx, const char *name, const char *spec_json,
                                   const char *owner);
int store_deployment_list(struct store *s, store_deployment_cb cb, void *ctx,
                          struct thaw_err *err);

/* ---- jobs (src/jobs gives them meaning) ----
 * Durable asynchronous jobs, their attempts, idempotency keys and webhook
 * deliveries. Payloads, results and function error messages arrive sealed
 * (src/jobs seals them) and are opaque bytes here. Times are wall-clock
 * milliseconds. Every call is one transaction. */

#include <stdbool.h>
#include <stdint.h>

enum store_job_state {
    STORE_JOB_QUEUED = 0,
    STORE_JOB_RUNNING = 1, /* leased; run_at_ms is the lease's expiry */
    STORE_JOB_SUCCEEDED = 2,
    STORE_JOB_FAILED = 3,   /* a final error that retrying cannot fix (4xx) */
    STORE_JOB_DEAD = 4,     /* out of attempts: in the dead-letter queue */
    STORE_JOB_CANCELLED = 5,
};
#define STORE_JOB_ID_MAX 40

/* One submission. The caller fills the first block; submit fills outcome.
 * Consecutive submissions form one request, started by group_start: if any
 * of them conflicts, none of the request's jobs is written and all report
 * THAW_ECONFLICT. */
struct store_job_submit {
    bool group_start;
    char id[STORE_JOB_ID_MAX + 1];
    const char *deployment;
    const char *tenant; /* who submitted it: only that tenant may see it; NULL = "" */
    const char *key_id; /* the API key (its id, never the secret) that submitted it; NULL = "" */
    const char *input;  /* sealed bytes, not copied */
    size_t input_len;
    const char *webhook; /* NULL = none */
    int max_attempts;
    const char *idem_key;  /* NULL = none */
    uint8_t body_hash[32]; /* identifies the request behind idem_key */
    int64_t idem_expires_ms;
    /* 0: created; THAW_EEXIST: idem_key seen with the same hash, existing_id
     * is that job; THAW_ECONFLICT: seen with another hash. */
    int outcome;
    char existing_id[STORE_JOB_ID_MAX + 1];
};

/* Inserts all n in one transaction (one durable commit). Returns 0 (see each
 * outcome) or an error, in which case nothing was written. */
int store_job_submit(struct store *s, struct store_job_submit *subs, size_t n, int64_t now_ms,
                     struct thaw_err *err);

/* A job leased to a runner. input is the caller's to free(). */
struct store_job_lease {
    char id[STORE_JOB_ID_MAX + 1];
    int attempt; /* 1 for the first; also the lease's token */
    int max_attempts;
    char *input;
    size_t input_len;
    int64_t created_ms;
    char *webhook; /* NULL = none; the caller's to free() */
    char tenant[64]; /* the submitter's; "" for jobs from before tenants were kept */
    char key_id[32]; /* the submitting key's id; "" for jobs from before keys were kept */
};

/* Leases up to max jobs of deployment that are due (queued with run_at <=
 * now, or running with an expired lease), oldest first: each becomes
 * running until lease_until_ms with its attempt counter incremented.
 * Returns the number leased (out[0..n)) or a negative error. */
int store_job_lease(struct store *s, const char *deployment, int64_t now_ms,
                    int64_t lease_until_ms, struct store_job_lease *out, int max,
                    struct thaw_err *err);
/* Extends leases still held (same id and attempt) to until_ms[i]. Leases
 * and renewals are not synced to disk: one lost in a crash only means the
 * job runs again, which a crash means anyway. */
int store_job_renew(struct store *s, const char *const *ids, const int *attempts,
                    const int64_t *until_ms, size_t n, struct thaw_err *err);

/* The end of one attempt. */
struct store_job_outcome {
    const char *id;
    int attempt;
    int new_state;     /* QUEUED (retry or release), SUCCEEDED, FAILED or DEAD */
    bool release;      /* QUEUED without spending the attempt (not the job's fault) */
    int64_t run_at_ms; /* for QUEUED: when it may run again */
    int64_t started_ms, ended_ms;
    int status;                 /* HTTP-like: 200, 500, 502, 504, ... */
    int version;                /* the deployment version that answered; 0 = none */
    const char *code;           /* NULL on success */
    const char *message;        /* sealed, NULL on success */
    size_t message_len;
    const char *result;         /* sealed, for SUCCEEDED */
    size_t result_len;
    int64_t expires_ms;         /* final states: when the result goes */
    const char *webhook_url;    /* final states: queue a delivery of webhook_body here */
    const char *webhook_body;   /* sealed */
    size_t webhook_body_len;
    /* Filled: 0, or THAW_ESTATE when the lease was lost (cancelled, or
     * leased again after expiring): nothing was written for this one. */
    int outcome;
};
/* Records n outcomes in one transaction. */
int store_job_complete(struct store *s, struct store_job_outcome *o, size_t n,
                       struct thaw_err *err);

struct store_job_attempt {
    int n;
    int64_t started_ms, ended_ms;
    int status;
    int version; /* 0 = none (refused before a version was chosen, or older rows) */
    char code[48];
    char *message; /* sealed, may be NULL */
    size_t message_len;
};

/* A job as stored. store_job_clear frees its buffers. */
struct store_job {
    char id[STORE_JOB_ID_MAX + 1];
    char deployment[64];
    char tenant[64]; /* the submitter's; "" for jobs from before tenants were kept */
    char key_id[32]; /* the submitting key's id; "" for jobs from before keys were kept */
    int state;
    int attempts, max_attempts;
    int64_t created_ms, updated_ms, run_at_ms, finished_ms, expires_ms;
    bool expired;        /* the result was deleted after its TTL */
    char *input;         /* sealed; NULL once expired */
    size_t input_len;
    char *result;        /* sealed; NULL unless succeeded and not expired */
    size_t result_len;
    char *webhook;
    struct store_job_attempt *attempt_log; /* with_attempts only */
    size_t n_attempt_log;
};
void store_job_clear(struct store_job *j);

/* THAW_ENOTFOUND when absent. with_data adds input, result and attempts. */
int store_job_get(struct store *s, const char *id, bool with_data, struct store_job *out,
                  struct thaw_err *err);

struct store_job_filter {
    const char *deployment; /* NULL = any */
    int state;              /* -1 = any */
    const char *after_id;   /* cursor: jobs created after this one; NULL = from the start */
    int limit;
    /* NULL = any; else only this tenant's jobs and those with no tenant
     * (kept before tenants were, visible by deployment as they were). */
    const char *tenant;
};
/* Calls cb with each matching job (no data) oldest first; a non-zero return
 * stops the walk and is returned. */
typedef int (*store_job_cb)(void *ctx, const struct store_job *j);
int store_job_list(struct store *s, const struct store_job_filter *f, store_job_cb cb, void *ctx,
                   struct thaw_err *err);

/* Cancels a job that has not ended; *prev_state says what it was.
 * THAW_ENOTFOUND, or THAW_ESTATE when it had already ended. */
int store_job_cancel(struct store *s, const char *id, int64_t now_ms, int64_t expires_ms,
                     int *prev_state, struct thaw_err *err);
/* Dead-letter queue: dead jobs back to queued with fresh attempts (id, or
 * every dead job of deployment when id is NULL; deployment NULL = all), or
 * deleted. tenant, when not NULL, limits both to that tenant's jobs and
 * those with no tenant (as the list filter does). *n is how many.
 * THAW_ENOTFOUND for an id that is not dead. replay calls cb (may be NULL)
 * with each replayed job's deployment. */
int store_job_replay(struct store *s, const char *id, const char *deployment, const char *tenant,
                     int64_t now_ms, void (*cb)(void *ctx, const char *deployment), void *ctx,
                     int *n, struct thaw_err *err);
int store_job_purge(struct store *s, const char *id, const char *deployment, const char *tenant,
                    int *n, struct thaw_err *err);
/* After a restart of the only node: every running job back to queued.
 * Returns how many, or a negative error. */
int store_job_recover(struct store *s, int64_t now_ms, struct thaw_err *err);
/* Calls cb with each deployment's count of unfinished (queued or running) jobs. */
int store_job_active_counts(struct store *s, void (*cb)(void *ctx, const char *deployment, int n),
                            void *ctx, struct thaw_err *err);
/* Drops results (and inputs) whose TTL passed, leaving a tombstone that
 * answers "expired" until tombstone_ms later, and idempotency keys past
 * their expiry. Returns the number of results dropped. */
int store_job_expire(struct store *s, int64_t now_ms, int64_t tombstone_ms, struct thaw_err *err);

/* Webhook deliveries. States: 0 pending, 1 delivered, 2 dead. */
struct store_webhook {
    int64_t id;
    char job_id[STORE_JOB_ID_MAX + 1];
    char *url;
    char *body; /* sealed */
    size_t body_len;
    int state, attempts;
    int64_t next_ms, created_ms;
    char last_error[256];
};
void store_webhook_clear(struct store_webhook *w);
/* Up to max pending deliveries due at now (out[0..n)), or a negative error. */
int store_webhook_due(struct store *s, int64_t now_ms, struct store_webhook *out, int max,
                      struct thaw_err *err);
/* Records one delivery attempt's outcome. */
int store_webhook_update(struct store *s, int64_t id, int state, int attempts, int64_t next_ms,
                         const char *last_error, struct thaw_err *err);
/* The earliest next_ms of pending deliveries, or INT64_MAX. */
int store_webhook_next(struct store *s, int64_t *next_ms, struct thaw_err *err);
/* Lists deliveries in state (-1 any), newest first, without bodies. */
typedef int (*store_webhook_cb)(void *ctx, const struct store_webhook *w);
int store_webhook_list(struct store *s, int state, int limit, store_webhook_cb cb, void *ctx,
                       struct thaw_err *err);
/* Dead deliveries (id, or all when id is 0) back to pending now / deleted. */
int store_webhook_replay(struct store *s, int64_t id, int64_t now_ms, int *n, struct thaw_err *err);
int store_webhook_purge(struct store *s, int64_t id, int *n, struct thaw_err *err);

/* ---- documents: small JSON records by collection and id ----
 * Tenants, API keys, grants and wrapped data keys (src/access gives them
 * meaning). put inserts or replaces; get and delete answer THAW_ENOTFOUND. */
int store_doc_put(struct store *s, const char *collection, const char *id, const char *json,
                  struct thaw_err *err);
/* *json is the caller's to free(). */
int store_doc_get(struct store *s, const char *collection, const char *id, char **json,
                  struct thaw_err *err);
int store_doc_delete(struct store *s, const char *collection, const char *id,
                     struct thaw_err *err);
/* Puts (inserts or replaces) all n documents in one transaction: after a
 * crash the store holds all of them or none (KEK rotation relies on it). */
struct store_doc_write {
    const char *collection, *id, *json;
};
int store_doc_put_all(struct store *s, const struct store_doc_write *w, size_t n,
                      struct thaw_err *err);
/* In id order; a non-zero return from cb stops the walk and is returned. */
typedef int (*store_doc_cb)(void *ctx, const char *id, const char *json);
int store_doc_list(struct store *s, const char *collection, store_doc_cb cb, void *ctx,
                   struct thaw_err *err);

/* ---- audit: append-only rows, hash-chained by the caller ---- */
struct store_audit_row {
    uint64_t seq;
    int64_t time_ms;
    const char *actor, *action, *target, *outcome, *details;
    unsigned char prev_hash[32];
    unsigned char hash[32];
};
/* Appends one row; THAW_ECONFLICT if its seq exists (another writer won). */
int store_audit_append(struct store *s, const struct store_audit_row *row, struct thaw_err *err);
/* Rows with seq > after_seq in order, at most limit (0 = all). */
typedef int (*store_audit_cb)(void *ctx, const struct store_audit_row *row);
int store_audit_list(struct store *s, uint64_t after_seq, size_t limit, store_audit_cb cb,
                     void *ctx, struct thaw_err *err);

/* ---- versions and traffic (src/registry gives them meaning) ----
 * Every deploy is an immutable version of its deployment, numbered 1, 2, ...
 * per deployment and found again by its digest, so deploying the same
 * manifest twice yields the same number. A deployment's traffic is one JSON
 * document with a revision that every change bumps; each change is also
 * kept in a log (who, when, why, the whole document) for its history. */

#define STORE_DIGEST_MAX 80

struct store_version {
    int n;
    char digest[STORE_DIGEST_MAX];
    char actor[64];
    int64_t created_ms;
    const char *spec_json; /* valid during the callback; NULL unless asked for */
};
typedef int (*store_version_cb)(void *ctx, const char *deployment, const struct store_version *v);

/* Called inside the deploy transaction with the version number (created:
 * new) and the current traffic document ("" when none); returns the new
 * document (malloc'd) or NULL to leave traffic as it is. */
typedef char *(*store_traffic_fn)(void *ctx, int version, bool created, const char *current);

struct store_deploy_result {
    int version;
    bool created; /* a new version number */
    bool existed; /* the deployment existed before */
    bool traffic_changed;
    int64_t rev;   /* the traffic revision now */
    char *traffic; /* the traffic document now; the caller's to free() */
};

/* One transaction: finds the deployment's version with digest or adds it
 * as the next number (storing version_doc), writes the deployment row
 * (spec_json, owner), and sets the traffic to what fn says (logging it with actor and
 * reason). Nothing is written on error. */
int store_version_deploy(struct store *s, const char *name, const char *owner, const char *actor,
                         const char *digest, const char *version_doc, const char *spec_json,
                         store_traffic_fn fn, void *ctx, const char *reason,
                         struct store_deploy_result *out, struct thaw_err *err);
/* One version; *spec_json (may be NULL to skip) is the caller's to free().
 * THAW_ENOTFOUND when absent. */
int store_version_get(struct store *s, const char *name, int n, struct store_version *meta,
                      char **spec_json, struct thaw_err *err);
/* Versions of one deployment (name NULL: of every deployment) in number
 * order; with_spec fills spec_json. */
int store_version_list(struct store *s, const char *name, bool with_spec, store_version_cb cb,
                       void *ctx, struct thaw_err *err);
/* *traffic ("" when never set) is the caller's to free(). THAW_ENOTFOUND
 * when the deployment is absent. */
int store_traffic_get(struct store *s, const char *name, char **traffic, int64_t *rev,
                      struct thaw_err *err);
/* Sets the traffic document in one atomic write (and logs it), provided the
 * revision is still expect_rev (-1: any); THAW_ECONFLICT otherwise, so two
 * concurrent read-modify-writes cannot lose one. */
int store_traffic_put(struct store *s, const char *name, const char *traffic, int64_t expect_rev,
                      const char *actor, const char *reason, int64_t *new_rev,
                      struct thaw_err *err);
struct store_traffic_entry {
    int64_t rev, time_ms;
    const char *actor, *reason, *traffic;
};
typedef int (*store_traffic_log_cb)(void *ctx, const struct store_traffic_entry *e);
/* The deployment's traffic changes, oldest first. */
int store_traffic_log(struct store *s, const char *name, store_traffic_log_cb cb, void *ctx,
                      struct thaw_err *err);

#endif
