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

/* Sampling defaults of an llm deployment (the manifest's `sampling:` block);
 * a request's own fields win over them. */
struct deploy_sampling {
    double temperature;                                             /* 0: greedy */
    double top_p;                                                   /* 1: off */
    int top_k;                                                      /* 0: off */
    double min_p;                                                   /* 0: off */
    double repetition_penalty, frequency_penalty, presence_penalty; /* 1, 0, 0: off */
    int max_tokens; /* when a request names none (capped by max_output_tokens) */
    int64_t seed;   /* -1: a fresh random seed per request */
};

/* Runtimes llm and embed: the model file and how its instances run it. */
struct deploy_model {
    char *path;            /* a file path, or "sha256:<64 hex>" naming a stored artifact */
    int threads;           /* engine threads per instance */
    int context;           /* positions per sequence; 0: the model's, at most 4096 */
    int max_output_tokens; /* llm: cap per request */
    char *chat_template;   /* llm: family name overriding the file's; NULL: detect */
    struct deploy_sampling sampling; /* llm */
    bool redact;                     /* mask PII in prompts before inference */
};

struct deploy_spec {
    char name[DEPLOY_NAME_MAX + 1];
    char *runtime;             /* "exec", "llm" or "embed" */
    char **command;            /* exec: argv, NULL-terminated */
    char **env;                /* exec: "KEY=VALUE" strings, NULL-terminated */
    char *workdir;             /* exec: NULL = the node's data dir */
    struct deploy_model model; /* llm, embed */
    /* Requests in flight per instance; for llm and embed the manifest's
     * `parallel` (sequences decoded together). */
    int concurrency;
    int64_t timeout_ms;   /* per request; default 30 s (exec), 5 min (llm, embed) */
    json_t *input_schema; /* JSON Schema (supported subset) the input must match; NULL = any */
    bool sandbox;         /* seccomp, Landlock and namespaces for instances (default on) */
    bool network;         /* instances may open network sockets (default off) */
    bool shared;          /* an instance may serve several tenants (default: one tenant each) */
    struct deploy_scale scale;
    struct deploy_limits limits;
    struct deploy_jobs jobs;
};

/* True for the runtimes served by the built-in engine (llm, embed), whose
 * instances are forked from a template that loaded the model once. */
bool registry_runtime_is_model(const struct deploy_spec *spec);

/* Parses a manifest. content_type selects YAML ("yaml" anywhere in it) or
 * JSON; NULL sniffs: a body starting with '{' is JSON. On success *out is the
 * caller's (registry_spec_free). On error returns THAW_EINVAL and err says
 * which field is wrong and why. Env values may not start with
 * REGISTRY_SEALED_PREFIX (the store's form of a sealed value); stored specs
 * go through registry_spec_from_json, which lets them pass. */
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

/* Input schemas (schema.c). check: THAW_EINVAL naming an unsupported
 * keyword or malformed part. validate: THAW_EINVAL naming the path of the
 * first mismatch ("input.user.age: expected integer"). */
int registry_schema_check(const json_t *schema, struct thaw_err *err);
int registry_schema_validate(const json_t *schema, const json_t *value, struct thaw_err *err);

/* Converts a YAML document into JSON (jansson). Anchors and aliases are
 * refused, nesting is bounded. Caller owns the result. */
int registry_yaml_to_json(const char *text, size_t len, json_t **out, struct thaw_err *err);

/* ---- artifacts (artifacts.c) ----
 * Immutable blobs stored content-addressed under one root directory:
 *   <root>/sha256/<2 hex>/<62 hex>   complete blobs, named by their digest
 *   <root>/uploads/<id>/data         resumable upload sessions (+ "size")
 *   <root>/tmp/                      single-request writes in progress
 * A blob appears under its digest only after its bytes are fsync'd: the
 * finished temporary file is hard-linked into place (which fails if another
 * upload got there first) and the directory fsync'd, so a crash never leaves
 * a partial blob under a digest. Every call is thread-safe. Digests are
 * written "sha256:" followed by 64 lowercase hex digits. */

#include <sys/uio.h>

#define ARTIFACT_DIGEST_SIZE    72 /* "sha256:" + 64 hex + NUL */
#define ARTIFACT_UPLOAD_ID_SIZE 33 /* 32 hex + NUL */

struct artifact_store;

struct artifact_store_config {
    const char *root;      /* created if missing */
    int64_t chunk_max;     /* largest single write (one request body) */
    int64_t upload_ttl_ms; /* upload sessions idle this long expire */
};

struct artifact_info {
    char digest[ARTIFACT_DIGEST_SIZE];
    int64_t size;
    bool created; /* false: the blob was already stored (nothing written) */
};

struct artifact_upload_info {
    char id[ARTIFACT_UPLOAD_ID_SIZE];
    int64_t offset;  /* bytes received so far */
    int64_t size;    /* declared total size, -1 when not declared */
    int64_t idle_ms; /* since the last write */
};

/* Opens (creating the layout if needed) the store at cfg->root, removing
 * single-request temporaries a crashed run left behind; upload sessions are
 * kept. The config's strings are copied. */
int artifact_store_open(const struct artifact_store_config *cfg, struct artifact_store **out,
                        struct thaw_err *err);
void artifact_store_free(struct artifact_store *as);
int64_t artifact_store_chunk_max(const struct artifact_store *as);
int64_t artifact_store_upload_ttl_ms(const struct artifact_store *as);

/* True for "sha256:" + exactly 64 lowercase hex digits. */
bool artifact_digest_valid(const char *s);

/* Where a store rooted at root keeps the blob of digest (it may not be
 * there): for readers outside the store, e.g. a template mapping a model.
 * Returns 0, THAW_EINVAL (bad digest) or THAW_ERANGE (out too small). */
int artifact_blob_path(const char *root, const char *digest, char *out, size_t n);

/* Size of a stored blob; THAW_ENOTFOUND when absent (or digest invalid). */
int artifact_stat(struct artifact_store *as, const char *digest, int64_t *size,
                  struct thaw_err *err);
/* Opens a stored blob read-only; *fd is the caller's to close. */
int artifact_open(struct artifact_store *as, const char *digest, int *fd, int64_t *size,
                  struct thaw_err *err);
/* If the blob is stored, marks it re-confirmed (GC's min_age counts from
 * now), fills out and returns 0; else THAW_ENOTFOUND. */
int artifact_confirm(struct artifact_store *as, const char *digest, struct artifact_info *out);
/* Stores the bytes of iov[0..n_iov) as one blob (at most chunk_max bytes:
 * THAW_ERANGE otherwise). With expect (may be NULL), a different digest is
 * THAW_ECONFLICT with both digests in err and nothing is written. A blob
 * already stored is not rewritten (out->created false). */
int artifact_put(struct artifact_store *as, const struct iovec *iov, size_t n_iov,
                 const char *expect, struct artifact_info *out, struct thaw_err *err);

/* Resumable uploads. A session survives a node restart: its hash state is
 * rebuilt from the partial file the first time it is used again. */

/* Starts a session; size is the declared total or -1. THAW_EBUSY when too
 * many sessions are open. */
int artifact_upload_create(struct artifact_store *as, int64_t size,
                           struct artifact_upload_info *out, struct thaw_err *err);
/* THAW_ENOTFOUND for an unknown, finished, aborted or expired session. */
int artifact_upload_stat(struct artifact_store *as, const char *id,
                         struct artifact_upload_info *out, struct thaw_err *err);
/* Appends iov at offset. THAW_ECONFLICT when offset is not the session's
 * current offset (out->offset says where it is); THAW_ERANGE when the chunk
 * is larger than chunk_max or goes past the declared size. On any error
 * nothing of the chunk is kept. out may be NULL. */
int artifact_upload_append(struct artifact_store *as, const char *id, int64_t offset,
                           const struct iovec *iov, size_t n_iov, struct artifact_upload_info *out,
                           struct thaw_err *err);
/* Finishes a session: verifies against expect (may be NULL), fsyncs and
 * links the blob into place, and ends the session. THAW_ECONFLICT on a
 * digest mismatch (the session is discarded: nothing is kept); THAW_ESTATE
 * when fewer bytes than the declared size arrived (the session stays). */
int artifact_upload_complete(struct artifact_store *as, const char *id, const char *expect,
                             struct artifact_info *out, struct thaw_err *err);
/* Discards a session and its bytes. */
int artifact_upload_abort(struct artifact_store *as, const char *id, struct thaw_err *err);
/* Discards sessions idle longer than the TTL that no call is using; returns
 * how many (>= 0) or an error. */
int artifact_uploads_expire(struct artifact_store *as, struct thaw_err *err);

/* Calls cb for each stored blob (order unspecified); a non-zero return
 * stops the walk and is returned. */
typedef int (*artifact_list_fn)(void *ctx, const char *digest, int64_t size);
int artifact_list(struct artifact_store *as, artifact_list_fn cb, void *ctx, struct thaw_err *err);

/* Garbage collection: removes every blob that is_referenced says no to and
 * that was stored or re-confirmed (uploaded again) more than min_age_ms
 * ago, so an upload that finished moments before the version naming it is
 * written survives. Upload sessions are never touched except to expire
 * idle ones (artifact_uploads_expire). is_referenced runs under the store's
 * lock: keep it quick. removed (may be NULL) hears of each blob removed. */
typedef bool (*artifact_ref_fn)(void *ctx, const char *digest);
typedef void (*artifact_removed_fn)(void *ctx, const char *digest, int64_t size);
struct artifact_gc_opts {
    artifact_ref_fn is_referenced; /* NULL: nothing is referenced */
    void *ref_ctx;
    int64_t min_age_ms;
    bool dry_run; /* report what would go, remove nothing */
    artifact_removed_fn removed;
    void *removed_ctx;
};
struct artifact_gc_stats {
    int64_t removed, removed_bytes;
    int64_t kept_referenced, kept_young;
    int64_t expired_uploads;
};
int artifact_gc(struct artifact_store *as, const struct artifact_gc_opts *opts,
                struct artifact_gc_stats *stats, struct thaw_err *err);

/* A set of digests, e.g. every digest some version names. */
struct artifact_refs {
    char (*digests)[ARTIFACT_DIGEST_SIZE];
    size_t n, cap;
    bool sorted;
};
/* Adds one digest (ignored unless valid). Returns 0 or THAW_ENOMEM. */
int artifact_refs_add(struct artifact_refs *r, const char *digest);
/* Adds every "sha256:<64 hex>" found inside any string of a JSON value
 * (keys included), however deeply nested. */
int artifact_refs_scan_json(struct artifact_refs *r, const json_t *v);
bool artifact_refs_has(struct artifact_refs *r, const char *digest);
/* Frees the storage; the struct itself is the caller's. */
void artifact_refs_free(struct artifact_refs *r);
/* An artifact_ref_fn over a struct artifact_refs (ctx). */
bool artifact_refs_contains_cb(void *ctx, const char *digest);

/* ---- versions and traffic (versions.c) ----
 * A version is the canonical spec plus the artifact digests it names,
 * identified by the SHA-256 of that document's canonical JSON. A
 * deployment's traffic is a set of integer percentages over its versions
 * (summing to 100), an optional shadow (a version that also receives a
 * copy of a percentage of requests, answers discarded) and an optional
 * canary analysis that steps a version's weight up or rolls it back. */

struct store;

#define REGISTRY_SPLIT_MAX        16
#define REGISTRY_CANARY_STEPS_MAX 10

struct registry_canary {
    int version;  /* 0 = no canary analysis */
    int baseline; /* the stable version it is compared with */
    int steps[REGISTRY_CANARY_STEPS_MAX];
    int n_steps;
    int step;              /* index into steps of the weight the canary has now */
    int64_t interval_ms;   /* between steps */
    int64_t window_ms;     /* outcomes older than this are not compared */
    double max_error_rate; /* canary 5xx fraction above this: roll back */
    double max_p95_ratio;  /* canary p95 / baseline p95 above this: roll back */
    int min_requests;      /* fewer canary outcomes in the window: no verdict yet */
    char state[16];        /* "running", "promoted", "rolled_back" */
};

struct registry_traffic {
    int n;
    struct {
        int version;
        int weight; /* percent, 1..100 (versions at 0 are not listed) */
    } w[REGISTRY_SPLIT_MAX];
    int shadow_version; /* 0 = none */
    double shadow_percent;
    struct registry_canary canary;
};

/* Parses a traffic document; "" is no traffic at all (n = 0). */
int registry_traffic_parse(const char *json, struct registry_traffic *t, struct thaw_err *err);
/* Its canonical JSON (malloc'd; NULL on OOM): equal traffic, equal text. */
char *registry_traffic_dump(const struct registry_traffic *t);
json_t *registry_traffic_json(const struct registry_traffic *t);
/* Percent of version v (0 when absent). */
int registry_traffic_weight(const struct registry_traffic *t, int v);
/* Sets version v to weight w and scales the others proportionally over
 * the rest (largest remainders), so the sum stays 100. */
void registry_traffic_set(struct registry_traffic *t, int v, int w);
/* The version with 100%, or 0. */
int registry_traffic_full(const struct registry_traffic *t);
/* Parses "v3" or "3" into 3; returns 0 when malformed. */
int registry_version_parse(const char *s);

/* ---- sealed env values (envseal.c) ----
 * Manifests carry secrets in env, so the store keeps each env value of a
 * spec sealed: REGISTRY_SEALED_PREFIX + base64 of what the sealer made of
 * it (the owning tenant's data key, bound to the deployment and variable).
 * A manifest may not use the prefix itself (registry_spec_parse refuses). */
#define REGISTRY_SEALED_PREFIX "thaw:sealed:v1:"
struct registry_sealer {
    void *ctx;
    /* Appends the sealed form of pt to out. */
    int (*seal)(void *ctx, const char *owner, const char *purpose, const void *pt, size_t len,
                struct buf *out, struct thaw_err *err);
    /* Appends the plaintext of blob to out. */
    int (*open)(void *ctx, const char *purpose, const void *blob, size_t len, struct buf *out,
                struct thaw_err *err);
};
bool registry_env_value_sealed(const char *v);
/* Seals every env value of spec (canonical JSON, changed in place) under
 * owner. A NULL sealer leaves the values plain (tests without keys). */
int registry_env_seal(const struct registry_sealer *s, const char *owner, json_t *spec,
                      struct thaw_err *err);
/* Opens the sealed env values of spec in place (reveal), or shows each as
 * "(hidden)" (a reader that may use the deployment but not read its
 * secrets). Plain values (stored before sealing) stay as they are. On error
 * every value is "(hidden)", never half-opened. */
int registry_env_open(const struct registry_sealer *s, json_t *spec, bool reveal,
                      struct thaw_err *err);

/* The version document of a spec ({"artifacts":[...],"spec":{...}}) as
 * canonical JSON, and its digest ("sha256:<hex>"), always of the plain
 * spec. Caller frees *doc. */
int registry_version_doc(const struct deploy_spec *spec, char **doc,
                         char digest[ARTIFACT_DIGEST_SIZE], struct thaw_err *err);
/* The spec inside a stored version document, its env values opened with
 * sealer. */
int registry_version_spec(const char *doc, const struct registry_sealer *sealer,
                          struct deploy_spec **out, struct thaw_err *err);

struct registry_deploy_result {
    int version;
    bool created, existed, traffic_changed;
    char digest[ARTIFACT_DIGEST_SIZE];
    int64_t rev;
    struct registry_traffic traffic; /* after the deploy */
};
/* Records spec as a version of its deployment (a new number unless the
 * same document exists) and moves traffic: traffic_pct 100 (or -1) gives
 * it all, 0..99 gives it that share and scales the others over the rest;
 * a deployment's first version always gets 100%. One store transaction.
 * What is stored has its env values sealed under owner by sealer. */
int registry_deploy(struct store *st, const struct registry_sealer *sealer,
                    const struct deploy_spec *spec, const char *owner, const char *actor,
                    int traffic_pct, struct registry_deploy_result *out, struct thaw_err *err);
/* The target of a rollback: the version that most recently had 100% and
 * does not have it now; 0 with err when there is none. */
int registry_rollback_target(struct store *st, const char *name, const struct registry_traffic *cur,
                             struct thaw_err *err);
/* Calls cb with the spec of each stored version of name, in number order
 * (cb owns spec), its env values opened with sealer. Versions whose
 * document no longer parses or opens are skipped and counted in *bad (may
 * be NULL). */
int registry_versions_load(struct store *st, const struct registry_sealer *sealer, const char *name,
                           void (*cb)(void *ctx, int version, struct deploy_spec *spec), void *ctx,
                           int *bad, struct thaw_err *err);
/* The stored traffic of name, parsed. */
int registry_traffic_load(struct store *st, const char *name, struct registry_traffic *t,
                          int64_t *rev, struct thaw_err *err);
/* Adds every digest some stored version names to refs (for artifact GC). */
int registry_version_refs(struct store *st, struct artifact_refs *refs, struct thaw_err *err);

#endif
