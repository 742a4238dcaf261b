/* Private to src/store: the operations table every implementation fills. */
#ifndef THAW_STORE_INT_H
#define THAW_STORE_INT_H

#include "store/store.h"

struct store_ops {
    void (*close)(struct store *s);
    int (*deployment_put)(struct store *s, const char *name, const char *spec_json,
                          const char *owner, struct thaw_err *err);
    int (*deployment_get)(struct store *s, const char *name, char **spec_json,
                          struct thaw_err *err);
    int (*deployment_delete)(struct store *s, const char *name, struct thaw_err *err);
    int (*deployment_list)(struct store *s, store_deployment_cb cb, void *ctx,
                           struct thaw_err *err);
    int (*doc_put)(struct store *s, const char *collection, const char *id, const char *json,
                   struct thaw_err *err);
    int (*doc_put_all)(struct store *s, const struct store_doc_write *w, size_t n,
                       struct thaw_err *err);
    int (*doc_get)(struct store *s, const char *collection, const char *id, char **json,
                   struct thaw_err *err);
    int (*doc_delete)(struct store *s, const char *collection, const char *id,
                      struct thaw_err *err);
    int (*doc_list)(struct store *s, const char *collection, store_doc_cb cb, void *ctx,
                    struct thaw_err *err);
    int (*audit_append)(struct store *s, const struct store_audit_row *row, struct thaw_err *err);
    int (*audit_list)(struct store *s, uint64_t after_seq, size_t limit, store_audit_cb cb,
                      void *ctx, struct thaw_err *err);
    int (*version_deploy)(struct store *s, const char *name, const char *owner, const char *actor,
                          const char *digest, const char *version_doc, const char *spec_json,
                          store_traffic_fn fn, void *ctx, const char *reason,
                          struct store_deploy_result *out, struct thaw_err *err);
    int (*version_get)(struct store *s, const char *name, int n, struct store_version *meta,
                       char **spec_json, struct thaw_err *err);
    int (*version_list)(struct store *s, const char *name, bool with_spec, store_version_cb cb,
                        void *ctx, struct thaw_err *err);
    int (*traffic_get)(struct store *s, const char *name, char **traffic, int64_t *rev,
                       struct thaw_err *err);
    int (*traffic_put)(struct store *s, const char *name, const char *traffic, int64_t expect_rev,
                       const char *actor, const char *reason, int64_t *new_rev,
                       struct thaw_err *err);
    int (*traffic_log)(struct store *s, const char *name, store_traffic_log_cb cb, void *ctx,
                       struct thaw_err *err);
};

/* ---- jobs section: each implementation that keeps jobs fills these ---- */
struct store_jobs_ops {
    int (*submit)(struct store *s, struct store_job_submit *subs, size_t n, int64_t now_ms,
                  struct thaw_err *err);
    int (*lease)(struct store *s, const char *deployment, int64_t now_ms, int64_t lease_until_ms,
                 struct store_job_lease *out, int max, struct thaw_err *err);
    int (*renew)(struct store *s, const char *const *ids, const int *attempts,
                 const int64_t *until_ms, size_t n, struct thaw_err *err);
    int (*complete)(struct store *s, struct store_job_outcome *o, size_t n, struct thaw_err *err);
    int (*get)(struct store *s, const char *id, bool with_data, struct store_job *out,
               struct thaw_err *err);
    int (*list)(struct store *s, const struct store_job_filter *f, store_job_cb cb, void *ctx,
                struct thaw_err *err);
    int (*cancel)(struct store *s, const char *id, int64_t now_ms, int64_t expires_ms,
                  int *prev_state, struct thaw_err *err);
    int (*replay)(struct store *s, const char *id, const char *deployment, const char *tenant,
                  int64_t now_ms, void (*cb)(void *ctx, const char *deployment), void *ctx, int *n,
                  struct thaw_err *err);
    int (*purge)(struct store *s, const char *id, const char *deployment, const char *tenant,
                 int *n, struct thaw_err *err);
    int (*recover)(struct store *s, int64_t now_ms, struct thaw_err *err);
    int (*active_counts)(struct store *s, void (*cb)(void *ctx, const char *deployment, int n),
                         void *ctx, struct thaw_err *err);
    int (*expire)(struct store *s, int64_t now_ms, int64_t tombstone_ms, struct thaw_err *err);
    int (*webhook_due)(struct store *s, int64_t now_ms, struct store_webhook *out, int max,
                       struct thaw_err *err);
    int (*webhook_update)(struct store *s, int64_t id, int state, int attempts, int64_t next_ms,
                          const char *last_error, struct thaw_err *err);
    int (*webhook_next)(struct store *s, int64_t *next_ms, struct thaw_err *err);
    int (*webhook_list)(struct store *s, int state, int limit, store_webhook_cb cb, void *ctx,
                        struct thaw_err *err);
    int (*webhook_replay)(struct store *s, int64_t id, int64_t now_ms, int *n,
                          struct thaw_err *err);
    int (*webhook_purge)(struct store *s, int64_t id, int *n, struct thaw_err *err);
};

/* The SQLite implementation (sqlite_jobs.c) keeps jobs on its own connection
 * to the same file: attach after the main schema exists, detach in close. */
int sqlite_jobs_attach(struct store *s, const char *path, struct thaw_err *err);
void sqlite_jobs_detach(struct store *s);

struct store {
    const struct store_ops *ops;
    const struct store_jobs_ops *jobs_ops; /* NULL: this store keeps no jobs */
    void *jobs_state;                      /* the implementation's */
};

#endif
