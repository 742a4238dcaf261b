/* Access: who may do what on this node. Tenants, their API keys (only keyed
 * hashes are stored), grants of deployments to other tenants, per-tenant and
 * per-key limits, and the hash-chained audit trail of every change. Built on
 * the primitives of src/security and persisted through the store; the gateway
 * asks it to authenticate, authorise and admit each request. Thread-safe. */
#ifndef THAW_ACCESS_H
#define THAW_ACCESS_H

#include "base/base.h"
#include "security/security.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct store;
struct access;

/* The platform's own tenant: its admin keys administer every tenant. */
#define ACCESS_ROOT_TENANT "root"
#define ACCESS_NAME_MAX    63

struct access_principal {
    char key_id[SECURITY_KEY_ID_LEN + 1];
    char tenant[ACCESS_NAME_MAX + 1];
    unsigned scopes;     /* effective scopes (admin implies all) */
    bool platform_admin; /* an admin key of the root tenant */
};

struct access_limits {
    double rps;              /* requests per second; 0 = unlimited */
    uint32_t burst;          /* requests allowed at once */
    uint32_t concurrency;    /* requests in flight; 0 = unlimited */
    uint64_t daily_requests; /* 0 = unlimited */
    uint64_t daily_tokens;   /* 0 = unlimited */
};

/* The outcome of admitting a request, with what the rate-limit headers say. */
struct access_admission {
    bool allowed;
    const char *reason; /* static: "rate", "concurrency", "daily_requests" when denied */
    bool has_rate;      /* a rate limit applied: the x-ratelimit-* fields are set */
    uint32_t limit, remaining, reset_s, retry_after_s;
    bool holds_tenant_slot, holds_key_slot; /* pass back to access_release */
};

/* secret32: 32 bytes from which the key pepper and the audit key are derived
 * (the node's key-encryption key). Loads tenants, keys and grants from the
 * store and the tail of the audit chain. */
int access_open(struct store *store, const unsigned char secret32[32], struct access **out,
                struct thaw_err *err);
void access_free(struct access *a);

/* Makes sure the root tenant exists and an admin key can reach the node: with
 * admin_key (a thaw_ key string) that key is registered (idempotent); with
 * none, if the node has no keys yet, one is generated into generated (shown
 * once by the caller) and *was_generated set. */
int access_bootstrap(struct access *a, const char *admin_key, char generated[SECURITY_KEY_STR_SIZE],
                     bool *was_generated, struct thaw_err *err);

/* Checks an Authorization header value ("Bearer thaw_..."). Returns 0 and
 * fills p, or THAW_EDENIED with a message that never contains the secret. */
int access_authenticate(struct access *a, const char *authorization, struct access_principal *p,
                        struct thaw_err *err);

/* May p use (invoke, read) the deployment owned by owner? Its own tenant's,
 * granted ones, and everything for the platform admin. */
bool access_can_use(struct access *a, const struct access_principal *p, const char *deployment,
                    const char *owner);

/* Tenants. Changes need the platform admin; each is audited. Returned JSON
 * objects are the caller's (json_decref). */
int access_tenant_create(struct access *a, const struct access_principal *actor, const char *name,
                         const json_t *limits, json_t **out, struct thaw_err *err);
int access_tenant_delete(struct access *a, const struct access_principal *actor, const char *name,
                         struct thaw_err *err);
json_t *access_tenant_list(struct access *a, const struct access_principal *actor);
bool access_tenant_exists(struct access *a, const char *name);

/* Keys: the platform admin or an admin of the key's tenant. key_out gets the
 * new key string, shown once. */
int access_key_create(struct access *a, const struct access_principal *actor, const char *tenant,
                      const json_t *body, char key_out[SECURITY_KEY_STR_SIZE], json_t **info,
                      struct thaw_err *err);
int access_key_revoke(struct access *a, const struct access_principal *actor, const char *key_id,
                      struct thaw_err *err);
int access_key_rotate(struct access *a, const struct access_principal *actor, const char *key_id,
                      char key_out[SECURITY_KEY_STR_SIZE], json_t **info, struct thaw_err *err);
int access_key_list(struct access *a, const struct access_principal *actor, const char *tenant,
                    json_t **out, struct thaw_err *err);

/* Grants of a deployment (owned by owner) to another tenant. */
int access_grant_add(struct access *a, const struct access_principal *actor, const char *deployment,
                     const char *owner, const char *tenant, struct thaw_err *err);
int access_grant_remove(struct access *a, const struct access_principal *actor,
                        const char *deployment, const char *owner, const char *tenant,
                        struct thaw_err *err);
json_t *access_grant_list(struct access *a, const char *deployment);
/* Drops every grant of a deleted deployment. */
void access_grants_forget(struct access *a, const char *deployment);

/* Admission: rate (GCRA), concurrency and daily request quota of the key
 * and its tenant. Every admitted request must be released once. */
void access_admit(struct access *a, const struct access_principal *p, struct access_admission *out);
void access_release(struct access *a, const struct access_principal *p,
                    const struct access_admission *adm);

/* Adds n tokens (prompt + output of an answered request) to the daily token
 * counts of p's key and tenant. Counted after the fact (a request may end
 * past the limit), the next one is then refused (access_tokens_left). */
void access_charge_tokens(struct access *a, const struct access_principal *p, uint64_t n);
/* False once p's key or tenant has spent its daily tokens; *retry_after_s
 * then says until the next UTC day. Checked by the routes that spend tokens,
 * so a tenant out of tokens can still read and manage. */
bool access_tokens_left(struct access *a, const struct access_principal *p,
                        uint32_t *retry_after_s);

/* Jobs. A submission of n jobs is charged as n requests: the POST's own
 * admission counted the first, so before a submission is stored
 * access_jobs_admit checks that the key and its tenant have n - 1 daily
 * requests left and, when tokens (an llm or embed deployment, as on the
 * synchronous routes), daily tokens left. False: refuse with 429
 * rate_limited; *reason names the limit ("daily_requests", "daily_tokens")
 * and *retry_after_s says until the next UTC day. Once stored,
 * access_charge_requests adds the n - 1 (past the limit, like tokens: jobs
 * accepted concurrently may pass it by a little). */
bool access_jobs_admit(struct access *a, const struct access_principal *p, uint64_t extra_requests,
                       bool tokens, uint32_t *retry_after_s, const char **reason);
void access_charge_requests(struct access *a, const struct access_principal *p, uint64_t n);
/* May a job of tenant, submitted by key_id ("" for jobs stored before keys
 * were recorded: only the tenant is checked), start an attempt now? 0, or
 * THAW_EDENIED when the key was revoked (its tenant deleted) or expired, or
 * THAW_EBUSY when tokens and the key or tenant has spent its daily tokens;
 * err says which. On success p (may be NULL) is the job's principal, for
 * access_charge_tokens. */
int access_job_runnable(struct access *a, const char *tenant, const char *key_id, bool tokens,
                        struct access_principal *p, struct thaw_err *err);

/* Usage metering per tenant, UTC day and deployment. record counts one
 * answered request (failed: answered with an error status) and its tokens;
 * get returns {"tenant","day":"YYYY-MM-DD","totals":{..},"deployments":{name:{
 * "requests","failed","prompt_tokens","completion_tokens"}}} for day (days
 * since 1970-01-01); flush writes everything unwritten to the store (it is
 * also written every few seconds while requests come, and by access_free). */
void access_usage_record(struct access *a, const char *tenant, const char *deployment, bool failed,
                         uint64_t prompt_tokens, uint64_t completion_tokens);
int access_usage_get(struct access *a, const char *tenant, int64_t day, json_t **out,
                     struct thaw_err *err);
void access_usage_flush(struct access *a);

/* Encryption at rest of user content (job payloads, results, cached
 * answers): sealed under the tenant's current data key, bound to purpose.
 * The blob names its tenant, so unseal needs only the purpose. Data keys
 * are created on first use and kept wrapped by the KEK in the store. Both
 * append to out; errors say what failed, never the content. */
int access_seal(struct access *a, const char *tenant, const char *purpose, const void *pt,
                size_t len, struct buf *out, struct thaw_err *err);
int access_unseal(struct access *a, const char *purpose, const void *blob, size_t len,
                  struct buf *out, struct thaw_err *err);
/* The same with the handle as void *ctx, for hooks that take one (the
 * registry's sealer of deployment env values). */
int access_seal_hook(void *access, const char *tenant, const char *purpose, const void *pt,
                     size_t len, struct buf *out, struct thaw_err *err);
int access_unseal_hook(void *access, const char *purpose, const void *blob, size_t len,
                       struct buf *out, struct thaw_err *err);
/* New data key version for tenant: new data uses it at once, old data keeps
 * opening with the version that sealed it. Audited. */
int access_rotate_data_key(struct access *a, const struct access_principal *actor,
                           const char *tenant, uint32_t *version, struct thaw_err *err);

/* Appends to the audit trail: actor (NULL = the node itself), action
 * ("deployment.create"), target, outcome ("ok" or an error code), details
 * (short JSON text or NULL; never request content). */
int access_audit(struct access *a, const struct access_principal *actor, const char *action,
                 const char *target, const char *outcome, const char *details);
json_t *access_audit_list(struct access *a, uint64_t after_seq, size_t limit);
/* The key-hash pepper and audit key of the data in store, which kek32 must
 * open (THAW_EDENIED with a clear message otherwise). They live in the store
 * sealed under the KEK (created there on first use when create), so they
 * survive a KEK rotation. */
int access_node_secrets(struct store *s, const unsigned char kek32[32], bool create,
                        unsigned char pepper[32], unsigned char audit_key[32],
                        struct thaw_err *err);
/* KEK rotation, offline (no node may be using the store): re-wraps every
 * tenant data key and the node secrets from old32 to new32 in one
 * transaction. Data keys themselves do not change, so sealed data stays as
 * it is and opens with the new KEK; the old one is refused afterwards.
 * *n_keys gets the number of data keys re-wrapped. */
int access_rewrap(struct store *s, const unsigned char old32[32], const unsigned char new32[32],
                  size_t *n_keys, struct thaw_err *err);
/* Verifies the audit chain in a store. Returns 0 when intact, THAW_EFORMAT
 * with err naming the first changed, inserted or removed entry otherwise. */
int access_audit_verify(struct store *store, const unsigned char secret32[32], uint64_t *n_entries,
                        struct thaw_err *err);

#endif
